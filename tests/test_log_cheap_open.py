"""Cheap opens (issue #17): a log opened to read or append checks only what changed since its verification record.

``redline log verify`` (and any verified open without a usable record) re-derives every stored hash and writes
a record kept beside the cache key (outside LOGDIR), sealed under the test session's cache key; a later
``open_log(verify=True)`` checks the latest checkpoint, the stored frontier at the recorded size and what was
appended since. Every test runs on real SQLite stores (one on PostgreSQL) with real signatures; the store is
only wrapped to count the leaves and hashes read, so "cheap" is asserted by what was read, not by timing.
The attacks: the record edited, cut short, swapped for another log's or sealed under another user's key (all fall
back to a full verification, which still finds real tampering); the store rolled back to an older copy (refused);
an entry below the recorded size edited with its stored hashes (the open passes, every read of it fails); an entry
after it edited (the open fails); a signed checkpoint deleted (refused); a symlink planted at the record (never
followed).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers.unprivileged import unprivileged
from pg_fixture import PgCluster, pg  # noqa: F401 - the PostgreSQL cluster fixture

from redline.cli import logdir as logdir_mod
from redline.cli.logdir import create_log, open_log, record_path, replayed_state, save_verification
from redline.cli.main import cli
from redline.crypto.keys import SigningKey, save_signing_key
from redline.errors import InconsistentLog
from redline.log import localcache, merkle
from redline.log.leaf import decode_leaf, encode_leaf
from redline.log.service import Log, RolledBack, Verified
from redline.log.sqlite import SqliteStore, hash_tile_rows
from redline.log.tiles import encode_entry_bundle, parse_entry_bundle
from redline.log.verified import describe_store, load_record, seal_record, unseal_record

ORIGIN = "redline.example/cheap"
#: Batch sizes of the log most tests start from: checkpoints at 0, 40, 70 and 100.
BATCHES = [40, 30, 30]


def entry(i: int) -> bytes:
    return f'{{"entry":{i}}}'.encode()


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


class Counting:
    """A real store, counting the leaves and stored hashes read through it (everything else passes through)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.leaves = 0
        self.hashes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def read_leaves(self, start: int, count: int) -> list[bytes]:
        out = self._store.read_leaves(start, count)
        self.leaves += len(out)
        return out

    def iter_leaves(self, start: int = 0, chunk: int = 4096) -> Iterator[tuple[int, bytes]]:
        for item in self._store.iter_leaves(start, chunk):
            self.leaves += 1
            yield item

    def read_hashes(self, indexes: Any) -> list[bytes]:
        out = self._store.read_hashes(indexes)
        self.hashes += len(out)
        return out

    def iter_hashes(self, start: int = 0, chunk: int = 64) -> Iterator[tuple[int, bytes]]:
        for item in self._store.iter_hashes(start, chunk):
            self.hashes += 1
            yield item


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[Counting]:
    """Every store ``open_log`` opens, wrapped to count what is read (the last one opened is ``[-1]``)."""
    opened: list[Counting] = []
    real = logdir_mod.open_store

    def counting(logdir: Path, *, create: bool = False) -> Any:
        store = Counting(real(logdir, create=create))
        opened.append(store)
        return store

    monkeypatch.setattr(logdir_mod, "open_store", counting)
    return opened


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


def make_log(logdir: Path, key: SigningKey, batches: list[int] = BATCHES) -> None:
    """A closed log in ``logdir`` (with its key file) grown in batches of the given sizes; no record yet."""
    logdir.mkdir(parents=True, exist_ok=True)
    save_signing_key(key, logdir / "log.key")
    lg = create_log(logdir, key)
    append(lg, batches)
    lg.store.close()


def append(lg: Log, batches: list[int]) -> None:
    for b in batches:
        lg.append([entry(i) for i in range(lg.size, lg.size + b)])


def open_and_close(logdir: Path, **kw: Any) -> Log:
    lg = open_log(logdir, **kw)
    lg.store.close()
    return lg


def verify_cli(logdir: Path) -> Result:
    result = run("log", "verify", logdir)
    return result


# --- raw edits of log.db ---------------------------------------------------------------------------------------------


def sql(db: Path, query: str, *args: Any) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute(query, args)
    con.close()


def all_leaves(db: Path) -> list[bytes]:
    store = SqliteStore(db)
    try:
        return [leaf for _, leaf in store.iter_leaves()]
    finally:
        store.close()


def stored_hashes(leaves: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    frontier: list[bytes] = []
    for n, leaf in enumerate(leaves):
        out.extend(merkle.hashes_for_append(merkle.leaf_hash(leaf), n, frontier))
    return out


def set_leaf(db: Path, index: int, leaf: bytes) -> None:
    """Overwrite leaf ``index`` in its ``leaf_chunks`` row (which stays a well-formed bundle)."""
    con = sqlite3.connect(db)
    first, count, blob = con.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first <= ? "
                                     "ORDER BY first DESC LIMIT 1", (index,)).fetchone()
    leaves = parse_entry_bundle(bytes(blob), count)
    leaves[index - first] = leaf
    with con:
        con.execute("UPDATE leaf_chunks SET leaves=? WHERE first=?", (encode_entry_bundle(leaves), first))
    con.close()


def write_hashes(db: Path, hashes: list[bytes]) -> None:
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM hash_tiles")
        con.executemany("INSERT INTO hash_tiles(tile, hashes) VALUES (?, ?)", hash_tile_rows(0, b"".join(hashes)))
    con.close()


def forge_entry(db: Path, index: int, *, keep_frontier_of: int | None = None) -> bytes:
    """Edit entry ``index`` and adjust its stored hashes to it: every one of them, or (``keep_frontier_of`` n) all
    but the stored frontier of size n and what was written after it, so that the tree at n looks untouched."""
    leaves = all_leaves(db)
    t, _ = decode_leaf(leaves[index])
    forged = encode_leaf(t, b'{"entry":"forged"}')
    honest = stored_hashes(leaves)
    leaves[index] = forged
    adjusted = stored_hashes(leaves)
    if keep_frontier_of is not None:
        keep = set(merkle.frontier_indexes(keep_frontier_of))
        end = merkle.stored_hash_count(keep_frontier_of)
        adjusted = [h if i < end and i not in keep else honest[i] for i, h in enumerate(adjusted)]
    set_leaf(db, index, forged)
    write_hashes(db, adjusted)
    return forged


# --- the honest path -------------------------------------------------------------------------------------------------


def test_log_verify_writes_the_record_and_opens_after_it_read_only_what_changed(
        tmp_path: Path, key: SigningKey, counted: list[Counting]) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    result = verify_cli(logdir)
    assert result.exit_code == 0, result.output
    assert counted[-1].leaves == 100  # the full verification read every leaf
    record = record_path(logdir)
    mode = os.lstat(record).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert logdir.resolve() not in record.resolve().parents  # kept outside the log directory
    before = record.read_bytes()

    lg = open_and_close(logdir, signing=True, verify=True)  # the cheap open
    assert counted[-1].leaves == 0 and counted[-1].hashes <= 8
    assert lg.size == 100 and lg.checked == range(100, 100)
    assert record.read_bytes() == before  # nothing changed: the record is not rewritten

    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [7, 5])  # appended outside the CLI: no new record
    lg.store.close()
    lg = open_and_close(logdir, signing=True, verify=True)
    assert counted[-1].leaves == 12  # only the tail was re-derived
    assert lg.size == 112 and lg.checked == range(100, 112)
    assert record.read_bytes() != before  # ... and the record moved on to 112
    assert open_and_close(logdir, verify=True).size == 112 and counted[-1].leaves == 0

    new = tmp_path / "new-entry"
    new.write_bytes(b'{"entry":"new"}')
    appended = run("log", "append", logdir, new)
    assert appended.exit_code == 0, appended.output
    assert counted[-1].leaves == 0  # log append opened cheaply (the receipt-less batch reads no old leaf)
    lg = open_and_close(logdir, verify=True)
    assert lg.size == 113 and counted[-1].leaves == 0  # log append left a record at its new size


def test_log_verify_help_says_it_checks_everything_and_writes_the_record() -> None:
    text = " ".join(run("log", "verify", "--help").output.split())
    assert "always the whole log" in text and "outside the log directory" in text and "rolled back" in text


def test_a_new_log_in_the_directory_drops_the_old_record(tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    (logdir / "log.db").unlink()
    lg = create_log(logdir, key)  # the same key, another history: the record at 100 must not call it rolled back
    lg.store.close()
    assert not record_path(logdir).exists()
    assert open_and_close(logdir, verify=True).size == 0


def test_reads_after_a_cheap_open_are_checked_and_match_the_store(tmp_path: Path, key: SigningKey,
                                                                  counted: list[Counting]) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    assert verify_cli(logdir).exit_code == 0
    lg = open_log(logdir, verify=True)
    store = counted[-1]
    assert store.leaves == 0
    got = list(lg.entries())
    assert [(i, e) for i, _, e in got] == [(i, entry(i)) for i in range(100)]
    assert store.leaves == 100 and lg.checked == range(0, 100)  # re-derived once, then read as stored
    assert list(lg.verified_entries(37)) == got[37:]
    assert list(lg.entries(90)) == got[90:]
    assert lg.entry(5) == (got[5][1], entry(5)) and lg.verified_leaf(99) == encode_leaf(got[99][1], entry(99))
    assert lg.root(40) == merkle.tree_hash(40, lg.store) and lg.root(3) == merkle.tree_hash(3, lg.store)
    lg.store.close()


def test_verify_full_always_reads_everything(tmp_path: Path, key: SigningKey, counted: list[Counting]) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)  # no record yet: full, and it writes one
    assert counted[-1].leaves == 100 and record_path(logdir).is_file()
    open_and_close(logdir, verify=True)
    assert counted[-1].leaves == 0
    lg = open_and_close(logdir, verify="full")
    assert counted[-1].leaves == 100 and lg.checked == range(0, 100)


def test_the_record_binds_the_log_the_store_and_the_code(tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    lg = open_and_close(logdir, verify=True)
    assert lg.verified is not None
    ck = localcache.cache_key()
    store = SqliteStore(logdir / "log.db")
    described = describe_store(store)
    store.close()
    assert described == f"sqlite:{os.path.realpath(logdir / 'log.db')}"
    blob = record_path(logdir).read_bytes()
    assert unseal_record(blob, lg.verifier, described, ck) == lg.verified
    header, _ = localcache.unseal("verification-record", blob, ck)
    assert header["size"] == 100 and header["root"] == lg.root().hex() and header["checkpoints"] == 4
    assert header["public_key"] == key.verifier().to_string() and header["code"] == localcache.code_digest()
    other = SigningKey.generate(ORIGIN).verifier()
    for verifier, where in ((other, described), (lg.verifier, "sqlite:/elsewhere/log.db")):
        got, why = load_record(record_path(logdir), verifier, where)
        assert got is None and "not" in why
    forged = Verified(100, lg.verified.frontier, 4, True, lg.verified.last_time_ms)
    wrong_root = localcache.seal("verification-record", {**header, "root": "00" * 32}, b"".join(forged.frontier), ck)
    assert load_record_bytes(tmp_path, wrong_root, lg, described) is None
    assert unseal_record(seal_record(forged, lg.verifier, described, ck), lg.verifier, described, ck) == forged


def load_record_bytes(tmp_path: Path, blob: bytes, lg: Log, described: str) -> Verified | None:
    path = tmp_path / "probe.sealed"
    path.write_bytes(blob)
    return load_record(path, lg.verifier, described)[0]


# --- attacks on the record: never trusted, the full verification runs and still finds real tampering ----------------


def _edit(record: Path, tmp_path: Path, key: SigningKey) -> None:
    data = bytearray(record.read_bytes())
    at = data.index(b'"size":') + len(b'"size":')
    data[at:at + 3] = b"999"  # the header says another size: the seal no longer verifies
    record.write_bytes(bytes(data))


def _truncate(record: Path, tmp_path: Path, key: SigningKey) -> None:
    record.write_bytes(record.read_bytes()[:-5])


def _swap_for_another_logs(record: Path, tmp_path: Path, key: SigningKey) -> None:
    other = tmp_path / "other"
    make_log(other, SigningKey.generate("redline.example/other"), [100])
    open_and_close(other, verify=True)
    shutil.copyfile(record_path(other), record)


def _swap_for_a_copy_of_this_logs(record: Path, tmp_path: Path, key: SigningKey) -> None:
    """The same log (same key) in another directory, verified there: its record names another store."""
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "log", copy)
    open_and_close(copy, verify=True)
    shutil.copyfile(record_path(copy), record)


def _seal_under_another_users_key(record: Path, tmp_path: Path, key: SigningKey) -> None:
    record.unlink()
    old = os.environ["REDLINE_CACHE_KEY"]
    os.environ["REDLINE_CACHE_KEY"] = str(tmp_path / "another-user" / "cache.key")
    try:
        open_and_close(tmp_path / "log", verify=True)  # a genuine record, sealed under another key
        theirs = record_path(tmp_path / "log")
        assert theirs.is_file() and theirs != record
    finally:
        os.environ["REDLINE_CACHE_KEY"] = old
    shutil.copyfile(theirs, record)


RECORD_ATTACKS = [_edit, _truncate, _swap_for_another_logs, _swap_for_a_copy_of_this_logs,
                  _seal_under_another_users_key]


@pytest.mark.parametrize("attack", RECORD_ATTACKS, ids=lambda f: f.__name__.strip("_"))
def test_an_unusable_record_means_a_full_verification(tmp_path: Path, key: SigningKey, counted: list[Counting],
                                                      attack: Any) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    record = record_path(logdir)
    attack(record, tmp_path, key)
    lg = open_and_close(logdir, verify=True)
    assert counted[-1].leaves == 100 and lg.checked == range(0, 100)  # full
    open_and_close(logdir, verify=True)  # ... which wrote a good record again
    assert counted[-1].leaves == 0


@pytest.mark.parametrize("attack", RECORD_ATTACKS, ids=lambda f: f.__name__.strip("_"))
def test_an_unusable_record_cannot_hide_an_edited_entry(tmp_path: Path, key: SigningKey, attack: Any) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    attack(record_path(logdir), tmp_path, key)
    forge_entry(logdir / "log.db", 5, keep_frontier_of=100)
    with pytest.raises(InconsistentLog) as info:
        open_log(logdir, verify=True)
    assert info.value.index == 63, str(info.value)  # the stored hash over entries 0..63 no longer matches


# --- attacks on the store -------------------------------------------------------------------------------------------


def test_a_store_rolled_back_to_an_older_copy_is_refused(tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    backup = tmp_path / "backup.db"
    shutil.copyfile(logdir / "log.db", backup)  # closed: no WAL left beside it
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [10])
    lg.store.close()
    open_and_close(logdir, verify=True)  # the record now says 110
    shutil.copyfile(backup, logdir / "log.db")
    for path in (logdir / "log.db-wal", logdir / "log.db-shm"):
        path.unlink(missing_ok=True)
    with pytest.raises(RolledBack) as info:
        open_log(logdir, signing=True, verify=True)
    assert "rolled back" in str(info.value) and "redline log verify" in str(info.value)
    assert info.value.index == 100
    refused = run("log", "append", logdir, backup)  # nothing is signed over it
    assert refused.exit_code == 6 and "rolled back" in refused.output
    # log verify re-derives everything, says what it saw, and accepts the older copy on purpose
    accepted = verify_cli(logdir)
    assert accepted.exit_code == 0, accepted.output
    assert "rolled back" in accepted.output and "110" in accepted.output
    assert open_and_close(logdir, verify=True).size == 100


def test_a_whole_log_directory_put_back_cannot_hide_a_rollback(tmp_path: Path, key: SigningKey) -> None:
    # Whoever can write LOGDIR restores all of it (store, snapshots, anything kept there) from an older copy: the
    # reader's record is not in LOGDIR, so the rollback is still seen.
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    shutil.copytree(logdir, tmp_path / "older")
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [10])
    lg.store.close()
    open_and_close(logdir, verify=True)
    shutil.rmtree(logdir)
    shutil.copytree(tmp_path / "older", logdir)
    with pytest.raises(RolledBack):
        open_log(logdir, verify=True)


def test_an_entry_edited_below_the_record_with_its_hashes_is_caught_on_every_read(
        tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    forged = forge_entry(logdir / "log.db", 5, keep_frontier_of=100)
    lg = open_log(logdir, signing=True, verify=True)  # the tree at 100 looks untouched: the cheap open passes
    seen: list[int] = []
    with pytest.raises(InconsistentLog) as info:
        for i, _, _ in lg.verified_entries():
            seen.append(i)
    assert info.value.index == 63 and seen == list(range(63))  # the subtree over 0..63 no longer adds up
    with pytest.raises(InconsistentLog):
        list(lg.entries())
    with pytest.raises(InconsistentLog) as one:
        lg.entry(5)
    assert one.value.index == 5
    with pytest.raises(InconsistentLog):
        lg.root(20)  # a size inside the edited subtree: not part of the verified tree
    with pytest.raises(InconsistentLog):
        lg.verified_leaf(40)  # its proof runs through the adjusted hash over 0..31
    assert lg.verified_leaf(64) and list(lg.verified_entries(65))  # entries outside the edited subtree still read
    lg.append([entry(100)])  # appends extend the verified frontier: safe
    lg.store.close()
    shown = run("log", "entry", logdir, 5)
    assert shown.exit_code == 6 and "entry 5" in shown.output and "forged" not in shown.output
    raw = run("log", "entry", logdir, 5, "--leaf")
    assert raw.exit_code == 6 and forged not in raw.stdout_bytes
    assert run("log", "entry", logdir, 6).exit_code == 6  # its sibling's proof runs through the forged hashes
    assert run("log", "entry", logdir, 70).exit_code == 0
    verified = verify_cli(logdir)
    assert verified.exit_code == 6 and "63" in verified.output
    with pytest.raises(InconsistentLog):
        replayed_state(logdir)


def test_an_entry_edited_with_every_hash_after_the_open_is_caught_at_the_end(tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    lg = open_log(logdir, verify=True)
    forge_entry(logdir / "log.db", 50)  # every stored hash adjusted: each agrees with the forged entry
    seen = []
    with pytest.raises(InconsistentLog) as info:
        for i, _, e in lg.verified_entries():
            seen.append((i, e))
    assert (50, b'{"entry":"forged"}') in seen and len(seen) == 100  # yielded, then refused at the root
    assert info.value.index == 69  # named as log verify names it: the batch signed at 70 no longer matches
    lg.store.close()
    with pytest.raises(InconsistentLog) as reopened:  # the tree at the recorded size is not the one verified
        open_log(logdir, verify=True)
    assert "below its verified size" in str(reopened.value)


@pytest.mark.parametrize("adjust_hashes", [False, True])
def test_an_entry_edited_after_the_record_is_refused_by_the_cheap_open(tmp_path: Path, key: SigningKey,
                                                                        adjust_hashes: bool) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key, [40, 30])
    open_and_close(logdir, verify=True)
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [20, 10])  # checkpoints at 90 and 100, not in the record
    lg.store.close()
    if adjust_hashes:
        forge_entry(logdir / "log.db", 75)
    else:
        set_leaf(logdir / "log.db", 75, encode_leaf(1, b"edited"))
    with pytest.raises(InconsistentLog) as info:
        open_log(logdir, verify=True)
    assert info.value.index == (89 if adjust_hashes else 75), str(info.value)


@pytest.mark.parametrize("deleted", [40, 70, 100], ids=["middle", "at-the-record", "after-the-record"])
def test_a_checkpoint_deleted_after_the_record_is_refused(tmp_path: Path, key: SigningKey, deleted: int) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key, [40, 30])
    open_and_close(logdir, verify=True)
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [30, 10])  # checkpoints at 0, 40, 70 | 100, 110
    lg.store.close()
    sql(logdir / "log.db", "DELETE FROM checkpoints WHERE size=?", deleted)
    with pytest.raises(InconsistentLog) as info:
        open_log(logdir, verify=True)
    assert "checkpoint" in str(info.value)
    if deleted != 70:  # a gap in the numbers: named as log verify names it
        assert "missing from the store" in str(info.value)
        assert info.value.index == (69 if deleted == 40 else 109)


def test_the_latest_checkpoint_is_always_verified(tmp_path: Path, key: SigningKey) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    con = sqlite3.connect(logdir / "log.db")
    note = con.execute("SELECT note FROM checkpoints WHERE size=100").fetchone()[0]
    with con:
        con.execute("UPDATE checkpoints SET note=? WHERE size=100", (note.replace(b"\n100\n", b"\n101\n"),))
    con.close()
    with pytest.raises(InconsistentLog) as info:
        open_log(logdir, verify=True)
    assert "does not verify" in str(info.value)


def test_a_symlink_at_the_record_is_never_followed(tmp_path: Path, key: SigningKey, counted: list[Counting]) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    record = record_path(logdir)
    elsewhere = tmp_path / "elsewhere.sealed"
    shutil.move(record, elsewhere)  # a genuine record, reached through a link
    genuine = elsewhere.read_bytes()
    record.symlink_to(elsewhere)
    open_and_close(logdir, verify=True)
    assert counted[-1].leaves == 100  # not read through the link: full verification
    assert not record.is_symlink() and stat.S_ISREG(os.lstat(record).st_mode)  # replaced, not written through
    assert elsewhere.read_bytes() == genuine
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    record.unlink()
    record.symlink_to(target)
    open_and_close(logdir, verify=True)
    assert target.read_bytes() == b"precious" and not record.is_symlink()


def test_a_record_that_cannot_be_written_is_no_error(tmp_path: Path, key: SigningKey, counted: list[Counting]) -> None:
    logdir = tmp_path / "log"
    make_log(logdir, key)
    record_path(logdir).mkdir()  # neither readable as a record nor replaceable by one
    assert open_and_close(logdir, signing=True, verify=True).size == 100
    assert counted[-1].leaves == 100 and record_path(logdir).is_dir()
    assert not save_verification(logdir, open_and_close(logdir, verify=True))
    assert not [p for p in record_path(logdir).parent.iterdir() if p.name.endswith(".tmp")]  # no temporary left


def test_a_log_directory_this_user_may_not_write_is_read_not_appended_to(tmp_path: Path, key: SigningKey) -> None:
    # A reader of someone else's log (or of a read-only copy): SQLite cannot switch the database's journal or create
    # its -shm file there. The log opens read-only: verified, replayed into the state; an append is refused cleanly.
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [3])
    lg.store.close()
    probe = ("import sys; from pathlib import Path; from redline.cli.logdir import open_log; "
             "lg = open_log(Path(sys.argv[1]), verify=True); print(lg.size, lg.store.read_only)")
    redline = str(Path(sys.executable).with_name("redline"))
    logdir.chmod(0o555)
    try:
        opened = subprocess.run(unprivileged([sys.executable, "-c", probe, str(logdir)]), capture_output=True,
                                text=True, timeout=120)
        assert opened.returncode == 0, opened.stderr[-2000:]
        assert opened.stdout.split() == ["103", "True"]  # the record at 100 moves on: it is not in LOGDIR
        verified = subprocess.run(unprivileged([redline, "log", "verify", str(logdir)]), capture_output=True,
                                  text=True, timeout=120)
        assert verified.returncode == 0 and "103 entries" in verified.stdout, verified.stderr
        entry = tmp_path / "entry.json"
        entry.write_text('{"x":1}')
        refused = subprocess.run(unprivileged([redline, "log", "append", str(logdir), str(entry)]),
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 4 and "open read-only" in refused.stderr and "Traceback" not in refused.stderr
    finally:
        logdir.chmod(0o755)
    assert open_and_close(logdir, verify=True).size == 103  # nothing was written


def test_log_open_since_a_record_directly(tmp_path: Path, key: SigningKey) -> None:
    """The service API without the CLI: ``Log.open(since=...)`` with what an earlier open established."""
    store = Counting(SqliteStore(tmp_path / "log.db", create=True))
    lg = Log.create(store, key)
    assert lg.verified == Verified(0, (), 1, True, 0)
    append(lg, [16, 17])
    since = lg.verified
    assert since is not None and since.size == 33 and since.checkpoints == 3 and since.root == lg.root()
    store.leaves = 0
    again = Log.open(store, key=key, since=since)
    assert store.leaves == 0 and again.verified == since
    append(again, [5])
    third = Log.open(store, since=since)
    assert store.leaves == 5 and third.verified == again.verified and third.checked == range(33, 38)
    with pytest.raises(RolledBack):
        Log.open(store, since=Verified(39, tuple(merkle.EMPTY_ROOT for _ in range(3)), 4, True, 0))
    store.close()


# --- PostgreSQL ------------------------------------------------------------------------------------------------------


def test_cheap_opens_on_postgresql(tmp_path: Path, key: SigningKey, counted: list[Counting],
                                   pg: PgCluster) -> None:  # noqa: F811 - the fixture
    url = pg.new_url()
    logdir = tmp_path / "log"
    logdir.mkdir()
    (logdir / "store.url").write_text(url + "\n")
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    assert counted[-1].leaves == 100
    lg = open_log(logdir, signing=True, verify=True)
    assert counted[-1].leaves == 0
    append(lg, [4])
    lg.store.close()
    open_and_close(logdir, verify=True)
    assert counted[-1].leaves == 4
    header, _ = localcache.unseal("verification-record", record_path(logdir).read_bytes(), localcache.cache_key())
    assert header["store"].startswith("postgresql://") and "password" not in header["store"]
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:  # as if restored from a dump taken at 100 entries
        c.execute("DELETE FROM leaf_chunks WHERE first >= 100")
    with pytest.raises(RolledBack):
        open_log(logdir, verify=True)


def _rolled_back_through(tmp_path: Path, key: SigningKey, swap: str) -> Path:
    """A log of 100 entries grown to 110 (the reader's record says 110), then its store put back at 100 by making
    ``log.db`` a symlink to an older copy (``swap="symlink"``) or by moving the older copy into place after the
    record was made by another redline (``swap="upgrade"``)."""
    logdir = tmp_path / "log"
    make_log(logdir, key)
    open_and_close(logdir, verify=True)
    older = tmp_path / "older.db"
    shutil.copyfile(logdir / "log.db", older)
    lg = open_log(logdir, signing=True, verify=True)
    append(lg, [10])
    lg.store.close()
    open_and_close(logdir, verify=True)  # the record now says 110
    for path in (logdir / "log.db-wal", logdir / "log.db-shm"):
        path.unlink(missing_ok=True)
    if swap == "symlink":
        restored = logdir / "restored.db"
        shutil.copyfile(older, restored)
        (logdir / "log.db").unlink()
        (logdir / "log.db").symlink_to(restored)
    else:
        shutil.copyfile(older, logdir / "log.db")
    return logdir


@pytest.mark.parametrize("swap", ["symlink", "upgrade"])
def test_a_rollback_cannot_hide_behind_a_record_that_names_another_store_or_code(
        tmp_path: Path, key: SigningKey, swap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The record is bound to the store (the database file's real path) and to the code, so a store swapped in
    # under the same name, or the first open after an upgrade, cannot use it for a cheap open; but what it says of
    # the log still holds: this user saw 110 entries of it, so a store of 100 is a rollback.
    from redline.log import localcache

    if swap == "upgrade":
        real = localcache.code_digest()
        monkeypatch.setattr(localcache, "code_digest", lambda: "an older redline")
    logdir = _rolled_back_through(tmp_path, key, swap)
    if swap == "upgrade":
        monkeypatch.setattr(localcache, "code_digest", lambda: real)
    with pytest.raises(RolledBack) as info:
        open_log(logdir, verify=True)
    assert "fewer than the 110" in str(info.value) and "redline log verify" in str(info.value)
    assert info.value.index == 100
    shown = run("state", logdir)
    assert shown.exit_code == 6 and "110" in shown.output, shown.output
    accepted = verify_cli(logdir)  # on purpose: the full verification says what it saw, and accepts it
    assert accepted.exit_code == 0 and "rolled back" in accepted.output and "110" in accepted.output
    assert open_and_close(logdir, verify=True).size == 100


def test_another_history_swapped_in_under_the_same_name_is_refused(tmp_path: Path, key: SigningKey) -> None:
    # The log key's holder signs a second history of 110 entries; the store is swapped for it through a symlink.
    # This user verified the first history: the other one is refused, whatever its size.
    logdir = tmp_path / "log"
    make_log(logdir, key, [110])
    open_and_close(logdir, verify=True)
    other = tmp_path / "other"
    other.mkdir()
    fork = create_log(other, key)
    fork.append([b"another history"])
    append(fork, [109, 5])
    fork.store.close()
    (logdir / "log.db").unlink()
    (logdir / "log.db").symlink_to(other / "log.db")
    with pytest.raises(InconsistentLog, match="another history"):
        open_log(logdir, verify=True)
    assert run("state", logdir).exit_code == 6
