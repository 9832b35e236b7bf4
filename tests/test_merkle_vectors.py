"""RFC 6962 known answers: the transparency-dev/merkle vectors, vendored in tests/vectors/merkle."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from redline.errors import IndexOutOfRange, InvalidProof
from redline.log.merkle import (
    EMPTY_ROOT,
    ListHashReader,
    leaf_hash,
    node_hash,
    prove_consistency,
    prove_inclusion,
    root_of,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

# Parametrization needs the files at collection time, before fixtures exist (same path as conftest's).
MERKLE = Path(__file__).resolve().parent / "vectors" / "merkle"


def _cases(kind: str) -> list[Path]:
    return sorted((MERKLE / kind).rglob("*.json"))


def _id(path: Path) -> str:
    return str(path.relative_to(MERKLE))


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _proof(case: dict) -> list[bytes]:
    return [_b64(p) for p in case["proof"] or []]


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def roots(vectors: Path) -> dict:
    return json.loads((vectors / "merkle" / "roots.json").read_text())


@pytest.fixture(scope="module")
def vector_leaves(roots: dict) -> list[bytes]:
    return [leaf_hash(bytes.fromhex(x)) for x in roots["leaf_inputs_hex"]]


def test_vector_sets_are_present(vectors: Path) -> None:
    # A missing checkout would otherwise parametrize to nothing and pass silently.
    inclusion, consistency = _cases("inclusion"), _cases("consistency")
    assert len(inclusion) >= 50 and len(consistency) >= 50
    assert any(not _load(p)["wantErr"] for p in inclusion)
    assert any(_load(p)["wantErr"] for p in consistency)


@pytest.mark.parametrize("path", _cases("inclusion"), ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case = _load(path)
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), _proof(case), _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        assert verify_inclusion(*args) is None


@pytest.mark.parametrize("path", _cases("consistency"), ids=_id)
def test_consistency_vector(path: Path) -> None:
    case = _load(path)
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]), _proof(case))
    if case["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        assert verify_consistency(*args) is None


@pytest.mark.parametrize("size", range(9))
def test_roots_json(roots: dict, vector_leaves: list[bytes], size: int) -> None:
    want = bytes.fromhex(roots["root_by_size_hex"][size])
    assert root_of(vector_leaves[:size]) == want
    # The same root read back through a reader that holds the whole tree.
    assert tree_hash(size, ListHashReader(vector_leaves)) == want


def test_roots_json_shape(roots: dict) -> None:
    assert len(roots["leaf_inputs_hex"]) == 8
    assert len(roots["root_by_size_hex"]) == 9
    assert bytes.fromhex(roots["root_by_size_hex"][0]) == EMPTY_ROOT


def test_hash_primitives_known_answers() -> None:
    # RFC 6962: SHA-256 of "" / 0x00 || "" / 0x01 || l || r.
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    a, b = leaf_hash(b""), leaf_hash(b"\x00")
    assert node_hash(a, b).hex() == "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"
    assert node_hash(a, b) != node_hash(b, a)


def _happy(kind: str) -> list[Path]:
    return sorted((MERKLE / kind).glob("*/happy-path.json"))


@pytest.mark.parametrize("path", _happy("inclusion"), ids=_id)
def test_generated_inclusion_proof_equals_vector(path: Path, vector_leaves: list[bytes], roots: dict) -> None:
    case = _load(path)
    index, size = case["leafIdx"], case["treeSize"]
    # The happy-path cases are built from the roots.json leaves: check that first.
    assert _b64(case["leafHash"]) == vector_leaves[index]
    assert _b64(case["root"]) == bytes.fromhex(roots["root_by_size_hex"][size])
    reader = ListHashReader(vector_leaves)
    assert prove_inclusion(index, size, reader) == _proof(case)
    # And a reader that holds exactly the tree of that size gives the same bytes.
    assert prove_inclusion(index, size, ListHashReader(vector_leaves[:size])) == _proof(case)


@pytest.mark.parametrize("path", _happy("consistency"), ids=_id)
def test_generated_consistency_proof_equals_vector(path: Path, vector_leaves: list[bytes], roots: dict) -> None:
    case = _load(path)
    m, n = case["size1"], case["size2"]
    assert _b64(case["root1"]) == bytes.fromhex(roots["root_by_size_hex"][m])
    assert _b64(case["root2"]) == bytes.fromhex(roots["root_by_size_hex"][n])
    assert prove_consistency(m, n, ListHashReader(vector_leaves)) == _proof(case)
    assert prove_consistency(m, n, ListHashReader(vector_leaves[:n])) == _proof(case)


def test_happy_paths_cover_both_kinds() -> None:
    assert len(_happy("inclusion")) == 5 and len(_happy("consistency")) == 5


def test_every_proof_over_vector_leaves_verifies(vector_leaves: list[bytes], roots: dict) -> None:
    reader = ListHashReader(vector_leaves)
    root = [bytes.fromhex(h) for h in roots["root_by_size_hex"]]
    for n in range(1, 9):
        for i in range(n):
            verify_inclusion(i, n, vector_leaves[i], prove_inclusion(i, n, reader), root[n])
        for m in range(1, n + 1):
            proof = prove_consistency(m, n, reader)
            assert (proof == []) == (m == n)
            verify_consistency(m, n, root[m], root[n], proof)


@pytest.mark.parametrize("index,size", [(0, 0), (-1, 3), (3, 3), (9, 9)])
def test_prove_inclusion_out_of_range(vector_leaves: list[bytes], index: int, size: int) -> None:
    with pytest.raises(IndexOutOfRange):
        prove_inclusion(index, size, ListHashReader(vector_leaves))


@pytest.mark.parametrize("m,n", [(0, 0), (0, 3), (4, 3), (-1, 2)])
def test_prove_consistency_out_of_range(vector_leaves: list[bytes], m: int, n: int) -> None:
    with pytest.raises(IndexOutOfRange, match="no consistency proof"):
        prove_consistency(m, n, ListHashReader(vector_leaves))


def test_prove_beyond_reader_raises_index_out_of_range(vector_leaves: list[bytes]) -> None:
    reader = ListHashReader(vector_leaves[:4])
    with pytest.raises(IndexOutOfRange):
        prove_inclusion(0, 8, reader)
    with pytest.raises(IndexOutOfRange):
        prove_consistency(2, 8, reader)
