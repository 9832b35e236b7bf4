"""Sealed local caches: files redline keeps beside a log to save work, which it never takes as the truth.

A state snapshot or a log's verification record saves a reader minutes, but it lies
in a directory that whoever can edit the store can edit too. So each such file is
*sealed*: an HMAC-SHA256, under a key that belongs to the user running redline and
lives outside every log directory, covers the file's kind, its bound header (which
log, what size and root, which code) and its body. A file that was edited, cut
short, written for another log or by another user's redline, or made by other code
does not unseal (:class:`~redline.errors.StaleCache`), and the caller falls back to
the full work. Nothing here decides anything about the log; it only keeps bytes
honest between two runs of the same user's redline.

The key (32 random bytes, mode 0600) is ``$REDLINE_CACHE_KEY`` when set, else
``$XDG_STATE_HOME/redline/cache.key``, else ``~/.local/state/redline/cache.key``;
it is made on first use. Files are written through a fresh exclusive temporary
name, fsynced, and renamed into place: a crash leaves the old file or the new one.

Layout of a sealed file::

    redline-sealed/v1\\n
    <kind>\\n
    <header length, decimal>\\n
    <header: canonical JSON object>
    <body>
    <HMAC-SHA256 over everything above, 32 bytes>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from redline.crypto.canonical import canonical_json
from redline.errors import KeyMaterialError, StaleCache

MAGIC = b"redline-sealed/v1\n"
KEY_ENV = "REDLINE_CACHE_KEY"
KEY_BYTES = 32
MAC_BYTES = 32
#: Most bytes a header may take.
MAX_HEADER = 64 * 1024


def cache_key_path() -> Path:
    """Where this user's cache key is (``$REDLINE_CACHE_KEY``, else under ``$XDG_STATE_HOME`` or ``~/.local/state``)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "redline" / "cache.key"


CACHE_DIR_ENV = "REDLINE_CACHE_DIR"


def cache_dir() -> Path:
    """This user's directory for caches of logs that have no directory here (logs read over HTTP):
    ``$REDLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/redline``, else ``~/.cache/redline``."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "redline"


def cache_key(path: Path | None = None) -> bytes:
    """This user's cache key, made (mode 0600, exclusively) when there is none yet."""
    path = cache_key_path() if path is None else path
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES).hex().encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyMaterialError(f"cache key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyMaterialError(f"cache key {path} is readable or writable by others (mode "
                                   f"{stat.S_IMODE(st.st_mode):04o}); make it 0600 or remove it")
        text = os.read(fd, 2 * KEY_BYTES + 2).strip()
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyMaterialError(f"cache key {path} does not hold {KEY_BYTES} hex-encoded bytes; remove it to make "
                               "a new one (every cached file is then rebuilt)")
    return key


def seal(kind: str, header: Mapping[str, Any], body: bytes, key: bytes) -> bytes:
    """The sealed file for ``kind`` with ``header`` (JSON-able) and ``body``."""
    head = canonical_json(dict(header))
    if len(head) > MAX_HEADER:
        raise ValueError("sealed header too large")
    msg = b"".join((MAGIC, kind.encode("ascii"), b"\n", str(len(head)).encode("ascii"), b"\n", head, body))
    return msg + hmac.new(key, msg, hashlib.sha256).digest()


def unseal(kind: str, blob: bytes, key: bytes, *, expect: Mapping[str, Any] | None = None
           ) -> tuple[dict[str, Any], memoryview]:
    """The header and body of a file ``seal`` made for ``kind`` under ``key``; ``StaleCache`` otherwise.

    ``expect`` names header fields that must hold exactly these values (the log, the code...).
    """
    if len(blob) < len(MAGIC) + MAC_BYTES or not blob.startswith(MAGIC):
        raise StaleCache("not a sealed redline cache file")
    view = memoryview(blob)
    msg, mac = view[:-MAC_BYTES], view[-MAC_BYTES:]
    if not hmac.compare_digest(hmac.new(key, msg, hashlib.sha256).digest(), mac):
        raise StaleCache("its seal does not verify under this user's cache key (edited, cut short, or made by "
                         "another user)")
    rest = bytes(msg[len(MAGIC):len(MAGIC) + 200])
    try:
        got_kind, length, _ = rest.split(b"\n", 2)
        n = int(length)
    except ValueError:
        raise StaleCache("sealed file has no kind and header length") from None
    if got_kind.decode("ascii", "replace") != kind:
        raise StaleCache(f"it is a {got_kind.decode('ascii', 'replace')!r} file, not {kind!r}")
    start = len(MAGIC) + len(got_kind) + len(length) + 2
    if not 0 <= n <= MAX_HEADER or start + n > len(msg):
        raise StaleCache("sealed header length out of range")
    try:
        header = json.loads(bytes(msg[start:start + n]))
    except ValueError:
        raise StaleCache("sealed header is not JSON") from None
    if not isinstance(header, dict):
        raise StaleCache("sealed header is not a JSON object")
    for field, want in (expect or {}).items():
        if header.get(field) != want:
            raise StaleCache(f"made for {field} {header.get(field)!r}, not {want!r}")
    return header, msg[start + n:]


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or parts written one after the other) to ``path`` (mode 0600) through a fresh
    exclusive temporary name, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in ((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data):
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def open_regular(path: Path, limit: int) -> BinaryIO | None:
    """Regular file ``path`` opened for reading (no symlink followed), None when it is missing; ``StaleCache`` when
    it is not a regular file or is over ``limit`` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StaleCache(f"{path} cannot be opened: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        raise StaleCache(f"{path} is not a regular file" if not stat.S_ISREG(st.st_mode)
                         else f"{path} is {st.st_size} bytes, over the limit of {limit}")
    return os.fdopen(fd, "rb")


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of regular file ``path`` (no symlink followed), None when it is missing; ``StaleCache`` when it is
    not a regular file or is over ``limit`` bytes."""
    f = open_regular(path, limit)
    if f is None:
        return None
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise StaleCache(f"{path} grew over the limit of {limit} bytes while read")
    return data


@lru_cache(maxsize=1)
def code_digest() -> str:
    """SHA-256 over the source of the installed ``redline`` package (every ``.py`` file, by relative path): a
    cache made by other code is stale, since what the engine derives may differ."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root).as_posix().encode()
        data = p.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


__all__ = ["cache_dir", "cache_key", "cache_key_path", "code_digest", "open_regular", "read_regular", "seal", "unseal",
           "write_atomic"]
