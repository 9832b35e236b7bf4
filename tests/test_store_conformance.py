"""The ``LogStore`` contract, one suite over every store (SQLite and PostgreSQL).

Each store gets a small test adapter that can open it and alter its rows with raw SQL (the two
stores share table and column names), so the same tests check: an append is one atomic batch,
an acknowledged batch survives SIGKILL of its writer, a size mismatch writes nothing, opening a
store altered underneath names the first bad entry, proofs and receipts verify, checkpoints are
numbered, and the rows follow the tile layout byte for byte (the same log built in each store
holds identical leaf rows, hash tiles and signed checkpoints).

Run as a script (``test_store_conformance.py SPEC KEYFILE``) it is the writer the SIGKILL test
kills: it appends batches forever, printing ``<size>`` after each acknowledged one.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_fixture import pg  # noqa: F401 - the PostgreSQL cluster fixture

from redline.crypto.keys import SigningKey, load_signing_key, save_signing_key
from redline.errors import (
    EntryTooLarge,
    InconsistentLog,
    IndexOutOfRange,
    LogError,
    LogExists,
    LogNotFound,
)
from redline.log import merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.leaf import decode_leaf, encode_leaf
from redline.log.receipt import verify_receipt
from redline.log.service import Log, StaleLog, checkpoint_number
from redline.log.sqlite import BUNDLE_LEAVES, CHUNK_LEAVES, MAX_BLOCK_ROWS, TILE_HASHES, SqliteStore
from redline.log.tiles import encode_entry_bundle, parse_entry_bundle, tile_bytes, tiles_for_size

ORIGIN = "redline.test/conformance"
SIZES = [1, 2, 5, 8, 13, 21, 30, 37]  # batch ends of the tampering fixture
BUNDLED_ENDS = [1, 2, 3, 4, 5, 6, 7, 8, 100, 300, 556, 600]


def entry_for(i: int) -> bytes:
    """A distinct, reproducible entry for index ``i``."""
    return f"entry {i} ".encode() + random.Random(i).randbytes(i % 97)


def open_store(spec: str, *, create: bool = False) -> Any:
    """The store a spec names: a PostgreSQL URL, or a SQLite file path."""
    if spec.startswith("postgresql://"):
        from redline.log.postgres import PostgresStore

        return PostgresStore(spec, create=create)
    return SqliteStore(spec, create=create)


class Clock:
    """A clock stepping 1000 ms per call from 10,000."""

    def __init__(self) -> None:
        self.t = 9_000

    def __call__(self) -> int:
        self.t += 1000
        return self.t


class Backend:
    """One store under test: how to open it and how to alter its rows underneath it."""

    kind = ""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def store(self, create: bool = False) -> Any:
        return open_store(self.spec, create=create)

    def new_log(self, key: SigningKey) -> Log:
        return Log.create(self.store(create=True), key, clock=Clock())

    def reopen(self, **kw: Any) -> Log:
        return Log.open(self.store(), **kw)

    def sql(self, query: str, *args: Any) -> None:
        raise NotImplementedError

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        raise NotImplementedError


class SqliteBackend(Backend):
    kind = "sqlite"

    def sql(self, query: str, *args: Any) -> None:
        import sqlite3

        con = sqlite3.connect(self.spec)
        with con:
            con.execute(query, args)
        con.close()

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import sqlite3

        con = sqlite3.connect(self.spec)
        try:
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                    for r in con.execute(query, args).fetchall()]
        finally:
            con.close()


class PostgresBackend(Backend):
    kind = "postgres"

    def sql(self, query: str, *args: Any) -> None:
        import psycopg

        with psycopg.connect(self.spec, autocommit=True) as c:
            c.execute(query.replace("?", "%s"), args)

    def rows(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.spec, autocommit=True) as c:
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                    for r in c.execute(query.replace("?", "%s"), args).fetchall()]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Every store, each fresh and empty."""
    if request.param == "sqlite":
        return SqliteBackend(str(tmp_path / "log.db"))
    return PostgresBackend(request.getfixturevalue("pg").new_url())


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


def build(backend: Backend, key: SigningKey, ends: list[int]) -> Log:
    lg = backend.new_log(key)
    prev = 0
    for end in ends:
        lg.append([entry_for(i) for i in range(prev, end)])
        prev = end
    return lg


@pytest.fixture
def stored(backend: Backend, key: SigningKey) -> Backend:
    """A closed log of 37 entries whose checkpoints are at SIZES."""
    build(backend, key, SIZES).store.close()
    return backend


# --- tamper adapter (raw SQL on the shared schema) -------------------------------------------------------------


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _leaf_row(be: Backend, index: int) -> tuple[int, list[bytes]]:
    (first, count, blob), = be.rows("SELECT first, count, leaves FROM leaf_chunks WHERE first <= ? "
                                    "ORDER BY first DESC LIMIT 1", index)
    assert first <= index < first + count
    return first, parse_entry_bundle(bytes(blob), count)


def set_leaf(be: Backend, index: int, leaf: bytes) -> None:
    first, leaves = _leaf_row(be, index)
    leaves[index - first] = leaf
    be.sql("UPDATE leaf_chunks SET leaves=? WHERE first=?", encode_entry_bundle(leaves), first)


def get_leaf(be: Backend, index: int) -> bytes:
    first, leaves = _leaf_row(be, index)
    return leaves[index - first]


def delete_leaf(be: Backend, index: int) -> None:
    first, leaves = _leaf_row(be, index)
    del leaves[index - first]
    if leaves:
        be.sql("UPDATE leaf_chunks SET leaves=?, count=count-1 WHERE first=?", encode_entry_bundle(leaves), first)
    else:
        be.sql("DELETE FROM leaf_chunks WHERE first=?", first)


def set_hash(be: Backend, stored_index: int, value: bytes) -> None:
    tile, slot = divmod(stored_index, TILE_HASHES)
    (blob,), = be.rows("SELECT hashes FROM hash_tiles WHERE tile=?", tile)
    be.sql("UPDATE hash_tiles SET hashes=? WHERE tile=?", blob[: 32 * slot] + value + blob[32 * slot + 32 :], tile)


def refused(be: Backend, index: int | None) -> InconsistentLog:
    with pytest.raises(InconsistentLog) as info:
        be.reopen()
    err = info.value
    assert err.index is not None, f"InconsistentLog names no entry: {err}"
    if index is not None:
        assert err.index == index, str(err)
    return err


# --- creating and appending ----------------------------------------------------------------------------------


def test_create_append_and_read_back(backend: Backend, key: SigningKey) -> None:
    lg = build(backend, key, SIZES)
    assert (lg.size, lg.checkpoint_sizes()) == (37, [0] + SIZES)
    again = backend.reopen(trusted=key.verifier())
    assert [e for _, _, e in again.entries()] == [entry_for(i) for i in range(37)]
    assert again.root() == merkle.root_of([merkle.leaf_hash(again.leaf(i)) for i in range(37)])
    st = again.store
    assert st.get_meta("origin") == ORIGIN.encode() and st.get_meta("nope") is None
    assert st.read_leaves(3, 4) == [again.leaf(i) for i in range(3, 7)] and st.read_leaves(5, 0) == []
    assert list(st.iter_leaves(30, chunk=3)) == [(i, again.leaf(i)) for i in range(30, 37)]
    hashes = list(st.iter_hashes())
    assert [i for i, _ in hashes] == list(range(merkle.stored_hash_count(37)))
    assert st.read_hashes([5, 0, 5]) == [hashes[5][1], hashes[0][1], hashes[5][1]] and st.read_hashes([]) == []
    with pytest.raises(IndexOutOfRange):
        st.read_leaves(36, 2)
    with pytest.raises(IndexOutOfRange):
        st.read_hashes([len(hashes)])
    assert st.checkpoint(99) is None and st.checkpoint() == st.checkpoint(37)


def test_create_refuses_an_existing_log_and_open_refuses_none(backend: Backend, key: SigningKey,
                                                               tmp_path: Path) -> None:
    build(backend, key, [3]).store.close()
    with pytest.raises(LogExists):
        Log.create(backend.store(create=True), key)
    assert backend.reopen().size == 3
    if backend.kind == "sqlite":
        with pytest.raises(LogNotFound):
            SqliteStore(tmp_path / "none.db")
    else:
        from redline.log.postgres import PostgresStore

        with pytest.raises(LogNotFound):
            PostgresStore(backend.spec.replace("search_path%3D", "search_path%3Dnone_"))


def test_a_failing_batch_writes_nothing(backend: Backend, key: SigningKey) -> None:
    lg = build(backend, key, [5])
    before = (lg.store.size(), lg.store.checkpoint_sizes(), list(lg.store.iter_hashes()))
    # a leaf over the bundle limit, late in the batch
    with pytest.raises(EntryTooLarge):
        lg.store.append(5, [b"ok"] * 20 + [b"x" * 70_000], [bytes(32)] * 40, b"cp", 26)
    # a batch whose last write (the checkpoint, at a size already signed) fails after its leaves and hashes
    leaves = [encode_leaf(99_999, b"late")] * 20
    with pytest.raises(LogError):
        lg.store.append(5, leaves, [bytes(32)] * merkle.stored_hash_count(25), b"cp", 0)
    assert (lg.store.size(), lg.store.checkpoint_sizes(), list(lg.store.iter_hashes())) == before
    assert backend.reopen().size == 5
    lg.append([b"after"])
    assert backend.reopen().size == 6


def test_a_stale_writer_is_refused_then_catches_up(backend: Backend, key: SigningKey) -> None:
    build(backend, key, [4]).store.close()
    a, b = backend.reopen(key=key), backend.reopen(key=key)
    a.append([b"from a"])
    with pytest.raises(StaleLog, match="changed underneath"):
        b.append([b"from b"])
    assert (b.size, backend.reopen().size) == (4, 5)
    with b.writing() as size:
        assert size == 5
        b.append([b"from b"])
    assert b.root() == backend.reopen().root()
    assert [e for _, _, e in backend.reopen().entries(4)] == [b"from a", b"from b"]
    assert a.refresh() == 6 and a.root() == b.root()


def test_block_merging_and_rows_match_the_tile_layout(backend: Backend, key: SigningKey, tmp_path: Path) -> None:
    """The same log in this store and in the reference (SQLite) holds byte-identical rows: leaf rows that
    concatenate to C2SP entry bundles, 256-hash tiles, and the same signed checkpoints."""
    lg = build(backend, key, BUNDLED_ENDS)
    ref = build(SqliteBackend(str(tmp_path / "reference.db")), key, BUNDLED_ENDS)
    for table, order in (("leaf_chunks", "first"), ("hash_tiles", "tile"), ("checkpoints", "size"),
                         ("meta", "key")):
        assert backend.rows(f"SELECT * FROM {table} ORDER BY {order}") == \
            SqliteBackend(str(tmp_path / "reference.db")).rows(f"SELECT * FROM {table} ORDER BY {order}"), table
    rows = backend.rows("SELECT first, count, leaves FROM leaf_chunks ORDER BY first")
    spans = [(first, count) for first, count, _ in rows]
    assert spans[:3] == [(0, 16), (16, 16), (32, 16)]  # block 0 merged from nine rows
    assert all(first // CHUNK_LEAVES == (first + count - 1) // CHUNK_LEAVES for first, count in spans)
    assert MAX_BLOCK_ROWS == 4
    leaves = [lg.leaf(i) for i in range(600)]
    for b in range(3):
        blob = b"".join(blob for first, _, blob in rows if first // BUNDLE_LEAVES == b)
        assert blob == encode_entry_bundle(leaves[BUNDLE_LEAVES * b : BUNDLE_LEAVES * (b + 1)])
    for tile in tiles_for_size(600):
        assert tile_bytes(tile, 600, lg.store, lg.store.read_leaves) == \
            tile_bytes(tile, 600, ref.store, ref.store.read_leaves), tile


# --- proofs and checkpoints --------------------------------------------------------------------------------------


def test_proofs_receipts_and_numbered_checkpoints(stored: Backend, key: SigningKey) -> None:
    lg = stored.reopen(key=key)
    for size in [1, 13, 37]:
        cp, _ = open_checkpoint(lg.checkpoint(size), key.verifier())
        assert cp.size == size and checkpoint_number(cp) == ([0] + SIZES).index(size)
        for index in range(0, size, 5):
            merkle.verify_inclusion(index, size, merkle.leaf_hash(lg.leaf(index)), lg.prove_inclusion(index, size),
                                    cp.root)
            verify_receipt(lg.receipt(index, size), entry_for(index), key.verifier())
        for old in [1, 8, size]:
            if old <= size:
                merkle.verify_consistency(old, 37, lg.root(old), lg.root(), lg.prove_consistency(old))
    assert lg.checkpoint_sizes() == sorted(lg.checkpoint_sizes())


# --- opening checks the store ------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 12, 36])
def test_altered_leaf_is_refused(stored: Backend, index: int) -> None:
    set_leaf(stored, index, _flip(get_leaf(stored, index), 8 * 8 + 3))
    assert "altered" in str(refused(stored, index))


def test_altered_integration_time_is_refused(stored: Backend) -> None:
    set_leaf(stored, 20, encode_leaf(1, decode_leaf(get_leaf(stored, 20))[1]))
    refused(stored, 20)


@pytest.mark.parametrize("index", [0, 17, 36])
def test_deleted_leaf_is_refused(stored: Backend, index: int) -> None:
    delete_leaf(stored, index)
    refused(stored, index)


@pytest.mark.parametrize("stored_index", [0, merkle.stored_hash_index(3, 0), merkle.stored_hash_count(37) - 1])
def test_altered_hash_is_refused(stored: Backend, stored_index: int) -> None:
    set_hash(stored, stored_index, bytes(32))
    assert f"stored hash {stored_index}" in str(refused(stored, merkle.leaf_of_stored(stored_index)))


def test_torn_or_missing_hash_tile_is_refused(stored: Backend) -> None:
    (blob,), = stored.rows("SELECT hashes FROM hash_tiles WHERE tile=0")
    stored.sql("UPDATE hash_tiles SET hashes=? WHERE tile=0", blob[:-5])
    refused(stored, 0)
    stored.sql("DELETE FROM hash_tiles WHERE tile=0")
    refused(stored, 0)


def test_altered_or_missing_checkpoint_is_refused(stored: Backend, key: SigningKey) -> None:
    lg = stored.reopen()
    cp13, cp21 = lg.checkpoint(13), lg.checkpoint(21)
    stored.sql("UPDATE checkpoints SET note=? WHERE size=21", cp13)
    assert "size 21" in str(refused(stored, None))
    stored.sql("UPDATE checkpoints SET note=? WHERE size=21", cp21)
    assert stored.reopen().size == 37
    stored.sql("DELETE FROM checkpoints WHERE size=8")
    with pytest.raises(InconsistentLog, match="an earlier signed checkpoint is missing"):
        stored.reopen()


def test_extra_leaf_is_refused(stored: Backend) -> None:
    stored.sql("INSERT INTO leaf_chunks(first, count, leaves) VALUES (?, 1, ?)", 37,
               encode_entry_bundle([encode_leaf(99_999, b"smuggled")]))
    refused(stored, 37)


# --- durability: the writer killed mid-batch -----------------------------------------------------------------------


def _writer_main(spec: str, key_file: str) -> None:
    """Append batches of 1..40 entries forever; print each acknowledged size (flushed)."""
    key = load_signing_key(Path(key_file))
    lg = Log.open(open_store(spec), key=key, verify=False)
    rng = random.Random(lg.size)
    print(lg.size, flush=True)
    while True:
        lg.append([entry_for(i) for i in range(lg.size, lg.size + rng.randint(1, 40))])
        print(lg.size, flush=True)


@pytest.mark.parametrize("rounds", [4])
def test_writer_killed_mid_batch_loses_nothing_acknowledged(backend: Backend, key: SigningKey, tmp_path: Path,
                                                            rounds: int) -> None:
    backend.new_log(key).store.close()
    key_file = tmp_path / "log.key"
    save_signing_key(key, key_file)
    rng = random.Random(3)
    acked = 0
    for _ in range(rounds):
        proc = subprocess.Popen([sys.executable, __file__, backend.spec, str(key_file)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines: list[int] = []
        got = threading.Event()

        def read(p: subprocess.Popen[str] = proc, out: list[int] = lines, ev: threading.Event = got) -> None:
            assert p.stdout is not None
            for line in p.stdout:
                if line.endswith("\n"):
                    out.append(int(line))
                    if len(out) > 2:
                        ev.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert got.wait(30), proc.stderr.read() if proc.poll() is not None and proc.stderr else "writer is slow"
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        acked = max([acked, *lines])
        lg = backend.reopen(trusted=key.verifier())  # verify=True: a consistent tree
        assert lg.size >= acked and lg.size - acked <= 40, (lg.size, acked)
        assert lg.size in lg.checkpoint_sizes()  # no partial batch
        assert [e for _, _, e in lg.entries()] == [entry_for(i) for i in range(lg.size)]  # nothing lost or twice
        lg.store.close()
    assert acked > 0


if __name__ == "__main__":
    _writer_main(sys.argv[1], sys.argv[2])


# --- a full disk ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 384 KiB tmpfs mounted for the test (needs root's mount; skips with the reason otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k,mode=0700", "tmpfs", str(mnt)],
                              check=False, capture_output=True, text=True, timeout=20)
    except OSError as exc:
        pytest.skip(f"cannot make a small filesystem: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=20)


def _chain(exc: BaseException | None) -> str:
    """The messages of an exception and of those it was raised during."""
    out = []
    while exc is not None:
        out.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(out)


def fill_disk(be: Backend) -> tuple[Log, int, BaseException]:
    """Append 8-entry batches of ~2 KB entries until the store refuses; the log, the last acked size, the error."""
    lg = be.new_log(SigningKey.generate(ORIGIN))
    acked = 0
    for _ in range(500):
        try:
            lg.append([entry_for(i) + bytes(2000) for i in range(lg.size, lg.size + 8)])
        except Exception as exc:  # noqa: BLE001 - the error itself is what is checked
            return lg, acked, exc
        acked = lg.size
    raise AssertionError("the small filesystem never filled up")


def test_full_disk_is_an_error_and_loses_nothing_acknowledged(small_fs: Path) -> None:
    """SQLite on a filesystem that fills up: the failing append raises (the disk being full is in its
    chain), writes nothing, and every acknowledged batch is still there (verified) when the log is opened
    again."""
    be = SqliteBackend(str(small_fs / "log.db"))
    lg, acked, error = fill_disk(be)
    assert "full" in _chain(error).lower(), _chain(error)
    assert lg.size == acked and lg.store.size() == acked
    with pytest.raises(Exception) as info:  # still full: still refused, still nothing written
        lg.append([b"x" * 4000] * 8)
    assert "full" in _chain(info.value).lower()
    lg.store.close()
    again = be.reopen(trusted=lg.verifier)
    assert again.size == acked > 0 and again.checkpoint_sizes()[-1] == acked
    assert [e for _, _, e in again.entries()] == [entry_for(i) + bytes(2000) for i in range(acked)]


def test_full_disk_error_names_the_full_disk(small_fs: Path) -> None:
    _, _, error = fill_disk(SqliteBackend(str(small_fs / "log.db")))
    assert "full" in str(error).lower(), repr(error)
