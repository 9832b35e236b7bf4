"""Compute under-declaration: more training than the transcript declares.

``mode="steps"`` (default): the lab trains ``factor`` × N steps (positions
0..factor·N-1, its own schedule over factor·N steps) and declares N: the
checkpoint at declared step ``s`` is the real state after ``factor · s`` steps,
relabelled (scheduler and learning rates moved to the declared step; step
records fabricated from the real losses). The declared FLOP is ``1/factor`` of
what was spent. Every segment is faked — even the first, whose replay from the
honest initial weights does ``k`` steps where the committed end did ``factor·k``.

``mode="width"``: the lab trains a model ``width_factor`` times wider for N
steps but declares the small model's shape (factory arguments, parameter count,
counted FLOP); the checkpoints hold the wide weights. The transcript loads
(nothing in it ties the declared factory to the tensors' shapes), but a replay
cannot even load the start checkpoint into the declared model: every segment
from the first is caught (as an error, not as a bitwise difference), and the
parameter count disagrees with the checkpoint's tensors.
"""

from __future__ import annotations

from typing import Any

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack
from redline.testing.attacks._forge import Content, Run, data_record, flop_per_step, make_config, state_with
from redline.transcript.tinygpt import TrainConfig


@attack
class ComputeUnderDeclaration(BaseAttack):
    name = "compute-under-declaration"
    description = "trains more steps (or a wider model) than declared"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, mode: str = "steps",
              factor: int = 2, width_factor: int = 2) -> dict[str, Any]:
        n = cfg.steps
        if mode == "steps":
            if factor < 2:
                raise ValueError("factor must be at least 2")
            run = Run(cfg, total_steps=factor * n)
            content.checkpoints[0] = run.capture(0)
            scratch = Run(cfg)
            for step in range(1, n + 1):
                loss = 0.0
                for j in range(factor):
                    loss = run.train(run.batch(factor * (step - 1) + j))[0]
                batch = scratch.batch(step - 1)
                if step in ckpts:
                    state = run.capture(step)
                    content.checkpoints[step] = state_with(scratch, state.tensors, state, step)
                else:
                    scratch.set_schedule(step)
                content.step_records.append(scratch.record(step, batch, loss=loss))
                content.data_records.append(data_record(step, step - 1, batch))
            return {"faked": list(range(len(ckpts) - 1)), "cost": float(factor), "mode": mode,
                    "actual_steps": factor * n, "actual_flop": content.flop_per_step * factor * n
                    if content.flop_per_step is not None else None}
        if mode == "width":
            model = dict(cfg.model_kwargs())
            wide_model = {**model, "d_model": model["d_model"] * width_factor}
            wide = make_config(cfg.seed, n, model=wide_model, batch_size=cfg.batch_size,
                               warmup_steps=cfg.warmup_steps)
            run = Run(wide)
            content.checkpoints[0] = run.capture(0)
            for step in range(1, n + 1):
                batch = run.batch(step - 1)
                loss, digests = run.train(batch)
                content.step_records.append(run.record(step, batch, loss=loss, rng_digests=digests))
                content.data_records.append(data_record(step, step - 1, batch))
                if step in ckpts:
                    content.checkpoints[step] = run.capture(step)
            # the declaration, parameter count and FLOP stay the small model's (new_content set them)
            ratio = flop_per_step(wide) / flop_per_step(cfg)
            return {"faked": list(range(len(ckpts) - 1)), "cost": ratio, "mode": mode, "actual_model": wide_model,
                    "actual_flop": flop_per_step(wide) * n}
        raise ValueError("mode must be 'steps' or 'width'")
