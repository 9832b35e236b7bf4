"""Calibration poisoning: forge the end checkpoints of early segments to inflate a calibrated tolerance, then
swap in final weights trained ten times longer.

Off the bitwise path a verifier calibrates its tolerance on a few seed-chosen segments. A calibration that
compared a replay with the lab's *committed* end checkpoint would let the lab set the tolerance: commit the ends
of early segments displaced by noise and the tolerance (largest distance × the safety factor) grows until
anything passes (the review found L2 365). This lab trains the declared run honestly, then

1. commits the end checkpoints of the first ``poisoned`` segments displaced by Gaussian noise (model weights
   only) whose L2 norm is ``inflate × swap / safety_factor``: just enough that a tolerance calibrated on one of
   them (× ``safety_factor``) would admit the final swap ``inflate`` times over;
2. trains the declared model from the declared seed on the declared data for ``factor`` × the declared steps
   (off the record) and commits *those* weights (with their optimizer state, the declared step counters and
   schedule, faithful generator states) as the run's final checkpoint.

Faked: segments ``0 .. poisoned`` (the last of them starts from a poisoned checkpoint) and the last segment.
``redline.verify.distance.calibrate`` compares the verifier's two replays of each calibration segment with each
other, never with the lab's checkpoints: on the CPU they are bit-identical, the tolerance stays exact, and the
forged segments fail like any other. The details say what the lab hoped for: ``old_rule_tolerance_l2`` (what a
calibration against a poisoned end would have allowed) against ``swap_l2`` (the final swap's distance).
"""

from __future__ import annotations

from typing import Any

import torch

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack
from redline.testing.attacks._forge import Content, Run, honest_prefix, state_with
from redline.transcript.tinygpt import TrainConfig
from redline.transcript.torchstate import CapturedState


def model_l2(a: CapturedState, b: CapturedState) -> float:
    """L2 distance between two states' model weights, as the verifier measures it (``compare_states``)."""
    from redline.verify.distance import compare_states

    return float(compare_states(a.tensors, b.tensors, a.metadata, b.metadata).model.l2)


def displaced(state: CapturedState, l2: float, generator: torch.Generator) -> CapturedState:
    """``state`` with Gaussian noise of total L2 norm ``l2`` added to its floating-point model weights."""
    names = [k for k, t in state.tensors.items() if k.startswith("model.") and t.is_floating_point()]
    noise = {k: torch.randn(state.tensors[k].shape, generator=generator, dtype=torch.float64) for k in names}
    norm = sum(float(v.pow(2).sum()) for v in noise.values()) ** 0.5
    tensors = dict(state.tensors)
    for k in names:
        t = state.tensors[k]
        tensors[k] = (t.double() + noise[k] * (l2 / norm)).to(t.dtype)
    return CapturedState(tensors, dict(state.metadata))


@attack
class CalibrationPoisoning(BaseAttack):
    name = "calibration-poisoning"
    description = ("forges the end checkpoints of early segments to inflate a calibrated tolerance, and commits "
                   "final weights trained ten times longer")

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, poisoned: int = 2, factor: int = 10,
              inflate: float = 2.0, safety_factor: float = 10.0) -> dict[str, Any]:
        from redline.testing.attacks._binding import train_off_the_record

        n, m = cfg.steps, len(ckpts) - 1
        if not 1 <= poisoned <= m - 2:
            raise ValueError(f"poisoned must leave the last segment and one before it unpoisoned: 1..{m - 2}")
        if factor < 2 or inflate <= 0:
            raise ValueError("factor must be at least 2 and inflate positive")
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, n, ckpts, content)  # the real trajectory: every step record honest
        honest_final = content.checkpoints[n]
        longer = Run(cfg, total_steps=factor * n)  # the declared model and seed, trained factor × as long
        train_off_the_record(longer, range(factor * n))
        swapped = state_with(Run(cfg), longer.capture(n).tensors, honest_final, n, rng=run.rng)
        content.checkpoints[n] = swapped
        swap_l2 = model_l2(honest_final, swapped)
        noise_l2 = inflate * swap_l2 / safety_factor
        g = torch.Generator().manual_seed(cfg.seed * 7919 + 17)
        poisoned_l2 = []
        for i in range(poisoned):
            step = ckpts[i + 1]
            real = content.checkpoints[step]
            content.checkpoints[step] = displaced(real, noise_l2, g)
            poisoned_l2.append(model_l2(real, content.checkpoints[step]))
        old_tolerance = safety_factor * max(poisoned_l2)
        return {"faked": sorted({*range(poisoned + 1), m - 1}), "cost": 1.0 + factor, "poisoned": poisoned,
                "poisoned_segments": list(range(poisoned)), "poisoned_l2": poisoned_l2, "swap_l2": swap_l2,
                "trained_steps": factor * n, "safety_factor": safety_factor,
                "old_rule_tolerance_l2": old_tolerance, "old_rule_admits_swap": swap_l2 <= old_tolerance,
                "old_rule_p_poisoned": 1.0 - ((m - poisoned) * (m - poisoned - 1)) / (m * (m - 1))}


__all__ = ["CalibrationPoisoning", "displaced", "model_l2"]
