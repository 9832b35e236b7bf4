"""Fuzz policy loading: mutated policy documents and mutated YAML policy files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import example, given

from redline.policy import load_pack
from redline.policy.model import Policy, load_policy, policy_from_document

from .common import fuzz_settings, mutated, mutated_json, ok, outcome

PACKS = ["coordinated-pause", "eu-ai-act", "pre-release-review"]
POLICIES = [load_pack(name) for name in PACKS]
DOCS = [p.document() for p in POLICIES]
_PACK_DIR = Path(__import__("redline.policy", fromlist=["x"]).__file__).parent / "packs"
YAML_TEXTS = [(_PACK_DIR / f"{name}.yaml").read_bytes() for name in PACKS]
_YAML_TOKENS = (b"", b"\n", b"  ", b"\t", b": ", b"- ", b"[", b"]", b"{", b"}", b"&a ", b"*a", b"<<: *a\n",
                b"!!binary ",
                b"!!python/object:os.system ", b"? ", b"|", b">", b"'", b'"', b"#", b"---\n", b"...\n", b"%YAML 1.1\n",
                b"1" * 5000, b"2027-13-45", b"2001-12-14t21:59:43.10-99:00", b".inf", b".nan", b"0x1F", b"0o17",
                b"1_000", b"1e400", b"null", b"~", b"yes", b"\xff", b"\xef\xbb\xbf", b"[" * 2000, b"\\ud800")


@fuzz_settings(200)
@given(mutated_json(DOCS))
def test_policy_document_validates_or_is_refused(doc: object) -> None:
    """policy_from_document: a Policy or an InvalidPolicy; a valid one's document validates back to it."""
    result = outcome(policy_from_document, doc)
    if ok(result):
        policy: Policy = result[1]
        assert policy_from_document(policy.document()) == policy


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the mutated policy files (one file, rewritten per example)."""
    return tmp_path_factory.mktemp("fuzz-policy")


@fuzz_settings(200, fuzz_share=0.4)
@given(data=mutated(YAML_TEXTS, _YAML_TOKENS))
@example(data=b"id: " + b"1" * 5000)  # an integer over Python's int-parsing limit
@example(data=b"id: 2027-13-45")  # a date YAML matches but cannot build
@example(data=b"id: 2001-12-14t21:59:43.10-99:00")  # a time zone offset over 24 hours
def test_policy_file_loads_or_is_refused(scratch: Path, data: bytes) -> None:
    """load_policy on mutated YAML: a Policy or a RedlineError, and a loaded one equals its document's policy."""
    path = scratch / "policy.yaml"
    path.write_bytes(data)
    result = outcome(load_policy, path)
    if ok(result):
        assert policy_from_document(yaml.safe_load(data)) == result[1]
