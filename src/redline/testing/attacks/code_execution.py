"""Code execution: a transcript declares code that the verifier must never run.

A verifier re-executes a run with the factories its declaration names, so a lab that controls the
declaration would like to make the verifier's machine run its code. Two variants:

- ``variant="unregistered"``: the declaration's model factory is a *well-formed* factory name that no
  distribution registers on the verifier's machine, pinned to a distribution that exists only on the
  attacker's (``lab-payload 1.0``). By default the name is the name of a payload module the attacker
  manages to put on the verifier's ``sys.path`` (``module=`` names one placed there by the caller), so a
  verifier that imported names it reads would run it. The run is honest otherwise and is declared through
  ``redline run start|declare`` (the log never runs code, so it accepts). The verifier must refuse to run
  anything it cannot pin: the ``code`` check is *inconclusive* (it cannot decide here), so is the verdict,
  and nothing is imported.
- ``variant="module-path"``: an honest transcript whose ``run.json`` and ``manifest.json`` are then edited
  by hand to name ``target`` (default ``os:system``, the old ``module:qualname`` form) as the model factory,
  with the spec digest, every leaf and the three roots recomputed, so the files are consistent with each
  other. The transcript must be refused at load — the run spec's schema admits factory *names* only — so
  ``redline run start`` refuses it, the registry refuses a ``RunStart`` forged to carry it, and the
  verifier's verdict is ``fail`` (``transcript``), without importing or calling anything.

Both watch the named code with a :class:`~redline.testing.attacks._binding.Tripwire` for the whole story.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

from redline.crypto.canonical import canonical_json, parse_json
from redline.statements.runs import FactoryRef, RunStart
from redline.testing.attacks import BindingRun, attack
from redline.testing.attacks._binding import (
    BindingAttack,
    Tripwire,
    fake_files_digest,
    honest_run,
    payload_on_path,
    story,
)
from redline.testing.attacks._forge import make_config, write_transcript
from redline.testing.scenario import now
from redline.transcript.format import (
    DATA_FILE,
    MANIFEST_FILE,
    SPEC_FILE,
    STEPS_FILE,
    binding,
    commitments,
)

#: The payload module the attacker names when the caller names none.
PAYLOAD_MODULE = "redline_attack_payload"


def edit_factory_by_hand(transcript: Path, target: str) -> dict[str, Any]:
    """Rewrite ``run.json`` and ``manifest.json`` so that the model factory's name is ``target``, recomputing
    the spec digest, every leaf and the three roots: bytes written by hand (the point of this attack), since
    redline's writer refuses such a spec. Returns the edited spec as JSON."""
    spec = parse_json((transcript / SPEC_FILE).read_bytes(), what="run.json")
    spec["declaration"]["model_factory"]["name"] = target
    manifest = parse_json((transcript / MANIFEST_FILE).read_bytes(), what="manifest.json")
    spec_bytes = canonical_json(spec)
    bound = binding(hashlib.sha256(spec_bytes).hexdigest())
    roots = commitments(bound, (transcript / STEPS_FILE).read_bytes().splitlines(),
                        (transcript / DATA_FILE).read_bytes().splitlines(),
                        [canonical_json(c) for c in manifest["checkpoints"]])
    manifest["spec"] = spec
    manifest["commitments"] = roots.model_dump(mode="json")
    (transcript / SPEC_FILE).write_bytes(spec_bytes)
    (transcript / MANIFEST_FILE).write_bytes(canonical_json(manifest))
    return spec


@attack
class CodeExecution(BindingAttack):
    name = "code-execution"
    description = "the declaration names code for the verifier to run: an unregistered factory, or a module path"

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             variant: str = "unregistered", module: str | None = None, target: str = "os:system") -> BindingRun:
        if variant not in ("unregistered", "module-path"):
            raise ValueError("variant must be 'unregistered' or 'module-path'")
        party, run_id, model_name = "lab-a", f"code-{seed}", f"lab-a-tiny-{seed}"
        cfg = make_config(seed, steps, party=party, run_id=run_id)
        transcript = out / "transcript"
        _, content = honest_run(cfg, checkpoint_every)
        if variant == "unregistered":
            return self._unregistered(scenario, out, transcript, cfg, content, checkpoint_every, model_name, module)
        return self._module_path(scenario, transcript, cfg, content, checkpoint_every, model_name, target)

    def _unregistered(self, scenario: Any, out: Path, transcript: Path, cfg: Any, content: Any,
                      checkpoint_every: int, model_name: str, module: str | None) -> BindingRun:
        name = module or PAYLOAD_MODULE
        ref = FactoryRef(name=name, distribution="lab-payload", version="1.0",
                         files_digest=fake_files_digest("lab-payload", "1.0", name), kwargs=dict(cfg.model_kwargs()))
        content.declaration = content.declaration.model_copy(update={"model_factory": ref})
        placed = payload_on_path(out / "payload", name) if module is None else contextlib.nullcontext(None)
        with placed as marker:
            wire = Tripwire(name, marker)
            with wire.armed():
                manifest = write_transcript(transcript, content)
                start, declare = scenario.declare_run(cfg.party, transcript, model_name)
                audit = scenario.audit(cfg.party, cfg.run_id, transcript)
        run = story(self.name, transcript, cfg, manifest, checkpoint_every, cost=1.0, scenario=scenario,
                    variant="unregistered", factory=ref.model_dump(mode="json"), fired=wire.fired,
                    faked="the model factory: a name registered only on the attacker's machine")
        run.answers = [start, declare, *([audit.report] if audit.report else [])]
        run.audits = {"verify the run": audit}
        run.stopped = {f"the verifier runs the unregistered factory {name!r}": audit.verdict != "pass"
                       and not wire.fired}
        return run

    def _module_path(self, scenario: Any, transcript: Path, cfg: Any, content: Any, checkpoint_every: int,
                     model_name: str, target: str) -> BindingRun:
        from redline.transcript.format import load_manifest

        manifest = write_transcript(transcript, content)
        honest = load_manifest(transcript / MANIFEST_FILE)
        edit_factory_by_hand(transcript, target)
        decl = honest.spec.declaration
        forged_spec = honest.spec.model_copy(update={"declaration": decl.model_copy(update={
            "model_factory": decl.model_factory.model_copy(update={"name": target})})})  # unvalidated, on purpose
        flop = manifest.flop.per_step * cfg.steps if manifest.flop is not None else 1.0
        wire = Tripwire(target)
        with wire.armed():
            start = scenario.run_start(cfg.party, transcript, model_name, flop,
                                       what=f"{cfg.party}: run start of the transcript naming {target}")
            forged = scenario.forge(f"{cfg.party}: RunStart forged to carry the spec naming {target}", cfg.party,
                                    RunStart, run_id=cfg.run_id, model_name=model_name, base_model=None,
                                    base_model_flop=None, declared_flop=flop, flop_method="counted", hardware=[],
                                    started_at=now(), spec=forged_spec,
                                    init_model_digest=honest.checkpoints[0].model_digest)
            audit = scenario.audit(cfg.party, cfg.run_id, transcript)
        run = story(self.name, transcript, cfg, manifest, checkpoint_every, cost=1.0, scenario=scenario,
                    variant="module-path", target=target, fired=wire.fired,
                    faked=f"run.json and manifest.json edited by hand to name {target}, digests recomputed")
        run.answers = [start, forged]
        run.audits = {"verify the transcript": audit}
        run.stopped = {
            f"redline run start of a spec naming {target}": start.refused,
            f"a RunStart forged to carry a spec naming {target}": forged.refused,
            f"the verifier loads a transcript naming {target}": audit.verdict == "fail" and not wire.fired
            and not audit.check("transcript").passed,
        }
        return run
