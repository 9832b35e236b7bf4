"""The statement vocabulary: round trips, strictness, bounds, signatures and digests."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.crypto.canonical import canonical_digest, canonical_json, parse_json
from redline.crypto.dsse import Envelope, sign_statement
from redline.crypto.keys import SigningKey
from redline.errors import BadSignature, InvalidStatement, MalformedInput, NotAuthorized, UnknownKey
from redline.statements import (
    PREDICATE_KINDS,
    PREDICATE_TYPES,
    Admission,
    AttestedUsage,
    BaseModelRegistration,
    Check,
    ChipCount,
    Cluster,
    Commitment,
    ComputeAttestation,
    ComputeInventory,
    ComputeUsageReport,
    Declaration,
    Environment,
    EvaluationResult,
    FactoryRef,
    FlopEstimates,
    Genesis,
    Indicator,
    Init,
    KeyRevocation,
    KeyRotation,
    PauseAcknowledgement,
    PolicyPublication,
    Predicate,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewFinding,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunSpec,
    RunStart,
    RunUsage,
    TranscriptCommitments,
    VerificationReport,
    open_envelope,
    parse_payload,
    parse_payload_canonical,
    parse_predicate,
    parse_statement,
    predicate_digest,
    register,
    sign_predicate,
    to_statement,
)

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
H = "ab" * 32
H2 = "cd" * 32
H3 = "ef" * 32


def key(name: str) -> SigningKey:
    """A deterministic key per name (the seed is derived from the name)."""
    return SigningKey(name, bytes.fromhex(canonical_digest(name)))


COORD, LAB, AUDITOR, REGULATOR = key("coordinator"), key("lab-a"), key("auditor-x"), key("regulator-eu")
POLICY_DOC = {"lines": [{"id": "eu-ai-act", "metric": "training_flop", "threshold": 1e25}], "name": "demo"}
COMMITS = TranscriptCommitments(steps_root=H, data_root=H2, checkpoints_root=H3, step_count=1000)


def spec(init: Init | None = None, *, run_id: str = "run-2") -> RunSpec:
    """A run spec of lab-a's ``run_id`` (a fresh initialisation unless ``init`` says otherwise)."""
    ref = FactoryRef(name="tinygpt", distribution="redline", version="0.1.0", files_digest=H3, kwargs={"d": 64})
    return RunSpec(format="redline-run-spec/v1", party="lab-a", run_id=run_id, redline_version="0.1.0",
                   environment=Environment(python="3.12.1", torch="2.5.1", numpy="2.1.0",
                                                          platform="Linux-x86_64", device_type="cpu",
                                                          device_name=None, cuda=None, cpu_capability="AVX512",
                                                          blas="OpenBLAS 0.3.27", onednn="3.5.3",
                                                          deterministic_algorithms=True, num_threads=1),
                   declaration=Declaration(model_factory=ref, optimizer=ref, max_grad_norm=1.0,
                                           notes=["no scheduler"]),
                   init=init or Init(kind="fresh", seed=7), parameter_count=123456, checkpoint_every=50,
                   digest_algorithms=["sha256", "blake3"])


def examples() -> list[Predicate]:
    """One valid predicate of every registered type, exercising optional fields and nesting."""
    return [
        Genesis(party="coordinator", seq=1, origin="redline.example/log", coordinator="coordinator",
                coordinator_key=COORD.verifier().to_string()),
        Admission(party="coordinator", seq=2, admitted="lab-a", verifier_key=LAB.verifier().to_string(),
                  role="lab", display_name="Lab A, Inc.", jurisdiction="US-CA"),
        KeyRotation(party="lab-a", seq=3, new_verifier_key=LAB.verifier().to_string()),
        KeyRevocation(party="coordinator", seq=3, revoked_party="lab-a", key_fingerprint=LAB.verifier().fingerprint,
                      reason="key leaked"),
        ComputeInventory(party="lab-a", seq=4, as_of=T0, clusters=[
            Cluster(cluster_id="c1", site="Council Bluffs, IA", chips=[ChipCount(chip_model="H100 SXM", count=1024),
                                                                       ChipCount(chip_model="B200", count=512)]),
            Cluster(cluster_id="tpu-pod", site="Eemshaven", chips=[ChipCount(chip_model="TPU v5p", count=8960)]),
        ]),
        ComputeUsageReport(party="lab-a", seq=5, period_start=T0, period_end=T0 + timedelta(days=30),
                           runs=[RunUsage(run_id="run-1", chip_hours=123456.5)], unaccounted_chip_hours=10.0),
        ComputeAttestation(party="lab-a", seq=6, customer="lab-a", period_start=T0,
                           period_end=T0 + timedelta(days=7),
                           usage=[AttestedUsage(cluster_id="us-east-7", chip_model="H100 SXM", chip_count=1024,
                                                chip_hours=172032.0)], run_ids=["run-1"], final=False),
        RunStart(party="lab-a", seq=6, run_id="run-1", model_name="frontier-7", base_model="frontier-6",
                 base_model_flop=3.2e24, declared_flop=9.5e25, flop_method="6ND",
                 hardware=[ChipCount(chip_model="H100 SXM", count=1024)], started_at=T0),
        RunProgress(party="lab-a", seq=7, run_id="run-1", step=500, flop_so_far=4.0e25, commitments=COMMITS,
                    spec_digest=None, as_of=T0 + timedelta(days=3, microseconds=250)),
        RunFinish(party="lab-a", seq=8, run_id="run-1", total_flop=9.1e25,
                  flop_estimates=FlopEstimates(counted=9.1e25, six_nd=8.8e25), estimates_disagree=False,
                  final_model_digest={"blake3": H2}, commitments=COMMITS, spec_digest=None, manifest_digest=None,
                  finished_at=T0 + timedelta(days=10)),
        RunStart(party="lab-a", seq=15, run_id="run-2", model_name="frontier-7-ft", base_model="frontier-7",
                 declared_flop=1e23, flop_method="counted", hardware=[], started_at=T0,
                 spec=spec(Init(kind="base", base_model_digest=H)), init_model_digest=H),
        RunProgress(party="lab-a", seq=16, run_id="run-2", step=50, flop_so_far=5e22, commitments=COMMITS,
                    spec_digest=spec(Init(kind="base", base_model_digest=H)).digest(), as_of=T0),
        RunFinish(party="lab-a", seq=17, run_id="run-2", total_flop=1e23, flop_estimates=FlopEstimates(counted=1e23),
                  estimates_disagree=False, final_model_digest={"sha256": H3}, commitments=COMMITS,
                  spec_digest=spec(Init(kind="base", base_model_digest=H)).digest(), manifest_digest=H2,
                  finished_at=T0),
        BaseModelRegistration(party="regulator-eu", seq=4, model_name="open-weights-9", model_digest=H2,
                              training_flop=7e24, source="https://example.org/open-weights-9"),
        EvaluationResult(party="auditor-x", seq=1, model_name="frontier-7", model_digest={"sha256": H},
                         suite="inspect_evals", task="swe-bench-verified", metric="accuracy", value=0.4125,
                         evaluator="Inspect AI 0.3", log_digest={"sha256": H2}, evaluated_at=T0),
        Indicator(party="lab-a", seq=9, name="ai-code-share", subject="github.com/lab-a/trainer", value=0.37,
                  unit="fraction", interval_low=0.31, interval_high=0.43, window_start=T0,
                  window_end=T0 + timedelta(days=90), method="git-trailer", method_version="1",
                  evidence_digest={"sha256": H3}),
        VerificationReport(party="auditor-x", seq=2, run_id="run-1", run_party="lab-a",
                           checks=[Check(name="segment-replay", passed=False, detail="step 412 diverges\nby 3e-2"),
                                   Check(name="flop-cross-check", passed=True, detail="")],
                           verdict="fail", compute_spent_flop=1.2e23, sample_seed="00ff" * 8, segments_checked=16,
                           p_detect=0.99, failing_step=412, declaration_index=8),
        PolicyPublication(party="coordinator", seq=4, policy_id="eu-ai-act", version="2025.07", document=POLICY_DOC,
                          document_digest=canonical_digest(POLICY_DOC), effective_from=T0, supersedes=[]),
        Commitment(party="lab-a", seq=10, policy_digest=canonical_digest(POLICY_DOC),
                   pauses=["training", "releases"], quorum={"kind": "compute-share", "threshold": 0.6},
                   expires_at=T0 + timedelta(days=365)),
        PauseAcknowledgement(party="lab-a", seq=11, pause_id="42"),
        ResumeProposal(party="regulator-eu", seq=1, proposal_id="resume-1", reason="Mitigations verified."),
        ResumeApproval(party="lab-a", seq=12, proposal_id="resume-1"),
        ReviewSubmission(party="lab-a", seq=13, submission_id="sub-1", model_name="frontier-7",
                         model_digest={"sha256": H}, run_id="run-1"),
        ReviewFinding(party="regulator-eu", seq=2, submitter="lab-a", submission_id="sub-1",
                      finding="Uplift on bio tasks.", severity="concern"),
        ReviewDecision(party="regulator-eu", seq=3, submitter="lab-a", submission_id="sub-1", decision="clear",
                       reason="Mitigated."),
        Release(party="lab-a", seq=14, model_name="frontier-7", model_digest={"sha256": H}, released_at=T0),
    ]


EXAMPLES = examples()
KEYS = {k.name: k for k in (COORD, LAB, AUDITOR, REGULATOR)}
VERIFIERS = [k.verifier() for k in KEYS.values()]
IDS = [p.KIND for p in EXAMPLES]


def _time_fields(pred: Predicate) -> list[str]:
    return [name for name, value in pred if isinstance(value, datetime)]


def _reject(statement: dict[str, Any], *needles: str) -> str:
    with pytest.raises(InvalidStatement) as info:
        parse_statement(statement)
    message = str(info.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_every_registered_type_has_an_example() -> None:
    assert sorted({type(p).PREDICATE_TYPE for p in EXAMPLES}) == sorted(PREDICATE_TYPES)
    assert len(PREDICATE_TYPES) == len(PREDICATE_KINDS) == 23
    for ptype, cls in PREDICATE_TYPES.items():
        assert re.fullmatch(r"urn:redline:[a-z0-9-]+:v[1-9][0-9]*", ptype), ptype
        assert cls.__doc__ and cls.__doc__.strip()


@pytest.mark.parametrize("pred", EXAMPLES, ids=IDS)
def test_round_trip_through_signed_envelope(pred: Predicate) -> None:
    statement = to_statement(pred)
    assert statement["predicateType"] == pred.PREDICATE_TYPE
    assert statement["subject"][0] == {"name": f"{pred.party}/{pred.KIND}/{pred.seq}",
                                       "digest": {"sha256": predicate_digest(pred)}}
    assert parse_statement(statement) == pred
    # the statement survives a JSON text round trip byte for byte
    again = json.loads(canonical_json(statement))
    assert parse_statement(again) == pred
    assert canonical_json(to_statement(parse_statement(again))) == canonical_json(statement)

    env = sign_predicate(pred, KEYS[pred.party])
    opened, signer = open_envelope(Envelope.from_json(env.to_json()), VERIFIERS)
    assert opened == pred
    assert type(opened) is type(pred)
    assert signer == KEYS[pred.party].verifier()
    assert predicate_digest(opened) == predicate_digest(pred) == opened.digest
    assert env.payload == canonical_json(statement)


@pytest.mark.parametrize("pred", EXAMPLES, ids=IDS)
def test_unknown_field_rejected(pred: Predicate) -> None:
    statement = to_statement(pred)
    statement["predicate"]["sneaky_extra"] = 1
    _reject(statement, pred.PREDICATE_TYPE, "field 'sneaky_extra'", "unknown field")


@pytest.mark.parametrize("pred", [p for p in EXAMPLES if _time_fields(p)], ids=lambda p: p.KIND)
def test_naive_datetime_rejected(pred: Predicate) -> None:
    for field in _time_fields(pred):
        statement = to_statement(pred)
        statement["predicate"][field] = statement["predicate"][field].removesuffix("Z")
        _reject(statement, pred.PREDICATE_TYPE, f"field '{field}'", "timezone")
        naive = dict(pred)
        naive[field] = getattr(pred, field).replace(tzinfo=None)
        with pytest.raises(pydantic.ValidationError):
            type(pred)(**naive)
        with pytest.raises(InvalidStatement, match=f"field '{field}'"):
            type(pred).build(**naive)


def test_times_are_normalised_to_utc_and_written_canonically() -> None:
    cet = timezone(timedelta(hours=2))
    pred = Release(party="lab-a", seq=1, model_name="m", model_digest={"sha256": H},
                   released_at=datetime(2025, 7, 1, 14, 0, tzinfo=cet))
    assert pred.released_at.utcoffset() == timedelta(0)
    assert to_statement(pred)["predicate"]["released_at"] == "2025-07-01T12:00:00Z"
    statement = to_statement(pred)
    for other in ("2025-07-01T14:00:00+02:00", "2025-07-01T12:00:00+00:00", "2025-07-01T12:00:00.000000Z",
                  "2025-07-01 12:00:00Z"):
        statement["predicate"]["released_at"] = other
        _reject(statement, "not in canonical form", "field 'released_at'")
    for bad in (1751371200, "2025-07-01", "yesterday"):
        statement["predicate"]["released_at"] = bad
        _reject(statement, "field 'released_at'")


def test_from_json_obj_is_lenient_about_form_but_not_content() -> None:
    obj = {"party": "lab-a", "seq": 3, "submission_id": "s", "model_name": "m", "model_digest": {"sha256": H}}
    pred = ReviewSubmission.from_json_obj(obj)
    assert pred.run_id is None
    release = Release.from_json_obj({"party": "lab-a", "seq": 4, "model_name": "m", "model_digest": {"sha256": H},
                                     "released_at": "2025-07-01T14:00:00+02:00"})
    assert to_statement(release)["predicate"]["released_at"] == "2025-07-01T12:00:00Z"
    with pytest.raises(InvalidStatement, match="field 'released_at'"):
        Release.from_json_obj({**to_statement(release)["predicate"], "released_at": "2025-07-01T14:00:00"})
    with pytest.raises(InvalidStatement, match="field 'extra': unknown field"):
        ReviewSubmission.from_json_obj({**obj, "extra": 1})
    with pytest.raises(InvalidStatement, match="field 'declared_flop'"):
        RunStart.from_json_obj({**to_statement(EXAMPLES[IDS.index("run-start")])["predicate"],
                                "declared_flop": float("nan")})


def test_missing_optional_field_must_be_written_as_null() -> None:
    pred = EXAMPLES[IDS.index("review-submission")]
    statement = to_statement(pred.model_copy(update={"run_id": None}))
    assert statement["predicate"]["run_id"] is None
    del statement["predicate"]["run_id"]
    _reject(statement, "not in canonical form", "field 'run_id' is missing", "null")


def test_missing_required_field_rejected() -> None:
    statement = to_statement(EXAMPLES[IDS.index("run-start")])
    del statement["predicate"]["declared_flop"]
    _reject(statement, "field 'declared_flop'", "missing")


@pytest.mark.parametrize(("kind", "field", "value"), [
    ("run-start", "model_name", "m" * 129),
    ("run-start", "run_id", ""),
    ("run-start", "run_id", "has space"),
    ("run-start", "party", "lab+a"),
    ("review-finding", "finding", "x" * 4097),
    ("review-finding", "finding", ""),
    ("review-finding", "finding", "bell\x07"),
    ("admission", "display_name", "d" * 257),
    ("admission", "display_name", "two\nlines"),
    ("evaluation", "suite", " padded"),
    ("run-start", "hardware", [{"chip_model": "H100 SXM", "count": 1}] * 1001),
    ("compute-usage", "runs", [{"run_id": f"r{i}", "chip_hours": 1.0} for i in range(1001)]),
    ("commitment", "pauses", []),
    ("verification-report", "checks", []),
    ("verification-report", "sample_seed", "ab" * 65),
    ("verification-report", "sample_seed", "ABCD"),
    ("policy", "document_digest", H.upper()),
    ("release", "model_digest", {"sha256": H, "blake3": H}),
    ("release", "model_digest", {"sha512": H + H}),
    ("release", "model_digest", {"sha256": H[:-1]}),
    ("release", "model_digest", {}),
])
def test_out_of_bounds_values_rejected(kind: str, field: str, value: Any) -> None:
    pred = EXAMPLES[IDS.index(kind)]
    statement = to_statement(pred)
    statement["predicate"][field] = value
    _reject(statement, pred.PREDICATE_TYPE, f"field '{field}")


@pytest.mark.parametrize("value", [-1.0, -1e-300, 1.1e35, True, "1e25", None])
def test_bad_flop_rejected(value: Any) -> None:
    statement = to_statement(EXAMPLES[IDS.index("run-start")])
    statement["predicate"]["declared_flop"] = value
    _reject(statement, "urn:redline:training-run-start:v2", "field 'declared_flop'")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_rejected(value: float) -> None:
    statement = to_statement(EXAMPLES[IDS.index("run-start")])
    statement["predicate"]["declared_flop"] = value
    _reject(statement, "field 'declared_flop'")
    fields = dict(EXAMPLES[IDS.index("run-start")])
    fields["declared_flop"] = value
    with pytest.raises(InvalidStatement, match="declared_flop"):
        RunStart.build(**fields)
    eval_fields = dict(EXAMPLES[IDS.index("evaluation")])
    eval_fields["value"] = value
    with pytest.raises(InvalidStatement, match="field 'value'"):
        EvaluationResult.build(**eval_fields)


def test_strict_types_no_coercion() -> None:
    statement = to_statement(EXAMPLES[IDS.index("run-finish")])
    for field, value in (("seq", "8"), ("seq", True), ("seq", 8.5), ("estimates_disagree", "false"),
                         ("estimates_disagree", 0), ("run_id", 7)):
        bad = copy.deepcopy(statement)
        bad["predicate"][field] = value
        _reject(bad, f"field '{field}'")
    for seq in (0, -1, 2**53):
        bad = copy.deepcopy(statement)
        bad["predicate"]["seq"] = seq
        _reject(bad, "field 'seq'")


def test_unknown_predicate_type_rejected() -> None:
    statement = to_statement(EXAMPLES[0])
    statement["predicateType"] = "urn:redline:time-machine:v1"
    _reject(statement, "unknown predicate type", "urn:redline:time-machine:v1")
    with pytest.raises(InvalidStatement, match="unknown predicate type"):
        parse_predicate("https://slsa.dev/provenance/v1", {})


def test_malformed_statement_shape_is_invalid_statement() -> None:
    statement = to_statement(EXAMPLES[0])
    for mutate in (lambda s: s.pop("subject"), lambda s: s.update(_type="x"), lambda s: s.update(extra=1),
                   lambda s: s.update(predicate=[1])):
        bad = copy.deepcopy(statement)
        mutate(bad)
        with pytest.raises(InvalidStatement):
            parse_statement(bad)
    with pytest.raises(InvalidStatement):
        parse_statement([statement])


def test_subjects_must_match_the_predicate() -> None:
    pred = EXAMPLES[IDS.index("run-finish")]
    statement = to_statement(pred)
    names = [s["name"] for s in statement["subject"]]
    assert names == ["lab-a/run-finish/8", "lab-a/run/run-1", "lab-a/run/run-1/steps", "lab-a/run/run-1/data",
                     "lab-a/run/run-1/checkpoints", "lab-a/run/run-1/model"]
    assert statement["subject"][-1]["digest"] == {"blake3": H2}
    for mutate in (lambda s: s["subject"].pop(), lambda s: s["subject"].reverse(),
                   lambda s: s["subject"][0].update(name="lab-b/run-finish/8"),
                   lambda s: s["subject"][2]["digest"].update(sha256=H3)):
        bad = copy.deepcopy(statement)
        mutate(bad)
        _reject(bad, "subjects do not match")


def test_modified_payload_fails_signature() -> None:
    pred = EXAMPLES[IDS.index("run-start")]
    env = sign_predicate(pred, LAB)
    doc = json.loads(env.to_json())
    tampered = env.payload.replace(b"9.5e+25", b"9.5e+24")
    assert tampered != env.payload
    doc["payload"] = Envelope(tampered, env.payload_type, env.signatures).to_dict()["payload"]
    with pytest.raises(BadSignature):
        open_envelope(Envelope.from_json(canonical_json(doc)), VERIFIERS)
    with pytest.raises(UnknownKey):
        open_envelope(env, [COORD.verifier()])


def test_signer_must_be_the_speaking_party() -> None:
    pred = EXAMPLES[IDS.index("run-start")]
    with pytest.raises(NotAuthorized, match="cannot sign for party 'lab-a'"):
        sign_predicate(pred, AUDITOR)
    forged = sign_statement(to_statement(pred), AUDITOR)  # a valid signature by the wrong party
    with pytest.raises(NotAuthorized, match="signed by key 'auditor-x'"):
        open_envelope(forged, VERIFIERS)


def test_sign_refuses_an_unvalidated_model() -> None:
    fields = dict(EXAMPLES[IDS.index("run-start")])
    fields["declared_flop"] = -5.0
    bogus = RunStart.model_construct(**fields)
    with pytest.raises(InvalidStatement, match="declared_flop"):
        sign_predicate(bogus, LAB)


def test_predicate_too_large_rejected() -> None:
    statement = to_statement(EXAMPLES[IDS.index("review-finding")])
    statement["predicate"]["padding"] = "x" * 70_000
    _reject(statement, "over the limit")


PINNED_DIGEST = "51312c85ccda5f8d7cc7e1d55cf8d22e3feb6f9d093de4e0bf78cb25eb06401b"


def test_digest_pinned_and_equal_to_canonical_digest() -> None:
    pred = PauseAcknowledgement(party="lab-a", seq=11, pause_id="42", log="redline.example/log")
    assert canonical_json(pred.model_dump(mode="json")) == \
        b'{"log":"redline.example/log","party":"lab-a","pause_id":"42","seq":11}'
    assert predicate_digest(pred) == canonical_digest({"log": "redline.example/log", "party": "lab-a",
                                                       "pause_id": "42", "seq": 11})
    assert predicate_digest(pred) == PINNED_DIGEST


def test_digests_stable_across_processes() -> None:
    statements = [to_statement(p) for p in EXAMPLES]
    script = (
        "import json, sys\n"
        "from redline.crypto.canonical import canonical_json\n"
        "from redline.statements import parse_statement, predicate_digest, to_statement\n"
        "out = []\n"
        "for s in json.load(sys.stdin):\n"
        "    p = parse_statement(s)\n"
        "    out.append([predicate_digest(p), canonical_json(to_statement(p)).hex()])\n"
        "json.dump(out, sys.stdout)\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(statements), capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    theirs = json.loads(result.stdout)
    ours = [[predicate_digest(p), canonical_json(to_statement(p)).hex()] for p in EXAMPLES]
    assert theirs == ours
    assert len({d for d, _ in ours}) == len(EXAMPLES)


# --- family-specific rules ---------------------------------------------------


def _with(kind: str, **changes: Any) -> dict[str, Any]:
    statement = to_statement(EXAMPLES[IDS.index(kind)])
    statement["predicate"].update(changes)
    return statement


def _accept(kind: str, **changes: Any) -> Predicate:
    pred = EXAMPLES[IDS.index(kind)]
    changed = type(pred).build(**{**dict(pred), **changes})
    assert parse_statement(to_statement(changed)) == changed
    return changed


def test_parties_keys_must_match_names() -> None:
    _reject(_with("genesis", coordinator_key=LAB.verifier().to_string()), "coordinator_key", "'lab-a'")
    _reject(_with("genesis", coordinator="other", coordinator_key=key("other").verifier().to_string()),
            "'coordinator'", "speaking party")
    _reject(_with("admission", admitted="lab-b"), "verifier_key", "'lab-b'")
    _reject(_with("admission", verifier_key="lab-a+00000000+AAAA"), "field 'verifier_key'", "not a valid verifier key")
    _reject(_with("admission", role="king"), "field 'role'")
    _reject(_with("key-rotation", new_verifier_key=AUDITOR.verifier().to_string()), "new_verifier_key", "auditor-x")
    statement = to_statement(EXAMPLES[IDS.index("admission")])
    assert statement["subject"][1] == {"name": "key/lab-a", "digest": {"sha256": LAB.verifier().fingerprint}}


def test_compute_inventory_chips_and_h100e() -> None:
    inv = EXAMPLES[IDS.index("compute-inventory")]
    assert isinstance(inv, ComputeInventory)
    assert inv.clusters[0].h100e() == pytest.approx(1024 + 512 * 2250 / 989)
    assert inv.clusters[1].h100e() == pytest.approx(8960 * 459 / 989)
    assert inv.h100e() == pytest.approx(inv.clusters[0].h100e() + inv.clusters[1].h100e())
    assert inv.chip_totals() == {"H100 SXM": 1024, "B200": 512, "TPU v5p": 8960}
    statement = to_statement(inv)
    statement["predicate"]["clusters"][1]["chips"][0]["chip_model"] = "Quantum Abacus 9000"
    _reject(statement, "field 'clusters[1].chips[0].chip_model'", "unknown chip 'Quantum Abacus 9000'")
    statement = to_statement(inv)
    statement["predicate"]["clusters"][1]["chips"][0]["count"] = 0
    _reject(statement, "field 'clusters[1].chips[0].count'")
    statement = to_statement(inv)
    statement["predicate"]["clusters"][1]["cluster_id"] = "c1"
    _reject(statement, "duplicate cluster_id 'c1'")


def test_compute_usage_period_and_runs() -> None:
    _reject(_with("compute-usage", period_end="2025-07-01T12:00:00Z"), "period_start")
    _reject(_with("compute-usage", unaccounted_chip_hours=-1.0), "field 'unaccounted_chip_hours'")
    _reject(_with("compute-usage", runs=[{"run_id": "a", "chip_hours": 1.0}] * 2), "duplicate run_id 'a'")
    usage = EXAMPLES[IDS.index("compute-usage")]
    assert isinstance(usage, ComputeUsageReport)
    assert usage.total_chip_hours() == pytest.approx(123466.5)


def test_run_rules() -> None:
    _reject(_with("run-start", base_model=None), "base_model_flop")
    _reject(_with("run-start", flop_method="hardware", hardware=[]), "field 'hardware'")
    _reject(_with("run-start", flop_method="guess"), "field 'flop_method'")
    _reject(_with("run-progress", commitments={"steps_root": H, "data_root": H, "checkpoints_root": "00",
                                               "step_count": 1}), "field 'commitments.checkpoints_root'")
    _reject(_with("run-finish", flop_estimates={"counted": -1.0, "six_nd": None, "hardware": None}),
            "field 'flop_estimates.counted'")
    progress = to_statement(EXAMPLES[IDS.index("run-progress")])
    assert {"name": "lab-a/run/run-1/steps", "digest": {"sha256": H}} in progress["subject"]
    _reject(_with("run-progress", spec_digest="00"), "field 'spec_digest'")
    _reject(_with("run-finish", spec_digest=H), "'spec_digest' and 'manifest_digest' are given together")
    _reject(_with("run-finish", manifest_digest=H), "'spec_digest' and 'manifest_digest' are given together")
    statement = to_statement(EXAMPLES[IDS.index("run-progress")])
    del statement["predicate"]["spec_digest"]  # required, even when null
    _reject(statement, "field 'spec_digest'")


SPEC_START = next(p for p in EXAMPLES if isinstance(p, RunStart) and p.spec is not None)


def _spec_start(**changes: Any) -> dict[str, Any]:
    statement = copy.deepcopy(to_statement(SPEC_START))
    statement["predicate"].update(changes)
    return statement


def test_run_spec_rules() -> None:
    assert isinstance(SPEC_START, RunStart) and SPEC_START.spec is not None
    assert SPEC_START.spec_digest == canonical_digest(SPEC_START.spec.model_dump(mode="json"))
    assert EXAMPLES[IDS.index("run-start")].spec_digest is None  # type: ignore[attr-defined]
    _reject(_spec_start(init_model_digest=None), "'spec' and 'init_model_digest' are given together")
    _reject(_spec_start(init_model_digest=H2), "'init_model_digest' must be the base model's digest")
    _reject(_spec_start(base_model_flop=1e20), "'base_model_flop' is not declared for a run with a spec")
    fresh = spec().model_dump(mode="json")
    _reject(_spec_start(spec=fresh, init_model_digest=H2), "'base_model' is given but 'spec.init' is a fresh")
    ok = RunStart.build(**{**dict(SPEC_START), "spec": spec(), "init_model_digest": H2, "base_model": None})
    assert parse_statement(to_statement(ok)) == ok and ok.spec_digest == spec().digest() != SPEC_START.spec_digest
    _reject(_spec_start(spec={**fresh, "run_id": "run-9"}, base_model=None, init_model_digest=H2),
            "field 'spec' is the spec of run lab-a/run-9, not lab-a/run-2")
    for init, needle in (({"kind": "fresh", "seed": None, "base_model_digest": None}, "names a 'seed'"),
                         ({"kind": "fresh", "seed": 1, "base_model_digest": H}, "names a 'seed'"),
                         ({"kind": "base", "seed": 1, "base_model_digest": H}, "names a 'base_model_digest'"),
                         ({"kind": "base", "seed": None, "base_model_digest": None}, "names a 'base_model_digest'"),
                         ({"kind": "copy", "seed": 1, "base_model_digest": None}, "field 'spec.init.kind'")):
        _reject(_spec_start(spec={**fresh, "init": init}, base_model=None, init_model_digest=H2), needle)
    _reject(_spec_start(spec={**fresh, "digest_algorithms": ["blake3"]}, base_model=None, init_model_digest=H2),
            "must start with 'sha256'")
    bad_factory = copy.deepcopy(fresh)
    bad_factory["declaration"]["model_factory"]["name"] = "evil.module:make"
    _reject(_spec_start(spec=bad_factory, base_model=None, init_model_digest=H2),
            "field 'spec.declaration.model_factory.name'")


def test_base_model_registration() -> None:
    reg = EXAMPLES[IDS.index("base-model")]
    statement = to_statement(reg)
    assert statement["subject"][-1] == {"name": "model/open-weights-9", "digest": {"sha256": H2}}
    _reject(_with("base-model", model_digest={"sha256": H2}), "field 'model_digest'")
    _reject(_with("base-model", training_flop=-1.0), "field 'training_flop'")


def test_indicator_interval_and_window() -> None:
    _reject(_with("indicator", interval_low=0.5), "interval_low")
    _reject(_with("indicator", interval_high=0.2), "interval_high")
    _reject(_with("indicator", window_end="2025-06-01T00:00:00Z"), "window_start")
    _accept("indicator", interval_low=None, interval_high=None, rule_version="2025-1")


def test_verification_verdict_consistency() -> None:
    _reject(_with("verification-report", verdict="pass"), "verdict", "segment-replay")
    passing = [{"name": "segment-replay", "passed": True, "detail": ""}]
    _reject(_with("verification-report", checks=passing), "'fail' but no check failed")
    _reject(_with("verification-report", p_detect=1.01), "field 'p_detect'")
    _accept("verification-report", checks=passing, verdict="pass", failing_step=None, p_detect=None)
    undecided = [{"name": "segment-replay", "passed": False, "detail": "other device", "inconclusive": True}]
    _accept("verification-report", checks=undecided, verdict="inconclusive", failing_step=None,
            declaration_index=None)
    # an inconclusive verdict needs an inconclusive check and no failed one; a pass, no undecided check
    _reject(_with("verification-report", verdict="inconclusive", failing_step=None), "'inconclusive' only when")
    _reject(_with("verification-report", checks=undecided, verdict="pass", failing_step=None), "did not pass")
    _reject(_with("verification-report", checks=undecided, verdict="inconclusive"), "field 'failing_step'")
    _reject(_with("verification-report", checks=[{**undecided[0], "passed": True}], verdict="pass",
                  failing_step=None), "both passed and inconclusive")
    _reject(_with("verification-report", declaration_index=-1), "field 'declaration_index'")


def test_doubles_written_as_long_integers_round_trip() -> None:
    # RFC 8785 writes the double 1e20 as 100000000000000000000, which JSON parsers read as an integer.
    doc = {"cluster_flop_per_s": 1e20, "training_flop": 1e25, "n": 3}
    policy = _accept("policy", document=doc, document_digest=canonical_digest(doc))
    run = _accept("run-start", declared_flop=1e20, base_model_flop=2.0**60)
    for pred in (policy, run):
        env = sign_predicate(pred, KEYS[pred.party])
        assert b"100000000000000000000" in env.payload
        assert open_envelope(Envelope.from_json(env.to_json()), VERIFIERS)[0] == pred
        assert parse_statement(json.loads(env.payload)) == pred
    _reject(_with("run-start", seq=2**60), "field 'seq'")


def test_policy_document_digest_and_size() -> None:
    _reject(_with("policy", document_digest=H), "document_digest", canonical_digest(POLICY_DOC))
    big = {"blob": "x" * (49 * 1024)}
    _reject(_with("policy", document=big, document_digest=canonical_digest(big)), "field 'document'", "over")
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    _reject(_with("policy", document={"d": deep}, document_digest=canonical_digest({"d": deep})), "nested")
    _reject(_with("policy", document=[1, 2]), "field 'document'")


def test_commitment_quorum() -> None:
    _reject(_with("commitment", quorum={"kind": "count", "threshold": 0}), "threshold")
    _reject(_with("commitment", quorum={"kind": "count", "threshold": 2.5}), "threshold")
    _reject(_with("commitment", quorum={"kind": "compute-share", "threshold": 1.5}), "threshold")
    _reject(_with("commitment", quorum={"kind": "compute-share", "threshold": 0}), "threshold")
    _reject(_with("commitment", quorum={"kind": "majority", "threshold": 1}), "field 'quorum'")
    _reject(_with("commitment", pauses=["training", "training"]), "duplicate pause scope")
    _reject(_with("commitment", pauses=["everything"]), "field 'pauses[0]'")
    count = Commitment.build(**{**dict(EXAMPLES[IDS.index("commitment")]), "quorum": {"kind": "count", "threshold": 3}})
    assert parse_statement(to_statement(count)) == count
    whole = Commitment.build(**{**dict(EXAMPLES[IDS.index("commitment")]),
                                "quorum": {"kind": "compute-share", "threshold": 1}})
    assert whole.quorum.threshold == 1.0 and isinstance(whole.quorum.threshold, float)
    assert parse_statement(to_statement(whole)) == whole


def test_review_enums() -> None:
    _reject(_with("review-finding", severity="meh"), "field 'severity'")
    _reject(_with("review-decision", decision="maybe"), "field 'decision'")
    _accept("review-submission", run_id=None)


def test_models_are_frozen() -> None:
    pred = EXAMPLES[IDS.index("release")]
    with pytest.raises(pydantic.ValidationError):
        pred.seq = 99  # type: ignore[misc]


def test_register_refuses_bad_or_duplicate_types() -> None:
    with pytest.raises(TypeError, match="already registered"):
        @register
        class Dup(Predicate):
            """Same URN as the release."""

            PREDICATE_TYPE = "urn:redline:release:v1"
            KIND = "dup-release"

    with pytest.raises(TypeError, match="URN"):
        @register
        class NoUrn(Predicate):
            """Bad URN."""

            PREDICATE_TYPE = "https://example.com/x"
            KIND = "no-urn"

    with pytest.raises(TypeError, match="URN"):
        @register
        class NoVersion(Predicate):
            """URN without a version."""

            PREDICATE_TYPE = "urn:redline:no-version:1"
            KIND = "no-version"

    with pytest.raises(TypeError, match="docstring"):
        @register
        class NoDoc(Predicate):
            PREDICATE_TYPE = "urn:redline:no-doc:v1"
            KIND = "no-doc"

    assert "dup-release" not in PREDICATE_KINDS and "urn:redline:no-doc:v1" not in PREDICATE_TYPES


def test_statements_import_only_the_pure_core() -> None:
    script = (
        "import sys, redline.statements\n"
        "mods = sorted(m for m in sys.modules if m == 'redline' or m.startswith('redline.'))\n"
        "print('\\n'.join(mods))\n"
        "print('HEAVY', [m for m in ('torch', 'numpy', 'sqlite3', 'fastapi', 'httpx') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    lines = result.stdout.splitlines()
    assert lines[-1] == "HEAVY []"
    allowed = ("redline", "redline.errors", "redline.compute", "redline.compute.chips")
    for mod in lines[:-1]:
        assert mod in allowed or mod.startswith(("redline.crypto", "redline.statements")), mod


def test_chip_catalog_read_lazily() -> None:
    script = ("import redline.statements, redline.compute.chips as c\n"
              "print(c._catalog.cache_info().currsize)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "0"


# --- schemas -----------------------------------------------------------------

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_committed_schemas_match_a_fresh_export(tmp_path: Path) -> None:
    from redline.statements.schemas import schema_documents

    fresh = schema_documents()
    committed = {p.name: p.read_text("utf-8") for p in SCHEMA_DIR.iterdir() if p.is_file()}
    hint = "regenerate with: python -m redline.statements.schemas docs/schemas"
    assert sorted(committed) == sorted(fresh), hint
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale; {hint}"
    index = json.loads(fresh["index.json"])["predicateTypes"]
    assert sorted(e["predicateType"] for e in index) == sorted(PREDICATE_TYPES)
    for entry in index:
        schema = json.loads(fresh[entry["schema"]])
        assert schema["$id"] == entry["predicateType"]
        assert schema["additionalProperties"] is False


def test_schema_cli_writes_the_same_files(tmp_path: Path) -> None:
    from redline.statements.schemas import schema_documents

    result = subprocess.run([sys.executable, "-m", "redline.statements.schemas", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    written = {p.name: p.read_text("utf-8") for p in (tmp_path / "out").iterdir()}
    assert written == schema_documents()
    assert all(text.endswith("}\n") for text in written.values())
    usage = subprocess.run([sys.executable, "-m", "redline.statements.schemas"], capture_output=True, text=True,
                           timeout=60, check=False)
    assert usage.returncode == 64 and "usage" in usage.stderr


def test_schema_required_fields_match_canonical_form() -> None:
    from redline.statements.schemas import schema_for

    for pred in EXAMPLES:
        schema = schema_for(type(pred))
        assert sorted(schema["required"]) == sorted(to_statement(pred)["predicate"]), pred.KIND


def test_malformed_input_hierarchy() -> None:
    assert issubclass(InvalidStatement, MalformedInput)


# --- properties --------------------------------------------------------------



@settings(max_examples=150, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False),
       flop=st.floats(min_value=0, max_value=1e35),
       when=st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                     timezone(timedelta(hours=-8))])),
       seq=st.integers(min_value=1, max_value=2**53 - 1),
       name=st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=40))
def test_round_trip_property(value: float, flop: float, when: datetime, seq: int, name: str) -> None:
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        return
    try:
        when.astimezone(UTC)
    except OverflowError:
        return
    preds = [
        EvaluationResult(party="auditor-x", seq=seq, model_name=name, model_digest={"sha256": H}, suite=name,
                         task="t", metric="m", value=value, evaluator="e", log_digest={"blake3": H2},
                         evaluated_at=when),
        RunProgress(party="lab-a", seq=seq, run_id=name, step=seq - 1, flop_so_far=flop, commitments=COMMITS,
                    spec_digest=H3 if seq % 2 else None, as_of=when),
    ]
    for pred in preds:
        text = canonical_json(to_statement(pred))
        for again in (parse_statement(parse_json(text)), parse_statement(json.loads(text))):
            assert again == pred
            assert canonical_json(to_statement(again)) == text


def _payload_outcome(parse: Any, payload: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", parse(payload))
    except (MalformedInput, RecursionError) as exc:
        return (type(exc).__name__, str(exc))


def _parse_payload_reference(payload: bytes) -> Predicate:
    """``parse_payload`` spelled out as ``open_statement`` and ``parse_statement`` check it, step by step."""
    from redline.crypto.dsse import validate_statement

    statement = validate_statement(parse_json(payload, what="in-toto statement"), unknown_fields=True)
    if canonical_json(statement) != payload:
        raise MalformedInput("in-toto statement payload is not in RFC 8785 canonical form")
    return parse_statement(statement, unknown_fields=True)


_PAYLOAD_BYTES = [b'"', b"\\", b"\x00", b"0", b"1", b".", b"e", b"-", b" ", b"{", b"}", b",", b"]", b":", b"\xff",
                  b"\xc3", b"A", b"z", b"null", b'","predicateType":"', b'","subject":', b""]


@pytest.mark.parametrize("pred", EXAMPLES, ids=IDS)
def test_payload_shortcut_agrees_with_the_step_by_step_checks(pred: Predicate) -> None:
    """Replacing, inserting or deleting bytes anywhere in a payload: the shortcut decides as the full checks do."""
    from redline.statements.base import _parse_payload_fast

    payload = canonical_json(to_statement(pred))
    fast = _parse_payload_fast(payload)
    assert fast is not None and fast[0] == pred and fast[1] == canonical_json(pred.model_dump(mode="json"))
    assert parse_payload_canonical(payload) == fast
    positions = sorted({*range(0, len(payload), 17), *range(len(payload) - 40, len(payload), 2)})
    for i in positions:
        for b in _PAYLOAD_BYTES:
            for mutated in (payload[:i] + b + payload[i + 1:], payload[:i] + b + payload[i:]):
                got = _payload_outcome(parse_payload, mutated)
                assert got == _payload_outcome(_parse_payload_reference, mutated), mutated
                short = _parse_payload_fast(mutated)
                if short is not None:  # what the shortcut accepts, the full checks accept, with the same bytes
                    assert got == ("ok", short[0]) and short[1] == canonical_json(short[0].model_dump(mode="json"))
