"""A content-addressed blob store: every blob lives at ``blobs/sha256/<2 hex>/<62 hex>`` of its own SHA-256.

Writes are atomic: the bytes go to a temporary file in the store, are hashed as
they are written, flushed to disk, and only then renamed into place, so a blob
path either does not exist or holds exactly the bytes its name promises.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from redline.errors import MalformedInput
from redline.transcript.digest import MultiHasher, hash_file

_HEX64 = re.compile(r"[0-9a-f]{64}")


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries to disk (best effort: not every file system allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class BlobStore:
    """Blobs under ``root`` (a transcript's ``blobs`` directory), addressed by SHA-256."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def relative_path(self, sha256: str) -> str:
        """``sha256/<2 hex>/<rest>``: where a blob lives relative to the store root."""
        if not _HEX64.fullmatch(sha256):
            raise MalformedInput(f"not a SHA-256 hex digest: {sha256!r}")
        return f"sha256/{sha256[:2]}/{sha256[2:]}"

    def path(self, sha256: str) -> Path:
        """The path of the blob with this SHA-256."""
        return self.root / self.relative_path(sha256)

    def put(self, write: Callable[[BinaryIO, MultiHasher], int], algorithms: Sequence[str] = ("sha256",), *,
            durable: bool = True) -> tuple[dict[str, str], int]:
        """Store the bytes ``write(file, hasher)`` produces; returns their digests (SHA-256 always) and size.

        ``write`` must feed every byte it writes to the hasher. The blob appears
        under its name only once complete (and, if ``durable``, on disk).
        """
        algs = ("sha256", *(a for a in algorithms if a != "sha256"))
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
        hasher = MultiHasher(algs)
        try:
            with open(tmp, "wb") as f:
                size = write(f, hasher)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            digests = hasher.hexdigests()
            if size != hasher.size:
                raise MalformedInput(f"blob writer wrote {size} bytes but hashed {hasher.size}")
            final = self.path(digests["sha256"])
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            if durable:
                fsync_dir(final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digests, size

    def put_bytes(self, data: bytes, algorithms: Sequence[str] = ("sha256",)) -> tuple[dict[str, str], int]:
        """Store ``data``; returns its digests and size."""
        def write(f: BinaryIO, h: MultiHasher) -> int:
            h.update(data)
            f.write(data)
            return len(data)
        return self.put(write, algorithms)

    def verify(self, digests: dict[str, str], size: int | None = None, *, algorithm: str | None = None) -> Path:
        """Check the blob named by ``digests['sha256']`` against its size and digests; return its path.

        ``algorithm`` picks the one digest to recompute (any committed digest
        proves the bytes); by default every recorded digest is recomputed.
        Errors are ``MalformedInput`` naming the blob's path.
        """
        path = self.path(digests["sha256"])
        if not path.is_file():
            raise MalformedInput(f"{path}: checkpoint blob is missing")
        actual = path.stat().st_size
        if size is not None and actual != size:
            raise MalformedInput(f"{path}: blob is {actual} bytes, the manifest says {size} (truncated or altered)")
        algs = [algorithm] if algorithm is not None else list(digests)
        if any(a not in digests for a in algs):
            raise MalformedInput(f"{path}: no {algorithm} digest is recorded for this blob")
        got = hash_file(path, algs)
        for a in algs:
            if got[a] != digests[a]:
                raise MalformedInput(f"{path}: {a} of the blob is {got[a]}, the manifest says {digests[a]} "
                                     "(altered blob)")
        return path


__all__ = ["BlobStore", "fsync_dir"]
