"""The embedded SQLite log store (the default): one file, WAL, durable on commit.

``PRAGMA journal_mode=WAL`` with ``synchronous=FULL`` makes each committed batch
durable before ``append`` returns; a batch (leaves, hashes, checkpoint) is one
``BEGIN IMMEDIATE`` transaction, so a crash leaves either all of it or none.

Leaves are packed as in C2SP entry bundles (each leaf as a big-endian uint16
length, then its bytes) in ``leaf_chunks``: row ``first`` holds ``count`` leaves
from index ``first`` on and never crosses a multiple of ``CHUNK_LEAVES`` (16), so
the rows of entry bundle ``b`` (leaves ``256·b`` to ``256·b+255``), concatenated in
order, are the bundle's ``tile/entries/<b>`` bytes. An append writes one row per
16-leaf block it touches: a single-entry append writes one small row, a batch of
1,000 writes about 63 rows of packed leaves instead of 1,000 rows. Rows are never
rewritten, with one exception: the append that fills a block which would then be
more than ``MAX_BLOCK_ROWS`` rows (one built by very small appends) merges the
block into one row, in the same transaction. Blocks of 16 keep a random read of
one leaf cheap (a row is a few pages; SQLite reads a long blob's overflow pages as
a chain). The log's size is the end of the last row (one index lookup). A row that
does not hold exactly ``count`` well-formed leaves is reported by ``iter_leaves``,
so opening the log names the first entry it spoils.

Stored hashes (in the order ``redline.log.merkle`` defines) are packed 256 to a row
in ``hash_tiles``: tile ``t`` holds stored hashes ``256·t`` onwards, concatenated; a
batch rewrites the last partial tile and adds new ones. Packing keeps appends to a
few rows per batch and lets a proof read the few hashes it needs with one query.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import struct
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from redline.errors import EntryTooLarge, InconsistentLog, IndexOutOfRange, LogError, LogExists, LogNotFound

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaf_chunks (first INTEGER PRIMARY KEY, count INTEGER NOT NULL, leaves BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hash_tiles (tile INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);
"""

_TABLES = frozenset({"meta", "leaf_chunks", "hash_tiles", "checkpoints"})

#: Leaves per C2SP entry bundle: the concatenated ``leaf_chunks`` rows of leaves ``256·b`` onwards.
BUNDLE_LEAVES = 256
#: Leaves per block: a ``leaf_chunks`` row never crosses a multiple of this (it divides BUNDLE_LEAVES).
CHUNK_LEAVES = 16
#: Most rows a full block is kept in; an append that fills a block of more rows merges them into one.
MAX_BLOCK_ROWS = 4
#: Stored hashes per ``hash_tiles`` row, and the bytes of a full row.
TILE_HASHES = 256
_HASH = 32
_TILE_BYTES = TILE_HASHES * _HASH

#: SQLite's default limit on bound parameters is 32766 in recent versions; stay well under.
_MAX_PARAMS = 900


def _corrupt_is_inconsistent(fn: Callable[..., _T]) -> Callable[..., _T]:
    """SQLite's "database disk image is malformed" (and kin) as ``InconsistentLog`` naming the file: a corrupt page
    is an altered store, not a crash. Busy/locked errors (``OperationalError``) and the use of a closed store
    (``ProgrammingError``) pass through unchanged."""
    @functools.wraps(fn)
    def guarded(self: SqliteStore, *args: Any, **kwargs: Any) -> _T:
        try:
            return fn(self, *args, **kwargs)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError):  # busy, locked; a closed store is no fault of it
            raise
        except sqlite3.DatabaseError as exc:
            raise InconsistentLog(f"the log store {self.path} is corrupt: {exc}") from exc
    return guarded


def _guard_iter(fn: Callable[..., Iterator[_T]]) -> Callable[..., Iterator[_T]]:
    """``_corrupt_is_inconsistent`` for a generator method."""
    @functools.wraps(fn)
    def guarded(self: SqliteStore, *args: Any, **kwargs: Any) -> Iterator[_T]:
        try:
            yield from fn(self, *args, **kwargs)
        except (sqlite3.OperationalError, sqlite3.ProgrammingError):  # busy, locked; a closed store is no fault of it
            raise
        except sqlite3.DatabaseError as exc:
            raise InconsistentLog(f"the log store {self.path} is corrupt: {exc}") from exc
    return guarded


def _read_only_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """``path`` opened for reading only. A database in WAL mode needs its ``-shm`` file to be read; where it cannot
    be created (a directory this user may not write) and there is none, the file is opened as *immutable*: read as
    it is, without locks. A writer changing it meanwhile can only make what is read fail the log's checks (every
    read is checked against the signed checkpoint), never pass them."""
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None, check_same_thread=False)


class SqliteStore:
    """A ``LogStore`` in one SQLite file."""

    def __init__(self, path: str | Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LogNotFound(f"no log database at {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: Opened read-only: this user may not write the database or its directory (a reader of someone else's
        #: log, a read-only copy). Reading works; ``append`` is refused with a clear error.
        self.read_only = False
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as exc:
                if create or not _read_only_error(exc):
                    raise
                self._db.close()
                self._db = _connect_read_only(self.path)
                self.read_only = True
            if not self.read_only:
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

    def describe(self) -> str:
        """Which store this is, for a verification record (``redline.log.verified``): the database file's real
        path."""
        return f"sqlite:{os.path.realpath(self.path)}"

    @_corrupt_is_inconsistent
    def get_meta(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    @_corrupt_is_inconsistent
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
            if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk): keep the real error
                db.execute("ROLLBACK")
            raise

    @_corrupt_is_inconsistent
    def size(self) -> int:
        row = self._db.execute("SELECT first + count FROM leaf_chunks ORDER BY first DESC LIMIT 1").fetchone()
        return 0 if row is None else row[0]

    @_corrupt_is_inconsistent
    def _tiles(self, tiles: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for i in range(0, len(tiles), _MAX_PARAMS):
            part = tiles[i : i + _MAX_PARAMS]
            q = f"SELECT tile, hashes FROM hash_tiles WHERE tile IN ({','.join('?' * len(part))})"
            found.update((r[0], r[1]) for r in self._db.execute(q, part))
        return found

    @_corrupt_is_inconsistent
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

    @_corrupt_is_inconsistent
    def read_leaves(self, start: int, count: int) -> list[bytes]:
        if count <= 0:
            return []
        end = start + count
        rows = self._db.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first >= ? AND first < ? "
                                "ORDER BY first", (start - start % CHUNK_LEAVES, end)).fetchall()
        out: list[bytes] = []
        for first, n, blob in rows:
            if first + n <= start:
                continue
            if first != start + len(out) and not (not out and first <= start):
                break  # a gap
            leaves, sound = _unpack(blob, n, start - first, end - first)
            out.extend(leaves)
            if sound < min(n, end - first):
                break  # a torn row
        if len(out) != count:
            raise IndexOutOfRange(f"leaves {start}..{end - 1} are not all in the log")
        return out

    @_guard_iter
    def iter_leaves(self, start: int = 0, chunk: int = 4096) -> Iterator[tuple[int, bytes]]:
        """Every (index, leaf) from ``start``; a row that does not hold ``count`` well-formed leaves yields
        the ones it holds, then its first bad index with an empty leaf, and ends the iteration."""
        pos = start - start % CHUNK_LEAVES
        chunk = max(chunk, CHUNK_LEAVES)
        while True:
            rows = self._db.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first >= ? AND first < ? "
                                    "ORDER BY first", (pos, pos + chunk)).fetchall()
            if not rows:
                last = self._db.execute("SELECT first FROM leaf_chunks WHERE first >= ? ORDER BY first LIMIT 1",
                                        (pos,)).fetchone()
                if last is None:
                    return
                pos = last[0]
                continue
            for first, n, blob in rows:
                lo = max(0, start - first)
                leaves, sound = _unpack(blob, n, lo)
                yield from zip(range(first + lo, first + sound), leaves)
                if sound != n or n <= 0:
                    if first + sound >= start:
                        yield first + sound, b""
                    return
            pos = rows[-1][0] + max(1, rows[-1][1])

    @_guard_iter
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

    @_corrupt_is_inconsistent
    def checkpoint(self, size: int | None = None) -> bytes | None:
        if size is None:
            row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        else:
            row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
        return bytes(row[0]) if row else None

    @_corrupt_is_inconsistent
    def checkpoint_sizes(self) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT size FROM checkpoints ORDER BY size")]

    @_corrupt_is_inconsistent
    def append(self, expected_size: int, leaves: Sequence[bytes], hashes: Sequence[bytes], checkpoint: bytes,
               new_size: int) -> None:
        if self.read_only:
            raise LogError(f"{self.path} is open read-only (this user may not write it or its directory): nothing "
                           "can be appended")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if self.size() != expected_size:
                raise InconsistentLog(f"log size changed underneath the writer (expected {expected_size})")
            db.executemany("INSERT INTO leaf_chunks(first, count, leaves) VALUES (?, ?, ?)",
                           self._chunk_rows(expected_size, leaves))
            first_hash = 2 * expected_size - expected_size.bit_count()
            tile, used = divmod(first_hash, TILE_HASHES)
            buf = b"".join(hashes)
            if used:
                row = db.execute("SELECT hashes FROM hash_tiles WHERE tile=?", (tile,)).fetchone()
                if row is None or len(row[0]) != used * _HASH:
                    raise InconsistentLog(f"hash tile {tile} does not end at stored hash {first_hash}")
                buf = row[0] + buf
            db.executemany("INSERT OR REPLACE INTO hash_tiles(tile, hashes) VALUES (?, ?)", hash_tile_rows(tile, buf))
            db.execute("INSERT INTO checkpoints(size, note) VALUES (?, ?)", (new_size, checkpoint))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk): keep the real error
                db.execute("ROLLBACK")
            raise

    def _chunk_rows(self, size: int, leaves: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """The ``leaf_chunks`` rows that add ``leaves`` at ``size``: one per block they touch.

        When they fill a block that would then be more than ``MAX_BLOCK_ROWS`` rows, the first row returned
        holds the whole block and the block's earlier rows are deleted (inside the append's transaction).
        """
        rows = split_leaf_rows(size, leaves)
        used = size % CHUNK_LEAVES
        if used and rows[0][1] == CHUNK_LEAVES - used:  # this append fills the last, partial block
            base = size - used
            if self._db.execute("SELECT COUNT(*) FROM leaf_chunks WHERE first >= ?", (base,)).fetchone()[0] \
                    >= MAX_BLOCK_ROWS:
                old = self._db.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first >= ? "
                                       "ORDER BY first", (base,)).fetchall()
                pos, blobs = base, []
                for first, n, blob in old:
                    if first != pos:
                        raise InconsistentLog(f"entry {pos} is missing from the store", index=pos)
                    blobs.append(blob)
                    pos += n
                if pos != size:
                    raise InconsistentLog(f"the leaf rows from entry {base} end at {pos}, not {size}", index=base)
                self._db.execute("DELETE FROM leaf_chunks WHERE first >= ? AND first < ?", (base, size))
                blobs.append(rows[0][2])
                rows[0] = (base, CHUNK_LEAVES, b"".join(blobs))
        return rows

    def close(self) -> None:
        self._db.close()


#: A leaf's length is a big-endian uint16 in a bundle.
_MAX_LEAF = 0xFFFF
_U16 = struct.Struct(">H").pack


def hash_tile_rows(tile: int, buf: bytes) -> list[tuple[int, bytes]]:
    """The ``hash_tiles`` rows ``(tile, hashes)`` that hold ``buf``, stored hashes from the start of ``tile`` on."""
    return [(tile + k // _TILE_BYTES, buf[k : k + _TILE_BYTES]) for k in range(0, len(buf), _TILE_BYTES)]


def split_leaf_rows(size: int, leaves: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
    """The ``leaf_chunks`` rows ``(first, count, bytes)`` that add ``leaves`` to a log of ``size``: each leaf as in a
    C2SP entry bundle (uint16 length, then the bytes), one row per block of ``CHUNK_LEAVES`` the batch touches (a
    store may then merge the last block's rows)."""
    lengths = list(map(len, leaves))
    if lengths and max(lengths) > _MAX_LEAF:
        k = next(k for k, n in enumerate(lengths) if n > _MAX_LEAF)
        raise EntryTooLarge(f"leaf {size + k} is {lengths[k]} bytes, over the bundle limit of {_MAX_LEAF}")
    parts: list[bytes] = [b""] * (2 * len(lengths))
    parts[0::2] = map(_U16, lengths)
    parts[1::2] = leaves
    rows = []
    pos, end = size, size + len(leaves)
    while pos < end:
        stop = min(end, pos - pos % CHUNK_LEAVES + CHUNK_LEAVES)
        rows.append((pos, stop - pos, b"".join(parts[2 * (pos - size) : 2 * (stop - size)])))
        pos = stop
    return rows


def _unpack(blob: bytes, count: int, lo: int = 0, hi: int | None = None) -> tuple[list[bytes], int]:
    """Leaves ``lo .. hi-1`` (default: all ``count``) of a packed row, and how many of its leaves are sound.

    Reading stops at ``hi`` or at the first leaf that runs past the row's end. Bytes after all ``count``
    leaves tear the row: its last leaf is then not sound, so the caller sees the row as bad from there.
    """
    hi = count if hi is None else min(count, hi)
    out = []
    pos, size, k = 0, len(blob), 0
    while k < hi and pos + 2 <= size:
        end = pos + 2 + (blob[pos] << 8 | blob[pos + 1])
        if end > size:
            break
        if k >= lo:
            out.append(blob[pos + 2 : end])
        pos = end
        k += 1
    if k == count and pos != size:
        k -= 1
        if k >= lo:
            out.pop()
    return out, k
