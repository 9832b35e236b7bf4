"""Bad input through ``Registry.submit``: each refusal has its own error class and message, and writes nothing.

Every test checks the log is untouched: the same size, the same latest signed
checkpoint, the same number of stored entries and the same engine state digest.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from scenario_kit import (
    H64,
    World,
    commitment_fields,
    commits,
    forge_envelope,
    inventory_fields,
    key,
    make_world,
    publication_fields,
    run_start_fields,
    utc,
)

from redline.crypto.canonical import canonical_digest
from redline.errors import (
    BadSignature,
    EntryTooLarge,
    InputTooLarge,
    InvalidPolicy,
    InvalidStatement,
    MalformedInput,
    NotAuthorized,
    RedlineError,
    RevokedKey,
    SequenceError,
    UnknownParty,
)
from redline.policy import load_pack, policy_from_document
from redline.registry import Registry
from redline.statements import (
    Admission,
    Check,
    Commitment,
    ComputeInventory,
    Genesis,
    Indicator,
    KeyRevocation,
    KeyRotation,
    PolicyPublication,
    ReviewDecision,
    ReviewSubmission,
    RunProgress,
    RunStart,
    VerificationReport,
    to_statement,
)

POLICY = load_pack("coordinated-pause")
PARTIES = [("lab-a", "lab"), ("lab-b", "lab"), ("gov", "regulator"), ("audit", "auditor")]


@pytest.fixture()
def world(tmp_path: Path) -> World:
    """lab-a (with a declared run), lab-b, a regulator and an auditor; the pause pack published."""
    w = make_world(tmp_path, PARTIES)
    w.publish(POLICY)
    w.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 1e23))
    return w


def refused(world: World, envelope: bytes, error: type[RedlineError], pattern: str) -> RedlineError:
    """Submit ``envelope``; require exactly ``error`` (not just a base class) matching ``pattern``; nothing written."""
    before = world.snapshot()
    with pytest.raises(RedlineError) as info:
        world.registry.submit(envelope)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(pattern, str(info.value)), str(info.value)
    assert world.snapshot() == before
    return info.value


def statement_of(world: World, party: str, cls: type, **fields: Any) -> dict[str, Any]:
    """The in-toto statement ``sub`` would sign (to tamper with)."""
    return copy.deepcopy(to_statement(world.pred(party, cls, **fields)))


def inventory(world: World, party: str = "lab-a") -> dict[str, Any]:
    """The statement of a valid inventory of 100 H100s (to tamper with)."""
    return statement_of(world, party, ComputeInventory, **inventory_fields(100))


# --- signatures -----------------------------------------------------------------------


def test_payload_changed_after_signing(world: World) -> None:
    env = json.loads(world.envelope("lab-a", ComputeInventory, **inventory_fields(100)))
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["clusters"][0]["chips"][0]["count"] = 1  # hide most of the chips
    env["payload"] = base64.b64encode(json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()).decode()
    refused(world, json.dumps(env).encode(), BadSignature, r"signature 0 by key 'lab-a' does not verify")


def test_signature_bytes_flipped(world: World) -> None:
    env = json.loads(world.envelope("lab-a", ComputeInventory, **inventory_fields(100)))
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[10] ^= 0x01
    env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    refused(world, json.dumps(env).encode(), BadSignature, r"does not verify")


def test_not_an_envelope(world: World) -> None:
    refused(world, b'{"payload": "AAAA", "payloadType"', MalformedInput, r"DSSE envelope|JSON")


# --- roles ----------------------------------------------------------------------------------


def test_a_lab_cannot_publish_policy(world: World) -> None:
    env = world.envelope("lab-a", PolicyPublication, **publication_fields(POLICY))
    refused(world, env, NotAuthorized, r"party 'lab-a' has role 'lab'; only coordinator may make this statement")


def test_a_lab_cannot_admit_a_party(world: World) -> None:
    env = world.envelope("lab-a", Admission, admitted="lab-x", verifier_key=key("lab-x").verifier().to_string(),
                         role="lab", display_name="X", jurisdiction="EU")
    refused(world, env, NotAuthorized, r"urn:redline:admission:v1: party 'lab-a' has role 'lab'; only coordinator")


def test_a_lab_cannot_file_a_verification_report(world: World) -> None:
    env = world.envelope("lab-b", VerificationReport, run_id="ra1", run_party="lab-a",
                         checks=[Check(name="replay", passed=True, detail="")], verdict="pass",
                         compute_spent_flop=1e20, sample_seed="01", segments_checked=3)
    refused(world, env, NotAuthorized, r"party 'lab-b' has role 'lab'; only auditor may make this statement")


def test_an_auditor_cannot_decide_a_review(world: World) -> None:
    world.sub("lab-a", ReviewSubmission, submission_id="s1", model_name="A-1", model_digest={"sha256": H64})
    env = world.envelope("audit", ReviewDecision, submitter="lab-a", submission_id="s1", decision="clear",
                         reason="looks fine")
    refused(world, env, NotAuthorized, r"party 'audit' has role 'auditor'; only regulator may make this statement")


def test_a_lab_cannot_speak_for_another_party(world: World) -> None:
    statement = statement_of(world, "lab-b", ComputeInventory, **inventory_fields(5))
    env = forge_envelope(statement, world.keys["lab-a"])  # lab-a signs a statement whose party is lab-b
    refused(world, env, NotAuthorized, r"signed by 'lab-a' but speaks for 'lab-b'")


def test_a_lab_cannot_revoke_another_labs_key(world: World) -> None:
    env = world.envelope("lab-a", KeyRevocation, revoked_party="lab-b",
                         key_fingerprint=world.keys["lab-b"].verifier().fingerprint, reason="hostile")
    refused(world, env, NotAuthorized, r"party 'lab-a' may revoke only its own key")


# --- keys -------------------------------------------------------------------------------------


def test_unknown_party(world: World) -> None:
    stranger = key("lab-z")
    env = forge_envelope(to_statement(ComputeInventory.build(party="lab-z", seq=1, **inventory_fields(5))), stranger)
    refused(world, env, UnknownParty, r"not signed by the key of any admitted party")


def test_revoked_key(world: World) -> None:
    world.sub("coordinator", KeyRevocation, revoked_party="lab-b",
              key_fingerprint=world.keys["lab-b"].verifier().fingerprint, reason="key leaked")
    assert world.state.parties["lab-b"].revoked is True
    env = world.envelope("lab-b", ComputeInventory, **inventory_fields(5))
    refused(world, env, RevokedKey, r"signed by a retired key of party 'lab-b'")


def test_rotated_away_key_is_refused_and_the_new_key_accepted(world: World) -> None:
    old, new = world.keys["lab-b"], key("lab-b-2")
    new = type(new)("lab-b", new.seed)  # a fresh key under the same party name
    world.sub("lab-b", KeyRotation, new_verifier_key=new.verifier().to_string())
    assert world.state.parties["lab-b"].key == new.verifier()
    assert world.state.retired_keys == {old.verifier().fingerprint: "lab-b"}
    env_old = world.envelope("lab-b", ComputeInventory, **inventory_fields(5))  # still signed with the old key
    refused(world, env_old, RevokedKey, r"retired key of party 'lab-b'")
    world.keys["lab-b"] = new
    done = world.sub("lab-b", ComputeInventory, **inventory_fields(5))
    assert done.index == world.log.size - 1 and world.state.clusters["lab-b"] == {"c1": 5.0}
    assert world.state.parties["lab-b"].last_seq == 2


# --- sequence numbers -------------------------------------------------------------------------


def test_replayed_sequence_number(world: World) -> None:
    env = world.envelope("lab-a", ComputeInventory, **inventory_fields(5))
    world.registry.submit(env)
    refused(world, env, SequenceError, r"sequence number 2 from 'lab-a' replays \(expected 3\)")


def test_skipped_sequence_number(world: World) -> None:
    env = world.envelope("lab-a", ComputeInventory, seq=5, **inventory_fields(5))
    refused(world, env, SequenceError, r"sequence number 5 from 'lab-a' skips \(expected 2\)")


# --- malformed predicates ---------------------------------------------------------------------


def test_unknown_field(world: World) -> None:
    statement = inventory(world)
    statement["predicate"]["nickname"] = "big one"
    refused(world, forge_envelope(statement, world.keys["lab-a"]), InvalidStatement,
            r"compute-inventory:v1: field 'nickname': unknown field")


def test_missing_field(world: World) -> None:
    statement = inventory(world)
    del statement["predicate"]["as_of"]
    refused(world, forge_envelope(statement, world.keys["lab-a"]), InvalidStatement,
            r"field 'as_of': required field is missing")


def test_wrong_type(world: World) -> None:
    statement = inventory(world)
    statement["predicate"]["clusters"][0]["chips"][0]["count"] = "100"
    refused(world, forge_envelope(statement, world.keys["lab-a"]), InvalidStatement,
            r"field 'clusters\[0\]\.chips\[0\]\.count': Input should be a valid integer")


def test_over_a_statement_bound(world: World) -> None:
    statement = inventory(world)
    statement["predicate"]["clusters"][0]["site"] = "s" * 300  # a Label is at most 256 characters
    env = forge_envelope(statement, world.keys["lab-a"])
    refused(world, env, InvalidStatement, r"field 'clusters\[0\]\.site': String should have at most 256 characters")


def test_over_the_entry_size(world: World) -> None:
    statement = statement_of(world, "lab-a", Indicator, name="ai-code-share", subject="repo", value=0.5,
                             unit="fraction", window_start=utc(0), window_end=utc(1000), method="git",
                             method_version="1", evidence_digest={"sha256": H64})
    statement["predicate"]["padding"] = "x" * 70_000
    env = forge_envelope(statement, world.keys["lab-a"])
    err = refused(world, env, EntryTooLarge, r"entry is \d+ bytes, over the limit of 65527")
    assert isinstance(err, InputTooLarge)


def test_unknown_predicate_type(world: World) -> None:
    statement = inventory(world)
    statement["predicateType"] = "urn:redline:compute-inventory:v9"
    refused(world, forge_envelope(statement, world.keys["lab-a"]), InvalidStatement,
            r"unknown predicate type 'urn:redline:compute-inventory:v9'")


def test_subjects_not_implied_by_the_predicate(world: World) -> None:
    statement = inventory(world)
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    refused(world, forge_envelope(statement, world.keys["lab-a"]), InvalidStatement,
            r"subjects do not match the predicate")


# --- policies ---------------------------------------------------------------------------------


def _bad_metric_document() -> dict[str, Any]:
    doc = POLICY.document()
    doc["lines"][0]["metric"] = "training_vibes"
    return doc


def test_policy_publication_naming_an_unknown_metric(world: World) -> None:
    doc = _bad_metric_document()
    env = world.envelope("coordinator", PolicyPublication, policy_id=POLICY.id, version="2", document=doc,
                         document_digest=canonical_digest(doc), effective_from=utc(world.clock()), supersedes=[])
    refused(world, env, InvalidPolicy, r"policy 'coordinated-pause': lines\.0.*unknown metric 'training_vibes'")


def test_policy_from_document_naming_an_unknown_metric() -> None:
    with pytest.raises(InvalidPolicy, match=r"lines\.0.*unknown metric 'training_vibes' \(known: "):
        policy_from_document(_bad_metric_document())


def test_policy_publication_not_in_normal_form(world: World) -> None:
    doc = POLICY.document()
    del doc["parameters"]  # valid, but defaults not written out: another digest for the same policy
    env = world.envelope("coordinator", PolicyPublication, policy_id=POLICY.id, version="1", document=doc,
                         document_digest=canonical_digest(doc), effective_from=utc(world.clock()), supersedes=[])
    refused(world, env, InvalidStatement, r"field 'document': the policy document is not in normal form")


def test_commitment_to_an_unpublished_policy(world: World) -> None:
    other = load_pack("eu-ai-act")
    env = world.envelope("lab-a", Commitment, **commitment_fields(other))
    refused(world, env, InvalidStatement, rf"field 'policy_digest': no published policy has digest {other.digest}")


# --- references and genesis -------------------------------------------------------------------


def test_run_progress_for_an_undeclared_run(world: World) -> None:
    env = world.envelope("lab-b", RunProgress, run_id="ra1", step=10, flop_so_far=1e20, commitments=commits(),
                         spec_digest=None, as_of=utc(world.clock()))  # ra1 is lab-a's run, not lab-b's
    refused(world, env, InvalidStatement, r"field 'run_id': no run 'ra1' declared by 'lab-b'")


def test_a_second_genesis(world: World) -> None:
    coordinator = world.keys["coordinator"]
    env = world.envelope("coordinator", Genesis, origin="redline.example/log", coordinator="coordinator",
                         coordinator_key=coordinator.verifier().to_string())
    refused(world, env, NotAuthorized, r"a genesis statement may only be the log's first entry")
    with pytest.raises(MalformedInput, match=r"already holds \d+ entries; genesis must be first"):
        Registry.genesis(world.log, coordinator)
    assert world.state.coordinator == "coordinator" and world.log.size == 7


def test_a_refused_statement_does_not_use_up_the_sequence_number(world: World) -> None:
    bad = world.envelope("lab-a", Commitment, **commitment_fields(load_pack("eu-ai-act")))
    with pytest.raises(InvalidStatement):
        world.registry.submit(bad)
    good = world.sub("lab-a", ComputeInventory, **inventory_fields(7))
    assert good.predicate.seq == 2 and world.state.parties["lab-a"].last_seq == 2
