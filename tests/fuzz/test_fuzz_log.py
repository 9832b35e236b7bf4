"""Fuzz the log's parsers: checkpoints, receipts, tile paths, entry bundles and leaves."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from redline.crypto.keys import SigningKey
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import MAX_ENTRY_BYTES, decode_leaf, encode_leaf
from redline.log.receipt import Receipt
from redline.log.tiles import MAX_TILE_INDEX, TilePath, encode_entry_bundle, parse_entry_bundle, parse_tile_path

from .common import fuzz_settings, mutated, mutated_text, ok, outcome

LOG = SigningKey("example.com/log", bytes(range(32)))
WITNESS = SigningKey("witness.example", bytes(range(1, 33)))

_CHECKPOINTS = [Checkpoint("example.com/log", 7, bytes(range(32))),
                Checkpoint("example.com/log", 0, b"\xff" * 32, ("ext one", "\u00e9")),
                Checkpoint("example.com/log", (1 << 63) - 1, bytes(32))]

_origin = st.text(st.characters(blacklist_characters="\n"), min_size=1, max_size=20)
_checkpoints = st.builds(Checkpoint, _origin, st.integers(0, (1 << 63) - 1), st.binary(min_size=32, max_size=32),
                         st.lists(_origin, max_size=3).map(tuple))


@fuzz_settings(300)
@given(st.one_of(mutated_text([c.text() for c in _CHECKPOINTS]), st.text(max_size=60)))
# A size over Python's int-parsing limit.
@example("o\n" + "1" * 5000 + "\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
def test_checkpoint_text_parses_or_is_refused(text: str) -> None:
    """Checkpoint.from_text: a parsed checkpoint writes back exactly the text read."""
    result = outcome(Checkpoint.from_text, text)
    if ok(result):
        assert result[1].text() == text


@fuzz_settings(200)
@given(_checkpoints)
def test_checkpoint_round_trip(cp: Checkpoint) -> None:
    """from_text(text(cp)) == cp for every checkpoint with a non-empty origin and non-empty extension lines."""
    assert Checkpoint.from_text(cp.text()) == cp


@fuzz_settings(200)
@given(mutated([c.sign(LOG) for c in _CHECKPOINTS] + [Checkpoint("witness.example", 1, bytes(32)).sign(WITNESS)]))
def test_signed_checkpoint_opens_or_is_refused(data: bytes) -> None:
    """open_checkpoint on mutated signed checkpoints: an opened one is signed by the log and re-encodes to its bytes."""
    result = outcome(open_checkpoint, data, LOG.verifier(), others=[WITNESS.verifier()])
    if ok(result):
        cp, note = result[1]
        assert note.encode() == data and cp.text() == note.text


# --- receipts ------------------------------------------------------------------------------------

_RECEIPTS = [Receipt(5, (bytes(32), b"\x01" * 32), _CHECKPOINTS[0].sign(LOG), (1234).to_bytes(8, "big")).encode(),
             Receipt(0, (), _CHECKPOINTS[1].sign(LOG)).encode()]
_receipts = st.builds(Receipt, st.integers(0, (1 << 63) - 1),
                      st.lists(st.binary(min_size=32, max_size=32), max_size=5).map(tuple),
                      st.binary(min_size=1, max_size=40).filter(lambda b: not b.startswith(b"\n")),
                      st.none() | st.binary(max_size=12))


@fuzz_settings(300)
@given(st.one_of(mutated(_RECEIPTS), st.binary(max_size=64)))
@example(b"c2sp.org/tlog-proof@v1\nindex " + b"1" * 5000 + b"\n\nx")
def test_receipt_parses_or_is_refused(data: bytes) -> None:
    """Receipt.parse: a parsed receipt encodes back to the bytes read."""
    result = outcome(Receipt.parse, data)
    if ok(result):
        assert result[1].encode() == data


@fuzz_settings(200)
@given(_receipts)
def test_receipt_round_trip(receipt: Receipt) -> None:
    """parse(encode(r)) == r."""
    assert Receipt.parse(receipt.encode()) == receipt


# --- tiles ---------------------------------------------------------------------------------------

_TILE_PATHS = ["tile/0/000", "tile/3/x001/x234/067.p/7", "tile/entries/x001/234", "tile/entries/999.p/255",
               "tile/63/x999/x999/x999/x999/x999/x999/999"]
_tiles = st.builds(TilePath, st.integers(0, 63), st.integers(0, MAX_TILE_INDEX), st.integers(1, 256), st.just(False)) \
    | st.builds(TilePath, st.just(0), st.integers(0, MAX_TILE_INDEX), st.integers(1, 256), st.just(True))


@fuzz_settings(300)
@given(st.one_of(mutated_text(_TILE_PATHS, tokens=[b"x", b"0", b"9", b"/", b".p/", b"x000/", b"999", b"entries",
                                                    b"x999/" * 2000, b"\xd9\xa1", b""]),
                 st.text(max_size=30)))
@example("tile/0/" + "x999/" * 2000 + "999")  # an index of 6,000 digits: too large to print
def test_tile_path_parses_or_is_refused(path: str) -> None:
    """parse_tile_path: a parsed path is canonical (writes back to itself) and printable."""
    result = outcome(parse_tile_path, path)
    if ok(result):
        assert result[1].path == path
        repr(result[1])


@fuzz_settings(200)
@given(_tiles)
def test_tile_path_round_trip(tile: TilePath) -> None:
    """parse_tile_path(t.path) == t."""
    assert parse_tile_path(tile.path) == tile


_BUNDLES = [encode_entry_bundle([b"a", b"", b"\x00" * 300]), encode_entry_bundle([b"x" * 70_000][:0] + [b"y"] * 256)]


@fuzz_settings(300)
@given(st.one_of(mutated(_BUNDLES), st.binary(max_size=64)), st.none() | st.integers(-2, 300))
def test_entry_bundle_parses_or_is_refused(data: bytes, width: int | None) -> None:
    """parse_entry_bundle: parsed entries encode back to the bytes read, with the width asked for."""
    result = outcome(parse_entry_bundle, data, width)
    if ok(result):
        assert encode_entry_bundle(result[1]) == data
        assert width is None or len(result[1]) == width


@fuzz_settings(100)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=256))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    """parse(encode(entries)) == entries."""
    assert parse_entry_bundle(encode_entry_bundle(entries), len(entries)) == entries


@fuzz_settings(200)
@given(st.binary(max_size=40) | st.integers(0, 70_000).map(lambda n: b"\x01" * n))
def test_leaf_decodes_or_is_refused(leaf: bytes) -> None:
    """decode_leaf: a decoded leaf encodes back to itself."""
    result = outcome(decode_leaf, leaf)
    if ok(result):
        time_ms, entry = result[1]
        assert len(entry) <= MAX_ENTRY_BYTES and encode_leaf(time_ms, entry) == leaf
