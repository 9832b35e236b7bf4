"""Tests for redline.log.tiles: the C2SP tlog-tiles layout, checked against merkle's in-memory tree."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redline.errors import EntryTooLarge, InconsistentLog, IndexOutOfRange, MalformedInput
from redline.log import merkle, tiles
from redline.log.tiles import (
    TileHashReader,
    TilePath,
    encode_entry_bundle,
    encode_tile_index,
    entries_path,
    parse_entry_bundle,
    parse_tile_path,
    read_tile,
    tile_path,
    tiles_for_size,
    write_static,
)

BIG = 70_000


def fake_leaf(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()


@pytest.fixture(scope="module")
def big() -> merkle.ListHashReader:
    """An in-memory tree of 70,000 distinct leaf hashes; any prefix of it is the tree of that size."""
    return merkle.ListHashReader([fake_leaf(i) for i in range(BIG)])


def served(reader: merkle.HashReader, size: int, log: list[TilePath] | None = None):
    """A fetch function for a static server of the tree of ``size``: it holds only tiles_for_size(size)."""
    held = set(tiles_for_size(size))

    def fetch(tile: TilePath) -> bytes:
        assert tile in held, f"client asked for {tile.path}, which a server of size {size} does not hold"
        if log is not None:
            log.append(tile)
        return read_tile(reader, tile.level, tile.index, tile.width, size)

    return fetch


# --- paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (0, "000"),
        (1, "001"),
        (255, "255"),
        (256, "256"),
        (999, "999"),
        (1000, "x001/000"),
        (1001, "x001/001"),
        (1234067, "x001/x234/067"),
        (1_000_000, "x001/x000/000"),
    ],
)
def test_encode_tile_index(n: int, want: str) -> None:
    assert encode_tile_index(n) == want


def test_path_forms() -> None:
    assert tile_path(0, 0) == "tile/0/000"
    assert tile_path(1, 1234067) == "tile/1/x001/x234/067"
    assert tile_path(0, 1234067, 8) == "tile/0/x001/x234/067.p/8"
    assert tile_path(2, 0, 1) == "tile/2/000.p/1"
    assert tile_path(0, 5, 256) == "tile/0/005"
    assert tile_path(0, 5, 255) == "tile/0/005.p/255"
    assert tile_path(63, 1000) == "tile/63/x001/000"
    assert entries_path(0) == "tile/entries/000"
    assert entries_path(1234067, 44) == "tile/entries/x001/x234/067.p/44"
    assert parse_tile_path("tile/entries/x001/000.p/9") == TilePath(0, 1000, 9, entries=True)
    assert parse_tile_path("tile/12/999") == TilePath(12, 999, 256)


@pytest.mark.parametrize(
    ("level", "index", "width"),
    [(-1, 0, 256), (64, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257)],
)
def test_bad_tile_addresses(level: int, index: int, width: int) -> None:
    with pytest.raises(MalformedInput):
        tile_path(level, index, width)


def test_entries_have_level_zero() -> None:
    with pytest.raises(MalformedInput):
        TilePath(1, 0, entries=True)


@given(
    level=st.integers(0, 63),
    index=st.integers(0, ((1 << 63) - 1) >> 8),  # tiles.MAX_TILE_INDEX
    width=st.integers(1, 256),
    entries=st.booleans(),
)
def test_path_round_trip(level: int, index: int, width: int, entries: bool) -> None:
    tile = TilePath(0 if entries else level, index, width, entries)
    path = tile.path
    assert parse_tile_path(path) == tile
    assert path == (entries_path(index, width) if entries else tile_path(level, index, width))
    assert path.endswith(f".p/{width}") == (width < 256)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile",
        "tile/0",
        "tile/entries",
        "tiles/0/000",
        "/tile/0/000",
        "tile/0/000/",
        "tile//000",
        "tile/0/0",
        "tile/0/00",
        "tile/0/0000",
        "tile/0/-01",
        "tile/0/+01",
        "tile/0/ 001",
        "tile/0/00a",
        "tile/0/\u0660\u0660\u0661",  # Arabic-Indic digits are digits to str.isdigit, not to the spec
        "tile/0/001\n",
        "tile/0/x001",  # x on the last element
        "tile/0/001/002",  # missing x
        "tile/0/x000/001",  # leading zero group
        "tile/0/x000/x001/002",
        "tile/0/x1/000",
        "tile/0/x0001/000",
        "tile/0/X001/000",
        "tile/0/xx001/000",
        "tile/00/000",
        "tile/01/000",
        "tile/-1/000",
        "tile/64/000",
        "tile/100/000",
        "tile/a/000",
        "tile/0/000.p",
        "tile/0/000.p/",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/300",
        "tile/0/000.p/010",
        "tile/0/000.p/+5",
        "tile/0/000.p/5/6",
        "tile/0/000.p/5/",
        "tile/0/000/extra",
        "tile/0/x001.p/5/067",
        "tile/0/.p/5",
        "tile/entries/000.p/256",
        "tile/entries/0",
        "tile/Entries/000",
        "tile/entries/000/001",
    ],
)
def test_bad_paths_rejected(path: str) -> None:
    with pytest.raises(MalformedInput) as exc:
        parse_tile_path(path)
    assert repr(path) in str(exc.value)


# --- which tiles a tree has ----------------------------------------------


def _summary(size: int) -> dict[str, list[int]]:
    """Widths of the tiles of each level (key 'e' for entry bundles), in index order."""
    out: dict[str, list[int]] = {}
    for t in tiles_for_size(size):
        out.setdefault("e" if t.entries else str(t.level), []).append(t.width)
        assert t.index == len(out["e" if t.entries else str(t.level)]) - 1
    return out


def test_tiles_for_small_sizes() -> None:
    assert tiles_for_size(0) == []
    assert [t.path for t in tiles_for_size(1)] == ["tile/0/000.p/1", "tile/entries/000.p/1"]
    assert [t.path for t in tiles_for_size(255)] == ["tile/0/000.p/255", "tile/entries/000.p/255"]
    assert [t.path for t in tiles_for_size(256)] == ["tile/0/000", "tile/1/000.p/1", "tile/entries/000"]
    assert [t.path for t in tiles_for_size(257)] == [
        "tile/0/000",
        "tile/0/001.p/1",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/1",
    ]


def test_tiles_for_large_sizes() -> None:
    # 65536 = 256 full level-0 tiles; 256 level-1 hashes = one full tile; one level-2 hash.
    assert _summary(65536) == {"0": [256] * 256, "1": [256], "2": [1], "e": [256] * 256}
    assert len(tiles_for_size(65536)) == 514
    assert _summary(65537) == {"0": [256] * 256 + [1], "1": [256], "2": [1], "e": [256] * 256 + [1]}
    assert tiles_for_size(65537)[256].path == "tile/0/256.p/1"
    # 70000 = 273·256 + 112; 273 = 256 + 17.
    assert _summary(70000) == {"0": [256] * 273 + [112], "1": [256, 17], "2": [1], "e": [256] * 273 + [112]}
    assert len(tiles_for_size(70000)) == 551
    # 2^24 needs a level-3 tile.
    assert _summary(1 << 24)["3"] == [1]


def test_negative_size() -> None:
    with pytest.raises(IndexOutOfRange):
        tiles_for_size(-1)


# --- tile contents -----------------------------------------------------------


SIZES = [1, 255, 256, 257, 300, 65535, 65536, 65537, BIG]


@pytest.mark.parametrize("size", SIZES)
def test_level_zero_tiles_are_leaf_hashes(big: merkle.ListHashReader, size: int) -> None:
    for t in tiles_for_size(size):
        if t.level == 0 and not t.entries:
            data = read_tile(big, 0, t.index, t.width, size)
            assert data == b"".join(fake_leaf(i) for i in range(256 * t.index, 256 * t.index + t.width))


def test_level_one_and_two_tiles_hold_subtree_roots(big: merkle.ListHashReader) -> None:
    level1 = read_tile(big, 1, 0, 256, BIG)
    for k in (0, 1, 100, 255):
        assert level1[32 * k : 32 * k + 32] == merkle.root_of([fake_leaf(i) for i in range(256 * k, 256 * k + 256)])
    level2 = read_tile(big, 2, 0, 1, BIG)
    assert level2 == merkle.root_of([fake_leaf(i) for i in range(65536)])


def test_read_tile_bounds(big: merkle.ListHashReader) -> None:
    assert len(read_tile(big, 0, 1, 44, 300)) == 44 * 32
    assert read_tile(big, 0, 1, 10, 300) == read_tile(big, 0, 1, 44, 300)[: 10 * 32]  # an older partial tile
    beyond = [(0, 1, 45, 300), (0, 1, 256, 300), (0, 2, 1, 300), (1, 0, 2, 511), (2, 0, 1, 65535)]
    for level, index, width, size in beyond:
        with pytest.raises(IndexOutOfRange):
            read_tile(big, level, index, width, size)


def test_read_tile_rejects_short_reader() -> None:
    class Short:
        def read_hashes(self, indexes):  # noqa: ANN001, ANN202
            return [b"\0" * 31 for _ in indexes]

    with pytest.raises(InconsistentLog):
        read_tile(Short(), 0, 0, 3, 3)


@pytest.mark.parametrize("size", [1, 7, 255, 256, 257, 1000, 65536, 65537, BIG])
def test_tile_reader_matches_list_reader(big: merkle.ListHashReader, size: int) -> None:
    rng = random.Random(size)
    fetched: list[TilePath] = []
    plain = TileHashReader(size, served(big, size, fetched))
    checked = TileHashReader(size, served(big, size), root=merkle.tree_hash(size, big))
    want_root = merkle.tree_hash(size, big)
    assert merkle.tree_hash(size, plain) == want_root
    assert merkle.tree_hash(size, checked) == want_root
    leaves = {0, size - 1} | {rng.randrange(size) for _ in range(20)}
    for i in sorted(leaves):
        want = merkle.prove_inclusion(i, size, big)
        assert merkle.prove_inclusion(i, size, plain) == want
        assert merkle.prove_inclusion(i, size, checked) == want
    for old in sorted({1, size} | {rng.randrange(1, size + 1) for _ in range(10)}):
        want = merkle.prove_consistency(old, size, big)
        assert merkle.prove_consistency(old, size, plain) == want
        assert merkle.prove_consistency(old, size, checked) == want
    assert len(fetched) == len(set(fetched)), "tiles are fetched once"


def test_tile_reader_reads_every_stored_hash(big: merkle.ListHashReader) -> None:
    size = 600
    reader = TileHashReader(size, served(big, size), root=merkle.tree_hash(size, big))
    indexes = [
        merkle.stored_hash_index(level, index)
        for level in range(size.bit_length())
        for index in range(size >> level)
    ]
    assert reader.read_hashes(indexes) == big.read_hashes(indexes)


def test_tile_reader_out_of_range(big: merkle.ListHashReader) -> None:
    reader = TileHashReader(300, served(big, 300))
    with pytest.raises(IndexOutOfRange):
        reader.read_hashes([merkle.stored_hash_index(0, 300)])
    with pytest.raises(IndexOutOfRange):
        reader.read_hashes([merkle.stored_hash_index(9, 0)])  # 512 leaves
    with pytest.raises(IndexOutOfRange):
        merkle.tree_hash(1, TileHashReader(0, served(big, 0)))


def test_tile_reader_rejects_wrong_length(big: merkle.ListHashReader) -> None:
    fetch = served(big, 300)
    reader = TileHashReader(300, lambda t: fetch(t) + b"\0")
    with pytest.raises(MalformedInput, match="tile/0/000"):
        reader.read_hashes([0])
    with pytest.raises(MalformedInput):
        TileHashReader(300, fetch, root=b"\0" * 31)


def _tampered(big: merkle.ListHashReader, size: int, victim: str):
    fetch = served(big, size)

    def tampered(tile: TilePath) -> bytes:
        data = fetch(tile)
        if tile.path == victim:
            at = 32 * min(1, tile.width - 1) + 8  # inside the tile's second hash, or its only one
            data = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
        return data

    return tampered


@pytest.mark.parametrize(
    ("size", "victim", "leaf"),
    [
        (70000, "tile/0/005", 5 * 256 + 1),  # full level-0 tile, checked through tile/1/000
        (70000, "tile/0/273.p/112", 69888 + 1),  # partial tile, checked against the root
        (70000, "tile/1/000", 300),  # full level-1 tile, checked through tile/2/000.p/1
        (70000, "tile/1/001.p/17", 65536 + 300),
        (70000, "tile/2/000.p/1", 0),
        (600, "tile/0/001", 256 + 1),
    ],
)
def test_tile_reader_detects_tampering(big: merkle.ListHashReader, size: int, victim: str, leaf: int) -> None:
    root = merkle.tree_hash(size, big)
    tampered = _tampered(big, size, victim)
    with pytest.raises(InconsistentLog):
        merkle.prove_inclusion(leaf, size, TileHashReader(size, tampered, root=root))
    # The tampering is real: without a root the reader passes the altered hash on.
    tile = parse_tile_path(victim)
    altered = merkle.stored_hash_index(8 * tile.level, 256 * tile.index + min(1, tile.width - 1))
    assert TileHashReader(size, tampered).read_hashes([altered]) != big.read_hashes([altered])


# --- entry bundles -----------------------------------------------------------


def test_entry_bundle_round_trip() -> None:
    entries = [b"", b"a", b"\x00" * 300, bytes(range(256)) * 255 + b"x" * 255]
    assert len(entries[-1]) == 65535
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\x00\x00" and data[2:5] == b"\x00\x01a"
    assert parse_entry_bundle(data) == entries
    assert parse_entry_bundle(data, width=4) == entries
    full = [b"%d" % i for i in range(256)]
    assert parse_entry_bundle(encode_entry_bundle(full), 256) == full


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_entry_bundle_round_trip_property(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert parse_entry_bundle(data, len(entries)) == entries


def test_entry_bundle_rejects_bad_input() -> None:
    data = encode_entry_bundle([b"abc", b"de"])
    for bad in [data[:-1], data[:4], data[:6], data + b"\x00", data + b"\x00\x05ab", b"", b"\x00"]:
        with pytest.raises(MalformedInput):
            parse_entry_bundle(bad)
    # Trailing bytes that happen to parse as more entries are caught by the expected width.
    assert parse_entry_bundle(data + b"\x00\x00") == [b"abc", b"de", b""]
    with pytest.raises(MalformedInput, match="after entry 1"):
        parse_entry_bundle(data + b"\x00\x00", width=2)
    with pytest.raises(MalformedInput):
        parse_entry_bundle(data, width=1)
    with pytest.raises(MalformedInput):
        parse_entry_bundle(data, width=3)
    with pytest.raises(MalformedInput):
        parse_entry_bundle(data, width=0)
    with pytest.raises(MalformedInput):
        parse_entry_bundle(encode_entry_bundle([b"x"] * 256) + b"\x00\x00")
    with pytest.raises(EntryTooLarge):
        encode_entry_bundle([b"ok", b"x" * 65536])
    with pytest.raises(MalformedInput):
        encode_entry_bundle([])
    with pytest.raises(MalformedInput):
        encode_entry_bundle([b""] * 257)


# --- static publishing ---------------------------------------------------


def entry(i: int) -> bytes:
    return b"entry %d" % i


class Log:
    """A toy log: entries in memory and their tree."""

    def __init__(self, size: int) -> None:
        self.data = [entry(i) for i in range(size)]
        self.tree = merkle.ListHashReader([merkle.leaf_hash(e) for e in self.data])

    def grow(self, size: int) -> None:
        for i in range(len(self.data), size):
            self.data.append(entry(i))
            self.tree.append(merkle.leaf_hash(self.data[-1]))

    def entries(self, start: int, count: int) -> list[bytes]:
        return self.data[start : start + count]

    def publish(self, outdir: Path) -> list[Path]:
        size = len(self.data)
        return write_static(outdir, size=size, reader=self.tree, entries=self.entries, checkpoint=b"size %d\n" % size)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_write_static_layout(tmp_path: Path) -> None:
    log = Log(300)
    written = log.publish(tmp_path)
    want = {
        "checkpoint",
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
    }
    assert {p.relative_to(tmp_path).as_posix() for p in written} == want
    assert _files(tmp_path) == want  # no temporary files left behind
    assert written[-1] == tmp_path / "checkpoint"
    assert (tmp_path / "checkpoint").read_bytes() == b"size 300\n"
    assert (tmp_path / "tile/0/000").stat().st_size == 256 * 32
    assert (tmp_path / "tile/0/001.p/44").stat().st_size == 44 * 32
    assert (tmp_path / "tile/1/000.p/1").read_bytes() == merkle.root_of(
        [merkle.leaf_hash(entry(i)) for i in range(256)]
    )
    assert (tmp_path / "tile/0/000").stat().st_mode & 0o777 == 0o644
    assert parse_entry_bundle((tmp_path / "tile/entries/001.p/44").read_bytes(), 44) == log.data[256:]
    # A client reading the published files gets the log's tree back.
    reader = TileHashReader(300, lambda t: (tmp_path / t.path).read_bytes(), root=log.tree.root())
    assert merkle.prove_inclusion(299, 300, reader) == merkle.prove_inclusion(299, 300, log.tree)


def test_write_static_grows(tmp_path: Path) -> None:
    log = Log(300)
    log.publish(tmp_path)
    full_before = {name: os.stat(tmp_path / name).st_ino for name in ("tile/0/000", "tile/entries/000")}
    content_before = {name: (tmp_path / name).read_bytes() for name in full_before}
    assert log.publish(tmp_path) == []  # nothing changed, nothing written

    log.grow(600)
    written = {p.relative_to(tmp_path).as_posix() for p in log.publish(tmp_path)}
    assert written == {
        "checkpoint",
        "tile/0/001",
        "tile/0/002.p/88",
        "tile/1/000.p/2",
        "tile/entries/001",
        "tile/entries/002.p/88",
    }
    for name, inode in full_before.items():
        assert os.stat(tmp_path / name).st_ino == inode
        assert (tmp_path / name).read_bytes() == content_before[name]
    assert (tmp_path / "checkpoint").read_bytes() == b"size 600\n"
    # The partial tiles of size 300 remain for clients holding the old checkpoint.
    assert (tmp_path / "tile/0/001.p/44").read_bytes() == (tmp_path / "tile/0/001").read_bytes()[: 44 * 32]
    assert {t.path for t in tiles_for_size(600)} | {"checkpoint"} <= _files(tmp_path)


@pytest.mark.parametrize(
    ("victim", "new_size"),
    [("tile/0/000", 301), ("tile/entries/000", 301), ("tile/0/001.p/44", 300), ("tile/entries/001.p/44", 300),
     ("tile/1/000.p/1", 301)],
)
def test_write_static_detects_rewritten_tiles(tmp_path: Path, victim: str, new_size: int) -> None:
    log = Log(300)
    log.publish(tmp_path)
    path = tmp_path / victim
    data = bytearray(path.read_bytes())
    data[3] ^= 0x40
    path.write_bytes(bytes(data))
    log.grow(new_size)
    with pytest.raises(InconsistentLog, match=victim):
        log.publish(tmp_path)
    assert (tmp_path / "checkpoint").read_bytes() == b"size 300\n"  # never published past a problem


def test_write_static_checks_entries_against_tree(tmp_path: Path) -> None:
    log = Log(300)
    log.data[7] = b"forged"
    with pytest.raises(InconsistentLog) as exc:
        log.publish(tmp_path)
    assert exc.value.index == 7
    assert not (tmp_path / "checkpoint").exists()
    short = Log(300)
    with pytest.raises(InconsistentLog):
        write_static(tmp_path / "x", size=300, reader=short.tree, entries=lambda s, n: short.data[s : s + n - 1],
                     checkpoint=b"")


def test_write_static_writes_atomically_and_checkpoint_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    replaced: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: os.PathLike[str]) -> None:
        assert Path(src).parent == Path(dst).parent
        replaced.append(Path(dst).relative_to(tmp_path).as_posix())
        real_replace(src, dst)

    monkeypatch.setattr(tiles.os, "replace", spy)
    Log(257).publish(tmp_path)
    assert replaced[-1] == "checkpoint"
    assert sorted(replaced) == sorted([t.path for t in tiles_for_size(257)] + ["checkpoint"])


def test_write_static_empty_tree(tmp_path: Path) -> None:
    written = Log(0).publish(tmp_path)
    assert written == [tmp_path / "checkpoint"]
