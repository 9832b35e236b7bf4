"""Hidden pre-training: train the declared model in secret, then declare a fresh start from its seed.

The lab initialises the declared model from seed ``s`` and trains it in secret for ``factor`` × the
declared steps (on data of its own). Then it records an ordinary run: the declared model, a fresh
optimizer and scheduler, the declared data, every step honest — but starting from the secretly trained
weights — and declares it, through ``redline run start|declare``, as a fresh initialisation from seed
``s``. Every segment replays bit for bit and the ``RunStart`` does commit to the checkpoint 0 the
transcript holds, so re-execution and the ``start`` check are satisfied; the compute of the run, and so
every compute line, is understated by a factor of ``factor + 1``.

What catches it is the ``init`` check: the verifier rebuilds checkpoint 0 from the registered model factory
and seed ``s`` (a fresh optimizer and scheduler), bit for bit, and the secretly trained weights are not it.
The verdict is ``fail``; the auditor's report puts a ``failed-verification`` violation on the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redline.testing.attacks import BindingRun, attack
from redline.testing.attacks._binding import (
    BindingAttack,
    honest_run,
    model_digest,
    real_flop,
    story,
    train_off_the_record,
)
from redline.testing.attacks._forge import Run, make_config, write_transcript


@attack
class HiddenPretraining(BindingAttack):
    name = "hidden-pretraining"
    description = "trains the declared model in secret, then declares a fresh start from its seed"

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             factor: int = 10, data_seed: int | None = None) -> BindingRun:
        if factor < 1:
            raise ValueError("factor must be at least 1")
        party, run_id, model_name = "lab-a", f"fresh-{seed}", f"lab-a-tiny-{seed}"
        cfg = make_config(seed, steps, party=party, run_id=run_id)
        secret_steps = factor * steps
        # in secret: the declared model from seed s, trained on data of the lab's own
        secret = Run(make_config(seed, secret_steps, party=party, run_id=f"{run_id}-secret"),
                     data_seed=seed + 7919 if data_seed is None else data_seed)
        train_off_the_record(secret, range(secret_steps))
        # on the record: a fresh optimizer and scheduler for the declared run, the secretly trained weights
        recorded = Run(cfg)
        fresh_digest = model_digest(recorded.capture(0))
        recorded.model.load_state_dict(secret.model.state_dict())
        _, content = honest_run(cfg, checkpoint_every, run=recorded)
        transcript = out / "transcript"
        manifest = write_transcript(transcript, content)
        start, declare = scenario.declare_run(party, transcript, model_name)
        audit = scenario.audit(party, run_id, transcript)
        since = audit.report.indexes[0] if audit.report and not audit.report.refused else scenario.size
        violations = [v for v in scenario.violations(since) if v.party == party]
        run = story(self.name, transcript, cfg, manifest, checkpoint_every, cost=(secret_steps + steps) / steps,
                    scenario=scenario, secret_steps=secret_steps, declared_steps=steps,
                    real_flop=real_flop(cfg, secret_steps + steps), declared_flop=real_flop(cfg, steps),
                    declared_init={"kind": "fresh", "seed": seed},
                    checkpoint0=manifest.checkpoints[0].model_digest, factory_output=fresh_digest,
                    faked=f"the start: checkpoint 0 holds weights trained for {secret_steps} steps in secret, "
                          f"declared as a fresh initialisation from seed {seed}")
        run.answers = [start, declare, *([audit.report] if audit.report else [])]
        run.audits = {"verify the run": audit}
        run.violations = violations
        init = audit.check("init")
        run.stopped = {f"a fresh start from seed {seed} declared over {secret_steps} secret steps":
                       audit.verdict == "fail" and not init.passed and not init.inconclusive}
        return run
