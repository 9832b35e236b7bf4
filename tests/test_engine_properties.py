"""Replay properties over random logs: valid and invalid statements, forgeries and garbage mixed.

A log is generated as a list of *ops* (plain integer tuples, so hypothesis can
shrink them); ``build_log`` turns ops into signed entries, picking sequence
numbers and pause IDs from a shadow replay so that most statements are accepted
and the rest fail in every way the engine knows. The properties:

(a) applying entries one by one and replaying every prefix give the same digest;
(b) a replay in a fresh process (another hash seed) prints a byte-identical digest;
(c) the state depends on nothing but the log: the same replay twice in one process,
    and after replaying an unrelated log first, give the same digest;
(d) replay never raises on garbage; every bad entry is recorded as rejected with
    the name of a redline error class (never the engine's catch-all).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_kit import (
    DAY_MS,
    H64,
    HOUR_MS,
    LOG_NAME,
    T0_MS,
    Clock,
    EntryWriter,
    commitment_fields,
    commits,
    digests_in_fresh_process,
    forge_envelope,
    inventory_fields,
    key,
    publication_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

import redline.errors
from redline.crypto.keys import SigningKey
from redline.engine import Entry, State, apply, replay
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import Policy, load_pack, policy_from_document
from redline.registry import Registry
from redline.statements import (
    Admission,
    BaseModelRegistration,
    Check,
    Commitment,
    ComputeInventory,
    ComputeUsageReport,
    EvaluationResult,
    Genesis,
    Indicator,
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
    RunStart,
    VerificationReport,
    to_statement,
)

REDLINE_ERRORS = frozenset(name for name, obj in vars(redline.errors).items()
                           if isinstance(obj, type) and issubclass(obj, redline.errors.RedlineError))

def _variant() -> Policy:
    """Another policy under the coordinated-pause pack's own id and version: stricter parameters, lower lines."""
    doc = load_pack("coordinated-pause").document()
    doc["parameters"] = {"ack_window_hours": 1.0, "usage_report_period_days": 1.0, "paused_run_flop_limit": 0.0,
                         "review_window_days": 90.0}
    doc["lines"][0]["value"] = 1e23
    return policy_from_document(doc)


PACKS = {name: load_pack(name) for name in ("coordinated-pause", "eu-ai-act", "miri-draft", "ai-rnd")}
#: The same id, another document: a state that leaked through a cache keyed by anything but the digest shows it.
PACKS["coordinated-pause-variant"] = _variant()
PACK_NAMES = tuple(PACKS)
PARTIES = ("coordinator", "lab-a", "lab-b", "lab-c", "audit", "gov")
ROLES = {"lab-a": "lab", "lab-b": "lab", "lab-c": "lab", "audit": "auditor", "gov": "regulator"}
KEYS = {name: key(name) for name in (*PARTIES, "lab-z", "lab-n")}
ROTATED = {name: SigningKey(name, bytes.fromhex(H64.replace("ab", "1" + str(i)))) for i, name in enumerate(PARTIES)}
RUNS = ("r1", "r2", "r3")
MODELS = ("M-1", "M-2", "M-3")
FLOPS = (1e20, 5e22, 2e24, 9e24, 3e25)
MODEL_DIGEST = {"sha256": H64}


# --- building a log from ops -----------------------------------------------------------------

#: An op: (kind, party, signer, seq_shift, mutation, time_step, a, b).
Op = tuple[int, int, int, int, int, int, int, int]

KINDS = ("inventory", "commitment", "run-start", "run-progress", "run-finish", "ack", "usage", "proposal",
         "approval", "submission", "finding", "decision", "release", "verification", "indicator", "admission",
         "policy", "rotation", "revocation", "genesis",
         # the statements a pause story is made of, again, so that stories happen often
         "commitment", "commitment", "commitment", "run-start", "run-start", "run-start", "ack", "ack",
         "approval", "approval", "run-progress", "usage", "inventory",
         # weights: bases registered, runs bound to specs finishing, evaluated and released by digest
         "base-model", "evaluation", "run-finish", "verification", "release")
TIME_STEPS = (0, 1, 60_000, HOUR_MS, 30 * HOUR_MS, 3 * DAY_MS, 8 * DAY_MS)
MUTATIONS = ("none",) * 30 + ("flip-sig", "edit-payload", "random-bytes", "truncated", "unknown-field",
                              "missing-field", "wrong-type", "unknown-type", "not-json", "empty")
LABS = ("lab-a", "lab-b", "lab-c")
#: The parties that may make each kind of statement (an op picks one of them most of the time).
SPEAKERS = {"finding": ("gov", "audit"), "decision": ("gov",), "verification": ("audit",),
            "indicator": (*LABS, "audit", "gov"), "admission": ("coordinator",), "policy": ("coordinator",),
            "genesis": ("coordinator",), "rotation": PARTIES, "revocation": ("coordinator", *LABS),
            "base-model": ("gov", "coordinator"), "evaluation": (*LABS, "audit")}
#: Registered base weights the generator uses (and one digest never registered nor produced).
BASE_WEIGHTS = (weights("base-0"), weights("base-1"), weights("base-2"))
SEQ_SHIFTS = (0,) * 8 + (-1, 1, 5)


def _fields(kind: str, party: str, a: int, b: int, shadow: State, now_ms: int) -> tuple[type[Predicate], dict]:
    """The predicate class and fields for one op (valid on their own; the state may still refuse them)."""
    when = utc(now_ms)
    run, model, flop = RUNS[a % 3], MODELS[b % 3], FLOPS[(a + b) % len(FLOPS)]
    if kind == "inventory":
        return ComputeInventory, inventory_fields(8 * (a + 1) + b, cluster_id=f"c{b % 2}", when=when)
    if kind == "commitment":
        digest = (shadow.in_force or [None])[-1] if a % 4 else PACKS[PACK_NAMES[b % len(PACKS)]].digest
        fields = commitment_fields(PACKS["coordinated-pause"], threshold=1 + b % 2, days=1 + 30 * (a % 3))
        return Commitment, {**fields, "policy_digest": digest or PACKS["eu-ai-act"].digest}
    finals = sorted(shadow.final_weights)  # the final weights of runs finished so far
    open_runs = [r.run_id for r in shadow.runs.values() if r.party == party and not r.finished]
    if kind in ("run-progress", "run-finish") and open_runs and a % 3:
        run = open_runs[b % len(open_runs)]  # mostly one of the party's open runs
    known = shadow.runs.get(f"{party}/{run}")
    if kind == "run-start":
        if b % 3 == 0:  # bound to a spec: fresh, from a finished run's weights, a registered base, or unknown weights
            pool = [None, *finals, *BASE_WEIGHTS, weights("nowhere")]
            return RunStart, run_start_fields(run, model, flop, spec=run_spec(party, run, seed=a,
                                                                              base=pool[a % len(pool)]), when=when)
        base = MODELS[(b + 1) % 3] if a % 3 == 0 else None
        return RunStart, run_start_fields(run, model, flop, base_model=base,
                                          base_model_flop=1e24 if base and b % 2 else None, when=when)
    # mostly the run's own spec digest and roots; sometimes another's (refused)
    spec_digest = known.spec_digest if known is not None and a % 5 else (H64 if a % 2 else None)
    roots = commits(b, run=f"{party}/{run}" if a % 6 else "lab-a/r1")
    if kind == "run-progress":
        return RunProgress, {"run_id": run, "step": b * 10, "flop_so_far": FLOPS[b % len(FLOPS)],
                             "commitments": roots, "spec_digest": spec_digest, "as_of": when}
    if kind == "run-finish":
        final = weights(f"{party}/{run}") if a % 4 else (finals + list(BASE_WEIGHTS))[b % (len(finals) + 3)]
        return RunFinish, {"run_id": run, "total_flop": flop, "flop_estimates": {"six_nd": flop},
                           "estimates_disagree": bool(b % 2), "final_model_digest": {"sha256": final},
                           "commitments": roots, "spec_digest": spec_digest,
                           "manifest_digest": None if spec_digest is None else H64, "finished_at": when}
    if kind == "base-model":
        return BaseModelRegistration, {"model_name": f"Base-{a % 3}", "model_digest": BASE_WEIGHTS[a % 3]
                                       if b % 4 else weights(f"{LABS[a % 3]}/{run}"), "training_flop": FLOPS[b % 5],
                                       "source": "published weights"}
    if kind == "evaluation":
        digest = (finals + [H64])[b % (len(finals) + 1)]
        return EvaluationResult, {"model_name": model, "model_digest": {"sha256": digest}, "suite": "s", "task": "t",
                                  "metric": "time-horizon-50", "value": (0.5, 9.0, 3.0)[b % 3], "evaluator": "e",
                                  "log_digest": MODEL_DIGEST, "evaluated_at": when}
    if kind == "ack":
        pause_id = shadow.pauses[-1].pause_id if shadow.pauses and a % 4 else str(a + b)
        return PauseAcknowledgement, {"pause_id": pause_id}
    if kind == "usage":
        return ComputeUsageReport, {"period_start": when - timedelta(days=7), "period_end": when, "runs": [],
                                    "unaccounted_chip_hours": float(a)}
    if kind == "proposal":
        return ResumeProposal, {"proposal_id": f"p{a % 2}", "reason": "the danger has passed"}
    if kind == "approval":
        return ResumeApproval, {"proposal_id": f"p{a % 2}"}
    if kind == "submission":
        return ReviewSubmission, {"submission_id": f"s{a % 3}", "model_name": model, "model_digest": MODEL_DIGEST,
                                  "run_id": run if b % 2 else None}
    if kind == "finding":
        return ReviewFinding, {"submitter": LABS[b % 3], "submission_id": f"s{a % 3}", "finding": "noted",
                               "severity": "concern"}
    if kind == "decision":
        return ReviewDecision, {"submitter": LABS[a % 3], "submission_id": f"s{a % 3}",
                                "decision": ("clear", "block")[b % 2], "reason": "r"}
    if kind == "release":
        digest = (finals + [H64, *BASE_WEIGHTS])[(a + b) % (len(finals) + 4)]
        return Release, {"model_name": model, "model_digest": {"sha256": digest}, "released_at": when}
    if kind == "verification":
        verdict = ("pass", "fail", "inconclusive")[b % 3]
        done = [r for r in shadow.runs.values() if r.finished]
        target = done[b % len(done)] if done and a % 3 else shadow.runs.get(f"{LABS[a % 3]}/{run}")
        run_party, run = (target.party, target.run_id) if target is not None else (LABS[a % 3], run)
        declarations = target.indexes[1:] if target is not None else []
        # mostly the RunFinish or a RunProgress of the run; sometimes none, or an entry that is not one (refused)
        on = (None if a % 4 == 3 else declarations[b % len(declarations)] if declarations and a % 4 else
              target.finish_index if target is not None and target.finish_index is not None else a)
        return VerificationReport, {"run_id": run, "run_party": run_party,
                                    "checks": [Check(name="replay", passed=verdict == "pass",
                                                     inconclusive=verdict == "inconclusive", detail="")],
                                    "verdict": verdict, "compute_spent_flop": 1e19, "sample_seed": "0a",
                                    "segments_checked": a, "failing_step": 3 if verdict == "fail" else None,
                                    "declaration_index": on}
    if kind == "indicator":
        name = ("time-horizon-50", "ai-code-share", "research-task-completion")[a % 3]
        return Indicator, {"name": name, "subject": model if a % 3 != 1 else party, "value": (0.3, 0.9, 12.0)[b % 3],
                           "unit": "hours", "window_start": when, "window_end": when, "method": "m",
                           "method_version": "1", "evidence_digest": MODEL_DIGEST}
    if kind == "admission":
        name = ("lab-n", "lab-a", "lab-z")[a % 3]
        return Admission, {"admitted": name, "verifier_key": KEYS[name].verifier().to_string(),
                           "role": ("lab", "auditor", "witness")[b % 3], "display_name": "N", "jurisdiction": "X"}
    if kind == "policy":
        return PolicyPublication, publication_fields(PACKS[PACK_NAMES[(a + b) % len(PACKS)]], when=when)
    if kind == "rotation":
        return KeyRotation, {"new_verifier_key": ROTATED[party].verifier().to_string()}
    if kind == "revocation":
        target = PARTIES[1 + a % 5]
        current = shadow.parties[target].key.fingerprint if target in shadow.parties else H64
        return KeyRevocation, {"revoked_party": target, "key_fingerprint": current, "reason": "lost"}
    return Genesis, {"origin": LOG_NAME, "coordinator": party, "coordinator_key": KEYS[party].verifier().to_string()}


def _mutate(data: bytes, statement: dict[str, Any], signer: SigningKey, mutation: str, a: int) -> bytes:
    rng = random.Random(a * 7919 + len(data))
    if mutation == "flip-sig":
        env = json.loads(data)
        sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
        sig[a % 64] ^= 1 << (a % 8)
        env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
        return json.dumps(env).encode()
    if mutation == "edit-payload":
        env = json.loads(data)
        statement["predicate"]["seq"] = statement["predicate"]["seq"] + 1
        env["payload"] = base64.b64encode(
            json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()).decode()
        return json.dumps(env).encode()
    if mutation == "random-bytes":
        return rng.randbytes(1 + a * 13 % 300)
    if mutation == "truncated":
        return data[: max(1, len(data) * (a % 10) // 10)]
    if mutation == "not-json":
        return b"\xff\xfe" + data[:40]
    if mutation == "empty":
        return b""
    pred = statement["predicate"]
    if mutation == "unknown-field":
        pred["surprise"] = a
    elif mutation == "missing-field":
        pred.pop(sorted(k for k in pred if k not in ("party", "seq"))[a % (len(pred) - 2)], None)
    elif mutation == "wrong-type":
        pred["seq"] = str(pred["seq"])
    elif mutation == "unknown-type":
        statement["predicateType"] = "urn:redline:something-else:v1"
    return forge_envelope(statement, signer)


def build_log(ops: Sequence[Op], *, genesis: bool = True, pack: str = "coordinated-pause") -> list[Entry]:
    """Turn ops into a log: a standard opening (genesis, admissions, ``pack`` published) unless ``genesis`` is
    False, then one entry per op."""
    writer = EntryWriter(T0_MS)
    shadow = State()
    keys = dict(KEYS)

    def add(data: bytes, after_ms: int = 0) -> None:
        apply(shadow, writer.add(data, after_ms=after_ms))

    if genesis:
        coord = keys["coordinator"]
        add(sign(Genesis.build(party="coordinator", seq=1, origin=LOG_NAME, coordinator="coordinator",
                               coordinator_key=coord.verifier().to_string()), coord))
        for i, (name, role) in enumerate(ROLES.items()):
            add(sign(Admission.build(party="coordinator", seq=2 + i, admitted=name, role=role, display_name=name,
                                     jurisdiction="EU", verifier_key=keys[name].verifier().to_string()), coord))
        add(sign(PolicyPublication.build(party="coordinator", seq=7, **publication_fields(PACKS[pack])), coord))
    for kind_i, party_i, signer_i, seq_shift, mutation_i, step_i, a, b in ops:
        kind = KINDS[kind_i % len(KINDS)]
        speakers = SPEAKERS.get(kind, LABS) if party_i % 8 else PARTIES
        party = speakers[party_i % len(speakers)]
        mutation = MUTATIONS[mutation_i % len(MUTATIONS)]
        signer_name = ((party,) * 8 + ("lab-z", PARTIES[(party_i + 1) % len(PARTIES)]))[signer_i % 10]
        signer = keys[signer_name]
        known = shadow.parties.get(party)
        seq = (known.last_seq + 1 if known else 1) + SEQ_SHIFTS[seq_shift % len(SEQ_SHIFTS)]
        cls, fields = _fields(kind, party, a, b, shadow, writer.time_ms)
        pred = cls.model_validate({"party": party, "seq": max(1, seq), "log": fields.get("origin", LOG_NAME),
                                   **fields})
        statement = to_statement(pred)
        data = forge_envelope(statement, signer)
        if mutation != "none":
            data = _mutate(data, statement, signer, mutation, a)
        add(data, TIME_STEPS[step_i % len(TIME_STEPS)])
        accepted = not shadow.rejected or shadow.rejected[-1].index != shadow.next_index - 1
        if kind == "rotation" and accepted:
            keys[party] = ROTATED[party]  # the party signs with its new key from now on
    return writer.entries


def sign(pred: Predicate, signer: SigningKey, log: str = LOG_NAME) -> bytes:
    """Sign ``pred`` (valid or not) for the log ``log`` (a genesis names its own origin)."""
    if pred.log is None:
        pred = pred.model_copy(update={"log": getattr(pred, "origin", log)})
    return forge_envelope(to_statement(pred), signer)


small = st.integers(0, 40)
ops_strategy = st.lists(st.tuples(small, small, small, small, small, small, st.integers(0, 5), st.integers(0, 5)),
                        max_size=30)
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_rejections(state: State) -> None:
    for r in state.rejected:
        assert r.error in REDLINE_ERRORS, f"entry {r.index}: {r.error}: {r.message}"
        assert not r.message.startswith("unexpected error"), f"entry {r.index}: {r.message}"
        assert r.message


# --- (a) incremental apply = replay of every prefix ------------------------------------------------


@FAST
@given(ops=ops_strategy, genesis=st.booleans())
def test_incremental_apply_equals_replay_of_every_prefix(ops: list[Op], genesis: bool) -> None:
    entries = build_log(ops, genesis=genesis)
    state = State()
    incremental = [state.digest()]
    for e in entries:
        apply(state, e)
        incremental.append(state.digest())
    assert state.next_index == len(entries)
    prefixes = [replay(entries[:k]).digest() for k in range(len(entries) + 1)]
    assert prefixes == incremental
    # A replay that continues from a replayed prefix lands on the same state too.
    half = len(entries) // 2
    assert replay(entries[half:], replay(entries[:half])).digest() == incremental[-1]
    check_rejections(state)


def test_the_generator_exercises_the_engine() -> None:
    """The generated logs reach pauses, violations, reviews and every kind of rejection (or the properties are weak)."""
    rng = random.Random(7)
    errors: set[str] = set()
    pauses = violations = reviews = accepted = bases = specs = 0
    kinds: set[str] = set()
    for _ in range(60):
        ops = [tuple(rng.randrange(41) for _ in range(6)) + (rng.randrange(6), rng.randrange(6)) for _ in range(30)]
        state = replay(build_log(ops))
        errors |= {r.error for r in state.rejected}
        pauses += len(state.pauses)
        violations += len(state.violations)
        kinds |= {v.kind for v in state.violations}
        reviews += len(state.reviews)
        bases += len(state.bases)
        specs += sum(r.spec_digest is not None for r in state.runs.values())
        accepted += state.next_index - len(state.rejected)
    assert pauses >= 3 and violations >= 10 and reviews >= 5 and accepted >= 60 * 12
    assert bases >= 5 and specs >= 5
    assert {"release-unverified-weights", "evaluation-of-undeclared-weights"} <= kinds, kinds
    assert {"BadSignature", "MalformedInput", "InvalidStatement", "NotAuthorized", "SequenceError", "UnknownParty",
            "RevokedKey"} <= errors, errors


# --- (b) a fresh process reaches the same digest -------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(ops=ops_strategy)
def test_replay_in_a_fresh_process_gives_the_same_digest(ops: list[Op], tmp_path_factory: pytest.TempPathFactory
                                                         ) -> None:
    entries = build_log(ops)
    digests = digests_in_fresh_process([entries], tmp_path_factory.mktemp("fresh"))
    assert digests == [replay(entries).digest()]


def test_many_logs_replayed_in_a_fresh_process(tmp_path: Path) -> None:
    rng = random.Random(2024)
    logs = [build_log([tuple(rng.randrange(41) for _ in range(6)) + (rng.randrange(6), rng.randrange(6))
                       for _ in range(rng.randrange(5, 40))], genesis=i % 7 != 3) for i in range(25)]
    here = [replay(entries).digest() for entries in logs]
    assert len(set(here)) == 25
    assert digests_in_fresh_process(logs, tmp_path, hash_seed="1") == here
    assert digests_in_fresh_process(logs, tmp_path, hash_seed="987654") == here


def test_the_registry_accepts_exactly_what_replay_accepts(tmp_path: Path) -> None:
    """Submitting a generated log's entries one by one logs exactly those a replay accepts, at the same times,
    and the registry's live state is a replay of what it logged."""
    rng = random.Random(5)
    for n in range(6):
        ops = [tuple(rng.randrange(41) for _ in range(6)) + (rng.randrange(6), rng.randrange(6)) for _ in range(40)]
        entries = build_log(ops)
        clock = Clock(T0_MS)
        log = Log.create(SqliteStore(tmp_path / f"log{n}.db", create=True), key(LOG_NAME), clock=clock)
        registry = Registry(log)
        refused = []
        for e in entries:
            clock.set(e.time_ms)
            try:
                registry.submit(e.data)
            except redline.errors.RedlineError as exc:
                assert not isinstance(exc, redline.errors.InconsistentLog), exc
                refused.append(e.index)
        full = replay(entries)
        assert refused == [r.index for r in full.rejected]
        logged = [Entry(i, t, d) for i, t, d in log.entries()]
        assert [(e.time_ms, e.data) for e in logged] == [(e.time_ms, e.data) for e in entries
                                                         if e.index not in set(refused)]
        assert replay(logged).digest() == registry.state.digest()
        assert len(refused) >= 3 and log.size >= 12


# --- (c) nothing but the log -------------------------------------------------------------------


@FAST
@given(ops=ops_strategy, other_ops=ops_strategy, other_pack=st.sampled_from(PACK_NAMES))
def test_state_depends_on_nothing_but_the_log(ops: list[Op], other_ops: list[Op], other_pack: str) -> None:
    entries = build_log(ops)
    first = replay(entries)
    assert replay(entries).digest() == first.digest()
    # Unrelated logs replayed in between (another policy in force, another coordinator) change nothing.
    unrelated = replay(build_log(other_ops, pack=other_pack))
    assert PACKS[other_pack].digest in unrelated.policies
    writer = EntryWriter(T0_MS + 5)
    coord = key("other-coordinator")
    writer.signed(Genesis.build(party=coord.name, seq=1, origin="other.example/log", coordinator=coord.name,
                                coordinator_key=coord.verifier().to_string()), coord)
    writer.signed(PolicyPublication.build(party=coord.name, seq=2, **publication_fields(PACKS[other_pack])), coord)
    assert replay(writer.entries).coordinator == "other-coordinator"
    assert replay(entries).to_dict() == first.to_dict()
    assert replay(list(entries)).digest() == first.digest()


def test_two_logs_with_different_policies_interleaved() -> None:
    """Replaying two logs entry by entry, alternately, gives each the state it gets alone."""
    rng = random.Random(11)
    ops = [tuple(rng.randrange(41) for _ in range(6)) + (rng.randrange(6), rng.randrange(6)) for _ in range(40)]
    log_a, log_b = build_log(ops), build_log(ops, pack="coordinated-pause-variant")
    alone_a, alone_b = replay(log_a).digest(), replay(log_b).digest()
    assert alone_a != alone_b
    sa, sb = State(), State()
    for i in range(max(len(log_a), len(log_b))):
        if i < len(log_a):
            apply(sa, log_a[i])
        if i < len(log_b):
            apply(sb, log_b[i])
    assert (sa.digest(), sb.digest()) == (alone_a, alone_b)
    assert (sa.in_force, sb.in_force) == ([PACKS["coordinated-pause"].digest],
                                          [PACKS["coordinated-pause-variant"].digest])


def test_two_policies_under_one_id_never_mix() -> None:
    """Logs that publish different documents under the same policy id each get their own policy, in any order."""
    run = [(2, 3, 0, 0, 0, 0, 4, 4)]  # lab-a declares run r2 of M-2 at 9e24 FLOP
    real, variant = build_log(run), build_log(run, pack="coordinated-pause-variant")

    def pause_line(entries: list[Entry]) -> list[tuple[str, float, float]]:
        return [(c.subject, c.value, c.threshold) for c in replay(entries).crossings if c.line == "pause-line"]

    for _ in range(2):
        assert pause_line(variant) == [("lab-a/r2", 9e24, 1e23)]
        assert pause_line(real) == []
    state = replay(variant)
    assert state.in_force == [PACKS["coordinated-pause-variant"].digest]


# --- (d) garbage never crashes replay ------------------------------------------------------------

garbage = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
)


@FAST
@given(ops=ops_strategy, junk=st.lists(st.tuples(st.integers(0, 40), garbage), min_size=1, max_size=8),
       cut=st.integers(0, 10_000))
def test_garbage_entries_are_rejected_never_raised(ops: list[Op], junk: list[tuple[int, bytes]], cut: int) -> None:
    entries = build_log(ops)
    datas = [e.data for e in entries]
    bad_at = set()
    for pos, data in junk:
        at = min(1 + pos, len(datas))  # index 0 stays the genesis
        datas.insert(at, data)
        bad_at = {i + 1 if i >= at else i for i in bad_at} | {at}
    # One more: a valid envelope of a real statement, cut short.
    whole = entries[min(len(entries) - 1, 3)].data
    datas.append(whole[: cut % len(whole)])
    bad_at.add(len(datas) - 1)
    log = [Entry(i, T0_MS + i, d) for i, d in enumerate(datas)]
    state = replay(log)
    assert state.next_index == len(log)
    rejected = {r.index: r for r in state.rejected}
    assert bad_at <= set(rejected), sorted(bad_at - set(rejected))
    check_rejections(state)
    for i in bad_at:
        assert rejected[i].error in {"MalformedInput", "InputTooLarge", "NonCanonicalJSON", "BadSignature",
                                     "UnknownKey", "UnknownParty", "InvalidStatement"}, rejected[i]


@pytest.mark.parametrize(("data", "error", "pattern"), [
    (b"", "MalformedInput", "DSSE envelope"),
    (b"\x00\x01garbage", "MalformedInput", ""),
    (b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[', "MalformedInput", ""),
    (b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}', "MalformedInput",
     "no signatures"),
    (b"[1,2,3]", "MalformedInput", "must be a JSON object"),
])
def test_specific_garbage_is_named(data: bytes, error: str, pattern: str) -> None:
    entries = build_log([])
    state = replay([*entries, Entry(len(entries), T0_MS, data)])
    [rejection] = state.rejected
    assert (rejection.index, rejection.error) == (len(entries), error)
    assert pattern in rejection.message


def test_garbage_as_the_first_entry() -> None:
    """A log whose first entry is not a genesis statement: everything after it is refused, nothing raises."""
    good = build_log([])
    state = replay([Entry(0, T0_MS, b"not a genesis"), *(Entry(i + 1, e.time_ms, e.data) for i, e in enumerate(good))])
    assert [r.index for r in state.rejected] == list(range(len(good) + 1))
    assert state.rejected[0].error == "MalformedInput"
    assert {r.error for r in state.rejected[1:]} == {"UnknownParty"}
    assert state.parties == {} and state.coordinator is None


def test_a_bad_predicate_in_a_valid_envelope_is_named() -> None:
    entries = build_log([])
    statement = to_statement(ComputeInventory.build(party="lab-a", seq=1, log=LOG_NAME, **inventory_fields(10)))
    statement["predicate"]["clusters"][0]["chips"][0]["chip_model"] = "Abacus 3000"
    state = replay([*entries, Entry(len(entries), T0_MS, forge_envelope(statement, KEYS["lab-a"]))])
    [rejection] = state.rejected
    assert rejection.error == "InvalidStatement"
    assert "field 'clusters[0].chips[0].chip_model'" in rejection.message and "Abacus 3000" in rejection.message
