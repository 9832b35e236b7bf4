"""Adversarial checkpoints that sit just inside a loose tolerance (after Zhang et al. 2022; Fang et al. 2023).

The Proof-of-Learning spoofing attacks exploit a verifier that accepts a
segment when its replay lands *within ε* of the committed end checkpoint: the
attacker need not train, only produce checkpoints each of which is within ε
of what an honest replay from the previous one would give. This is the same
idea on redline's segments:

1. honest up to the ``fake_from``-th checkpoint (step ``s``);
2. a cheap trajectory: train ``target_fraction`` of the remaining steps from
   ``s`` to a target state ``T``, and interpolate linearly from ``s`` to ``T``
   (the skipped-steps attack);
3. for each faked segment from its committed start ``C``: run only
   ``probe_fraction`` of the segment's ``k`` steps (``m`` steps, real, on the
   committed batches) and extrapolate linearly to an estimate of the honest
   replay, ``R̂ = C + (k/m)·(P − C)`` (weights and optimizer moments; second
   moments kept non-negative); then commit the cheap trajectory's point
   projected onto the box of radius ``epsilon`` (per tensor, L∞, absolute)
   around ``R̂``: ``C' = R̂ + clamp(X − R̂, −ε, ε)``.

With ``epsilon = 0`` it commits the pure extrapolation; with a large
``epsilon`` it commits the cheap trajectory itself. The compute spent is the
honest prefix, the cheap target and the probes: a fraction of training.

Why a loose tolerance lets it through: an accepting verifier only bounds
``|C' − R|`` where ``R`` is the true replay, and ``|C' − R| ≤ ε + |R̂ − R|``.
Over a segment of a few steps with a small learning rate the updates are
nearly linear, so the extrapolation error ``|R̂ − R|`` is small compared with
the segment's own movement, and a tolerance calibrated on run-to-run noise
that is large compared with it (GPU nondeterminism, mixed precision) admits
``ε`` of free drift per segment: the attacker can walk its checkpoints
towards any target it likes, ε at a time, without training to it. Against
redline's default comparison on CPU — bitwise equality, since a faithful
replay is bit-identical — any nonzero ``|C' − R|`` fails, and the
extrapolated state is never bit-identical to a replay. Use
:func:`replay_deviation` to measure how far each faked segment is from its
replay, i.e. the smallest tolerance that would have accepted it.
"""

from __future__ import annotations

from typing import Any

import torch

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack, default_fake_from
from redline.testing.attacks._forge import (
    Content,
    Run,
    advance_rng,
    blend,
    data_record,
    honest_prefix,
    state_with,
)
from redline.transcript.tinygpt import TrainConfig
from redline.transcript.torchstate import CapturedState


def _extrapolate(c: CapturedState, p: CapturedState, factor: float) -> dict[str, torch.Tensor]:
    out = blend(c, p, factor)
    for name, t in out.items():
        if name.startswith("optimizer.") and name.endswith("exp_avg_sq"):
            out[name] = t.clamp_min(0)
    return out


@attack
class AdversarialCheckpoints(BaseAttack):
    name = "adversarial-tolerance"
    description = "checkpoints extrapolated from short probes and steered within ε of an estimated replay"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, epsilon: float = 1e-3,
              probe_fraction: float = 0.2, target_fraction: float = 0.25,
              fake_from: int | None = None) -> dict[str, Any]:
        if epsilon < 0 or not 0 < probe_fraction <= 1 or not 0 < target_fraction <= 1:
            raise ValueError("epsilon must be >= 0, probe_fraction and target_fraction in (0, 1]")
        k = default_fake_from(ckpts, fake_from)
        s, n = ckpts[k], cfg.steps
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, s, ckpts, content)
        start = run.capture(s)
        cheap = max(1, round(target_fraction * (n - s)))
        for i in range(cheap):
            run.train(run.batch(s + i))
        target = run.capture(n)
        probe, scratch = Run(cfg), Run(cfg)
        committed = start
        spent = s + cheap
        drifts = []
        for a, b in zip(ckpts[k:-1], ckpts[k + 1:]):
            m = max(1, round(probe_fraction * (b - a)))
            probe.load(committed)
            loss, rng = None, probe.rng
            for step in range(a + 1, b + 1):
                batch = probe.batch(step - 1)
                if step <= a + m:
                    loss, digests = probe.train(batch)
                    content.step_records.append(probe.record(step, batch, loss=loss, rng_digests=digests))
                else:  # fabricated: the declared learning rate, faithful generator states, the last probe loss
                    rng = advance_rng(cfg, rng)
                    scratch.set_schedule(step)
                    content.step_records.append(scratch.record(step, batch, loss=loss, rng_digests=rng.digests()))
                if step == a + m:
                    rng = probe.rng
                content.data_records.append(data_record(step, step - 1, batch))
            spent += m
            estimate = _extrapolate(committed, probe.capture(a + m), (b - a) / m)
            cheap_point = blend(start, target, (b - s) / (n - s))
            chosen = {}
            drift = 0.0
            for name, t in estimate.items():
                if name.startswith("model.") and t.is_floating_point():
                    d = (cheap_point[name] - t).clamp(-epsilon, epsilon)
                    drift = max(drift, float(d.abs().max()))
                    chosen[name] = t + d
                else:
                    chosen[name] = t
            drifts.append(drift)
            committed = state_with(scratch, chosen, committed, b, rng=rng)
            content.checkpoints[b] = committed
        return {"faked": list(range(k, len(ckpts) - 1)), "cost": spent / n, "epsilon": epsilon,
                "probe_fraction": probe_fraction, "max_drift": drifts}


def replay_deviation(transcript: Any, start_step: int) -> dict[str, float]:
    """Per tensor, the largest absolute difference between a replay of the segment and its committed end.

    The smallest per-tensor L∞ tolerance that would have accepted the segment
    (0.0 everywhere for a faithful segment on CPU).
    """
    from redline.transcript.replay import replay_segment

    result = replay_segment(transcript, start_step)
    end = transcript.checkpoint(result.end_step).load()
    out = {}
    for name, t in result.state.tensors.items():
        c = end.tensors.get(name)
        if c is None or c.shape != t.shape:
            out[name] = float("inf")
        elif t.is_floating_point():
            out[name] = float((t.double() - c.double()).abs().max()) if t.numel() else 0.0
        else:
            out[name] = 0.0 if torch.equal(t, c) else float("inf")
    return out
