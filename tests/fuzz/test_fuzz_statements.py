"""Fuzz statement parsing: real signed statements, mutated as bytes and as JSON, through ``parse_payload`` (whose
fast path must agree with its step-by-step path) and ``open_envelope``."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

from hypothesis import example, given
from hypothesis import strategies as st
from scenario_kit import (
    T0_MS,
    commitment_fields,
    finish_fields,
    inventory_fields,
    key,
    progress_fields,
    publication_fields,
    report_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

from redline.crypto.canonical import canonical_json
from redline.crypto.dsse import Envelope
from redline.policy import load_pack
from redline.statements import (
    Commitment,
    ComputeInventory,
    Predicate,
    RunFinish,
    RunProgress,
    RunStart,
    VerificationReport,
    base,
    open_envelope,
    parse_payload,
    sign_predicate,
    to_statement,
)
from redline.statements import PolicyPublication as Publication

from .common import fuzz_settings, json_bytes, mutated, ok, outcome

LAB, AUDITOR, COORD = key("lab-a"), key("auditor-x"), key("coordinator")
KEYS = [LAB.verifier(), AUDITOR.verifier(), COORD.verifier()]
_SPEC = run_spec("lab-a", "run-1")
_POLICY = load_pack("coordinated-pause")

PREDICATES: list[Predicate] = [
    ComputeInventory.build(party="lab-a", seq=1, **inventory_fields(1024)),
    RunStart.build(party="lab-a", seq=2, **run_start_fields("run-1", "frontier-7", 9.5e25, spec=_SPEC)),
    RunProgress.build(party="lab-a", seq=3, **progress_fields("run-1", 50, 4e25, spec=_SPEC)),
    RunFinish.build(party="lab-a", seq=4, **finish_fields("run-1", 9.1e25, weights("final"), spec=_SPEC,
                                                          when=utc(T0_MS + 1))),
    VerificationReport.build(party="auditor-x", seq=1, **report_fields("lab-a", "run-1", 3, "fail")),
    Publication.build(party="coordinator", seq=2, **publication_fields(_POLICY)),
    Commitment.build(party="lab-a", seq=5, **commitment_fields(_POLICY)),
]
_SIGNERS = {"lab-a": LAB, "auditor-x": AUDITOR, "coordinator": COORD}
PAYLOADS = [canonical_json(to_statement(p)) for p in PREDICATES]
ENVELOPES = [sign_predicate(p, _SIGNERS[p.party]).to_json() for p in PREDICATES]
_STATEMENTS = [json.loads(p) for p in PAYLOADS]


def _reference(payload: bytes) -> Predicate:
    """``parse_payload`` by its step-by-step path alone (``open_statement``'s checks, then ``parse_statement``)."""
    with patch.object(base, "_parse_payload_fast", lambda payload: None):
        return parse_payload(payload)


def _deep(payload: bytes, depth: int) -> bytes:
    return payload.replace(b'"predicate":{', b'"predicate":{"x":' + b"[" * depth + b"]" * depth + b",", 1)


@fuzz_settings(250)
@given(st.one_of(mutated(PAYLOADS), json_bytes(_STATEMENTS)))
@example(_deep(PAYLOADS[0], 100_000))
@example(PAYLOADS[0].replace(b'"seq":1', b'"seq":1,"seq":1'))
@example(PAYLOADS[0].replace(b'"seq":1', b'"seq":' + b"9" * 5000))
@example(PAYLOADS[0].replace(b'"seq":1', b'"seq":1e400'))
@example(PAYLOADS[0].replace(b'"c1"', b'"\\ud800"'))
@example(PAYLOADS[0].replace(b'"predicate":', b'"extra":null,"predicate":', 1))  # an unknown top-level field
def test_parse_payload_agrees_with_the_step_by_step_checks(payload: bytes) -> None:
    """parse_payload: a predicate or a RedlineError, and the same verdict (and predicate) as the full checks."""
    got = outcome(parse_payload, payload)
    want = outcome(_reference, payload)
    assert ok(got) == ok(want), (got, want)
    if ok(got):
        assert got[1] == want[1]
        assert parse_payload(canonical_json(to_statement(got[1]))) == got[1]


@fuzz_settings(30)
@given(st.sampled_from(range(len(PREDICATES))))
def test_statement_round_trip(i: int) -> None:
    """parse_payload(canonical statement of p) == p, and the signed envelope opens to p."""
    assert parse_payload(PAYLOADS[i]) == PREDICATES[i]
    assert open_envelope(Envelope.from_json(ENVELOPES[i]), KEYS)[0] == PREDICATES[i]


def _open(data: bytes) -> Any:
    return open_envelope(Envelope.from_json(data), KEYS)


@fuzz_settings(250)
@given(st.one_of(mutated(ENVELOPES), json_bytes([json.loads(e) for e in ENVELOPES])))
def test_envelope_opens_or_is_refused(data: bytes) -> None:
    """open_envelope on mutated signed statements: an opened one is one of the statements signed."""
    result = outcome(_open, data)
    if ok(result):
        assert result[1][0] in PREDICATES
