"""The safetensors file format, written and read without torch.

A safetensors file is ``u64 little-endian header length || header JSON || data``;
the header maps each tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets into the data section) and may carry ``"__metadata__"``, a string→string map.
redline writes the header deterministically (sorted keys, no spaces, padded with
spaces to a multiple of 8 bytes) and the data ordered by descending element size,
then name, so every tensor is aligned and equal states give byte-identical files.
Reading checks the header strictly: known dtypes, sizes that match shapes,
offsets that tile the data section exactly.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from redline.errors import MalformedInput
from redline.transcript.digest import DTYPE_SIZES, MultiHasher, tensors_digest

#: Largest header redline reads (the safetensors library's own bound).
MAX_HEADER = 100 * 1024 * 1024
#: Most dimensions a tensor's shape may have (the tensor-serialisation digest and torch allow far fewer).
MAX_RANK = 64


@dataclass(frozen=True)
class TensorData:
    """One tensor to write: its safetensors dtype code, shape and raw little-endian bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: Any  # any C-contiguous buffer

    @property
    def nbytes(self) -> int:
        """Length of the raw bytes."""
        return memoryview(self.data).nbytes


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a file's header."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    """A parsed safetensors header: its tensors, metadata, and where the data section starts."""

    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    data_start: int


def _order(tensors: Mapping[str, TensorData]) -> list[str]:
    return sorted(tensors, key=lambda n: (-DTYPE_SIZES[tensors[n].dtype], n))


def encode_header(tensors: Mapping[str, TensorData], metadata: Mapping[str, str]) -> tuple[bytes, list[str]]:
    """The header bytes (length prefix included) and the order in which the data must follow."""
    order = _order(tensors)
    entries: dict[str, Any] = {}
    offset = 0
    for name in order:
        t = tensors[name]
        end = offset + t.nbytes
        entries[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, end]}
        offset = end
    if metadata:
        entries["__metadata__"] = dict(metadata)
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, order


def write(f: BinaryIO, tensors: Mapping[str, TensorData], metadata: Mapping[str, str],
          hasher: MultiHasher | None = None) -> int:
    """Write a safetensors file to ``f``, feeding every byte to ``hasher``; returns the size."""
    for name, t in tensors.items():
        if t.dtype not in DTYPE_SIZES:
            raise MalformedInput(f"tensor {name!r}: unknown dtype {t.dtype!r}")
    header, order = encode_header(tensors, metadata)
    parts: list[Any] = [header, *(tensors[n].data for n in order)]
    size = 0
    for part in parts:
        view = memoryview(part).cast("B")
        if hasher is not None:
            hasher.update(view)
        f.write(view)
        size += view.nbytes
    return size


def _check_entry(name: str, e: Any, what: str) -> None:
    """Refuse a header entry that is not ``{"dtype": known code, "shape": [ints], "data_offsets": [int, int]}``."""
    if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
        raise MalformedInput(f"{what}: tensor {name!r} has a malformed header entry (it needs exactly dtype, shape "
                             "and data_offsets)")
    dtype, shape, offsets = e["dtype"], e["shape"], e["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise MalformedInput(f"{what}: tensor {name!r} has a malformed header entry: dtype {str(dtype)[:40]!r} is "
                             f"not one of {', '.join(sorted(DTYPE_SIZES))}")
    if (not isinstance(shape, list) or len(shape) > MAX_RANK
            or not all(type(d) is int and 0 <= d < 1 << 63 for d in shape)):
        raise MalformedInput(f"{what}: tensor {name!r} has a malformed header entry: shape must be a list of at most "
                             f"{MAX_RANK} non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int and 0 <= o < 1 << 63
                                                                     for o in offsets):
        raise MalformedInput(f"{what}: tensor {name!r} has a malformed header entry: data_offsets must be two "
                             "non-negative integers")


def parse_header(buf: Any, what: str) -> Header:
    """Parse and check the header of the safetensors bytes ``buf``; errors are ``MalformedInput`` naming ``what``."""
    view = memoryview(buf)
    if view.nbytes < 8:
        raise MalformedInput(f"{what}: not a safetensors file ({view.nbytes} bytes)")
    (n,) = struct.unpack("<Q", view[:8])
    if n > MAX_HEADER or 8 + n > view.nbytes:
        raise MalformedInput(f"{what}: safetensors header length {n} does not fit the file of {view.nbytes} bytes")
    try:
        raw = json.loads(bytes(view[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedInput(f"{what}: safetensors header is not JSON: {exc}") from None
    except (RecursionError, ValueError) as exc:  # deep nesting, integers over Python's digit limit
        raise MalformedInput(f"{what}: safetensors header cannot be parsed: {str(exc)[:200]}") from None
    if not isinstance(raw, dict):
        raise MalformedInput(f"{what}: safetensors header is not a JSON object")
    metadata = raw.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise MalformedInput(f"{what}: safetensors metadata is not a map of strings")
    tensors: dict[str, TensorEntry] = {}
    for name, e in raw.items():
        _check_entry(name, e, what)
        count = 1
        for d in e["shape"]:
            count *= d
        begin, end = e["data_offsets"]
        if end - begin != count * DTYPE_SIZES[e["dtype"]]:
            raise MalformedInput(f"{what}: tensor {name!r} spans {end - begin} bytes, its shape needs "
                                 f"{count * DTYPE_SIZES[e['dtype']]}")
        tensors[name] = TensorEntry(e["dtype"], tuple(e["shape"]), begin, end)
    position = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != position:
            raise MalformedInput(f"{what}: tensor {name!r} starts at {t.begin}, expected {position}")
        position = t.end
    if 8 + n + position != view.nbytes:
        raise MalformedInput(f"{what}: the data section is {view.nbytes - 8 - n} bytes, the header describes "
                             f"{position} (truncated or padded file)")
    return Header(tensors, metadata, 8 + n)


class SafetensorsFile:
    """A safetensors file opened read-only through a memory map, its header parsed and checked."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            size = self.path.stat().st_size
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.header = parse_header(self._map, str(self.path))

    def close(self) -> None:
        """Release the memory map."""
        if isinstance(self._map, mmap.mmap):
            self._map.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def raw(self, name: str) -> memoryview:
        """The raw bytes of tensor ``name``."""
        t = self.header.tensors[name]
        start = self.header.data_start
        return memoryview(self._map)[start + t.begin:start + t.end]

    def items(self, prefix: str = "") -> Iterator[tuple[str, str, Sequence[int], memoryview]]:
        """``(name without prefix, dtype, shape, raw bytes)`` of the tensors whose names start with ``prefix``."""
        for name, t in self.header.tensors.items():
            if name.startswith(prefix):
                yield name[len(prefix):], t.dtype, t.shape, self.raw(name)

    def digest(self, prefix: str = "") -> str:
        """The tensor-serialisation digest of the tensors under ``prefix`` (names without it)."""
        return tensors_digest(self.items(prefix))


__all__ = ["Header", "MAX_HEADER", "SafetensorsFile", "TensorData", "TensorEntry", "encode_header", "parse_header",
           "write"]
