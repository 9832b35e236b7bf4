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

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

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
from redline.policy.model import EVIDENCE_STRENGTH, Line, Parameters, Policy, policy_from_document
from redline.policy.metrics import INDICATOR_METRICS
from redline.statements import (
    Admission,
    BaseModelRegistration,
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
#: The root of an empty transcript tree (SHA-256 of nothing): every run declares it at step 0, so it binds nothing.
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
ROOT_FIELDS = ("steps_root", "data_root", "checkpoints_root")

#: Which roles may make each kind of statement.
ROLES_ALLOWED: dict[type[Predicate], frozenset[str]] = {
    Admission: frozenset({"coordinator"}),
    PolicyPublication: frozenset({"coordinator"}),
    KeyRotation: frozenset({"lab", "auditor", "regulator", "witness", "coordinator"}),
    KeyRevocation: frozenset({"lab", "auditor", "regulator", "witness", "coordinator"}),
    ComputeInventory: frozenset({"lab"}),
    ComputeUsageReport: frozenset({"lab"}),
    RunStart: frozenset({"lab"}),
    BaseModelRegistration: frozenset({"coordinator", "regulator"}),
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


def admit(state: State, data: bytes, pre: Prepared | None = None, *,
          at_ms: int | None = None) -> tuple[Predicate, Party | None, VerifierKey]:
    """Check an entry against the state without changing it.

    The statement's times are judged against the entry's integration time: during replay that is the state's
    time; before an append (the registry) ``at_ms`` is the time the log is about to give, and the lower bounds
    are judged a minute later, so that nothing the registry accepts is refused once logged a moment later.

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
        return _admit_genesis(env if env is not None else Envelope.from_json(data), state.origin)
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
    if pred.log != state.origin:
        raise InvalidStatement(f"field 'log': the statement is for log {pred.log!r}, this log is {state.origin!r}"
                               + ("" if pred.log is not None else " (sign it for this log: its origin goes in 'log')"))
    allowed = ROLES_ALLOWED[type(pred)]
    if party.role not in allowed:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: party {party.name!r} has role {party.role!r}; "
                            f"only {', '.join(sorted(allowed))} may make this statement")
    if pred.seq != party.last_seq + 1:
        what = "replays" if pred.seq <= party.last_seq else "skips"
        raise SequenceError(f"{pred.PREDICATE_TYPE}: sequence number {pred.seq} from {party.name!r} {what} "
                            f"(expected {party.last_seq + 1})")
    _check_semantics(state, pred, party)
    if at_ms is None:
        _check_times(state, pred, state.last_time_ms)
    else:
        _check_times(state, pred, at_ms, behind_margin_ms=60_000)
    return pred, party, key


def _admit_genesis(env: Envelope, origin: str | None) -> tuple[Predicate, None, VerifierKey]:
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
    if pred.log != pred.origin:
        raise InvalidStatement(f"field 'log': the genesis of log {pred.origin!r} names log {pred.log!r}")
    if origin is not None and pred.origin != origin:
        raise InvalidStatement(f"field 'origin': the genesis is for log {pred.origin!r}, this log is {origin!r}")
    return pred, None, signer


def _run_key(party: str, run_id: str) -> str:
    return f"{party}/{run_id}"


def _sha256(digest: dict[str, str]) -> str | None:
    """The sha256 hex of an artefact digest (None when it names another algorithm): weights are bound by it."""
    return digest.get("sha256")


def _short(digest: dict[str, str]) -> str:
    """A digest for a message: the first 12 hex digits (prefixed by the algorithm unless it is sha256)."""
    alg, value = next(iter(digest.items()))
    return f"{value[:12]}" if alg == "sha256" else f"{alg}:{value[:12]}"


def _producer(state: State, digest: str | None) -> Run | None:
    """The run whose final weights are ``digest`` (a sha256 hex), if one finished with them."""
    key = state.final_weights.get(digest) if digest is not None else None
    return state.runs[key] if key is not None else None


def _check_run_start(state: State, pred: RunStart, party: Party) -> None:
    spec_digest = pred.spec_digest
    if spec_digest is not None and spec_digest in state.spec_runs:
        other = state.runs[state.spec_runs[spec_digest]]
        raise InvalidStatement(f"field 'spec': spec {spec_digest[:12]} is already declared by run {other.key} at "
                               f"entry {other.indexes[0]}")
    if _run_key(party.name, pred.run_id) in state.runs:
        raise InvalidStatement(f"field 'run_id': run {pred.run_id!r} was already declared")
    owner = state.models.get(pred.model_name)
    if owner is not None and state.runs[owner].party != party.name:
        raise InvalidStatement(f"field 'model_name': model {pred.model_name!r} belongs to another party")
    if pred.spec is not None and pred.spec.init.kind == "base":
        base = pred.spec.init.base_model_digest
        assert base is not None
        if base not in state.final_weights and base not in state.bases:
            raise InvalidStatement(f"field 'spec.init.base_model_digest': {base[:12]} is neither the final weights "
                                   "of a run finished on the log nor a registered base model")


def _check_run_declaration(state: State, pred: RunProgress | RunFinish, party: Party) -> None:
    key = _run_key(party.name, pred.run_id)
    run = state.runs.get(key)
    if run is None:
        raise InvalidStatement(f"field 'run_id': no run {pred.run_id!r} declared by {party.name!r}")
    if run.finished:
        raise InvalidStatement(f"field 'run_id': run {pred.run_id!r} has already finished")
    if pred.spec_digest != run.spec_digest:
        if run.spec_digest is None:
            raise InvalidStatement(f"field 'spec_digest': run {pred.run_id!r} was declared without a spec (entry "
                                   f"{run.indexes[0]}); its spec_digest is null")
        raise InvalidStatement(f"field 'spec_digest': {pred.spec_digest or 'null'} is not the digest "
                               f"{run.spec_digest} of the spec run {pred.run_id!r} declared at entry {run.indexes[0]}")
    for name in ROOT_FIELDS:
        root = getattr(pred.commitments, name)
        first = state.roots.get(root)
        if root != EMPTY_ROOT and first is not None and first[0] != key:
            raise InvalidStatement(f"field 'commitments.{name}': roots already declared by run {first[0]} at entry "
                                   f"{first[1]}")
    if isinstance(pred, RunFinish):
        weights = _sha256(pred.final_model_digest)
        other = _producer(state, weights)
        if other is not None:
            raise InvalidStatement(f"field 'final_model_digest': weights {weights[:12]} are already the final "
                                   f"weights of run {other.key} ({other.model_name}, entry {other.finish_index})")
        if weights is not None and weights in state.bases:
            base = state.bases[weights]
            raise InvalidStatement(f"field 'final_model_digest': weights {weights[:12]} are the registered base "
                                   f"model {base['model_name']} (entry {base['index']}), not a run's output")


def _check_seed_ranges(pred: VerificationReport, run: Run) -> None:
    """A report that names its seed ranges names the ones the log implies for the declaration it verified: each
    range of steps seeded after the first declaration that committed to it (a later one cannot re-roll it)."""
    if pred.declaration_index is None:
        raise InvalidStatement("field 'seed_ranges': seed ranges are given but no 'declaration_index'")
    want = [r for r in run.seed_ranges if r[2] <= pred.declaration_index]
    got = [[r.first_step, r.last_step, r.declaration_index] for r in pred.seed_ranges]
    if got != want:
        raise InvalidStatement(f"field 'seed_ranges': the log implies ranges (first step, last step, declaration "
                               f"entry) {want} for run {run.key}, the report used {got}")
    for r in pred.seed_ranges:
        if r.checkpoint_size is None or r.checkpoint_size <= (r.declaration_index or 0):
            raise InvalidStatement(f"field 'seed_ranges': the seed of steps {r.first_step}..{r.last_step} must come "
                                   f"from a checkpoint after entry {r.declaration_index}, not of size "
                                   f"{r.checkpoint_size}")


#: Statement times that say when something happened: neither ahead of the log's clock nor too far behind it.
#: (Reporting periods and indicator windows are spans the engine judges by logged time; a policy's
#: ``effective_from`` may lie ahead; a commitment's ``expires_at`` must.)
_EVENT_TIMES = frozenset({"started_at", "as_of", "finished_at", "released_at", "evaluated_at"})


def _check_times(state: State, pred: Predicate, now: int, *, behind_margin_ms: int = 0) -> None:
    """Every time a statement gives is bounded by the log's integration time ``now`` (the policy's skew and
    backdating limits; an expiry must lie ahead)."""
    policy = _policy(state)
    params = policy.parameters if policy is not None else Parameters()
    ahead = int(params.max_clock_skew_minutes * 60_000)
    behind = int(params.max_backdating_days * DAY_MS)
    for name in type(pred).model_fields:
        value = getattr(pred, name)
        if not isinstance(value, datetime):
            continue
        ms = _ms(value)
        stamp = value.isoformat().replace("+00:00", "Z")
        logged = datetime.fromtimestamp(now / 1000, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        if name == "expires_at":
            if ms <= now:
                raise InvalidStatement(f"field 'expires_at': {stamp} is not after the log's time {logged}: the "
                                       "commitment would have expired already")
        elif name in _EVENT_TIMES and ms > now + ahead:
            raise InvalidStatement(f"field '{name}': {stamp} is ahead of the log's time {logged} by more than "
                                   f"{params.max_clock_skew_minutes:g} minutes")
        if name in _EVENT_TIMES and ms < now + behind_margin_ms - behind:
            raise InvalidStatement(f"field '{name}': {stamp} is more than {params.max_backdating_days:g} days before "
                                   f"the log's time {logged}")


def _check_semantics(state: State, pred: Predicate, party: Party) -> None:
    """Checks that need the state: references to things that must exist, names that must be new."""
    if isinstance(pred, Admission):
        known = state.parties.get(pred.admitted)
        if known is not None and not known.revoked:
            raise InvalidStatement(f"party {pred.admitted!r} is already admitted")
        if known is not None and pred.role != known.role:
            raise InvalidStatement(f"field 'role': party {pred.admitted!r} is readmitted with a new key in its role "
                                   f"{known.role!r}, not {pred.role!r}")
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
        if target.role == "coordinator" and not any(p.role == "coordinator" and not p.revoked and p is not target
                                                     for p in state.parties.values()):
            raise NotAuthorized(f"the key of {target.name!r}, the log's last coordinator, cannot be revoked: nobody "
                                "could then admit, readmit or publish; rotate it to its successor (key-rotation)")
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
        _check_run_start(state, pred, party)
    elif isinstance(pred, (RunProgress, RunFinish)):
        _check_run_declaration(state, pred, party)
    elif isinstance(pred, BaseModelRegistration):
        known = state.bases.get(pred.model_digest)
        if known is not None:
            raise InvalidStatement(f"field 'model_digest': {pred.model_digest[:12]} is already registered as base "
                                   f"model {known['model_name']} at entry {known['index']}")
        run = _producer(state, pred.model_digest)
        if run is not None:
            raise InvalidStatement(f"field 'model_digest': {pred.model_digest[:12]} is the final weights of run "
                                   f"{run.key} ({run.model_name}, entry {run.finish_index}); a run's weights are "
                                   "bound by its own statements, not registered as a base")
    elif isinstance(pred, VerificationReport):
        run = state.runs.get(_run_key(pred.run_party, pred.run_id))
        if run is None:
            raise InvalidStatement(f"field 'run_id': no run {pred.run_id!r} declared by {pred.run_party!r}")
        if pred.declaration_index is not None and pred.declaration_index not in run.indexes[1:]:
            raise InvalidStatement(f"field 'declaration_index': entry {pred.declaration_index} is not a RunProgress "
                                   f"or RunFinish of run {run.key} (its declarations: "
                                   f"{', '.join(map(str, run.indexes[1:])) or 'none'})")
        if pred.seed_ranges:
            _check_seed_ranges(pred, run)
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
        producer = _producer(state, _sha256(pred.model_digest))
        owner = producer.party if producer is not None else (
            state.runs[state.models[pred.model_name]].party if pred.model_name in state.models else None)
        if owner is not None and owner != party.name:
            raise NotAuthorized(f"{pred.PREDICATE_TYPE}: {party.name!r} submits model {pred.model_name!r} (weights "
                                f"{_short(pred.model_digest)}) for review, but its owner is {owner!r}: only the "
                                "lab that trained a model submits it")
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
        known = state.parties.get(pred.admitted)
        if known is not None:  # a revoked party readmitted with a new key: its sequence goes on, so no replay
            known.key, known.revoked = k, False
            known.display_name, known.jurisdiction = pred.display_name, pred.jurisdiction
            state.keys[k.fingerprint] = pred.admitted
            _event(state, index, now, "admission", f"{pred.admitted} readmitted as {pred.role} with a new key")
        else:
            state.parties[pred.admitted] = Party(pred.admitted, pred.role, k, pred.display_name, pred.jurisdiction,
                                                 index)
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
    elif isinstance(pred, BaseModelRegistration):
        state.bases[pred.model_digest] = {"model_name": pred.model_name, "training_flop": pred.training_flop,
                                          "source": pred.source, "party": party.name, "index": index}
        _event(state, index, now, "base-model", f"{party.name} registers base model {pred.model_name} "
                                                f"(weights {pred.model_digest[:12]}, {pred.training_flop:.3g} FLOP; "
                                                f"{pred.source})")
    elif isinstance(pred, VerificationReport):
        run = state.runs[_run_key(pred.run_party, pred.run_id)]
        run.verified = pred.verdict
        on = pred.declaration_index
        what = ("" if on is None else
                f" (its RunFinish, entry {on})" if on == run.finish_index else f" (its RunProgress, entry {on})")
        _event(state, index, now, "verification",
               f"{party.name} verifies {pred.run_party}/{pred.run_id}{what}: {pred.verdict}"
               + (f" (first bad step {pred.failing_step})" if pred.failing_step is not None else ""))
        if pred.verdict == "pass" and on is not None and on == run.finish_index and run.spec_digest is not None:
            # Only a pass on the RunFinish of a run bound to a spec verifies its final weights: a run declared
            # without a spec has no initialisation a verifier could rebuild.
            run.verified_final, run.verified_final_index = True, index
        elif pred.verdict == "fail":
            run.verified_final, run.verified_final_index = False, None
        if pred.verdict == "pass" and run.verified_final and run.verified_final_index == index:
            # verified evidence only from a pass on the RunFinish: a RunProgress alone proves a prefix
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
        weights = _sha256(pred.model_digest)
        req = _review_requirement(state, pred.model_name, _producer(state, weights))
        policy = _policy(state)
        window = req["window_days"] if req else (policy.parameters.review_window_days if policy else 30.0)
        state.reviews[pred.submission_id] = Review(pred.submission_id, party.name, pred.model_name, index, now,
                                                   float(window), model_digest=weights)
        _event(state, index, now, "review-submission",
               f"{party.name} submits {pred.model_name} (weights {_short(pred.model_digest)}) for review "
               f"({window:g}-day window)")
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
        spec = pred.spec
        run = Run(party.name, pred.run_id, pred.model_name, pred.base_model, pred.base_model_flop, pred.declared_flop,
                  spec_digest=pred.spec_digest,
                  base_digest=None if spec is None else spec.init.base_model_digest)
        state.runs[key] = run
        state.models[pred.model_name] = key
        if run.spec_digest is not None:
            state.spec_runs[run.spec_digest] = key
        _event(state, index, now, "run-start", f"{party.name} declares run {pred.run_id} "
                                               f"({pred.model_name}, {pred.declared_flop:.3g} FLOP planned"
                                               + (f", from weights {run.base_digest[:12]}" if run.base_digest else "")
                                               + ")")
    else:
        run = state.runs[key]
        step = pred.step if isinstance(pred, RunProgress) else pred.commitments.step_count
        covered = run.seed_ranges[-1][1] if run.seed_ranges else 0
        if step > covered:
            run.seed_ranges.append([covered + 1, step, index])
        for name in ROOT_FIELDS:
            root = getattr(pred.commitments, name)
            if root != EMPTY_ROOT:
                state.roots.setdefault(root, (key, index))
        if isinstance(pred, RunProgress):
            run.flop_so_far = max(run.flop_so_far, pred.flop_so_far)
            run.last_step = max(run.last_step, pred.step)
            _expect_run_finish(state, run, index, now)
            _event(state, index, now, "run-progress", f"{party.name} run {pred.run_id}: step {pred.step}, "
                                                      f"{pred.flop_so_far:.3g} FLOP")
        else:
            run.total_flop, run.finished, run.finish_index = pred.total_flop, True, index
            for ob in state.obligations:
                if ob.kind == "run-finish" and ob.ref == f"run {key}" and ob.met_index is None and not ob.violated:
                    ob.met_index = index
            run.final_digest = _sha256(pred.final_model_digest)
            if run.final_digest is not None:
                state.final_weights[run.final_digest] = key
            _event(state, index, now, "run-finish", f"{party.name} run {pred.run_id} finished, "
                                                    f"{pred.total_flop:.3g} FLOP, final weights "
                                                    f"{_short(pred.final_model_digest)}")
    run.indexes.append(index)
    reported = (pred.declared_flop if isinstance(pred, RunStart) else
                pred.flop_so_far if isinstance(pred, RunProgress) else pred.total_flop)
    _check_paused_training(state, run, reported, party, index, now)
    _evaluate_run(state, run, "declared", index, now)


def _expect_run_finish(state: State, run: Run, index: int, now: int) -> None:
    """A RunProgress (re)sets the deadline of the run's RunFinish: the policy's ``run_finish_deadline_days``
    after the last RunProgress."""
    policy = _policy(state)
    days = policy.parameters.run_finish_deadline_days if policy is not None else 90.0
    ref = f"run {run.key}"
    due = now + int(days * DAY_MS)
    for ob in state.obligations:
        if ob.kind == "run-finish" and ob.ref == ref and ob.met_index is None and not ob.violated:
            ob.due_ms, ob.origin_index = due, index
            return
    state.obligations.append(Obligation("run-finish", run.party, due, index, ref))


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
    """Cumulative compute of a run's base model (EU counting rules).

    A run with a spec that starts from a base finds it by weights digest: a run's final weights count that
    run's compute and its own lineage, a registered base model its registered training compute. A run
    without a spec names its base: the base's run and its lineage when the name is on the log, else the
    compute the run declares for its base.

    Each run in the lineage counts once: a base that leads back to a run already counted (base models
    naming each other) adds nothing more.
    """
    seen = seen | {run.key}
    if run.base_digest is not None:
        base_key = state.final_weights.get(run.base_digest)
        if base_key is None:
            registered = state.bases.get(run.base_digest)
            return float(registered["training_flop"]) if registered is not None else 0.0
        if base_key in seen:
            return 0.0
        base = state.runs[base_key]
        return base.compute + _base_compute(state, base, seen)
    if run.base_model is None:
        return 0.0
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
    if (run.base_model is not None or run.base_digest is not None) and base > 0:
        _evaluate(state, "modification_compute_fraction", "model-lineage", run.model_name, run.party,
                  run.compute / base, evidence, index, now, model=run.model_name)


def _apply_indicator(state: State, pred: Indicator | EvaluationResult, party: Party, index: int, now: int) -> None:
    producer = None
    if isinstance(pred, Indicator):
        name, subject, stated = pred.name, pred.subject, pred.subject
    else:
        # An evaluation of a run's final weights is about the model that produced them, whatever it is called.
        name, stated = pred.metric, pred.model_name
        producer = _producer(state, _sha256(pred.model_digest))
        subject = producer.model_name if producer is not None else stated
    state.indicators[f"{name}:{subject}"] = {"value": pred.value, "by": party.name, "index": index}
    _event(state, index, now, "indicator", f"{party.name}: {name} of {subject} = {pred.value:g}"
           + (f" (evaluated as {stated})" if stated != subject else ""))
    if isinstance(pred, EvaluationResult) and party.role == "lab" and (producer is None
                                                                       or producer.party != party.name):
        _violate(state, party.name, "evaluation-of-undeclared-weights",
                 f"evaluated {pred.model_name} with weights {_short(pred.model_digest)}, which are not the final "
                 f"weights of any run {party.name} finished"
                 + (f" (they are run {producer.key}'s, {producer.model_name})" if producer is not None else ""),
                 [index], now)
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


def _review_requirement(state: State, model_name: str, producer: Run | None) -> dict[str, Any] | None:
    """The review requirement on a model, by its name or by the name of the run that produced its weights
    (so that renaming the weights does not escape it)."""
    req = state.review_required.get(model_name)
    if req is None and producer is not None:
        req = state.review_required.get(producer.model_name)
    return req


def _unverified_lineage(state: State, run: Run) -> list[Run]:
    """The runs whose final weights are not verified, from ``run`` up its lineage by base weights digest (a
    registered base model counts as approved and ends the lineage)."""
    out: list[Run] = []
    seen: set[str] = set()
    current: Run | None = run
    while current is not None and current.key not in seen:
        seen.add(current.key)
        if not current.verified_final:
            out.append(current)
        current = _producer(state, current.base_digest)
    return out


def _apply_release(state: State, pred: Release, party: Party, index: int, now: int) -> None:
    weights = _sha256(pred.model_digest)
    producer = _producer(state, weights)
    short = _short(pred.model_digest)
    what = f"{pred.model_name} (weights {short}" + (f", run {producer.key})" if producer is not None else ")")
    state.releases.append({"party": party.name, "model": pred.model_name, "index": index, "digest": weights,
                           "run": producer.key if producer is not None else None})
    _event(state, index, now, "release", f"{party.name} releases {what}")
    pause = state.active_pause
    if pause is not None and party.name in pause.bound and "releases" in state.commitments[party.name].pauses:
        _violate(state, party.name, "release-during-pause", f"released {pred.model_name} during pause "
                                                            f"{pause.pause_id}", [pause.trigger_index, index], now)
    if producer is None:
        if weights is None or weights not in state.bases:
            _violate(state, party.name, "release-unverified-weights",
                     f"released {pred.model_name} with weights {short} that no run on the log finished with and "
                     "no registered base model has", [index], now)
    else:
        unverified = _unverified_lineage(state, producer)
        if unverified:
            def named(r: Run) -> str:
                return f"run {r.key} ({r.model_name}, finished at entry {r.finish_index})"

            up = ", ".join(named(r) for r in unverified if r is not producer)
            if unverified[0] is not producer:
                why = f"; up its lineage the final weights of {up} are not verified"
            elif up:
                why = f", which are not verified, nor are the final weights up its lineage of {up}"
            else:
                why = ", which no passing verification report on that RunFinish has verified"
            _violate(state, party.name, "release-unverified-weights",
                     f"released {pred.model_name} with weights {short}, the final weights of {named(producer)}{why}",
                     sorted({index, *(r.finish_index for r in (producer, *unverified) if r.finish_index is not None)}),
                     now)
    req = _review_requirement(state, pred.model_name, producer)
    if req is None:
        return
    reviews = [r for r in state.reviews.values()
               if r.party == party.name and weights is not None and r.model_digest == weights]
    if not reviews:
        _violate(state, party.name, "release-without-review",
                 f"released {what} without submitting these weights for review", [req["index"], index], now)
        return
    review = reviews[-1]
    if review.decision == "block":
        _violate(state, party.name, "release-blocked", f"released {what} although review "
                 f"{review.submission_id} blocked these weights",
                 [review.submitted_index, review.decision_index or index, index], now)
    elif review.decision != "clear" and now < review.window_end_ms:
        _violate(state, party.name, "release-before-clearance",
                 f"released {what} before review {review.submission_id} of these weights cleared "
                 f"(window ends {review.window_end_ms} ms)", [review.submitted_index, index], now)
