"""The engine binds each run to its start, its identity and its end, and everything downstream to weights digests.

Played through the real registry on a real SQLite log: a refused statement raises
its own error class and leaves the log as it was; an accepted one changes the state
exactly as asserted (violations with kind, party and evidence entries).

- start: a run bound to a spec that starts from a base names weights the log knows
  (a finished run's final weights or a registered base model); a spec is declared once;
- identity: every RunProgress/RunFinish carries its RunStart's spec digest, and no run
  declares transcript roots or final weights another run declared;
- end: releases and evaluations are judged by weights digest (who produced them, were
  they verified, up the whole lineage), and a review clears one digest, whatever the
  name the weights are released under.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from scenario_kit import (
    H64,
    World,
    commits,
    finish_fields,
    make_world,
    progress_fields,
    report_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

from redline.engine import Entry, replay
from redline.engine.replay import EMPTY_ROOT
from redline.errors import InvalidStatement, NotAuthorized, RedlineError
from redline.policy import Policy, load_pack, policy_from_document
from redline.registry import Submitted
from redline.statements import (
    BaseModelRegistration,
    EvaluationResult,
    Release,
    ReviewDecision,
    ReviewSubmission,
    RunFinish,
    RunProgress,
    RunSpec,
    RunStart,
    TranscriptCommitments,
    VerificationReport,
)


def binding_policy() -> Policy:
    """Three lines: a compute review line (lineage over 10^24 FLOP), a lineage flag over 10^25 FLOP, and a
    capability review line (an attested 50% time horizon of 8 hours or more)."""
    doc = load_pack("coordinated-pause").document()
    review, horizon = doc["lines"][1], doc["lines"][3]
    assert (review["id"], horizon["id"]) == ("pre-release-review", "time-horizon")
    lineage = {**review, "id": "lineage-line", "title": "Model lineage over 10^25 FLOP", "value": 1e25,
               "consequence": {"kind": "flag", "window_days": None, "deadline_days": None}}
    capability = {**horizon, "id": "capability-review", "title": "Time horizon of 8 hours: reviewed before release",
                  "consequence": {"kind": "review", "window_days": 30.0, "deadline_days": None}}
    doc.update(id="binding-test", title="Binding test lines", lines=[review, lineage, capability])
    return policy_from_document(doc)


POLICY = binding_policy()


@pytest.fixture()
def world(tmp_path: Path) -> World:
    """Two labs, a regulator and an auditor (entries 1..4); the binding policy published (entry 5)."""
    w = make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab"), ("gov", "regulator"), ("audit", "auditor")])
    assert w.publish(POLICY).index == 5
    return w


# --- helpers ----------------------------------------------------------------------------------


@dataclass
class Trained:
    """A run bound to a spec, finished (and, unless asked otherwise, verified on its RunFinish)."""

    spec: RunSpec
    start: Submitted
    finish: Submitted
    digest: str
    report: Submitted | None

    @property
    def weights(self) -> dict[str, str]:
        return {"sha256": self.digest}


def start(world: World, lab: str, run_id: str, model: str, flop: float, *, base: str | None = None,
          base_model: str | None = None) -> tuple[RunSpec, Submitted]:
    """Declare ``lab/run_id`` bound to a spec (fresh, or from the weights ``base``)."""
    spec = run_spec(lab, run_id, base=base)
    return spec, world.sub(lab, RunStart, **run_start_fields(run_id, model, flop, spec=spec, base_model=base_model))


def trained(world: World, lab: str, run_id: str, model: str, flop: float, *, base: str | None = None,
            verified: bool = True) -> Trained:
    """Start, finish (with final weights ``weights(lab/run_id)``) and, if ``verified``, pass the RunFinish."""
    spec, started = start(world, lab, run_id, model, flop, base=base)
    digest = weights(f"{lab}/{run_id}")
    done = world.sub(lab, RunFinish, **finish_fields(run_id, flop, digest, spec=spec))
    report = verify(world, lab, run_id, done.index) if verified else None
    return Trained(spec, started, done, digest, report)


def verify(world: World, lab: str, run_id: str, index: int | None, verdict: str = "pass") -> Submitted:
    """The auditor's report on ``lab/run_id``'s declaration at ``index``."""
    return world.sub("audit", VerificationReport, **report_fields(lab, run_id, index, verdict))


def release(world: World, lab: str, model: str, digest: str) -> Submitted:
    return world.sub(lab, Release, model_name=model, model_digest={"sha256": digest}, released_at=utc(world.clock()))


def evaluation(world: World, party: str, model: str, digest: str, value: float = 0.5,
               metric: str = "time-horizon-50") -> Submitted:
    return world.sub(party, EvaluationResult, model_name=model, model_digest={"sha256": digest}, suite="metr",
                     task="all", metric=metric, value=value, evaluator="inspect", log_digest={"sha256": H64},
                     evaluated_at=utc(world.clock()))


def review(world: World, lab: str, sid: str, model: str, digest: str, decision: str | None = "clear") -> Submitted:
    """Submit ``digest`` for review under ``model`` and, if ``decision``, have the regulator decide it."""
    done = world.sub(lab, ReviewSubmission, submission_id=sid, model_name=model, model_digest={"sha256": digest})
    if decision is not None:
        world.sub("gov", ReviewDecision, submitter=lab, submission_id=sid, decision=decision, reason="decided")
    return done


def violations(world: World) -> list[tuple[str, str, list[int]]]:
    return [(v.party, v.kind, v.evidence) for v in world.state.violations]


def refused(world: World, envelope: bytes, error: type[RedlineError], pattern: str) -> RedlineError:
    """Submit ``envelope``: exactly ``error`` matching ``pattern``, and the log and state untouched."""
    before = world.snapshot()
    size = world.log.size
    with pytest.raises(RedlineError) as info:
        world.registry.submit(envelope)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(pattern, str(info.value)), str(info.value)
    assert world.snapshot() == before and world.log.size == size
    return info.value


def same_on_replay(world: World) -> None:
    """Anyone replaying the log reaches the registry's state."""
    assert replay(Entry(i, t, e) for i, t, e in world.log.entries()).to_dict() == world.state.to_dict()


# --- identity: roots, specs, final weights ------------------------------------------------------


def test_a_lab_declaring_another_labs_roots_verbatim_is_refused(world: World) -> None:
    spec_a, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    spec_b, _ = start(world, "lab-b", "rb1", "B-1", 1e23)
    theirs = world.sub("lab-a", RunProgress, **progress_fields("ra1", 100, 1e22, spec=spec_a))
    assert theirs.index == 8
    copied = world.envelope("lab-b", RunProgress, **progress_fields("rb1", 100, 1e22, spec=spec_b, run="ra1"))
    refused(world, copied, InvalidStatement,
            r"^field 'commitments.steps_root': roots already declared by run lab-a/ra1 at entry 8$")
    # One root is enough: lab-b's own steps and data, lab-a's checkpoints.
    mixed = commits(100, run="ra1").model_copy(update={"steps_root": commits(100, run="rb1").steps_root,
                                                       "data_root": commits(100, run="rb1").data_root})
    env = world.envelope("lab-b", RunFinish, **{**finish_fields("rb1", 1e23, weights("B-1"), spec=spec_b),
                                                "commitments": mixed})
    refused(world, env, InvalidStatement,
            r"field 'commitments.checkpoints_root': roots already declared by run lab-a/ra1 at entry 8")
    # The root of the empty tree (step 0) binds nothing: every run may declare it.
    empty = TranscriptCommitments(steps_root=EMPTY_ROOT, data_root=EMPTY_ROOT, checkpoints_root=EMPTY_ROOT,
                                  step_count=0)
    for lab, run_id, spec in (("lab-a", "ra1", spec_a), ("lab-b", "rb1", spec_b)):
        world.sub(lab, RunProgress, **{**progress_fields(run_id, 0, 0.0, spec=spec), "commitments": empty})
    # A run repeats its own roots (its RunFinish at the step of its last RunProgress).
    finish = world.sub("lab-a", RunFinish, **finish_fields("ra1", 1e23, weights("A-1"), spec=spec_a))
    assert finish.predicate.commitments == theirs.predicate.commitments
    assert world.state.rejected == [] and world.state.violations == []
    assert world.state.roots[commits(100, run="ra1").steps_root] == ("lab-a/ra1", 8)


def test_a_second_run_reusing_a_spec_digest_is_refused(world: World) -> None:
    spec, first = start(world, "lab-a", "ra1", "A-1", 1e23)
    assert first.index == 6
    again = world.envelope("lab-a", RunStart, **run_start_fields("ra1", "A-2", 1e23, spec=spec))
    refused(world, again, InvalidStatement,
            rf"^field 'spec': spec {spec.digest()[:12]} is already declared by run lab-a/ra1 at entry 6$")
    # Another party cannot carry the spec at all: it names lab-a's run.
    with pytest.raises(InvalidStatement, match="field 'spec' is the spec of run lab-a/ra1, not lab-b/ra1"):
        world.envelope("lab-b", RunStart, **run_start_fields("ra1", "B-1", 1e23, spec=spec))
    # A spec-less run of the same id is still a second declaration of the run.
    refused(world, world.envelope("lab-a", RunStart, **run_start_fields("ra1", "A-2", 1e23)), InvalidStatement,
            r"^field 'run_id': run 'ra1' was already declared$")
    assert world.state.spec_runs == {spec.digest(): "lab-a/ra1"}
    assert world.state.runs["lab-a/ra1"].spec_digest == spec.digest()


def test_a_run_finish_with_weights_another_run_finished_with_is_refused(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    spec_b, _ = start(world, "lab-b", "rb1", "B-1", 1e23)
    env = world.envelope("lab-b", RunFinish, **finish_fields("rb1", 1e23, a1.digest, spec=spec_b))
    refused(world, env, InvalidStatement,
            rf"^field 'final_model_digest': weights {a1.digest[:12]} are already the final weights of run "
            rf"lab-a/ra1 \(A-1, entry {a1.finish.index}\)$")
    # Nor may a run claim a registered base model's weights as its output.
    base = world.sub("gov", BaseModelRegistration, model_name="Open-9", model_digest=weights("open-9"),
                     training_flop=1e24, source="published")
    env = world.envelope("lab-b", RunFinish, **finish_fields("rb1", 1e23, weights("open-9"), spec=spec_b))
    refused(world, env, InvalidStatement,
            rf"field 'final_model_digest': weights {weights('open-9')[:12]} are the registered base model Open-9 "
            rf"\(entry {base.index}\)")
    done = world.sub("lab-b", RunFinish, **finish_fields("rb1", 1e23, weights("B-1"), spec=spec_b))
    run = world.state.runs["lab-b/rb1"]
    assert (run.final_digest, run.finish_index, run.finished) == (weights("B-1"), done.index, True)
    assert world.state.final_weights == {a1.digest: "lab-a/ra1", weights("B-1"): "lab-b/rb1"}


def test_spec_digest_mismatches_are_refused(world: World) -> None:
    spec, started = start(world, "lab-a", "ra1", "A-1", 1e23)
    other = run_spec("lab-a", "ra1", seed=99)  # another spec of the same run id
    assert other.digest() != spec.digest()
    for given, shown in ((None, "null"), (other, other.digest())):
        env = world.envelope("lab-a", RunProgress, **progress_fields("ra1", 10, 1e20, spec=given))
        refused(world, env, InvalidStatement,
                rf"^field 'spec_digest': {shown} is not the digest {spec.digest()} of the spec run 'ra1' declared "
                rf"at entry {started.index}$")
    env = world.envelope("lab-a", RunFinish, **finish_fields("ra1", 1e23, weights("A-1"), spec=other))
    refused(world, env, InvalidStatement, r"^field 'spec_digest': .* is not the digest")
    # A run declared without a spec carries none.
    plain = world.sub("lab-b", RunStart, **run_start_fields("rb1", "B-1", 1e23))
    env = world.envelope("lab-b", RunProgress, **progress_fields("rb1", 10, 1e20, spec=spec))
    refused(world, env, InvalidStatement,
            rf"^field 'spec_digest': run 'rb1' was declared without a spec \(entry {plain.index}\); its spec_digest "
            r"is null$")
    world.sub("lab-a", RunProgress, **progress_fields("ra1", 10, 1e20, spec=spec))
    world.sub("lab-b", RunProgress, **progress_fields("rb1", 10, 1e20))
    assert world.state.rejected == [] and world.state.runs["lab-b/rb1"].spec_digest is None


# --- the start: fine-tunes and their lineage ---------------------------------------------------


def test_a_fine_tune_from_unknown_weights_is_refused(world: World) -> None:
    base_spec, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    world.sub("lab-a", RunProgress, **progress_fields("ra1", 10, 1e20, spec=base_spec))
    unfinished = weights("lab-a/ra1")  # the weights ra1 will finish with: not on the log yet
    for digest in (weights("nowhere"), unfinished):
        spec = run_spec("lab-b", "ft", base=digest)
        env = world.envelope("lab-b", RunStart, **run_start_fields("ft", "FT-1", 1e23, spec=spec))
        refused(world, env, InvalidStatement,
                rf"^field 'spec.init.base_model_digest': {digest[:12]} is neither the final weights of a run "
                r"finished on the log nor a registered base model$")
    assert "lab-b/ft" not in world.state.runs


def test_a_fine_tune_from_a_registered_base_counts_its_training_compute(world: World) -> None:
    digest = weights("open-9")
    refused(world, world.envelope("lab-a", BaseModelRegistration, model_name="Open-9", model_digest=digest,
                                  training_flop=9.5e24, source="published"),
            NotAuthorized, r"party 'lab-a' has role 'lab'; only coordinator, regulator may make this statement")
    reg = world.sub("gov", BaseModelRegistration, model_name="Open-9", model_digest=digest, training_flop=9.5e24,
                    source="https://example.org/open-9")
    refused(world, world.envelope("coordinator", BaseModelRegistration, model_name="Open-9b", model_digest=digest,
                                  training_flop=1e20, source="again"),
            InvalidStatement, rf"^field 'model_digest': {digest[:12]} is already registered as base model Open-9 at "
                              rf"entry {reg.index}$")
    assert world.state.bases == {digest: {"model_name": "Open-9", "training_flop": 9.5e24,
                                          "source": "https://example.org/open-9", "party": "gov",
                                          "index": reg.index}}
    assert world.state.timeline[-1].kind == "base-model"
    # lab-b's own 1e24 FLOP (under the lines) plus the base's 9.5e24: over the lineage line.
    _, ft = start(world, "lab-b", "ft", "FT-1", 1e24, base=digest, base_model="Open-9")
    assert world.state.runs["lab-b/ft"].base_digest == digest
    assert [(c.line, c.subject, c.party, c.value, c.index) for c in world.state.crossings] == [
        ("pre-release-review", "FT-1", "lab-b", 1.05e25, ft.index),
        ("lineage-line", "FT-1", "lab-b", 1.05e25, ft.index)]
    # A registered base is approved: releasing its weights as they are is not an unverified release.
    release(world, "lab-a", "Open-9", digest)
    assert violations(world) == []
    same_on_replay(world)


def test_a_fine_tune_from_a_finished_runs_weights_counts_that_runs_compute(world: World) -> None:
    base = trained(world, "lab-a", "ra1", "A-1", 8e24, verified=False)
    refused(world, world.envelope("gov", BaseModelRegistration, model_name="A-1", model_digest=base.digest,
                                  training_flop=1.0, source="a run's weights"),
            InvalidStatement, rf"^field 'model_digest': {base.digest[:12]} is the final weights of run lab-a/ra1 "
                              rf"\(A-1, entry {base.finish.index}\)")
    # The base is found by digest: the name the fine-tune gives it (and any compute it would claim) does not count.
    _, ft = start(world, "lab-b", "ft", "FT-1", 3e24, base=base.digest, base_model="Some-Other-Name")
    ft_crossings = [(c.line, c.value, c.index) for c in world.state.crossings if c.subject == "FT-1"]
    assert ft_crossings == [("pre-release-review", 1.1e25, ft.index), ("lineage-line", 1.1e25, ft.index)]
    # Two generations: a fine-tune of the fine-tune counts both runs.
    ft_spec = run_spec("lab-b", "ft", base=base.digest)
    world.sub("lab-b", RunFinish, **finish_fields("ft", 3e24, weights("FT-1"), spec=ft_spec))
    _, ft2 = start(world, "lab-a", "ft2", "FT-2", 1e23, base=weights("FT-1"))
    assert [(c.line, c.value) for c in world.state.crossings if c.subject == "FT-2"] == [
        ("pre-release-review", 8e24 + 3e24 + 1e23), ("lineage-line", 8e24 + 3e24 + 1e23)]
    assert world.state.runs["lab-a/ft2"].base_digest == weights("FT-1")
    assert ft2.index == world.state.crossings[-1].index
    same_on_replay(world)


# --- the end: releases of weights ---------------------------------------------------------------


def test_release_of_weights_no_run_produced(world: World) -> None:
    out = release(world, "lab-a", "A-1", weights("nowhere"))
    assert violations(world) == [("lab-a", "release-unverified-weights", [out.index])]
    assert world.state.violations[0].detail == (
        f"released A-1 with weights {weights('nowhere')[:12]} that no run on the log finished with and no "
        "registered base model has")
    assert world.state.releases == [{"party": "lab-a", "model": "A-1", "index": out.index,
                                     "digest": weights("nowhere"), "run": None}]


def test_release_of_unverified_weights_then_verified(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    early = release(world, "lab-a", "A-1", a1.digest)
    assert violations(world) == [("lab-a", "release-unverified-weights", [a1.finish.index, early.index])]
    assert world.state.violations[0].detail == (
        f"released A-1 with weights {a1.digest[:12]}, the final weights of run lab-a/ra1 (A-1, finished at entry "
        f"{a1.finish.index}), which no passing verification report on that RunFinish has verified")
    report = verify(world, "lab-a", "ra1", a1.finish.index)
    run = world.state.runs["lab-a/ra1"]
    assert (run.verified, run.verified_final, run.verified_final_index) == ("pass", True, report.index)
    release(world, "lab-a", "A-1", a1.digest)
    assert len(world.state.violations) == 1
    view = world.state.to_dict()["runs"]["lab-a/ra1"]
    assert (view["spec_digest"], view["final_digest"], view["finish_index"], view["verified_final"]) == (
        a1.spec.digest(), a1.digest, a1.finish.index, True)
    same_on_replay(world)


def test_a_pass_on_a_run_progress_does_not_verify_the_final_weights(world: World) -> None:
    spec, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    progress = world.sub("lab-a", RunProgress, **progress_fields("ra1", 100, 1e22, spec=spec))
    finish = world.sub("lab-a", RunFinish, **finish_fields("ra1", 1e23, weights("A-1"), spec=spec, steps=200))
    verify(world, "lab-a", "ra1", progress.index)
    verify(world, "lab-a", "ra1", None)  # verified without a log: it names no declaration
    run = world.state.runs["lab-a/ra1"]
    assert (run.verified, run.verified_final) == ("pass", False)
    out = release(world, "lab-a", "A-1", weights("A-1"))
    assert violations(world) == [("lab-a", "release-unverified-weights", [finish.index, out.index])]


def test_a_report_must_name_one_of_the_runs_declarations(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    b1 = trained(world, "lab-b", "rb1", "B-1", 1e23, verified=False)
    for index in (a1.start.index, b1.finish.index, 999):
        env = world.envelope("audit", VerificationReport, **report_fields("lab-a", "ra1", index))
        refused(world, env, InvalidStatement,
                rf"^field 'declaration_index': entry {index} is not a RunProgress or RunFinish of run lab-a/ra1 "
                rf"\(its declarations: {a1.finish.index}\)$")


def test_an_inconclusive_report_is_pending(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    verify(world, "lab-a", "ra1", a1.finish.index, "inconclusive")
    run = world.state.runs["lab-a/ra1"]
    assert (run.verified, run.verified_final) == ("inconclusive", False)
    assert violations(world) == []  # no failed-verification
    out = release(world, "lab-a", "A-1", a1.digest)
    assert violations(world) == [("lab-a", "release-unverified-weights", [a1.finish.index, out.index])]


def test_a_failing_report_withdraws_the_verification(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23)
    assert world.state.runs["lab-a/ra1"].verified_final
    failed = verify(world, "lab-a", "ra1", a1.finish.index, "fail")
    assert (world.state.runs["lab-a/ra1"].verified_final, world.state.runs["lab-a/ra1"].verified_final_index) == (
        False, None)
    out = release(world, "lab-a", "A-1", a1.digest)
    assert violations(world) == [
        ("lab-a", "failed-verification", [a1.start.index, a1.finish.index, failed.index]),
        ("lab-a", "release-unverified-weights", [a1.finish.index, out.index])]


def test_a_run_without_a_spec_never_has_verified_weights(world: World) -> None:
    world.sub("lab-a", RunStart, **run_start_fields("ra1", "A-1", 1e23))
    finish = world.sub("lab-a", RunFinish, **finish_fields("ra1", 1e23, weights("A-1")))
    verify(world, "lab-a", "ra1", finish.index)
    run = world.state.runs["lab-a/ra1"]
    assert (run.spec_digest, run.final_digest, run.verified, run.verified_final) == (None, weights("A-1"), "pass",
                                                                                      False)
    out = release(world, "lab-a", "A-1", weights("A-1"))
    assert violations(world) == [("lab-a", "release-unverified-weights", [finish.index, out.index])]


def test_a_fine_tune_release_needs_its_whole_lineage_verified(world: World) -> None:
    base = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    ft = trained(world, "lab-b", "ft", "FT-1", 1e23, base=base.digest)
    assert world.state.runs["lab-b/ft"].verified_final
    first = release(world, "lab-b", "FT-1", ft.digest)
    assert violations(world) == [
        ("lab-b", "release-unverified-weights", [base.finish.index, ft.finish.index, first.index])]
    assert world.state.violations[0].detail == (
        f"released FT-1 with weights {ft.digest[:12]}, the final weights of run lab-b/ft (FT-1, finished at entry "
        f"{ft.finish.index}); up its lineage the final weights of run lab-a/ra1 (A-1, finished at entry "
        f"{base.finish.index}) are not verified")
    # Neither verified: both named, both RunFinish entries cited.
    ft3 = trained(world, "lab-a", "ft3", "FT-3", 1e23, base=base.digest, verified=False)
    third = release(world, "lab-a", "FT-3", ft3.digest)
    assert violations(world)[1:] == [
        ("lab-a", "release-unverified-weights", [base.finish.index, ft3.finish.index, third.index])]
    assert world.state.violations[1].detail.endswith(
        f"which are not verified, nor are the final weights up its lineage of run lab-a/ra1 (A-1, finished at entry "
        f"{base.finish.index})")
    verify(world, "lab-a", "ra1", base.finish.index)
    release(world, "lab-b", "FT-1", ft.digest)
    assert len(world.state.violations) == 2
    # From a registered base, the lineage ends at the base: approved.
    world.sub("gov", BaseModelRegistration, model_name="Open-9", model_digest=weights("open-9"),
              training_flop=1e23, source="published")
    ft2 = trained(world, "lab-a", "ft2", "FT-2", 1e23, base=weights("open-9"))
    release(world, "lab-a", "FT-2", ft2.digest)
    assert len(world.state.violations) == 2
    same_on_replay(world)


# --- reviews follow the weights, not the name ---------------------------------------------------


def test_renamed_weights_still_need_their_review(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 5e24)  # over the review line
    assert world.state.review_required["A-1"]["index"] == a1.start.index
    out = release(world, "lab-a", "A-1-chat", a1.digest)
    assert "A-1-chat" not in world.state.review_required
    assert violations(world) == [("lab-a", "release-without-review", [a1.start.index, out.index])]
    assert world.state.violations[0].detail == (
        f"released A-1-chat (weights {a1.digest[:12]}, run lab-a/ra1) without submitting these weights for review")
    # A review of the weights under the new name, cleared, clears them.
    review(world, "lab-a", "s1", "A-1-chat", a1.digest)
    release(world, "lab-a", "A-1-chat", a1.digest)
    assert len(world.state.violations) == 1


def test_a_review_clears_one_digest(world: World) -> None:
    first = trained(world, "lab-a", "ra1", "A-1", 5e24)
    second = trained(world, "lab-a", "ra2", "A-1", 5e24)  # A-1 trained again: other weights, same name
    sub = review(world, "lab-a", "s1", "A-1", first.digest)
    assert world.state.reviews["lab-a/s1"].model_digest == first.digest
    out = release(world, "lab-a", "A-1", second.digest)
    assert violations(world) == [("lab-a", "release-without-review", [first.start.index, out.index])]
    # An open review of the second digest, within its window: released before clearance.
    sub2 = review(world, "lab-a", "s2", "A-1", second.digest, decision=None)
    early = release(world, "lab-a", "A-1", second.digest)
    assert violations(world)[1:] == [("lab-a", "release-before-clearance", [sub2.index, early.index])]
    # Cleared: released. The first digest's clearance stood all along.
    world.sub("gov", ReviewDecision, submitter="lab-a", submission_id="s2", decision="clear", reason="fine")
    release(world, "lab-a", "A-1", second.digest)
    release(world, "lab-a", "A-1", first.digest)
    assert len(world.state.violations) == 2 and sub.index < sub2.index
    same_on_replay(world)


def test_a_blocked_digest_stays_blocked_under_another_name(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 5e24)
    sub = review(world, "lab-a", "s1", "A-1", a1.digest, decision="block")
    decided = world.state.reviews["lab-a/s1"].decision_index
    out = release(world, "lab-a", "Totally-New", a1.digest)
    assert violations(world) == [("lab-a", "release-blocked", [sub.index, decided, out.index])]


# --- evaluations ----------------------------------------------------------------------------------


def test_a_lab_evaluates_only_its_own_finished_weights(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23, verified=False)
    b1 = trained(world, "lab-b", "rb1", "B-1", 1e23, verified=False)
    evaluation(world, "lab-a", "A-1", a1.digest)  # its own run's final weights: fine
    unknown = evaluation(world, "lab-a", "A-1", weights("nowhere"))
    theirs = evaluation(world, "lab-a", "B-1", b1.digest)
    evaluation(world, "audit", "Whatever", weights("nowhere"))  # an auditor may evaluate anything
    assert violations(world) == [("lab-a", "evaluation-of-undeclared-weights", [unknown.index]),
                                 ("lab-a", "evaluation-of-undeclared-weights", [theirs.index])]
    assert [v.detail for v in world.state.violations] == [
        f"evaluated A-1 with weights {weights('nowhere')[:12]}, which are not the final weights of any run lab-a "
        "finished",
        f"evaluated B-1 with weights {b1.digest[:12]}, which are not the final weights of any run lab-a finished "
        "(they are run lab-b/rb1's, B-1)"]


def test_an_evaluation_of_renamed_weights_crosses_the_line_on_the_producing_model(world: World) -> None:
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23)  # under the compute lines
    ev = evaluation(world, "audit", "Mystery-Model", a1.digest, value=9.0)
    st = world.state
    assert [(c.line, c.subject, c.party, c.value, c.evidence, c.index) for c in st.crossings] == [
        ("capability-review", "A-1", "lab-a", 9.0, "attested", ev.index)]
    assert st.review_required == {"A-1": {"line": "capability-review", "window_days": 30.0, "index": ev.index}}
    assert st.indicators == {"time-horizon-50:A-1": {"value": 9.0, "by": "audit", "index": ev.index}}
    assert st.timeline[-2].text == "audit: time-horizon-50 of A-1 = 9 (evaluated as Mystery-Model)"
    # The weights now need a review, whatever they are released as.
    out = release(world, "lab-a", "Mystery-Model", a1.digest)
    assert violations(world) == [("lab-a", "release-without-review", [ev.index, out.index])]
    same_on_replay(world)


# --- only a RunFinish is verified; a run with progress owes its RunFinish ---------------------------------


def test_a_pass_on_a_run_progress_is_not_verified_evidence(world: World) -> None:
    """A line that needs verified evidence is crossed by a pass on the RunFinish, never by one on a RunProgress."""
    doc = POLICY.document()
    doc["lines"][0] = {**doc["lines"][0], "evidence": "verified"}  # the review line, on verified compute only
    doc.update(id="verified-only")
    world.publish(policy_from_document(doc))
    spec, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    progress = world.sub("lab-a", RunProgress, **progress_fields("ra1", 100, 2e24, spec=spec))
    verify(world, "lab-a", "ra1", progress.index)
    assert not [c for c in world.state.crossings if c.evidence == "verified"]
    finish = world.sub("lab-a", RunFinish, **finish_fields("ra1", 2e24, weights("A-1"), spec=spec, steps=200))
    report = verify(world, "lab-a", "ra1", finish.index)
    assert [(c.line, c.evidence, c.index) for c in world.state.crossings if c.evidence == "verified"] == [
        ("pre-release-review", "verified", report.index)]


def test_a_run_that_stops_at_progress_misses_its_run_finish_deadline(world: World) -> None:
    days = POLICY.parameters.run_finish_deadline_days
    spec, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    world.sub("lab-a", RunProgress, **progress_fields("ra1", 100, 1e22, spec=spec))
    world.clock.advance(days=days - 1)
    later = world.sub("lab-a", RunProgress, **progress_fields("ra1", 150, 2e22, spec=spec))  # moves the deadline
    world.clock.advance(days=days - 1)
    world.sub("lab-b", RunStart, **run_start_fields("rb1", "B-1", 1e20, spec=run_spec("lab-b", "rb1")))
    assert violations(world) == []
    world.clock.advance(days=2)
    tick = world.sub("lab-b", RunStart, **run_start_fields("rb2", "B-2", 1e20, spec=run_spec("lab-b", "rb2")))
    assert violations(world) == [("lab-a", "missed-run-finish", [later.index, tick.index])]
    # a run that finishes in time owes nothing
    spec_b, _ = start(world, "lab-b", "rb3", "B-3", 1e23)
    world.sub("lab-b", RunProgress, **progress_fields("rb3", 100, 1e22, spec=spec_b))
    world.sub("lab-b", RunFinish, **finish_fields("rb3", 1e23, weights("B-3"), spec=spec_b, steps=200))
    world.clock.advance(days=days + 1)
    world.sub("lab-b", RunStart, **run_start_fields("rb4", "B-4", 1e20, spec=run_spec("lab-b", "rb4")))
    assert [v for v in violations(world) if v[0] == "lab-b"] == []
    same_on_replay(world)


def test_a_report_names_the_seed_ranges_the_log_implies(world: World) -> None:
    """A range of steps is seeded after the first declaration that committed to it; a report that re-rolls it
    (seeding steps 1..200 after the RunFinish, which re-declared steps 1..100) is refused."""
    from redline.statements.verification import SeedRangeRef

    spec, _ = start(world, "lab-a", "ra1", "A-1", 1e23)
    progress = world.sub("lab-a", RunProgress, **progress_fields("ra1", 100, 1e22, spec=spec))
    finish = world.sub("lab-a", RunFinish, **finish_fields("ra1", 1e23, weights("A-1"), spec=spec, steps=200))
    assert world.state.runs["lab-a/ra1"].seed_ranges == [[1, 100, progress.index], [101, 200, finish.index]]

    def ranges(*rs: tuple[int, int, int, int]) -> list[SeedRangeRef]:
        return [SeedRangeRef(first_step=a, last_step=b, seed="ab" * 32, declaration_index=i, checkpoint_size=c)
                for a, b, i, c in rs]

    rerolled = report_fields("lab-a", "ra1", finish.index) | {
        "seed_ranges": ranges((1, 200, finish.index, finish.index + 1))}
    refused(world, world.envelope("audit", VerificationReport, **rerolled), InvalidStatement,
            r"field 'seed_ranges': the log implies ranges")
    early = report_fields("lab-a", "ra1", finish.index) | {
        "seed_ranges": ranges((1, 100, progress.index, progress.index), (101, 200, finish.index, finish.index + 1))}
    refused(world, world.envelope("audit", VerificationReport, **early), InvalidStatement,
            r"must come from a checkpoint after entry")
    good = report_fields("lab-a", "ra1", finish.index) | {
        "seed_ranges": ranges((1, 100, progress.index, progress.index + 1), (101, 200, finish.index, finish.index + 1))}
    world.sub("audit", VerificationReport, **good)
    assert world.state.runs["lab-a/ra1"].verified_final
    same_on_replay(world)


def test_only_the_owner_submits_its_model_for_review(world: World) -> None:
    """Another lab cannot open (and so time) the review of weights it did not train, by digest or by name."""
    a1 = trained(world, "lab-a", "ra1", "A-1", 1e23)
    env = world.envelope("lab-b", ReviewSubmission, submission_id="sneaky", model_name="B-renamed",
                         model_digest=a1.weights)
    refused(world, env, NotAuthorized, r"its owner is 'lab-a'")
    env = world.envelope("lab-b", ReviewSubmission, submission_id="sneaky", model_name="A-1",
                         model_digest={"sha256": H64})
    refused(world, env, NotAuthorized, r"only the lab that trained a model submits it")
    review(world, "lab-a", "rev-a1", "A-1", a1.digest, decision=None)
    assert world.state.reviews["lab-a/rev-a1"].party == "lab-a"


# --- the coordinator's continuity and readmission ------------------------------------------------------


def test_the_last_coordinator_cannot_revoke_its_key_but_can_rotate_it(world: World) -> None:
    from redline.crypto.keys import SigningKey
    from redline.statements import KeyRevocation, KeyRotation

    coord = world.state.parties["coordinator"].key
    env = world.envelope("coordinator", KeyRevocation, revoked_party="coordinator",
                         key_fingerprint=coord.fingerprint, reason="leaving")
    refused(world, env, NotAuthorized, r"last coordinator, cannot be revoked")
    successor = SigningKey(name="coordinator", seed=bytes(range(32)))
    world.sub("coordinator", KeyRotation, new_verifier_key=successor.verifier().to_string())
    world.keys["coordinator"] = successor
    world.admit("lab-c", "lab")  # the successor key admits
    assert "lab-c" in world.state.parties and not world.state.rejected


def test_a_revoked_party_is_readmitted_with_a_new_key_and_its_sequence_goes_on(world: World) -> None:
    from redline.crypto.keys import SigningKey
    from redline.errors import RevokedKey, SequenceError
    from redline.statements import Admission, KeyRevocation

    old = world.keys["lab-a"]
    world.sub("lab-a", RunStart, **run_start_fields("ra8", "A-8", 1e20))
    world.sub("coordinator", KeyRevocation, revoked_party="lab-a", key_fingerprint=old.verifier().fingerprint,
              reason="key leaked")
    before = world.state.parties["lab-a"].last_seq
    refused(world, world.envelope("lab-a", RunStart, **run_start_fields("ra9", "A-9", 1e20)), RevokedKey,
            r"retired key|no valid key")
    new = SigningKey(name="lab-a", seed=bytes(range(1, 33)))
    refused(world, world.envelope("coordinator", Admission, admitted="lab-a", verifier_key=new.verifier().to_string(),
                                  role="regulator", display_name="LAB-A", jurisdiction="EU"),
            InvalidStatement, r"field 'role'")
    refused(world, world.envelope("coordinator", Admission, admitted="lab-a", verifier_key=old.verifier().to_string(),
                                  role="lab", display_name="LAB-A", jurisdiction="EU"),
            InvalidStatement, r"already in use")
    world.sub("coordinator", Admission, admitted="lab-a", verifier_key=new.verifier().to_string(), role="lab",
              display_name="LAB-A", jurisdiction="EU")
    world.keys["lab-a"] = new
    party = world.state.parties["lab-a"]
    assert not party.revoked and party.key.fingerprint == new.verifier().fingerprint and party.last_seq == before
    # its old sequence numbers stay spent: a replay is refused, the next one accepted
    refused(world, world.envelope("lab-a", RunStart, seq=before, **run_start_fields("ra9", "A-9", 1e20)),
            SequenceError, r"replays")
    world.sub("lab-a", RunStart, **run_start_fields("ra9", "A-9", 1e20))
    refused(world, world.envelope("coordinator", Admission, admitted="lab-a",
                                  verifier_key=SigningKey(name="lab-a", seed=bytes(32)).verifier().to_string(),
                                  role="lab", display_name="LAB-A", jurisdiction="EU"),
            InvalidStatement, r"already admitted")
    same_on_replay(world)
