"""A log like the demo's for the dashboard tests: commitments at quorum, runs (one verified, one failing its
verification), a review with findings and a decision, violations, and (optionally) the run that starts the pause.

``story(tmp_path, pause=False)`` stops just before the pause: ``trigger(world)`` is then the signed envelope of
the RunStart over the pause line, for a test to submit through ``/submit`` while a page is open.
"""

from __future__ import annotations

from pathlib import Path

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
    Indicator,
    Release,
    ReviewDecision,
    ReviewFinding,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunStart,
    VerificationReport,
)

POLICY = load_pack("coordinated-pause")
INVENTORIES = {"lab-a": 1000, "lab-b": 500, "lab-c": 250}
LABS = ("lab-a", "lab-b", "lab-c")


def story(tmp_path: Path, *, pause: bool = True) -> World:
    """The demo-like log (see the module docstring)."""
    world = labs_world(tmp_path, "coordinated-pause", INVENTORIES)
    clock = world.clock
    clock.advance(hours=1)
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(POLICY))
        clock.advance(hours=3)
    # lab-c: a run bound to a spec, finished and verified (its final weights may be released after review)
    spec = run_spec("lab-c", "rc1")
    world.sub("lab-c", RunStart, **run_start_fields("rc1", "C-1", 2e24, spec=spec))
    clock.advance(days=1)
    finish = world.sub("lab-c", RunFinish, **finish_fields("rc1", 2.2e24, weights("C-1"), spec=spec))
    world.sub("audit", VerificationReport, **report_fields("lab-c", "rc1", finish.index))
    # lab-b: a run whose progress fails verification (a violation)
    clock.advance(hours=6)
    world.sub("lab-b", RunStart, **run_start_fields("rb1", "B-1", 5e24))
    progress = world.sub("lab-b", RunProgress, **progress_fields("rb1", 40, 2e24))
    world.sub("audit", VerificationReport, **report_fields("lab-b", "rb1", progress.index, "fail"))
    # a review of C-1 with a finding and a decision; B-1 released without one (another violation)
    clock.advance(days=1)
    world.sub("lab-c", ReviewSubmission, submission_id="sub-c1", model_name="C-1",
              model_digest={"sha256": weights("C-1")}, run_id="rc1")
    world.sub("gov", ReviewFinding, submitter="lab-c", submission_id="sub-c1", finding="no critical capability",
              severity="info")
    world.sub("gov", ReviewDecision, submitter="lab-c", submission_id="sub-c1", decision="clear",
              reason="evaluations within bounds")
    world.sub("audit", Indicator, name="time-horizon-50", subject="C-1", value=2.5, unit="hours",
              window_start=utc(clock()), window_end=utc(clock()), method="metr-horizon", method_version="1",
              evidence_digest={"sha256": weights("evals/C-1")})
    world.sub("lab-b", Release, model_name="B-1", model_digest={"sha256": weights("B-1")},
              released_at=utc(clock()))
    clock.advance(days=1)
    if pause:
        world.registry.submit(trigger(world))
    return world


def trigger(world: World) -> bytes:
    """lab-a's RunStart over the pause line (3e25 FLOP > 1e25), signed, not submitted."""
    return world.envelope("lab-a", RunStart, **run_start_fields("ra1", "A-1", 3e25, when=utc(world.clock())))
