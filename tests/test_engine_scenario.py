"""The whole pause story, played through the real registry and a real SQLite log with a hand-set clock.

Three labs, a regulator (``gov``), an auditor (``audit``) and the coordinator:
admission, the ``coordinated-pause`` pack, inventories, commitments reaching a
count quorum of 3, a run over the pause line starting the pause, acknowledgements
(one missed), training during the pause, compute-usage periods (one missed), a
quorum resume, pre-release reviews and releases, and a failing verification
report. Every assertion names the log indexes and logged times the engine must cite.

Releases are bound to weights: a model released with weights no finished, verified run
produced is a ``release-unverified-weights`` violation, and a review clears one weights
digest. The review tests here release verified weights (``_verified_weights``) so that
they test the review alone; ``test_engine_binding.py`` tests the binding itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_kit import (
    DAY_MS,
    H64,
    HOUR_MS,
    Clock,
    World,
    commitment_fields,
    finish_fields,
    key,
    labs_world,
    progress_fields,
    report_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

from redline.engine import Entry, replay
from redline.engine.effects import iso
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import load_pack
from redline.registry import Registry
from redline.statements import (
    Check,
    Commitment,
    ComputeUsageReport,
    PauseAcknowledgement,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewFinding,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunStart,
    RunUsage,
    VerificationReport,
)

POLICY = load_pack("coordinated-pause")
INVENTORIES = {"lab-a": 1000, "lab-b": 500, "lab-c": 250}
LABS = ["lab-a", "lab-b", "lab-c"]
MODEL_DIGEST = {"sha256": H64}


def violations(world: World) -> list[tuple[str, str, list[int]]]:
    """(party, kind, evidence) of every violation, in order."""
    return [(v.party, v.kind, v.evidence) for v in world.state.violations]


def _verified_weights(world: World, lab: str, run_id: str, model: str, flop: float) -> dict[str, str]:
    """Declare a run bound to a spec, finish it and have the auditor pass its RunFinish (three entries); return
    its final weights digest."""
    spec = run_spec(lab, run_id)
    world.sub(lab, RunStart, **run_start_fields(run_id, model, flop, spec=spec))
    finish = world.sub(lab, RunFinish, **finish_fields(run_id, flop, weights(model), spec=spec))
    world.sub("audit", VerificationReport, **report_fields(lab, run_id, finish.index))
    assert world.state.runs[f"{lab}/{run_id}"].verified_final
    return {"sha256": weights(model)}


def usage(world: World, party: str, start_ms: int, end_ms: int) -> dict:
    """Fields of a compute-usage report for a period."""
    return {"period_start": utc(start_ms), "period_end": utc(end_ms),
            "runs": [RunUsage(run_id="rb1", chip_hours=0.0)] if party == "lab-b" else [],
            "unaccounted_chip_hours": 12.5}


@pytest.fixture()
def world(tmp_path: Path) -> World:
    """Labs admitted, the pack published (index 6) and inventories declared (indexes 7..9)."""
    return labs_world(tmp_path, "coordinated-pause", INVENTORIES)


def test_setup_admits_parties_publishes_the_pack_and_flags_covered_clusters(world: World) -> None:
    st = world.state
    assert st.coordinator == "coordinator" and st.origin == "redline.example/log"
    assert {n: p.role for n, p in st.parties.items()} == {
        "coordinator": "coordinator", "lab-a": "lab", "lab-b": "lab", "lab-c": "lab", "gov": "regulator",
        "audit": "auditor"}
    assert [p.admitted_index for p in st.parties.values()] == [0, 1, 2, 3, 4, 5]
    assert st.in_force == [POLICY.digest]
    assert st.policies == {POLICY.digest: {
        "policy_id": "coordinated-pause", "version": 1, "index": 6, "effective_from_ms": st.timeline[6].time_ms,
        "supersedes": [], "status": "in-force", "in_force_index": 6, "superseded_index": None}}
    assert st.clusters == {"lab-a": {"c1": 1000.0}, "lab-b": {"c1": 500.0}, "lab-c": {"c1": 250.0}}
    assert [(c.line, c.subject, c.value, c.consequence, c.index) for c in st.crossings] == [
        ("covered-cluster", "lab-a/c1", 1000.0, "flag", 7),
        ("covered-cluster", "lab-b/c1", 500.0, "flag", 8),
        ("covered-cluster", "lab-c/c1", 250.0, "flag", 9)]
    assert st.status == "normal" and st.obligations == [] and st.violations == [] and st.rejected == []


def test_a_pause_line_crossed_before_the_quorum_waits_for_it(world: World) -> None:
    """With a count quorum of 3, a crossing after two commitments pauses nothing until the third one."""
    world.sub("lab-a", Commitment, **commitment_fields(POLICY))
    world.sub("lab-b", Commitment, **commitment_fields(POLICY))
    world.clock.advance(hours=2)
    crossing_entry = world.sub("lab-c", RunStart, **run_start_fields("rc1", "C-1", 2e25))
    st = world.state
    pause_crossing = next(c for c in st.crossings if c.line == "pause-line")
    assert (pause_crossing.subject, pause_crossing.index, pause_crossing.value) == ("lab-c/rc1", 12, 2e25)
    assert pause_crossing.note == "no pause: the commitments' quorum is not met"
    assert st.status == "normal" and st.pauses == [] and st.active_pause is None
    assert st.pending_pause == [st.crossings.index(pause_crossing)]
    assert [o.kind for o in st.obligations] == []

    world.clock.advance(hours=5)
    third = world.sub("lab-c", Commitment, **commitment_fields(POLICY))
    st = world.state
    assert st.status == "paused"
    [pause] = st.pauses
    # The crossing is the trigger; the pause starts when the quorum is met, at the third commitment's time.
    assert (pause.pause_id, pause.trigger_line, pause.trigger_index) == ("12", "pause-line", 12)
    assert pause.started_ms == third.time_ms == crossing_entry.time_ms + 5 * HOUR_MS
    assert pause.bound == LABS
    assert st.pending_pause == []
    assert [(o.kind, o.party, o.due_ms, o.origin_index) for o in st.obligations if o.kind == "acknowledgement"] == [
        ("acknowledgement", lab, third.time_ms + 72 * HOUR_MS, third.index) for lab in LABS]


def test_expired_commitments_do_not_count_towards_the_quorum(world: World) -> None:
    for lab in LABS[:2]:
        world.sub(lab, Commitment, **commitment_fields(POLICY))
    world.sub("lab-c", Commitment, **commitment_fields(POLICY, days=1))  # expires at T0 + 1 day
    world.clock.advance(days=2)
    world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25))
    assert world.state.status == "normal"
    assert world.state.crossings[-2].line == "pause-line"
    assert world.state.crossings[-2].note == "no pause: the commitments' quorum is not met"


def test_a_pause_resumed_before_the_acknowledgement_deadline_needs_no_acknowledgement(world: World) -> None:
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(POLICY))
    world.clock.advance(hours=1)
    start = world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25))
    assert world.state.status == "paused"
    world.clock.advance(hours=1)
    ack = world.sub("lab-a", PauseAcknowledgement, pause_id=str(start.index))
    world.sub("lab-a", ResumeProposal, proposal_id="r", reason="a false alarm")
    world.sub("lab-b", ResumeApproval, proposal_id="r")
    resumed = world.sub("lab-c", ResumeApproval, proposal_id="r")
    assert world.state.status == "resumed"
    world.clock.advance(hours=100)  # well past the 72-hour acknowledgement window
    world.sub("lab-a", Commitment, **commitment_fields(POLICY))  # any entry moves the log's time on
    st = world.state
    assert violations(world) == []  # lab-b and lab-c never acknowledged, but the pause was over in time
    acks = {o.party: o for o in st.obligations if o.kind == "acknowledgement"}
    assert acks["lab-a"].met_index == ack.index  # by its acknowledgement
    assert acks["lab-b"].met_index == acks["lab-c"].met_index == resumed.index  # by the resume


def test_the_whole_pause_story(world: World) -> None:
    clock: Clock = world.clock
    clock.advance(hours=1)
    # --- commitments: two, then a run that crosses only the review line, then the third -----------
    assert world.sub("lab-a", Commitment, **commitment_fields(POLICY)).index == 10
    assert world.sub("lab-b", Commitment, **commitment_fields(POLICY)).index == 11
    rb1 = world.sub("lab-b", RunStart, **run_start_fields("rb1", "B-1", 5e24))
    assert rb1.index == 12
    st = world.state
    assert [(c.line, c.subject, c.index) for c in st.crossings[3:]] == [("pre-release-review", "B-1", 12)]
    assert st.review_required == {"B-1": {"line": "pre-release-review", "window_days": 30.0, "index": 12}}
    assert st.status == "normal"
    assert world.sub("lab-c", Commitment, **commitment_fields(POLICY)).index == 13
    assert st.status == "normal"  # the quorum binds, but no pause line has been crossed
    assert sorted(st.commitments) == LABS
    assert st.commitments["lab-c"][POLICY.digest].threshold == 3.0
    assert st.commitments["lab-c"][POLICY.digest].index == 13

    # --- a run declaration over the pause line starts the pause at its logged time ------------------
    clock.advance(days=1)
    ra1 = world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25))
    t1 = ra1.time_ms
    assert (ra1.index, t1) == (14, clock())
    assert st.status == "paused"
    [pause] = st.pauses
    assert pause.started_ms == t1
    assert (pause.pause_id, pause.trigger_index, pause.trigger_line) == ("14", 14, "pause-line")
    assert pause.bound == LABS and pause.ended_ms is None
    crossing = next(c for c in st.crossings if c.line == "pause-line")
    assert (crossing.subject, crossing.party, crossing.value, crossing.threshold, crossing.index, crossing.time_ms,
            crossing.note) == ("lab-a/ra1", "lab-a", 3e25, 1e25, 14, t1, "pause 14 started at entry 14")
    assert (pause.started_index, pause.policy, pause.triggers, pause.joined) == (14, POLICY.digest, [14],
                                                                                 {lab: 14 for lab in LABS})
    assert ("coordinated-pause", "pre-release-review", "A-1") in st.crossed
    ack_due = t1 + 72 * HOUR_MS
    period = 7 * DAY_MS
    assert [(o.kind, o.party, o.due_ms) for o in st.obligations] == (
        [("acknowledgement", lab, ack_due) for lab in LABS] + [("usage-report", lab, t1 + period) for lab in LABS])

    # --- two labs acknowledge within the window ---------------------------------------------------
    clock.advance(hours=1)
    assert world.sub("lab-a", PauseAcknowledgement, pause_id="14").index == 15
    clock.advance(hours=9)
    assert world.sub("lab-b", PauseAcknowledgement, pause_id="14").index == 16
    assert pause.acknowledged == {"lab-a": 15, "lab-b": 16}

    # --- lab-b reports progress on its run during the pause, exactly at the ack deadline -------------
    clock.set(ack_due)
    progress = world.sub("lab-b", RunProgress, **progress_fields("rb1", 1000, 2e23, when=utc(ack_due)))
    assert (progress.index, progress.time_ms) == (17, ack_due)
    assert violations(world) == [("lab-b", "training-during-pause", [14, 17])]
    assert "beyond the paused limit of 1e+22 FLOP" in st.violations[0].detail
    assert st.violations[0].time_ms == ack_due
    # At the deadline itself lab-c is not yet late.
    assert not any(o.violated for o in st.obligations)

    # --- the first entry past the 72 h window puts lab-c in violation; lab-a reports usage on time ----
    clock.advance(ms=1)
    report_a = world.sub("lab-a", ComputeUsageReport, **usage(world, "lab-a", t1, t1 + period))
    assert report_a.index == 18
    assert violations(world)[1:] == [("lab-c", "missed-acknowledgement", [14, 18])]
    assert st.violations[1].time_ms == ack_due + 1
    assert st.violations[1].detail == (f"missed the acknowledgement deadline ({iso(ack_due)}) for pause 14")
    acks = {o.party: o for o in st.obligations if o.kind == "acknowledgement"}
    assert {p: (o.met_index, o.violated) for p, o in acks.items()} == {
        "lab-a": (15, False), "lab-b": (16, False), "lab-c": (None, True)}
    clock.set(t1 + 5 * DAY_MS)
    assert world.sub("lab-b", ComputeUsageReport, **usage(world, "lab-b", t1, t1 + period)).index == 19

    # --- period 1 closes: lab-c missed it; the auditor's report on lab-a's run fails ------------------
    clock.set(t1 + period + HOUR_MS)
    report = world.sub("audit", VerificationReport, run_id="ra1", run_party="lab-a",
                       checks=[Check(name="segment-replay", passed=False, detail="step 412 diverges"),
                               Check(name="flop-three-ways", passed=True, detail="")],
                       verdict="fail", compute_spent_flop=1e21, sample_seed="00ff", segments_checked=8,
                       p_detect=0.99, failing_step=412)
    assert report.index == 20
    assert violations(world)[2:] == [("lab-c", "missed-usage-report", [14, 20]),
                                     ("lab-a", "failed-verification", [14, 20])]
    assert st.runs["lab-a/ra1"].verified == "fail"
    assert st.runs["lab-a/ra1"].indexes == [14]
    assert st.timeline[-1].kind == "violation" and st.timeline[-2].text == (
        "audit verifies lab-a/ra1: fail (first bad step 412)")
    usage_obs = [(o.party, o.ref.split(",")[1].strip(), o.met_index, o.violated)
                 for o in st.obligations if o.kind == "usage-report"]
    assert usage_obs == [
        ("lab-a", "period 1 of pause 14", 18, False), ("lab-b", "period 1 of pause 14", 19, False),
        ("lab-c", "period 1 of pause 14", None, True),
        ("lab-a", "period 2 of pause 14", None, False), ("lab-b", "period 2 of pause 14", None, False),
        ("lab-c", "period 2 of pause 14", None, False)]
    assert [o.due_ms for o in st.obligations if o.kind == "usage-report"][3:] == [t1 + 2 * period] * 3

    # --- a quorum resume: a proposal and approvals from two of the three bound labs --------------
    clock.advance(days=1)
    assert world.sub("lab-a", ResumeProposal, proposal_id="resume-1", reason="the line is re-evaluated").index == 21
    clock.advance(hours=1)
    assert world.sub("lab-b", ResumeApproval, proposal_id="resume-1").index == 22
    assert st.status == "paused"  # one approval of three is not a majority
    clock.advance(hours=1)
    approval = world.sub("lab-c", ResumeApproval, proposal_id="resume-1")
    assert approval.index == 23
    assert st.status == "resumed" and st.active_pause is None
    assert (pause.ended_ms, pause.ended_index) == (approval.time_ms, 23)
    assert pause.proposals == {"resume-1": {"by": "lab-a", "index": 21, "approvals": {"lab-b": 22, "lab-c": 23}}}
    # The period cut short by the resume needs no report.
    assert [o.met_index for o in st.obligations if o.ref.startswith("compute usage, period 2")] == [23, 23, 23]

    # --- reviews and releases ---------------------------------------------------------------------
    clock.advance(days=1)
    submitted = world.sub("lab-b", ReviewSubmission, submission_id="sub-b1", model_name="B-1",
                          model_digest=MODEL_DIGEST, run_id="rb1")
    assert submitted.index == 24
    review = st.reviews["lab-b/sub-b1"]
    assert (review.window_days, review.submitted_ms, review.window_end_ms) == (
        30.0, submitted.time_ms, submitted.time_ms + 30 * DAY_MS)
    clock.advance(days=3)
    # rb1 never finished: no run on the log produced these weights, so they are unverified too.
    early = world.sub("lab-b", Release, model_name="B-1", model_digest=MODEL_DIGEST, released_at=utc(clock()))
    assert early.index == 25
    assert violations(world)[4:] == [("lab-b", "release-unverified-weights", [25]),
                                     ("lab-b", "release-before-clearance", [24, 25])]
    assert st.violations[4].detail == (f"released B-1 with weights {H64[:12]} that no run on the log finished with "
                                       "and no registered base model has")

    # lab-c's run is bound to a spec, finished, and its RunFinish verified: its final weights are reviewed.
    spec = run_spec("lab-c", "rc1")
    rc1 = world.sub("lab-c", RunStart, **run_start_fields("rc1", "C-1", 2e24, spec=spec))
    assert rc1.index == 26 and st.status == "resumed"  # under the pause line: no second pause
    assert st.review_required["C-1"]["index"] == 26
    finish = world.sub("lab-c", RunFinish, **finish_fields("rc1", 2e24, weights("C-1"), spec=spec))
    assert finish.index == 27
    assert world.sub("audit", VerificationReport, **report_fields("lab-c", "rc1", 27)).index == 28
    run_c = st.runs["lab-c/rc1"]
    assert (run_c.spec_digest, run_c.final_digest, run_c.finish_index, run_c.verified_final,
            run_c.verified_final_index) == (spec.digest(), weights("C-1"), 27, True, 28)
    c1_weights = {"sha256": weights("C-1")}
    assert world.sub("lab-c", ReviewSubmission, submission_id="sub-c1", model_name="C-1",
                     model_digest=c1_weights, run_id="rc1").index == 29
    clock.advance(days=2)
    assert world.sub("gov", ReviewFinding, submitter="lab-c", submission_id="sub-c1", finding="no critical capability",
                     severity="info").index == 30
    assert world.sub("gov", ReviewDecision, submitter="lab-c", submission_id="sub-c1", decision="clear",
                     reason="evaluations within bounds").index == 31
    assert (st.reviews["lab-c/sub-c1"].decision, st.reviews["lab-c/sub-c1"].decision_index) == ("clear", 31)
    assert st.reviews["lab-c/sub-c1"].findings == [
        {"by": "gov", "severity": "info", "finding": "no critical capability", "index": 30}]
    cleared = world.sub("lab-c", Release, model_name="C-1", model_digest=c1_weights, released_at=utc(clock()))
    assert cleared.index == 32
    assert len(st.violations) == 6  # well within the window, but cleared and verified: no violation

    unreviewed = world.sub("lab-a", Release, model_name="A-1", model_digest=MODEL_DIGEST, released_at=utc(clock()))
    assert unreviewed.index == 33
    assert violations(world)[6:] == [("lab-a", "release-unverified-weights", [33]),
                                     ("lab-a", "release-without-review", [14, 33])]
    assert st.releases == [{"party": "lab-b", "model": "B-1", "index": 25, "digest": H64, "run": None},
                           {"party": "lab-c", "model": "C-1", "index": 32, "digest": weights("C-1"),
                            "run": "lab-c/rc1"},
                           {"party": "lab-a", "model": "A-1", "index": 33, "digest": H64, "run": None}]

    # --- the whole story, once more ---------------------------------------------------------------
    assert violations(world) == [
        ("lab-b", "training-during-pause", [14, 17]),
        ("lab-c", "missed-acknowledgement", [14, 18]),
        ("lab-c", "missed-usage-report", [14, 20]),
        ("lab-a", "failed-verification", [14, 20]),
        ("lab-b", "release-unverified-weights", [25]),
        ("lab-b", "release-before-clearance", [24, 25]),
        ("lab-a", "release-unverified-weights", [33]),
        ("lab-a", "release-without-review", [14, 33]),
    ]
    assert st.rejected == []
    assert st.next_index == world.log.size == 34
    assert {n: p.last_seq for n, p in st.parties.items()} == {
        "coordinator": 7, "lab-a": 7, "lab-b": 9, "lab-c": 7, "gov": 2, "audit": 2}
    kinds = [e.kind for e in st.timeline]
    assert kinds.count("pause") == 1 and kinds.count("resume") == 1 and kinds.count("crossing") == 7

    # Anyone holding the log reaches the same state: reopen it from disk and replay.
    world.log.store.close()
    reopened = Log.open(SqliteStore(world.path), trusted=key("redline.example/log").verifier())
    assert Registry(reopened).state.digest() == st.digest()
    assert replay(Entry(i, t, e) for i, t, e in reopened.entries()).to_dict() == st.to_dict()


def test_a_release_after_the_window_without_a_decision_is_not_a_violation(world: World) -> None:
    b1 = _verified_weights(world, "lab-b", "rb1", "B-1", 5e24)  # entries 10..12
    sub = world.sub("lab-b", ReviewSubmission, submission_id="s1", model_name="B-1", model_digest=b1)
    world.clock.set(sub.time_ms + 30 * DAY_MS - 1)
    world.sub("lab-b", Release, model_name="B-1", model_digest=b1, released_at=utc(world.clock()))
    assert [(v.kind, v.evidence) for v in world.state.violations] == [("release-before-clearance", [13, 14])]
    world.clock.set(sub.time_ms + 30 * DAY_MS)
    world.sub("lab-b", Release, model_name="B-1", model_digest=b1, released_at=utc(world.clock()))
    assert len(world.state.violations) == 1


def test_a_blocked_model_released_is_a_violation(world: World) -> None:
    b1 = _verified_weights(world, "lab-b", "rb1", "B-1", 5e24)  # entries 10..12
    world.sub("lab-b", ReviewSubmission, submission_id="s1", model_name="B-1", model_digest=b1)
    world.sub("gov", ReviewDecision, submitter="lab-b", submission_id="s1", decision="block", reason="critical finding")
    world.clock.advance(days=40)
    world.sub("lab-b", Release, model_name="B-1", model_digest=b1, released_at=utc(world.clock()))
    assert [(v.party, v.kind, v.evidence) for v in world.state.violations] == [
        ("lab-b", "release-blocked", [13, 14, 15])]
    assert world.state.violations[0].detail == (f"released B-1 (weights {b1['sha256'][:12]}, run lab-b/rb1) although "
                                                "review s1 blocked these weights")


def test_a_model_under_the_review_line_needs_no_review(world: World) -> None:
    small = _verified_weights(world, "lab-b", "rb1", "B-small", 1e24)  # not over 1e24
    world.sub("lab-b", Release, model_name="B-small", model_digest=small, released_at=utc(world.clock()))
    assert world.state.review_required == {} and world.state.violations == []
    assert world.state.releases == [{"party": "lab-b", "model": "B-small", "index": 13, "digest": small["sha256"],
                                     "run": "lab-b/rb1"}]


def _paused(world: World) -> int:
    """Commit all three labs and cross the pause line; return the pause's start time."""
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(POLICY))
    world.clock.advance(hours=1)
    start = world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25)).time_ms
    assert world.state.pauses[0].started_ms == start
    for lab in LABS:
        world.sub(lab, PauseAcknowledgement, pause_id="13")
    return start


def test_periods_that_begin_and_end_between_two_entries_are_missed_at_the_second(world: World) -> None:
    start = _paused(world)
    world.sub("lab-a", ComputeUsageReport, **usage(world, "lab-a", start, start + 7 * DAY_MS))  # period 1, lab-a
    world.clock.set(start + 30 * DAY_MS)  # periods 2, 3 and 4 begin and end before the next entry; 5 begins
    late = world.sub("lab-b", ComputeUsageReport, **usage(world, "lab-b", start, start + 30 * DAY_MS))
    st = world.state
    missed = [(v.party, v.detail.split("for ")[1], v.evidence, v.time_ms) for v in st.violations]
    assert missed == [("lab-b", "compute usage, period 1 of pause 13", [13, late.index], late.time_ms),
                      ("lab-c", "compute usage, period 1 of pause 13", [13, late.index], late.time_ms)] + [
        (lab, f"compute usage, period {k} of pause 13", [13, late.index], late.time_ms)
        for k in (2, 3, 4) for lab in LABS]
    # lab-b's report is late for every closed period, so it counts for the one in progress (period 5).
    open_now = [(o.party, o.ref, o.met_index) for o in st.obligations if not o.violated and o.kind == "usage-report"]
    assert open_now == [("lab-a", "compute usage, period 1 of pause 13", 17),
                        ("lab-a", "compute usage, period 5 of pause 13", None),
                        ("lab-b", "compute usage, period 5 of pause 13", late.index),
                        ("lab-c", "compute usage, period 5 of pause 13", None)]
    assert [o.due_ms for o in st.obligations if o.ref.startswith("compute usage, period 5")] == [
        start + 35 * DAY_MS] * 3


def test_a_long_pause_opens_each_period_once(world: World) -> None:
    start = _paused(world)
    for day in range(1, 400, 3):
        world.clock.set(start + day * DAY_MS)
        world.sub("lab-a", ComputeUsageReport, **usage(world, "lab-a", start, world.clock()))
    refs = [o.ref for o in world.state.obligations if o.kind == "usage-report" and o.party == "lab-c"]
    assert refs == [f"compute usage, period {k} of pause 13" for k in range(1, 58)]  # day 397 is in period 57
    assert [v.kind for v in world.state.violations if v.party == "lab-c"] == ["missed-usage-report"] * 56


def test_training_under_the_paused_limit_is_allowed_and_over_it_is_not(world: World) -> None:
    start = _paused(world)
    world.clock.set(start + DAY_MS)
    small = world.sub("lab-c", RunStart, **run_start_fields("rc-small", "C-small", 1e22))  # at the limit, not over
    assert small.index == 17 and world.state.violations == []
    over = world.sub("lab-c", RunProgress, **progress_fields("rc-small", 5, 2e22, when=utc(world.clock())))
    assert [(v.party, v.kind, v.evidence, v.time_ms) for v in world.state.violations] == [
        ("lab-c", "training-during-pause", [13, over.index], over.time_ms)]
    assert world.state.runs["lab-c/rc-small"].flop_so_far == 2e22


def test_a_late_acknowledgement_is_recorded_but_stays_a_violation(world: World) -> None:
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(POLICY))
    start = world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25)).time_ms
    world.clock.set(start + 73 * HOUR_MS)
    late = world.sub("lab-b", PauseAcknowledgement, pause_id="13")
    st = world.state
    assert sorted((v.party, v.kind, tuple(v.evidence)) for v in st.violations) == [
        ("lab-a", "missed-acknowledgement", (13, late.index)), ("lab-b", "missed-acknowledgement", (13, late.index)),
        ("lab-c", "missed-acknowledgement", (13, late.index))]
    assert st.pauses[0].acknowledged == {"lab-b": late.index}
