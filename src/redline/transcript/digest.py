"""Digests of files and of tensors, over exact, documented byte serialisations (no torch needed).

Files are hashed as their raw bytes with SHA-256 and, optionally, BLAKE3; a
digest is always written with the name of its algorithm (``{"sha256": hex}``).

Tensors are hashed over the *tensor serialisation v1*, never over ``str()`` of
an array. For tensors ``(name, dtype, shape, data)`` sorted by the UTF-8 bytes of
their names, SHA-256 of::

    b"redline-tensors/v1\\n" || u64(count)
    || for each tensor: u64(len(name)) || name (UTF-8)
                        || u64(len(dtype)) || dtype (ASCII safetensors code: F32, BF16, I64, BOOL, ...)
                        || u64(ndim) || u64(dim) for each dimension
                        || u64(len(data)) || data (raw little-endian, C order)

with every ``u64`` little-endian. The same function digests a training batch,
a model's state dict (live, or read straight from a safetensors file) and the
replayed state of a verifier, so equal tensors always give equal digests.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from redline.errors import MalformedInput

Algorithm = Literal["sha256", "blake3"]
ALGORITHMS: tuple[Algorithm, ...] = ("sha256", "blake3")
TENSORS_TAG = b"redline-tensors/v1\n"

#: Bytes per element of each safetensors dtype code.
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}

#: Bytes of a memory-mapped file handed to SHA-256 per call.
_MAP_CHUNK = 4 * 1024 * 1024
_u64 = struct.Struct("<Q").pack


def new_hasher(algorithm: str, *, threads: int = 1) -> Any:
    """A fresh incremental hasher for ``algorithm`` (BLAKE3 may use ``threads`` threads, -1 for all cores)."""
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        import blake3

        return blake3.blake3(max_threads=blake3.blake3.AUTO if threads < 0 else threads)
    raise MalformedInput(f"unknown digest algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


class MultiHasher:
    """Feeds the same bytes to one hasher per algorithm."""

    def __init__(self, algorithms: Iterable[str]) -> None:
        self.hashers = {a: new_hasher(a) for a in algorithms}
        self.size = 0

    def update(self, data: Any) -> None:
        """Hash more bytes (any buffer)."""
        for h in self.hashers.values():
            h.update(data)
        self.size += memoryview(data).nbytes

    def hexdigests(self) -> dict[str, str]:
        """The digests so far, by algorithm."""
        return {a: h.hexdigest() for a, h in self.hashers.items()}


def _sha256_file(path: Path) -> str:
    """SHA-256 of a file hashed straight from a read-only memory map: no copy out of the page cache."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        if os.fstat(f.fileno()).st_size == 0:
            return h.hexdigest()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            if hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mapped)
            try:
                for start in range(0, len(view), _MAP_CHUNK):
                    h.update(view[start : start + _MAP_CHUNK])  # hashlib releases the GIL on each chunk
            finally:
                view.release()
    return h.hexdigest()


def _blake3_file(path: Path, threads: int) -> str:
    import blake3

    h = blake3.blake3(max_threads=blake3.blake3.AUTO if threads < 0 else threads)
    if path.stat().st_size:
        h.update_mmap(path)
    return h.hexdigest()


def hash_file(path: str | Path, algorithms: Sequence[str] = ("sha256",), *, threads: int = -1) -> dict[str, str]:
    """Digests of a file's bytes by each algorithm: SHA-256 over a memory map on this thread,
    BLAKE3 over a memory map on ``threads`` threads (-1: all cores)."""
    path = Path(path)
    out: dict[str, str] = {}
    for algorithm in algorithms:
        if algorithm == "sha256":
            out[algorithm] = _sha256_file(path)
        elif algorithm == "blake3":
            out[algorithm] = _blake3_file(path, threads)
        else:
            new_hasher(algorithm)  # raises, naming the algorithm
    return out


def hash_files(paths: Sequence[str | Path], algorithm: str = "sha256", *, workers: int | None = None) -> list[str]:
    """Hex digests of many files, hashed in parallel (SHA-256 one file per thread; BLAKE3 threads within a file)."""
    if algorithm == "blake3":
        return [hash_file(p, ("blake3",))["blake3"] for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [d["sha256"] for d in pool.map(lambda p: hash_file(p, (algorithm,)), paths)]


def tensors_digest(tensors: Iterable[tuple[str, str, Sequence[int], Any]], algorithm: str = "sha256") -> str:
    """Hex digest of named tensors ``(name, dtype code, shape, raw bytes)`` in the tensor serialisation v1.

    The tensors may come in any order; they are hashed sorted by name. A
    repeated name, an unknown dtype or a byte length that does not match the
    shape is ``MalformedInput`` naming the tensor.
    """
    items = sorted(((name.encode("utf-8"), name, dtype, shape, data) for name, dtype, shape, data in tensors),
                   key=lambda t: t[0])
    h = new_hasher(algorithm)
    h.update(TENSORS_TAG + _u64(len(items)))
    previous = None
    for raw, name, dtype, shape, data in items:
        if raw == previous:
            raise MalformedInput(f"tensor {name!r} appears twice")
        previous = raw
        size = DTYPE_SIZES.get(dtype)
        if size is None:
            raise MalformedInput(f"tensor {name!r}: unknown dtype {dtype!r}")
        view = memoryview(data).cast("B")
        count = 1
        for d in shape:
            count *= d
        if view.nbytes != count * size:
            raise MalformedInput(f"tensor {name!r}: {view.nbytes} bytes for shape {list(shape)} of {dtype}")
        code = dtype.encode("ascii")
        h.update(b"".join([_u64(len(raw)), raw, _u64(len(code)), code, _u64(len(shape)),
                           *(_u64(d) for d in shape), _u64(view.nbytes)]))
        h.update(view)
    return h.hexdigest()


__all__ = ["ALGORITHMS", "Algorithm", "DTYPE_SIZES", "MultiHasher", "TENSORS_TAG", "hash_file", "hash_files",
           "new_hasher", "tensors_digest"]
