"""Training state as tensors and canonical JSON: batches, model, optimizer, scheduler, random generators.

This is the one place that turns live PyTorch objects into the bytes a transcript
commits to, and back. A checkpoint is a flat map of named CPU tensors
(``model.<name>``, ``optimizer.<path>``, ``scheduler.<path>``, ``rng.torch_cpu``,
``rng.cuda.<i>``) plus string metadata (``redline.format``, ``redline.step``, and
the canonical JSON of the optimizer and scheduler state dicts and of the Python and
NumPy generator states, with every tensor replaced by a reference to its name).
The same capture runs in the recorder and in a verifier's replay, so a faithful
re-execution gives bit-identical tensors and metadata.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import random
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from redline.crypto.canonical import canonical_json
from redline.errors import MalformedInput
from redline.transcript.digest import tensors_digest
from redline.transcript.stfile import TensorData

try:
    import numpy as np
except ImportError:  # pragma: no cover - numpy is part of the torch extra
    np = None  # type: ignore[assignment]

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("redline.transcript serialises tensors little-endian and needs a little-endian host")

CHECKPOINT_FORMAT = "redline-checkpoint/v1"

#: safetensors dtype code of each torch dtype redline serialises.
DTYPE_CODES: dict[torch.dtype, str] = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16", torch.int32: "I32",
    torch.int64: "I64", torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.complex64: "C64", torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
    torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
_INTEGER_DTYPES = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}
_u64 = struct.Struct("<Q").pack
_f64 = struct.Struct("<d").pack


def dtype_code(t: torch.Tensor, name: str) -> str:
    """The safetensors dtype code of a tensor, or ``MalformedInput`` naming it."""
    code = DTYPE_CODES.get(t.dtype)
    if code is None:
        raise MalformedInput(f"tensor {name!r}: dtype {t.dtype} cannot be serialised")
    return code


_NUMPY_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.float16,
                 torch.float32, torch.float64}


def raw_bytes(t: torch.Tensor) -> memoryview:
    """The raw little-endian C-order bytes of a CPU tensor (copied only if it is not contiguous)."""
    if (t.dtype in _NUMPY_DTYPES and t.device.type == "cpu" and not t.requires_grad and t.is_contiguous()
            and t.numel() and not t.is_conj() and not t.is_neg()):
        return memoryview(t.numpy()).cast("B")  # the common case, without a torch op
    t = t.detach().resolve_conj().resolve_neg()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy()).cast("B")


def tensor_data(t: torch.Tensor, name: str) -> TensorData:
    """A CPU tensor as the dtype, shape and bytes the safetensors writer and the digest take."""
    return TensorData(dtype_code(t, name), tuple(t.shape), raw_bytes(t))


def state_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """Tensor-serialisation SHA-256 of named tensors (a model's state dict, a batch)."""
    return tensors_digest((name, dtype_code(t, name), tuple(t.shape), raw_bytes(t)) for name, t in tensors.items())


# --- batches ---------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(value, torch.Tensor):
        out[prefix] = value
    elif np is not None and isinstance(value, np.ndarray):
        out[prefix] = torch.from_numpy(np.ascontiguousarray(value))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MalformedInput(f"batch key {k!r} under {prefix or 'the batch'!r} is not a string")
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)
    else:
        raise MalformedInput(f"batch item {prefix or '(root)'!r} is a {type(value).__name__}, not a tensor")


def batch_tensors(batch: Any) -> dict[str, torch.Tensor]:
    """The named input tensors of a batch: a mapping's keys, a sequence's indexes, dotted when nested.

    A single tensor is named ``"0"``, like a one-element tuple.
    """
    out: dict[str, torch.Tensor] = {}
    _flatten(batch if not isinstance(batch, torch.Tensor) else (batch,), "", out)
    return out


def batch_digest(batch: Any) -> str:
    """SHA-256 of a batch's tensors in the tensor serialisation v1."""
    return state_digest(batch_tensors(batch))


def count_tokens(tensors: Mapping[str, torch.Tensor]) -> int:
    """Tokens in a batch: elements of every ``input_ids`` (also ``<micro-batch>.input_ids``), else of the
    first integer tensor by name, else 0."""
    ids = [t for name, t in tensors.items() if name == "input_ids" or name.endswith(".input_ids")]
    if ids:
        return sum(t.numel() for t in ids)
    for name in sorted(tensors):
        if tensors[name].dtype in _INTEGER_DTYPES:
            return tensors[name].numel()
    return 0


# --- JSON with tensors by reference ------------------------------------------------------


def to_json(value: Any, path: str, tensors: dict[str, torch.Tensor] | None) -> Any:
    """A JSON value for ``value``; tensors go into ``tensors`` under ``path`` and are referenced by name.

    Tuples, non-string keys, non-finite floats and integers beyond 2**53 are
    tagged so that :func:`from_json` gives back exactly the same Python value.
    Without ``tensors``, a one-element tensor is written as its number.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 - 1 else {"__int__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if np is not None and isinstance(value, np.generic):
        return to_json(value.item(), path, tensors)
    if isinstance(value, torch.Tensor):
        if tensors is None:
            if value.numel() == 1:
                return to_json(value.item(), path, None)
            raise MalformedInput(f"{path}: a tensor of shape {list(value.shape)} is not a hyperparameter")
        if path in tensors and tensors[path] is not value:
            raise MalformedInput(f"{path}: two tensors would be stored under this name")
        tensors[path] = value
        return {"__tensor__": path}
    if isinstance(value, tuple):
        return {"__tuple__": [to_json(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [to_json(v, f"{path}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: to_json(v, f"{path}.{k}", tensors) for k, v in value.items()}
        return {"__items__": [[to_json(k, f"{path}.key{i}", tensors), to_json(v, f"{path}.{k}", tensors)]
                              for i, (k, v) in enumerate(value.items())]}
    raise MalformedInput(f"{path}: a {type(value).__name__} cannot be recorded (tensors, numbers, strings, "
                         "lists, tuples and dicts can)")


def from_json(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """The inverse of :func:`to_json`, taking referenced tensors from ``tensors``."""
    if isinstance(value, list):
        return [from_json(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), = value.items()
        if tag == "__tensor__":
            if inner not in tensors:
                raise MalformedInput(f"checkpoint metadata refers to a missing tensor {inner!r}")
            return tensors[inner]
        if tag == "__tuple__":
            return tuple(from_json(v, tensors) for v in inner)
        if tag == "__items__":
            return {from_json(k, tensors): from_json(v, tensors) for k, v in inner}
        if tag == "__float__":
            return float(inner)
        if tag == "__int__":
            return int(inner)
    return {k: from_json(v, tensors) for k, v in value.items()}


def hyperparameters(groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each parameter group's hyperparameters (everything but ``params``) as JSON values."""
    return [{k: to_json(v, f"optimizer.param_groups.{i}.{k}", None) for k, v in group.items() if k != "params"}
            for i, group in enumerate(groups)]


def snapshot_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """A copy of every parameter group's hyperparameters that later training cannot change."""
    return [{k: (v.detach().clone() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, list) else v)
             for k, v in group.items() if k != "params"} for group in optimizer.param_groups]


def step_record(step: int, loss: Any, tokens: int, groups: Sequence[Mapping[str, Any]],
                rng_digests: dict[str, Any]) -> dict[str, Any]:
    """The step record the recorder writes (and a replay recomputes) for one finished step."""
    return {"step": step, "loss": loss_value(loss), "tokens": int(tokens), "optimizer": hyperparameters(groups),
            "rng": rng_digests}


def loss_value(loss: Any) -> float | str | None:
    """A loss as a JSON value: a finite float, ``"nan"``, ``"inf"``, ``"-inf"``, or ``None``."""
    if loss is None:
        return None
    value = float(loss.detach().float().item() if isinstance(loss, torch.Tensor) else loss)
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


# --- random generators ---------------------------------------------------------------------


@dataclass(frozen=True)
class RngState:
    """Every generator a training step may draw from: torch CPU and CUDA, Python ``random``, NumPy's global."""

    torch_cpu: torch.Tensor
    cuda: tuple[torch.Tensor, ...]
    python: tuple[Any, ...]
    numpy: tuple[Any, ...] | None

    @classmethod
    def capture(cls) -> RngState:
        """The current states (CUDA ones only if CUDA has been initialised)."""
        cuda: tuple[torch.Tensor, ...] = ()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda = tuple(torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count()))
        return cls(torch.get_rng_state(), cuda, random.getstate(), np.random.get_state() if np is not None else None)

    def restore(self) -> None:
        """Make these the current states."""
        torch.set_rng_state(self.torch_cpu)
        for i, s in enumerate(self.cuda):
            torch.cuda.set_rng_state(s, i)
        random.setstate(self.python)
        if self.numpy is not None and np is not None:
            np.random.set_state(self.numpy)

    def digests(self) -> dict[str, Any]:
        """SHA-256 of each state, as documented in ``docs/transcripts.md``."""
        return {"torch_cpu": _torch_digest(self.torch_cpu), "cuda": [_torch_digest(s) for s in self.cuda],
                "python": _python_digest(self.python),
                "numpy": _numpy_digest(self.numpy) if self.numpy is not None else None}

    def to_tensors_and_json(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Put the torch states into ``tensors``; return the Python and NumPy states as JSON."""
        tensors["rng.torch_cpu"] = self.torch_cpu
        for i, s in enumerate(self.cuda):
            tensors[f"rng.cuda.{i}"] = s
        numpy = None
        if self.numpy is not None:
            name, keys, pos, has_gauss, cached = self.numpy
            numpy = {"name": name, "keys": [int(k) for k in keys], "pos": int(pos), "has_gauss": int(has_gauss),
                     "cached_gaussian": float(cached)}
        return {"python": to_json(self.python, "rng.python", None), "numpy": numpy, "cuda": len(self.cuda)}

    @classmethod
    def from_tensors_and_json(cls, tensors: Mapping[str, torch.Tensor], obj: Any) -> RngState:
        """The inverse of :meth:`to_tensors_and_json`."""
        numpy = None
        if obj.get("numpy") is not None and np is not None:
            n = obj["numpy"]
            numpy = (n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        cuda = tuple(tensors[f"rng.cuda.{i}"] for i in range(obj.get("cuda", 0)))
        return cls(tensors["rng.torch_cpu"], cuda, from_json(obj["python"], {}), numpy)


def _torch_digest(state: torch.Tensor) -> str:
    return hashlib.sha256(raw_bytes(state)).hexdigest()


def _python_digest(state: tuple[Any, ...]) -> str:
    version, internal, gauss = state
    return hashlib.sha256(b"python-random/v1\n" + _u64(version) + array.array("Q", internal).tobytes()
                          + (b"\x00" if gauss is None else b"\x01" + _f64(gauss))).hexdigest()


def _numpy_digest(state: tuple[Any, ...]) -> str:
    name, keys, pos, has_gauss, cached = state
    code = name.encode("ascii")
    return hashlib.sha256(b"numpy-random/v1\n" + _u64(len(code)) + code + keys.astype("<u4").tobytes()
                          + _u64(pos) + _u64(has_gauss) + _f64(cached)).hexdigest()


def _numpy_state_reader() -> Any:
    """A reader of the raw Mersenne Twister words and position of NumPy's global generator, or None.

    ``np.random.get_state()`` costs tens of microseconds; reading the bit
    generator's state through its public ctypes interface costs well under one.
    The reader is used only to notice that the state has not moved, and only
    after checking, on this NumPy, that it reads exactly what ``get_state`` says.
    """
    if np is None:
        return None
    try:
        import ctypes

        rs = np.random.mtrand._rand
        bitgen = rs._bit_generator
        address, size = bitgen.ctypes.state_address, 624 * 4 + 4

        def read() -> bytes | None:
            if np.random.mtrand._rand is not rs or rs._bit_generator is not bitgen:
                return None
            return ctypes.string_at(address, size)

        state = np.random.get_state()
        if state[0] != "MT19937" or read() != state[1].astype("<u4").tobytes() + struct.pack("<i", state[2]):
            return None
        return read
    except Exception:  # any surprise in NumPy's internals: always take the full state
        return None


#: Marks a NumPy state that has not moved since the previous snapshot.
_UNCHANGED = object()


@dataclass(frozen=True)
class RngSnapshot:
    """Generator states taken cheaply on the training thread, to be digested on another thread."""

    torch_cpu: torch.Tensor
    cuda: tuple[torch.Tensor, ...]
    python: tuple[Any, ...]
    numpy: Any  # a ``get_state()`` tuple, None without NumPy, or _UNCHANGED


class RngTracker:
    """Digests of the generator states after each step, taken cheaply.

    :meth:`snapshot` (on the training thread) copies the torch states and takes
    Python's (a few microseconds); NumPy's full state, which costs tens of
    microseconds to get, is taken only when its generator's words or position
    have moved or a Gaussian is cached (a cached Gaussian can be consumed without
    moving the words). :meth:`digest` turns a snapshot into the digests, equal to
    ``RngState.capture().digests()`` at the time of the snapshot. Snapshots must
    be digested in the order they were taken.
    """

    def __init__(self) -> None:
        self._read_numpy = _numpy_state_reader()
        self._numpy_raw: bytes | None = None
        self._numpy_digest: str | None = None

    def snapshot(self) -> RngSnapshot:
        """The current states (CUDA ones only if CUDA has been initialised)."""
        cuda: tuple[torch.Tensor, ...] = ()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda = tuple(torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count()))
        numpy: Any = None
        if np is not None:
            raw = self._read_numpy() if self._read_numpy is not None else None
            if raw is not None and raw == self._numpy_raw:
                numpy = _UNCHANGED
            else:
                numpy = np.random.get_state()
                self._numpy_raw = raw if raw is not None and numpy[3] == 0 else None
        return RngSnapshot(torch.get_rng_state(), cuda, random.getstate(), numpy)

    def digest(self, snap: RngSnapshot) -> dict[str, Any]:
        """The digests of a snapshot, as :meth:`RngState.digests` gives them."""
        if snap.numpy is not _UNCHANGED:
            self._numpy_digest = _numpy_digest(snap.numpy) if snap.numpy is not None else None
        return {"torch_cpu": _torch_digest(snap.torch_cpu), "cuda": [_torch_digest(s) for s in snap.cuda],
                "python": _python_digest(snap.python), "numpy": self._numpy_digest}

    def digests(self) -> dict[str, Any]:
        """The digests of the current states."""
        return self.digest(self.snapshot())


# --- whole training state --------------------------------------------------------------------


def copy_to_cpu(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``t`` that later training cannot change."""
    t = t.detach()
    if t.device.type != "cpu":
        return t.to("cpu").contiguous()
    return t.clone(memory_format=torch.contiguous_format)


@dataclass
class CapturedState:
    """A checkpoint's content: named CPU tensors (copies) and string metadata."""

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]

    def tensor_data(self) -> dict[str, TensorData]:
        """The tensors as the safetensors writer takes them."""
        return {name: tensor_data(t, name) for name, t in self.tensors.items()}

    def model_tensors(self) -> dict[str, torch.Tensor]:
        """The model's state dict (names without the ``model.`` prefix)."""
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}


def capture_state(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                  scheduler: Any | None, rng: RngState) -> CapturedState:
    """Copy the model, optimizer, scheduler and generator states to CPU; this is all the training thread waits for."""
    refs: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        if not isinstance(t, torch.Tensor):
            raise MalformedInput(f"model state {name!r} is a {type(t).__name__}, not a tensor")
        refs[f"model.{name}"] = t
    meta: dict[str, str] = {"redline.format": CHECKPOINT_FORMAT, "redline.step": str(step)}
    if optimizer is not None:
        meta["redline.optimizer"] = canonical_json(to_json(optimizer.state_dict(), "optimizer", refs)).decode()
    if scheduler is not None:
        meta["redline.scheduler"] = canonical_json(to_json(scheduler.state_dict(), "scheduler", refs)).decode()
    meta["redline.rng"] = canonical_json(rng.to_tensors_and_json(refs)).decode()
    return CapturedState({name: copy_to_cpu(t) for name, t in refs.items()}, meta)


@dataclass
class Checkpoint:
    """A checkpoint loaded back into PyTorch values."""

    step: int
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    scheduler_state: dict[str, Any] | None
    rng: RngState


def checkpoint_from(tensors: dict[str, torch.Tensor], metadata: Mapping[str, str], what: str) -> Checkpoint:
    """Rebuild the state dicts from a checkpoint's tensors and metadata; ``MalformedInput`` names ``what``."""
    try:
        if metadata.get("redline.format") != CHECKPOINT_FORMAT:
            raise MalformedInput(f"not a {CHECKPOINT_FORMAT} file")
        step = int(metadata["redline.step"])
        opt = metadata.get("redline.optimizer")
        sched = metadata.get("redline.scheduler")
        return Checkpoint(
            step=step, tensors=tensors, metadata=dict(metadata),
            model_state={k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
            optimizer_state=from_json(json.loads(opt), tensors) if opt is not None else None,
            scheduler_state=from_json(json.loads(sched), tensors) if sched is not None else None,
            rng=RngState.from_tensors_and_json(tensors, json.loads(metadata["redline.rng"])))
    except MalformedInput as exc:
        raise MalformedInput(f"{what}: {exc}") from None
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedInput(f"{what}: malformed checkpoint metadata ({type(exc).__name__}: {exc})") from None


def load_checkpoint(path: Any) -> Checkpoint:
    """Load a checkpoint file with safetensors (never ``torch.load``)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    what = str(path)
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for any malformed file
        raise MalformedInput(f"{what}: cannot be read as safetensors: {exc}") from None
    return checkpoint_from(tensors, metadata, what)


def named_tensors_equal(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> list[str]:
    """Names whose tensors differ in dtype, shape or any bit (or exist on one side only); empty if equal."""
    out = sorted(set(a) ^ set(b))
    for name in sorted(set(a) & set(b)):
        x, y = a[name], b[name]
        if x.dtype != y.dtype or x.shape != y.shape or bytes(raw_bytes(x)) != bytes(raw_bytes(y)):
            out.append(name)
    return out


def iter_tensors(tensors: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, str, Sequence[int], memoryview]]:
    """``(name, dtype, shape, bytes)`` of named CPU tensors, for :func:`redline.transcript.digest.tensors_digest`."""
    for name, t in tensors.items():
        yield name, dtype_code(t, name), tuple(t.shape), raw_bytes(t)


__all__ = [
    "CHECKPOINT_FORMAT", "CapturedState", "Checkpoint", "DTYPE_CODES", "RngSnapshot", "RngState", "RngTracker",
    "batch_digest", "batch_tensors", "capture_state", "checkpoint_from", "copy_to_cpu", "count_tokens", "dtype_code",
    "from_json", "hyperparameters", "iter_tensors", "load_checkpoint", "loss_value", "named_tensors_equal",
    "raw_bytes", "snapshot_groups", "state_digest", "step_record", "tensor_data", "to_json",
]
