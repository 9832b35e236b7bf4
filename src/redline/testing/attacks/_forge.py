"""The attacker's workshop: train tiny GPTs by the declared rule, blend states, and write a transcript.

An attacker controls every byte it commits, so the spoofed transcripts here are
written by :func:`write_transcript`, which does what the recorder's ``close()``
does, through the same writer — content-addressed safetensors checkpoints, canonical step and data
records, the three RFC 6962 roots, a canonical manifest — over whatever content
the attack chose. The commitments are therefore *consistent*: ``load_transcript``
accepts the result; only the training behind it is faked.

:class:`Run` is one training run of the tiny GPT (model, AdamW, scheduler, data
source, and its own generator states, so several runs can be interleaved
without disturbing one another's dropout draws). It trains with exactly the
declared update rule that ``replay_segment`` re-executes, so a segment it
trains honestly replays bit for bit on CPU.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from redline import __version__
from redline.transcript.digest import tensors_digest
from redline.transcript.format import (
    SPEC_FORMAT,
    Declaration,
    FlopCount,
    Init,
    Manifest,
    RunSpec,
    TranscriptWriter,
    canonical_record,
)
from redline.transcript.tinygpt import (
    MODEL_DEFAULTS,
    TrainConfig,
    make_model,
    make_scheduler,
    seed_everything,
    text_batches,
    train_step,
)
from redline.transcript.torchstate import (
    CapturedState,
    RngState,
    RngTracker,
    batch_tensors,
    capture_state,
    checkpoint_from,
    count_tokens,
    iter_tensors,
    step_record,
)

#: Smaller than the tinygpt defaults so that the attack tests stay fast on two cores.
SMALL_MODEL: dict[str, Any] = {"seq_len": 32, "d_model": 32, "n_layer": 2, "n_head": 2}
SMALL_BATCH = 4


def make_config(seed: int, steps: int, *, model: Mapping[str, Any] | None = None, batch_size: int = SMALL_BATCH,
                warmup_steps: int | None = None, party: str = "lab", run_id: str = "tiny") -> TrainConfig:
    """The declared configuration of a tiny run (small model unless ``model`` says otherwise) of ``party/run_id``."""
    return TrainConfig(steps=steps, seed=seed, batch_size=batch_size,
                       model=dict(SMALL_MODEL if model is None else model),
                       warmup_steps=max(1, steps // 8) if warmup_steps is None else warmup_steps,
                       party=party, run_id=run_id)


def checkpoint_steps(steps: int, every: int) -> list[int]:
    """Checkpoint steps as the recorder takes them: 0, every, 2·every, ..., and the last step."""
    if steps < 1 or every < 1:
        raise ValueError("steps and checkpoint_every must be positive")
    out = list(range(0, steps + 1, every))
    if out[-1] != steps:
        out.append(steps)
    return out


class Run:
    """One tiny-GPT training run by the declared update rule, with its own generator states."""

    def __init__(self, cfg: TrainConfig, *, init_seed: int | None = None, data_seed: int | None = None,
                 total_steps: int | None = None) -> None:
        self.cfg = cfg
        saved = RngState.capture()
        try:
            seed_everything(cfg.seed if init_seed is None else init_seed)
            self.model = make_model(**cfg.model)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), **cfg.optimizer_kwargs())
            self.scheduler = make_scheduler(self.optimizer, cfg.warmup_steps,
                                            cfg.steps if total_steps is None else total_steps)
            self.rng = RngState.capture()
        finally:
            saved.restore()
        self.source = text_batches(cfg.seed if data_seed is None else data_seed, cfg.batch_size,
                                   cfg.model_kwargs()["seq_len"])
        self.step = 0
        self.trained = 0  # optimizer steps actually computed

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        """This run's data source at ``position``."""
        return self.source.batch(position)

    def train(self, batch: Mapping[str, torch.Tensor]) -> tuple[float, dict[str, Any]]:
        """One declared step on ``batch``; returns the loss and the honest step record's parts."""
        saved = RngState.capture()
        try:
            self.rng.restore()
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            loss = train_step(self.model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self.trained += 1
            digests = RngTracker().digests()
            self.rng = RngState.capture()
        finally:
            saved.restore()
        return loss.item(), digests

    def record(self, step: int, batch: Mapping[str, torch.Tensor], *, loss: float | None = None,
               rng_digests: dict[str, Any] | None = None) -> dict[str, Any]:
        """A step record with this run's current hyperparameters (``rng_digests`` default: this run's states)."""
        tokens = count_tokens(batch_tensors(dict(batch)))
        return step_record(step, loss, tokens, self.optimizer.param_groups,
                           self.rng.digests() if rng_digests is None else rng_digests)

    def capture(self, step: int | None = None) -> CapturedState:
        """The run's state, captured exactly as the recorder captures a checkpoint (labelled ``step``)."""
        return capture_state(self.step if step is None else step, self.model, self.optimizer, self.scheduler,
                             self.rng)

    def load(self, state: CapturedState) -> None:
        """Make ``state`` this run's state (weights, optimizer, scheduler, generators)."""
        ckpt = checkpoint_from(dict(state.tensors), state.metadata, "state")
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
        self.rng = ckpt.rng
        self.step = ckpt.step

    def set_schedule(self, step: int) -> None:
        """Move the scheduler (and the optimizer's learning rates) to where ``step`` declared steps put them."""
        self.scheduler.load_state_dict(scheduler_state_at(self.cfg.warmup_steps, self.cfg.steps, self.cfg.lr, step))
        for group, lr in zip(self.optimizer.param_groups, self.scheduler.get_last_lr()):
            group["lr"] = lr
        self.step = step


@lru_cache(maxsize=256)
def _scheduler_state(warmup: int, total: int, lr: float, step: int) -> dict[str, Any]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=lr)
    sched = make_scheduler(opt, warmup, total)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scheduler.step() without optimizer.step(): on purpose
        for _ in range(step):
            sched.step()
    return sched.state_dict()


def scheduler_state_at(warmup: int, total: int, lr: float, step: int) -> dict[str, Any]:
    """The declared scheduler's state after ``step`` steps (computed without training)."""
    return copy.deepcopy(_scheduler_state(warmup, total, lr, step))


def _blendable(name: str, t: torch.Tensor) -> bool:
    return t.is_floating_point() and (name.startswith("model.") or name.startswith("optimizer."))


def blend(a: CapturedState, b: CapturedState, t: float) -> dict[str, torch.Tensor]:
    """``(1 - t)·a + t·b`` for the weights and optimizer tensors (the generator states are ``a``'s)."""
    out = {}
    for name, x in a.tensors.items():
        y = b.tensors[name]
        out[name] = torch.lerp(x, y, t) if _blendable(name, x) else x.clone()
    return out


def state_with(run: Run, tensors: Mapping[str, torch.Tensor], template: CapturedState, step: int,
               rng: RngState | None = None) -> CapturedState:
    """Load ``tensors`` (laid out like ``template``) into ``run``, move its schedule to ``step``, capture it.

    The generator states are ``rng`` if given, else those in ``tensors``/``template``.
    """
    run.load(CapturedState(dict(tensors), template.metadata))
    if rng is not None:
        run.rng = rng
    for group in run.optimizer.state.values():  # AdamW's step counters say the declared step
        if "step" in group:
            group["step"] = torch.tensor(float(step), dtype=group["step"].dtype)
    run.set_schedule(step)
    return run.capture(step)


def advance_rng(cfg: TrainConfig, rng: RngState) -> RngState:
    """The generator states after one declared step from ``rng``, without training.

    A tiny-GPT step draws from the torch CPU generator only for its dropout
    masks, whose shapes do not depend on the weights: drawing the same masks
    reproduces the honest generator states exactly (checked by the tests), at a
    negligible cost. An attacker that fabricates steps can thus fabricate their
    RNG digests and end-of-segment generator states faithfully.
    """
    m = cfg.model_kwargs()
    b, t, c, h, p = cfg.batch_size, m["seq_len"], m["d_model"], m["n_head"], m["dropout"]
    saved = RngState.capture()
    try:
        rng.restore()
        if p > 0:
            torch.empty(b, t, c).bernoulli_(1 - p)
            for _ in range(m["n_layer"]):
                torch.empty(b, h, t, t).bernoulli_(1 - p)
                torch.empty(b, t, c).bernoulli_(1 - p)
                torch.empty(b, t, c).bernoulli_(1 - p)
        return RngState.capture()
    finally:
        saved.restore()


@lru_cache(maxsize=16)
def _flop_per_step(model_items: tuple[tuple[str, Any], ...], batch_size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    saved = RngState.capture()
    try:
        torch.manual_seed(0)
        model_kwargs = dict(model_items)
        model = make_model(**model_kwargs)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        batch = text_batches(0, batch_size, {**MODEL_DEFAULTS, **model_kwargs}["seq_len"]).batch(0)
        with FlopCounterMode(display=False) as mode:
            loss = train_step(model, batch)
            loss.backward()
            opt.step()
        return float(mode.get_total_flops())
    finally:
        saved.restore()


def flop_per_step(cfg: TrainConfig) -> float:
    """One declared step's FLOP, counted as the recorder counts them (``FlopCounterMode``)."""
    return _flop_per_step(tuple(sorted(cfg.model_kwargs().items())), cfg.batch_size)


def parameter_count(cfg: TrainConfig) -> int:
    """The declared model's parameter count (tied weights once)."""
    saved = RngState.capture()
    try:
        return sum(p.numel() for p in make_model(**cfg.model).parameters())
    finally:
        saved.restore()


def environment() -> Any:
    """The environment block the recorder writes for a CPU run in this process."""
    from redline.transcript.recorder import current_environment

    return current_environment(torch.device("cpu"))


def data_record(step: int, position: int, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The data record committing to ``batch`` at ``position``."""
    digest = tensors_digest(iter_tensors(batch_tensors(dict(batch))))
    return {"step": step, "position": position, "batch": {"sha256": digest}}


@dataclass
class Content:
    """Everything a transcript commits to, as the attacker chose it."""

    declaration: Declaration
    step_records: list[dict[str, Any]]
    data_records: list[dict[str, Any]]
    checkpoints: dict[int, CapturedState]
    parameter_count: int
    checkpoint_every: int
    flop_per_step: float | None
    init: Init
    party: str = "lab"
    run_id: str = "tiny"


def write_transcript(out: str | Path, content: Content, *, finish: Callable[..., Any] | None = None) -> Manifest:
    """Write ``content`` as a well-formed transcript with honest commitments over it, through the same
    :class:`~redline.transcript.format.TranscriptWriter` the recorder uses.

    ``finish(writer, entries, tokens=, flop=)`` writes the manifest instead of ``TranscriptWriter.finish`` (an
    attacker's own, unvalidated manifest).
    """
    spec = RunSpec(format=SPEC_FORMAT, party=content.party, run_id=content.run_id, redline_version=__version__,
                   environment=environment(),
                   declaration=content.declaration, init=content.init, parameter_count=content.parameter_count,
                   checkpoint_every=content.checkpoint_every, digest_algorithms=["sha256"])
    writer = TranscriptWriter(out, spec, durable=False)
    try:
        entries = [writer.put_checkpoint(step, content.checkpoints[step].tensor_data(),
                                         content.checkpoints[step].metadata) for step in sorted(content.checkpoints)]
        for step_record_, data_record_ in zip(content.step_records, content.data_records):
            writer.append(canonical_record(step_record_), canonical_record(data_record_))
    finally:
        writer.close_files()
    flop = None
    if content.flop_per_step is not None:
        flop = FlopCount(method="torch.utils.flop_counter.FlopCounterMode", counted_step=1,
                         per_step=content.flop_per_step)
    tokens = [int(r["tokens"]) for r in content.step_records]
    if finish is not None:
        return finish(writer, entries, tokens=tokens, flop=flop)
    now = datetime.now(UTC)
    return writer.finish(entries, tokens=tokens, flop=flop, started_at=now, finished_at=now)


def honest_prefix(run: Run, upto: int, ckpt_steps: Sequence[int], content: Content) -> None:
    """Train ``run`` honestly for steps ``run.step + 1 .. upto`` on the declared batches, recording everything."""
    while run.step < upto:
        step = run.step + 1
        batch = run.batch(step - 1)
        loss, digests = run.train(batch)
        content.step_records.append(run.record(step, batch, loss=loss, rng_digests=digests))
        content.data_records.append(data_record(step, step - 1, batch))
        if step in ckpt_steps:
            content.checkpoints[step] = run.capture(step)


def new_content(cfg: TrainConfig, checkpoint_every: int, *, declare_flop: bool = True) -> Content:
    """An empty transcript content declaring ``cfg`` honestly."""
    return Content(declaration=cfg.declaration(), step_records=[], data_records=[], checkpoints={},
                   parameter_count=parameter_count(cfg), checkpoint_every=checkpoint_every,
                   flop_per_step=flop_per_step(cfg) if declare_flop else None, init=cfg.init(), party=cfg.party,
                   run_id=cfg.run_id)


def segment_index(ckpt_steps: Sequence[int], start_step: int) -> int:
    """The index of the segment that starts at ``start_step``."""
    return list(ckpt_steps).index(start_step)
