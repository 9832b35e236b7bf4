"""The C2SP tlog-tiles layout (c2sp.org/tlog-tiles): a Merkle tree served as static, immutable files.

A log of ``size`` leaves is published as ``checkpoint``, hash tiles ``tile/<L>/<N>[.p/<W>]`` and entry
bundles ``tile/entries/<N>[.p/<W>]``, with tile height 8 as in Go's ``golang.org/x/mod/sumdb/tlog``.
Everything here is arithmetic over :mod:`redline.log.merkle`'s stored hashes, except :func:`write_static`.
"""

from __future__ import annotations

import bisect
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from redline.errors import EntryTooLarge, InconsistentLog, IndexOutOfRange, MalformedInput
from redline.log.merkle import (
    HASH_SIZE,
    HashReader,
    leaf_hash,
    level_and_index,
    node_hash,
    stored_hash_index,
    tree_hash,
)

TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_LEVEL = 63
MAX_ENTRY_SIZE = 0xFFFF
#: Largest tile index a path may name: a log has at most 2^63-1 leaves, so fewer tiles at any level.
MAX_TILE_INDEX = ((1 << 63) - 1) >> TILE_HEIGHT

_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True)
class TilePath:
    """TilePath is the address of one hash tile (``entries=False``) or entry bundle (``entries=True``, level 0)."""

    level: int
    index: int
    width: int = TILE_WIDTH
    entries: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise MalformedInput(f"tile level {self.level} is not in 0..{MAX_LEVEL}")
        if self.entries and self.level != 0:
            raise MalformedInput(f"an entry bundle has level 0, not {self.level}")
        if not 0 <= self.index <= MAX_TILE_INDEX:
            shown = self.index if self.index.bit_length() <= 128 else f"of {self.index.bit_length()} bits"
            raise MalformedInput(f"tile index {shown} is not in 0..{MAX_TILE_INDEX}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise MalformedInput(f"tile width {self.width} is not in 1..{TILE_WIDTH}")

    @property
    def path(self) -> str:
        """The tile's path relative to the log prefix, e.g. ``tile/0/x001/234.p/7``."""
        suffix = "" if self.width == TILE_WIDTH else f".p/{self.width}"
        head = "entries" if self.entries else str(self.level)
        return f"tile/{head}/{encode_tile_index(self.index)}{suffix}"

    @property
    def is_partial(self) -> bool:
        """Whether the tile is a partial right-edge tile (width below 256)."""
        return self.width < TILE_WIDTH


def encode_tile_index(n: int) -> str:
    """The path form of tile index ``n``: 3-digit groups, all but the last prefixed ``x`` (1234067: x001/x234/067)."""
    if n < 0:
        raise MalformedInput(f"tile index {n} is negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """The path ``tile/<L>/<N>[.p/<W>]`` of hash tile ``index`` at ``level``."""
    return TilePath(level, index, width).path


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """The path ``tile/entries/<N>[.p/<W>]`` of entry bundle ``index``."""
    return TilePath(0, index, width, entries=True).path


def parse_tile_path(path: str) -> TilePath:
    """The :class:`TilePath` of a canonical tile path, or ``MalformedInput`` for anything else."""

    def bad(why: str) -> MalformedInput:
        return MalformedInput(f"tile path {path!r}: {why}")

    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise bad("not of the form tile/<L>/<N>[.p/<W>]")
    entries = parts[1] == "entries"
    if entries:
        level = 0
    else:
        if not _LEVEL.fullmatch(parts[1]):
            raise bad("level is not a decimal number without leading zeros")
        level = int(parts[1])
        if level > MAX_LEVEL:
            raise bad(f"level {level} is above {MAX_LEVEL}")
    groups = parts[2:]
    width = TILE_WIDTH
    if len(groups) >= 2 and groups[-2].endswith(".p"):
        if not _WIDTH.fullmatch(groups[-1]) or int(groups[-1]) >= TILE_WIDTH:
            raise bad(f"partial width {groups[-1]!r} is not a decimal in 1..{TILE_WIDTH - 1}")
        width = int(groups[-1])
        groups = groups[:-2] + [groups[-2][: -len(".p")]]
    index = 0
    for position, group in enumerate(groups):
        last = position == len(groups) - 1
        digits = group if last else group.removeprefix("x")
        if (not last and not group.startswith("x")) or not _GROUP.fullmatch(digits):
            form = "DDD" if last else "xDDD"
            raise bad(f"index element {group!r} is not of the form {form}")
        if position == 0 and not last and digits == "000":
            raise bad("index has a leading zero group")
        index = index * 1000 + int(digits)
        if index > MAX_TILE_INDEX:  # stops before the index grows too long to print
            raise bad(f"index is over {MAX_TILE_INDEX}, beyond any log of at most 2^63-1 leaves")
    return TilePath(level, index, width, entries)


def _check_size(size: int) -> None:
    if size < 0:
        raise IndexOutOfRange(f"tree size {size} is negative")


def _level_tiles(count: int, level: int, entries: bool = False) -> list[TilePath]:
    full, rest = divmod(count, TILE_WIDTH)
    out = [TilePath(level, n, TILE_WIDTH, entries) for n in range(full)]
    if rest:
        out.append(TilePath(level, full, rest, entries))
    return out


def tiles_for_size(size: int) -> list[TilePath]:
    """Every tile a static server holds for a tree of ``size`` leaves: hash tiles by level, then entry bundles.

    Only this size's right edge is listed; :func:`tiles_for_sizes` adds the partial tiles of earlier checkpoints.
    """
    _check_size(size)
    out: list[TilePath] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        out.extend(_level_tiles(size >> (TILE_HEIGHT * level), level))
        level += 1
    out.extend(_level_tiles(size, 0, entries=True))
    return out


def tiles_for_sizes(sizes: Iterable[int]) -> list[TilePath]:
    """Every tile the checkpointed tree ``sizes`` imply: the full tiles of the largest, the partial tiles of each.

    C2SP tlog-tiles: a log serves the partial tiles of every tree size it signed a checkpoint for, so a client
    holding any of those checkpoints can fetch the right edge of its tree. In order, without duplicates.
    """
    out: dict[TilePath, None] = {}
    ordered = sorted(set(sizes))
    for s in ordered:
        _check_size(s)
    if ordered:
        out.update((t, None) for t in tiles_for_size(ordered[-1]) if not t.is_partial)
    for s in ordered:
        out.update((t, None) for t in tiles_for_size(s) if t.is_partial)
    return list(out)


def tile_implied(tile: TilePath, sizes: Sequence[int]) -> bool:
    """Whether some tree size in ``sizes`` (sorted ascending) implies ``tile``.

    A full tile needs the largest size to cover it; a partial tile ``.p/W`` needs a size that makes that
    tile exactly ``W`` wide at its level (entry bundles: at level 0).
    """
    if not sizes:
        return False
    shift = TILE_HEIGHT * tile.level
    count = tile.index * TILE_WIDTH + tile.width  # subtrees at this level the tile's last hash needs
    if not tile.is_partial:
        return count <= sizes[-1] >> shift
    lo, hi = count << shift, (count + 1) << shift  # sizes s with s >> shift == count
    i = bisect.bisect_left(sizes, lo)
    return i < len(sizes) and sizes[i] < hi


def read_tile(reader: HashReader, level: int, index: int, width: int, tree_size: int) -> bytes:
    """The bytes of hash tile (``level``, ``index``, ``width``) of the tree of ``tree_size`` leaves.

    Any width whose hashes are complete within ``tree_size`` is served, including the partial tiles
    of smaller trees, whose contents never change.
    """
    tile = TilePath(level, index, width)
    _check_size(tree_size)
    height = TILE_HEIGHT * level
    first = index * TILE_WIDTH
    available = tree_size >> height
    if first + width > available:
        raise IndexOutOfRange(
            f"{tile.path} needs {first + width} subtrees at height {height}; "
            f"a tree of size {tree_size} has {available}"
        )
    hashes = reader.read_hashes([stored_hash_index(height, first + k) for k in range(width)])
    if len(hashes) != width or any(len(h) != HASH_SIZE for h in hashes):
        raise InconsistentLog(f"hash reader returned malformed hashes for {tile.path}")
    return b"".join(hashes)


# --- entry bundles ---------------------------------------------------------


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length followed by its bytes."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise MalformedInput(f"an entry bundle holds 1..{TILE_WIDTH} entries, not {len(entries)}")
    out = bytearray()
    for position, entry in enumerate(entries):
        if len(entry) > MAX_ENTRY_SIZE:
            raise EntryTooLarge(
                f"entry {position} of the bundle is {len(entry)} bytes, over the {MAX_ENTRY_SIZE}-byte bound",
                size=len(entry), limit=MAX_ENTRY_SIZE,
            )
        out += len(entry).to_bytes(2, "big")
        out += entry
    return bytes(out)


def parse_entry_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of an entry bundle, all or nothing; ``width`` is the entry count the bundle must hold."""
    if width is not None and not 1 <= width <= TILE_WIDTH:
        raise MalformedInput(f"entry bundle width {width} is not in 1..{TILE_WIDTH}")
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == (width if width is not None else TILE_WIDTH):
            raise MalformedInput(f"entry bundle has bytes after entry {len(entries) - 1}, at offset {pos}")
        if pos + 2 > len(data):
            raise MalformedInput(f"entry bundle is truncated in the length of entry {len(entries)}")
        size = int.from_bytes(data[pos : pos + 2], "big")
        end = pos + 2 + size
        if end > len(data):
            raise MalformedInput(
                f"entry bundle is truncated in entry {len(entries)}: {size} bytes declared, {len(data) - pos - 2} left"
            )
        entries.append(bytes(data[pos + 2 : end]))
        pos = end
    if not entries:
        raise MalformedInput("entry bundle is empty")
    if width is not None and len(entries) != width:
        raise MalformedInput(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries


# --- reading a tiled log -----------------------------------------------------


def _fold_pairs(hashes: Sequence[bytes]) -> bytes:
    """The root of a complete subtree given its 2^k bottom hashes, left to right."""
    layer = list(hashes)
    while len(layer) > 1:
        layer = [node_hash(layer[k], layer[k + 1]) for k in range(0, len(layer), 2)]
    return layer[0]


class TileHashReader:
    """TileHashReader is a ``HashReader`` for a tree of ``tree_size`` leaves served as tiles through ``fetch``.

    Each stored hash comes from the widest tile the tree has at its tile level (hashes at heights between
    tile levels are folded from the level below). Given the checkpoint's ``root``, every tile is
    authenticated before use: partial tiles by recomputing the root from them, full tiles by hashing
    them up to the authenticated tile above; a tile that does not fit raises ``InconsistentLog``.
    """

    def __init__(self, tree_size: int, fetch: Callable[[TilePath], bytes], *, root: bytes | None = None) -> None:
        _check_size(tree_size)
        if root is not None and len(root) != HASH_SIZE:
            raise MalformedInput(f"root is {len(root)} bytes, not {HASH_SIZE}")
        self.tree_size = tree_size
        self._fetch = fetch
        self._root = root
        self._fetched: dict[TilePath, list[bytes]] = {}
        self._authentic: set[TilePath] = set()

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """The stored hashes at ``indexes``, read from tiles."""
        return [self._stored_hash(i, verified=self._root is not None) for i in indexes]

    def _stored_hash(self, stored: int, verified: bool) -> bytes:
        level, index = level_and_index(stored)
        if (index + 1) << level > self.tree_size:
            raise IndexOutOfRange(f"stored hash {stored} is not in a tree of size {self.tree_size}")
        tile_level, below = divmod(level, TILE_HEIGHT)
        first = index << below
        tile = self._tile_holding(tile_level, first)
        hashes = self._authenticated(tile) if verified else self._tile_hashes(tile)
        pos = first % TILE_WIDTH
        return _fold_pairs(hashes[pos : pos + (1 << below)])

    def _tile_holding(self, level: int, index: int) -> TilePath:
        """The widest tile of this tree that holds subtree ``index`` at height ``8·level``."""
        count = self.tree_size >> (TILE_HEIGHT * level)
        if index >= count:
            raise IndexOutOfRange(f"no subtree {index} at tile level {level} in a tree of size {self.tree_size}")
        n = index // TILE_WIDTH
        width = TILE_WIDTH if n < count // TILE_WIDTH else count % TILE_WIDTH
        return TilePath(level, n, width)

    def _tile_hashes(self, tile: TilePath) -> list[bytes]:
        if tile not in self._fetched:
            data = self._fetch(tile)
            if len(data) != tile.width * HASH_SIZE:
                raise MalformedInput(f"{tile.path} is {len(data)} bytes, expected {tile.width * HASH_SIZE}")
            self._fetched[tile] = [bytes(data[k : k + HASH_SIZE]) for k in range(0, len(data), HASH_SIZE)]
        return self._fetched[tile]

    def _authenticated(self, tile: TilePath) -> list[bytes]:
        hashes = self._tile_hashes(tile)
        if tile in self._authentic:
            return hashes
        if tile.is_partial:
            self._check_right_edge()
        else:
            parent = self._tile_holding(tile.level + 1, tile.index)
            if _fold_pairs(hashes) != self._authenticated(parent)[tile.index % TILE_WIDTH]:
                raise InconsistentLog(f"{tile.path} does not hash to its entry in {parent.path}")
        self._authentic.add(tile)
        return hashes

    def _check_right_edge(self) -> None:
        """Authenticate all partial tiles at once: the root is computed from them and nothing else."""
        if tree_hash(self.tree_size, _UnverifiedTiles(self)) != self._root:
            raise InconsistentLog(f"tiles for tree size {self.tree_size} do not hash to the checkpoint root")
        self._authentic.update(t for t in self._fetched if t.is_partial)


class _UnverifiedTiles:
    """A ``HashReader`` over a ``TileHashReader``'s tiles as fetched, before authentication."""

    def __init__(self, tiles: TileHashReader) -> None:
        self._tiles = tiles

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        return [self._tiles._stored_hash(i, verified=False) for i in indexes]


# --- publishing ------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # served by a static web server, unlike mkstemp's 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tile_bytes(tile: TilePath, size: int, reader: HashReader,
               entries: Callable[[int, int], Sequence[bytes]]) -> bytes:
    """The bytes of ``tile`` of the tree of ``size`` leaves: a hash tile, or an entry bundle of the leaves
    ``entries(first, count)`` returns, each checked against its leaf hash."""
    if not tile.entries:
        return read_tile(reader, tile.level, tile.index, tile.width, size)
    first = tile.index * TILE_WIDTH
    bundle = list(entries(first, tile.width))
    if len(bundle) != tile.width:
        raise InconsistentLog(f"{tile.path}: asked for {tile.width} entries from {first}, got {len(bundle)}")
    leaves = read_tile(reader, 0, tile.index, tile.width, size)
    for k, entry in enumerate(bundle):
        if leaf_hash(entry) != leaves[k * HASH_SIZE : (k + 1) * HASH_SIZE]:
            raise InconsistentLog(f"entry {first + k} does not match its leaf hash in the log", index=first + k)
    return encode_entry_bundle(bundle)


def write_static(outdir: Path, *, size: int, reader: HashReader,
                 entries: Callable[[int, int], Sequence[bytes]], checkpoint: bytes,
                 sizes: Iterable[int] = ()) -> list[Path]:
    """Write the checkpoint, tiles and entry bundles of a tree of ``size`` leaves under ``outdir``; the paths written.

    ``sizes`` are the other tree sizes the log signed checkpoints for (``Log.checkpoint_sizes()``): their
    partial tiles are written too, as C2SP tlog-tiles requires, so a client holding any of those
    checkpoints finds its right edge. Each file is replaced atomically and the checkpoint goes last, so a
    reader never sees a checkpoint whose tiles are missing. A tile already on disk with the same bytes is
    left alone; one with different bytes means the log has changed its past, and raises ``InconsistentLog``.
    """
    outdir = Path(outdir)
    written: list[Path] = []
    for s in sizes:
        if not 0 <= s <= size:
            raise IndexOutOfRange(f"checkpoint size {s} is not in 0..{size}")
    for tile in tiles_for_sizes([*sizes, size]):
        data = tile_bytes(tile, size, reader, entries)
        path = outdir / tile.path
        if path.is_file():
            if path.read_bytes() == data:
                continue
            raise InconsistentLog(f"{path} already holds different bytes: tiles never change once written")
        _write_atomic(path, data)
        written.append(path)
    path = outdir / "checkpoint"
    if not (path.is_file() and path.read_bytes() == checkpoint):
        _write_atomic(path, checkpoint)
        written.append(path)
    return written
