"""Re-executing a segment of a transcript from its starting checkpoint, as a verifier does.

:func:`replay_segment` rebuilds the model, optimizer and scheduler from the
declared entry points, loads the start checkpoint (weights, optimizer and
scheduler state, every generator state), re-creates each batch from the declared
data source and refuses any whose digest differs from the committed one, runs
the declared update rule step by step, and returns the resulting state captured
exactly as the recorder captures a checkpoint, together with the step records
the replay produced. On CPU a faithful replay is bit-identical to the recorded
end checkpoint and records. The caller's generator states and
deterministic-algorithms setting are restored afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from redline.crypto.canonical import canonical_json
from redline.errors import MalformedInput
from redline.transcript.digest import tensors_digest
from redline.transcript.factories import load
from redline.transcript.format import Declaration, FactoryRef, RunSpec
from redline.transcript.torchstate import (
    CapturedState,
    Checkpoint,
    RngState,
    RngTracker,
    batch_tensors,
    capture_state,
    from_json,
    iter_tensors,
    named_tensors_equal,
    step_record,
)
from redline.transcript.transcript import Transcript


@dataclass
class ReplayResult:
    """What a replay of steps ``start_step + 1 .. end_step`` produced."""

    start_step: int
    end_step: int
    state: CapturedState
    step_records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict after ``end_step``."""
        return self.state.model_tensors()

    def differences(self, checkpoint: Checkpoint) -> list[str]:
        """Tensor names and metadata keys where the replayed state differs from ``checkpoint`` by any bit."""
        out = named_tensors_equal(self.state.tensors, checkpoint.tensors)
        for key in sorted(set(self.state.metadata) | set(checkpoint.metadata)):
            if self.state.metadata.get(key) != checkpoint.metadata.get(key):
                out.append(f"metadata:{key}")
        return out

    def mismatched_steps(self, transcript: Transcript) -> list[int]:
        """Steps whose replayed record (loss, tokens, hyperparameters, RNG digests) differs from the committed one."""
        return [r["step"] for r in self.step_records
                if canonical_json(r) != canonical_json(transcript.step_record(r["step"]).model_dump(mode="json"))]


def _call(field: str, ref: FactoryRef, *args: Any, **extra: Any) -> Any:
    return load(field, ref)(*args, **extra, **from_json(ref.kwargs, {}))


def _require(decl: Declaration, name: str) -> Any:
    value = getattr(decl, name)
    if value is None:
        raise MalformedInput(f"the transcript declares no {name.replace('_', ' ')}: the segment cannot be replayed")
    return value


def build_optimizer(ref: FactoryRef, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The declared optimizer: a registered class called with the model's parameters, or a registered factory
    called with the model."""
    target = load("optimizer", ref)
    kwargs = from_json(ref.kwargs, {})
    if isinstance(target, type) and issubclass(target, torch.optim.Optimizer):
        return target(model.parameters(), **kwargs)
    return target(model, **kwargs)


def build_run(spec: RunSpec, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, torch.optim.Optimizer,
                                                                         Any]:
    """The declared model, optimizer and scheduler, freshly built from the registered factories.

    For a fresh initialisation the model is built on the CPU right after seeding torch, ``random`` and NumPy
    with ``spec.init.seed`` (the initialisation contract), then moved to ``device``; the caller's generator
    states are restored afterwards.
    """
    decl = spec.declaration
    factory, opt_ref = _require(decl, "model_factory"), _require(decl, "optimizer")
    saved = RngState.capture()
    try:
        if spec.init.kind == "fresh":
            assert spec.init.seed is not None
            _seed_everything(spec.init.seed)
        model = _call("model_factory", factory).to(device)
    finally:
        saved.restore()
    optimizer = build_optimizer(opt_ref, model)
    scheduler = _call("scheduler", decl.scheduler, optimizer) if decl.scheduler is not None else None
    return model, optimizer, scheduler


def _seed_everything(seed: int) -> None:
    import random

    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


def initial_state(spec: RunSpec, base_model_state: dict[str, torch.Tensor] | None = None) -> CapturedState:
    """Checkpoint 0 as the spec says it must be: the model from the initialisation (or ``base_model_state``
    for a base), a fresh optimizer and scheduler, captured as the recorder captures a checkpoint."""
    model, optimizer, scheduler = build_run(spec)
    if base_model_state is not None:
        model.load_state_dict(base_model_state)
    return capture_state(0, model, optimizer, scheduler, RngState.capture())


def replay_segment(transcript: Transcript, start_step: int, end_step: int | None = None, *,
                   device: str | torch.device = "cpu") -> ReplayResult:
    """Replay steps ``start_step + 1 .. end_step`` from the checkpoint at ``start_step``.

    ``end_step`` defaults to the next checkpoint. Raises ``MalformedInput`` if
    the declaration lacks a part, or if the data source gives a batch whose
    digest is not the committed one (naming the step and position).
    """
    start = transcript.checkpoint(start_step)
    if end_step is None:
        later = [c.step for c in transcript.checkpoints if c.step > start_step]
        if not later:
            raise MalformedInput(f"{transcript.path}: no checkpoint after step {start_step} to replay to")
        end_step = later[0]
    if not start_step < end_step <= transcript.step_count:
        raise MalformedInput(f"{transcript.path}: cannot replay from step {start_step} to step {end_step} "
                             f"(the transcript has {transcript.step_count} steps)")
    decl = transcript.manifest.declaration
    source_ref, step_ref = _require(decl, "data_source"), _require(decl, "train_step")
    ckpt = start.load()
    if ckpt.scheduler_state is not None and decl.scheduler is None:
        raise MalformedInput("the transcript declares no scheduler but its checkpoints hold one")
    saved_rng = RngState.capture()
    saved_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        model, optimizer, scheduler = build_run(transcript.spec, device)
        model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            optimizer.load_state_dict(ckpt.optimizer_state)
        if scheduler is not None and ckpt.scheduler_state is not None:
            scheduler.load_state_dict(ckpt.scheduler_state)
        source = _call("data_source", source_ref, seed=source_ref.seed)
        train_step = load("train_step", step_ref)
        step_kwargs = from_json(step_ref.kwargs, {})
        torch.use_deterministic_algorithms(transcript.manifest.environment.deterministic_algorithms)
        ckpt.rng.restore()
        model.train()
        records = []
        tracker = RngTracker()
        for step in range(start_step + 1, end_step + 1):
            committed = transcript.data_record(step)
            batch = source.batch(committed.position)
            tensors = batch_tensors(batch)
            digest = tensors_digest(iter_tensors(tensors))
            if digest != committed.batch["sha256"]:
                raise MalformedInput(f"step {step}: the data source's batch at position {committed.position} has "
                                     f"digest {digest}, the transcript commits to {committed.batch['sha256']}")
            optimizer.zero_grad(set_to_none=True)
            loss = train_step(model, batch, **step_kwargs)
            loss.backward()
            if decl.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), decl.max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            # tokens are the recorder's count (or the lab's own): taken as committed, checked elsewhere
            records.append(step_record(step, loss, transcript.step_record(step).tokens, optimizer.param_groups,
                                       tracker.digests()))
        state = capture_state(end_step, model, optimizer, scheduler, RngState.capture())
    finally:
        saved_rng.restore()
        torch.use_deterministic_algorithms(saved_deterministic)
    return ReplayResult(start_step, end_step, state, records)


__all__ = ["ReplayResult", "build_optimizer", "build_run", "initial_state", "replay_segment"]
