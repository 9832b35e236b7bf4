"""Shared plumbing of the binding attacks: a scenario per story, honest lab runs, relabelling, tripwires."""

from __future__ import annotations

import hashlib
import importlib
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redline.testing.attacks import BindingRun, Declared
from redline.testing.attacks._forge import (
    Content,
    Run,
    checkpoint_steps,
    flop_per_step,
    honest_prefix,
    make_config,
    new_content,
    write_transcript,
)
from redline.transcript.format import Manifest, RunSpec, TranscriptWriter, record_bytes
from redline.transcript.tinygpt import TrainConfig
from redline.transcript.torchstate import CapturedState, RngState, state_digest


class BindingAttack:
    """Holds the name and description; subclasses implement ``play``, which tells the whole story."""

    name = ""
    description = ""

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 20, checkpoint_every: int = 10,
            **params: Any) -> BindingRun:
        """Play the story in ``workdir / self.name`` (a fresh log in ``log/``) and describe what happened."""
        from redline.testing.scenario import Scenario

        out = Path(workdir) / self.name
        out.mkdir(parents=True, exist_ok=False)
        scenario = Scenario(out, policy=self.policy())
        return self.play(scenario, out, seed=seed, steps=steps, checkpoint_every=checkpoint_every, **params)

    def policy(self) -> Any:
        """The policy the coordinator publishes before the story starts (none by default)."""
        return None

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             **params: Any) -> BindingRun:
        """Mount the attack on ``scenario``; return the story."""
        raise NotImplementedError


def model_digest(state: CapturedState) -> str:
    """The model digest a checkpoint of ``state`` would carry (tensor serialisation v1 of its model tensors)."""
    return state_digest(state.model_tensors())


def honest_run(cfg: TrainConfig, checkpoint_every: int, *, run: Run | None = None) -> tuple[Run, Content]:
    """Train ``cfg`` honestly by the declared rule (from ``run``'s current state, default a fresh run), recording
    every step and checkpoint into a new :class:`Content` that declares ``cfg``."""
    run = Run(cfg) if run is None else run
    content = new_content(cfg, checkpoint_every)
    content.checkpoints[0] = run.capture(0)
    honest_prefix(run, cfg.steps, checkpoint_steps(cfg.steps, checkpoint_every), content)
    return run, content


def train_off_the_record(run: Run, positions: Iterable[int]) -> int:
    """Train ``run`` by the declared update rule on its data source's batches at ``positions``, recording nothing
    and keeping no generator bookkeeping (what a lab does off the record); returns the steps trained."""
    from redline.transcript.tinygpt import update

    saved = RngState.capture()
    n = 0
    try:
        run.rng.restore()
        run.model.train()
        for position in positions:
            update(run.model, run.optimizer, run.scheduler, run.batch(position), run.cfg.max_grad_norm)
            n += 1
        run.rng = RngState.capture()
    finally:
        saved.restore()
    run.step += n
    run.trained += n
    return n


def lab_run(out: Path, seed: int, steps: int, checkpoint_every: int, *, party: str, run_id: str
            ) -> tuple[Run, Manifest, TrainConfig]:
    """An honest lab's run of the tiny GPT, written to ``out`` as the recorder writes it."""
    cfg = make_config(seed, steps, party=party, run_id=run_id)
    run, content = honest_run(cfg, checkpoint_every)
    return run, write_transcript(out, content), cfg


def honest_story(workdir: str | Path, *, seed: int = 0, steps: int = 20, checkpoint_every: int = 10,
                 policy: Any = None) -> tuple[Any, Any, Manifest]:
    """The baseline of the binding attacks: lab A records an honest run, declares it with ``redline run
    start|declare`` on a fresh log in ``workdir`` and an auditor verifies it as ``redline verify run --log``
    does (the report submitted). Returns the scenario, the audit (whose verdict must be ``pass``) and the
    transcript's manifest."""
    from redline.testing.scenario import Scenario

    scenario = Scenario(workdir, policy=policy)
    run_id = f"honest-{seed}"
    transcript = Path(workdir) / "transcript"
    _, manifest, _ = lab_run(transcript, seed, steps, checkpoint_every, party="lab-a", run_id=run_id)
    scenario.declare_run("lab-a", transcript, f"lab-a-tiny-{seed}")
    return scenario, scenario.audit("lab-a", run_id, transcript), manifest


def declared(cfg: TrainConfig, manifest: Manifest) -> Declared:
    """What a transcript of ``cfg`` declares."""
    n = manifest.commitments.step_count
    return Declared(steps=n, flop=None if manifest.flop is None else manifest.flop.per_step * n,
                    model=dict(cfg.model_kwargs()), parameter_count=manifest.parameter_count, tokens=manifest.tokens)


def story(attack: str, transcript: Path, cfg: TrainConfig, manifest: Manifest, checkpoint_every: int, *,
          cost: float, scenario: Any, **details: Any) -> BindingRun:
    """A :class:`BindingRun` for ``transcript`` (no segment is faked: every one replays)."""
    ckpts = checkpoint_steps(manifest.commitments.step_count, checkpoint_every)
    return BindingRun(attack=attack, transcript_dir=transcript, declared=declared(cfg, manifest), faked_segments=[],
                      segment_starts=ckpts[:-1], cost=cost, details={"log": scenario.dir, **details})


def relabel(src: Path, out: Path, *, party: str, run_id: str) -> Manifest:
    """Copy the transcript in ``src`` as ``party``'s run ``run_id``: its spec rewritten with the new names and
    every record and checkpoint written again through :class:`TranscriptWriter`, which binds every leaf to the
    new spec (so the copy has its own roots, and the same final weights)."""
    from redline.transcript.transcript import load_transcript

    t = load_transcript(src)
    spec = RunSpec.model_validate({**t.spec.model_dump(mode="json"), "party": party, "run_id": run_id})
    writer = TranscriptWriter(out, spec, durable=False)
    try:
        entries = []
        for ref in t.checkpoints:
            state = CapturedState(ref.tensors(), ref.metadata())
            entries.append(writer.put_checkpoint(ref.entry.step, state.tensor_data(), state.metadata))
        for step_record, data_record in zip(t.steps, t.data):
            writer.append(record_bytes(step_record), record_bytes(data_record))
    finally:
        writer.close_files()
    return writer.finish(entries, tokens=[r.tokens for r in t.steps], flop=t.manifest.flop,
                         started_at=t.manifest.started_at, finished_at=t.manifest.finished_at)


def real_flop(cfg: TrainConfig, steps: int) -> float:
    """The FLOP of ``steps`` steps of ``cfg`` (counted per step as the recorder counts them)."""
    return flop_per_step(cfg) * steps


# --- tripwires: did anything the attacker named run? ------------------------------------------------------


class Tripwire:
    """Watches a ``module:attribute`` (or a bare module) an attacker named, for the length of a ``with``.

    A module already imported (``os`` for ``os:system``) has its attribute replaced by a recorder for the
    duration; one that is not imported must still not be at the end, and its payload must have left no
    ``<module>.ran`` marker beside it. ``fired`` says whether either happened.
    """

    def __init__(self, target: str, marker: Path | None = None) -> None:
        self.target = target
        self.module, _, self.attr = target.partition(":")
        self.marker = marker
        self.calls: list[Any] = []
        self.imported = False

    @contextmanager
    def armed(self) -> Iterator[Tripwire]:
        mod = sys.modules.get(self.module)
        saved = None
        if mod is not None and self.attr and hasattr(mod, self.attr):
            saved = getattr(mod, self.attr)

            def recorder(*args: Any, **kwargs: Any) -> int:
                self.calls.append((args, kwargs))
                return 0

            setattr(mod, self.attr, recorder)
        was_imported = mod is not None
        try:
            yield self
        finally:
            if saved is not None:
                setattr(sys.modules[self.module], self.attr, saved)
            self.imported = not was_imported and self.module in sys.modules

    @property
    def fired(self) -> bool:
        """The named code ran: called, imported, or its marker written."""
        return bool(self.calls) or self.imported or (self.marker is not None and self.marker.exists())


PAYLOAD = '''"""An attacker's payload: what a transcript's declaration hopes a verifier will import or call.

It only records that it ran (a real one would run a command): importing it writes {marker!r}.
"""
from pathlib import Path

Path(__file__).with_name(__name__ + ".ran").write_text("imported\\n")


def make_model(**kwargs):
    Path(__file__).with_name(__name__ + ".ran").write_text("called\\n")


def run(*args, **kwargs):
    Path(__file__).with_name(__name__ + ".ran").write_text("called\\n")
'''


@contextmanager
def payload_on_path(directory: Path, module: str) -> Iterator[Path]:
    """Write the attacker's payload module ``module`` into ``directory`` and put it on ``sys.path`` for the
    duration (the worst case: the verifier's machine can import it); yields its marker's path."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f"{module}.ran"
    (directory / f"{module}.py").write_text(PAYLOAD.format(marker=marker.name))
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    try:
        yield marker
    finally:
        try:
            sys.path.remove(str(directory))
        except ValueError:
            pass
        sys.modules.pop(module, None)


def fake_files_digest(*parts: str) -> str:
    """A files digest for a distribution that exists only on the attacker's machine."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()
