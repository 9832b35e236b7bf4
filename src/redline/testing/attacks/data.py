"""Data attacks: train on other data than committed, or on the committed data in another order.

Both are honest up to the ``fake_from``-th checkpoint. ``commit`` says what the
data records then commit to:

- ``"declared"`` (default): the declared batches in the declared order — the
  batch digests match the declared data source, so only re-executing a faked
  segment (with the committed batches) gives the attack away;
- ``"actual"``: the batches actually trained on (for substitution, their digests;
  for reordering, their true positions) — then the data check alone catches it:
  a substituted batch's digest is not the declared source's batch at that
  position, and a reordered run's positions are not ``step - 1``.
"""

from __future__ import annotations

from typing import Any

import torch

from redline.testing.attacks import attack
from redline.testing.attacks._base import BaseAttack, default_fake_from
from redline.testing.attacks._forge import Content, Run, data_record, honest_prefix
from redline.transcript.tinygpt import TrainConfig, text_batches


def _check_commit(commit: str) -> None:
    if commit not in ("declared", "actual"):
        raise ValueError("commit must be 'declared' or 'actual'")


@attack
class DataSubstitution(BaseAttack):
    name = "data-substitution"
    description = "trains on other batches than the committed ones"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, fake_from: int | None = None,
              other_seed: int | None = None, commit: str = "declared") -> dict[str, Any]:
        _check_commit(commit)
        k = default_fake_from(ckpts, fake_from)
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, ckpts[k], ckpts, content)
        other = text_batches(cfg.seed + 7919 if other_seed is None else other_seed, cfg.batch_size,
                             cfg.model_kwargs()["seq_len"])
        for step in range(ckpts[k] + 1, cfg.steps + 1):
            declared, used = run.batch(step - 1), other.batch(step - 1)
            loss, digests = run.train(used)
            content.step_records.append(run.record(step, used, loss=loss, rng_digests=digests))
            content.data_records.append(data_record(step, step - 1, declared if commit == "declared" else used))
            if step in ckpts:
                content.checkpoints[step] = run.capture(step)
        return {"faked": list(range(k, len(ckpts) - 1)), "cost": 1.0, "commit": commit}


@attack
class DataReordering(BaseAttack):
    name = "data-reordering"
    description = "trains on the committed batches in another order"

    def forge(self, cfg: TrainConfig, ckpts: list[int], content: Content, *, fake_from: int | None = None,
              order: str = "reverse", commit: str = "declared") -> dict[str, Any]:
        _check_commit(commit)
        k = default_fake_from(ckpts, fake_from)
        s = ckpts[k]
        run = Run(cfg)
        content.checkpoints[0] = run.capture(0)
        honest_prefix(run, s, ckpts, content)
        positions = list(range(s, cfg.steps))
        if order == "reverse":
            positions.reverse()
        elif order == "shuffle":
            g = torch.Generator().manual_seed(cfg.seed + 31)
            positions = [positions[i] for i in torch.randperm(len(positions), generator=g).tolist()]
        else:
            raise ValueError("order must be 'reverse' or 'shuffle'")
        faked = set()
        for step, position in zip(range(s + 1, cfg.steps + 1), positions):
            used = run.batch(position)
            loss, digests = run.train(used)
            content.step_records.append(run.record(step, used, loss=loss, rng_digests=digests))
            if commit == "declared":
                content.data_records.append(data_record(step, step - 1, run.batch(step - 1)))
            else:
                content.data_records.append(data_record(step, position, used))
            if position != step - 1:
                faked.add(max(i for i, c in enumerate(ckpts[:-1]) if c < step))
            if step in ckpts:
                content.checkpoints[step] = run.capture(step)
        # once one segment is off, every later one starts from a state the declared order never reaches,
        # but its own steps are faithful: it replays bit for bit only if its batches happen to be in place
        return {"faked": sorted(faked), "cost": 1.0, "order": order, "commit": commit}
