"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs, over any store of subtree hashes.

Leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``,
empty tree ``SHA-256("")``. Storage comes in through one small interface,
``HashReader``, that returns the hashes of complete, aligned subtrees addressed by
*stored hash index* (the order in which an append-only log writes them: each leaf
hash, then the hashes of the subtrees it completes). Everything here is arithmetic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from redline.errors import IndexOutOfRange, InvalidProof

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 hash of a leaf."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 hash of an interior node."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


# --- stored hash layout ----------------------------------------------------


def stored_hash_index(level: int, index: int) -> int:
    """Position in the append order of the hash of subtree ``index`` at ``level``.

    Subtree (level, index) covers leaves ``[index·2^level, (index+1)·2^level)``; it is
    written right after the leaf hash of its last leaf and the ``level - 1`` subtrees
    completed by that leaf. Before leaf ``j``'s hash, ``Σ_l floor(j / 2^l) = 2j − popcount(j)``
    hashes have been written.
    """
    last = ((index + 1) << level) - 1
    return 2 * last - last.bit_count() + level


def stored_hash_count(size: int) -> int:
    """How many hashes a log of ``size`` leaves has stored."""
    return 2 * size - size.bit_count()


def level_and_index(stored: int) -> tuple[int, int]:
    """Inverse of :func:`stored_hash_index`: the (level, index) of a stored hash."""
    if stored < 0:
        raise IndexOutOfRange(f"stored hash index {stored} is negative")
    # The leaf j whose append wrote it is the largest j with stored_hash_count(j) <= stored.
    lo, hi = 0, stored + 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if stored_hash_count(mid) <= stored:
            lo = mid
        else:
            hi = mid - 1
    leaf = lo
    level = stored - stored_hash_count(leaf)
    return level, leaf >> level


def leaf_of_stored(stored: int) -> int:
    """The index of the leaf whose append wrote stored hash ``stored``."""
    level, index = level_and_index(stored)
    return ((index + 1) << level) - 1


def hashes_for_append(leaf_h: bytes, size: int, frontier: list[bytes]) -> list[bytes]:
    """The stored hashes that appending leaf number ``size`` writes, updating ``frontier``.

    ``frontier`` holds the roots of the complete subtrees of the tree of ``size``
    leaves, largest first (one per set bit of ``size``); it is updated in place.
    """
    out = [leaf_h]
    h = leaf_h
    n = size
    while n & 1:
        h = node_hash(frontier.pop(), h)
        out.append(h)
        n >>= 1
    frontier.append(h)
    return out


def frontier_indexes(size: int) -> list[int]:
    """Stored hash indexes of the complete subtrees of a tree of ``size`` leaves, largest first."""
    out = []
    start = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            out.append(stored_hash_index(level, start >> level))
            start += 1 << level
    return out


class HashReader(Protocol):
    """Reads stored hashes by stored hash index, in the order asked."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]: ...


def _range_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """Decompose leaves [lo, hi) into maximal aligned complete subtrees (level, index), left to right."""
    out = []
    while lo < hi:
        level = (lo & -lo).bit_length() - 1 if lo else (hi - lo).bit_length() - 1
        while (1 << level) > hi - lo:
            level -= 1
        out.append((level, lo >> level))
        lo += 1 << level
    return out


def _range_plan(lo: int, hi: int) -> list[int]:
    n = hi - lo
    if n & (n - 1) == 0:  # a complete subtree: the common case in proofs
        level = n.bit_length() - 1
        return [stored_hash_index(level, lo >> level)]
    return [stored_hash_index(level, index) for level, index in _range_subtrees(lo, hi)]


def _fold_range(hashes: list[bytes]) -> bytes:
    """RFC 6962 hash of a range given its maximal subtrees (left to right), with an aligned start."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def _read_ranges(reader: HashReader, ranges: list[tuple[int, int]]) -> list[bytes]:
    plans = [_range_plan(lo, hi) for lo, hi in ranges]
    flat = [i for plan in plans for i in plan]
    got = reader.read_hashes(flat) if flat else []
    if len(got) != len(flat):
        raise IndexOutOfRange(f"hash reader returned {len(got)} hashes for {len(flat)} asked")
    out, pos = [], 0
    for plan in plans:
        if len(plan) == 1:
            out.append(got[pos])
        else:
            out.append(_fold_range(got[pos : pos + len(plan)]))
        pos += len(plan)
    return out


def tree_hash(size: int, reader: HashReader) -> bytes:
    """The root hash of the first ``size`` leaves."""
    if size == 0:
        return EMPTY_ROOT
    return _read_ranges(reader, [(0, size)])[0]


def prove_inclusion(index: int, size: int, reader: HashReader) -> list[bytes]:
    """RFC 6962 audit path for leaf ``index`` in the tree of ``size`` leaves.

    Every sibling on the path is one complete subtree — one stored hash — except
    at most one on the right border, which is folded from its complete subtrees;
    all of them are read in one call.
    """
    if not 0 <= index < size:
        raise IndexOutOfRange(f"leaf index {index} is not in a tree of size {size}")
    want: list[int] = []  # stored indexes, root side first
    border: tuple[int, int] | None = None  # (position in want, how many) of the partial sibling
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if index < lo + k:
            a, b, hi = lo + k, hi, lo + k
        else:
            a, b, lo = lo, lo + k, lo + k
        n = b - a
        if n & (n - 1) == 0:
            last = b - 1  # a complete subtree at level log2(n) is stored right after its last leaf
            want.append(2 * last - last.bit_count() + n.bit_length() - 1)
        else:
            parts = _range_plan(a, b)
            border = (len(want), len(parts))
            want.extend(parts)
    got = reader.read_hashes(want) if want else []
    if len(got) != len(want):
        raise IndexOutOfRange(f"hash reader returned {len(got)} hashes for {len(want)} asked")
    if border is not None:
        pos, count = border
        got[pos : pos + count] = [_fold_range(got[pos : pos + count])]
    got.reverse()
    return got


def _consistency_ranges(m: int, lo: int, hi: int, complete: bool = True) -> list[tuple[int, int]]:
    """Ranges for RFC 9162 SUBPROOF(m, D[lo:hi], complete), in proof order."""
    if m == hi - lo:
        return [] if complete else [(lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return _consistency_ranges(m, lo, lo + k, complete) + [(lo + k, hi)]
    return _consistency_ranges(m - k, lo + k, hi, False) + [(lo, lo + k)]


def prove_consistency(old_size: int, new_size: int, reader: HashReader) -> list[bytes]:
    """RFC 9162 consistency proof from ``old_size`` to ``new_size``."""
    if not 0 < old_size <= new_size:
        raise IndexOutOfRange(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == new_size:
        return []
    return _read_ranges(reader, _consistency_ranges(old_size, 0, new_size))


class ListHashReader:
    """A ``HashReader`` over leaf hashes held in memory (tests, small trees, tools)."""

    def __init__(self, leaf_hashes: Sequence[bytes] = ()) -> None:
        self.stored: list[bytes] = []
        self.frontier: list[bytes] = []
        self.size = 0
        for h in leaf_hashes:
            self.append(h)

    def append(self, leaf_h: bytes) -> None:
        """Append one leaf hash."""
        self.stored.extend(hashes_for_append(leaf_h, self.size, self.frontier))
        self.size += 1

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """The stored hashes at ``indexes``."""
        try:
            return [self.stored[i] for i in indexes]
        except IndexError as exc:
            raise IndexOutOfRange(f"stored hash index beyond {len(self.stored)}") from exc

    def root(self) -> bytes:
        """Root of the whole tree."""
        return root_from_frontier(self.frontier)


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The root hash from the complete-subtree roots of a tree, largest first."""
    if not frontier:
        return EMPTY_ROOT
    return _fold_range(list(frontier))


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """The root hash of a list of leaf hashes."""
    return ListHashReader(leaf_hashes).root()


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -------------------------


def _check_hash(h: bytes, what: str) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise InvalidProof(f"{what} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion(index: int, size: int, leaf_h: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that an inclusion proof implies, or ``InvalidProof`` if its shape is wrong."""
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf_h, "leaf hash")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    if len(proof) != inner + border:
        raise InvalidProof(f"inclusion proof has {len(proof)} hashes, expected {inner + border}")
    h = leaf_h
    for j, p in enumerate(proof):
        _check_hash(p, f"inclusion proof hash {j}")
        if j < inner and not (index >> j) & 1:
            h = node_hash(h, p)
        else:
            h = node_hash(p, h)
    return h


def verify_inclusion(index: int, size: int, leaf_h: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ``InvalidProof`` unless ``proof`` shows leaf ``index`` under ``root``."""
    _check_hash(root, "root")
    if root_from_inclusion(index, size, leaf_h, proof) != root:
        raise InvalidProof(f"inclusion proof for leaf {index} in tree of size {size} does not reach the root")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> None:
    """Raise ``InvalidProof`` unless ``proof`` shows the tree of ``old_size`` is a prefix of ``new_size``'s."""
    if old_size == 0:
        raise InvalidProof("a consistency proof from the empty tree proves nothing")
    if old_size > new_size:
        raise InvalidProof(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size:
        # RFC 9162: equal sizes take an empty proof and identical roots.
        if proof:
            raise InvalidProof("sizes are equal but the consistency proof is not empty")
        if old_root != new_root:
            raise InvalidProof(f"roots differ for the same tree size {old_size}")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if not proof:
        raise InvalidProof("consistency proof is empty")
    for j, p in enumerate(proof):
        _check_hash(p, f"consistency proof hash {j}")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("consistency proof is too short")
    if fr != old_root:
        raise InvalidProof(f"consistency proof does not reproduce the old root of size {old_size}")
    if sr != new_root:
        raise InvalidProof(f"consistency proof does not reproduce the new root of size {new_size}")
