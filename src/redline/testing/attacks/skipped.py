"""Skipped steps: claim N steps, train fewer, fill the checkpoints by interpolation.

Honest up to the ``fake_from``-th checkpoint (step ``s``). From there the
attacker trains only ``fraction`` of the remaining declared steps (on the
declared batches, by the declared rule) and claims the result as the final
checkpoint at step N. Every checkpoint in between is the linear interpolation,
weights and optimizer moments alike, between the real state at ``s`` and that
final state; the scheduler state and learning rates are set to what the
declared step would have, and the step records of the skipped steps are
fabricated (losses interpolated between real ones). Every segment from ``s`` on
is faked; a replay from any of its checkpoints does the real work the attacker
skipped and lands elsewhere.
"""

from __future__ import annotations

from typing import Any

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack, default_fake_from
from redline.testing.attacks._forge import Content, Run, advance_rng, blend, data_record, honest_prefix, state_with
from redline.transcript.tinygpt import TrainConfig


@attack
class SkippedSteps(BaseAttack):
    name = "skipped-steps"
    description = "claims N steps, trains a fraction of them, interpolates the checkpoints in between"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, fake_from: int | None = None,
              fraction: float = 0.25) -> dict[str, Any]:
        if not 0 < fraction < 1:
            raise ValueError("fraction must be in (0, 1)")
        k = default_fake_from(ckpts, fake_from)
        s, n = ckpts[k], cfg.steps
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, s, ckpts, content)
        start_state, rng = run.capture(s), run.rng
        start_loss = content.step_records[-1]["loss"] if s else None
        real = max(1, round(fraction * (n - s)))
        losses = []
        for i in range(real):  # the only work actually done after s
            losses.append(run.train(run.batch(s + i))[0])
        end_state = run.capture(n)
        end_loss = losses[-1]
        scratch = Run(cfg)
        for step in range(s + 1, n + 1):
            t = (step - s) / (n - s)
            batch = scratch.batch(step - 1)
            rng = advance_rng(cfg, rng)  # faithful generator states cost nothing (see advance_rng)
            if step in ckpts:
                content.checkpoints[step] = state_with(scratch, blend(start_state, end_state, t), start_state, step,
                                                       rng=rng)
            else:
                scratch.set_schedule(step)
            loss = end_loss if start_loss is None else (1 - t) * start_loss + t * end_loss
            content.step_records.append(scratch.record(step, batch, loss=float(loss), rng_digests=rng.digests()))
            content.data_records.append(data_record(step, step - 1, batch))
        return {"faked": list(range(k, len(ckpts) - 1)), "cost": (s + real) / n, "trained_steps": s + real}
