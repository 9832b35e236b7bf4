"""One rule per statement kind: who may make it, what it must agree with in the state, and what it changes.

``@rule(Predicate, roles=...)`` registers a class with an optional ``check(state, pred, party)`` (raise the
specific ``RedlineError``; the state is not changed) and an ``effect(state, pred, party, key, index, now)``.
``redline.engine.replay.admit`` runs the check of the statement's rule, ``apply`` its effect. The genesis
statement, the log's first entry, is admitted by ``replay`` itself (it is self-signed) and has only an
effect here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from redline.compute.chips import h100e
from redline.compute.eu import LineageModel, cumulative_compute, modification_fraction
from redline.crypto.keys import VerifierKey
from redline.engine.effects import (
    attestation_parameters,
    cross_check,
    evaluate,
    event,
    oblige,
    parameters,
    pause_parameters,
    policies_in_force,
    producer,
    quorum_changed,
    recheck_customer,
    refresh_policies,
    release_violations,
    resume_met,
    review_requirement,
    run_key,
    sha256_of,
    short,
    violate,
)
from redline.engine.state import Commitment, HeldKey, Obligation, Party, Pause, Review, Run, State
from redline.errors import InvalidStatement, NotAuthorized
from redline.policy.metrics import INDICATOR_METRICS
from redline.policy.model import policy_from_document
from redline.statements import (
    Admission,
    BaseModelRegistration,
    ComputeAttestation,
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
)
from redline.statements import (
    Commitment as CommitmentStatement,
)
from redline.times import DAY_MS, HOUR_MS, iso, ms_of

#: The root of an empty transcript tree (SHA-256 of nothing): every run declares it at step 0, so it binds nothing.
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()
ROOT_FIELDS = ("steps_root", "data_root", "checkpoints_root")
ALL_ROLES = frozenset({"lab", "auditor", "regulator", "witness", "coordinator", "provider"})


def _no_check(state: State, pred: Any, party: Party) -> None:
    """Nothing in the state to agree with."""


@dataclass(frozen=True)
class Rule:
    """What the engine does with one statement kind."""

    roles: frozenset[str]
    check: Callable[[State, Any, Party], None]
    effect: Callable[[State, Any, Any, VerifierKey, int, int], None]  # the party is None for the genesis


RULES: dict[type[Predicate], Rule] = {}


def rule(*kinds: type[Predicate], roles: frozenset[str] | set[str]) -> Callable[[type], type]:
    """Register the decorated class's ``check`` and ``effect`` for ``kinds``, made by ``roles``."""
    def register(cls: type) -> type:
        for kind in kinds:
            if kind in RULES:
                raise TypeError(f"a rule for {kind.__name__} is already registered")
            RULES[kind] = Rule(frozenset(roles), getattr(cls, "check", _no_check), getattr(cls, "effect"))  # noqa: B009
        return cls
    return register


# --- parties and keys ------------------------------------------------------------------------


def _new_key(state: State, key: VerifierKey, what: str) -> None:
    if key.fingerprint in state.keys or key.fingerprint in state.retired_keys:
        raise InvalidStatement(f"{what} is already in use")


@rule(Genesis, roles=frozenset())
class GenesisRule:
    @staticmethod
    def effect(state: State, pred: Genesis, party: Party | None, key: VerifierKey, index: int, now: int) -> None:
        state.origin, state.coordinator = pred.origin, pred.coordinator
        coord = Party(pred.coordinator, "coordinator", key, pred.coordinator, "", index, last_seq=1,
                      key_history=[{"key": key.to_string(), "from_index": index, "to_index": None}])
        state.parties[coord.name] = coord
        state.keys[key.fingerprint] = coord.name
        event(state, index, now, "genesis", f"log {pred.origin} begins; coordinator {pred.coordinator}")


@rule(Admission, roles={"coordinator"})
class AdmissionRule:
    @staticmethod
    def check(state: State, pred: Admission, party: Party) -> None:
        known = state.parties.get(pred.admitted)
        if known is not None and not known.revoked:
            raise InvalidStatement(f"party {pred.admitted!r} is already admitted")
        if known is not None and pred.role != known.role:
            raise InvalidStatement(f"field 'role': party {pred.admitted!r} is readmitted with a new key in its role "
                                   f"{known.role!r}, not {pred.role!r}")
        key = VerifierKey.from_string(pred.verifier_key)
        if key.name != pred.admitted:
            raise InvalidStatement(f"admission of {pred.admitted!r} names a key called {key.name!r}")
        _new_key(state, key, f"the key admitted for {pred.admitted!r}")

    @staticmethod
    def effect(state: State, pred: Admission, party: Party, key: VerifierKey, index: int, now: int) -> None:
        k = VerifierKey.from_string(pred.verifier_key)
        held: HeldKey = {"key": k.to_string(), "from_index": index + 1, "to_index": None}
        known = state.parties.get(pred.admitted)
        if known is not None:  # a revoked party readmitted with a new key: its sequence goes on, so no replay
            known.key, known.revoked = k, False
            known.display_name, known.jurisdiction = pred.display_name, pred.jurisdiction
            known.key_history.append(held)
            event(state, index, now, "admission", f"{pred.admitted} readmitted as {pred.role} with a new key")
        else:
            state.parties[pred.admitted] = Party(pred.admitted, pred.role, k, pred.display_name, pred.jurisdiction,
                                                 index, key_history=[held])
            event(state, index, now, "admission", f"{pred.admitted} admitted as {pred.role} ({pred.jurisdiction})")
        state.keys[k.fingerprint] = pred.admitted
        quorum_changed(state, index, now)  # a readmitted party's commitments count again


@rule(KeyRotation, roles=ALL_ROLES)
class KeyRotationRule:
    @staticmethod
    def check(state: State, pred: KeyRotation, party: Party) -> None:
        _new_key(state, VerifierKey.from_string(pred.new_verifier_key), "the new key")

    @staticmethod
    def effect(state: State, pred: KeyRotation, party: Party, key: VerifierKey, index: int, now: int) -> None:
        k = VerifierKey.from_string(pred.new_verifier_key)
        old = party.key.fingerprint
        state.retired_keys[old] = party.name
        del state.keys[old]
        party.key = k
        state.keys[k.fingerprint] = party.name
        _retire(party, index)
        party.key_history.append({"key": k.to_string(), "from_index": index + 1, "to_index": None})
        event(state, index, now, "key-rotation", f"{party.name} rotated its key")


def _retire(party: Party, index: int) -> None:
    """The current key of ``party`` signs nothing after entry ``index``."""
    if party.key_history and party.key_history[-1]["to_index"] is None:
        party.key_history[-1]["to_index"] = index + 1


@rule(KeyRevocation, roles=ALL_ROLES)
class KeyRevocationRule:
    @staticmethod
    def check(state: State, pred: KeyRevocation, party: Party) -> None:
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

    @staticmethod
    def effect(state: State, pred: KeyRevocation, party: Party, key: VerifierKey, index: int, now: int) -> None:
        target = state.parties[pred.revoked_party]
        fp = target.key.fingerprint
        state.retired_keys[fp] = target.name
        state.keys.pop(fp, None)
        target.revoked = True
        _retire(target, index)
        event(state, index, now, "key-revocation", f"key of {target.name} revoked: {pred.reason}")


# --- policies and commitments ------------------------------------------------------------------


@rule(PolicyPublication, roles={"coordinator"})
class PolicyPublicationRule:
    @staticmethod
    def check(state: State, pred: PolicyPublication, party: Party) -> None:
        policy = policy_from_document(pred.document, where=f"policy {pred.policy_id!r}")
        if policy.digest != pred.document_digest:
            raise InvalidStatement("field 'document': the policy document is not in normal form (every default "
                                   "written out, as Policy.document() gives it)")
        if policy.id != pred.policy_id:
            raise InvalidStatement(f"field 'policy_id': {pred.policy_id!r} is not the document's id {policy.id!r}")
        known = state.policies.get(policy.digest)
        if known is not None:
            raise InvalidStatement(f"field 'document_digest': policy {policy.digest} was already published at entry "
                                   f"{known['index']}")
        for old in pred.supersedes:
            gone = state.policies.get(old)
            if gone is None:
                raise InvalidStatement(f"field 'supersedes': no published policy has digest {old}")
            if gone["status"] == "superseded":
                raise InvalidStatement(f"field 'supersedes': policy {old} was already superseded at entry "
                                       f"{gone['superseded_index']}")

    @staticmethod
    def effect(state: State, pred: PolicyPublication, party: Party, key: VerifierKey, index: int, now: int) -> None:
        policy = policy_from_document(pred.document)
        state.policy_objects.setdefault(policy.digest, policy)
        start = max(ms_of(pred.effective_from), now)
        state.policies[policy.digest] = {
            "policy_id": policy.id, "version": policy.version, "index": index, "effective_from_ms": start,
            "supersedes": list(pred.supersedes), "status": "scheduled", "in_force_index": None,
            "superseded_index": None}
        if start > now:
            event(state, index, now, "policy", f"policy {policy.id} v{policy.version} published, in force from "
                                               f"{iso(start)} ({policy.digest[:12]})")
        refresh_policies(state, index, now)


@rule(CommitmentStatement, roles={"lab"})
class CommitmentRule:
    @staticmethod
    def check(state: State, pred: CommitmentStatement, party: Party) -> None:
        known = state.policies.get(pred.policy_digest)
        if known is None:
            raise InvalidStatement(f"field 'policy_digest': no published policy has digest {pred.policy_digest}")
        if known["status"] == "superseded":
            raise InvalidStatement(f"field 'policy_digest': policy {pred.policy_digest} was superseded at entry "
                                   f"{known['superseded_index']}; commit to the policy in force")
        pause = state.active_pause
        if pause is None or party.name not in pause.bound:
            return
        # During a pause a bound party's commitments hold: a new one may widen them, never loosen them.
        held = pause.scopes.get(party.name, [])
        dropped = [s for s in held if s not in pred.pauses]
        if dropped and pred.policy_digest in _pause_policies(state, pause):
            raise InvalidStatement(f"field 'pauses': {party.name} is bound by pause {pause.pause_id} (since entry "
                                   f"{pause.joined.get(party.name)}) and held to {', '.join(held)}; a commitment "
                                   f"made during the pause cannot drop {', '.join(dropped)} (it may widen, or wait "
                                   "until the pause ends)")
        old = state.commitments.get(party.name, {}).get(pred.policy_digest)
        if old is not None and ms_of(pred.expires_at) < old.expires_ms:
            raise InvalidStatement(f"field 'expires_at': {party.name} is bound by pause {pause.pause_id}; its "
                                   f"commitment to {pred.policy_digest[:12]} cannot be shortened during the pause "
                                   f"(it runs until {iso(old.expires_ms)})")

    @staticmethod
    def effect(state: State, pred: CommitmentStatement, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        q = pred.quorum
        state.commitments.setdefault(party.name, {})[pred.policy_digest] = Commitment(
            party.name, pred.policy_digest, list(pred.pauses), q.kind, float(q.threshold), ms_of(pred.expires_at),
            index)
        event(state, index, now, "commitment", f"{party.name} commits to {pred.policy_digest[:12]} "
                                               f"({', '.join(pred.pauses)}; {q.kind} quorum {q.threshold})")
        quorum_changed(state, index, now)


def _pause_policies(state: State, pause: Pause) -> set[str]:
    """The policies whose lines the pause's crossings are on."""
    return {state.crossings[i].policy for i in pause.trigger_positions}


# --- compute ----------------------------------------------------------------------------------


@rule(ComputeInventory, roles={"lab"})
class ComputeInventoryRule:
    @staticmethod
    def effect(state: State, pred: ComputeInventory, party: Party, key: VerifierKey, index: int, now: int) -> None:
        clusters = {c.cluster_id: round(c.h100e(), 6) for c in pred.clusters}
        state.clusters[party.name] = clusters
        event(state, index, now, "inventory", f"{party.name} declares {sum(clusters.values()):.1f} H100e")
        for cid, h in clusters.items():
            evaluate(state, "cluster_h100e", "cluster", f"{party.name}/{cid}", party.name, h, "declared", index, now)
        evaluate(state, "party_h100e", "party", party.name, party.name, sum(clusters.values()), "declared", index,
                 now)
        quorum_changed(state, index, now)  # a compute-share quorum may be met now


@rule(ComputeUsageReport, roles={"lab"})
class ComputeUsageReportRule:
    @staticmethod
    def effect(state: State, pred: ComputeUsageReport, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        for ob in state.obligations:
            if ob.kind == "usage-report" and ob.party == party.name and ob.met_index is None and not ob.violated:
                ob.met_index = index
                break
        event(state, index, now, "usage-report", f"{party.name} reports compute usage")


# --- runs -------------------------------------------------------------------------------------


#: The last RunStart whose spec digest was computed, with it: ``check`` and then ``effect`` need it for the same
#: statement (a canonical serialisation and a hash each time). The statement itself is held, so the test is identity.
_last_spec_digest: tuple[RunStart, str | None] | None = None


def _spec_digest(pred: RunStart) -> str | None:
    """``pred.spec_digest``, computed once for the statement being admitted and applied."""
    global _last_spec_digest
    last = _last_spec_digest
    if last is not None and last[0] is pred:
        return last[1]
    digest = pred.spec_digest
    _last_spec_digest = (pred, digest)
    return digest


@rule(RunStart, roles={"lab"})
class RunStartRule:
    @staticmethod
    def check(state: State, pred: RunStart, party: Party) -> None:
        spec_digest = _spec_digest(pred)
        if spec_digest is not None and spec_digest in state.spec_runs:
            other = state.runs[state.spec_runs[spec_digest]]
            raise InvalidStatement(f"field 'spec': spec {spec_digest[:12]} is already declared by run {other.key} "
                                   f"at entry {other.indexes[0]}")
        if run_key(party.name, pred.run_id) in state.runs:
            raise InvalidStatement(f"field 'run_id': run {pred.run_id!r} was already declared")
        owner = state.models.get(pred.model_name)
        if owner is not None and state.runs[owner].party != party.name:
            raise InvalidStatement(f"field 'model_name': model {pred.model_name!r} belongs to another party")
        if pred.spec is not None and pred.spec.init.kind == "base":
            base = pred.spec.init.base_model_digest
            assert base is not None
            if base not in state.final_weights and base not in state.bases:
                raise InvalidStatement(f"field 'spec.init.base_model_digest': {base[:12]} is neither the final "
                                       "weights of a run finished on the log nor a registered base model")

    @staticmethod
    def effect(state: State, pred: RunStart, party: Party, key: VerifierKey, index: int, now: int) -> None:
        key_ = run_key(party.name, pred.run_id)
        spec = pred.spec
        run = Run(party.name, pred.run_id, pred.model_name, pred.base_model, pred.base_model_flop, pred.declared_flop,
                  spec_digest=_spec_digest(pred), base_digest=None if spec is None else spec.init.base_model_digest)
        run.progress.append([ms_of(pred.started_at), 0.0, index])
        state.runs[key_] = run
        state.models[pred.model_name] = key_
        if run.spec_digest is not None:
            state.spec_runs[run.spec_digest] = key_
        event(state, index, now, "run-start", f"{party.name} declares run {pred.run_id} ({pred.model_name}, "
                                              f"{pred.declared_flop:.3g} FLOP planned"
                                              + (f", from weights {run.base_digest[:12]}" if run.base_digest else "")
                                              + ")")
        _run_declared(state, run, pred.declared_flop, party, index, now)


@rule(RunProgress, RunFinish, roles={"lab"})
class RunDeclarationRule:
    @staticmethod
    def check(state: State, pred: RunProgress | RunFinish, party: Party) -> None:
        key = run_key(party.name, pred.run_id)
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
                                   f"{run.spec_digest} of the spec run {pred.run_id!r} declared at entry "
                                   f"{run.indexes[0]}")
        for name in ROOT_FIELDS:
            root = getattr(pred.commitments, name)
            first = state.roots.get(root)
            if root != EMPTY_ROOT and first is not None and first[0] != key:
                raise InvalidStatement(f"field 'commitments.{name}': roots already declared by run {first[0]} at "
                                       f"entry {first[1]}")
        if isinstance(pred, RunFinish):
            weights = sha256_of(pred.final_model_digest)
            other = producer(state, weights)
            if other is not None:
                assert weights is not None  # a producer is found by a sha256 digest only
                raise InvalidStatement(f"field 'final_model_digest': weights {weights[:12]} are already the final "
                                       f"weights of run {other.key} ({other.model_name}, entry {other.finish_index})")
            if weights is not None and weights in state.bases:
                base = state.bases[weights]
                raise InvalidStatement(f"field 'final_model_digest': weights {weights[:12]} are the registered base "
                                       f"model {base['model_name']} (entry {base['index']}), not a run's output")

    @staticmethod
    def effect(state: State, pred: RunProgress | RunFinish, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        key_ = run_key(party.name, pred.run_id)
        run = state.runs[key_]
        step = pred.step if isinstance(pred, RunProgress) else pred.commitments.step_count
        covered = run.seed_ranges[-1][1] if run.seed_ranges else 0
        if step > covered:
            run.seed_ranges.append([covered + 1, step, index])
        for name in ROOT_FIELDS:
            root = getattr(pred.commitments, name)
            if root != EMPTY_ROOT:
                state.roots.setdefault(root, (key_, index))
        if isinstance(pred, RunProgress):
            run.flop_so_far = max(run.flop_so_far, pred.flop_so_far)
            run.last_step = max(run.last_step, pred.step)
            _expect_run_finish(state, run, index, now)
            point = (ms_of(pred.as_of), pred.flop_so_far)
            _declared_point(run, point[0], point[1], index)
            event(state, index, now, "run-progress", f"{party.name} run {pred.run_id}: step {pred.step}, "
                                                     f"{pred.flop_so_far:.3g} FLOP")
            reported = pred.flop_so_far
        else:
            run.total_flop, run.finished, run.finish_index = pred.total_flop, True, index
            due = state.run_finish_due.pop(key_, None)
            if due is not None and due.met_index is None and not due.violated:
                due.met_index = index
            point = (ms_of(pred.finished_at), pred.total_flop)
            _declared_point(run, point[0], point[1], index)
            run.final_digest = sha256_of(pred.final_model_digest)
            if run.final_digest is not None:
                state.final_weights[run.final_digest] = key_
            event(state, index, now, "run-finish", f"{party.name} run {pred.run_id} finished, {pred.total_flop:.3g} "
                                                   f"FLOP, final weights {short(pred.final_model_digest)}")
            reported = pred.total_flop
        _run_declared(state, run, reported, party, index, now, point)
        recheck_customer(state, party.name, index, now)


#: A declared point's FLOP reached (points are ``[time_ms, reached, index]``).
_reached = itemgetter(1)


def _declared_point(run: Run, time_ms: int, flop: float, index: int) -> None:
    """Add a declared (time, FLOP reached) point, kept in time order and never going down."""
    progress = run.progress
    if not progress or time_ms >= progress[-1][0]:
        # the usual case, a point at or after every earlier one: it goes last (its entry index is the largest),
        # and every earlier point counts towards what it reached; no sort needed
        progress.append([time_ms, float(max(flop, max(progress, key=_reached)[1] if progress else flop)), index])
        return
    reached = max([flop, *(p[1] for p in progress if p[0] <= time_ms)])
    progress.append([time_ms, float(reached), index])
    progress.sort(key=lambda p: (p[0], p[2]))


def _run_declared(state: State, run: Run, reported: float, party: Party, index: int, now: int,
                  point: tuple[int, float] | None = None) -> None:
    """After a run statement: ``reported`` is the compute it states (planned for a RunStart); ``point`` the
    declared point (time, FLOP reached) a RunProgress or RunFinish adds."""
    run.indexes.append(index)
    if point is None:
        _check_paused_start(state, run, reported, party, index, now)
    elif state.pauses:
        _check_paused_training(state, run, point, party, index, now)
    _evaluate_run(state, run, "declared", index, now)


def _expect_run_finish(state: State, run: Run, index: int, now: int) -> None:
    """A RunProgress (re)sets the deadline of the run's RunFinish: the policy's ``run_finish_deadline_days``
    after the last RunProgress."""
    due = now + int(parameters(state).run_finish_deadline_days * DAY_MS)
    ob = state.run_finish_due.get(run.key)
    if ob is not None and ob.met_index is None and not ob.violated:
        ob.due_ms, ob.origin_index = due, index
        state.next_due_ms = min(state.next_due_ms, due)
        return
    state.run_finish_due[run.key] = oblige(state, Obligation("run-finish", run.party, due, index, f"run {run.key}"))


def _check_paused_start(state: State, run: Run, planned: float, party: Party, index: int, now: int) -> None:
    """A bound party starting a run during a pause is a violation when the run is planned beyond the paused limit
    of the pause's own policy: a RunStart logged while the pause is in force, or one whose ``started_at`` lies
    inside the time the party was bound (logged after the pause ended)."""
    started = int(run.progress[0][0]) if run.progress else now
    for pause in state.pauses:
        if party.name not in pause.bound or "training" not in pause.scopes.get(party.name, []):
            continue
        if not (pause.ended_ms is None or _bound_at(pause, party.name, started)):
            continue
        limit = pause_parameters(state, pause).paused_run_flop_limit
        if planned > limit:
            dated = "" if pause.ended_ms is None else f", started {iso(started)}, inside pause {pause.pause_id}"
            violate(state, party.name, "training-during-pause",
                    f"run {run.run_id} at {planned:.3g} FLOP is beyond the paused limit of {limit:.3g} FLOP{dated}",
                    [pause.trigger_index, index], now)
            return


def _bound_at(pause: Pause, party: str, time_ms: float) -> bool:
    """Whether ``time_ms`` lies in the time ``pause`` held ``party``: after it started (or the party joined), up to
    and including its end. A point in time says what had been done *by* then: one at the start was done before."""
    began = pause.joined_ms.get(party, pause.started_ms)
    return began < time_ms and (pause.ended_ms is None or time_ms <= pause.ended_ms)


def _check_paused_training(state: State, run: Run, point: tuple[int, float], party: Party, index: int,
                           now: int) -> None:
    """A RunProgress or RunFinish declaring that a run trained while a pause held its party to training is a
    violation when the run is beyond the paused limit of the pause's own policy, or when its lineage trained more
    than that limit during the pause (a big model trained on as a chain of small fine-tunes).

    Judged by the time the statement gives (``as_of``, ``finished_at``), not by when it was logged: compute the
    lab itself dates inside a pause it was bound to counts against it, though logged after the pause ended. A
    statement declares training in a pause when its point lies in the time the party was bound (from the pause's
    start, or when it joined, to its end) and raises the FLOP the run reached before it; a run that stopped
    before the pause and reports so (a RunFinish dated before it, or progress that did not grow) is not
    training, however big it is.
    """
    time_ms, flop = point
    for pause in state.pauses:
        if party.name not in pause.bound or "training" not in pause.scopes.get(party.name, []):
            continue
        if not _bound_at(pause, party.name, time_ms):
            continue
        began, ended = pause.joined_ms.get(party.name, pause.started_ms), pause.ended_ms
        before = _reached_before(run, time_ms, index)
        if flop <= before:
            continue  # no training declared in the pause
        limit = pause_parameters(state, pause).paused_run_flop_limit
        total = flop  # what the run reached (points are cumulative; planned compute is judged at its RunStart)
        where = (f"dated {iso(time_ms)}, inside pause {pause.pause_id} "
                 f"({iso(began)}..{iso(ended) if ended is not None else 'in force'})")
        if total > limit:
            violate(state, party.name, "training-during-pause",
                    f"run {run.run_id} at {total:.3g} FLOP is beyond the paused limit of {limit:.3g} FLOP and trained "
                    f"from {before:.3g} to {flop:.3g} FLOP {where}", [pause.trigger_index, index], now)
        elif (chain := _lineage_trained(state, run, pause)) > limit:
            violate(state, party.name, "training-during-pause",
                    f"run {run.run_id} and the runs up its lineage trained {chain:.3g} FLOP during pause "
                    f"{pause.pause_id}, beyond its paused limit of {limit:.3g} FLOP (this statement: from "
                    f"{before:.3g} to {flop:.3g} FLOP {where})", [pause.trigger_index, index], now)


def _reached_before(run: Run, time_ms: int, index: int) -> float:
    """The FLOP ``run`` declared it had reached before ``time_ms``, by points other than entry ``index``'s (a point
    at the same time counts when logged earlier)."""
    return max((p[1] for p in run.progress
                if p[2] != index and (p[0] < time_ms or (p[0] == time_ms and p[2] < index))), default=0.0)


def _trained_in(run: Run, pause: Pause) -> float:
    """The FLOP ``run``'s declared points say it trained while ``pause`` held its party (``_bound_at``): what the
    points in that time reached beyond what was reached by its start (each point dates the compute it declares)."""
    inside = [p[1] for p in run.progress if _bound_at(pause, run.party, p[0])]
    if not inside:
        return 0.0
    began = pause.joined_ms.get(run.party, pause.started_ms)
    before = max((p[1] for p in run.progress if p[0] <= began), default=0.0)
    return max(0.0, max(inside) - before)


def _lineage_trained(state: State, run: Run, pause: Pause) -> float:
    """What ``run`` and the runs of its party up its lineage (by base weights digest, or by base model name) trained
    while ``pause`` held that party. Another party's runs up the lineage are its own business: an uncommitted lab
    may train, and a bound lab fine-tuning its model trains only what it declares itself."""
    total, seen = 0.0, set()
    current: Run | None = run
    while current is not None and current.key not in seen and current.party == run.party:
        seen.add(current.key)
        total += _trained_in(current, pause)
        if current.base_digest is not None:
            current = producer(state, current.base_digest)  # None at a registered base
        else:
            key = state.models.get(current.base_model) if current.base_model is not None else None
            current = state.runs.get(key) if key is not None else None
    return total


def _lineage(state: State, run: Run) -> tuple[dict[str, LineageModel], float]:
    """The run's lineage as EU counting models (``redline.compute.eu``), and the compute declared for a base the
    log does not hold.

    A run with a spec finds its base by weights digest: a run's final weights (that run and its own lineage),
    or a registered base model (its registered training compute). A run without a spec names its base: the
    base's run when the name is on the log, else the compute the run declares for its base. A base that leads
    back to a run already in the lineage (names pointing at each other) ends it.
    """
    models: dict[str, LineageModel] = {}
    current: Run | None = run
    outside = 0.0
    while current is not None:
        base: Run | None = None
        extra = 0.0
        if current.base_digest is not None:
            produced = producer(state, current.base_digest)  # None for a registered base, which takes precedence
            key = produced.key if produced is not None else None
            if key is None:
                registered = state.bases.get(current.base_digest)
                extra = float(registered["training_flop"]) if registered is not None else 0.0
            else:
                base = state.runs[key]
        elif current.base_model is not None:
            key = state.models.get(current.base_model)
            if key is None:
                extra = current.base_model_flop or 0.0
            else:
                base = state.runs[key]
        if base is not None and (base.key in models or base.key == current.key):
            base = None
        models[current.key] = LineageModel(current.key, current.compute, (base.key,) if base is not None else ())
        outside += extra
        current = base
    return models, outside


def _evaluate_run(state: State, run: Run, evidence: str, index: int, now: int) -> None:
    compute = run.compute
    evaluate(state, "training_compute", "run", run.key, run.party, compute, evidence, index, now,
             model=run.model_name)
    if run.base_digest is None and run.base_model is None:
        # most runs: no base, so the lineage is the run alone (its own compute, plus nothing from outside)
        evaluate(state, "training_compute", "model-lineage", run.model_name, run.party, compute + 0.0, evidence,
                 index, now, model=run.model_name)
        return
    models, outside = _lineage(state, run)
    bases = models[run.key].bases
    base = (cumulative_compute(bases[0], models) if bases else 0.0) + outside
    evaluate(state, "training_compute", "model-lineage", run.model_name, run.party, compute + base, evidence,
             index, now, model=run.model_name)
    if base > 0:
        evaluate(state, "modification_compute_fraction", "model-lineage", run.model_name, run.party,
                 modification_fraction(compute, base), evidence, index, now, model=run.model_name)


@rule(BaseModelRegistration, roles={"coordinator", "regulator"})
class BaseModelRule:
    @staticmethod
    def check(state: State, pred: BaseModelRegistration, party: Party) -> None:
        known = state.bases.get(pred.model_digest)
        if known is not None:
            raise InvalidStatement(f"field 'model_digest': {pred.model_digest[:12]} is already registered as base "
                                   f"model {known['model_name']} at entry {known['index']}")
        run = producer(state, pred.model_digest)
        # A run bound to a spec (verifiable) or verified owns its weights. A run without a spec can never be
        # verified: its claim to weights does not keep them from being registered (a lab declaring the digest of
        # public weights as its run's output cannot stop their registration, nor burden every fine-tune of them).
        if run is not None and (run.spec_digest is not None or run.verified_final):
            raise InvalidStatement(f"field 'model_digest': {pred.model_digest[:12]} is the final weights of run "
                                   f"{run.key} ({run.model_name}, entry {run.finish_index}); a run's weights are "
                                   "bound by its own statements, not registered as a base")

    @staticmethod
    def effect(state: State, pred: BaseModelRegistration, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        claimed = producer(state, pred.model_digest)  # a run no auditor verified that says it made these weights
        state.bases[pred.model_digest] = {"model_name": pred.model_name, "training_flop": pred.training_flop,
                                          "source": pred.source, "party": party.name, "index": index}
        event(state, index, now, "base-model", f"{party.name} registers base model {pred.model_name} (weights "
                                               f"{pred.model_digest[:12]}, {pred.training_flop:.3g} FLOP; "
                                               f"{pred.source})"
              + (f"; run {claimed.key}, unverified, claimed these weights at entry {claimed.finish_index}: the "
                 "registration takes precedence" if claimed is not None else ""))


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


@rule(VerificationReport, roles={"auditor"})
class VerificationReportRule:
    @staticmethod
    def check(state: State, pred: VerificationReport, party: Party) -> None:
        run = state.runs.get(run_key(pred.run_party, pred.run_id))
        if run is None:
            raise InvalidStatement(f"field 'run_id': no run {pred.run_id!r} declared by {pred.run_party!r}")
        if pred.declaration_index is not None and pred.declaration_index not in run.indexes[1:]:
            raise InvalidStatement(f"field 'declaration_index': entry {pred.declaration_index} is not a RunProgress "
                                   f"or RunFinish of run {run.key} (its declarations: "
                                   f"{', '.join(map(str, run.indexes[1:])) or 'none'})")
        if pred.seed_ranges:
            _check_seed_ranges(pred, run)

    @staticmethod
    def effect(state: State, pred: VerificationReport, party: Party, key: VerifierKey, index: int, now: int) -> None:
        run = state.runs[run_key(pred.run_party, pred.run_id)]
        run.verified = pred.verdict
        on = pred.declaration_index
        what = ("" if on is None else
                f" (its RunFinish, entry {on})" if on == run.finish_index else f" (its RunProgress, entry {on})")
        event(state, index, now, "verification",
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
            violate(state, pred.run_party, "failed-verification",
                    f"run {pred.run_id} failed verification by {party.name}", [*run.indexes, index], now)


# --- indicators and evaluations -----------------------------------------------------------------


@rule(Indicator, EvaluationResult, roles={"lab", "auditor", "regulator"})
class IndicatorRule:
    @staticmethod
    def effect(state: State, pred: Indicator | EvaluationResult, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        run = None
        if isinstance(pred, Indicator):
            name, subject, stated = pred.name, pred.subject, pred.subject
        else:
            # An evaluation of a run's final weights is about the model that produced them, whatever it is called.
            name, stated = pred.metric, pred.model_name
            run = producer(state, sha256_of(pred.model_digest))
            subject = run.model_name if run is not None else stated
        state.indicators[f"{name}:{subject}"] = {"value": pred.value, "by": party.name, "index": index}
        event(state, index, now, "indicator", f"{party.name}: {name} of {subject} = {pred.value:g}"
              + (f" (evaluated as {stated})" if stated != subject else ""))
        if isinstance(pred, EvaluationResult) and party.role == "lab" and (run is None or run.party != party.name):
            violate(state, party.name, "evaluation-of-undeclared-weights",
                    f"evaluated {pred.model_name} with weights {short(pred.model_digest)}, which are not the final "
                    f"weights of any run {party.name} finished"
                    + (f" (they are run {run.key}'s, {run.model_name})" if run is not None else ""), [index], now)
        metric = INDICATOR_METRICS.get(name)
        if metric is None:
            return
        evidence = "declared" if party.role == "lab" else "attested"
        if metric == "ai_code_share":
            owner = party.name if party.role == "lab" else subject
            evaluate(state, metric, "party", owner, owner, pred.value, evidence, index, now)
        else:
            model_run = state.models.get(subject)
            owner = state.runs[model_run].party if model_run else (party.name if party.role == "lab" else subject)
            evaluate(state, metric, "model-lineage", subject, owner, pred.value, evidence, index, now, model=subject)


# --- the pause --------------------------------------------------------------------------------


@rule(PauseAcknowledgement, roles={"lab"})
class PauseAcknowledgementRule:
    @staticmethod
    def check(state: State, pred: PauseAcknowledgement, party: Party) -> None:
        if not any(p.pause_id == pred.pause_id for p in state.pauses):
            raise InvalidStatement(f"field 'pause_id': no pause {pred.pause_id!r}")

    @staticmethod
    def effect(state: State, pred: PauseAcknowledgement, party: Party, key: VerifierKey, index: int,
               now: int) -> None:
        pause = next(p for p in state.pauses if p.pause_id == pred.pause_id)
        pause.acknowledged.setdefault(party.name, index)
        for ob in state.obligations:
            if ob.kind == "acknowledgement" and ob.party == party.name and ob.ref == f"pause {pred.pause_id}" \
                    and ob.met_index is None:
                ob.met_index = index
        event(state, index, now, "acknowledgement", f"{party.name} acknowledges pause {pred.pause_id}")


@rule(ResumeProposal, roles={"lab", "coordinator"})
class ResumeProposalRule:
    @staticmethod
    def check(state: State, pred: ResumeProposal, party: Party) -> None:
        pause = state.active_pause
        if pause is None:
            raise InvalidStatement("there is no pause in force to resume")
        if pred.proposal_id in pause.proposals:
            raise InvalidStatement(f"field 'proposal_id': proposal {pred.proposal_id!r} already exists")

    @staticmethod
    def effect(state: State, pred: ResumeProposal, party: Party, key: VerifierKey, index: int, now: int) -> None:
        pause = state.active_pause
        assert pause is not None
        pause.proposals[pred.proposal_id] = {"by": party.name, "index": index, "approvals": {}}
        event(state, index, now, "resume-proposal", f"{party.name} proposes to resume: {pred.reason}")


@rule(ResumeApproval, roles={"lab", "regulator", "coordinator"})
class ResumeApprovalRule:
    @staticmethod
    def check(state: State, pred: ResumeApproval, party: Party) -> None:
        pause = state.active_pause
        if pause is None or pred.proposal_id not in pause.proposals:
            raise InvalidStatement(f"field 'proposal_id': no open resume proposal {pred.proposal_id!r}")
        rq = pause_parameters(state, pause).resume_quorum
        if party.role != "lab" and party.role not in rq.also_required:
            raise NotAuthorized(f"{pred.PREDICATE_TYPE}: the resume quorum of pause {pause.pause_id} is its bound "
                                f"labs' ({rq.kind})" + (f" with {', '.join(rq.also_required)}" if rq.also_required
                                                        else "") + f"; a {party.role}'s approval does not count")

    @staticmethod
    def effect(state: State, pred: ResumeApproval, party: Party, key: VerifierKey, index: int, now: int) -> None:
        pause = state.active_pause
        assert pause is not None
        proposal = pause.proposals[pred.proposal_id]
        if party.name in pause.bound or party.role != "lab":
            proposal["approvals"].setdefault(party.name, index)
        event(state, index, now, "resume-approval", f"{party.name} approves resuming ({pred.proposal_id})")
        if not resume_met(state, pause, proposal["approvals"]):
            return
        pause.ended_ms, pause.ended_index = now, index
        for ob in state.obligations:
            if ob.met_index is None and not ob.violated and ob.ref.endswith(f"pause {pause.pause_id}") \
                    and ob.kind in ("usage-report", "acknowledgement") and ob.due_ms > now:
                # a period cut short by the resume needs no report; a pause that ended before the
                # deadline to acknowledge it needs no acknowledgement
                ob.met_index = index
        rq = pause_parameters(state, pause).resume_quorum
        who = ("a majority of bound parties" if rq.more_than == 0.5 and rq.kind == "count" else
               f"bound parties holding more than {rq.more_than:g} of their "
               + ("number" if rq.kind == "count" else "compute"))
        event(state, index, now, "resume", f"pause {pause.pause_id} ends: {who} approved"
                                           + (f", with the {' and the '.join(rq.also_required)}"
                                              if rq.also_required else ""))


# --- compute attestations ---------------------------------------------------------------------------------


def _attestation_key(customer: str, start_ms: int) -> str:
    return f"{customer}@{start_ms}"


@rule(ComputeAttestation, roles={"provider", "lab"})
class ComputeAttestationRule:
    """A provider attests a customer's compute for one period (a lab its own clusters'): it feeds the chip-holdings
    lines, must name only declared runs, is cross-checked against the customer's declared runs, and obliges its
    maker to attest every following period until a ``final`` one."""

    @staticmethod
    def check(state: State, pred: ComputeAttestation, party: Party) -> None:
        params = attestation_parameters(state)
        period = int(params.period_days * DAY_MS)
        start, end = ms_of(pred.period_start), ms_of(pred.period_end)
        if party.role == "lab" and pred.customer != party.name:
            raise NotAuthorized(f"{pred.PREDICATE_TYPE}: a lab attests only its own clusters, not {pred.customer!r}'s")
        customer = state.parties.get(pred.customer)
        if customer is None or customer.role != "lab":
            raise InvalidStatement(f"field 'customer': {pred.customer!r} is not an admitted lab")
        if start % period or end - start != period:
            aligned = start - start % period
            raise InvalidStatement(f"field 'period_start': a period is {params.period_days:g} days from a multiple of "
                                   f"{params.period_days:g} days since 1970-01-01T00:00:00Z (e.g. {iso(aligned)}.."
                                   f"{iso(aligned + period)}), not {iso(start)}..{iso(end)}")
        now = state.judged_at_ms
        if end > now:
            raise InvalidStatement(f"field 'period_end': {iso(end)} has not come yet (the log's time is {iso(now)})")
        if start < now + state.judged_margin_ms - int(parameters(state).max_backdating_days * DAY_MS):
            raise InvalidStatement(f"field 'period_start': {iso(start)} is more than "
                                   f"{parameters(state).max_backdating_days:g} days before the log's time")
        rec = state.attested.get(_attestation_key(pred.customer, start))
        if rec is not None and party.name in rec["by"]:
            raise InvalidStatement(f"{party.name} already attested {pred.customer}'s compute for {iso(start)}.."
                                   f"{iso(end)} (entry {rec['by'][party.name]})")
        hours = period / HOUR_MS
        for u in pred.usage:
            if u.chip_hours > u.chip_count * hours + 1e-9:
                raise InvalidStatement(f"field 'usage': {u.chip_hours:g} chip-hours from {u.chip_count} chips "
                                       f"({u.cluster_id}) is more than {hours:g} hours each")

    @staticmethod
    def effect(state: State, pred: ComputeAttestation, party: Party, key: VerifierKey, index: int, now: int) -> None:
        start, end = ms_of(pred.period_start), ms_of(pred.period_end)
        k = _attestation_key(pred.customer, start)
        rec = state.attested.get(k)
        if rec is None:
            rec = state.attested[k] = {"customer": pred.customer, "period_start_ms": start, "period_end_ms": end,
                                       "usage": {}, "entries": [], "by": {}}
            state.attested_by_customer.setdefault(pred.customer, []).append(k)
        rec["entries"].append(index)
        rec["by"][party.name] = index
        for u in pred.usage:
            slot = f"{u.cluster_id}/{u.chip_model}"
            known = rec["usage"].get(slot)
            if known is None or u.chip_hours > known["chip_hours"]:
                rec["usage"][slot] = {"cluster_id": u.cluster_id, "chip_model": u.chip_model,
                                      "chip_count": u.chip_count, "chip_hours": u.chip_hours, "by": party.name,
                                      "index": index}
        event(state, index, now, "attestation", f"{party.name} attests {pred.customer}'s compute for {iso(start)}.."
                                                f"{iso(end)}: {sum(u.chip_hours for u in pred.usage):,.0f} chip-hours"
                                                + (" (final)" if pred.final else ""))
        # the obligation it met, and the next one (until a final attestation)
        ref = f"compute attestation of {pred.customer}, period from {iso(start)}"
        for ob in state.open_obligations:
            if ob.kind == "attestation" and ob.party == party.name and ob.ref == ref and ob.met_index is None:
                ob.met_index = index
        if not pred.final:
            params = attestation_parameters(state)
            nxt = end + int(params.period_days * DAY_MS)
            oblige(state, Obligation("attestation", party.name, nxt + int(params.grace_days * DAY_MS), index,
                                     f"compute attestation of {pred.customer}, period from {iso(end)}"))
        # tagged runs must be declared
        for run_id in pred.run_ids:
            if run_key(pred.customer, run_id) not in state.runs:
                violate(state, pred.customer, "undeclared-run",
                        f"{party.name} saw run {run_id!r} of {pred.customer} on its chips in {iso(start)}..{iso(end)}, "
                        "and no such run was declared", [index], now)
        # holdings: attested chips are third-party evidence for the chip lines (the customer's own is declared)
        evidence = "declared" if party.name == pred.customer else "attested"
        clusters: dict[str, float] = {}
        for used in rec["usage"].values():
            clusters[used["cluster_id"]] = (clusters.get(used["cluster_id"], 0.0)
                                            + h100e(used["chip_model"], used["chip_count"]))
        for cid, h in sorted(clusters.items()):
            evaluate(state, "cluster_h100e", "cluster", f"{pred.customer}/{cid}", pred.customer, h, evidence, index,
                     now)
        evaluate(state, "party_h100e", "party", pred.customer, pred.customer, sum(clusters.values()), evidence, index,
                 now)
        if party.name != pred.customer:
            _unregistered_clusters(state, pred.customer, clusters, party.name, index, now)
        cross_check(state, k, index, now)


def _unregistered_clusters(state: State, customer: str, clusters: dict[str, float], provider: str, index: int,
                           now: int) -> None:
    """A cluster a provider ran for the customer that is large enough for a cluster line of a policy in force must
    be in the customer's inventory: one that is not is an ``unregistered-cluster`` violation (once per cluster)."""
    registered = state.clusters.get(customer, {})
    for cid, h in sorted(clusters.items()):
        if cid in registered or (customer, cid) in state.unregistered:
            continue
        lines = [line for policy in policies_in_force(state) for line in policy.lines
                 if line.metric == "cluster_h100e" and line.scope == "cluster" and line.crossed_by(h)]
        if lines:
            state.unregistered.add((customer, cid))
            violate(state, customer, "unregistered-cluster",
                    f"{provider} ran cluster {cid} ({h:,.0f} H100e) for {customer}, which no inventory of "
                    f"{customer} declares (line '{lines[0].title}')", [index], now)


# --- review and release -------------------------------------------------------------------------


def review_key(party: str, submission_id: str) -> str:
    """Reviews are scoped by the submitting party: ``party/submission_id``."""
    return f"{party}/{submission_id}"


@rule(ReviewSubmission, roles={"lab"})
class ReviewSubmissionRule:
    @staticmethod
    def check(state: State, pred: ReviewSubmission, party: Party) -> None:
        if review_key(party.name, pred.submission_id) in state.reviews:
            raise InvalidStatement(f"field 'submission_id': {party.name} already made submission "
                                   f"{pred.submission_id!r}")
        run = producer(state, sha256_of(pred.model_digest))
        owner = run.party if run is not None else (
            state.runs[state.models[pred.model_name]].party if pred.model_name in state.models else None)
        if owner is not None and owner != party.name:
            raise NotAuthorized(f"{pred.PREDICATE_TYPE}: {party.name!r} submits model {pred.model_name!r} (weights "
                                f"{short(pred.model_digest)}) for review, but its owner is {owner!r}: only the "
                                "lab that trained a model submits it")

    @staticmethod
    def effect(state: State, pred: ReviewSubmission, party: Party, key: VerifierKey, index: int, now: int) -> None:
        weights = sha256_of(pred.model_digest)
        req = review_requirement(state, pred.model_name, producer(state, weights))
        window = req["window_days"] if req else parameters(state).review_window_days
        state.reviews[review_key(party.name, pred.submission_id)] = Review(
            pred.submission_id, party.name, pred.model_name, index, now, float(window), model_digest=weights)
        event(state, index, now, "review-submission",
              f"{party.name} submits {pred.model_name} (weights {short(pred.model_digest)}) for review "
              f"({window:g}-day window)")


def _submitted(state: State, pred: ReviewFinding | ReviewDecision) -> Review:
    review = state.reviews.get(review_key(pred.submitter, pred.submission_id))
    if review is None:
        raise InvalidStatement(f"field 'submission_id': {pred.submitter!r} made no review submission "
                               f"{pred.submission_id!r}")
    return review


@rule(ReviewFinding, roles={"regulator", "auditor"})
class ReviewFindingRule:
    @staticmethod
    def check(state: State, pred: ReviewFinding, party: Party) -> None:
        _submitted(state, pred)

    @staticmethod
    def effect(state: State, pred: ReviewFinding, party: Party, key: VerifierKey, index: int, now: int) -> None:
        _submitted(state, pred).findings.append(
            {"by": party.name, "severity": pred.severity, "finding": pred.finding, "index": index})
        event(state, index, now, "review-finding", f"{party.name}: {pred.severity} finding on "
                                                   f"{review_key(pred.submitter, pred.submission_id)}")


@rule(ReviewDecision, roles={"regulator"})
class ReviewDecisionRule:
    @staticmethod
    def check(state: State, pred: ReviewDecision, party: Party) -> None:
        review = _submitted(state, pred)
        if review.decision is not None:
            raise InvalidStatement(f"review {review_key(pred.submitter, pred.submission_id)!r} was already decided "
                                   f"(entry {review.decision_index})")

    @staticmethod
    def effect(state: State, pred: ReviewDecision, party: Party, key: VerifierKey, index: int, now: int) -> None:
        review = _submitted(state, pred)
        review.decision, review.decision_index, review.decision_ms = pred.decision, index, now
        event(state, index, now, "review-decision", f"{party.name} decides "
                                                    f"{review_key(pred.submitter, pred.submission_id)}: "
                                                    f"{pred.decision}")


@rule(Release, roles={"lab"})
class ReleaseRule:
    @staticmethod
    def effect(state: State, pred: Release, party: Party, key: VerifierKey, index: int, now: int) -> None:
        weights = sha256_of(pred.model_digest)
        run = producer(state, weights)
        what = f"{pred.model_name} (weights {short(pred.model_digest)}" + (
            f", run {run.key})" if run is not None else ")")
        found = release_violations(state, party.name, pred.model_name, weights, now, index,
                                   label=short(pred.model_digest), released_ms=ms_of(pred.released_at))
        state.releases.append({"party": party.name, "model": pred.model_name, "index": index, "digest": weights,
                               "run": run.key if run is not None else None})
        event(state, index, now, "release", f"{party.name} releases {what}")
        for kind, detail, evidence in found:
            violate(state, party.name, kind, detail, evidence, now)


#: Which roles may make each kind of statement (derived from the rules).
ROLES_ALLOWED: dict[type[Predicate], frozenset[str]] = {kind: r.roles for kind, r in RULES.items()}

__all__ = ["EMPTY_ROOT", "ROLES_ALLOWED", "ROOT_FIELDS", "RULES", "Rule", "rule"]
