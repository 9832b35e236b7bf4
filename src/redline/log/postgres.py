"""The PostgreSQL log store: several ``redline serve`` processes append to one log.

Needs the ``postgres`` extra (psycopg 3). The schema follows the SQLite store
(``redline.log.sqlite``): ``meta``, ``leaf_chunks`` (leaves packed as C2SP entry
bundles, a row never crossing a multiple of ``CHUNK_LEAVES``), ``hash_tiles``
(256 stored hashes a row) and ``checkpoints``, in the connection's current schema
(one log per schema: pick it with ``options=-csearch_path=NAME`` in the URL).

One integrator at a time: every append runs in one transaction that first takes
a transaction-scoped advisory lock (``pg_advisory_xact_lock``, keyed by the
schema) and then checks the log's size, so two writers can never fork the log;
a writer whose size is behind gets :class:`~redline.errors.StaleLog` and
nothing is written. :meth:`PostgresStore.exclusive` takes that lock early, so a
writer can catch up and prepare its batch with nobody appending in between (the
append inside it commits and releases the lock). A commit is acknowledged only
once PostgreSQL has made it durable (``synchronous_commit`` is forced ``on``).
A lost connection surfaces as :class:`StoreUnavailable` (a ``LogError``) and is
reopened on the next call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from redline.errors import InconsistentLog, IndexOutOfRange, LogError, LogExists, LogNotFound, StoreUnavailable
from redline.log.sqlite import (
    _HASH,
    _TILE_BYTES,
    CHUNK_LEAVES,
    MAX_BLOCK_ROWS,
    TILE_HASHES,
    _unpack,
    hash_tile_rows,
    split_leaf_rows,
)

try:  # the postgres extra
    import psycopg
except ImportError:  # pragma: no cover - exercised only without the extra
    psycopg = None  # type: ignore[assignment]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS leaf_chunks (first BIGINT PRIMARY KEY, count INTEGER NOT NULL, leaves BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS hash_tiles (tile BIGINT PRIMARY KEY, hashes BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL);
"""
_TABLES = ("meta", "leaf_chunks", "hash_tiles", "checkpoints")
#: The advisory lock key: one per schema, so logs in different schemas of one database do not contend.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('redline-log:' || current_schema()))"


def is_postgres_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return text.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """``url`` without a password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else url
    return url


def without_password(url: str) -> str:
    """``url`` without any password (in its user part, or a parameter such as ``password`` or ``sslpassword``),
    and nothing else changed."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}@{host}"
    query = "&".join(p for p in parts.query.split("&") if p and "password" not in p.split("=", 1)[0].lower())
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")


class PostgresStore:
    """A ``LogStore`` in a PostgreSQL schema; safe to share between threads and between processes."""

    def __init__(self, url: str, *, create: bool = False, connect_timeout: int = 10) -> None:
        if psycopg is None:
            raise LogError("the PostgreSQL store needs the postgres extra (pip install 'redline[postgres]')")
        self.url = url
        self.name = redact(url)
        self._timeout = connect_timeout
        self._lock = threading.RLock()
        self._conn: Any = None
        self._in_tx = False
        with self._guard():
            c = self._connection()
            present = {t for t in _TABLES if c.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None}
            if create:
                if "meta" in present and c.execute("SELECT 1 FROM meta LIMIT 1").fetchone():
                    raise LogExists(f"a log already exists in {self.name}")
                with c.transaction():
                    c.execute(_LOCK)
                    c.execute(SCHEMA)
            elif not present:
                raise LogNotFound(f"no log in {self.name}")
            elif len(present) != len(_TABLES):
                missing = ", ".join(t for t in _TABLES if t not in present)
                raise InconsistentLog(f"{self.name} is not a redline log (missing tables: {missing})")

    def describe(self) -> str:
        """Which store this is, for a verification record (``redline.log.verified``): the URL without its
        password (database, user, host and schema stay)."""
        return without_password(self.url)

    # --- connection -----------------------------------------------------------

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
            self._conn.execute("SET synchronous_commit = on")
        return self._conn

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the connection lock; turn a database that cannot be reached into ``StoreUnavailable``."""
        with self._lock:
            try:
                yield
            except psycopg.OperationalError as exc:
                self._drop()
                raise StoreUnavailable(f"the log database {self.name} is unavailable: {exc}") from exc
            except psycopg.Error as exc:
                if self._conn is not None and self._conn.closed:
                    self._drop()
                    raise StoreUnavailable(f"the log database {self.name} is unavailable: {exc}") from exc
                raise LogError(f"the log database {self.name} failed: {exc}") from exc

    def _drop(self) -> None:
        self._in_tx = False
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
        self._conn = None

    def _q(self, query: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._guard():
            return self._connection().execute(query, args).fetchall()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Be the log's only writer until the block ends: one transaction holding the advisory lock.

        Reads inside see every committed append; an ``append`` inside commits the transaction (and so releases
        the lock); a block left without one rolls back.
        """
        with self._lock:
            if self._in_tx:
                raise LogError("exclusive() does not nest")
            with self._guard():
                c = self._connection()
                c.execute("BEGIN")
                self._in_tx = True
                c.execute(_LOCK)
            try:
                yield
            finally:
                if self._in_tx:
                    self._in_tx = False
                    try:
                        with self._guard():
                            self._connection().execute("ROLLBACK")
                    except StoreUnavailable:
                        pass

    # --- LogStore -----------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        rows = self._q("SELECT value FROM meta WHERE key=%s", (key,))
        return bytes(rows[0][0]) if rows else None

    def init(self, meta: dict[str, bytes], checkpoint: bytes) -> None:
        with self._guard():
            c = self._connection()
            with c.transaction():
                c.execute(_LOCK)
                if c.execute("SELECT COUNT(*) FROM meta").fetchone()[0]:
                    raise LogExists(f"{self.name} already holds a log")
                c.cursor().executemany("INSERT INTO meta(key, value) VALUES (%s, %s)", list(meta.items()))
                c.execute("INSERT INTO checkpoints(size, note) VALUES (0, %s)", (checkpoint,))

    def size(self) -> int:
        rows = self._q("SELECT first + count FROM leaf_chunks ORDER BY first DESC LIMIT 1")
        return 0 if not rows else int(rows[0][0])

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        if not indexes:
            return []
        wanted = sorted({i // TILE_HASHES for i in indexes})
        tiles = {int(t): bytes(b) for t, b in self._q("SELECT tile, hashes FROM hash_tiles WHERE tile = ANY(%s)",
                                                      (wanted,))}
        out = []
        for i in indexes:
            blob = tiles.get(i // TILE_HASHES)
            off = (i % TILE_HASHES) * _HASH
            if blob is None or len(blob) < off + _HASH:
                raise IndexOutOfRange(f"stored hash {i} is not in the log")
            out.append(blob[off : off + _HASH])
        return out

    def read_leaves(self, start: int, count: int) -> list[bytes]:
        if count <= 0:
            return []
        end = start + count
        rows = self._q("SELECT first, count, leaves FROM leaf_chunks WHERE first >= %s AND first < %s ORDER BY first",
                       (start - start % CHUNK_LEAVES, end))
        out: list[bytes] = []
        for first, n, blob in rows:
            if first + n <= start:
                continue
            if first != start + len(out) and not (not out and first <= start):
                break  # a gap
            leaves, sound = _unpack(bytes(blob), n, start - first, end - first)
            out.extend(leaves)
            if sound < min(n, end - first):
                break  # a torn row
        if len(out) != count:
            raise IndexOutOfRange(f"leaves {start}..{end - 1} are not all in the log")
        return out

    def iter_leaves(self, start: int = 0, chunk: int = 4096) -> Iterator[tuple[int, bytes]]:
        """As ``SqliteStore.iter_leaves``: a bad row yields its sound leaves, then its first bad index with an
        empty leaf, and ends the iteration."""
        pos = start - start % CHUNK_LEAVES
        chunk = max(chunk, CHUNK_LEAVES)
        while True:
            rows = self._q("SELECT first, count, leaves FROM leaf_chunks WHERE first >= %s AND first < %s "
                           "ORDER BY first", (pos, pos + chunk))
            if not rows:
                nxt = self._q("SELECT first FROM leaf_chunks WHERE first >= %s ORDER BY first LIMIT 1", (pos,))
                if not nxt:
                    return
                pos = int(nxt[0][0])
                continue
            for first, n, blob in rows:
                lo = max(0, start - first)
                leaves, sound = _unpack(bytes(blob), n, lo)
                yield from zip(range(first + lo, first + sound), leaves)
                if sound != n or n <= 0:
                    if first + sound >= start:
                        yield first + sound, b""
                    return
            pos = int(rows[-1][0]) + max(1, rows[-1][1])

    def iter_hashes(self, start: int = 0, chunk: int = 64) -> Iterator[tuple[int, bytes]]:
        tile = start // TILE_HASHES
        while True:
            rows = self._q("SELECT tile, hashes FROM hash_tiles WHERE tile >= %s ORDER BY tile LIMIT %s",
                           (tile, chunk))
            if not rows:
                return
            for t, blob in rows:
                blob = bytes(blob)
                if t != tile or len(blob) % _HASH or len(blob) > _TILE_BYTES:
                    yield tile * TILE_HASHES, b""
                    return
                base = t * TILE_HASHES
                for k in range(max(0, start - base), len(blob) // _HASH):
                    yield base + k, blob[k * _HASH : (k + 1) * _HASH]
                tile += 1
                if len(blob) < _TILE_BYTES:
                    return

    def checkpoint(self, size: int | None = None) -> bytes | None:
        if size is None:
            rows = self._q("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
        else:
            rows = self._q("SELECT note FROM checkpoints WHERE size=%s", (size,))
        return bytes(rows[0][0]) if rows else None

    def checkpoint_sizes(self) -> list[int]:
        return [int(r[0]) for r in self._q("SELECT size FROM checkpoints ORDER BY size")]

    def append(self, expected_size: int, leaves: Sequence[bytes], hashes: Sequence[bytes], checkpoint: bytes,
               new_size: int) -> None:
        from redline.errors import StaleLog

        with self._guard():
            c = self._connection()
            if not self._in_tx:
                c.execute("BEGIN")
                self._in_tx = True
                c.execute(_LOCK)
            try:
                size = self.size()
                if size != expected_size:
                    err = StaleLog if size > expected_size else InconsistentLog
                    raise err(f"log size changed underneath the writer (expected {expected_size}, the store holds "
                              f"{size})")
                cur = c.cursor()
                cur.executemany("INSERT INTO leaf_chunks(first, count, leaves) VALUES (%s, %s, %s)",
                                self._chunk_rows(c, expected_size, leaves))
                first_hash = 2 * expected_size - expected_size.bit_count()
                tile, used = divmod(first_hash, TILE_HASHES)
                buf = b"".join(hashes)
                if used:
                    row = c.execute("SELECT hashes FROM hash_tiles WHERE tile=%s", (tile,)).fetchone()
                    if row is None or len(row[0]) != used * _HASH:
                        raise InconsistentLog(f"hash tile {tile} does not end at stored hash {first_hash}")
                    buf = bytes(row[0]) + buf
                cur.executemany("INSERT INTO hash_tiles(tile, hashes) VALUES (%s, %s) "
                                "ON CONFLICT (tile) DO UPDATE SET hashes = EXCLUDED.hashes", hash_tile_rows(tile, buf))
                c.execute("INSERT INTO checkpoints(size, note) VALUES (%s, %s)", (new_size, checkpoint))
                self._in_tx = False
                c.execute("COMMIT")
            except BaseException:
                if self._in_tx:
                    self._in_tx = False
                    if not c.closed:
                        with contextlib.suppress(psycopg.Error):
                            c.execute("ROLLBACK")
                raise

    def _chunk_rows(self, c: Any, size: int, leaves: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """The ``leaf_chunks`` rows adding ``leaves`` at ``size`` (as ``SqliteStore._chunk_rows``, merging a
        block built by many small appends into one row when this append fills it)."""
        rows = split_leaf_rows(size, leaves)
        used = size % CHUNK_LEAVES
        if used and rows[0][1] == CHUNK_LEAVES - used:
            base = size - used
            old = c.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first >= %s ORDER BY first",
                            (base,)).fetchall()
            if len(old) >= MAX_BLOCK_ROWS:
                pos, blobs = base, []
                for first, n, blob in old:
                    if first != pos:
                        raise InconsistentLog(f"entry {pos} is missing from the store", index=pos)
                    blobs.append(bytes(blob))
                    pos += n
                if pos != size:
                    raise InconsistentLog(f"the leaf rows from entry {base} end at {pos}, not {size}", index=base)
                c.execute("DELETE FROM leaf_chunks WHERE first >= %s AND first < %s", (base, size))
                blobs.append(rows[0][2])
                rows[0] = (base, CHUNK_LEAVES, b"".join(blobs))
        return rows

    def close(self) -> None:
        with self._lock:
            self._drop()


__all__ = ["PostgresStore", "StoreUnavailable", "is_postgres_url", "redact", "without_password"]
