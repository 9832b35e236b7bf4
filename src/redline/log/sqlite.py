"""The embedded SQLite log store (the default): one file, WAL, durable on commit.

``PRAGMA journal_mode=WAL`` with ``synchronous=FULL`` makes each committed batch
durable before ``append`` returns; a batch (leaves, hashes, checkpoint) is one
``BEGIN IMMEDIATE`` transaction, so a crash leaves either all of it or none.

Leaves are one row each. Stored hashes (in the order ``redline.log.merkle``
defines) are packed 256 to a row in ``hash_tiles``: tile ``t`` holds stored hashes
``256·t`` onwards, concatenated; a batch rewrites the last partial tile and adds
new ones. Packing keeps appends at about one row per entry and lets a proof read
the few hashes it needs with one query.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from redline.errors import InconsistentLog, IndexOutOfRange, LogExists, LogNotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hash_tiles (tile INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
"""

_TABLES = frozenset({"meta", "leaves", "hash_tiles", "checkpoints"})

#: Stored hashes per ``hash_tiles`` row, and the bytes of a full row.
TILE_HASHES = 256
_HASH = 32
_TILE_BYTES = TILE_HASHES * _HASH

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

    def _tiles(self, tiles: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for i in range(0, len(tiles), _MAX_PARAMS):
            part = tiles[i : i + _MAX_PARAMS]
            q = f"SELECT tile, hashes FROM hash_tiles WHERE tile IN ({','.join('?' * len(part))})"
            found.update((r[0], r[1]) for r in self._db.execute(q, part))
        return found

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        tiles = self._tiles(sorted({i // TILE_HASHES for i in indexes}))
        out = []
        for i in indexes:
            blob = tiles.get(i // TILE_HASHES)
            off = (i % TILE_HASHES) * _HASH
            if blob is None or len(blob) < off + _HASH:
                raise IndexOutOfRange(f"stored hash {i} is not in the log")
            out.append(bytes(blob[off : off + _HASH]))
        return out

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

    def iter_hashes(self, start: int = 0, chunk: int = 64) -> Iterator[tuple[int, bytes]]:
        tile = start // TILE_HASHES
        while True:
            rows = self._db.execute("SELECT tile, hashes FROM hash_tiles WHERE tile >= ? ORDER BY tile LIMIT ?",
                                    (tile, chunk)).fetchall()
            if not rows:
                return
            for t, blob in rows:
                if t != tile or len(blob) % _HASH or len(blob) > _TILE_BYTES:
                    # A gap or a torn row: report the first stored index that cannot be read back.
                    yield tile * TILE_HASHES, b""
                    return
                base = t * TILE_HASHES
                for k in range(max(0, start - base), len(blob) // _HASH):
                    yield base + k, bytes(blob[k * _HASH : (k + 1) * _HASH])
                tile += 1
                if len(blob) < _TILE_BYTES:
                    return

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
            tile, used = divmod(first_hash, TILE_HASHES)
            buf = b"".join(hashes)
            if used:
                row = db.execute("SELECT hashes FROM hash_tiles WHERE tile=?", (tile,)).fetchone()
                if row is None or len(row[0]) != used * _HASH:
                    raise InconsistentLog(f"hash tile {tile} does not end at stored hash {first_hash}")
                buf = row[0] + buf
            db.executemany("INSERT OR REPLACE INTO hash_tiles(tile, hashes) VALUES (?, ?)",
                           ((tile + k // _TILE_BYTES, buf[k : k + _TILE_BYTES]) for k in range(0, len(buf), _TILE_BYTES)))
            db.execute("INSERT INTO checkpoints(size, note) VALUES (?, ?)", (new_size, checkpoint))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
