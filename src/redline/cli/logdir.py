"""Opening a log directory: the one place every ``redline`` command turns LOGDIR into a log, a registry or a state.

A log directory holds ``log.db`` (the SQLite store) and ``log.key`` (the log's
private key, mode 0600, needed only to append). Instead of ``log.db`` it may hold
``store.url``: one line naming a PostgreSQL database (``postgresql://...``, e.g.
``postgresql:///redline?host=/run/postgresql``), whose store several ``redline
serve`` processes can share. A directory with neither is refused with
:class:`~redline.errors.LogNotFound`, which says how to make one.

The log's *verification record* (``redline.log.verified``) is what the user's last
verification of it established, sealed under the user's cache key and kept beside
that key (``record_path``), outside the log directory: whoever can write LOGDIR can
neither remove it nor put back an older one with an older store. Opening
the log with ``verify=True`` checks only what changed since it (``verify_since``:
the latest checkpoint, the stored tree at the recorded size, the entries and
checkpoints added since), and verifies the whole log only when there is no usable
record; ``verify="full"`` (``redline log verify``) always re-derives everything.
Each verified open leaves a fresh record when it can write one.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from redline.crypto.keys import SigningKey, VerifierKey
from redline.engine import State
from redline.errors import InconsistentLog, InvalidProof, LogNotFound, MalformedInput, RedlineError
from redline.log import merkle
from redline.log import verified as records
from redline.log.service import Clock, Log, RolledBack, Verified, system_clock_ms
from redline.log.sqlite import SqliteStore
from redline.log.store import LogStore
from redline.registry import Registry
from redline.statecache import load_state

DB_FILE = "log.db"
KEY_FILE = "log.key"
#: A file naming the PostgreSQL store of the log (instead of ``log.db``).
URL_FILE = "store.url"
#: The directory, beside the user's cache key, of the user's verification records (one per log directory).
RECORD_DIR = "verified"


def log_paths(logdir: Path, key_path: Path | None = None) -> tuple[Path, Path]:
    """The store and the log key file of LOGDIR (``key_path`` overrides the key file)."""
    return logdir / DB_FILE, key_path or logdir / KEY_FILE


def not_found(logdir: Path) -> LogNotFound:
    """The error for a directory that holds no log."""
    return LogNotFound(f"no log in {logdir} (run 'redline log init {logdir}' first)")


def store_url(logdir: Path) -> str | None:
    """The PostgreSQL URL in LOGDIR/store.url, or None when there is no such file."""
    path = logdir / URL_FILE
    if not path.is_file():
        return None
    from redline.cli.inputs import read_bounded
    from redline.log.postgres import is_postgres_url

    try:
        url = read_bounded(path, 4096).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MalformedInput(f"{path} is not UTF-8 text") from None
    if not is_postgres_url(url):
        raise MalformedInput(f"{path} does not name a PostgreSQL database (postgresql://...)")
    return url


def has_log(logdir: Path) -> bool:
    """Whether LOGDIR names a store (``log.db`` or ``store.url``); the store itself is not opened."""
    return (logdir / DB_FILE).is_file() or (logdir / URL_FILE).is_file()


def open_store(logdir: Path, *, create: bool = False) -> LogStore:
    """The store LOGDIR names: PostgreSQL when it holds ``store.url``, else SQLite in ``log.db``."""
    url = store_url(logdir)
    if url is not None:
        from redline.log.postgres import PostgresStore

        return PostgresStore(url, create=create)
    return SqliteStore(log_paths(logdir)[0], create=create)


def create_log(logdir: Path, key: SigningKey, *, clock: Clock = system_clock_ms) -> Log:
    """Create an empty log signed by ``key`` (its name is the origin) in LOGDIR; ``clock`` stamps its entries.

    A verification record left in LOGDIR by an earlier log is removed: it describes another history."""
    log = Log.create(open_store(logdir, create=True), key, clock=clock)
    with contextlib.suppress(FileNotFoundError):
        record_path(logdir).unlink()
    return log


def open_log(logdir: Path, *, signing: bool = False, verify: bool | Literal["full"] = False,
             key_path: Path | None = None, trusted: VerifierKey | None = None,
             progress: Callable[[int, int], None] | None = None) -> Log:
    """The log in LOGDIR.

    ``signing`` loads the log key (LOGDIR/log.key, or ``key_path``) so that the log can append; ``trusted`` is
    the log key the caller expects. ``verify=True`` checks the log before it is used: only what changed since
    LOGDIR's verification record when there is a usable one (cheap: the latest checkpoint, O(log n) stored
    hashes, the entries and checkpoints added since; a store rolled back below the record is refused with
    ``RolledBack``), else every stored hash and checkpoint; ``verify="full"`` always checks everything. A verified
    open then writes a fresh record (skipped quietly where LOGDIR is not writable). ``progress`` is told how many
    entries were re-derived. Entries below the record are checked as they are read (``Log.entries``).
    """
    _, kp = log_paths(logdir, key_path)
    if not has_log(logdir):
        raise not_found(logdir)
    if signing:
        from redline.cli.inputs import signing_key

        key = signing_key(kp)
    else:
        key = None
    store = open_store(logdir)
    try:
        since = verification_record(logdir, store) if verify is True else None
        try:
            log = Log.open(store, key=key, trusted=trusted, verify=bool(verify), since=since, progress=progress)
            if verify is True and since is None:
                _check_floor(logdir, log)
        except RolledBack as exc:
            raise RolledBack(f"{logdir}: {exc}. If it was restored on purpose, run 'redline log verify {logdir}' to "
                             "verify the whole log and accept it", exc.index) from None
        if verify and log.verified != since:
            save_verification(logdir, log)
        return log
    except BaseException:
        store.close()
        raise


def _check_floor(logdir: Path, log: Log) -> None:
    """After a full verification that found no usable record: the log must still hold the history this user's
    record of LOGDIR says was verified, even when that record names another store (the store was swapped under
    the same name, e.g. ``log.db`` made a symlink to an older copy) or was made by another redline (an upgrade).
    ``RolledBack`` when it holds fewer entries, ``InconsistentLog`` when another history."""
    found = records.load_floor(record_path(logdir), log.verifier)
    if found is None:
        return
    floor, where = found
    here = records.describe_store(log.store)
    if floor.size > log.size:
        raise RolledBack(f"the store ({here}) holds {log.size} entries, fewer than the {floor.size} your earlier "
                         f"verification of this log directory saw (in {where}): it was swapped or restored from an "
                         "older copy", index=log.size)
    if 0 < floor.size < log.size:
        try:
            merkle.verify_consistency(floor.size, log.size, floor.root, log.verified.root if log.verified else b"",
                                      log.prove_consistency(floor.size, log.size))
        except InvalidProof as exc:
            raise InconsistentLog(f"the store ({here}) holds another history than the one your earlier "
                                  f"verification of this log directory saw (in {where}): {exc}",
                                  index=floor.size - 1) from None
    elif floor.size == log.size and log.verified is not None and floor.root != log.verified.root:
        raise InconsistentLog(f"the store ({here}) holds another history than the one your earlier verification "
                              f"of this log directory saw (in {where})", index=max(floor.size - 1, 0))


def record_path(logdir: Path) -> Path:
    """Where this user keeps the verification record of LOGDIR: beside the cache key, named by LOGDIR's real
    path (the record itself is also bound to the store it describes)."""
    from redline.log.localcache import cache_key_path

    name = hashlib.sha256(str(logdir.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return cache_key_path().parent / RECORD_DIR / f"{name}.sealed"


def _named_key(store: LogStore) -> VerifierKey | None:
    origin, public = store.get_meta("origin"), store.get_meta("public_key")
    if origin is None or public is None:
        return None
    try:
        return VerifierKey(origin.decode(), public)
    except (UnicodeDecodeError, ValueError, RedlineError):
        return None


def verification_record(logdir: Path, store: LogStore) -> Verified | None:
    """LOGDIR's verification record for the log in ``store`` (opened from LOGDIR), when there is a usable one."""
    described = records.describe_store(store)
    verifier = _named_key(store)
    if described is None or verifier is None:
        return None
    return records.load_record(record_path(logdir), verifier, described)[0]


def recorded_size(logdir: Path, store: LogStore) -> int | None:
    """How many entries of the log in ``store`` this user's record of LOGDIR says were verified, whatever store or
    redline made the record (None without one)."""
    verifier = _named_key(store)
    found = records.load_floor(record_path(logdir), verifier) if verifier is not None else None
    return None if found is None else found[0].size


def save_verification(logdir: Path, log: Log) -> bool:
    """Write LOGDIR's verification record from what ``log`` (opened from LOGDIR with verification) established,
    appends included; False when there is nothing to record or it cannot be written (no error: it only saves
    work)."""
    described = records.describe_store(log.store)
    if log.verified is None or described is None:
        return False
    return records.save_record(record_path(logdir), log.verified, log.verifier, described)


def open_registry(logdir: Path, *, use_cache: bool = True) -> Registry:
    """The registry over the verified log in LOGDIR; it appends with LOGDIR/log.key. Its state comes from the
    latest usable snapshot plus the entries after it (``use_cache=False``: replayed from the start)."""
    log = open_log(logdir, signing=True, verify=True)
    try:
        return Registry(log, load_state(log, logdir, use_cache=use_cache, note=_note).state)
    except BaseException:
        log.store.close()
        raise


def replayed_state(logdir: Path, *, trusted: VerifierKey | None = None, use_cache: bool = True,
                   check_snapshot: bool = False) -> State:
    """The engine's state of the verified log in LOGDIR, as its registry holds it (no key needed): from the latest
    usable snapshot plus the entries after it, every one authenticated against the signed checkpoint
    (``use_cache=False``: replayed from the start; ``check_snapshot``: the snapshot's state digested again);
    ``trusted`` pins the log's verifier key (a log signed by another is refused)."""
    log = open_log(logdir, verify=True, trusted=trusted)
    try:
        # the state outlives ``log``: should its timeline be recovered later (see redline.statecache), the log is
        # opened again, verified as here
        return load_state(log, logdir, use_cache=use_cache, note=_note, check_snapshot=check_snapshot,
                          reopen=lambda: open_log(logdir, verify=True, trusted=trusted)).state
    finally:
        log.store.close()


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def log_origin(logdir: Path) -> str:
    """The origin of the log in LOGDIR (its stored metadata; nothing is verified)."""
    log = open_log(logdir)
    try:
        return log.origin
    finally:
        log.store.close()


__all__ = ["RECORD_DIR", "create_log", "has_log", "log_origin", "log_paths", "not_found", "open_log", "open_registry",
           "open_store", "record_path", "recorded_size", "replayed_state", "save_verification", "store_url",
           "verification_record"]
