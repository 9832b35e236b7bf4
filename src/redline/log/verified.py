"""Verification records: what a full verification of a log established, sealed, so that the next open is cheap.

A full verification (``redline.log.service.verify_store``) re-derives every stored
hash of a log and checks every checkpoint: seconds per hundred thousand entries.
What it established (a :class:`~redline.log.service.Verified`: the size, the
stored frontier at that size and so the root, how many checkpoints were
verified, the last integration time) is kept as a *verification record*, a file
sealed by ``redline.log.localcache`` under the user's cache key, bound to the log
(origin and key), to the store (``describe()``: the SQLite file's real path or the
PostgreSQL URL without its password), to the code that made it and to this
format. ``Log.open(since=...)`` then checks only what changed since
(``verify_since``). Whoever can edit the store and the directory beside it cannot
make a record that unseals, so an edited, cut, swapped or foreign record is simply
not used (:class:`~redline.errors.StaleCache`) and the log is verified in full.

This module only turns records into bytes and files and back; it decides nothing
about the log. The CLI keeps each user's record of a log directory beside that user's
cache key, outside the log directory (``redline.cli.logdir.record_path``).

Layout: the sealed header holds ``format``, ``origin``, ``public_key`` (the log's
verifier key string), ``store``, ``code`` (``localcache.code_digest()``), ``size``,
``root`` (hex), ``checkpoints``, ``numbered`` and ``last_time_ms``; the body is the
frontier's stored hashes, 32 bytes each, largest subtree first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redline.crypto.keys import VerifierKey
from redline.errors import KeyMaterialError, StaleCache
from redline.log import localcache, merkle
from redline.log.service import Verified
from redline.log.store import LogStore

KIND = "verification-record"
FORMAT = "redline-verified/v1"
#: Most bytes a record file may take (a frontier is at most 63 hashes).
MAX_RECORD_BYTES = 16 * 1024


def describe_store(store: LogStore) -> str | None:
    """Which store this is (its ``describe()``), or None for a store that cannot say: it then gets no record."""
    describe = getattr(store, "describe", None)
    return describe() if callable(describe) else None


def _binding(verifier: VerifierKey, store: str) -> dict[str, Any]:
    return {"format": FORMAT, "origin": verifier.name, "public_key": verifier.to_string(), "store": store,
            "code": localcache.code_digest()}


def seal_record(verified: Verified, verifier: VerifierKey, store: str, key: bytes) -> bytes:
    """The sealed record of ``verified`` for the log of ``verifier`` in ``store``."""
    header = {**_binding(verifier, store), "size": verified.size, "root": verified.root.hex(),
              "checkpoints": verified.checkpoints, "numbered": verified.numbered,
              "last_time_ms": verified.last_time_ms}
    return localcache.seal(KIND, header, b"".join(verified.frontier), key)


def unseal_record(blob: bytes, verifier: VerifierKey, store: str, key: bytes) -> Verified:
    """The ``Verified`` a sealed record holds for the log of ``verifier`` in ``store``; ``StaleCache`` when it does
    not unseal under ``key``, was made for another log, store, code or format, or does not hold together."""
    header, body = localcache.unseal(KIND, blob, key, expect=_binding(verifier, store))
    return _verified(header, body)


def unseal_floor(blob: bytes, verifier: VerifierKey, key: bytes) -> tuple[Verified, str]:
    """What a sealed record holds for the log of ``verifier``, whatever store it names and whatever redline made it,
    with the store it names: the *floor* no store of this log may now fall below (``StaleCache`` as
    ``unseal_record``, for another log or format). A store swapped in under the same name (a symlink to an older
    copy, a restored file elsewhere) or an upgrade makes the record unusable for a cheap open, but what it says of
    the log's history still holds."""
    header, body = localcache.unseal(KIND, blob, key, expect={
        k: v for k, v in _binding(verifier, "").items() if k not in ("store", "code")})
    return _verified(header, body), str(header.get("store"))


def _verified(header: dict[str, Any], body: bytes | memoryview) -> Verified:
    size, checkpoints, numbered, last = (header.get(k) for k in ("size", "checkpoints", "numbered", "last_time_ms"))
    if not (type(size) is int and type(checkpoints) is int and type(last) is int and type(numbered) is bool
            and size >= 0 and checkpoints >= 1 and last >= 0):
        raise StaleCache("verification record fields are out of range")
    data = bytes(body)
    if len(data) != merkle.HASH_SIZE * size.bit_count():
        raise StaleCache("verification record frontier has the wrong length")
    frontier = tuple(data[i:i + merkle.HASH_SIZE] for i in range(0, len(data), merkle.HASH_SIZE))
    verified = Verified(size, frontier, checkpoints, numbered, last)
    if verified.root.hex() != header.get("root"):
        raise StaleCache("verification record frontier does not give its root")
    return verified


def load_record(path: Path, verifier: VerifierKey, store: str) -> tuple[Verified | None, str]:
    """The record at ``path`` for the log of ``verifier`` in ``store``, or (None, why it cannot be used): missing,
    not a regular file (a symlink is not followed), stale, or no cache key to unseal it with."""
    try:
        blob = localcache.read_regular(path, MAX_RECORD_BYTES)
        if blob is None:
            return None, f"{path} does not exist"
        return unseal_record(blob, verifier, store, localcache.cache_key()), ""
    except StaleCache as exc:
        return None, f"{path}: {exc}"
    except (KeyMaterialError, OSError) as exc:
        return None, f"no cache key to unseal {path} with: {exc}"


def load_floor(path: Path, verifier: VerifierKey) -> tuple[Verified, str] | None:
    """The floor the record at ``path`` sets for the log of ``verifier`` (``unseal_floor``), None when there is no
    record of this log this user's redline sealed."""
    try:
        blob = localcache.read_regular(path, MAX_RECORD_BYTES)
        return None if blob is None else unseal_floor(blob, verifier, localcache.cache_key())
    except (StaleCache, KeyMaterialError, OSError):
        return None


def save_record(path: Path, verified: Verified, verifier: VerifierKey, store: str) -> bool:
    """Write the record of ``verified`` to ``path`` atomically (replacing whatever is there, a symlink included,
    never following it); False when it cannot be written (a read-only directory, no cache key): a record only
    saves work, so that is no error."""
    try:
        localcache.write_atomic(path, seal_record(verified, verifier, store, localcache.cache_key()))
    except (KeyMaterialError, OSError):
        return False
    return True


__all__ = ["FORMAT", "KIND", "describe_store", "load_floor", "load_record", "save_record", "seal_record",
           "unseal_floor", "unseal_record"]
