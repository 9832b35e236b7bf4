"""The ``compute`` check: the run's FLOP counted over every step, its tokens recomputed, and both cross-checked.

:func:`compute_check` decides whether a transcript's declared compute is the compute its declared update rule
does on its committed data. It is a pure function of the transcript, the declaration and this machine's
installed, pinned code; it reads the transcript, re-creates batches from the declared data source and replays
single steps, and restores the caller's generator states and deterministic-algorithms flag.

1. **Tokens, per step.** Every step's batch is re-created from the declared data source (the ``data`` check's
   pass: :func:`scan_batches`, which also checks each batch's committed digest) and its tokens recounted with the
   recorder's rule (``count_tokens(batch_tensors(batch))``: the elements of every ``input_ids``, else of the
   first integer tensor). A step record that claims another count fails the check, naming the step.
2. **FLOP, per batch shape.** Steps are grouped by their batch's *shape signature* (the names, dtypes and shapes
   of its tensors). For each signature one full declared step (``zero_grad``, ``train_step``, ``backward``, clip,
   ``optimizer.step``, ``scheduler.step``) is replayed under :class:`redline.compute.flops.FlopCounter`, with
   that signature's first batch, from the committed checkpoint that opens the step's segment (weights do not
   change the count). The run's count is Σ count(signature) × steps with that signature: a run cannot hide
   large batches behind small ones where a single step is counted. A second step of each signature that has
   more than one (drawn from ``seed``, else its last) is counted too, and must count the same: FLOP that depends
   on a batch's content rather than its shapes (data-dependent routing) cannot be measured one step per shape.
3. **Operators.** Every ATen operator those steps execute is recorded (a ``TorchDispatchMode`` under the
   counter). One FlopCounterMode counts (or ``FlopCounter`` corrects) is fine; one in
   :data:`ALLOWED_OPERATORS`, a documented list of operators that do no arithmetic worth counting, is fine;
   any other fails the check, named: a custom kernel registered as an operator does work nobody counted.
4. **6·N·D.** N is read from the final checkpoint (its floating-point ``model.*`` tensors; tensors with
   identical dtype, shape and bytes counted once — a tied embedding and LM head are stored as two equal
   copies); D is the recomputed token total. A dense transformer's matmuls do 6 FLOP per parameter per token
   (2 forward, 4 backward) for every parameter that takes part in a matmul, and FlopCounterMode counts those
   matmuls exactly, plus attention's. Measured, the tiny GPT counts 1.002 × 6·N·D (d_model 16, one layer,
   16 tokens) and 1.087 × at its defaults (d_model 64, two layers, 64 tokens). What FlopCounterMode never sees
   in an honest dense model is the parameters outside matmuls: an untied input embedding (a gather), norms,
   biases, position embeddings. By ``redline.compute.flops.gpt_step_flop``, GPT-2 small (tied) gives 1.14 ×;
   untied Pythia-shaped models 0.75 × (14 M, 2,048 tokens) and 0.80 × (70 M); the worst honest shape tried,
   the 14 M one at 128 tokens (half of N is its input embedding), 0.555 ×. Frozen weights still cost 4 of the
   6 FLOP (forward and input gradient). So a count below :data:`MIN_SIX_ND_SHARE` (one half) of 6·N·D
   fails: the model does matmul-class work the counter does not see — custom kernels that bypass the
   dispatcher (a Triton kernel launched from an ``autograd.Function``, a C extension called directly) or
   products written as elementwise multiply + sum, which point 3 cannot catch because ``mul`` and ``sum`` are
   allowed. Sparse models are outside this bound: a mixture of experts counts its *active* share of 6·N·D
   (e.g. 2 of 8 experts ≈ 0.3) and fails here until N is taken as its active parameters.
5. **The declaration.** ``RunFinish.flop_estimates.counted`` (else ``total_flop``) against the counted total
   over all steps; ``RunProgress.flop_so_far`` against the counted total over steps 1..step; without a
   declaration, the manifest's ``flop.per_step × steps``. They must agree within ``flop_tolerance``, 1 % by
   default (:data:`FLOP_TOLERANCE`).

**Why 1 %.** A FLOP count is not a measurement: FlopCounterMode applies fixed formulas to operator shapes, so
once every batch shape is counted, the same transcript and code give the same integer every time, on any
machine of the recording's device type and torch version (the device type picks the attention kernel, whose
formula differs). There is no noise for a tolerance to absorb; what a tolerance buys is room for a declared
figure rounded for the statement (or written as a float) — and every per cent of slack is compute a lab may
leave undeclared with impunity. The former ±30 % let a run declare 0.701 × its compute and pass; at 1 % the
most a lab gains by under-declaring is 1 %. A lab therefore declares a count made this way (``FlopCounter``,
per shape): the manifest's ``flop.per_step`` (raw FlopCounterMode on the first step) is that count only for a
run whose batches all have one shape and that runs no operator ``FlopCounter`` corrects (CPU fused attention).

What this check cannot see: FLOP-heavy work among activations written with allowed elementwise operators
(attention scores as multiply + sum) hides below the 6·N·D floor when the parameter matmuls are honest; and a
compute-shaping dependence on the data that the two counted steps of a signature happen not to show.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from redline.errors import MalformedInput, UntrustedCode
from redline.statements.verification import Check
from redline.transcript.transcript import Transcript, load_transcript

if TYPE_CHECKING:
    from redline.statements.runs import RunFinish, RunProgress

#: Counted and declared FLOP must agree within this share of the counted figure (see the module docstring).
FLOP_TOLERANCE = 0.01
#: The counted total must be at least this share of 6·N·D (see the module docstring).
MIN_SIX_ND_SHARE = 0.5
#: At most this many characters of detail in the check (``Check.detail`` holds 4096).
_DETAIL = 4000


def _ops(names: str, namespace: str = "aten") -> frozenset[str]:
    return frozenset(f"{namespace}::{n}" for n in names.split())


#: Operators that do no floating-point arithmetic worth counting, by family, as ``namespace::name`` (overloads
#: included). FlopCounterMode's own convention counts every one of them as zero; they are listed so that an
#: operator nobody considered fails the check instead of being counted as zero in silence. The families cover
#: what the tiny GPT's step runs with AdamW, Adam or SGD (single-tensor, ``foreach`` and ``fused``
#: implementations) and gradient clipping, and their close relatives in common dense transformers.
ALLOWED_OPERATORS: Mapping[str, frozenset[str]] = MappingProxyType({
    # Views and metadata: they alias storage or read one scalar back to Python (``item()``); no arithmetic.
    "views": _ops("view _unsafe_view _reshape_alias reshape alias detach t transpose permute expand expand_as "
                  "slice select split split_with_sizes unbind chunk narrow squeeze unsqueeze as_strided unfold "
                  "view_as diagonal _local_scalar_dense lift_fresh"),
    # Allocation, initialisation, copies, dtype and device casts, concatenation: memory traffic only.
    "copies": _ops("empty empty_like empty_strided zeros zeros_like ones ones_like full full_like new_empty "
                   "new_empty_strided new_zeros new_ones new_full scalar_tensor arange fill_ zero_ clone copy_ "
                   "_to_copy _copy_from lift_fresh_copy cat stack"),
    # Indexing, gathers and scatters, embedding lookups: they move elements. The scatter-adds among them
    # (``embedding_dense_backward``, the backward of a lookup; ``index_put_`` with accumulate; ``index_add_``)
    # add each moved element once — O(elements), never a multiply-accumulate over a width. ``nonzero`` and
    # ``masked_select`` (boolean indexing) give data-dependent shapes: the second counted step of each batch
    # shape is there to notice when that changes the count.
    "indexing": _ops("index index_select gather scatter scatter_ scatter_add scatter_add_ index_put index_put_ "
                     "_index_put_impl_ index_add index_add_ masked_fill masked_fill_ where embedding "
                     "embedding_dense_backward slice_backward select_backward nonzero masked_select"),
    # Random draws: dropout masks (``bernoulli_`` on CPU, ``native_dropout`` on accelerators), initialisers.
    "random": _ops("bernoulli bernoulli_ native_dropout native_dropout_backward rand rand_like randn randn_like "
                   "randint uniform_ normal_"),
    # Elementwise arithmetic and comparisons: a few FLOP per output element, against the matmuls' 2 per
    # multiply-accumulate over a whole width. (A matmul written as a broadcast ``mul`` then ``sum`` is built
    # from these; the 6·N·D floor, not this list, catches it.)
    "elementwise": _ops("add add_ sub sub_ rsub mul mul_ div div_ neg neg_ reciprocal reciprocal_ sqrt sqrt_ "
                        "rsqrt rsqrt_ pow pow_ exp exp_ log log_ abs clamp clamp_ clamp_min clamp_min_ clamp_max "
                        "maximum minimum lerp lerp_ addcmul addcmul_ addcdiv addcdiv_ sign sgn eq ne lt le gt ge "
                        "logical_not logical_and logical_or isnan isinf isfinite"),
    # Activations and their gradients: elementwise (GELU, ReLU, SiLU, sigmoid, tanh).
    "activations": _ops("gelu gelu_backward relu relu_ threshold_backward silu silu_ silu_backward sigmoid "
                        "sigmoid_backward tanh tanh_backward"),
    # Normalisation, softmax and the loss, with their backward: a fixed few FLOP per element (a mean, a
    # variance, a scale; an exp and a sum; a log and a gather).
    "normalisation-softmax-loss": _ops(
        "native_layer_norm native_layer_norm_backward _fused_rms_norm _fused_rms_norm_backward _softmax "
        "_softmax_backward_data _log_softmax _log_softmax_backward_data nll_loss_forward nll_loss_backward"),
    # Reductions: one add (or compare) per input element, among them the gradient-norm reductions of clipping;
    # and the compare-only selections (top-k, sort, arg-max) a router uses.
    "reductions": _ops("sum mean amax amin max min norm linalg_vector_norm _foreach_norm topk sort argmax argmin"),
    # Optimizer updates and gradient clipping (single-tensor ops are above; these are the ``foreach`` and
    # ``fused`` implementations): elementwise over the parameters, O(N) per step against ≥ 6·N per token.
    "optimizer": _ops("_foreach_add _foreach_add_ _foreach_sub _foreach_sub_ _foreach_mul _foreach_mul_ "
                      "_foreach_div _foreach_div_ _foreach_lerp_ _foreach_addcmul_ _foreach_addcdiv_ _foreach_sqrt "
                      "_foreach_sqrt_ _foreach_neg _foreach_neg_ _foreach_reciprocal_ _foreach_pow _foreach_maximum_ "
                      "_foreach_copy_ _foreach_zero_ _fused_adam_ _fused_adamw_ _fused_sgd_"),
    # Profiler annotations (``optimizer.step`` runs inside ``record_function``): no tensor is computed.
    "profiler": _ops("_record_function_enter _record_function_enter_new _record_function_exit", "profiler"),
})

#: Every allow-listed operator, whatever its family.
ALLOWED: frozenset[str] = frozenset().union(*ALLOWED_OPERATORS.values())


def operator_name(op: Any) -> str:
    """``namespace::name`` of an operator (an ``OpOverload``, its packet, or a higher-order operator)."""
    schema = getattr(op, "_schema", None)
    if schema is not None:
        return str(schema.name)
    qualified = getattr(op, "_qualified_op_name", None)
    if qualified is not None:
        return str(qualified)
    name = getattr(op, "name", None)
    return str(name() if callable(name) else op)


def counted_operators() -> frozenset[str]:
    """Operators whose FLOP ``FlopCounter`` counts: FlopCounterMode's registry and FlopCounter's corrections."""
    from torch.utils.flop_counter import flop_registry

    from redline.compute.flops import corrections  # the formulas FlopCounter adds to FlopCounterMode's

    return frozenset(operator_name(op) for op in (*flop_registry, *corrections()))


# --- batch shapes, tokens and digests: one pass over the data source --------------------------------------


@dataclass(frozen=True)
class BatchShape:
    """A batch's shape signature: ``(name, dtype code, shape)`` of each of its tensors, sorted by name."""

    tensors: tuple[tuple[str, str, tuple[int, ...]], ...]

    @classmethod
    def of(cls, tensors: Mapping[str, Any]) -> BatchShape:
        """The signature of named tensors (``batch_tensors(batch)``)."""
        from redline.transcript.torchstate import dtype_code

        return cls(tuple(sorted((name, dtype_code(t, name), tuple(int(d) for d in t.shape))
                                for name, t in tensors.items())))

    def __str__(self) -> str:
        return ", ".join(f"{n} {d}[{','.join(map(str, s))}]" for n, d, s in self.tensors) or "(no tensors)"

    def to_json(self) -> list[dict[str, Any]]:
        """JSON: ``[{"name", "dtype", "shape"}, ...]``."""
        return [{"name": n, "dtype": d, "shape": list(s)} for n, d, s in self.tensors]


@dataclass(frozen=True)
class BatchScan:
    """What re-creating every step's batch from the declared data source gave, in step order.

    ``digests``, ``tokens`` and ``shape_index`` (into ``shapes``, the distinct signatures in order of first
    use) hold one entry per step read; the scan stops at the first step whose batch is not the committed one,
    and ``problem`` is then the failed (or, for code that cannot be loaded here, inconclusive) ``data`` check.
    """

    source: str
    step_count: int
    digests: tuple[str, ...]
    tokens: tuple[int, ...]
    shapes: tuple[BatchShape, ...]
    shape_index: tuple[int, ...]
    problem: Check | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every step's batch was re-created and matched its committed digest."""
        return self.problem is None and len(self.digests) == self.step_count

    def data_check(self) -> Check:
        """The ``data`` check this scan decides (the same outcome and wording as ``redline.verify.data_check``)."""
        if self.problem is not None:
            return self.problem
        return Check(name="data", passed=True,
                     detail=f"all {self.step_count} batches re-read from {self.source} match the committed digests")


def scan_batches(t: Transcript) -> BatchScan:
    """Re-create every step's batch from the declared data source: its digest (checked against the committed
    one, in the declared order), its tokens (the recorder's rule) and its shape signature, in one pass.

    This is the ``data`` check's pass with the token count and the signature added: a verifier that calls it
    gets the ``data`` check from :meth:`BatchScan.data_check` and passes the scan to :func:`compute_check`, so
    each batch is created and hashed once.
    """
    from redline.transcript import factories
    from redline.transcript.digest import tensors_digest
    from redline.transcript.torchstate import batch_tensors, count_tokens, from_json, iter_tensors

    began = time.perf_counter()
    ep = t.manifest.declaration.data_source
    digests: list[str] = []
    tokens: list[int] = []
    index: list[int] = []
    shapes: dict[BatchShape, int] = {}

    def done(problem: Check | None) -> BatchScan:
        return BatchScan(ep.name if ep is not None else "", t.step_count, tuple(digests), tuple(tokens),
                         tuple(shapes), tuple(index), problem, time.perf_counter() - began)

    if ep is None:
        return done(Check(name="data", passed=False, detail="the transcript declares no data source"))
    try:
        source = factories.load("data_source", ep)(seed=ep.seed, **from_json(ep.kwargs, {}))
        for expected, rec in enumerate(t.data):
            if rec.position != expected:
                return done(Check(name="data", passed=False,
                                  detail=f"step {rec.step}: consumed the batch at position {rec.position}, but the "
                                         f"declared data order puts position {expected} there"))
            tensors = batch_tensors(source.batch(rec.position))
            got = tensors_digest(iter_tensors(tensors))
            if got != rec.batch["sha256"]:
                return done(Check(name="data", passed=False,
                                  detail=f"step {rec.step}: the data source's batch at position {rec.position} has "
                                         f"digest {got}, the transcript commits to {rec.batch['sha256']}"))
            digests.append(got)
            tokens.append(count_tokens(tensors))
            index.append(shapes.setdefault(BatchShape.of(tensors), len(shapes)))
    except UntrustedCode as exc:
        return done(Check(name="data", passed=False, inconclusive=True, detail=str(exc)[:_DETAIL]))
    except Exception as exc:  # noqa: BLE001 - the declared source cannot produce the committed data
        return done(Check(name="data", passed=False, detail=f"{type(exc).__name__}: {exc}"[:_DETAIL]))
    return done(None)


# --- N from the final checkpoint ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterCount:
    """N as read from a checkpoint's ``model.*`` tensors.

    ``count``: elements of the floating-point tensors, each distinct tensor once — a tensor whose dtype, shape
    and bytes equal an earlier one's (by name) is a tied copy (``shared`` maps it to that one). Non-floating
    tensors (masks, counters, position ids) are ``skipped``: autograd trains floating-point tensors only.
    """

    count: int
    stored: int  # elements of the floating-point model tensors before tied copies were removed
    shared: Mapping[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "stored": self.stored, "shared": dict(self.shared),
                "skipped": list(self.skipped)}


def checkpoint_parameter_count(path: str | Path) -> ParameterCount:
    """N of the model in the checkpoint file ``path`` (see :class:`ParameterCount`); read with safetensors.

    Only tensors that share a dtype and shape with another are read to compare their bytes.
    """
    import hashlib

    from safetensors import safe_open

    from redline.transcript.torchstate import raw_bytes

    with safe_open(str(path), framework="pt") as f:
        names = sorted(k for k in f.keys() if k.startswith("model."))  # noqa: SIM118 - safe_open is no dict
        groups: dict[tuple[str, tuple[int, ...]], list[str]] = {}
        skipped, sizes = [], {}
        for name in names:
            sl = f.get_slice(name)
            dtype, shape = str(sl.get_dtype()), tuple(int(d) for d in sl.get_shape())
            if not dtype.startswith(("F", "BF")):  # safetensors codes: F16 F32 F64 BF16 F8_*; I*, U*, BOOL skipped
                skipped.append(name[6:])
                continue
            sizes[name] = math.prod(shape)
            groups.setdefault((dtype, shape), []).append(name)
        shared: dict[str, str] = {}
        for members in groups.values():
            if len(members) < 2:
                continue
            first: dict[str, str] = {}
            for name in members:
                digest = hashlib.sha256(raw_bytes(f.get_tensor(name))).hexdigest()
                if digest in first:
                    shared[name[6:]] = first[digest][6:]
                else:
                    first[digest] = name
    stored = sum(sizes.values())
    return ParameterCount(stored - sum(sizes["model." + n] for n in shared), stored,
                          MappingProxyType(dict(sorted(shared.items()))), tuple(skipped))


# --- counting one step ---------------------------------------------------------------------------------------


def _operator_log() -> Any:
    """A dispatch mode that records every operator executed below whatever modes are entered after it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OperatorLog(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def,override]
            name = operator_name(func)
            self.seen[name] = self.seen.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    return OperatorLog()


class _DeclaredStep:
    """The declared model, optimizer, scheduler, train step and data source, built once from the registered,
    pinned factories (as ``replay_segment`` builds them), to run single steps from committed checkpoints.

    Factories are loaded through ``redline.transcript.factories.load`` at call time.
    """

    def __init__(self, t: Transcript, device: str) -> None:
        import torch

        from redline.transcript import factories
        from redline.transcript.torchstate import from_json

        decl = t.manifest.declaration
        for part in ("model_factory", "optimizer", "data_source", "train_step"):
            if getattr(decl, part) is None:
                raise MalformedInput(f"the transcript declares no {part.replace('_', ' ')}: no step can be replayed")
        self.t = t
        self.decl = decl
        self.model = factories.load("model_factory", decl.model_factory)(
            **from_json(decl.model_factory.kwargs, {})).to(device)
        target = factories.load("optimizer", decl.optimizer)
        opt_kwargs = from_json(decl.optimizer.kwargs, {})
        if isinstance(target, type) and issubclass(target, torch.optim.Optimizer):
            self.optimizer = target(self.model.parameters(), **opt_kwargs)
        else:
            self.optimizer = target(self.model, **opt_kwargs)
        self.scheduler = None
        if decl.scheduler is not None:
            self.scheduler = factories.load("scheduler", decl.scheduler)(self.optimizer,
                                                                          **from_json(decl.scheduler.kwargs, {}))
        src = decl.data_source
        self.source = factories.load("data_source", src)(seed=src.seed, **from_json(src.kwargs, {}))
        self.train_step = factories.load("train_step", decl.train_step)
        self.step_kwargs = from_json(decl.train_step.kwargs, {})
        self._loaded: Any = None

    def _checkpoint(self, step: int) -> Any:
        """The committed checkpoint that opens the segment holding ``step`` (the last loaded one is kept)."""
        start = max(c.step for c in self.t.checkpoints if c.step < step)
        if self._loaded is None or self._loaded.step != start:
            self._loaded = self.t.checkpoint(start).load()
        return self._loaded

    def count(self, step: int) -> tuple[Any, dict[str, int]]:
        """Run the declared update rule once on ``step``'s batch from its segment's start checkpoint, under
        ``FlopCounter`` and an operator log; returns the count (``StepFlops``) and the operators executed."""
        import torch

        from redline.compute.flops import FlopCounter
        from redline.transcript.digest import tensors_digest
        from redline.transcript.torchstate import batch_tensors, iter_tensors

        ckpt = self._checkpoint(step)
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if self.scheduler is not None and ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
        committed = self.t.data_record(step)
        batch = self.source.batch(committed.position)
        digest = tensors_digest(iter_tensors(batch_tensors(batch)))
        if digest != committed.batch["sha256"]:
            raise MalformedInput(f"step {step}: the data source's batch at position {committed.position} has digest "
                                 f"{digest}, the transcript commits to {committed.batch['sha256']}")
        self.model.train()
        log = _operator_log()
        with log, FlopCounter() as counter:  # the log is entered first, so it sits below the counter's modes
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.train_step(self.model, batch, **self.step_kwargs)
            loss.backward()
            if self.decl.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.decl.max_grad_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
        return counter.result, log.seen


# --- the check ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeCount:
    """The FLOP of one batch shape: the steps that have it, and the count of one of their steps."""

    shape: BatchShape
    steps: int  # steps of the run whose batch has this shape
    first_step: int
    flop_per_step: int  # counted on first_step
    counted_steps: tuple[int, ...]  # the steps replayed to count it (first_step, then the probe if any)

    @property
    def total(self) -> int:
        """FLOP of every step with this shape."""
        return self.flop_per_step * self.steps

    def to_json(self) -> dict[str, Any]:
        return {"shape": self.shape.to_json(), "steps": self.steps, "first_step": self.first_step,
                "flop_per_step": self.flop_per_step, "total": self.total, "counted_steps": list(self.counted_steps)}


@dataclass(frozen=True)
class ComputeFindings:
    """The outcome of :func:`compute_check`.

    ``check`` is the ``compute`` check. ``counted_flop`` is Σ over steps of its shape's count (None when the
    count could not be made); ``step_shape`` gives each step's index into ``shapes``. ``tokens`` are the
    recomputed tokens per step (``token_total`` = D), ``parameters`` N as read from the final checkpoint,
    ``six_nd`` = 6·N·D. ``declared_flop`` (from ``declared_source``) was compared with ``compared_flop``, the
    counted total over the steps the declaration covers. ``operators`` maps each operator the counted steps
    executed to ``"counted"``, ``"allowed"`` or ``"refused"``. ``spent_flop`` is what the counting replayed
    (``counted_steps`` steps); ``seconds`` includes the data pass when it was made here.
    """

    check: Check
    counted_flop: int | None
    shapes: tuple[ShapeCount, ...]
    step_shape: tuple[int, ...]
    tokens: tuple[int, ...]
    token_total: int
    parameters: ParameterCount | None
    manifest_parameter_count: int
    six_nd: float | None
    declared_flop: float | None
    declared_source: str
    compared_flop: int | None
    operators: Mapping[str, str]
    spent_flop: int
    counted_steps: int
    seconds: float

    @property
    def parameter_count(self) -> int | None:
        """N (None when the final checkpoint could not be read)."""
        return self.parameters.count if self.parameters is not None else None

    @property
    def six_nd_share(self) -> float | None:
        """counted / 6·N·D."""
        if self.counted_flop is None or not self.six_nd:
            return None
        return self.counted_flop / self.six_nd

    @property
    def refused_operators(self) -> tuple[str, ...]:
        """Operators executed that are neither counted nor allow-listed."""
        return tuple(op for op, how in self.operators.items() if how == "refused")

    def flop_of_steps(self, start_step: int, end_step: int) -> int:
        """Counted FLOP of steps ``start_step + 1 .. end_step`` (a replayed segment's cost)."""
        if not self.shapes:
            raise ValueError("no FLOP was counted")
        per = [s.flop_per_step for s in self.shapes]
        return sum(per[i] for i in self.step_shape[max(0, start_step):end_step])

    @property
    def mean_step_flop(self) -> float | None:
        """The counted total over the step count."""
        if self.counted_flop is None or not self.step_shape:
            return None
        return self.counted_flop / len(self.step_shape)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (per shape, not per step)."""
        return {"check": self.check.model_dump(mode="json"), "counted_flop": self.counted_flop,
                "shapes": [s.to_json() for s in self.shapes], "steps": len(self.step_shape),
                "token_total": self.token_total,
                "parameters": self.parameters.to_json() if self.parameters is not None else None,
                "manifest_parameter_count": self.manifest_parameter_count, "six_nd": self.six_nd,
                "six_nd_share": self.six_nd_share, "declared_flop": self.declared_flop,
                "declared_source": self.declared_source, "compared_flop": self.compared_flop,
                "operators": dict(self.operators), "spent_flop": self.spent_flop,
                "counted_steps": self.counted_steps, "seconds": self.seconds}


def declared_flop(t: Transcript, declaration: RunFinish | RunProgress | None) -> tuple[float | None, str, int]:
    """The declared FLOP, where it comes from, and the steps it covers (1..steps)."""
    from redline.statements.runs import RunFinish

    if declaration is not None:
        if isinstance(declaration, RunFinish):
            if declaration.flop_estimates.counted is not None:
                return declaration.flop_estimates.counted, "RunFinish.flop_estimates.counted", t.step_count
            return declaration.total_flop, "RunFinish.total_flop", t.step_count
        return declaration.flop_so_far, f"RunProgress.flop_so_far (step {declaration.step})", declaration.step
    if t.manifest.flop is not None:
        return t.manifest.flop.per_step * t.step_count, "the manifest's flop.per_step × steps", t.step_count
    return None, "", t.step_count


def _probe_step(steps: Sequence[int], seed: bytes | None, shape: int) -> int:
    """The second step counted for a shape: drawn from ``seed`` among its other steps, else its last."""
    others = steps[1:]
    if seed is None:
        return others[-1]
    from redline.verify.sampling import uniform_sample

    return others[uniform_sample(seed, len(others), 1, label=b"compute-probe/%d" % shape)[0]]


def _pct(declared: float, counted: float) -> str:
    return f"{(declared / counted - 1) * 100:+.2f} %" if counted else "n/a"


def compute_check(transcript: Transcript | str | Path, declaration: RunFinish | RunProgress | None = None, *,
                  device: str = "cpu", flop_tolerance: float = FLOP_TOLERANCE,
                  min_six_nd_share: float = MIN_SIX_ND_SHARE, scan: BatchScan | None = None,
                  seed: bytes | None = None, probe: bool = True,
                  earlier: Sequence[tuple[int, RunFinish | RunProgress]] = ()) -> ComputeFindings:
    """The ``compute`` check of a transcript against its declaration (see the module docstring).

    ``earlier``: the run's earlier declarations (log entry, statement); none may declare less FLOP at its step than
    the count of steps 1..step (beyond the tolerance): the engine judges training during a pause by the FLOP each
    RunProgress dates, so an earlier figure kept low would move compute out of a pause.

    ``transcript``: a loaded :class:`~redline.transcript.transcript.Transcript` (or its directory, loaded and
    verified here). ``declaration``: the logged ``RunFinish`` or ``RunProgress`` whose FLOP is checked (None:
    the manifest's figure). ``scan``: the :func:`scan_batches` pass the caller already made for the ``data``
    check (made here otherwise). ``seed``: draws each shape's second, cross-checking step (pass the verifier's
    sample seed, which the lab could not know; without it the shape's last step is used); ``probe=False``
    counts one step per shape only. Code that is not registered and pinned here makes the check inconclusive.
    """
    from redline.transcript.torchstate import RngState

    began = time.perf_counter()
    t = transcript if isinstance(transcript, Transcript) else load_transcript(transcript)
    n = t.step_count
    decl_flop, decl_source, decl_steps = declared_flop(t, declaration)
    if scan is None:
        scan = scan_batches(t)

    def findings(check: Check, **kw: Any) -> ComputeFindings:
        base: dict[str, Any] = {
            "counted_flop": None, "shapes": (), "step_shape": scan.shape_index, "tokens": scan.tokens,
            "token_total": sum(scan.tokens), "parameters": None,
            "manifest_parameter_count": t.manifest.parameter_count, "six_nd": None, "declared_flop": decl_flop,
            "declared_source": decl_source, "compared_flop": None, "operators": MappingProxyType({}),
            "spent_flop": 0, "counted_steps": 0}
        base.update(kw)
        return ComputeFindings(check=check, seconds=time.perf_counter() - began, **base)

    if not scan.complete:
        bad = scan.problem or Check(name="data", passed=False, detail="the data pass stopped early")
        return findings(Check(name="compute", passed=False, inconclusive=bad.inconclusive,
                              detail=("the declared data source does not reproduce the committed batches, so tokens "
                                      f"and FLOP cannot be recomputed: {bad.detail}")[:_DETAIL]))
    problems: list[str] = []

    # 1. tokens
    wrong = [(rec.step, rec.tokens, got) for rec, got in zip(t.steps, scan.tokens) if rec.tokens != got]
    if wrong:
        step, recorded, got = wrong[0]
        more = f" ({len(wrong) - 1} more steps differ)" if len(wrong) > 1 else ""
        problems.append(f"step {step} records {recorded} tokens, but its batch holds {got} (the recorder's count: "
                        f"elements of input_ids, else of the first integer tensor){more}")
    d_tokens = sum(scan.tokens)

    # 2. FLOP per shape (and 3. the operators they run)
    steps_of: list[list[int]] = [[] for _ in scan.shapes]
    for i, s in enumerate(scan.shape_index):
        steps_of[s].append(i + 1)
    plan: list[tuple[int, int]] = []  # (step, shape)
    for s, steps in enumerate(steps_of):
        plan.append((steps[0], s))
        if probe and len(steps) > 1:
            plan.append((_probe_step(steps, seed, s), s))
    counts: dict[int, int] = {}
    seen: dict[str, int] = {}
    spent = 0
    try:
        import torch

        saved_rng = RngState.capture()
        saved_deterministic = torch.are_deterministic_algorithms_enabled()
        try:
            torch.use_deterministic_algorithms(t.manifest.environment.deterministic_algorithms)
            runner = _DeclaredStep(t, device)
            for step, _ in sorted(plan):
                result, ops = runner.count(step)
                counts[step] = result.total
                spent += result.total
                for op, k in ops.items():
                    seen[op] = seen.get(op, 0) + k
        finally:
            saved_rng.restore()
            torch.use_deterministic_algorithms(saved_deterministic)
    except UntrustedCode as exc:  # the code cannot be run here: undecided, unless the tokens already failed
        return findings(Check(name="compute", passed=False, inconclusive=not problems,
                              detail="; ".join([*problems, str(exc)])[:_DETAIL]))
    except Exception as exc:  # noqa: BLE001 - whatever breaks the replay of a committed step fails the check
        return findings(Check(name="compute", passed=False,
                              detail=(f"could not replay a step to count FLOP: {type(exc).__name__}: {exc}"
                                      + ("; " + "; ".join(problems) if problems else ""))[:_DETAIL]),
                        spent_flop=spent, counted_steps=len(counts))
    shapes = []
    for s, steps in enumerate(steps_of):
        counted_at = tuple(st for st, sh in plan if sh == s)
        per = counts[counted_at[0]]
        for other in counted_at[1:]:
            if counts[other] != per:
                problems.append(f"steps {counted_at[0]} and {other} have the same batch shapes ({scan.shapes[s]}) "
                                f"but count {per:.6g} and {counts[other]:.6g} FLOP: the run's compute depends on the "
                                "batches' content, so counting one step per shape cannot measure it")
        shapes.append(ShapeCount(scan.shapes[s], len(steps), steps[0], per, counted_at))
    per_step = [shapes[i].flop_per_step for i in scan.shape_index]
    total = sum(per_step)

    counted_ops = counted_operators()
    operators = {op: ("counted" if op in counted_ops else "allowed" if op in ALLOWED else "refused")
                 for op in sorted(seen)}
    refused = [op for op, how in operators.items() if how == "refused"]
    for op in refused:
        problems.append(f"operator {op} is not counted by FlopCounterMode: the run's compute cannot be checked")

    # 4. 6·N·D
    try:
        params: ParameterCount | None = checkpoint_parameter_count(t.checkpoints[-1].path)
    except Exception as exc:  # noqa: BLE001 - load_transcript hashed the blob, so this is unexpected: say so
        params = None
        problems.append(f"N cannot be read from the final checkpoint: {type(exc).__name__}: {exc}")
    six_nd = 6.0 * params.count * d_tokens if params is not None else None
    share = total / six_nd if six_nd else None
    if share is not None and share < min_six_nd_share:
        problems.append(f"the counted {total:.4g} FLOP is {share:.3f} × 6·N·D = {six_nd:.4g} (N = {params.count} "
                        f"parameters in the final checkpoint, D = {d_tokens} tokens), below {min_six_nd_share:g}: the "
                        "model does matmul-class work the counter does not see (custom kernels, or products written "
                        "as elementwise multiply and sum)")
    if params is None:
        six_nd_text = "6·N·D unknown"
    elif share is None:
        six_nd_text = f"6·N·D = 0 bounds nothing (N = {params.count}, D = {d_tokens} recomputed tokens)"
    else:
        six_nd_text = (f"{share:.3f} × 6·N·D (N = {params.count} from the final checkpoint, D = {d_tokens} "
                       "recomputed tokens)")
    if params is not None and params.count != t.manifest.parameter_count:
        six_nd_text += f"; the manifest's parameter_count {t.manifest.parameter_count} differs (not used)"

    # 5. the declaration
    compared = None
    if decl_flop is not None:
        if decl_steps > n:
            problems.append(f"{decl_source} covers {decl_steps} steps, the transcript has {n}")
        else:
            compared = sum(per_step[:decl_steps])
            # a counted figure must be the count; a RunFinish that gives no counted figure (its total from 6·N·D or
            # chip-hours) is held to its headline only, below
            estimate_only = getattr(getattr(declaration, "flop_estimates", None), "counted", 0) is None
            if not estimate_only and abs(decl_flop - compared) > flop_tolerance * compared:
                problems.append(f"{decl_source} = {decl_flop:.6g}, but the counted FLOP of steps 1..{decl_steps} is "
                                f"{compared:.6g} ({_pct(decl_flop, compared)}, allowed ±{flop_tolerance * 100:g} %)")
            headline = getattr(declaration, "total_flop", None)
            if headline is not None and headline < compared * (1 - flop_tolerance):
                # the figure the engine judges danger lines by may not be under the count, whatever the estimates
                problems.append(f"RunFinish.total_flop = {headline:.6g} is under the counted {compared:.6g} FLOP "
                                f"({_pct(headline, compared)}, allowed −{flop_tolerance * 100:g} %)")

    from redline.statements.runs import RunProgress as Progress

    for index, decl in earlier:
        if not isinstance(decl, Progress):
            continue  # a RunFinish is only ever the declaration verified, never an earlier one
        step = decl.step
        if 0 < step <= n:
            upto = sum(per_step[:step])
            if decl.flop_so_far < upto * (1 - flop_tolerance):
                problems.append(f"the RunProgress at log entry {index} declared {decl.flop_so_far:.6g} FLOP at step "
                                f"{step}, but the counted FLOP of steps 1..{step} is {upto:.6g} "
                                f"({_pct(decl.flop_so_far, upto)}, allowed −{flop_tolerance * 100:g} %)")

    by_shape = "; ".join(f"{sc.shape}: {sc.steps} steps × {sc.flop_per_step:.4g}" for sc in shapes[:6])
    if len(shapes) > 6:
        by_shape += f"; … {len(shapes) - 6} more shapes"
    n_counted, n_allowed = (sum(1 for h in operators.values() if h == k) for k in ("counted", "allowed"))
    summary = (f"counted {total:.6g} FLOP over {n} steps from {len(counts)} replayed steps of {len(shapes)} batch "
               f"shape(s) ({by_shape}); {six_nd_text}; operators: {n_counted} counted, {n_allowed} allow-listed, "
               f"{len(refused)} refused")
    if decl_flop is None:
        verdict = "no declared FLOP to compare"
    elif compared is not None:
        verdict = (f"{decl_source} = {decl_flop:.6g} ({_pct(decl_flop, compared)} of the counted "
                   f"{compared:.6g}, allowed ±{flop_tolerance * 100:g} %)")
    else:
        verdict = ""
    detail = ("; ".join(problems) + " — " + summary) if problems else f"{summary}; {verdict}"
    return findings(Check(name="compute", passed=not problems, detail=detail[:_DETAIL]),
                    counted_flop=total, shapes=tuple(shapes), parameters=params, six_nd=six_nd,
                    compared_flop=compared, operators=MappingProxyType(operators), spent_flop=spent,
                    counted_steps=len(counts))


__all__ = ["ALLOWED", "ALLOWED_OPERATORS", "FLOP_TOLERANCE", "MIN_SIX_ND_SHARE", "BatchScan", "BatchShape",
           "ComputeFindings", "ParameterCount", "ShapeCount", "checkpoint_parameter_count", "compute_check",
           "counted_operators", "declared_flop", "operator_name", "scan_batches"]
