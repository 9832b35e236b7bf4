"""Provenance attacks: a final checkpoint from another run, and two honest runs spliced together.

``ForgedFinalWeights``: an honest run whose final checkpoint is replaced by
the final checkpoint of another run (another initialisation, same declared
data), relabelled as this run's last step. Only the last segment is faked.

``Splice``: run A (the declared seed) and run B (another initialisation, same
declared data and schedule), both honest; the transcript takes A's checkpoints
and records up to the ``at``-th checkpoint and B's after. Only segment ``at``
(A's state → B's next checkpoint) is faked; B's later segments replay bit for
bit, so only a sample that includes the junction catches it.
"""

from __future__ import annotations

from typing import Any

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack, default_fake_from
from redline.testing.attacks._forge import Content, Run, data_record, honest_prefix
from redline.transcript.tinygpt import TrainConfig


@attack
class ForgedFinalWeights(BaseAttack):
    name = "forged-final-weights"
    description = "the final checkpoint is taken from another run"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *,
              other_seed: int | None = None) -> dict[str, Any]:
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, cfg.steps, ckpts, content)
        other = Run(cfg, init_seed=cfg.seed + 104729 if other_seed is None else other_seed)
        for step in range(1, cfg.steps + 1):
            other.train(other.batch(step - 1))
        content.checkpoints[cfg.steps] = other.capture(cfg.steps)
        return {"faked": [len(ckpts) - 2], "cost": 1.0, "other_run_steps": cfg.steps}


@attack
class Splice(BaseAttack):
    name = "splice"
    description = "segments of two honest runs joined at a checkpoint"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, at: int | None = None,
              other_seed: int | None = None) -> dict[str, Any]:
        k = default_fake_from(ckpts, at)
        a = Run(cfg)
        content.checkpoints[0] = a.capture(0)
        honest_prefix(a, ckpts[k], ckpts, content)
        b = Run(cfg, init_seed=cfg.seed + 104729 if other_seed is None else other_seed)
        for step in range(1, ckpts[k] + 1):
            b.train(b.batch(step - 1))
        for step in range(ckpts[k] + 1, cfg.steps + 1):
            batch = b.batch(step - 1)
            loss, digests = b.train(batch)
            content.step_records.append(b.record(step, batch, loss=loss, rng_digests=digests))
            content.data_records.append(data_record(step, step - 1, batch))
            if step in ckpts:
                content.checkpoints[step] = b.capture(step)
        return {"faked": [k], "cost": 1.0, "splice_step": ckpts[k],
                "note": "cost counts the steps used in the transcript; run B's prefix "
                        f"({ckpts[k]} steps) was trained too but is not in it"}
