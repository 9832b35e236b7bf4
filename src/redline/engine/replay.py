"""Replay: the log, entry by entry, into the state of the world (pure and deterministic).

``apply(state, entry)`` admits or rejects one entry and derives its consequences;
``replay(entries)`` folds it over a log. Time is the log's: each entry carries the
integration time bound into its leaf, and every deadline (acknowledge a pause,
report compute usage, notify, a review window) is judged against the logged
time of the entries that follow. ``admit`` is the check the registry runs before
an entry is appended, so the log and the engine accept exactly the same things.
An entry that fails on replay is recorded as rejected; replay never crashes on
bad input.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from redline.crypto.dsse import Envelope
from redline.errors import (
    EntryTooLarge,
    InvalidStatement,
    MalformedInput,
    NotAuthorized,
    RedlineError,
    RevokedKey,
    SequenceError,
    UnknownParty,
)
from redline.crypto.keys import VerifierKey
from redline.engine.state import (
    Commitment,
    Crossing,
    Event,
    Obligation,
    Party,
    Pause,
    Rejection,
    Review,
    Run,
    State,
    Violation,
)
from redline.policy.model import EVIDENCE_STRENGTH, Line, Policy, policy_from_document
from redline.policy.metrics import INDICATOR_METRICS
from redline.statements import (
    Admission,
    Commitment as CommitmentStatement,
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
    open_predicate,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Largest log entry the engine looks at (the log itself refuses larger ones).
MAX_ENTRY_BYTES = 65_527

#: Which roles may make each kind of statement.
ROLES_ALLOWED: dict[type[Predicate], frozenset[str]] = {
    Admission: frozenset({"coordinator"}),
    PolicyPublication: frozenset({"coordinator"}),
    KeyRotation: frozenset({"lab", "auditor", "regulator", "witness", "coordinator"}),
    KeyRevocation: frozenset({"lab", "auditor", "regulator", "witness", "coordinator"}),
    ComputeInventory: frozenset({"lab"}),
    ComputeUsageReport: frozenset({"lab"}),
    RunStart: frozenset({"lab"}),
    RunProgress: frozenset({"lab"}),
    RunFinish: frozenset({"lab"}),
    EvaluationResult: frozenset({"lab", "auditor", "regulator"}),
    Indicator: frozenset({"lab", "auditor", "regulator"}),
    VerificationReport: frozenset({"auditor"}),
    CommitmentStatement: frozenset({"lab"}),
    PauseAcknowledgement: frozenset({"lab"}),
    ResumeProposal: frozenset({"lab", "coordinator"}),
    ResumeApproval: frozenset({"lab"}),
    ReviewSubmission: frozenset({"lab"}),
    ReviewFinding: frozenset({"regulator", "auditor"}),
    ReviewDecision: frozenset({"regulator"}),
    Release: frozenset({"lab"}),
}


@dataclass(frozen=True)
class Entry:
    """One log entry as the engine sees it: index, logged time (ms) and bytes."""

    index: int
    time_ms: int
    data: bytes


@dataclass(frozen=True)
class Prepared:
    """The stateless part of admitting one entry's bytes, done ahead (``redline.engine.parallel.prepare``).

    ``keyids`` are the key IDs of the envelope's signatures, in order (``Envelope.from_json(data)`` parses);
    ``verified`` holds the fingerprints of keys whose signature (the envelope's first with that keyid)
    verifies over the envelope's PAE; ``predicate``, when set, is what ``open_predicate`` yields once a
    signature verifies; ``envelope``, when set, is ``Envelope.from_json(data)`` (else ``admit`` parses the
    bytes again in the rare case it needs the envelope itself). All are pure functions of the bytes (and
    the key), so ``admit`` may take them as given: everything that depends on the state (which key is
    current for whom, roles, sequence numbers, semantics) is still decided by ``admit`` exactly as
    without them.
    """

    keyids: tuple[str, ...]
    verified: frozenset[str] = frozenset()
    predicate: Predicate | None = None
    envelope: Envelope | None = None


class _Verified:
    """Stands in for a key in ``Envelope.verify`` when its signature is known to verify (``Prepared.verified``)."""

    __slots__ = ("key", "fingerprint", "name")

    def __init__(self, key: VerifierKey) -> None:
        self.key, self.fingerprint, self.name = key, key.fingerprint, key.name

    def verify(self, message: bytes, signature: bytes) -> None:
        """Already verified ahead of time."""


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# --- admission: signature, parsing, role, sequence --------------------------------


def admit(state: State, data: bytes, pre: Prepared | None = None) -> tuple[Predicate, Party | None, VerifierKey]:
    """Check an entry against the state without changing it.

    Returns the predicate, the speaking party (None for the genesis statement)
    and the key that signed it, or raises the specific error: ``MalformedInput`` (``EntryTooLarge``),
    ``BadSignature``, ``UnknownParty``, ``RevokedKey``, ``InvalidStatement``,
    ``NotAuthorized``, ``SequenceError``, ``InvalidPolicy``. ``pre``, if given, must be the ``Prepared``
    of these same bytes: it saves the stateless work and changes no outcome.
    """
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryTooLarge(f"entry is {len(data)} bytes, over the limit of {MAX_ENTRY_BYTES}")
    if pre is None:
        env: Envelope | None = Envelope.from_json(data)
        keyids: Iterable[str] = [s.keyid for s in env.signatures]
    else:
        env, keyids = pre.envelope, pre.keyids
    if state.next_index == 0 and not state.parties:
        return _admit_genesis(env if env is not None else Envelope.from_json(data))
    signer_keys = [state.parties[state.keys[k]].key for k in keyids if k in state.keys]
    if not signer_keys:
        for k in keyids:
            if k in state.retired_keys:
                raise RevokedKey(f"statement is signed by a retired key of party {state.retired_keys[k]!r}")
        raise UnknownParty("statement is not signed by the key of any admitted party")
    if pre is None:
        assert env is not None
        pred, key = open_predicate(env, signer_keys)
    else:
        by_id = {k.fingerprint: k for k in signer_keys}
        # Envelope.verify decides on the first signature by a known key: known to verify, it is the signer.
        first = next(k for k in keyids if k in by_id)
        if pre.predicate is not None and first in pre.verified:
            pred, key = pre.predicate, by_id[first]  # every check open_predicate makes after the signature passed
        else:
            keys = [_Verified(k) if k.fingerprint in pre.verified else k for k in signer_keys]
            env = env if env is not None else Envelope.from_json(data)
            if pre.predicate is None:
                pred, signer = open_predicate(env, keys)
            else:
                signer = env.verify(keys)
                pred = pre.predicate
            key = signer.key if isinstance(signer, _Verified) else signer
    party = state.parties[state.keys[key.fingerprint]]
    if party.revoked:
        raise RevokedKey(f"party {party.name!r} has no valid key")
    if pred.party != party.name:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: signed by {party.name!r} but speaks for {pred.party!r}; "
                            "a party speaks only for itself")
    if isinstance(pred, Genesis):
        raise NotAuthorized("a genesis statement may only be the log's first entry")
    allowed = ROLES_ALLOWED[type(pred)]
    if party.role not in allowed:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: party {party.name!r} has role {party.role!r}; "
                            f"only {', '.join(sorted(allowed))} may make this statement")
    if pred.seq != party.last_seq + 1:
        what = "replays" if pred.seq <= party.last_seq else "skips"
        raise SequenceError(f"{pred.PREDICATE_TYPE}: sequence number {pred.seq} from {party.name!r} {what} "
                            f"(expected {party.last_seq + 1})")
    _check_semantics(state, pred, party)
    return pred, party, key


def _admit_genesis(env: Envelope) -> tuple[Predicate, None, VerifierKey]:
    statement_payload = env.payload
    # The genesis statement is self-signed: the key it names must sign it.
    from redline.crypto.canonical import parse_json

    obj = parse_json(statement_payload, what="in-toto statement")
    pred_obj = obj.get("predicate") if isinstance(obj, dict) else None
    key_str = pred_obj.get("coordinator_key") if isinstance(pred_obj, dict) else None
    if not isinstance(key_str, str):
        raise InvalidStatement("the log's first entry must be a genesis statement naming the coordinator key")
    key = VerifierKey.from_string(key_str)
    pred, signer = open_predicate(env, [key])
    if not isinstance(pred, Genesis):
        raise InvalidStatement(f"the log's first entry must be a genesis statement, not {pred.PREDICATE_TYPE}")
    if pred.party != pred.coordinator or key.name != pred.coordinator:
        raise NotAuthorized("the genesis statement must be made by the coordinator it names")
    if pred.seq != 1:
        raise SequenceError(f"genesis sequence number must be 1, got {pred.seq}")
    return pred, None, signer


def _run_key(party: str, run_id: str) -> str:
    return f"{party}/{run_id}"


def _check_semantics(state: State, pred: Predicate, party: Party) -> None:
    """Checks that need the state: references to things that must exist, names that must be new."""
    if isinstance(pred, Admission):
        if pred.admitted in state.parties:
            raise InvalidStatement(f"party {pred.admitted!r} is already admitted")
        key = VerifierKey.from_string(pred.verifier_key)
        if key.name != pred.admitted:
            raise InvalidStatement(f"admission of {pred.admitted!r} names a key called {key.name!r}")
        if key.fingerprint in state.keys or key.fingerprint in state.retired_keys:
            raise InvalidStatement(f"the key admitted for {pred.admitted!r} is already in use")
    elif isinstance(pred, KeyRotation):
        key = VerifierKey.from_string(pred.new_verifier_key)
        if key.fingerprint in state.keys or key.fingerprint in state.retired_keys:
            raise InvalidStatement("the new key is already in use")
    elif isinstance(pred, KeyRevocation):
        target = state.parties.get(pred.revoked_party)
        if target is None:
            raise InvalidStatement(f"field 'revoked_party': no party {pred.revoked_party!r}")
        if party.role != "coordinator" and party.name != target.name:
            raise NotAuthorized(f"party {party.name!r} may revoke only its own key")
        if target.key.fingerprint != pred.key_fingerprint:
            raise InvalidStatement(f"field 'key_fingerprint' is not the current key of {target.name!r}")
    elif isinstance(pred, PolicyPublication):
        policy = policy_from_document(pred.document, where=f"policy {pred.policy_id!r}")
        if policy.digest != pred.document_digest:
            raise InvalidStatement("field 'document': the policy document is not in normal form (every default "
                                   "written out, as Policy.document() gives it)")
        if policy.id != pred.policy_id:
            raise InvalidStatement(f"field 'policy_id': {pred.policy_id!r} is not the document's id {policy.id!r}")
    elif isinstance(pred, CommitmentStatement):
        if pred.policy_digest not in state.policies:
            raise InvalidStatement(f"field 'policy_digest': no published policy has digest {pred.policy_digest}")
    elif isinstance(pred, RunStart):
        if _run_key(party.name, pred.run_id) in state.runs:
            raise InvalidStatement(f"field 'run_id': run {pred.run_id!r} was already declared")
        owner = state.models.get(pred.model_name)
        if owner is not None and state.runs[owner].party != party.name:
            raise InvalidStatement(f"field 'model_name': model {pred.model_name!r} belongs to another party")
    elif isinstance(pred, (RunProgress, RunFinish)):
        run = state.runs.get(_run_key(party.name, pred.run_id))
        if run is None:
            raise InvalidStatement(f"field 'run_id': no run {pred.run_id!r} declared by {party.name!r}")
        if run.finished:
            raise InvalidStatement(f"field 'run_id': run {pred.run_id!r} has already finished")
    elif isinstance(pred, VerificationReport):
        if _run_key(pred.run_party, pred.run_id) not in state.runs:
            raise InvalidStatement(f"field 'run_id': no run {pred.run_id!r} declared by {pred.run_party!r}")
    elif isinstance(pred, PauseAcknowledgement):
        if not any(p.pause_id == pred.pause_id for p in state.pauses):
            raise InvalidStatement(f"field 'pause_id': no pause {pred.pause_id!r}")
    elif isinstance(pred, ResumeProposal):
        pause = state.active_pause
        if pause is None:
            raise InvalidStatement("there is no pause in force to resume")
        if pred.proposal_id in pause.proposals:
            raise InvalidStatement(f"field 'proposal_id': proposal {pred.proposal_id!r} already exists")
    elif isinstance(pred, ResumeApproval):
        pause = state.active_pause
        if pause is None or pred.proposal_id not in pause.proposals:
            raise InvalidStatement(f"field 'proposal_id': no open resume proposal {pred.proposal_id!r}")
    elif isinstance(pred, ReviewSubmission):
        if pred.submission_id in state.reviews:
            raise InvalidStatement(f"field 'submission_id': submission {pred.submission_id!r} already exists")
    elif isinstance(pred, (ReviewFinding, ReviewDecision)):
        review = state.reviews.get(pred.submission_id)
        if review is None:
            raise InvalidStatement(f"field 'submission_id': no review submission {pred.submission_id!r}")
        if isinstance(pred, ReviewDecision) and review.decision is not None:
            raise InvalidStatement(f"review {pred.submission_id!r} was already decided")


# --- apply ----------------------------------------------------------------------


def apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
    """Apply one log entry to ``state`` (in place) and return it (``pre``: see ``admit``)."""
    if entry.index != state.next_index:
        raise MalformedInput(f"entry {entry.index} applied out of order (expected {state.next_index})")
    now = max(entry.time_ms, state.last_time_ms)
    _advance_time(state, entry.index, now)
    try:
        pred, party, key = admit(state, entry.data, pre)
    except RedlineError as exc:
        state.rejected.append(Rejection(entry.index, type(exc).__name__, str(exc)))
        state.next_index += 1
        return state
    except Exception as exc:  # replay records every failure; it never crashes on a bad entry
        state.rejected.append(Rejection(entry.index, type(exc).__name__, f"unexpected error: {exc}"))
        state.next_index += 1
        return state
    if party is not None:
        party.last_seq = pred.seq
    _effects(state, pred, party, key, entry.index, now)
    state.next_index += 1
    return state


def replay(entries: Iterable[Entry], state: State | None = None) -> State:
    """Fold ``apply`` over entries (from a fresh state unless one is given)."""
    state = State() if state is None else state
    for e in entries:
        apply(state, e)
    return state


def _event(state: State, index: int, time_ms: int, kind: str, text: str) -> None:
    state.timeline.append(Event(index, time_ms, kind, text))


def _violate(state: State, party: str, kind: str, detail: str, evidence: list[int], time_ms: int) -> None:
    state.violations.append(Violation(party, kind, detail, evidence, time_ms))
    _event(state, evidence[-1], time_ms, "violation", f"{party}: {detail}")


def _policy(state: State) -> Policy | None:
    if state.policy_digest is None:
        return None
    return state.policy_objects[state.policy_digest]


def _advance_time(state: State, index: int, now: int) -> None:
    """Judge every deadline that the logged time ``now`` has passed."""
    state.last_time_ms = now
    pause = state.active_pause
    policy = _policy(state)
    if pause is not None and policy is not None:
        period = int(policy.parameters.usage_report_period_days * DAY_MS)
        # Open the usage-report obligation of every period that has begun, before judging deadlines:
        # a period that began and ended since the previous entry is missed as of this one.
        opened = {o.ref for o in state.obligations if o.kind == "usage-report"}
        k = 0
        while pause.started_ms + k * period <= now:
            ref = f"compute usage, period {k + 1} of pause {pause.pause_id}"
            if ref not in opened:
                for p in pause.bound:
                    state.obligations.append(Obligation("usage-report", p, pause.started_ms + (k + 1) * period,
                                                        pause.trigger_index, ref))
            k += 1
    for ob in state.obligations:
        if ob.met_index is None and not ob.violated and now > ob.due_ms:
            ob.violated = True
            _violate(state, ob.party, f"missed-{ob.kind}",
                     f"missed the {ob.kind} deadline for {ob.ref}", [ob.origin_index, index], now)


def _effects(state: State, pred: Predicate, party: Party | None, key: VerifierKey, index: int, now: int) -> None:
    if isinstance(pred, Genesis):
        state.origin, state.coordinator = pred.origin, pred.coordinator
        coord = Party(pred.coordinator, "coordinator", key, pred.coordinator, "", index, last_seq=1)
        state.parties[coord.name] = coord
        state.keys[key.fingerprint] = coord.name
        _event(state, index, now, "genesis", f"log {pred.origin} begins; coordinator {pred.coordinator}")
        return
    assert party is not None
    if isinstance(pred, Admission):
        k = VerifierKey.from_string(pred.verifier_key)
        state.parties[pred.admitted] = Party(pred.admitted, pred.role, k, pred.display_name, pred.jurisdiction, index)
        state.keys[k.fingerprint] = pred.admitted
        _event(state, index, now, "admission", f"{pred.admitted} admitted as {pred.role} ({pred.jurisdiction})")
    elif isinstance(pred, KeyRotation):
        k = VerifierKey.from_string(pred.new_verifier_key)
        old = party.key.fingerprint
        state.retired_keys[old] = party.name
        del state.keys[old]
        party.key = k
        state.keys[k.fingerprint] = party.name
        _event(state, index, now, "key-rotation", f"{party.name} rotated its key")
    elif isinstance(pred, KeyRevocation):
        target = state.parties[pred.revoked_party]
        fp = target.key.fingerprint
        state.retired_keys[fp] = target.name
        state.keys.pop(fp, None)
        target.revoked = True
        _event(state, index, now, "key-revocation", f"key of {target.name} revoked: {pred.reason}")
    elif isinstance(pred, PolicyPublication):
        policy = policy_from_document(pred.document)
        state.policy_objects.setdefault(policy.digest, policy)
        state.policies[policy.digest] = {"policy_id": policy.id, "version": policy.version, "index": index}
        state.policy_digest = policy.digest
        _event(state, index, now, "policy", f"policy {policy.id} v{policy.version} in force ({policy.digest[:12]})")
    elif isinstance(pred, CommitmentStatement):
        q = pred.quorum
        state.commitments[party.name] = Commitment(party.name, pred.policy_digest, list(pred.pauses), q.kind,
                                                   float(q.threshold), _ms(pred.expires_at), index)
        _event(state, index, now, "commitment", f"{party.name} commits ({q.kind} quorum {q.threshold})")
        _start_pending_pause(state, index, now)
    elif isinstance(pred, ComputeInventory):
        clusters = {c.cluster_id: round(c.h100e(), 6) for c in pred.clusters}
        state.clusters[party.name] = clusters
        _event(state, index, now, "inventory", f"{party.name} declares {sum(clusters.values()):.1f} H100e")
        for cid, h in clusters.items():
            _evaluate(state, "cluster_h100e", "cluster", f"{party.name}/{cid}", party.name, h, "declared", index, now)
        _evaluate(state, "party_h100e", "party", party.name, party.name, sum(clusters.values()), "declared",
                  index, now)
    elif isinstance(pred, ComputeUsageReport):
        for ob in state.obligations:
            if ob.kind == "usage-report" and ob.party == party.name and ob.met_index is None and not ob.violated:
                ob.met_index = index
                break
        _event(state, index, now, "usage-report", f"{party.name} reports compute usage")
    elif isinstance(pred, (RunStart, RunProgress, RunFinish)):
        _apply_run(state, pred, party, index, now)
    elif isinstance(pred, VerificationReport):
        run = state.runs[_run_key(pred.run_party, pred.run_id)]
        run.verified = pred.verdict
        _event(state, index, now, "verification",
               f"{party.name} verifies {pred.run_party}/{pred.run_id}: {pred.verdict}"
               + (f" (first bad step {pred.failing_step})" if pred.failing_step is not None else ""))
        if pred.verdict == "pass":
            _evaluate_run(state, run, "verified", index, now)
        elif pred.verdict == "fail":
            _violate(state, pred.run_party, "failed-verification",
                     f"run {pred.run_id} failed verification by {party.name}", [*run.indexes, index], now)
    elif isinstance(pred, (Indicator, EvaluationResult)):
        _apply_indicator(state, pred, party, index, now)
    elif isinstance(pred, PauseAcknowledgement):
        pause = next(p for p in state.pauses if p.pause_id == pred.pause_id)
        pause.acknowledged.setdefault(party.name, index)
        for ob in state.obligations:
            if ob.kind == "acknowledgement" and ob.party == party.name and ob.ref == f"pause {pred.pause_id}" \
                    and ob.met_index is None:
                ob.met_index = index
        _event(state, index, now, "acknowledgement", f"{party.name} acknowledges pause {pred.pause_id}")
    elif isinstance(pred, ResumeProposal):
        pause = state.active_pause
        assert pause is not None
        pause.proposals[pred.proposal_id] = {"by": party.name, "index": index, "approvals": {}}
        _event(state, index, now, "resume-proposal", f"{party.name} proposes to resume: {pred.reason}")
    elif isinstance(pred, ResumeApproval):
        _apply_resume_approval(state, pred, party, index, now)
    elif isinstance(pred, ReviewSubmission):
        req = state.review_required.get(pred.model_name)
        policy = _policy(state)
        window = req["window_days"] if req else (policy.parameters.review_window_days if policy else 30.0)
        state.reviews[pred.submission_id] = Review(pred.submission_id, party.name, pred.model_name, index, now,
                                                   float(window))
        _event(state, index, now, "review-submission",
               f"{party.name} submits {pred.model_name} for review ({window:g}-day window)")
    elif isinstance(pred, ReviewFinding):
        state.reviews[pred.submission_id].findings.append(
            {"by": party.name, "severity": pred.severity, "finding": pred.finding, "index": index})
        _event(state, index, now, "review-finding", f"{party.name}: {pred.severity} finding on {pred.submission_id}")
    elif isinstance(pred, ReviewDecision):
        review = state.reviews[pred.submission_id]
        review.decision, review.decision_index = pred.decision, index
        _event(state, index, now, "review-decision", f"{party.name} decides {pred.submission_id}: {pred.decision}")
    elif isinstance(pred, Release):
        _apply_release(state, pred, party, index, now)


# --- runs, metrics and danger lines ------------------------------------------------


def _apply_run(state: State, pred: RunStart | RunProgress | RunFinish, party: Party, index: int, now: int) -> None:
    key = _run_key(party.name, pred.run_id)
    if isinstance(pred, RunStart):
        run = Run(party.name, pred.run_id, pred.model_name, pred.base_model, pred.base_model_flop, pred.declared_flop)
        state.runs[key] = run
        state.models[pred.model_name] = key
        _event(state, index, now, "run-start", f"{party.name} declares run {pred.run_id} "
                                               f"({pred.model_name}, {pred.declared_flop:.3g} FLOP planned)")
    else:
        run = state.runs[key]
        if isinstance(pred, RunProgress):
            run.flop_so_far = max(run.flop_so_far, pred.flop_so_far)
            run.last_step = max(run.last_step, pred.step)
            _event(state, index, now, "run-progress", f"{party.name} run {pred.run_id}: step {pred.step}, "
                                                      f"{pred.flop_so_far:.3g} FLOP")
        else:
            run.total_flop, run.finished = pred.total_flop, True
            _event(state, index, now, "run-finish", f"{party.name} run {pred.run_id} finished, "
                                                    f"{pred.total_flop:.3g} FLOP")
    run.indexes.append(index)
    reported = (pred.declared_flop if isinstance(pred, RunStart) else
                pred.flop_so_far if isinstance(pred, RunProgress) else pred.total_flop)
    _check_paused_training(state, run, reported, party, index, now)
    _evaluate_run(state, run, "declared", index, now)


def _check_paused_training(state: State, run: Run, reported: float, party: Party, index: int, now: int) -> None:
    """A bound party's run statement during a pause is a violation when the compute it reports
    (planned for a new run, reached for progress, total for a finish) is beyond the paused limit."""
    pause = state.active_pause
    policy = _policy(state)
    if pause is None or policy is None or party.name not in pause.bound:
        return
    commitment = state.commitments.get(party.name)
    if commitment is not None and "training" not in commitment.pauses:
        return
    limit = policy.parameters.paused_run_flop_limit
    if reported > limit:
        _violate(state, party.name, "training-during-pause",
                 f"run {run.run_id} at {reported:.3g} FLOP is beyond the paused limit of {limit:.3g} FLOP",
                 [pause.trigger_index, index], now)


def _base_compute(state: State, run: Run, seen: frozenset[str] = frozenset()) -> float:
    """Cumulative compute of a run's base model: the base's run and its own lineage when they are on the log,
    else the compute the run declares for its base (EU counting rules).

    Each run in the lineage counts once: a base model that leads back to a run already counted (base models
    naming each other) adds nothing more.
    """
    if run.base_model is None:
        return 0.0
    seen = seen | {_run_key(run.party, run.run_id)}
    base_key = state.models.get(run.base_model)
    if base_key is None:
        return run.base_model_flop or 0.0
    if base_key in seen:
        return 0.0
    base = state.runs[base_key]
    return base.compute + _base_compute(state, base, seen)


def _evaluate_run(state: State, run: Run, evidence: str, index: int, now: int) -> None:
    _evaluate(state, "training_compute", "run", f"{run.party}/{run.run_id}", run.party, run.compute, evidence,
              index, now, model=run.model_name)
    base = _base_compute(state, run)
    _evaluate(state, "training_compute", "model-lineage", run.model_name, run.party, run.compute + base, evidence,
              index, now, model=run.model_name)
    if run.base_model is not None and base > 0:
        _evaluate(state, "modification_compute_fraction", "model-lineage", run.model_name, run.party,
                  run.compute / base, evidence, index, now, model=run.model_name)


def _apply_indicator(state: State, pred: Indicator | EvaluationResult, party: Party, index: int, now: int) -> None:
    name = pred.name if isinstance(pred, Indicator) else pred.metric
    subject = pred.subject if isinstance(pred, Indicator) else pred.model_name
    state.indicators[f"{name}:{subject}"] = {"value": pred.value, "by": party.name, "index": index}
    _event(state, index, now, "indicator", f"{party.name}: {name} of {subject} = {pred.value:g}")
    metric = INDICATOR_METRICS.get(name)
    if metric is None:
        return
    evidence = "declared" if party.role == "lab" else "attested"
    if metric == "ai_code_share":
        owner = party.name if party.role == "lab" else subject
        _evaluate(state, metric, "party", owner, owner, pred.value, evidence, index, now)
    else:
        run_key = state.models.get(subject)
        owner = state.runs[run_key].party if run_key else (party.name if party.role == "lab" else subject)
        _evaluate(state, metric, "model-lineage", subject, owner, pred.value, evidence, index, now, model=subject)


def _evaluate(state: State, metric: str, scope: str, subject: str, party: str, value: float, evidence: str,
              index: int, now: int, *, model: str | None = None) -> None:
    """Record every line of the policy in force that this value crosses, and set off its consequence."""
    policy = _policy(state)
    if policy is None:
        return
    for line in policy.lines:
        if line.metric != metric or line.scope != scope:
            continue
        if EVIDENCE_STRENGTH[evidence] < EVIDENCE_STRENGTH[line.evidence]:
            continue
        if not line.crossed_by(value):
            continue
        if (line.id, subject) in state.crossed:
            _meet_notification(state, line, subject, party, evidence, index)
            continue
        state.crossed.add((line.id, subject))
        crossing = Crossing(line.id, metric, scope, subject, party, value, line.value, evidence,
                            line.consequence.kind, index, now)
        state.crossings.append(crossing)
        _event(state, index, now, "crossing", f"{party} crosses '{line.title}' ({subject}: {value:.3g} "
                                              f"{line.unit}, {evidence})")
        _consequence(state, line, crossing, model)


def _consequence(state: State, line: Line, crossing: Crossing, model: str | None) -> None:
    kind = line.consequence.kind
    if kind == "pause":
        state.pending_pause.append(len(state.crossings) - 1)
        _start_pending_pause(state, crossing.index, crossing.time_ms)
    elif kind == "review":
        target = model or crossing.subject
        state.review_required.setdefault(target, {"line": line.id, "window_days": line.consequence.window_days,
                                                  "index": crossing.index})
    elif kind == "notify":
        ob = Obligation("notification", crossing.party,
                        crossing.time_ms + int((line.consequence.deadline_days or 0) * DAY_MS),
                        crossing.index, f"line {line.id} on {crossing.subject}")
        if crossing.evidence == "declared":
            ob.met_index = crossing.index  # the party's own declaration is its notification
        state.obligations.append(ob)
    elif kind == "prohibit":
        _violate(state, crossing.party, "prohibited", f"crossed the prohibited line '{line.title}' "
                                                      f"({crossing.subject})", [crossing.index], crossing.time_ms)


def _meet_notification(state: State, line: Line, subject: str, party: str, evidence: str, index: int) -> None:
    if line.consequence.kind != "notify" or evidence != "declared":
        return
    ref = f"line {line.id} on {subject}"
    for ob in state.obligations:
        if ob.kind == "notification" and ob.ref == ref and ob.party == party and ob.met_index is None \
                and not ob.violated:
            ob.met_index = index


# --- commitments, quorum, pause and resume -------------------------------------------


def bound_parties(state: State, now: int) -> list[str]:
    """Parties whose live commitment to the policy in force has its quorum met."""
    live = [c for c in state.commitments.values()
            if c.policy_digest == state.policy_digest and c.expires_ms > now and not state.parties[c.party].revoked]
    if not live:
        return []
    total_h100e = sum(sum(c.values()) for p, c in state.clusters.items() if state.parties[p].role == "lab")
    committed_h100e = sum(sum(state.clusters.get(c.party, {}).values()) for c in live)
    share = committed_h100e / total_h100e if total_h100e > 0 else 0.0
    bound = []
    for c in live:
        met = len(live) >= c.threshold if c.quorum_kind == "count" else share >= c.threshold
        if met:
            bound.append(c.party)
    return sorted(bound)


def _start_pending_pause(state: State, index: int, now: int) -> None:
    if state.active_pause is not None or not state.pending_pause:
        return
    bound = [p for p in bound_parties(state, now) if "training" in state.commitments[p].pauses]
    if not bound:
        if state.crossings and state.crossings[-1].index == index and state.crossings[-1].consequence == "pause":
            state.crossings[-1].note = "no pause: the commitments' quorum is not met"
        return
    crossing = state.crossings[state.pending_pause.pop(0)]
    state.pending_pause.clear()
    pause = Pause(str(crossing.index), crossing.line, crossing.index, now, bound)
    state.pauses.append(pause)
    policy = _policy(state)
    ack_ms = int((policy.parameters.ack_window_hours if policy else 72) * HOUR_MS)
    for p in bound:
        state.obligations.append(Obligation("acknowledgement", p, now + ack_ms, index, f"pause {pause.pause_id}"))
    _event(state, index, now, "pause", f"PAUSE {pause.pause_id} starts ('{crossing.line}' crossed by "
                                       f"{crossing.party}); binds {', '.join(bound)}")
    _advance_time(state, index, now)


def _apply_resume_approval(state: State, pred: ResumeApproval, party: Party, index: int, now: int) -> None:
    pause = state.active_pause
    assert pause is not None
    proposal = pause.proposals[pred.proposal_id]
    if party.name in pause.bound:
        proposal["approvals"].setdefault(party.name, index)
    _event(state, index, now, "resume-approval", f"{party.name} approves resuming ({pred.proposal_id})")
    live = bound_parties(state, now)
    bound_live = [p for p in pause.bound if p in live] or pause.bound
    approvals = [p for p in proposal["approvals"] if p in bound_live]
    commitment_kinds = {state.commitments[p].quorum_kind for p in bound_live if p in state.commitments}
    if "compute-share" in commitment_kinds:
        total = sum(sum(state.clusters.get(p, {}).values()) for p in bound_live)
        got = sum(sum(state.clusters.get(p, {}).values()) for p in approvals)
        met = total > 0 and got / total > 0.5
    else:
        met = len(approvals) * 2 > len(bound_live)
    if met:
        pause.ended_ms, pause.ended_index = now, index
        for ob in state.obligations:
            if ob.met_index is None and not ob.violated and ob.ref.endswith(f"pause {pause.pause_id}") \
                    and ob.kind in ("usage-report", "acknowledgement") and ob.due_ms > now:
                # a period cut short by the resume needs no report; a pause that ended before the
                # deadline to acknowledge it needs no acknowledgement
                ob.met_index = index
        _event(state, index, now, "resume", f"pause {pause.pause_id} ends: a majority of bound parties approved")


def _apply_release(state: State, pred: Release, party: Party, index: int, now: int) -> None:
    state.releases.append({"party": party.name, "model": pred.model_name, "index": index})
    _event(state, index, now, "release", f"{party.name} releases {pred.model_name}")
    pause = state.active_pause
    if pause is not None and party.name in pause.bound and "releases" in state.commitments[party.name].pauses:
        _violate(state, party.name, "release-during-pause", f"released {pred.model_name} during pause "
                                                            f"{pause.pause_id}", [pause.trigger_index, index], now)
    req = state.review_required.get(pred.model_name)
    if req is None:
        return
    reviews = [r for r in state.reviews.values() if r.model_name == pred.model_name and r.party == party.name]
    if not reviews:
        _violate(state, party.name, "release-without-review",
                 f"released {pred.model_name} without submitting it for review", [req["index"], index], now)
        return
    review = reviews[-1]
    if review.decision == "block":
        _violate(state, party.name, "release-blocked", f"released {pred.model_name} although review "
                 f"{review.submission_id} blocked it", [review.submitted_index, review.decision_index or index,
                                                        index], now)
    elif review.decision != "clear" and now < review.window_end_ms:
        _violate(state, party.name, "release-before-clearance",
                 f"released {pred.model_name} before review {review.submission_id} cleared "
                 f"(window ends {review.window_end_ms} ms)", [review.submitted_index, index], now)
