"""Operation counting: exact FLOP counts of a real training step, and the analytic count of a GPT.

``FlopCounter`` wraps ``torch.utils.flop_counter.FlopCounterMode`` (torch 2.13) and
adds what a compute declaration needs from it:

- the count split by phase: ``forward`` (grad enabled, outside the autograd engine),
  ``backward`` (run by the autograd engine, activation recomputation included) and
  ``no_grad`` (grad disabled: an optimizer step, evaluation, a frozen teacher);
- a per-module and per-operator breakdown (FlopCounterMode's own module tracker);
- corrections for operators FlopCounterMode runs but counts as zero. On CPU,
  ``F.scaled_dot_product_attention`` runs ``aten._scaled_dot_product_flash_attention_for_cpu``
  (and its backward), which FlopCounterMode 2.13 has no formula for: the whole
  attention would be missing. The inference fast paths of ``nn.MultiheadAttention`` and
  ``nn.TransformerEncoderLayer`` (one fused operator each) and matrix-vector products
  (``mv``, ``addmv``, ``dot``, ``vdot``) are missing too. ``FlopCounter`` counts these
  with the same formulas FlopCounterMode uses for the GPU attention kernels and ``mm``;
- a list of matmul-like operators that ran and were *still* not counted (for example
  ``_grouped_mm``, the grouped GEMM of mixture-of-experts layers), so a gap is visible
  instead of silent.

Conventions (those of FlopCounterMode): one multiply-accumulate is 2 FLOP; only
matrix products, convolutions and attention are counted; elementwise operations,
normalisation, softmax, the loss, embedding lookups (gathers) and their backward
(scatter-adds), and optimizer updates count zero. Attention is counted as the full
``T × T`` score matrix even under a causal mask (see ``causal_attention_fraction``),
and the fused attention backward counts the recomputation of the score matrix
(5 matmuls against the forward's 2).

torch is imported inside the functions here, never at import time.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from redline.errors import MalformedInput

PHASES = ("forward", "backward", "no_grad")

#: Matmul-like aten operators that FlopCounterMode 2.13 counts as zero. Those with a
#: correction in ``corrections`` are counted by ``FlopCounter``; the rest are reported
#: in ``StepFlops.uncounted_ops`` whenever they run.
MATMUL_LIKE_UNCOUNTED = (
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_fused_attention_overrideable",
    "_scaled_dot_product_fused_attention_overrideable_backward",
    "_native_multi_head_attention", "_transformer_encoder_layer_fwd",
    "mv", "addmv", "dot", "vdot", "addr", "addbmm",
    "_grouped_mm", "_scaled_grouped_mm", "_int_mm", "_weight_int4pack_mm", "_weight_int8pack_mm",
)


def _frozen(d: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(d.items())))


@dataclass(frozen=True)
class StepFlops:
    """FLOP counted over one step (or, summed, over many): by phase, module and operator."""

    forward: int = 0
    backward: int = 0
    no_grad: int = 0
    by_module: Mapping[str, int] = field(default_factory=dict)
    by_op: Mapping[str, int] = field(default_factory=dict)
    uncounted_ops: Mapping[str, int] = field(default_factory=dict)
    steps: int = 1
    #: False when the phase split could not be exact (``torch.cond``: FlopCounterMode counts the
    #: larger branch); the remainder is then put in ``forward`` so the phases still sum to the total.
    phases_exact: bool = True

    @property
    def total(self) -> int:
        """All FLOP counted: forward + backward + no_grad."""
        return self.forward + self.backward + self.no_grad

    def __add__(self, other: StepFlops) -> StepFlops:
        if not isinstance(other, StepFlops):
            return NotImplemented

        def merge(a: Mapping[str, int], b: Mapping[str, int]) -> Mapping[str, int]:
            out = dict(a)
            for k, v in b.items():
                out[k] = out.get(k, 0) + v
            return _frozen(out)

        return StepFlops(self.forward + other.forward, self.backward + other.backward,
                         self.no_grad + other.no_grad, merge(self.by_module, other.by_module),
                         merge(self.by_op, other.by_op), merge(self.uncounted_ops, other.uncounted_ops),
                         self.steps + other.steps, self.phases_exact and other.phases_exact)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {"forward": self.forward, "backward": self.backward, "no_grad": self.no_grad,
                "total": self.total, "steps": self.steps, "by_module": dict(self.by_module),
                "by_op": dict(self.by_op), "uncounted_ops": dict(self.uncounted_ops),
                "phases_exact": self.phases_exact}


# --- corrections ------------------------------------------------------------------------------


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape)


def corrections() -> dict[Any, Callable[..., int]]:
    """Raw formulas (``f(*args, out_val=..., **kwargs) -> int``) for operators FlopCounterMode misses."""
    import torch
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def cpu_sdpa(query, key, value, *args, out_val=None, **kwargs) -> int:
        return sdpa_flop_count(_shape(query), _shape(key), _shape(value))

    def cpu_sdpa_backward(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
        return sdpa_backward_flop_count(_shape(grad_out), _shape(query), _shape(key), _shape(value))

    def mv(mat, vec, *args, out_val=None, **kwargs) -> int:
        m, n = _shape(mat)
        return 2 * m * n

    def addmv(bias, mat, vec, *args, out_val=None, **kwargs) -> int:
        return mv(mat, vec)

    def dot(a, b, *args, out_val=None, **kwargs) -> int:
        return 2 * _shape(a)[0]

    def _mha(query, key, embed_dim: int) -> int:
        # nn.MultiheadAttention's fast path: Q, K, V projections, scores, weighted sum, output projection
        e = embed_dim
        q_rows = math.prod(_shape(query)) // e
        k_rows = math.prod(_shape(key)) // e
        k_len = _shape(key)[-2] if len(_shape(key)) > 1 else 1
        return 2 * q_rows * e * e + 2 * 2 * k_rows * e * e + 2 * 2 * q_rows * k_len * e + 2 * q_rows * e * e

    def native_mha(query, key, value, embed_dim, *args, out_val=None, **kwargs) -> int:
        return _mha(query, key, int(embed_dim))

    def encoder_layer(src, embed_dim, *args, out_val=None, **kwargs) -> int:
        # nn.TransformerEncoderLayer's fast path: self-attention, then the two feed-forward matmuls
        ffn_weight_1 = args[12] if len(args) > 12 else kwargs["ffn_weight_1"]
        rows = math.prod(_shape(src)) // int(embed_dim)
        return _mha(src, src, int(embed_dim)) + 2 * 2 * rows * int(embed_dim) * _shape(ffn_weight_1)[0]

    return {aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_sdpa_backward,
            aten._native_multi_head_attention: native_mha, aten._transformer_encoder_layer_fwd: encoder_layer,
            aten.mv: mv, aten.addmv: addmv, aten.dot: dot, aten.vdot: dot}


def _phase() -> str:
    import torch

    if torch._C._current_autograd_node() is not None:
        return "backward"
    return "forward" if torch.is_grad_enabled() else "no_grad"


class FlopCounter:
    """Count the FLOP of the code run inside ``with FlopCounter() as fc:``; read ``fc.result``.

    ``corrections`` (default on) counts the operators FlopCounterMode misses on CPU
    (attention, matrix-vector products); turn it off to see FlopCounterMode's raw
    count. ``extra_formulas`` maps aten operator packets to raw formulas
    ``f(*args, out_val=None, **kwargs) -> int`` for anything else you know how to
    count. Not re-entrant; use one counter per step, or the same one step after step
    (each ``with`` starts from zero; add ``StepFlops`` to total them).
    """

    def __init__(self, *, corrections: bool = True,
                 extra_formulas: Mapping[Any, Callable[..., int]] | None = None) -> None:
        self.corrections = corrections
        self.extra_formulas = dict(extra_formulas or {})
        self._result: StepFlops | None = None
        self._stack: list[Any] = []

    def _mapping(self, phases: dict[str, int]) -> dict[Any, Callable[..., int]]:
        from torch.utils.flop_counter import flop_registry

        formulas: dict[Any, Callable[..., int]] = dict(flop_registry)  # already take raw args
        if self.corrections:
            formulas.update(corrections())
        formulas.update(self.extra_formulas)

        def wrap(formula: Callable[..., int]) -> Callable[..., int]:
            def counted(*args: Any, out_val: Any = None, **kwargs: Any) -> int:
                n = int(formula(*args, out_val=out_val, **kwargs))
                phases[_phase()] += n
                return n
            counted._get_raw = True  # type: ignore[attr-defined]  # FlopCounterMode: pass raw args
            return counted

        return {op: wrap(f) for op, f in formulas.items()}

    def __enter__(self) -> FlopCounter:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils.flop_counter import FlopCounterMode

        if self._stack:
            raise RuntimeError("FlopCounter is not re-entrant")
        self._result = None
        self._phases: dict[str, int] = dict.fromkeys(PHASES, 0)
        self._uncounted: dict[str, int] = defaultdict(int)
        mapping = self._mapping(self._phases)
        counted_ops = set(mapping)
        watched = set(MATMUL_LIKE_UNCOUNTED)
        uncounted = self._uncounted

        class _Watch(TorchDispatchMode):
            """Below FlopCounterMode: sees each operator it runs after decomposition."""

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
                packet = func._overloadpacket
                if packet not in counted_ops and packet.__name__ in watched:
                    uncounted[packet.__name__] += 1
                return func(*args, **(kwargs or {}))

        watch = _Watch()
        mode = FlopCounterMode(display=False, custom_mapping=mapping)
        watch.__enter__()
        self._stack.append(watch)
        try:
            mode.__enter__()
        except BaseException:
            self._stack.pop().__exit__(None, None, None)
            raise
        self._stack.append(mode)
        self._mode = mode
        return self

    def __exit__(self, *exc: Any) -> None:
        mode, watch = self._stack.pop(), self._stack.pop()
        try:
            mode.__exit__(*exc)
        finally:
            watch.__exit__(*exc)
        counts = mode.get_flop_counts()
        by_module = {name: sum(ops.values()) for name, ops in counts.items() if name != "Global"}
        by_op = {str(op).removeprefix("aten."): n for op, n in counts.get("Global", {}).items()}
        by_op = {k: v for k, v in by_op.items() if v}
        total = sum(counts.get("Global", {}).values())
        phases = dict(self._phases)
        exact = total == sum(phases.values())  # every counted FLOP went through one of our wrappers...
        if not exact:  # ...except under torch.cond, which FlopCounterMode counts as the larger branch
            phases["forward"] = max(0, total - phases["backward"] - phases["no_grad"])
        self._result = StepFlops(phases["forward"], phases["backward"], phases["no_grad"],
                                 _frozen(by_module), _frozen(by_op), _frozen(self._uncounted),
                                 phases_exact=exact)

    @property
    def result(self) -> StepFlops:
        """The count of the last completed ``with`` block."""
        if self._result is None:
            raise RuntimeError("FlopCounter.result is read after the with block")
        return self._result


def count_step_flop(fn: Callable[..., Any], *args: Any, corrections: bool = True, **kwargs: Any) -> StepFlops:
    """Run ``fn(*args, **kwargs)`` (one training step: forward, backward, optimizer) and count its FLOP."""
    with FlopCounter(corrections=corrections) as counter:
        fn(*args, **kwargs)
    return counter.result


class RunFlops:
    """Running total over the steps of a run: ``with run.step(): ...`` per step."""

    def __init__(self, *, corrections: bool = True) -> None:
        self.corrections = corrections
        self.per_step: list[StepFlops] = []

    @contextmanager
    def step(self) -> Iterator[FlopCounter]:
        """Count one step and add it to the total."""
        counter = FlopCounter(corrections=self.corrections)
        with counter:
            yield counter
        self.per_step.append(counter.result)

    @property
    def total(self) -> StepFlops:
        """The sum of all steps counted so far (``steps`` = their number)."""
        acc = StepFlops(steps=0)
        for s in self.per_step:
            acc = acc + s
        return acc


# --- the analytic count of a GPT-style decoder ------------------------------------------------


@dataclass(frozen=True)
class GPTShape:
    """A GPT-style decoder: token and position embeddings, ``n_layer`` pre-norm blocks
    (QKV projection, attention, output projection, two-matmul MLP), LM head."""

    vocab_size: int
    n_layer: int
    n_head: int
    d_model: int
    d_ff: int | None = None  # default 4 · d_model
    tied_embeddings: bool = False
    bias: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layer", "n_head", "d_model"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise MalformedInput(f"GPTShape.{name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_head:
            raise MalformedInput(f"GPTShape: d_model {self.d_model} is not a multiple of n_head {self.n_head}")

    @property
    def ff(self) -> int:
        """The MLP's hidden width."""
        return self.d_ff if self.d_ff is not None else 4 * self.d_model

    def parameters(self, context: int) -> dict[str, int]:
        """Parameter counts by part (``context`` sizes the learned position embedding)."""
        d, ff, L, V = self.d_model, self.ff, self.n_layer, self.vocab_size
        matmul = L * (3 * d * d + d * d + 2 * d * ff)
        biases = L * (3 * d + d + ff + d) if self.bias else 0
        norms = L * 2 * 2 * d + 2 * d  # two LayerNorms per block and a final one, weight and bias
        return {"token_embedding": V * d, "position_embedding": context * d, "block_matmul": matmul,
                "block_bias": biases, "layer_norm": norms, "lm_head": 0 if self.tied_embeddings else V * d}


def causal_attention_fraction(seq: int) -> float:
    """Share of a ``seq × seq`` score matrix a causal mask keeps: ``(seq + 1) / (2 · seq)``, about one half."""
    return (seq + 1) / (2 * seq)


@dataclass(frozen=True)
class AnalyticFlops:
    """FLOP of one training step of a GPT by term: ``terms[name] = (forward, backward)``."""

    terms: Mapping[str, tuple[int, int]]

    @property
    def forward(self) -> int:
        return sum(f for f, _ in self.terms.values())

    @property
    def backward(self) -> int:
        return sum(b for _, b in self.terms.values())

    @property
    def total(self) -> int:
        return self.forward + self.backward


def gpt_step_flop(shape: GPTShape, batch: int, seq: int, *, fused_attention: bool = False,
                  causal: bool = False) -> AnalyticFlops:
    """The analytic FLOP of one forward and backward pass over ``batch × seq`` tokens.

    Forward, 2 FLOP per multiply-accumulate, ``n = batch · seq`` tokens:
    embedding 0 (a gather); per layer QKV ``2·n·d·3d``, scores ``2·batch·seq²·d``,
    weighted sum ``2·batch·seq²·d``, output projection ``2·n·d·d``, MLP ``2·n·d·ff·2``;
    LM head ``2·n·d·V``. Backward is twice the forward for every matmul (the gradient
    of each input and of the weight); with ``fused_attention`` (a flash-style kernel, as
    ``F.scaled_dot_product_attention``) the attention backward also recomputes the
    scores: 5 matmuls against 2, i.e. 2.5× its forward. ``causal=True`` counts only the
    unmasked half of the score matrix (useful work, not what FlopCounterMode counts).
    Not counted, on either side: normalisation, softmax, activations, residual adds,
    the loss, the embedding backward and the optimizer.
    """
    for name, v in (("batch", batch), ("seq", seq)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise MalformedInput(f"{name} must be a positive integer, got {v!r}")
    d, ff, L, V = shape.d_model, shape.ff, shape.n_layer, shape.vocab_size
    n = batch * seq
    attn_scale = causal_attention_fraction(seq) if causal else 1.0
    scores = round(L * 2 * batch * seq * seq * d * attn_scale)
    attn_bwd = 2.5 if fused_attention else 2.0
    terms = {
        "embedding": (0, 0),
        "qkv": (L * 2 * n * d * 3 * d, 2 * L * 2 * n * d * 3 * d),
        "attention_scores": (scores, round(attn_bwd * scores)),
        "attention_values": (scores, round(attn_bwd * scores)),
        "attention_proj": (L * 2 * n * d * d, 2 * L * 2 * n * d * d),
        "mlp": (L * 2 * n * d * ff * 2, 2 * L * 2 * n * d * ff * 2),
        "lm_head": (2 * n * d * V, 2 * 2 * n * d * V),
    }
    return AnalyticFlops(MappingProxyType(terms))


__all__ = ["MATMUL_LIKE_UNCOUNTED", "PHASES", "AnalyticFlops", "FlopCounter", "GPTShape", "RunFlops", "StepFlops",
           "causal_attention_fraction", "count_step_flop", "gpt_step_flop"]
