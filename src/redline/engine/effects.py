"""What the engine derives, shared by the rules of every statement kind (pure and deterministic).

- **The policy set.** Every published policy stays in force, with its own lines and parameters, from its
  ``effective_from`` until a policy that names it in ``supersedes`` takes effect (``refresh_policies``).
  Lines are judged against every policy in force; a crossing is one per (policy id, line id, subject), so a
  new version of a policy does not set off again what an earlier version already recorded.
- **The pause.** A pause line crossed waits until the commitments *to that line's policy* meet their quorum;
  ``quorum_changed`` runs after every statement that can change a quorum (a commitment, an inventory, an
  admission), so the pause starts at the entry that met it, whichever route that was. A pause is governed by
  its policy's parameters for its whole life (a policy superseded or published meanwhile changes nothing).
  Its bound parties only grow and what each is held to only widens: a commitment made during a pause cannot
  loosen it. A pause line crossed *during* a pause joins that pause (and binds the parties that line's
  policy binds); the quorum that resumes the pause resumes it with every crossing it covered, so nothing is
  left pending after a resume.
- **Releases.** ``release_obstacles`` says what a release by a party of given weights at a given time would
  violate; the release rule records exactly those violations.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, cast

from redline.compute.chips import get_chip
from redline.engine.state import (
    ComputeFinding,
    Crossing,
    Event,
    Obligation,
    Pause,
    ReviewRequirement,
    Run,
    State,
    Violation,
)
from redline.policy.model import EVIDENCE_STRENGTH, AttestationParameters, Line, Parameters, Policy
from redline.times import DAY_MS, HOUR_MS, iso

_DEFAULTS = Parameters()


def run_key(party: str, run_id: str) -> str:
    return f"{party}/{run_id}"


def sha256_of(digest: Mapping[Any, str]) -> str | None:
    """The sha256 hex of an artefact digest (None when it names another algorithm): weights are bound by it."""
    return digest.get("sha256")


def short(digest: Mapping[Any, str]) -> str:
    """A digest for a message: the first 12 hex digits (prefixed by the algorithm unless it is sha256)."""
    alg, value = next(iter(digest.items()))
    return f"{value[:12]}" if alg == "sha256" else f"{alg}:{value[:12]}"


def producer(state: State, digest: str | None) -> Run | None:
    """The run whose final weights are ``digest`` (a sha256 hex), if one finished with them and they are not a
    registered base model. A registration takes precedence over the claim of a run without a spec (which no
    auditor can verify; ``BaseModelRule`` registers nothing else a run claims): a lab cannot make a public model its
    own by declaring its digest as a run's output before the model is registered, and so load every fine-tune of
    it with its made-up compute."""
    if digest is None or digest in state.bases:
        return None
    key = state.final_weights.get(digest)
    return state.runs[key] if key is not None else None


def event(state: State, index: int, time_ms: int, kind: str, text: str) -> None:
    state.timeline.append(Event(index, time_ms, kind, text))


def oblige(state: State, ob: Obligation) -> Obligation:
    """Record an obligation (and keep the deadline bookkeeping in step)."""
    state.obligations.append(ob)
    if ob.met_index is None:
        state.open_obligations.append(ob)
        state.next_due_ms = min(state.next_due_ms, ob.due_ms)
    if ob.kind == "usage-report":
        state.usage_opened.add((ob.ref, ob.party))
    return ob


def violate(state: State, party: str, kind: str, detail: str, evidence: list[int], time_ms: int) -> None:
    state.violations.append(Violation(party, kind, detail, evidence, time_ms))
    event(state, evidence[-1], time_ms, "violation", f"{party}: {detail}")


# --- the policy set ---------------------------------------------------------------------------


def policies_in_force(state: State) -> list[Policy]:
    """The policies in force, in the order they were published."""
    return [state.policy_objects[d] for d in state.in_force]


def parameters(state: State) -> Parameters:
    """The parameters that bound every statement: the strictest of the policies in force (defaults if none)."""
    if len(state.in_force) == 1:  # the usual case
        return state.policy_objects[state.in_force[0]].parameters
    policies = policies_in_force(state)
    if not policies:
        return _DEFAULTS
    ps = [p.parameters for p in policies]
    return _DEFAULTS.model_copy(update={
        "max_clock_skew_minutes": min(p.max_clock_skew_minutes for p in ps),
        "max_backdating_days": min(p.max_backdating_days for p in ps),
        "run_finish_deadline_days": min(p.run_finish_deadline_days for p in ps),
        "review_window_days": max(p.review_window_days for p in ps),
    })


def pause_parameters(state: State, pause: Pause) -> Parameters:
    """The parameters of the policy that governs ``pause`` (superseded or not)."""
    policy = state.policy_objects.get(pause.policy)
    return policy.parameters if policy is not None else _DEFAULTS


def refresh_policies(state: State, index: int, now: int) -> None:
    """Bring into force every scheduled policy whose ``effective_from`` the logged time ``now`` has reached; each
    supersedes (from that entry) the policies it names."""
    due = [(p["effective_from_ms"], p["index"], d) for d, p in state.policies.items()
           if p["status"] == "scheduled" and p["effective_from_ms"] <= now]
    if not due:
        return
    due.sort()
    for _, _, digest in due:
        entry = state.policies[digest]
        entry["status"], entry["in_force_index"] = "in-force", index
        policy = state.policy_objects[digest]
        event(state, index, now, "policy", f"policy {policy.id} v{policy.version} in force ({digest[:12]})")
        for old in entry["supersedes"]:
            gone = state.policies[old]
            if gone["status"] != "superseded":
                gone["status"], gone["superseded_index"] = "superseded", index
                event(state, index, now, "policy", f"policy {gone['policy_id']} v{gone['version']} ({old[:12]}) "
                                                   f"superseded by {policy.id} v{policy.version}")
    state.in_force = [d for d, p in sorted(state.policies.items(), key=lambda kv: kv[1]["index"])
                      if p["status"] == "in-force"]


# --- time -------------------------------------------------------------------------------------


def advance_time(state: State, index: int, now: int) -> None:
    """Bring scheduled policies into force and judge every deadline that the logged time ``now`` has passed."""
    state.last_time_ms = now
    refresh_policies(state, index, now)
    pause = state.active_pause
    if pause is not None:
        _open_usage_periods(state, pause, now)
    if now <= state.next_due_ms:
        return
    still: list[Obligation] = []
    next_due = 2**62
    for ob in state.open_obligations:
        if ob.met_index is not None or ob.violated:
            continue
        if now > ob.due_ms:
            ob.violated = True
            violate(state, ob.party, f"missed-{ob.kind}", f"missed the {ob.kind} deadline ({iso(ob.due_ms)}) for "
                                                          f"{ob.ref}", [ob.origin_index, index], now)
            continue
        still.append(ob)
        next_due = min(next_due, ob.due_ms)
    state.open_obligations, state.next_due_ms = still, next_due


def _open_usage_periods(state: State, pause: Pause, now: int) -> None:
    """Open the usage-report obligation of every period of ``pause`` that has begun by ``now``, for each bound
    party from the period it joined in, before deadlines are judged: a period that began and ended since the
    previous entry is missed as of this one."""
    period = int(pause_parameters(state, pause).usage_report_period_days * DAY_MS)
    opened = state.usage_opened
    k = 0
    while pause.started_ms + k * period <= now:
        ref = f"compute usage, period {k + 1} of pause {pause.pause_id}"
        end = pause.started_ms + (k + 1) * period
        for p in pause.bound:
            if (ref, p) not in opened and end > _joined_ms(state, pause, p):
                oblige(state, Obligation("usage-report", p, end, pause.trigger_index, ref))
        k += 1


def _joined_ms(state: State, pause: Pause, party: str) -> int:
    """When ``party`` became bound by ``pause`` (its start for the parties bound from the start)."""
    return pause.joined_ms.get(party, pause.started_ms)


# --- danger lines -----------------------------------------------------------------------------


def _lines(state: State, digest: str, metric: str, scope: str) -> list[Line]:
    """The lines of one policy on ``metric`` in ``scope`` (indexed once per policy, for speed)."""
    index = state.line_index.get(digest)
    if index is None:
        index = {}
        for line in state.policy_objects[digest].lines:
            index.setdefault((line.metric, line.scope), []).append(line)
        state.line_index[digest] = index
    return index.get((metric, scope), [])


def evaluate(state: State, metric: str, scope: str, subject: str, party: str, value: float, evidence: str,
             index: int, now: int, *, model: str | None = None) -> None:
    """Record every line of every policy in force that this value crosses, and set off its consequence."""
    for digest in state.in_force:
        policy = state.policy_objects[digest]
        for line in _lines(state, digest, metric, scope):
            if EVIDENCE_STRENGTH[evidence] < EVIDENCE_STRENGTH[line.evidence]:
                continue
            if not line.crossed_by(value):
                continue
            if (policy.id, line.id, subject) in state.crossed:
                _meet_notification(state, line, subject, party, evidence, index)
                continue
            state.crossed.add((policy.id, line.id, subject))
            crossing = Crossing(line.id, metric, scope, subject, party, value, line.value, evidence,
                                line.consequence.kind, index, now, policy=digest)
            state.crossings.append(crossing)
            event(state, index, now, "crossing", f"{party} crosses '{line.title}' of {policy.id} ({subject}: "
                                                 f"{value:.3g} {line.unit}, {evidence})")
            _consequence(state, line, crossing, model)


def _consequence(state: State, line: Line, crossing: Crossing, model: str | None) -> None:
    kind = line.consequence.kind
    if kind == "pause":
        position = len(state.crossings) - 1
        pause = state.active_pause
        if pause is not None:
            _join_pause(state, pause, position, crossing.index, crossing.time_ms)
        else:
            state.pending_pause.append(position)
            quorum_changed(state, crossing.index, crossing.time_ms)
            if state.active_pause is None:
                crossing.note = "no pause: the commitments' quorum is not met"
    elif kind == "review":
        target = model or crossing.subject
        # a review consequence always has window_days (Consequence's validator)
        state.review_required.setdefault(target, {"line": line.id,
                                                  "window_days": cast(float, line.consequence.window_days),
                                                  "index": crossing.index})
    elif kind == "notify":
        ob = Obligation("notification", crossing.party,
                        crossing.time_ms + int((line.consequence.deadline_days or 0) * DAY_MS),
                        crossing.index, f"line {line.id} on {crossing.subject}")
        if crossing.evidence == "declared":
            ob.met_index = crossing.index  # the party's own declaration is its notification
        oblige(state, ob)
    elif kind == "prohibit":
        violate(state, crossing.party, "prohibited", f"crossed the prohibited line '{line.title}' "
                                                     f"({crossing.subject})", [crossing.index], crossing.time_ms)


def _meet_notification(state: State, line: Line, subject: str, party: str, evidence: str, index: int) -> None:
    if line.consequence.kind != "notify" or evidence != "declared":
        return
    ref = f"line {line.id} on {subject}"
    for ob in state.obligations:
        if ob.kind == "notification" and ob.ref == ref and ob.party == party and ob.met_index is None \
                and not ob.violated:
            ob.met_index = index


# --- commitments, quorum, pause and resume ------------------------------------------------------


def h100e(state: State, party: str) -> float:
    """The H100-equivalents of ``party``'s latest inventory."""
    return sum(state.clusters.get(party, {}).values())


def bound_parties(state: State, policy_digest: str, now: int) -> list[str]:
    """Parties whose live commitment to the policy ``policy_digest`` has its quorum met (none for a policy that
    is not in force: commitments to a superseded or scheduled policy bind nobody).

    A quorum is met by the commitments that are themselves bound: the largest set of live commitments each of
    whose quorum that set meets. So a commitment whose own quorum is out of reach (a count of 99 among three labs)
    binds its party to nothing and counts towards nobody else's quorum either: no lab is counted as pausing that
    would not pause.
    """
    published = state.policies.get(policy_digest)
    if published is None or published["status"] != "in-force":
        return []
    live = [cs[policy_digest] for p, cs in state.commitments.items()
            if policy_digest in cs and cs[policy_digest].expires_ms > now and not state.parties[p].revoked]
    if not live:
        return []
    total = sum(h100e(state, p) for p, party in state.parties.items() if party.role == "lab")
    while True:
        share = sum(h100e(state, c.party) for c in live) / total if total > 0 else 0.0
        met = [c for c in live if (len(live) >= c.threshold if c.quorum_kind == "count" else share >= c.threshold)]
        if len(met) == len(live):
            return sorted(c.party for c in met)
        live = met


def quorum_changed(state: State, index: int, now: int) -> None:
    """After anything that can change a quorum: start the waiting pause if its policy's quorum is now met, or
    bind the parties that the quorum of a pause in force now binds."""
    pause = state.active_pause
    if pause is not None:
        for digest in dict.fromkeys(state.crossings[i].policy for i in pause.trigger_positions):
            _bind(state, pause, bound_parties(state, digest, now), digest, index, now)
        return
    for n, position in enumerate(state.pending_pause):
        crossing = state.crossings[position]
        if crossing.policy not in state.in_force:
            continue  # superseded while it waited: its quorum is the successor's business now
        bound = bound_parties(state, crossing.policy, now)
        if bound:
            _start_pause(state, position, bound, index, now)
            for other in state.pending_pause[:n] + state.pending_pause[n + 1:]:
                _join_pause(state, state.pauses[-1], other, index, now)
            state.pending_pause.clear()
            return


def _start_pause(state: State, position: int, bound: list[str], index: int, now: int) -> None:
    crossing = state.crossings[position]
    pause = Pause(str(crossing.index), crossing.line, crossing.index, now, [], policy=crossing.policy,
                  started_index=index, triggers=[crossing.index], trigger_positions=[position])
    state.pauses.append(pause)
    crossing.note = f"pause {pause.pause_id} started at entry {index}" + (
        "" if index == crossing.index else ", when the quorum of commitments to its policy was met")
    event(state, index, now, "pause", f"PAUSE {pause.pause_id} starts at entry {index} ('{crossing.line}' crossed "
                                      f"by {crossing.party} at entry {crossing.index})")
    _bind(state, pause, bound, crossing.policy, index, now)
    advance_time(state, index, now)


def _join_pause(state: State, pause: Pause, position: int, index: int, now: int) -> None:
    """A pause-line crossing (logged during the pause, or waiting when it started) joins the pause: it ends with
    it, and binds whom its own policy's quorum binds."""
    crossing = state.crossings[position]
    if position not in pause.trigger_positions:
        pause.trigger_positions.append(position)
        if crossing.index not in pause.triggers:
            pause.triggers.append(crossing.index)
    crossing.note = f"joins pause {pause.pause_id}"
    _bind(state, pause, bound_parties(state, crossing.policy, now), crossing.policy, index, now)


def _bind(state: State, pause: Pause, parties: list[str], digest: str, index: int, now: int) -> None:
    """Bind ``parties`` (by their commitments to ``digest``) to ``pause``: newcomers join, with an acknowledgement
    to make; the scopes each is held to widen to what its commitment says (they never narrow)."""
    ack_ms = int(pause_parameters(state, pause).ack_window_hours * HOUR_MS)
    joined = []
    for p in parties:
        scopes = state.commitments[p][digest].pauses
        held = pause.scopes.setdefault(p, [])
        for s in scopes:
            if s not in held:
                held.append(s)
        held.sort()
        if p in pause.bound:
            continue
        pause.bound.append(p)
        pause.joined[p] = index
        if index != pause.started_index:
            pause.joined_ms[p] = now
        oblige(state, Obligation("acknowledgement", p, now + ack_ms, index, f"pause {pause.pause_id}"))
        joined.append(p)
    pause.bound.sort()
    if joined:
        event(state, index, now, "pause-binds", f"pause {pause.pause_id} binds {', '.join(joined)}")
        if index != pause.started_index:
            _open_usage_periods(state, pause, now)


def resume_met(state: State, pause: Pause, approvals: dict[str, int]) -> bool:
    """Whether ``approvals`` (party -> entry) meet the resume quorum of ``pause``'s policy."""
    rq = pause_parameters(state, pause).resume_quorum
    voters = [p for p in pause.bound if not state.parties[p].revoked]
    yes = [p for p in voters if p in approvals]
    if not voters:
        return False
    total = sum(h100e(state, p) for p in voters) if rq.kind == "compute-share" else 0.0
    if total > 0:
        share = sum(h100e(state, p) for p in yes) / total
    else:  # a count quorum, or a compute share among parties that declared no compute: count them
        share = len(yes) / len(voters)
    if share <= rq.more_than:
        return False
    return all(any(state.parties[p].role == role and not state.parties[p].revoked for p in approvals)
               for role in rq.also_required)


# --- releases -------------------------------------------------------------------------------


def review_requirement(state: State, model_name: str, run: Run | None) -> ReviewRequirement | None:
    """The review requirement on a model, by its name or by the name of the run that produced its weights
    (so that renaming the weights does not escape it)."""
    req = state.review_required.get(model_name)
    if req is None and run is not None:
        req = state.review_required.get(run.model_name)
    return req


def unverified_lineage(state: State, run: Run) -> list[Run]:
    """The runs whose final weights are not verified, from ``run`` up its lineage by base weights digest (a
    registered base model counts as approved and ends the lineage)."""
    out: list[Run] = []
    seen: set[str] = set()
    current: Run | None = run
    while current is not None and current.key not in seen:
        seen.add(current.key)
        if not current.verified_final:
            out.append(current)
        current = producer(state, current.base_digest)
    return out


def release_violations(state: State, party: str, model_name: str, weights: str | None, now: int,
                       index: int | None = None, *, label: str | None = None,
                       released_ms: int | None = None) -> list[tuple[str, str, list[int]]]:
    """What a release by ``party`` of ``model_name`` with weights ``weights`` (sha256 hex, or None for another
    algorithm) at logged time ``now`` violates: ``(kind, detail, evidence entries)``; ``index`` is the
    release's own entry (None: a release being considered, not yet logged); ``label`` how messages name the
    weights (default: the digest's first 12 hex digits).

    ``released_ms`` is when the lab says the release happened (``released_at``). The release is judged at both
    times: the weights were out by the time the statement was logged, and the lab's own word that they were out
    earlier counts against it (a release dated inside a pause, or before a review cleared, logged after it). An
    earlier date never excuses what the logged time shows."""
    out: list[tuple[str, str, list[int]]] = []
    here = [] if index is None else [index]

    def add(kind: str, detail: str, evidence: list[int]) -> None:
        out.append((kind, detail, evidence))

    run = producer(state, weights)
    shown = label or ((weights or "")[:12] or "(not a sha256 digest)")
    what = f"{model_name} (weights {shown}" + (f", run {run.key})" if run is not None else ")")
    earlier = released_ms is not None and released_ms < now
    dated = f" (dated {iso(released_ms)}, logged {iso(now)})" if earlier and released_ms is not None else ""
    pause = state.active_pause
    if pause is not None and party in pause.bound and "releases" in pause.scopes.get(party, []):
        add("release-during-pause", f"released {model_name} during pause {pause.pause_id} (in force since "
                                    f"{iso(pause.started_ms)})", [pause.trigger_index, *here])
    elif earlier and released_ms is not None:
        for past in state.pauses:
            began = past.joined_ms.get(party, past.started_ms)
            if (party in past.bound and "releases" in past.scopes.get(party, []) and began <= released_ms
                    and (past.ended_ms is None or released_ms < past.ended_ms)):
                add("release-during-pause", f"released {model_name} during pause {past.pause_id}{dated}",
                    [past.trigger_index, *here])
                break
    if run is None:
        if weights is None or weights not in state.bases:
            add("release-unverified-weights", f"released {model_name} with weights {shown} that no run on the log "
                                              "finished with and no registered base model has", here)
    else:
        unverified = unverified_lineage(state, run)
        if unverified:
            def named(r: Run) -> str:
                return f"run {r.key} ({r.model_name}, finished at entry {r.finish_index})"

            up = ", ".join(named(r) for r in unverified if r is not run)
            if unverified[0] is not run:
                why = f"; up its lineage the final weights of {up} are not verified"
            elif up:
                why = f", which are not verified, nor are the final weights up its lineage of {up}"
            else:
                why = ", which no passing verification report on that RunFinish has verified"
            finished = (r.finish_index for r in (run, *unverified) if r.finish_index is not None)
            add("release-unverified-weights",
                f"released {model_name} with weights {shown}, the final weights of {named(run)}{why}",
                sorted({*here, *finished}))
    req = review_requirement(state, model_name, run)
    if req is None:
        return out
    reviews = [r for r in state.reviews.values() if r.party == party and weights is not None
               and r.model_digest == weights]
    if not reviews:
        add("release-without-review", f"released {what} without submitting these weights for review",
            [req["index"], *here])
        return out
    # A block of these weights stands until a review of them is cleared after it (in log order): submitting them
    # again and letting the new review's window run out does not lift it, nor does a clearance decided before it.
    blocks = [r for r in reviews if r.decision == "block" and r.decision_index is not None]
    blocked = max(blocks, key=lambda r: r.decision_index or 0) if blocks else None
    block_at = blocked.decision_index if blocked is not None and blocked.decision_index is not None else -1
    lifted = any(r.decision == "clear" and (r.decision_index or 0) > block_at for r in reviews)
    review = reviews[-1]
    if blocked is not None and not lifted:
        others = [r.submitted_index for r in reviews if r is not blocked]
        add("release-blocked", f"released {what} although review {blocked.submission_id} blocked these weights"
            + (" (no review of them was cleared after that)" if others else ""),
            sorted({blocked.submitted_index, block_at, *others, *here}))
    elif review.decision != "clear" and now < review.window_end_ms:
        add("release-before-clearance", f"released {what} before review {review.submission_id} of these weights "
                                        f"cleared (window ends {iso(review.window_end_ms)})",
            [review.submitted_index, *here])
    elif earlier and released_ms is not None:
        first = reviews[0]
        if released_ms < first.submitted_ms:
            add("release-without-review", f"released {what}{dated} before submitting these weights for review "
                                          f"(review {first.submission_id} was submitted {iso(first.submitted_ms)})",
                [req["index"], first.submitted_index, *here])
        elif released_ms < review.window_end_ms and (review.decision != "clear" or review.decision_ms is None
                                                     or released_ms < review.decision_ms):
            decided = [review.decision_index] if review.decision_index is not None else []
            add("release-before-clearance", f"released {what}{dated} before review {review.submission_id} of these "
                                            f"weights cleared (window ends {iso(review.window_end_ms)})",
                [review.submitted_index, *decided, *here])
    return out


def release_obstacles(state: State, party: str, model_name: str, weights: str | None,
                      now_ms: int) -> list[tuple[str, str]]:
    """Why ``party`` may not release ``model_name`` with weights ``weights`` (sha256 hex) at ``now_ms``: the
    ``(violation kind, reason)`` pairs a Release would raise; empty when it may."""
    return [(kind, detail.replace("released ", "releasing ", 1))
            for kind, detail, _ in release_violations(state, party, model_name, weights, now_ms)]


# --- compute attestations: the runs nobody declared ------------------------------------------------


def attestation_parameters(state: State) -> AttestationParameters:
    """The attestation parameters of the first policy in force (the defaults when none is)."""
    policies = policies_in_force(state)
    return (policies[0].parameters if policies else _DEFAULTS).compute_attestation


def declared_between(run: Run, start_ms: int, end_ms: int) -> float:
    """The FLOP ``run`` declares it spent in ``[start_ms, end_ms)``: its declared points (RunStart at 0, each
    RunProgress, the RunFinish) joined linearly, so a progress declared after a period still gives the period
    its share."""
    def reached(t: int) -> float:
        points = run.progress
        if not points or t <= points[0][0]:
            return 0.0
        for (t0, f0, _), (t1, f1, _) in itertools.pairwise(points):
            if t <= t1:
                return f0 + (f1 - f0) * ((t - t0) / (t1 - t0)) if t1 > t0 else f1
        return float(points[-1][1])

    return max(0.0, reached(end_ms) - reached(start_ms))


def _monitoring_flop(state: State, params: AttestationParameters) -> float:
    """The smallest unexplained compute worth a finding: the policy's figure, else its lowest run-scope
    training-compute line, else 10^25 FLOP."""
    if params.unexplained_min_flop is not None:
        return float(params.unexplained_min_flop)
    lines = [line.value for p in policies_in_force(state) for line in p.lines
             if line.metric == "training_compute" and line.scope == "run"]
    return min(lines) if lines else 1e25


def cross_check(state: State, key: str, index: int, now: int) -> None:
    """Compare what the attested chip-hours of one customer and period could have delivered with the compute its
    declared runs explain; record (or clear) the ``unexplained-compute`` finding, and during a pause that binds
    the customer to training, make unexplained compute beyond the paused limit a violation."""
    rec = state.attested[key]
    params = attestation_parameters(state)
    customer, start, end = rec["customer"], rec["period_start_ms"], rec["period_end_ms"]
    low = high = chip_hours = 0.0
    parts = []
    for u in sorted(rec["usage"].values(), key=lambda u: (u["cluster_id"], u["chip_model"])):
        peak = get_chip(u["chip_model"]).peak_flop_per_s
        flop = u["chip_hours"] * 3600 * peak
        chip_hours += u["chip_hours"]
        low += flop * params.utilisation_low
        high += flop * params.utilisation_high
        parts.append(f"{u['chip_hours']:,.0f} chip-hours of {u['chip_model']} ({u['cluster_id']}) × {peak:.3g} FLOP/s "
                     "× 3600 s")
    runs = [r for r in state.runs.values() if r.party == customer]
    declared = sum(declared_between(r, start, end) for r in runs)
    unexplained = low - declared
    minimum = _monitoring_flop(state, params)
    arithmetic = (f"{' + '.join(parts) or 'no chip-hours'} × utilisation [{params.utilisation_low:g}, "
                  f"{params.utilisation_high:g}] = {low:.3g}..{high:.3g} FLOP; declared runs explain {declared:.3g} "
                  f"FLOP in {iso(start)}..{iso(end)}")
    declarations = sorted({int(p[2]) for r in runs for p in _points_for(r, start, end)})
    evidence = sorted({*rec["entries"], *declarations})
    if low > declared * (1 + params.unexplained_margin) and unexplained >= minimum:
        finding: ComputeFinding = {
            "customer": customer, "period_start_ms": start, "period_end_ms": end, "chip_hours": chip_hours,
            "capacity_low_flop": low, "capacity_high_flop": high, "declared_flop": declared,
            "unexplained_flop": unexplained, "margin": params.unexplained_margin, "minimum_flop": minimum,
            "evidence": evidence, "arithmetic": arithmetic + f": at least {unexplained:.3g} FLOP unexplained "
                                                             f"(finding from {minimum:.3g} FLOP)",
            "index": index}
        known = state.findings.get(key)
        if known is None or known["arithmetic"] != finding["arithmetic"]:
            event(state, index, now, "finding", f"unexplained compute at {customer}: {finding['arithmetic']}")
        state.findings[key] = finding
    elif key in state.findings:
        del state.findings[key]
        event(state, index, now, "finding", f"the compute attested for {customer} in {iso(start)}..{iso(end)} is now "
                                            f"explained: {arithmetic}")
    _paused_unexplained(state, key, unexplained, arithmetic, evidence, index, now)


def _points_for(run: Run, start: int, end: int) -> list[list[float]]:
    """The declared points of ``run`` that bear on ``[start, end]``: those inside it and the first after it."""
    inside = [p for p in run.progress if start <= p[0] <= end]
    after = next((p for p in run.progress if p[0] > end), None)
    return inside + ([after] if after is not None else [])


def _paused_unexplained(state: State, key: str, unexplained: float, arithmetic: str, evidence: list[int],
                        index: int, now: int) -> None:
    """During a pause that holds the customer to training, attested use beyond the paused limit that no declared
    run explains is a violation, declared or not (once per customer and period)."""
    rec = state.attested[key]
    customer = rec["customer"]
    for pause in state.pauses:
        if customer not in pause.bound or "training" not in pause.scopes.get(customer, []):
            continue
        began = pause.joined_ms.get(customer, pause.started_ms)
        ended = pause.ended_ms if pause.ended_ms is not None else now
        if not (rec["period_start_ms"] < ended and began < rec["period_end_ms"]):
            continue
        limit = pause_parameters(state, pause).paused_run_flop_limit
        if unexplained > limit and not rec.get("paused_violation"):
            rec["paused_violation"] = index
            violate(state, customer, "unexplained-compute-during-pause",
                    f"attested compute no declared run explains during pause {pause.pause_id}: {arithmetic}; at "
                    f"least {unexplained:.3g} FLOP beyond the paused limit of {limit:.3g} FLOP",
                    sorted({pause.trigger_index, *evidence, index}), now)
            return


def recheck_customer(state: State, customer: str, index: int, now: int) -> None:
    """A declaration of ``customer`` may explain compute attested earlier: check its attested periods again."""
    for key in state.attested_by_customer.get(customer, ()):
        cross_check(state, key, index, now)
