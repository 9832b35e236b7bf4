"""The embedded SQLite log store (the default): one file, WAL, durable on commit.

``PRAGMA journal_mode=WAL`` with ``synchronous=FULL`` makes each committed batch
durable before ``append`` returns; a batch (leaves, hashes, checkpoint) is one
``BEGIN IMMEDIATE`` transaction, so a crash leaves either all of it or none.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from redline.errors import InconsistentLog, IndexOutOfRange, LogExists, LogNotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
"""

_TABLES = frozenset({"meta", "leaves", "hashes", "checkpoints"})

#: SQLite's default limit on bound parameters is 32766 in recent versions; stay well under.
_MAX_PARAMS = 900


class SqliteStore:
    """A ``LogStore`` in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LogNotFound(f"no log database at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            self._db.close()
            err = LogExists if create else InconsistentLog
            raise err(f"{self.path} is not a SQLite database: {exc}") from exc
        if create:
            # A creation that crashed before init() committed left no metadata and promised nothing: redo it.
            if tables - _TABLES or ("meta" in tables and self._db.execute("SELECT 1 FROM meta LIMIT 1").fetchone()):
                self._db.close()
                raise LogExists(f"a log database already exists at {self.path}")
            self._db.executescript(SCHEMA)
        else:
            missing = _TABLES - tables
            if missing:
                self._db.close()
                raise InconsistentLog(f"{self.path} is not a redline log "
                                      f"(missing tables: {', '.join(sorted(missing))})")

    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def init(self, meta: dict[str, bytes], checkpoint: bytes) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
                raise LogExists(f"{self.path} already holds a log")
            db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
            db.execute("INSERT INTO checkpoints(size, note) VALUES (0, ?)", (checkpoint,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def size(self) -> int:
        row = self._db.execute("SELECT MAX(idx) FROM leaves").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        found: dict[int, bytes] = {}
        uniq = sorted(set(indexes))
        for i in range(0, len(uniq), _MAX_PARAMS):
            part = uniq[i : i + _MAX_PARAMS]
            q = f"SELECT idx, hash FROM hashes WHERE idx IN ({','.join('?' * len(part))})"
            found.update((r[0], bytes(r[1])) for r in self._db.execute(q, part))
        try:
            return [found[i] for i in indexes]
        except KeyError as exc:
            raise IndexOutOfRange(f"stored hash {exc.args[0]} is not in the log") from exc

    def read_leaves(self, start: int, count: int) -> list[bytes]:
        rows = self._db.execute("SELECT idx, leaf FROM leaves WHERE idx >= ? AND idx < ? ORDER BY idx",
                                (start, start + count)).fetchall()
        if len(rows) != count:
            raise IndexOutOfRange(f"leaves {start}..{start + count - 1} are not all in the log")
        return [bytes(r[1]) for r in rows]

    def iter_leaves(self, start: int = 0, chunk: int = 4096) -> Iterator[tuple[int, bytes]]:
        pos = start
        while True:
            rows = self._db.execute("SELECT idx, leaf FROM leaves WHERE idx >= ? ORDER BY idx LIMIT ?",
                                    (pos, chunk)).fetchall()
            if not rows:
                return
            for idx, leaf in rows:
                yield idx, bytes(leaf)
            pos = rows[-1][0] + 1

    def iter_hashes(self, start: int = 0, chunk: int = 16384) -> Iterator[tuple[int, bytes]]:
        pos = start
        while True:
            rows = self._db.execute("SELECT idx, hash FROM hashes WHERE idx >= ? ORDER BY idx LIMIT ?",
                                    (pos, chunk)).fetchall()
            if not rows:
                return
            for idx, h in rows:
                yield idx, bytes(h)
            pos = rows[-1][0] + 1

    def checkpoint(self, size: int | None = None) -> bytes | None:
        if size is None:
            row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        else:
            row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
        return bytes(row[0]) if row else None

    def checkpoint_sizes(self) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT size FROM checkpoints ORDER BY size")]

    def append(self, expected_size: int, leaves: Sequence[bytes], hashes: Sequence[bytes], checkpoint: bytes,
               new_size: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.size() != expected_size:
                raise InconsistentLog(f"log size changed underneath the writer (expected {expected_size})")
            first_hash = 2 * expected_size - expected_size.bit_count()
            db.executemany("INSERT INTO leaves(idx, leaf) VALUES (?, ?)",
                           zip(range(expected_size, expected_size + len(leaves)), leaves))
            db.executemany("INSERT INTO hashes(idx, hash) VALUES (?, ?)",
                           zip(range(first_hash, first_hash + len(hashes)), hashes))
            db.execute("INSERT INTO checkpoints(size, note) VALUES (?, ?)", (new_size, checkpoint))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
