"""Opening a log directory: the one place every ``redline`` command turns LOGDIR into a log, a registry or a state.

A log directory holds ``log.db`` (the SQLite store) and ``log.key`` (the log's
private key, mode 0600, needed only to append). A directory without ``log.db``
is refused with :class:`~redline.errors.LogNotFound`, which says how to make one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redline.crypto.keys import SigningKey, VerifierKey, load_signing_key
from redline.engine import Entry, State, replay
from redline.errors import LogNotFound
from redline.log.service import Clock, Log, system_clock_ms
from redline.log.sqlite import SqliteStore
from redline.registry import Registry

DB_FILE = "log.db"
KEY_FILE = "log.key"


def log_paths(logdir: Path, key_path: Path | None = None) -> tuple[Path, Path]:
    """The store and the log key file of LOGDIR (``key_path`` overrides the key file)."""
    return logdir / DB_FILE, key_path or logdir / KEY_FILE


def not_found(logdir: Path) -> LogNotFound:
    """The error for a directory that holds no log."""
    return LogNotFound(f"no log in {logdir} (run 'redline log init {logdir}' first)")


def create_log(logdir: Path, key: SigningKey, *, clock: Clock = system_clock_ms) -> Log:
    """Create an empty log signed by ``key`` (its name is the origin) in LOGDIR; ``clock`` stamps its entries."""
    return Log.create(SqliteStore(log_paths(logdir)[0], create=True), key, clock=clock)


def open_log(logdir: Path, *, signing: bool = False, verify: bool = False, key_path: Path | None = None,
             trusted: VerifierKey | None = None, progress: Callable[[int, int], None] | None = None) -> Log:
    """The log in LOGDIR.

    ``signing`` loads the log key (LOGDIR/log.key, or ``key_path``) so that the log can append;
    ``verify`` re-derives every stored hash and checks every checkpoint first (``progress`` is told how
    far it got); ``trusted`` is the log key the caller expects.
    """
    db, kp = log_paths(logdir, key_path)
    if not db.is_file():
        raise not_found(logdir)
    key = load_signing_key(kp) if signing else None
    return Log.open(SqliteStore(db), key=key, trusted=trusted, verify=verify, progress=progress)


def open_registry(logdir: Path) -> Registry:
    """The registry over the verified log in LOGDIR; it appends with LOGDIR/log.key."""
    return Registry(open_log(logdir, signing=True, verify=True))


def replayed_state(logdir: Path, *, trusted: VerifierKey | None = None) -> State:
    """The engine's state replayed from the verified log in LOGDIR, as its registry holds it (no key needed);
    ``trusted`` pins the log's verifier key (a log signed by another is refused)."""
    log = open_log(logdir, verify=True, trusted=trusted)
    try:
        return replay((Entry(i, t, e) for i, t, e in log.entries()), State(origin=log.origin))
    finally:
        log.store.close()


def log_origin(logdir: Path) -> str:
    """The origin of the log in LOGDIR (its stored metadata; nothing is verified)."""
    log = open_log(logdir)
    try:
        return log.origin
    finally:
        log.store.close()


__all__ = ["create_log", "log_origin", "log_paths", "not_found", "open_log", "open_registry", "replayed_state"]
