"""A pause a bound lab cannot slip out of, and that never punishes an honest one (found by playing the lab).

Each test is an attack a lab could make with statements written by hand from the docs, and what the state must
conclude; or an honest lab's course that must not be called a violation.

- Training through a pause and declaring it only after the resume (dated truthfully inside the pause) is training
  during the pause: the statement's own time counts, not when it was logged.
- A run that stopped before the pause and says so (its RunFinish dated before the pause) is not training during
  it, however big: the honest lab can meet its run-finish deadline during a long pause.
- A model trained on during a pause as a chain of fine-tunes, each under the paused limit, is judged by what its
  lineage trained during the pause.
- Weights a regulator blocked stay blocked when they are submitted for review again and the new review's window
  runs out undecided.
- A commitment whose own quorum is out of reach binds nobody and counts towards nobody's quorum.
- A release the lab itself dates inside a pause, or before its review was submitted or cleared, is judged at that
  date, however late it is logged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scenario_kit import (
    World,
    commitment_fields,
    finish_fields,
    labs_world,
    progress_fields,
    report_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

from redline.policy import load_pack
from redline.statements import (
    Commitment,
    ComputeUsageReport,
    PauseAcknowledgement,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunStart,
    VerificationReport,
)

PACK = load_pack("coordinated-pause")
LIMIT = PACK.parameters.paused_run_flop_limit


def _committed(tmp_path: Path, thresholds: dict[str, int] | None = None) -> World:
    world = labs_world(tmp_path)
    for lab, threshold in (thresholds or {"lab-a": 2, "lab-b": 2}).items():
        world.sub(lab, Commitment, **commitment_fields(PACK, threshold=threshold))
    return world


def _trigger(world: World) -> None:
    """lab-c (not committed) declares a run over the pause line: the pause starts, binding the committed labs."""
    world.sub("lab-c", RunStart, **run_start_fields("c-1", "C-1", 2e25, when=utc(world.clock())))


def _violations(world: World, party: str, kind: str = "training-during-pause") -> list[str]:
    return [v.detail for v in world.state.violations if v.party == party and v.kind == kind]


def _resume(world: World) -> None:
    for lab in ("lab-a", "lab-b"):
        world.sub(lab, PauseAcknowledgement, pause_id=world.state.pauses[0].pause_id)
    world.sub("lab-a", ResumeProposal, proposal_id="r1", reason="lines revised")
    for lab in ("lab-a", "lab-b"):
        world.sub(lab, ResumeApproval, proposal_id="r1")
    assert world.state.active_pause is None and world.state.pauses[0].ended_ms is not None


def _train_through(tmp_path: Path, *, declare_after_resume: bool) -> World:
    world = _committed(tmp_path)
    world.sub("lab-a", RunStart, **run_start_fields("a-9", "A-9", 1e21, when=utc(world.clock())))
    world.sub("lab-a", RunProgress, **progress_fields("a-9", 10, 1e21, when=utc(world.clock())))
    world.clock.advance(hours=1)
    _trigger(world)
    assert world.state.pauses and "lab-a" in world.state.pauses[0].bound
    world.clock.advance(days=3)
    mid = utc(world.clock())  # the run reaches 2e24 here, inside the pause
    world.clock.advance(days=1)
    done = utc(world.clock())  # and 5e24 here, still inside it

    def declare() -> None:
        world.sub("lab-a", RunProgress, **progress_fields("a-9", 50, 2e24, when=mid))
        world.sub("lab-a", RunFinish, **finish_fields("a-9", 5e24, weights("A-9"), when=done))

    if not declare_after_resume:
        declare()
    world.clock.advance(days=1)
    _resume(world)
    world.clock.advance(hours=1)
    if declare_after_resume:
        declare()
    return world


def test_training_through_a_pause_declared_after_the_resume_is_training_during_it(tmp_path: Path) -> None:
    late = _train_through(tmp_path / "late", declare_after_resume=True)
    during = _train_through(tmp_path / "during", declare_after_resume=False)
    for world in (late, during):
        found = _violations(world, "lab-a")
        assert len(found) == 2, found  # the RunProgress (1e21 -> 2e24) and the RunFinish (-> 5e24)
        assert "from 1e+21 to 2e+24 FLOP" in found[0] and "from 2e+24 to 5e+24 FLOP" in found[1]
        assert f"pause {world.state.pauses[0].pause_id}" in found[0]
    assert "in force" in _violations(during, "lab-a")[0] and "in force" not in _violations(late, "lab-a")[0]


def test_a_run_that_stopped_before_the_pause_is_not_training_during_it(tmp_path: Path) -> None:
    # lab-a's run reached 5e24 and stopped before the pause. During a 98-day pause its RunFinish is due 90 days
    # after its last RunProgress: filing it truthfully (dated when it stopped) must not be a violation, and a
    # RunProgress during the pause that reports no new compute is not training either.
    world = _committed(tmp_path)
    world.sub("lab-a", RunStart, **run_start_fields("a-5", "A-5", 5e24, when=utc(world.clock())))
    world.clock.advance(days=10)
    stopped = utc(world.clock())
    world.sub("lab-a", RunProgress, **progress_fields("a-5", 90, 5e24, when=stopped))
    world.clock.advance(hours=1)
    _trigger(world)
    pause = world.state.pauses[0]
    world.clock.advance(days=30)
    world.sub("lab-a", RunProgress, **progress_fields("a-5", 90, 5e24, when=utc(world.clock())))  # still stopped
    world.clock.advance(days=35)
    world.sub("lab-a", RunFinish, **finish_fields("a-5", 5e24, weights("A-5"), when=stopped))
    world.clock.advance(days=33)
    world.sub("lab-a", ComputeUsageReport, period_start=utc(pause.started_ms), period_end=utc(world.clock()),
              runs=[], unaccounted_chip_hours=0.0)
    assert world.state.active_pause is not None
    got = [(v.kind, v.detail) for v in world.state.violations if v.party == "lab-a"
           and v.kind in ("training-during-pause", "missed-run-finish")]
    assert got == []


def test_a_big_run_trained_on_during_the_pause_is_caught_however_little_it_adds(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    world.sub("lab-a", RunStart, **run_start_fields("a-5", "A-5", 5e24, when=utc(world.clock())))
    world.sub("lab-a", RunProgress, **progress_fields("a-5", 90, 5e24, when=utc(world.clock())))
    world.clock.advance(hours=1)
    _trigger(world)
    world.clock.advance(days=1)
    world.sub("lab-a", RunProgress, **progress_fields("a-5", 91, 5e24 + 1e20, when=utc(world.clock())))
    [found] = _violations(world, "lab-a")
    assert "run a-5 at 5e+24 FLOP is beyond the paused limit" in found


def test_a_small_run_may_train_during_the_pause(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    _trigger(world)
    world.sub("lab-a", RunStart, **run_start_fields("a-1", "A-1", LIMIT / 2, when=utc(world.clock())))
    world.clock.advance(days=1)
    world.sub("lab-a", RunProgress, **progress_fields("a-1", 50, LIMIT / 3, when=utc(world.clock())))
    world.sub("lab-a", RunFinish, **finish_fields("a-1", LIMIT / 2, weights("A-1"), when=utc(world.clock())))
    assert _violations(world, "lab-a") == []


def _spec_run(world: World, run_id: str, flop: float, base: str | None) -> None:
    spec = run_spec("lab-a", run_id, base=base)
    now = utc(world.clock())
    world.sub("lab-a", RunStart, **run_start_fields(run_id, run_id.upper(), flop, spec=spec, when=now))
    world.clock.advance(hours=1)
    world.sub("lab-a", RunFinish, **finish_fields(run_id, flop, weights(run_id), spec=spec, when=utc(world.clock())))
    world.clock.advance(hours=1)


def test_a_model_trained_on_as_a_chain_of_small_fine_tunes_during_the_pause_is_caught(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    small = LIMIT * 0.9
    _spec_run(world, "a-0", small, None)  # before the pause
    _trigger(world)
    _spec_run(world, "a-1", small, weights("a-0"))  # one fine-tune under the limit: allowed
    assert _violations(world, "lab-a") == []
    for n in range(2, 6):
        _spec_run(world, f"a-{n}", small, weights(f"a-{n - 1}"))
    found = _violations(world, "lab-a")
    assert len(found) == 4 and all("up its lineage trained" in d for d in found), found
    assert f"trained {2 * small:.3g} FLOP during pause" in found[0]
    # Unrelated small runs (no common lineage) stay allowed.
    for n in range(3):
        _spec_run(world, f"x-{n}", small, None)
    assert len(_violations(world, "lab-a")) == 4


def test_a_blocked_model_stays_blocked_when_submitted_again(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    _submit(world, "first", "second")
    world.clock.advance(days=2)
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="first", decision="block", reason="uplift")
    world.clock.advance(days=31)  # the second review's window ran out, undecided
    _release(world, world.clock())
    found = _violations(world, "lab-a", "release-blocked")
    assert len(found) == 1 and "review first blocked these weights" in found[0]


def test_a_later_clearance_of_the_same_weights_lifts_a_block(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    _submit(world, "first")
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="first", decision="block", reason="uplift")
    _submit(world, "second")
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="second", decision="clear", reason="mitigated")
    _release(world, world.clock())
    assert [v.kind for v in world.state.violations if v.party == "lab-a"] == []


def test_a_commitment_that_would_never_bind_counts_towards_no_quorum(tmp_path: Path) -> None:
    # lab-c commits with a quorum of 99 (out of reach): it would be counted as the third of lab-a's and lab-b's
    # quorum of 3 while bound to nothing itself. The pause must not start: only two labs would pause.
    world = _committed(tmp_path, {"lab-a": 3, "lab-b": 3, "lab-c": 99})
    _trigger(world)
    assert world.state.pauses == []
    [crossing] = [c for c in world.state.crossings if c.line == "pause-line"]
    assert "quorum is not met" in crossing.note
    # A third lab that would pause with the other two makes the quorum.
    world.sub("lab-c", Commitment, **commitment_fields(PACK, threshold=3))
    assert world.state.pauses and world.state.pauses[0].bound == ["lab-a", "lab-b", "lab-c"]


def test_a_commitment_met_only_with_the_others_still_binds(tmp_path: Path) -> None:
    # lab-a needs 2, lab-b needs 3 among three labs of which two commit: lab-b's is out of reach, so lab-a's
    # quorum of 2 counts lab-a alone, and nobody is bound.
    world = _committed(tmp_path, {"lab-a": 2, "lab-b": 3})
    _trigger(world)
    assert world.state.pauses == []
    world = _committed(tmp_path / "two", {"lab-a": 2, "lab-b": 2})
    _trigger(world)
    assert world.state.pauses and world.state.pauses[0].bound == ["lab-a", "lab-b"]


# --- releases: judged at the time the lab gives too -----------------------------------------------------------------


def _verified_run(world: World, party: str, run_id: str, model: str, flop: float) -> None:
    """``party``'s run ``run_id`` bound to a spec, started and finished now with weights ``weights(model)``, and
    verified."""
    spec = run_spec(party, run_id)
    now = utc(world.clock())
    world.sub(party, RunStart, **run_start_fields(run_id, model, flop, spec=spec, when=now))
    finish = world.sub(party, RunFinish, **finish_fields(run_id, flop, weights(model), spec=spec, when=now))
    world.sub("audit", VerificationReport, **report_fields(party, run_id, finish.index))


def _reviewed_model(world: World) -> None:
    """lab-a's verified A-7 (3e24 FLOP: over the pre-release-review line), not yet submitted for review."""
    _verified_run(world, "lab-a", "a-7", "A-7", 3e24)


def _submit(world: World, *submission_ids: str) -> None:
    """lab-a submits A-7's weights for review under each id."""
    for sid in submission_ids:
        world.sub("lab-a", ReviewSubmission, submission_id=sid, model_name="A-7",
                  model_digest={"sha256": weights("A-7")}, run_id="a-7")


def _release(world: World, when_ms: int) -> None:
    world.sub("lab-a", Release, model_name="A-7", model_digest={"sha256": weights("A-7")}, released_at=utc(when_ms))


def test_a_release_inside_the_review_window_logged_after_it_is_before_clearance(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    _submit(world, "s1")
    world.clock.advance(days=1)
    out = world.clock()  # the weights go public on day 1 of 30...
    world.clock.advance(days=40)
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="s1", decision="clear", reason="fine")
    _release(world, out)  # ... and the lab logs it, truthfully dated, after the window and the clearance
    [found] = _violations(world, "lab-a", "release-before-clearance")
    assert "dated" in found and "before review s1 of these weights cleared" in found


def test_a_release_dated_after_the_clearance_is_fine(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    _submit(world, "s1")
    world.clock.advance(days=3)
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="s1", decision="clear", reason="fine")
    world.clock.advance(hours=1)
    out = world.clock()
    world.clock.advance(days=2)
    _release(world, out)  # logged two days late, but released after the clearance: nothing to say
    assert [v.kind for v in world.state.violations if v.party == "lab-a"] == []


def test_a_release_dated_before_its_review_was_submitted_is_without_review(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    out = world.clock()
    world.clock.advance(days=1)
    _submit(world, "s1")
    world.clock.advance(days=31)
    _release(world, out)
    [found] = _violations(world, "lab-a", "release-without-review")
    assert "before submitting these weights for review" in found


def test_a_release_inside_a_pause_logged_after_the_resume_is_during_the_pause(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    _verified_run(world, "lab-a", "a-1", "A-1", 5e23)
    world.clock.advance(hours=1)
    before = world.clock()
    world.clock.advance(hours=1)
    _trigger(world)
    world.clock.advance(days=2)
    out = world.clock()
    world.clock.advance(days=1)
    _resume(world)
    world.clock.advance(hours=1)
    world.sub("lab-a", Release, model_name="A-1", model_digest={"sha256": weights("A-1")}, released_at=utc(out))
    [found] = _violations(world, "lab-a", "release-during-pause")
    assert f"during pause {world.state.pauses[0].pause_id} (dated" in found
    # A release dated before the pause and logged after it is none of the pause's business.
    world.sub("lab-a", Release, model_name="A-1", model_digest={"sha256": weights("A-1")}, released_at=utc(before))
    assert len(_violations(world, "lab-a", "release-during-pause")) == 1


# --- another lab's public weights cannot be made one's own ---------------------------------------------------------


def test_a_public_model_claimed_as_a_run_output_can_still_be_registered_and_takes_precedence(tmp_path: Path) -> None:
    # lab-a declares a spec-less run "finishing" with the digest of openly published weights, at 9e24 FLOP, before
    # the regulator registers them. Were the claim to stand, lab-b's honest fine-tune of the public model would
    # inherit 9e24 FLOP (a review line) and unverifiable weights up its lineage.
    from redline.statements import BaseModelRegistration

    world = labs_world(tmp_path)
    public = weights("OpenLM-70B public weights")
    now = utc(world.clock())
    world.sub("lab-a", RunStart, **run_start_fields("squat", "Squat", 9e24, when=now))
    world.sub("lab-a", RunFinish, **finish_fields("squat", 9e24, public, when=now))
    world.sub("gov", BaseModelRegistration, model_name="OpenLM-70B", model_digest=public, training_flop=6.3e22,
              source="https://huggingface.co/example/openlm-70b")
    assert world.state.bases[public]["model_name"] == "OpenLM-70B"
    assert "registration takes precedence" in world.state.timeline[-1].text
    spec = run_spec("lab-b", "b-ft", base=public)
    now = utc(world.clock())
    world.sub("lab-b", RunStart, **run_start_fields("b-ft", "B-FT", 1e23, spec=spec, when=now))
    finish = world.sub("lab-b", RunFinish, **finish_fields("b-ft", 1e23, weights("B-FT"), spec=spec, when=now))
    world.sub("audit", VerificationReport, **report_fields("lab-b", "b-ft", finish.index))
    world.sub("lab-b", Release, model_name="B-FT", model_digest={"sha256": weights("B-FT")}, released_at=now)
    assert [c.line for c in world.state.crossings if c.party == "lab-b"] == []
    assert [v.kind for v in world.state.violations if v.party == "lab-b"] == []


def test_a_verifiable_run_output_cannot_be_registered_as_a_base(tmp_path: Path) -> None:
    from redline.errors import InvalidStatement
    from redline.statements import BaseModelRegistration

    world = labs_world(tmp_path)
    _verified_run(world, "lab-a", "a-1", "A-1", 1e22)
    with pytest.raises(InvalidStatement, match="is the final weights of run lab-a/a-1"):
        world.sub("gov", BaseModelRegistration, model_name="A-1", model_digest=weights("A-1"), training_flop=1.0,
                  source="https://example.org")
    assert weights("A-1") not in world.state.bases


# --- usage reports: the lab's own chip-hours ------------------------------------------------------------------------


def test_a_usage_reports_chip_hours_alone_never_make_a_violation(tmp_path: Path) -> None:
    # Chip-hours bound FLOP only through a utilisation, which has no floor (a run at 15% on old chips is honest):
    # a small run's true 133,333 V100-hours in a pause are no evidence it trained beyond the limit.
    from redline.statements.compute import RunUsage

    world = _committed(tmp_path)
    world.sub("lab-a", RunStart, **run_start_fields("a-9", "A-9", LIMIT * 0.9, when=utc(world.clock())))
    world.clock.advance(hours=1)
    _trigger(world)
    pause = world.state.pauses[0]
    world.clock.advance(days=8)
    world.sub("lab-a", ComputeUsageReport, period_start=utc(pause.started_ms),
              period_end=utc(pause.started_ms + 7 * 86_400_000), runs=[RunUsage(run_id="a-9", chip_hours=133_333)],
              unaccounted_chip_hours=0.0)
    assert _violations(world, "lab-a") == []


# --- the second round: edges of the rules above ---------------------------------------------------------------------


def test_a_big_run_dated_inside_a_pause_but_logged_after_it_is_training_during_it(tmp_path: Path) -> None:
    world = _committed(tmp_path)
    _trigger(world)
    world.clock.advance(hours=1)
    started = utc(world.clock())  # inside the pause
    world.clock.advance(days=1)
    _resume(world)
    world.clock.advance(hours=1)
    world.sub("lab-a", RunStart, **run_start_fields("a-5", "A-5", 5e24, when=started))
    [found] = _violations(world, "lab-a")
    assert "run a-5 at 5e+24 FLOP is beyond the paused limit" in found and "inside pause" in found


def test_a_point_at_the_pause_start_was_reached_before_it_one_at_its_end_inside_it(tmp_path: Path) -> None:
    # A declared point says what the run had reached *by* its time: one dated at the very start of the pause was
    # trained before it (an honest run that stopped when the pause began); one dated at the resume was trained
    # during it.
    world = _committed(tmp_path)
    world.sub("lab-a", RunStart, **run_start_fields("a-1", "A-1", 1e21, when=utc(world.clock())))
    world.sub("lab-a", RunProgress, **progress_fields("a-1", 10, 1e21, when=utc(world.clock())))
    world.sub("lab-a", RunStart, **run_start_fields("a-2", "A-2", 1e21, when=utc(world.clock())))
    world.sub("lab-a", RunProgress, **progress_fields("a-2", 10, 1e21, run="a-2", when=utc(world.clock())))
    world.clock.advance(hours=1)
    _trigger(world)
    pause = world.state.pauses[0]
    world.sub("lab-a", RunFinish, **finish_fields("a-1", 5e24, weights("A-1"), when=utc(pause.started_ms)))
    assert _violations(world, "lab-a") == []
    world.clock.advance(days=2)
    _resume(world)
    world.clock.advance(hours=1)
    end = world.state.pauses[0].ended_ms
    assert end is not None
    world.sub("lab-a", RunFinish, **finish_fields("a-2", 5e24, weights("A-2"), run="a-2", when=utc(end)))
    [found] = _violations(world, "lab-a")
    assert "run a-2 at 5e+24 FLOP" in found


def test_a_bound_lab_answers_for_its_own_training_not_for_others_up_its_lineage(tmp_path: Path) -> None:
    # lab-c (uncommitted, free to train) trains a model during the pause; bound lab-b fine-tunes it a little. lab-b
    # trained 1e21: no violation, whatever lab-c did, and whatever lab-c named its run.
    world = _committed(tmp_path, {"lab-a": 2, "lab-b": 2})
    _trigger(world)
    world.clock.advance(hours=1)
    spec = run_spec("lab-c", "c-2")
    now = utc(world.clock())
    world.sub("lab-c", RunStart, **run_start_fields("c-2", "OpenLM-70B", 5e23, spec=spec, when=now))
    world.clock.advance(hours=1)
    world.sub("lab-c", RunFinish, **finish_fields("c-2", 5e23, weights("C-2"), spec=spec, when=utc(world.clock())))
    world.clock.advance(hours=1)
    ft = run_spec("lab-b", "b-ft", base=weights("C-2"))
    now = utc(world.clock())
    world.sub("lab-b", RunStart, **run_start_fields("b-ft", "B-FT", 1e21, spec=ft, when=now))
    world.clock.advance(hours=1)
    world.sub("lab-b", RunFinish, **finish_fields("b-ft", 1e21, weights("B-FT"), spec=ft, when=utc(world.clock())))
    # a run without a spec naming its base by the name lab-c gave its run
    world.sub("lab-b", RunStart, **run_start_fields("b-named", "B-N", 1e21, base_model="OpenLM-70B",
                                                     base_model_flop=6.3e24, when=utc(world.clock())))
    world.clock.advance(hours=1)
    world.sub("lab-b", RunFinish, **finish_fields("b-named", 1e21, weights("B-N"), when=utc(world.clock())))
    assert _violations(world, "lab-b") == []


def test_a_block_decided_after_a_clearance_of_the_same_weights_stands(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    _reviewed_model(world)
    _submit(world, "s1", "s2")
    world.clock.advance(days=1)
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="s2", decision="clear", reason="fine")
    world.clock.advance(days=1)
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="s1", decision="block", reason="uplift")
    world.clock.advance(days=1)
    _release(world, world.clock())
    [found] = _violations(world, "lab-a", "release-blocked")
    assert "review s1 blocked these weights" in found
