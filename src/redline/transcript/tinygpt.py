"""A tiny GPT and its training script, for tests, benchmarks and the demo: trains on CPU in seconds.

The model is a decoder-only transformer (learned positions, pre-norm blocks,
causal self-attention written out with matmuls so that it is deterministic on
CPU, tied input and output embeddings). Its data are byte-level tokens of
redline's own design notes, shipped in ``corpus.json``; the batch at position
``p`` is drawn with a generator seeded from ``(seed, p)``, so any position can be
re-created on its own — which is what a verifier replaying a segment needs.

Every piece is a factory registered by redline's own distribution (entry points
``tinygpt``, ``tinygpt-text``, ``tinygpt-next-token``, ``tinygpt-warmup-cosine``)
that a transcript can declare: ``make_model``, ``text_batches``, ``train_step``,
``make_scheduler``.

    python -m redline.transcript.tinygpt --steps 300 --out run1 --checkpoint-every 100 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from redline.transcript.format import Declaration, Init, Manifest

MODULE = "redline.transcript.tinygpt"
#: Default model size: about 0.1 M parameters.
MODEL_DEFAULTS: dict[str, Any] = {"vocab_size": 256, "seq_len": 64, "d_model": 64, "n_layer": 2, "n_head": 4,
                                  "dropout": 0.1}


class Block(nn.Module):
    """One pre-norm transformer block: causal self-attention and a GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_head: int, seq_len: int, dropout: float) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, 4 * d_model)
        self.out = nn.Linear(4 * d_model, d_model)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("mask", torch.ones(seq_len, seq_len, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // self.n_head))
        att = self.drop(att.masked_fill(self.mask[:t, :t], float("-inf")).softmax(dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class TinyGPT(nn.Module):
    """A decoder-only transformer over byte tokens."""

    def __init__(self, vocab_size: int, seq_len: int, d_model: int, n_layer: int, n_head: int,
                 dropout: float) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_head, seq_len, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.tok.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        x = self.drop(self.tok(idx) + self.pos(torch.arange(t, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def make_model(**kwargs: Any) -> TinyGPT:
    """The model factory entry point: ``MODEL_DEFAULTS`` updated with ``kwargs``."""
    unknown = set(kwargs) - set(MODEL_DEFAULTS)
    if unknown:
        raise TypeError(f"make_model() got unknown arguments {sorted(unknown)}")
    return TinyGPT(**{**MODEL_DEFAULTS, **kwargs})


@lru_cache(maxsize=1)
def corpus_tokens() -> torch.Tensor:
    """The shipped text as int64 byte tokens."""
    doc = json.loads(resources.files("redline.transcript").joinpath("corpus.json").read_text(encoding="utf-8"))
    return torch.tensor(list(doc["text"].encode("utf-8")), dtype=torch.int64)


class TextBatches:
    """Random windows of the corpus: batch ``p`` is fixed by ``(seed, p)`` alone."""

    def __init__(self, seed: int, batch_size: int, seq_len: int) -> None:
        self.seed = seed
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.tokens = corpus_tokens()
        if len(self.tokens) <= seq_len + 1:
            raise ValueError(f"seq_len {seq_len} is longer than the corpus")

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        """``input_ids`` and next-token ``labels``, each ``batch_size × seq_len`` int64."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + position) % (2**63))
        starts = torch.randint(0, len(self.tokens) - self.seq_len - 1, (self.batch_size, 1), generator=g)
        window = self.tokens[starts + torch.arange(self.seq_len + 1)]
        return {"input_ids": window[:, :-1].contiguous(), "labels": window[:, 1:].contiguous()}


def text_batches(seed: int, batch_size: int = 8, seq_len: int = 64) -> TextBatches:
    """The data source entry point."""
    return TextBatches(seed, batch_size, seq_len)


def train_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The train-step entry point: next-token cross-entropy of ``batch`` (moved to the model's device)."""
    device = next(model.parameters()).device
    logits = model(batch["input_ids"].to(device))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].to(device).reshape(-1))


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> Any:
    """The scheduler entry point: linear warm-up, then cosine decay to a tenth of the peak rate."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainConfig:
    """Everything one tiny-GPT run depends on."""

    steps: int
    seed: int = 0
    batch_size: int = 8
    model: dict[str, Any] = field(default_factory=dict)
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    party: str = "lab"  # who records the run: the run spec (and so every Merkle leaf) names it
    run_id: str = "tiny"

    def model_kwargs(self) -> dict[str, Any]:
        """The model factory's arguments."""
        return {**MODEL_DEFAULTS, **self.model}

    def optimizer_kwargs(self) -> dict[str, Any]:
        """AdamW's arguments."""
        return {"lr": self.lr, "betas": [0.9, 0.95], "weight_decay": self.weight_decay}

    def declaration(self) -> Declaration:
        """How a verifier rebuilds this run: redline's registered tiny-GPT factories, pinned."""
        from redline.transcript.factories import pin

        return Declaration(
            model_factory=pin("model_factory", "tinygpt", **self.model_kwargs()),
            optimizer=pin("optimizer", "adamw", **self.optimizer_kwargs()),
            scheduler=pin("scheduler", "tinygpt-warmup-cosine", warmup_steps=self.warmup_steps,
                          total_steps=self.steps),
            data_source=pin("data_source", "tinygpt-text", seed=self.seed, batch_size=self.batch_size,
                            seq_len=self.model_kwargs()["seq_len"]),
            train_step=pin("train_step", "tinygpt-next-token"),
            max_grad_norm=self.max_grad_norm)

    def init(self) -> Init:
        """A fresh initialisation from ``seed`` (what :func:`train` does)."""
        return Init(kind="fresh", seed=self.seed)


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    model: TinyGPT
    losses: list[float]
    seconds: float  # the whole run: recorder start, the loop, recorder close
    loop_seconds: float  # the training loop alone (with the recorder's per-step work and periodic checkpoints)
    manifest: Manifest | None


def seed_everything(seed: int) -> None:
    """Seed torch, Python ``random`` and NumPy."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass


def update(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, batch: dict[str, torch.Tensor],
           max_grad_norm: float) -> torch.Tensor:
    """One optimizer step of the declared update rule on ``batch``; returns the step's loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = train_step(model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    return loss


def train(cfg: TrainConfig, out: str | Path | None = None, *, checkpoint_every: int = 100, count_flop: bool = True,
          digests: Sequence[str] = ("sha256",), device: str = "cpu", record_thread: bool | None = None,
          on_step: Callable[[int, TinyGPT, torch.optim.Optimizer], None] | None = None,
          writer_idle: bool = False, on_start: Callable[[Any], None] | None = None) -> TrainResult:
    """Train a tiny GPT for ``cfg.steps`` steps, recording a transcript into ``out`` (none if ``out`` is None).

    The loop is the declared update rule, with the recorder's one line added. ``record_thread`` and
    ``writer_idle`` go to the :class:`~redline.transcript.recorder.Recorder`; ``on_start(recorder)`` is called
    once the recorder has written the run spec and checkpoint 0, before the first step (where a lab signs its
    ``RunStart``).
    """
    from redline.transcript.recorder import Recorder

    seed_everything(cfg.seed)
    model = make_model(**cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), **cfg.optimizer_kwargs())
    scheduler = make_scheduler(optimizer, cfg.warmup_steps, cfg.steps)
    source = text_batches(cfg.seed, cfg.batch_size, cfg.model_kwargs()["seq_len"])
    recorder = None
    if out is not None:
        recorder = Recorder(out, model, optimizer, party=cfg.party, run_id=cfg.run_id, init=cfg.init(),
                            scheduler=scheduler, declaration=cfg.declaration(),
                            checkpoint_every=checkpoint_every, count_flop=count_flop, digests=digests,
                            record_thread=record_thread, writer_idle=writer_idle)
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    if recorder is not None:
        recorder.start()
        if on_start is not None:
            from redline.transcript.torchstate import RngState

            rng = RngState.capture()  # checkpoint 0 holds the generators as they are now: keep them so
            on_start(recorder)
            rng.restore()
    loop_start = time.perf_counter()
    try:
        for position in range(cfg.steps):
            batch = source.batch(position)
            loss = update(model, optimizer, scheduler, batch, cfg.max_grad_norm)
            losses.append(loss.detach())
            if recorder is not None:
                recorder.step(batch, loss, position=position)
            if on_step is not None:
                on_step(position + 1, model, optimizer)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        loop_end = time.perf_counter()
    except BaseException as exc:
        if recorder is not None:
            recorder.__exit__(type(exc), exc, exc.__traceback__)
        raise
    manifest = recorder.close() if recorder is not None else None
    end = time.perf_counter()
    return TrainResult(model, [float(x) for x in losses], end - start, loop_end - loop_start, manifest)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train and record a tiny GPT."""
    p = argparse.ArgumentParser(prog="python -m redline.transcript.tinygpt",
                                description="Train a tiny GPT on CPU and record a redline training transcript.")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps to train")
    p.add_argument("--out", type=Path, required=True, help="transcript directory to create (must not exist)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint every K steps (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights, dropout and data order")
    p.add_argument("--party", default="lab", help="the party that will declare the run (default 'lab')")
    p.add_argument("--run-id", default="tiny", help="the run's ID as its RunStart will declare it (default 'tiny')")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per batch (default 8)")
    p.add_argument("--seq-len", type=int, default=MODEL_DEFAULTS["seq_len"], help="tokens per sequence")
    p.add_argument("--d-model", type=int, default=MODEL_DEFAULTS["d_model"], help="model width")
    p.add_argument("--layers", type=int, default=MODEL_DEFAULTS["n_layer"], help="transformer blocks")
    p.add_argument("--heads", type=int, default=MODEL_DEFAULTS["n_head"], help="attention heads")
    p.add_argument("--blake3", action="store_true", help="also record BLAKE3 digests of checkpoints")
    p.add_argument("--no-flop", action="store_true", help="do not count the first step's FLOP")
    p.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    p.add_argument("--deterministic", action="store_true",
                   help="torch.use_deterministic_algorithms(True) (recorded; needed for bitwise replay on CUDA)")
    args = p.parse_args(argv)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    cfg = TrainConfig(steps=args.steps, seed=args.seed, batch_size=args.batch_size, party=args.party,
                      run_id=args.run_id,
                      model={"seq_len": args.seq_len, "d_model": args.d_model, "n_layer": args.layers,
                             "n_head": args.heads})
    result = train(cfg, args.out, checkpoint_every=args.checkpoint_every, count_flop=not args.no_flop,
                   digests=("sha256", "blake3") if args.blake3 else ("sha256",), device=args.device)
    m = result.manifest
    assert m is not None
    print(f"trained {args.steps} steps in {result.seconds:.2f} s, loss {result.losses[0]:.3f} -> "
          f"{result.losses[-1]:.3f}")
    print(f"transcript {args.out}: {len(m.checkpoints)} checkpoints, {m.parameter_count} parameters, "
          f"{m.tokens} tokens" + (f", {m.flop.per_step:.4g} FLOP per step (counted)" if m.flop else ""))
    c = m.commitments
    print(f"steps_root {c.steps_root}\ndata_root {c.data_root}\ncheckpoints_root {c.checkpoints_root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
