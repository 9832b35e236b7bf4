"""A log writer for the crash-safety test: appends deterministic batches until it is killed.

Usage: ``crash_writer.py DB KEYFILE SEED``. Opens the log at DB (creating it the
first time) and appends batches of 1..50 entries forever; entry ``i``'s bytes are
``entry_bytes(i)``, so the parent can recompute every one. After each append
returns (durably) it writes ``<size> <base64 checkpoint>`` as one flushed line;
the first line is the size and checkpoint it found (or created) on opening.

``crash_writer.py --die-at POINT DB KEYFILE`` instead kills itself with SIGKILL at
one exact point: ``create`` (schema made, log not yet initialised),
``init-commit`` (just before the creating transaction commits),
``append-commit`` (after one acknowledged batch, just before the next commits) or
``merge-commit`` (after four acknowledged single-entry appends, just before the
batch that fills their block, and so merges its rows, commits).
"""

from __future__ import annotations

import base64
import os
import random
import signal
import sys
import time
from pathlib import Path

from redline.crypto.keys import load_signing_key
from redline.errors import LogExists
from redline.log.service import Log
from redline.log.sqlite import SqliteStore

MAX_ENTRY = 3 * 1024


def entry_bytes(index: int) -> bytes:
    """The entry at ``index``: its index, then 0..3 KiB of bytes seeded by the index."""
    rng = random.Random(index)
    return f"crash-test entry {index}\n".encode() + rng.randbytes(rng.randrange(MAX_ENTRY))


def open_or_create(db: Path, key_file: Path) -> Log:
    """The log at ``db``, created if there is none yet (also after a crash during creation)."""
    key = load_signing_key(key_file)
    try:
        store = SqliteStore(db, create=True)
    except LogExists:
        return Log.open(SqliteStore(db), key=key, verify=False)
    return Log.create(store, key)


def ack(size: int, checkpoint: bytes) -> None:
    sys.stdout.write(f"{size} {base64.b64encode(checkpoint).decode()}\n")
    sys.stdout.flush()


class _DieOnCommit:
    """Wraps a store's connection and kills the process the moment a transaction would commit."""

    def __init__(self, db) -> None:
        self._db = db

    def __getattr__(self, name: str):
        return getattr(self._db, name)

    def execute(self, sql: str, *args):
        if sql == "COMMIT":
            os.kill(os.getpid(), signal.SIGKILL)
        return self._db.execute(sql, *args)


def die_at(point: str, db: Path, key_file: Path) -> None:
    """Crash at ``point`` (see the module docstring); never returns."""
    if point in ("create", "init-commit"):
        store = SqliteStore(db, create=True)
        if point == "init-commit":
            store._db = _DieOnCommit(store._db)
            Log.create(store, load_signing_key(key_file))
    elif point == "append-commit":
        log = open_or_create(db, key_file)
        done = log.append([entry_bytes(i) for i in range(log.size, log.size + 3)])
        ack(log.size, done.checkpoint)
        log.store._db = _DieOnCommit(log.store._db)
        log.append([entry_bytes(i) for i in range(log.size, log.size + 5)])
    elif point == "merge-commit":
        log = open_or_create(db, key_file)
        for _ in range(4):
            done = log.append([entry_bytes(log.size)])
            ack(log.size, done.checkpoint)
        log.store._db = _DieOnCommit(log.store._db)
        log.append([entry_bytes(i) for i in range(log.size, log.size + 20)])
    os.kill(os.getpid(), signal.SIGKILL)


def main(db: str, key_file: str, seed: str) -> None:
    log = open_or_create(Path(db), Path(key_file))
    ack(log.size, log.checkpoint())
    rng = random.Random(f"{seed}/{log.size}")
    while True:
        start = log.size
        done = log.append([entry_bytes(i) for i in range(start, start + rng.randint(1, 50))])
        ack(log.size, done.checkpoint)
        time.sleep(rng.uniform(0, 0.004))  # pace the writer so the test's log stays small


if __name__ == "__main__":
    if sys.argv[1] == "--die-at":
        die_at(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    main(*sys.argv[1:])
