"""A late, smooth fake: the last share of the steps replaced by small smooth updates, with or without a long
warm-up segment.

An adaptive lab that knows the verifier samples *steps* fakes a share of them where faking is hardest to see:
at the end of the run, where the loss curve is flat and real updates are small. Honest up to step
``s = steps - round(fake_fraction · steps)``; from there no gradient is computed: each declared step moves
the weights by a geometrically shrinking copy of the last honest update (``W_{s+k} = W_s + Σ_{j≤k} γ^j ·
(W_s − W_{s−1})``, ``γ = decay``), the Adam moments decay as if every later gradient were zero, the
hyperparameters follow the declared schedule, the generator states are advanced faithfully
(:func:`~redline.testing.attacks._forge.advance_rng`) and the losses go down by a tiny smooth amount per step.
Nothing in the transcript jumps: the update norms of the faked segments are the smallest of the run, so the
largest-update segments never include them; only a drawn step inside the faked range catches them. Every
segment holding a step after ``s`` is faked (a replay does a real AdamW step).

``warmup`` adds one long honest segment at the start (steps 1..``warmup``, then a checkpoint every
``checkpoint_every``): the lab hopes that one long segment makes every draw expensive, so that the budget
buys fewer draws. :class:`LateSmoothFake` declares the warm-up honestly (``checkpoint_every`` in the run spec
is the longest segment, ``max(warmup, checkpoint_every)``): the transcript loads, the budget is divided by the
step-weighted mean segment length and the sample says when it was capped. :class:`LongWarmup` keeps the
short interval in the run spec and writes the long warm-up segment anyway, with a manifest its own tools
write without the format's validation (every digest and root consistent): ``load_transcript`` refuses it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

from redline.testing.attacks import Declared, SpoofedRun, attack
from redline.testing.attacks._base import BaseAttack
from redline.testing.attacks._forge import (
    Content,
    Run,
    advance_rng,
    data_record,
    honest_prefix,
    make_config,
    new_content,
    state_with,
    write_transcript,
)
from redline.transcript.tinygpt import TrainConfig
from redline.transcript.torchstate import CapturedState


def warmup_checkpoints(steps: int, every: int, warmup: int = 0) -> list[int]:
    """Checkpoint steps: 0, then ``warmup`` (if any), then every ``every`` steps, and the last step."""
    if steps < 1 or every < 1 or warmup < 0:
        raise ValueError("steps and checkpoint_every must be positive, warmup at least 0")
    if warmup >= steps:
        raise ValueError(f"the warm-up ({warmup} steps) must end before the run does ({steps} steps)")
    first = max(0, warmup)
    out = [0] + ([first] if first else []) + list(range(first + every, steps + 1, every))
    if out[-1] != steps:
        out.append(steps)
    return out


def smooth_states(prev: CapturedState, start: CapturedState, k: int, decay: float) -> dict[str, torch.Tensor]:
    """The forged tensors ``k`` steps after ``start``: weights moved on along the last honest update with a
    shrinking step, Adam's moments decayed as if the gradients had been zero, the rest ``start``'s."""
    out: dict[str, torch.Tensor] = {}
    reach = sum(decay ** j for j in range(1, k + 1))
    for name, t in start.tensors.items():
        if name.startswith("model.") and t.is_floating_point():
            out[name] = t + reach * (t - prev.tensors[name])
        elif name.startswith("optimizer.") and name.endswith("exp_avg") and t.is_floating_point():
            out[name] = t * 0.9 ** k
        elif name.startswith("optimizer.") and name.endswith("exp_avg_sq") and t.is_floating_point():
            out[name] = t * 0.95 ** k
        else:
            out[name] = t.clone()
    return out


def finish_unchecked(writer: Any, entries: list[Any], *, tokens: list[int], flop: Any) -> Any:
    """What ``TranscriptWriter.finish`` writes, with the manifest built without the format's validation (an
    attacker's own writer): the same files, digests and roots, whatever the checkpoints' spacing."""
    import os

    from redline.log.merkle import leaf_hash, root_of
    from redline.statements.runs import TranscriptCommitments
    from redline.transcript.digest import hash_file
    from redline.transcript.format import (
        DATA_FILE,
        FORMAT,
        MANIFEST_FILE,
        STEPS_FILE,
        FileDigest,
        Manifest,
        record_bytes,
        write_atomic,
    )

    writer.close_files()
    last = entries[-1].step
    steps_size, data_size = writer.sizes[last]
    for name, size in ((STEPS_FILE, steps_size), (DATA_FILE, data_size)):
        os.truncate(writer.path / name, size)
    files = {name: FileDigest(sha256=hash_file(writer.path / name)["sha256"], size=(writer.path / name).stat().st_size)
             for name in (STEPS_FILE, DATA_FILE)}
    roots = TranscriptCommitments(
        steps_root=root_of(list(writer.step_leaves[:last])).hex(),
        data_root=root_of(list(writer.data_leaves[:last])).hex(),
        checkpoints_root=root_of([leaf_hash(writer.bound + record_bytes(e)) for e in entries]).hex(),
        step_count=last)
    now = datetime.now(UTC)
    manifest = Manifest.model_construct(format=FORMAT, spec=writer.spec, started_at=now, finished_at=now,
                                        tokens=sum(tokens[:last]), flop=flop, files=files, checkpoints=list(entries),
                                        commitments=roots)
    write_atomic(writer.path / MANIFEST_FILE, record_bytes(manifest), durable=False)
    return manifest


def write_unchecked(out: Path, content: Content) -> Any:
    """:func:`~redline.testing.attacks._forge.write_transcript` through the attacker's own, unvalidated
    manifest (:func:`finish_unchecked`)."""
    return write_transcript(out, content, finish=finish_unchecked)


@attack
class LateSmoothFake(BaseAttack):
    name = "late-smooth-fake"
    description = ("the last share of the steps faked by small smooth updates (no gradient computed), optionally "
                   "after one long honest warm-up segment declared as the run's checkpoint interval")
    #: Whether the run spec declares the warm-up segment's length as its checkpoint interval.
    declare_warmup = True

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 60, checkpoint_every: int = 10,
            fake_fraction: float = 0.1, warmup: int = 0, decay: float = 0.9, config: dict[str, Any] | None = None,
            **params: Any) -> SpoofedRun:
        """Write the transcript to ``workdir / self.name``; ``warmup`` > 0 makes steps 1..warmup one segment."""
        if params:
            raise TypeError(f"unexpected parameters {sorted(params)}")
        if not 0 < fake_fraction < 1 or not 0 < decay < 1:
            raise ValueError("fake_fraction and decay must lie in (0, 1)")
        out = Path(workdir) / self.name
        cfg = make_config(seed, steps, **(config or {}))
        ckpts = warmup_checkpoints(steps, checkpoint_every, warmup)
        declared_every = max(warmup, checkpoint_every) if self.declare_warmup else checkpoint_every
        content = new_content(cfg, declared_every)
        info = self.forge(cfg, ckpts, content, fake_fraction=fake_fraction, decay=decay)
        manifest = (write_transcript(out, content) if self.declare_warmup or warmup <= checkpoint_every
                    else write_unchecked(out, content))
        flop = None if content.flop_per_step is None else content.flop_per_step * steps
        declared = Declared(steps=steps, flop=flop, model=dict(cfg.model_kwargs()),
                            parameter_count=content.parameter_count, tokens=manifest.tokens)
        info.update(warmup=warmup, declared_checkpoint_every=declared_every,
                    longest_segment=max(b - a for a, b in pairwise(ckpts)))
        return SpoofedRun(attack=self.name, transcript_dir=out, declared=declared,
                          faked_segments=sorted(info.pop("faked")), segment_starts=ckpts[:-1],
                          cost=float(info.pop("cost")), details=info)

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, fake_fraction: float = 0.1,
              decay: float = 0.9) -> dict[str, Any]:
        n = cfg.steps
        faked_steps = max(1, round(fake_fraction * n))
        s = n - faked_steps
        if s < 1:
            raise ValueError("the run must have at least one honest step")
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, s - 1, ckpts, content)
        prev = run.capture(s - 1)
        honest_prefix(run, s, ckpts, content)
        start, rng = run.capture(s), run.rng
        loss = float(content.step_records[-1]["loss"])
        scratch = Run(cfg)
        for step in range(s + 1, n + 1):
            k = step - s
            batch = scratch.batch(step - 1)
            rng = advance_rng(cfg, rng)  # the dropout masks' draws: faithful generator states cost nothing
            if step in ckpts:
                content.checkpoints[step] = state_with(scratch, smooth_states(prev, start, k, decay), start, step,
                                                       rng=rng)
            else:
                scratch.set_schedule(step)
            content.step_records.append(scratch.record(step, batch, loss=loss * (1 - 1e-4 * k),
                                                       rng_digests=rng.digests()))
            content.data_records.append(data_record(step, step - 1, batch))
        faked = [i for i, (_, b) in enumerate(pairwise(ckpts)) if b > s]
        return {"faked": faked, "cost": s / n, "faked_steps": faked_steps, "first_faked_step": s + 1,
                "fake_fraction": faked_steps / n}


@attack
class LongWarmup(LateSmoothFake):
    name = "long-warmup"
    description = ("a late smooth fake after one warm-up segment longer than the run spec's checkpoint_every, "
                   "written with a manifest the format's validation would refuse")
    declare_warmup = False

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 60, checkpoint_every: int = 10,
            warmup: int | None = None, **params: Any) -> SpoofedRun:
        """``warmup`` defaults to ``4 × checkpoint_every`` (at most half the run)."""
        if warmup is None:
            warmup = min(4 * checkpoint_every, max(checkpoint_every + 1, steps // 2))
        if warmup <= checkpoint_every:
            raise ValueError(f"the warm-up ({warmup} steps) must be longer than checkpoint_every "
                             f"({checkpoint_every})")
        return super().run(workdir, seed=seed, steps=steps, checkpoint_every=checkpoint_every, warmup=warmup,
                           **params)


__all__ = ["LateSmoothFake", "LongWarmup", "finish_unchecked", "smooth_states",
           "warmup_checkpoints", "write_unchecked"]
