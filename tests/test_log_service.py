"""Tests for redline.log.service: the Log over the SQLite store, its checkpoints, receipts and proofs.

Roots are checked against ``merkle.root_of`` over the stored leaves, receipts are
verified offline with nothing but the log's verifier key, and a store altered on
disk with raw ``sqlite3`` must be refused naming the first bad entry.
"""

from __future__ import annotations

import base64
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from redline.crypto.keys import SigningKey, VerifierKey, save_signing_key
from redline.crypto.note import NoteSignature, parse_note, sign_note
from redline.errors import (
    BadSignature,
    EntryTooLarge,
    InconsistentLog,
    IndexOutOfRange,
    InputTooLarge,
    InvalidProof,
    MalformedInput,
    UnknownKey,
)
from redline.log import merkle
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import MAX_ENTRY_BYTES, decode_leaf, encode_leaf
from redline.log.receipt import MAX_RECEIPT_BYTES, Receipt, verify_receipt
from redline.log.service import Log
from redline.log.sqlite import BUNDLE_LEAVES, CHUNK_LEAVES, MAX_BLOCK_ROWS, TILE_HASHES, SqliteStore
from redline.log.tiles import encode_entry_bundle, parse_entry_bundle

ORIGIN = "redline.test/log"


def entry_for(i: int) -> bytes:
    """A distinct, reproducible entry for index ``i``."""
    return f"entry {i} ".encode() + random.Random(i).randbytes(i % 97)


class StepClock:
    """An injected clock that returns the given times in order, then repeats the last one."""

    def __init__(self, *times: int) -> None:
        self.times = list(times)
        self.calls = 0

    def __call__(self) -> int:
        t = self.times[min(self.calls, len(self.times) - 1)]
        self.calls += 1
        return t


def new_log(path: Path, key: SigningKey, **kw) -> Log:
    return Log.create(SqliteStore(path, create=True), key, **kw)


def reopen(path: Path, **kw) -> Log:
    return Log.open(SqliteStore(path), **kw)


def leaf_hashes(lg: Log, size: int | None = None) -> list[bytes]:
    """Leaf hashes recomputed from the leaves the store holds."""
    size = lg.size if size is None else size
    return [merkle.leaf_hash(lg.leaf(i)) for i in range(size)]


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate(ORIGIN)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Log, SigningKey, list[int]]:
    """A log of 300 entries appended in batches of varied sizes; returns it, its key and the batch ends."""
    key = SigningKey.generate(ORIGIN)
    lg = new_log(tmp_path_factory.mktemp("big") / "log.db", key, clock=StepClock(1_700_000_000_000))
    rng = random.Random(7)
    ends = []
    while lg.size < 300:
        n = min(rng.randint(1, 40), 300 - lg.size)
        lg.append([entry_for(i) for i in range(lg.size, lg.size + n)])
        ends.append(lg.size)
    return lg, key, ends


# --- appending --------------------------------------------------------------


def test_create_append_entries_and_one_checkpoint_per_batch(db: Path, key: SigningKey) -> None:
    clock = StepClock(1000, 2000, 3000, 4000)
    lg = new_log(db, key, clock=clock)
    assert lg.size == 0
    assert lg.checkpoint_sizes() == [0]
    assert lg.origin == ORIGIN
    cp0, _ = open_checkpoint(lg.checkpoint(), key.verifier())
    assert (cp0.size, cp0.root) == (0, merkle.EMPTY_ROOT)

    batches = [[entry_for(i) for i in range(a, b)] for a, b in [(0, 1), (1, 4), (4, 11), (11, 13)]]
    want_sizes = [0]
    for n, batch in enumerate(batches):
        before = lg.checkpoint_sizes()
        done = lg.append(batch)
        assert done.first_index == want_sizes[-1]
        assert list(done.indexes) == list(range(want_sizes[-1], want_sizes[-1] + len(batch)))
        assert done.times_ms == ((n + 1) * 1000,) * len(batch)
        want_sizes.append(want_sizes[-1] + len(batch))
        assert lg.checkpoint_sizes() == before + [want_sizes[-1]]
        assert done.checkpoint == lg.checkpoint() == lg.checkpoint(lg.size)

    assert lg.size == 13
    assert lg.checkpoint_sizes() == want_sizes
    everything = [e for batch in batches for e in batch]
    times = [t for n, batch in enumerate(batches) for t in [(n + 1) * 1000] * len(batch)]
    assert list(lg.entries()) == [(i, t, e) for i, (t, e) in enumerate(zip(times, everything))]
    assert list(lg.entries(5)) == [(i, times[i], everything[i]) for i in range(5, 13)]
    assert [lg.entry(i) for i in range(13)] == list(zip(times, everything))
    assert [decode_leaf(lg.leaf(i)) for i in range(13)] == list(zip(times, everything))

    hashes = [merkle.leaf_hash(encode_leaf(t, e)) for t, e in zip(times, everything)]
    for s in want_sizes:
        cp, _ = open_checkpoint(lg.checkpoint(s), key.verifier())
        assert cp.origin == ORIGIN
        assert cp.size == s
        assert cp.root == merkle.root_of(hashes[:s]) == lg.root(s)

    lg.store.close()
    again = reopen(db, key=key)
    assert again.size == 13
    assert again.checkpoint_sizes() == want_sizes
    assert list(again.entries()) == [(i, t, e) for i, (t, e) in enumerate(zip(times, everything))]
    assert again.root() == merkle.root_of(hashes)
    again.append([b"after reopen"])
    assert again.entry(13)[1] == b"after reopen"
    assert again.checkpoint_sizes() == want_sizes + [14]


def test_integration_time_follows_the_clock_and_never_goes_backwards(db: Path, key: SigningKey) -> None:
    clock = StepClock(5_000, 9_000, 7_000, 7_000, 12_000)
    lg = new_log(db, key, clock=clock)
    got = [lg.append([entry_for(i)]).times_ms[0] for i in range(5)]
    assert got == [5_000, 9_000, 9_000, 9_000, 12_000]
    assert [t for _, t, _ in lg.entries()] == got

    # A reopened log remembers its last time even if its new clock is far behind.
    lg.store.close()
    lg = reopen(db, key=key, clock=StepClock(1))
    assert lg.append([b"late"]).times_ms == (12_000,)
    assert lg.entry(5) == (12_000, b"late")

    for i, t in enumerate(got + [12_000]):
        r = lg.receipt(i)
        assert r.extra == t.to_bytes(8, "big")
        cp, when = verify_receipt(r, lg.entry(i)[1], key.verifier())
        assert when == t
        assert cp.size == 6


def test_receipt_time_is_bound_to_the_leaf(db: Path, key: SigningKey) -> None:
    lg = new_log(db, key, clock=StepClock(1_234_567))
    lg.append([b"a", b"b", b"c"])
    r = lg.receipt(1)
    assert verify_receipt(r, b"b", key.verifier())[1] == 1_234_567
    for t in (1_234_566, 1_234_568, 0, 2**64 - 1):
        moved = Receipt(r.index, r.proof, r.checkpoint, t.to_bytes(8, "big"))
        with pytest.raises(InvalidProof, match="entry 1"):
            verify_receipt(moved, b"b", key.verifier())
    with pytest.raises(MalformedInput, match="8-byte integration time"):
        verify_receipt(Receipt(r.index, r.proof, r.checkpoint, None), b"b", key.verifier())
    with pytest.raises(MalformedInput, match="8-byte integration time"):
        verify_receipt(Receipt(r.index, r.proof, r.checkpoint, r.extra + b"\x00"), b"b", key.verifier())


# --- receipts ----------------------------------------------------------------


def test_receipts_verify_for_every_index_latest_and_older_checkpoint(big) -> None:
    lg, key, ends = big
    vk = VerifierKey.from_string(key.verifier().to_string())  # only the public key string travels
    old = ends[len(ends) // 2]
    assert 0 < old < lg.size
    for i in range(lg.size):
        entry = entry_for(i)
        r = lg.receipt(i)
        assert Receipt.parse(r.encode()) == r
        cp, t = verify_receipt(Receipt.parse(r.encode()), entry, vk)
        assert (cp.size, cp.root, t) == (lg.size, lg.root(), lg.entry(i)[0])
        if i < old:
            ro = lg.receipt(i, old)
            cp, _ = verify_receipt(Receipt.parse(ro.encode()), entry, vk)
            assert (cp.size, cp.root) == (old, lg.root(old))
            assert ro.checkpoint == lg.checkpoint(old)
    with pytest.raises(IndexOutOfRange):
        lg.receipt(old, old)
    with pytest.raises(IndexOutOfRange):
        lg.receipt(lg.size)
    not_signed = next(s for s in range(1, lg.size) if s not in ends)
    with pytest.raises(IndexOutOfRange, match=f"size {not_signed}"):
        lg.receipt(0, not_signed)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _resign(checkpoint: bytes, mutate) -> bytes:
    """The checkpoint with its one signature's raw bytes (key ID || signature) passed through ``mutate``."""
    note = parse_note(checkpoint)
    (sig,) = note.signatures
    raw = mutate(sig.key_id + sig.signature)
    return type(note)(note.text, (NoteSignature(sig.name, raw[:4], raw[4:]),)).encode()


@pytest.mark.parametrize("index", [0, 1, 2, 127, 128, 255, 298, 299])
def test_tampered_receipts_are_rejected(big, index: int) -> None:
    lg, key, ends = big
    vk = key.verifier()
    entry = entry_for(index)
    r = lg.receipt(index)
    verify_receipt(r, entry, vk)
    rng = random.Random(index)

    # A flipped bit anywhere in any proof hash.
    assert r.proof
    for j, h in enumerate(r.proof):
        bad = r.proof[:j] + (_flip(h, rng.randrange(256)),) + r.proof[j + 1 :]
        with pytest.raises(InvalidProof, match=f"entry {index}"):
            verify_receipt(Receipt(r.index, bad, r.checkpoint, r.extra), entry, vk)
    # A missing or an extra proof hash.
    with pytest.raises(InvalidProof):
        verify_receipt(Receipt(r.index, r.proof[:-1], r.checkpoint, r.extra), entry, vk)
    with pytest.raises(InvalidProof):
        verify_receipt(Receipt(r.index, r.proof + (bytes(32),), r.checkpoint, r.extra), entry, vk)

    # A flipped bit in the checkpoint's signature, key ID, or signed text.
    for bit in rng.sample(range(32, 32 + 512), 4):
        with pytest.raises(BadSignature, match=ORIGIN):
            verify_receipt(Receipt(r.index, r.proof, _resign(r.checkpoint, lambda b, bit=bit: _flip(b, bit)), r.extra),
                           entry, vk)
    with pytest.raises(UnknownKey):
        verify_receipt(Receipt(r.index, r.proof, _resign(r.checkpoint, lambda b: _flip(b, 3)), r.extra), entry, vk)
    text_end = r.checkpoint.index(b"\n\n")
    root_line = r.checkpoint.rindex(b"\n", 0, text_end) + 1
    other_root = base64.b64encode(_flip(lg.root(), 9))
    forged = r.checkpoint[:root_line] + other_root + r.checkpoint[text_end:]
    with pytest.raises(BadSignature):
        verify_receipt(Receipt(r.index, r.proof, forged, r.extra), entry, vk)

    # A flipped bit in the index, as a number and in the receipt's text.
    for b in range(9):
        with pytest.raises(InvalidProof):
            verify_receipt(Receipt(r.index ^ (1 << b), r.proof, r.checkpoint, r.extra), entry, vk)
    text = r.encode()
    at = text.index(b"index ") + 6
    for bit in range(8):
        flipped = _flip(text, at * 8 + bit)
        with pytest.raises((MalformedInput, InvalidProof)):
            verify_receipt(Receipt.parse(flipped), entry, vk)

    # Another entry, and another log's key (with another name, and with this log's name).
    with pytest.raises(InvalidProof, match=f"entry {index}"):
        verify_receipt(r, entry_for(index + 1), vk)
    with pytest.raises(InvalidProof):
        verify_receipt(r, entry + b"\x00", vk)
    with pytest.raises(UnknownKey):
        verify_receipt(r, entry, SigningKey.generate("other.test/log").verifier())
    with pytest.raises(UnknownKey):
        verify_receipt(r, entry, SigningKey.generate(ORIGIN).verifier())


def test_receipt_signed_by_another_key_under_the_log_name_is_rejected(big) -> None:
    lg, key, _ = big
    r = lg.receipt(3)
    cp, _ = open_checkpoint(r.checkpoint, key.verifier())
    impostor = SigningKey.generate(ORIGIN)
    forged = Receipt(r.index, r.proof, cp.sign(impostor), r.extra)
    verify_receipt(forged, entry_for(3), impostor.verifier())  # it is well-formed ...
    with pytest.raises(UnknownKey, match=ORIGIN):  # ... but not by this log's key
        verify_receipt(forged, entry_for(3), key.verifier())
    # A cosigned checkpoint (an unknown extra signature) still verifies with the log key alone.
    cosigned = sign_note(cp.text(), key, SigningKey.generate("witness.test"))
    verify_receipt(Receipt(r.index, r.proof, cosigned, r.extra), entry_for(3), key.verifier())


def _receipt_text(index: str = "5", proof_lines: list[str] | None = None, header: str = "c2sp.org/tlog-proof@v1",
                  extra: str | None = "AAAAAAAAAAE=") -> bytes:
    lines = [header] if header else []
    if extra is not None:
        lines.append(f"extra {extra}")
    lines.append(f"index {index}")
    lines += proof_lines if proof_lines is not None else [base64.b64encode(bytes(32)).decode()] * 3
    cp = Checkpoint(ORIGIN, 9, bytes(32)).sign(SigningKey.generate(ORIGIN))
    return ("\n".join(lines) + "\n\n").encode() + cp


def test_receipt_parse_accepts_wellformed_and_rejects_malformed() -> None:
    r = Receipt.parse(_receipt_text())
    assert (r.index, r.proof, r.extra) == (5, (bytes(32),) * 3, (1).to_bytes(8, "big"))
    assert Receipt.parse(r.encode()) == r
    assert Receipt.parse(_receipt_text(index="0", proof_lines=[])).index == 0
    assert Receipt.parse(_receipt_text(extra=None)).extra is None

    canonical = base64.b64encode(bytes(32)).decode()
    assert canonical.endswith("A=")
    cases = [
        (_receipt_text(header=""), MalformedInput, "start with"),
        (_receipt_text(header="c2sp.org/tlog-proof@v2"), MalformedInput, "start with"),
        (_receipt_text(index="05"), MalformedInput, "leading zeros"),
        (_receipt_text(index="-5"), MalformedInput, "'-5'"),
        (_receipt_text(index="5 "), MalformedInput, "'5 '"),
        (_receipt_text(index="\u0665"), MalformedInput, "ASCII"),
        (_receipt_text(index=""), MalformedInput, "index"),
        (_receipt_text(proof_lines=[canonical[:-2] + "B="]), MalformedInput, "canonical"),
        (_receipt_text(proof_lines=[canonical.rstrip("=")]), MalformedInput, "base64"),
        (_receipt_text(proof_lines=[base64.b64encode(bytes(31)).decode()]), MalformedInput, "not 32"),
        (_receipt_text(proof_lines=["AAAA"]), MalformedInput, "not 32"),
        (_receipt_text(extra="AAAAAAAAAAE"), MalformedInput, "extra"),
        (_receipt_text(proof_lines=[canonical] * 64), InputTooLarge, "64 proof hashes"),
        (_receipt_text().replace(b"\n\n", b"\n"), MalformedInput, "blank line"),
        (_receipt_text().split(b"\n\n")[0] + b"\n\n", MalformedInput, "blank line"),
        (_receipt_text().replace(b"index 5\n", b""), MalformedInput, "'index' line"),
        (_receipt_text() + b"x" * MAX_RECEIPT_BYTES, InputTooLarge, "over the limit"),
        ("c2sp.org/tlog-proof@v1\nindex 5\u00e9\n\n".encode() + b"x", MalformedInput, "ASCII"),
    ]
    for data, err, msg in cases:
        with pytest.raises(err, match=msg):
            Receipt.parse(data)
    assert len(Receipt.parse(_receipt_text(proof_lines=[canonical] * 63)).proof) == 63
    # An empty line before the checkpoint passes the parser but not verification: the note's text (which a
    # signed note may begin with a blank line) is then not the text the log signed.
    stray = Receipt.parse(_receipt_text(proof_lines=[""]))
    with pytest.raises(BadSignature):  # (UnknownKey here: the test's checkpoint is signed by another key)
        verify_receipt(stray, b"x", SigningKey.generate(ORIGIN).verifier())


# --- entry size bound ----------------------------------------------------------


def test_entry_size_bound(db: Path, key: SigningKey) -> None:
    assert MAX_ENTRY_BYTES == 65_527
    lg = new_log(db, key)
    lg.append([b"first"])
    lg.append([b"\xab" * MAX_ENTRY_BYTES])
    assert lg.entry(1)[1] == b"\xab" * MAX_ENTRY_BYTES
    assert len(lg.leaf(1)) == 0xFFFF
    verify_receipt(lg.receipt(1), b"\xab" * MAX_ENTRY_BYTES, key.verifier())

    sizes, cps = lg.size, lg.checkpoint_sizes()
    for n in (MAX_ENTRY_BYTES + 1, 65_536, 65_537, 1 << 20):
        with pytest.raises(EntryTooLarge, match=rf"\b{n} bytes.*limit of {MAX_ENTRY_BYTES}\b"):
            lg.append([b"x" * n])
        # One oversize entry spoils its whole batch: nothing is written.
        with pytest.raises(EntryTooLarge, match=rf"entry 2 of the batch is {n} bytes"):
            lg.append([b"ok", b"fine", b"x" * n, b"ok too"])
        assert (lg.size, lg.checkpoint_sizes()) == (sizes, cps)
    with pytest.raises(MalformedInput, match="at least one entry"):
        lg.append([])
    for bad in ("text", 7, None, memoryview(b"abc")):
        with pytest.raises(MalformedInput, match="entry 1 of the batch is not bytes"):
            lg.append([b"ok", bad])  # type: ignore[list-item]
    assert (lg.size, lg.checkpoint_sizes()) == (sizes, cps)
    lg.append([bytearray(b"a bytearray")])
    assert lg.entry(2)[1] == b"a bytearray"

    lg.store.close()
    again = reopen(db)
    assert (again.size, again.checkpoint_sizes()) == (3, cps + [3])
    with pytest.raises(EntryTooLarge, match=f"65537 bytes.*{MAX_ENTRY_BYTES}"):
        encode_leaf(0, b"x" * 65_537)


# --- opening checks the store --------------------------------------------------


SIZES = [1, 2, 5, 8, 13, 21, 30, 37]  # batch ends of the tampering fixture


@pytest.fixture
def stored(tmp_path: Path, key: SigningKey) -> Path:
    """A closed log of 37 entries whose checkpoints are at SIZES."""
    path = tmp_path / "log.db"
    lg = new_log(path, key, clock=StepClock(*range(10_000, 20_000, 1000)))
    prev = 0
    for end in SIZES:
        lg.append([entry_for(i) for i in range(prev, end)])
        prev = end
    assert lg.checkpoint_sizes() == [0] + SIZES
    lg.store.close()
    return path


def _sql(path: Path, query: str, *args) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(query, args)
    con.close()


def _raw(path: Path, query: str, *args):
    con = sqlite3.connect(path)
    rows = con.execute(query, args).fetchall()
    con.close()
    return rows


def _leaf_row(path: Path, index: int) -> tuple[int, list[bytes]]:
    """The ``leaf_chunks`` row holding leaf ``index``: its first index and its leaves (parsed as an entry bundle)."""
    (first, count, blob), = _raw(path, "SELECT first, count, leaves FROM leaf_chunks WHERE first <= ? "
                                       "ORDER BY first DESC LIMIT 1", index)
    assert first <= index < first + count
    return first, parse_entry_bundle(bytes(blob), count)


def _get_leaf(path: Path, index: int) -> bytes:
    first, leaves = _leaf_row(path, index)
    return leaves[index - first]


def _set_leaf(path: Path, index: int, leaf: bytes) -> None:
    """Overwrite leaf ``index`` in its row with raw SQL (the row stays a well-formed bundle)."""
    first, leaves = _leaf_row(path, index)
    leaves[index - first] = leaf
    _sql(path, "UPDATE leaf_chunks SET leaves=? WHERE first=?", encode_entry_bundle(leaves), first)


def _delete_leaf(path: Path, index: int, *, fix_count: bool = True) -> None:
    """Cut leaf ``index`` out of its row (and the row's count, unless ``fix_count`` is False)."""
    first, leaves = _leaf_row(path, index)
    del leaves[index - first]
    if not leaves:
        _sql(path, "DELETE FROM leaf_chunks WHERE first=?", first)
    else:
        _sql(path, "UPDATE leaf_chunks SET leaves=?, count=count-? WHERE first=?", encode_entry_bundle(leaves),
             int(fix_count), first)


def _insert_leaf(path: Path, index: int, leaf: bytes) -> None:
    _sql(path, "INSERT INTO leaf_chunks(first, count, leaves) VALUES (?, 1, ?)", index, encode_entry_bundle([leaf]))


def _refused(path: Path, index: int | None) -> InconsistentLog:
    with pytest.raises(InconsistentLog) as info:
        reopen(path)
    err = info.value
    assert err.index is not None, f"InconsistentLog names no entry: {err}"
    assert str(err.index) in str(err)
    if index is not None:
        assert err.index == index, str(err)
    return err


def test_unaltered_store_opens_and_verifies(stored: Path, key: SigningKey) -> None:
    lg = reopen(stored, trusted=key.verifier())
    assert lg.size == 37
    assert lg.root() == merkle.root_of(leaf_hashes(lg))
    assert [e for _, _, e in lg.entries()] == [entry_for(i) for i in range(37)]
    progress: list[tuple[int, int]] = []
    reopen(stored, progress=lambda n, total: progress.append((n, total)))
    assert progress[-1] == (37, 37)


@pytest.mark.parametrize("index", [0, 1, 12, 36])
def test_altered_leaf_bytes_are_refused(stored: Path, index: int) -> None:
    _set_leaf(stored, index, _flip(_get_leaf(stored, index), 8 * 8 + 3))
    err = _refused(stored, index)
    assert "altered" in str(err)


@pytest.mark.parametrize("index", [3, 20])
def test_altered_integration_time_is_refused(stored: Path, index: int) -> None:
    _set_leaf(stored, index, encode_leaf(1, decode_leaf(_get_leaf(stored, index))[1]))
    _refused(stored, index)
    _set_leaf(stored, index, b"short")
    _refused(stored, index)


@pytest.mark.parametrize("stored_index", [0, 1, 2, 10, merkle.stored_hash_index(3, 0),
                                          merkle.stored_hash_index(5, 0), merkle.stored_hash_count(37) - 1])
def test_altered_stored_hash_is_refused(stored: Path, stored_index: int) -> None:
    tile, slot = divmod(stored_index, TILE_HASHES)
    (blob,), = _raw(stored, "SELECT hashes FROM hash_tiles WHERE tile=?", tile)
    _sql(stored, "UPDATE hash_tiles SET hashes=? WHERE tile=?", _flip(bytes(blob), 8 * 32 * slot + 100), tile)
    err = _refused(stored, merkle.leaf_of_stored(stored_index))
    assert f"stored hash {stored_index}" in str(err)


@pytest.mark.parametrize("fix_count", [True, False])
@pytest.mark.parametrize("index", [0, 17, 35, 36])
def test_deleted_leaf_is_refused(stored: Path, index: int, fix_count: bool) -> None:
    _delete_leaf(stored, index, fix_count=fix_count)
    _refused(stored, index)


def test_deleted_hash_is_refused(stored: Path) -> None:
    (blob,), = _raw(stored, "SELECT hashes FROM hash_tiles WHERE tile=0")
    _sql(stored, "UPDATE hash_tiles SET hashes=? WHERE tile=0", bytes(blob)[:-32])
    _refused(stored, 36)


def test_torn_hash_tile_is_refused(stored: Path) -> None:
    (blob,), = _raw(stored, "SELECT hashes FROM hash_tiles WHERE tile=0")
    _sql(stored, "UPDATE hash_tiles SET hashes=? WHERE tile=0", bytes(blob)[:-5])
    _refused(stored, 0)


def test_deleted_hash_tile_is_refused(stored: Path) -> None:
    _sql(stored, "DELETE FROM hash_tiles WHERE tile=0")
    _refused(stored, 0)


BUNDLED_ENDS = [1, 2, 3, 4, 5, 6, 7, 8, 100, 300, 556, 600]


@pytest.fixture
def bundled(tmp_path: Path, key: SigningKey) -> Path:
    """A closed log of 600 entries: two full entry bundles, then a partial one.

    Eight single appends leave leaves 0..7 in eight rows; the append that fills their block merges it.
    The later appends each start by filling a block that then holds two rows, which stay apart.
    """
    path = tmp_path / "log.db"
    lg = new_log(path, key, clock=StepClock(*range(10_000, 20_000, 1000)))
    prev = 0
    for end in BUNDLED_ENDS:
        lg.append([entry_for(i) for i in range(prev, end)])
        prev = end
    lg.store.close()
    return path


def test_leaf_rows_concatenate_to_c2sp_entry_bundles(bundled: Path) -> None:
    assert (BUNDLE_LEAVES, CHUNK_LEAVES, MAX_BLOCK_ROWS) == (256, 16, 4)
    rows = _raw(bundled, "SELECT first, count, leaves FROM leaf_chunks ORDER BY first")
    spans = [(first, count) for first, count, _ in rows]
    assert spans[:3] == [(0, 16), (16, 16), (32, 16)]  # block 0 merged from nine rows
    assert {(96, 4), (100, 12), (288, 12), (300, 4), (544, 12), (556, 4), (592, 8)} <= set(spans)
    ends = [first + count for first, count in spans]
    assert [first for first, _ in spans] == [0] + ends[:-1] and ends[-1] == 600
    assert all(first // CHUNK_LEAVES == (end - 1) // CHUNK_LEAVES for (first, _), end in zip(spans, ends))
    lg = reopen(bundled)
    leaves = [lg.leaf(i) for i in range(600)]
    assert [decode_leaf(leaf)[1] for leaf in leaves] == [entry_for(i) for i in range(600)]
    for b in range(3):
        blob = b"".join(bytes(blob) for first, _, blob in rows if first // BUNDLE_LEAVES == b)
        assert blob == encode_entry_bundle(leaves[BUNDLE_LEAVES * b : BUNDLE_LEAVES * (b + 1)])
    assert lg.store.read_leaves(250, 300) == leaves[250:550]
    assert lg.store.read_leaves(99, 2) == leaves[99:101]
    assert list(lg.store.iter_leaves(300, chunk=7)) == list(enumerate(leaves))[300:]
    assert lg.root() == merkle.root_of(leaf_hashes(lg))
    with pytest.raises(IndexOutOfRange):
        lg.store.read_leaves(590, 11)


@pytest.mark.parametrize(("sizes", "spans"), [
    ([1, 1, 1, 13, 3], [(0, 1), (1, 1), (2, 1), (3, 13), (16, 3)]),  # filled in MAX_BLOCK_ROWS rows: kept
    ([1, 1, 1, 1, 12, 3], [(0, 16), (16, 3)]),                        # one more row: merged
    ([1] * 33, [(0, 16), (16, 16), (32, 1)]),                          # single appends
    ([40], [(0, 16), (16, 16), (32, 8)]),
])
def test_block_merging(db: Path, key: SigningKey, sizes: list[int], spans: list[tuple[int, int]]) -> None:
    lg = new_log(db, key)
    for n in sizes:
        lg.append([entry_for(i) for i in range(lg.size, lg.size + n)])
    assert [tuple(r) for r in lg.store._db.execute("SELECT first, count FROM leaf_chunks ORDER BY first")] == spans
    assert [e for _, _, e in reopen(db).entries()] == [entry_for(i) for i in range(sum(sizes))]


def test_crash_before_a_merging_commit_keeps_the_unmerged_rows(tmp_path: Path) -> None:
    """SIGKILL just before the commit of an append that merges a block: the old rows and entries survive."""
    helper = Path(__file__).resolve().parent / "helpers" / "crash_writer.py"
    key = SigningKey.generate(ORIGIN)
    key_file, db = tmp_path / "log.key", tmp_path / "log.db"
    save_signing_key(key, key_file)
    proc = subprocess.run([sys.executable, str(helper), "--die-at", "merge-commit", str(db), str(key_file)],
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    acks = [line.split() for line in proc.stdout.decode().splitlines()]
    assert [int(size) for size, _ in acks] == [1, 2, 3, 4]
    lg = reopen(db, key=key)  # verifies the whole store
    assert lg.size == 4 and lg.checkpoint() == base64.b64decode(acks[-1][1])
    spans = [tuple(r) for r in lg.store._db.execute("SELECT first, count FROM leaf_chunks ORDER BY first")]
    assert spans == [(0, 1), (1, 1), (2, 1), (3, 1)]
    lg.append([b"after %d" % i for i in range(12)])
    spans = [tuple(r) for r in lg.store._db.execute("SELECT first, count FROM leaf_chunks ORDER BY first")]
    assert spans == [(0, 16)]
    assert reopen(db).size == 16


@pytest.mark.parametrize("index", [0, 200, 255, 256, 511, 512, 555, 556, 599])
def test_altered_leaf_in_a_bundle_is_refused(bundled: Path, index: int) -> None:
    _set_leaf(bundled, index, _flip(_get_leaf(bundled, index), 8 * 8 + 1))
    err = _refused(bundled, index)
    assert "altered" in str(err)


@pytest.mark.parametrize("fix_count", [True, False])
@pytest.mark.parametrize("index", [0, 255, 300, 511])
def test_leaf_cut_from_a_full_bundle_is_refused(bundled: Path, index: int, fix_count: bool) -> None:
    _delete_leaf(bundled, index, fix_count=fix_count)
    _refused(bundled, index)


@pytest.mark.parametrize(("first", "cut", "index"), [(0, 5, 15), (0, -3, 15), (0, None, 0), (96, 5, 99),
                                                     (96, -1, 99), (96, None, 96), (100, None, 100), (592, 1, 599)])
def test_torn_leaf_row_is_refused(bundled: Path, first: int, cut: int | None, index: int) -> None:
    """Bytes cut from the end of a row, bytes added after it, or the whole row gone."""
    (blob,), = _raw(bundled, "SELECT leaves FROM leaf_chunks WHERE first=?", first)
    if cut is None:
        _sql(bundled, "DELETE FROM leaf_chunks WHERE first=?", first)
    else:
        torn = bytes(blob)[:-cut] if cut > 0 else bytes(blob) + bytes(-cut)
        _sql(bundled, "UPDATE leaf_chunks SET leaves=? WHERE first=?", torn, first)
    _refused(bundled, index)


@pytest.mark.parametrize(("first", "count", "index"), [(0, 15, 14), (0, 17, 16), (100, 11, 110),
                                                       (100, 13, 112), (592, 9, 600)])
def test_leaf_row_with_a_wrong_count_is_refused(bundled: Path, first: int, count: int, index: int) -> None:
    """A row counting fewer leaves than it holds is bad from its last counted leaf (bytes follow it); one
    counting more is bad from the first leaf it lacks."""
    _sql(bundled, "UPDATE leaf_chunks SET count=? WHERE first=?", count, first)
    _refused(bundled, index)


def test_latest_checkpoint_signed_by_another_key_is_refused(stored: Path, key: SigningKey) -> None:
    cp, _ = open_checkpoint(reopen(stored).checkpoint(), key.verifier())
    _sql(stored, "UPDATE checkpoints SET note=? WHERE size=37", cp.sign(SigningKey.generate(ORIGIN)))
    err = _refused(stored, None)
    assert "checkpoint" in str(err)


@pytest.mark.parametrize("size", [37, 13, 0])
def test_checkpoint_with_a_wrong_root_is_refused(stored: Path, key: SigningKey, size: int) -> None:
    wrong = Checkpoint(ORIGIN, size, _flip(merkle.EMPTY_ROOT if size == 0 else reopen(stored).root(size), 1))
    _sql(stored, "UPDATE checkpoints SET note=? WHERE size=?", wrong.sign(key), size)
    err = _refused(stored, None)
    assert f"size {size}" in str(err)


def test_checkpoint_under_another_size_is_refused(stored: Path, key: SigningKey) -> None:
    lg = reopen(stored)
    _sql(stored, "UPDATE checkpoints SET note=? WHERE size=21", lg.checkpoint(13))
    err = _refused(stored, None)
    assert "size 21" in str(err)


def test_extra_leaf_row_is_refused(stored: Path) -> None:
    _insert_leaf(stored, 37, encode_leaf(99_999, b"smuggled"))
    _refused(stored, 37)


def test_extra_leaf_row_beyond_a_gap_is_refused(stored: Path) -> None:
    _insert_leaf(stored, 40, encode_leaf(99_999, b"smuggled"))
    _refused(stored, 37)


def test_extra_hash_is_refused(stored: Path) -> None:
    (blob,), = _raw(stored, "SELECT hashes FROM hash_tiles WHERE tile=0")
    _sql(stored, "UPDATE hash_tiles SET hashes=? WHERE tile=0", bytes(blob) + bytes(32))
    _refused(stored, 37)


def test_extra_leaf_with_its_hashes_but_no_checkpoint_is_refused(stored: Path) -> None:
    leaf = encode_leaf(99_999, b"smuggled")
    _insert_leaf(stored, 37, leaf)
    (blob,), = _raw(stored, "SELECT hashes FROM hash_tiles WHERE tile=0")
    _sql(stored, "UPDATE hash_tiles SET hashes=? WHERE tile=0", bytes(blob) + merkle.leaf_hash(leaf))
    _refused(stored, 37)


def test_open_without_verify_skips_the_check(stored: Path) -> None:
    _delete_leaf(stored, 5)
    lg = reopen(stored, verify=False)
    assert lg.size == 37
    with pytest.raises(InconsistentLog):
        reopen(stored)


def test_trusted_and_signing_keys_must_be_the_logs(stored: Path, key: SigningKey) -> None:
    other = SigningKey.generate(ORIGIN)
    with pytest.raises(BadSignature, match="not the trusted key"):
        reopen(stored, trusted=other.verifier())
    with pytest.raises(BadSignature, match="not this log's key"):
        reopen(stored, key=other)
    assert reopen(stored, trusted=key.verifier(), key=key).size == 37

    ro = reopen(stored)
    with pytest.raises(BadSignature, match="signing key"):
        ro.append([b"no key"])
    assert (ro.size, reopen(stored).size, reopen(stored).checkpoint_sizes()) == (37, 37, [0] + SIZES)


def test_second_writer_is_refused_on_append(stored: Path, key: SigningKey) -> None:
    a = reopen(stored, key=key)
    b = reopen(stored, key=key)
    a.append([b"from a"])
    with pytest.raises(InconsistentLog, match="changed underneath"):
        b.append([b"from b"])
    assert b.size == 37
    # A raw writer shrinking the log underneath is refused too.
    leaf = a.leaf(37)
    _delete_leaf(stored, 37)
    with pytest.raises(InconsistentLog, match="expected 38"):
        a.append([b"again from a"])
    _insert_leaf(stored, 37, leaf)
    fresh = reopen(stored)
    assert fresh.size == 38
    assert fresh.checkpoint_sizes() == [0] + SIZES + [38]
    assert fresh.entry(37)[1] == b"from a"


# --- proofs --------------------------------------------------------------------


def test_inclusion_and_consistency_proofs(big) -> None:
    lg, key, ends = big
    hashes = leaf_hashes(lg)
    rng = random.Random(3)
    sizes = sorted({1, 2, 3, 4, 5, 7, 8, 9, 64, 127, 128, 129, 255, 256, 257, lg.size}
                   | set(rng.sample(range(1, 300), 12)))
    roots = {s: lg.root(s) for s in sizes}
    for s in sizes:
        assert roots[s] == merkle.root_of(hashes[:s])
    for i in range(lg.size):
        for s in sizes:
            if i < s:
                merkle.verify_inclusion(i, s, hashes[i], lg.prove_inclusion(i, s), roots[s])
        with pytest.raises(InvalidProof):
            merkle.verify_inclusion(i, lg.size, hashes[(i + 1) % lg.size], lg.prove_inclusion(i), lg.root())
    for m in sizes:
        for n in sizes:
            if m <= n:
                merkle.verify_consistency(m, n, roots[m], roots[n], lg.prove_consistency(m, n))
                if m < n:
                    with pytest.raises(InvalidProof):
                        merkle.verify_consistency(m, n, _flip(roots[m], 0), roots[n], lg.prove_consistency(m, n))
    with pytest.raises(IndexOutOfRange):
        lg.prove_inclusion(0, lg.size + 1)
    with pytest.raises(IndexOutOfRange):
        lg.prove_consistency(0)
    with pytest.raises(IndexOutOfRange):
        lg.root(lg.size + 1)


def test_every_stored_checkpoint_is_consistent_with_the_latest(big) -> None:
    lg, key, ends = big
    latest, _ = open_checkpoint(lg.checkpoint(), key.verifier())
    assert lg.checkpoint_sizes() == [0] + ends
    for s in ends:
        cp, _ = open_checkpoint(lg.checkpoint(s), key.verifier())
        assert cp.size == s
        merkle.verify_consistency(s, latest.size, cp.root, latest.root, lg.prove_consistency(s))


# --- numbered checkpoints: a signed checkpoint deleted from the store is found ----------------------------


def test_checkpoints_are_numbered_in_a_signed_extension_line(stored: Path, key: SigningKey) -> None:
    from redline.log.service import checkpoint_number

    lg = reopen(stored, trusted=key.verifier())
    numbers = [checkpoint_number(open_checkpoint(lg.checkpoint(s), key.verifier())[0]) for s in lg.checkpoint_sizes()]
    assert numbers == list(range(len(SIZES) + 1))
    assert lg.checkpoint(0).decode().splitlines()[3] == "redline-checkpoint 0"


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_deleted_middle_checkpoint_is_refused(stored: Path, position: int) -> None:
    sizes = reopen(stored).checkpoint_sizes()
    _sql(stored, "DELETE FROM checkpoints WHERE size=?", sizes[position])
    with pytest.raises(InconsistentLog, match="an earlier signed checkpoint is missing from the store"):
        reopen(stored)


def test_a_checkpoint_copied_under_a_later_number_is_refused(stored: Path, key: SigningKey) -> None:
    lg = reopen(stored)
    sizes = lg.checkpoint_sizes()
    # re-sign nothing: move checkpoint 2's row to replace checkpoint 1's (same key, different number)
    _sql(stored, "DELETE FROM checkpoints WHERE size=?", sizes[1])
    with pytest.raises(InconsistentLog, match=f"checkpoint at size {sizes[2]}"):
        reopen(stored)


def test_a_log_without_numbers_still_opens_but_a_gap_after_numbering_starts_is_refused(stored: Path,
                                                                                     key: SigningKey) -> None:
    lg = reopen(stored)
    # a log written before numbering: strip the numbers (re-signed with the same key, as that log's writer did)
    for s in lg.checkpoint_sizes():
        c, _ = open_checkpoint(lg.checkpoint(s), key.verifier())
        _sql(stored, "UPDATE checkpoints SET note=? WHERE size=?", Checkpoint(c.origin, c.size, c.root).sign(key), s)
    assert reopen(stored).size == 37
    # numbering starts at the next append; an unnumbered checkpoint after a numbered one is refused
    lg = reopen(stored, key=key)
    lg.append([entry_for(37)])
    assert reopen(stored).size == 38
