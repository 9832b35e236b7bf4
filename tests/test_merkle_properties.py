"""Properties of the Merkle layout, proof generation and verification (Hypothesis and exhaustive small trees).

Tampering oracle. A proof does not commit to the tree size or the leaf index by itself: the
verifier only uses them to decide *how* to fold the proof hashes. So a changed size (or old
size) is still accepted exactly when the verifier for the new sizes folds the same inputs the
same way as for the true sizes -- e.g. the audit path of leaf 0 in a tree of 3 leaves is also a
valid audit path of leaf 0 "in a tree of 4 leaves" under the same root. With distinct leaves
and no SHA-256 collisions, any other change must be rejected. The reference folds below are
derived from the recursive RFC 6962/9162 definitions, independently of the bit arithmetic in
``redline.log.merkle``, and the tests assert acceptance if and only if the folds are the same.
"""

from __future__ import annotations

import functools
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.errors import IndexOutOfRange, InvalidProof
from redline.log.merkle import (
    EMPTY_ROOT,
    ListHashReader,
    frontier_indexes,
    leaf_hash,
    leaf_of_stored,
    level_and_index,
    node_hash,
    prove_consistency,
    prove_inclusion,
    root_from_frontier,
    root_of,
    stored_hash_count,
    stored_hash_index,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

MAX_SIZE = 3000


# --- independent references ------------------------------------------------


def _split(n: int) -> int:
    k = 1
    while 2 * k < n:
        k *= 2
    return k


def mth(leaves: list[bytes], lo: int, hi: int) -> bytes:
    """RFC 6962 MTH(D[lo:hi]) by its recursive definition, over leaf hashes."""
    if hi == lo:
        return EMPTY_ROOT
    if hi - lo == 1:
        return leaves[lo]
    k = _split(hi - lo)
    return node_hash(mth(leaves, lo, lo + k), mth(leaves, lo + k, hi))


@functools.cache
def path_directions(index: int, size: int) -> tuple[bool, ...]:
    """How the audit path of ``index`` folds, leaf first: True where the sibling is on the right."""
    out = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append(True)
            hi = lo + k
        else:
            out.append(False)
            lo += k
    return tuple(reversed(out))


def _subproof(m: int, lo: int, hi: int, complete: bool) -> list[tuple[int, int]]:
    """RFC 9162 §2.1.4.1 SUBPROOF as the leaf ranges whose hashes it lists."""
    if m == hi - lo:
        return [] if complete else [(lo, hi)]
    k = _split(hi - lo)
    if m <= k:
        return _subproof(m, lo, lo + k, complete) + [(lo + k, hi)]
    return _subproof(m - k, lo + k, hi, False) + [(lo, lo + k)]


@functools.cache
def consistency_fold(m: int, n: int) -> tuple:
    """How a verifier rebuilds both roots from (old root if m is a power of two) + proof hashes.

    Returns (number of inputs, old-root expression, new-root expression) where an expression
    is an input position or a (left, right) pair.
    """
    ranges = _subproof(m, 0, n, True)
    if m & (m - 1) == 0:
        ranges = [(0, m)] + ranges
    var = {r: i for i, r in enumerate(ranges)}

    def expr(lo: int, hi: int):
        if (lo, hi) in var:
            return var[(lo, hi)]
        assert hi - lo > 1, "proof ranges must cover the tree"
        k = _split(hi - lo)
        return (expr(lo, lo + k), expr(lo + k, hi))

    return len(ranges), expr(0, m), expr(0, n)


def inclusion_equivalent(index: int, size: int, index2: int, size2: int) -> bool:
    return 0 <= index2 < size2 and path_directions(index2, size2) == path_directions(index, size)


def consistency_equivalent(m: int, n: int, m2: int, n2: int) -> bool:
    return 0 < m2 < n2 and consistency_fold(m2, n2) == consistency_fold(m, n)


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def accepts(fn, *args) -> bool:
    try:
        fn(*args)
    except InvalidProof:
        return False
    return True


def distinct_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


# --- stored hash layout ----------------------------------------------------


def test_stored_hash_index_and_level_and_index_are_inverse() -> None:
    total = stored_hash_count(MAX_SIZE)
    seen = set()
    for stored in range(total):
        level, index = level_and_index(stored)
        assert stored_hash_index(level, index) == stored
        seen.add((level, index))
    assert len(seen) == total
    # And the other way round, for every complete subtree of the tree of MAX_SIZE leaves.
    for level in range(MAX_SIZE.bit_length()):
        for index in range(MAX_SIZE >> level):
            assert level_and_index(stored_hash_index(level, index)) == (level, index)


def test_level_and_index_rejects_negative() -> None:
    with pytest.raises(IndexOutOfRange, match="negative"):
        level_and_index(-1)


def test_stored_hash_count_matches_list_reader_and_layout() -> None:
    leaves = distinct_leaves(600)
    reader = ListHashReader()
    assert stored_hash_count(0) == 0 == len(reader.stored)
    for n, h in enumerate(leaves, start=1):
        reader.append(h)
        assert len(reader.stored) == stored_hash_count(n), n
        assert reader.root() == root_of(leaves[:n])
    # Each stored hash is the hash of the subtree its position names, by the recursive definition.
    for stored, h in enumerate(reader.stored):
        level, index = level_and_index(stored)
        lo = index << level
        assert h == mth(leaves, lo, lo + (1 << level)), stored
        assert leaf_of_stored(stored) == lo + (1 << level) - 1


def test_stored_hash_count_known_values() -> None:
    # Leaf hashes plus one interior hash per completed subtree: 2n - popcount(n).
    assert [stored_hash_count(n) for n in range(9)] == [0, 1, 3, 4, 7, 8, 10, 11, 15]
    assert stored_hash_index(0, 0) == 0 and stored_hash_index(0, 1) == 1 and stored_hash_index(1, 0) == 2
    assert stored_hash_index(2, 0) == 6 and stored_hash_index(3, 0) == 14


def test_frontier_indexes_fold_to_the_root() -> None:
    leaves = distinct_leaves(1100)
    reader = ListHashReader(leaves)
    assert frontier_indexes(0) == []
    for n in range(0, 1100):
        idx = frontier_indexes(n)
        assert len(idx) == n.bit_count()
        hashes = reader.read_hashes(idx)
        assert root_from_frontier(hashes) == mth(leaves, 0, n), n
        # Largest subtree first, left to right, each one complete at size n.
        assert all(stored_hash_count(n) > i for i in idx)
        assert idx == sorted(idx)


def test_list_reader_frontier_is_frontier_indexes() -> None:
    leaves = distinct_leaves(300)
    reader = ListHashReader()
    for n in range(300):
        assert reader.frontier == reader.read_hashes(frontier_indexes(n))
        reader.append(leaves[n])


def test_root_of_matches_recursive_definition() -> None:
    leaves = distinct_leaves(130)
    reader = ListHashReader(leaves)
    for n in range(131):
        assert root_of(leaves[:n]) == mth(leaves, 0, n)
        assert tree_hash(n, reader) == mth(leaves, 0, n)
    assert root_of([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def test_read_hashes_beyond_store() -> None:
    reader = ListHashReader(distinct_leaves(3))
    with pytest.raises(IndexOutOfRange):
        reader.read_hashes([stored_hash_count(3)])


# --- the size/index ambiguity is real, and exactly what the oracle says ------


def test_changed_size_can_be_equivalent_by_rfc_design() -> None:
    leaves = distinct_leaves(4)
    reader = ListHashReader(leaves)
    root3 = root_of(leaves[:3])
    proof = prove_inclusion(0, 3, reader)
    # Leaf 0's audit path folds the same way in trees of 3 and 4 leaves.
    assert inclusion_equivalent(0, 3, 0, 4)
    verify_inclusion(0, 4, leaves[0], proof, root3)
    # ... but not in a tree of 2 or 5 leaves.
    for size in (2, 5):
        assert not inclusion_equivalent(0, 3, 0, size)
        with pytest.raises(InvalidProof):
            verify_inclusion(0, size, leaves[0], proof, root3)
    cproof = prove_consistency(2, 3, reader)
    assert consistency_equivalent(2, 3, 2, 4)
    verify_consistency(2, 4, root_of(leaves[:2]), root3, cproof)
    assert not consistency_equivalent(2, 3, 1, 3)
    with pytest.raises(InvalidProof):
        verify_consistency(1, 3, root_of(leaves[:2]), root3, cproof)


def test_changed_index_never_equivalent() -> None:
    for size in range(1, 200):
        dirs = {path_directions(i, size) for i in range(size)}
        assert len(dirs) == size


SMALL = 24


def test_all_small_trees_exhaustively() -> None:
    """Every proof for sizes up to SMALL verifies; every changed index/size behaves as the oracle says."""
    leaves = distinct_leaves(SMALL + 2)
    reader = ListHashReader(leaves)
    roots = [root_of(leaves[:n]) for n in range(SMALL + 3)]
    equivalent = 0
    for n in range(1, SMALL + 1):
        for i in range(n):
            proof = prove_inclusion(i, n, reader)
            verify_inclusion(i, n, leaves[i], proof, roots[n])
            for i2 in range(-1, n + 1):
                if i2 != i:
                    with pytest.raises(InvalidProof):
                        verify_inclusion(i2, n, leaves[i], proof, roots[n])
            for n2 in range(0, SMALL + 3):
                if n2 != n:
                    want = inclusion_equivalent(i, n, i, n2)
                    equivalent += want
                    assert accepts(verify_inclusion, i, n2, leaves[i], proof, roots[n]) == want, (i, n, n2)
        for m in range(1, n):
            proof = prove_consistency(m, n, reader)
            verify_consistency(m, n, roots[m], roots[n], proof)
            for m2 in range(0, SMALL + 3):
                for n2 in range(0, SMALL + 3):
                    if (m2, n2) != (m, n):
                        want = consistency_equivalent(m, n, m2, n2)
                        equivalent += want
                        got = accepts(verify_consistency, m2, n2, roots[m], roots[n], proof)
                        assert got == want, (m, n, m2, n2)
    assert equivalent > 0  # the oracle is not vacuous


# --- Hypothesis: random trees up to a few thousand leaves ------------------


@st.composite
def trees(draw):
    size = draw(st.integers(1, MAX_SIZE))
    salt = draw(st.binary(min_size=0, max_size=8))
    leaves = distinct_leaves(size, salt)
    return leaves, ListHashReader(leaves)


PROPS = settings(max_examples=150, deadline=None)


@PROPS
@given(tree=trees(), data=st.data())
def test_every_inclusion_proof_verifies(tree, data) -> None:
    leaves, reader = tree
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = prove_inclusion(index, size, reader)
    root = tree_hash(size, reader)
    assert len(proof) == len(path_directions(index, size))
    verify_inclusion(index, size, leaves[index], proof, root)
    assert root == (reader.root() if size == len(leaves) else root_of(leaves[:size]))


@PROPS
@given(tree=trees(), data=st.data())
def test_every_consistency_proof_verifies(tree, data) -> None:
    leaves, reader = tree
    n = data.draw(st.integers(1, len(leaves)), label="new size")
    m = data.draw(st.integers(1, n), label="old size")
    proof = prove_consistency(m, n, reader)
    if m == n:
        assert proof == []
    else:
        assert len(proof) == consistency_fold(m, n)[0] - (m & (m - 1) == 0)
    verify_consistency(m, n, tree_hash(m, reader), tree_hash(n, reader), proof)


def _size_changes(draw_int, size: int, upper: int) -> set[int]:
    return {size - 1, size + 1, size * 2, size // 2, size ^ 2, draw_int(0, upper)}


@PROPS
@given(tree=trees(), data=st.data())
def test_tampered_inclusion_proof_is_rejected(tree, data) -> None:
    leaves, reader = tree
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = prove_inclusion(index, size, reader)
    root = tree_hash(size, reader)
    leaf = leaves[index]
    bit = data.draw(st.integers(0, 255), label="bit")

    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf, proof, flip(root, bit))
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, flip(leaf, bit), proof, root)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        bad = list(proof)
        bad[j] = flip(bad[j], bit)
        with pytest.raises(InvalidProof):
            verify_inclusion(index, size, leaf, bad, root)
        with pytest.raises(InvalidProof, match="hashes, expected"):
            verify_inclusion(index, size, leaf, proof[:-1], root)
    with pytest.raises(InvalidProof, match="hashes, expected"):
        verify_inclusion(index, size, leaf, proof + [leaf], root)

    def draw_int(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    # A changed index always fails: in one tree, distinct leaves have distinct paths.
    for index2 in {index - 1, index + 1, index ^ 1, index ^ 2, draw_int(0, size - 1)} - {index}:
        with pytest.raises(InvalidProof):
            verify_inclusion(index2, size, leaf, proof, root)
    # A changed size fails unless the path folds exactly the same way (see module docstring).
    for size2 in _size_changes(draw_int, size, 2 * MAX_SIZE) - {size}:
        want = inclusion_equivalent(index, size, index, size2)
        assert accepts(verify_inclusion, index, size2, leaf, proof, root) == want, size2


@PROPS
@given(tree=trees(), data=st.data())
def test_tampered_consistency_proof_is_rejected(tree, data) -> None:
    leaves, reader = tree
    if len(leaves) < 2:
        leaves = distinct_leaves(2)
        reader = ListHashReader(leaves)
    n = data.draw(st.integers(2, len(leaves)), label="new size")
    m = data.draw(st.integers(1, n - 1), label="old size")
    proof = prove_consistency(m, n, reader)
    old, new = tree_hash(m, reader), tree_hash(n, reader)
    bit = data.draw(st.integers(0, 255), label="bit")
    j = data.draw(st.integers(0, len(proof) - 1), label="proof hash")

    bad = list(proof)
    bad[j] = flip(bad[j], bit)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, old, new, bad)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, flip(old, bit), new, proof)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, old, flip(new, bit), proof)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, new, old, proof)
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, old, new, proof[:j] + proof[j + 1:])
    with pytest.raises(InvalidProof):
        verify_consistency(m, n, old, new, proof + [new])

    def draw_int(lo: int, hi: int) -> int:
        return data.draw(st.integers(lo, hi))

    for m2 in _size_changes(draw_int, m, n) - {m}:
        want = consistency_equivalent(m, n, m2, n)
        assert accepts(verify_consistency, m2, n, old, new, proof) == want, ("old", m2)
    for n2 in _size_changes(draw_int, n, 2 * MAX_SIZE) - {n}:
        want = consistency_equivalent(m, n, m, n2)
        assert accepts(verify_consistency, m, n2, old, new, proof) == want, ("new", n2)
