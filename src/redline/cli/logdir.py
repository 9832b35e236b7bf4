"""Opening a log directory: the one place every ``redline`` command turns LOGDIR into a log, a registry or a state.

A log directory holds ``log.db`` (the SQLite store) and ``log.key`` (the log's
private key, mode 0600, needed only to append). Instead of ``log.db`` it may hold
``store.url``: one line naming a PostgreSQL database (``postgresql://...``, e.g.
``postgresql:///redline?host=/run/postgresql``), whose store several ``redline
serve`` processes can share. A directory with neither is refused with
:class:`~redline.errors.LogNotFound`, which says how to make one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from redline.crypto.keys import SigningKey, VerifierKey
from redline.engine import Entry, State, replay
from redline.errors import LogNotFound, MalformedInput
from redline.log.service import Clock, Log, system_clock_ms
from redline.log.sqlite import SqliteStore
from redline.log.store import LogStore
from redline.registry import Registry

DB_FILE = "log.db"
KEY_FILE = "log.key"
#: A file naming the PostgreSQL store of the log (instead of ``log.db``).
URL_FILE = "store.url"


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
    """Create an empty log signed by ``key`` (its name is the origin) in LOGDIR; ``clock`` stamps its entries."""
    return Log.create(open_store(logdir, create=True), key, clock=clock)


def open_log(logdir: Path, *, signing: bool = False, verify: bool = False, key_path: Path | None = None,
             trusted: VerifierKey | None = None, progress: Callable[[int, int], None] | None = None) -> Log:
    """The log in LOGDIR.

    ``signing`` loads the log key (LOGDIR/log.key, or ``key_path``) so that the log can append;
    ``verify`` re-derives every stored hash and checks every checkpoint first (``progress`` is told how
    far it got); ``trusted`` is the log key the caller expects.
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
        return Log.open(store, key=key, trusted=trusted, verify=verify, progress=progress)
    except BaseException:
        store.close()
        raise


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


__all__ = ["create_log", "has_log", "log_origin", "log_paths", "not_found", "open_log", "open_registry", "open_store",
           "replayed_state", "store_url"]
