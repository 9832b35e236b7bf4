"""``redline.verify``: sampling, distances, segment re-execution, bisection and the verification report."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from verify_helpers import MODEL, tamper_checkpoint

from redline.crypto.keys import SigningKey
from redline.errors import MalformedInput
from redline.statements import open_envelope
from redline.statements.runs import FlopEstimates, RunFinish, RunProgress, RunStart
from redline.statements.verification import Check
from redline.transcript import load_transcript, replay_segment
from redline.transcript.tinygpt import TrainConfig, train
from redline.verify import (
    FunctionOracle,
    LocalRunner,
    SeedRange,
    Tolerance,
    VerificationPolicy,
    bisect_segment,
    budget_draws,
    calibrate,
    choose_sample,
    choose_step_sample,
    compare_states,
    draws_needed,
    p_detect,
    p_detect_steps,
    sample_size,
    seed_from_checkpoint,
    sign_report,
    uniform_sample,
    verify_transcript,
)
from redline.verify.sampling import weighted_mean_segment

SEED = hashlib.sha256(b"test checkpoint note").digest()
#: A small sample for tests that are not about its size.
LOOSE = VerificationPolicy(target_p_detect=0.5, largest=0)


def _train(path: Path, steps: int, every: int, seed: int) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(steps=steps, seed=seed, batch_size=2, model=MODEL, party="lab-a", run_id="r1"), path,
              checkpoint_every=every)
    finally:
        torch.set_num_threads(before)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("verify")
    return {seed: _train(base / f"r{seed}", 60, 10, seed) for seed in (0, 1, 2)}


@pytest.fixture
def tampered(runs: dict[int, Path], tmp_path: Path) -> Path:
    import shutil

    path = tmp_path / "tampered"
    shutil.copytree(runs[0], path)
    tamper_checkpoint(path, 30, 1e-3)
    return path


# --- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("m,n,f", [(10, 3, 0.1), (20, 5, 0.25), (100, 25, 0.1), (50, 50, 0.01), (7, 0, 0.5)])
def test_p_detect_is_hypergeometric(m: int, n: int, f: float) -> None:
    k = math.ceil(f * m)
    exact = 1 - math.comb(m - k, n) / math.comb(m, n)
    assert p_detect(m, n, f) == pytest.approx(exact, abs=1e-12)


def test_sample_size_is_the_smallest_reaching_the_target() -> None:
    for m in (1, 5, 10, 37, 100, 1000):
        for f in (0.01, 0.1, 0.5):
            n = sample_size(m, 0.95, f)
            assert p_detect(m, n, f) >= 0.95
            assert n == 0 or p_detect(m, n - 1, f) < 0.95


def test_uniform_sample_is_deterministic_distinct_and_seed_dependent() -> None:
    a = uniform_sample(SEED, 100, 25)
    assert a == uniform_sample(SEED, 100, 25)
    assert len(set(a)) == 25 and all(0 <= i < 100 for i in a)
    assert a != uniform_sample(hashlib.sha256(b"other").digest(), 100, 25)
    assert sorted(uniform_sample(SEED, 10, 10)) == list(range(10))
    # roughly uniform: every index drawn about equally often over many seeds
    counts = [0] * 10
    for i in range(2000):
        for j in uniform_sample(i.to_bytes(4, "big"), 10, 3):
            counts[j] += 1
    assert min(counts) > 500 and max(counts) < 700  # expected 600 each


def test_seed_is_the_sha256_of_the_checkpoint_note() -> None:
    assert seed_from_checkpoint(b"note\n") == hashlib.sha256(b"note\n").digest()


def test_choose_sample_adds_the_largest_updates_and_reports_p_detect() -> None:
    norms = [1.0] * 50
    norms[7], norms[42] = 9.0, 8.0
    s = choose_sample(SEED, 50, update_norms=norms, largest=2)
    assert s.largest == (7, 42) and {7, 42} <= set(s.indexes)
    assert len(s.uniform) == sample_size(50, 0.95, 0.1)
    assert set(s.p_detect) == {0.01, 0.05, 0.1, 0.25, 0.5}
    assert s.p_detect[0.1] >= 0.95


def _ends(lengths: list[int]) -> list[int]:
    out, t = [], 0
    for n in lengths:
        t += n
        out.append(t)
    return out


def test_steps_are_drawn_not_segments() -> None:
    """Draws pick steps uniformly: a segment is drawn in proportion to its steps, so a long segment cannot
    hide a large share of the steps behind a small share of the draws."""
    ends = _ends([1] * 99 + [901])  # one long segment of 901 of the 1000 steps
    hits = sum(99 in choose_step_sample([SeedRange(1, 1000, bytes([i]) * 32)], ends, target_p_detect=0.5,
                                        largest=0).uniform for i in range(200))
    p_one = 1 - 0.099 ** draws_needed(0.5, 0.1)  # each draw lands in it with probability 0.901
    assert hits / 200 == pytest.approx(p_one, abs=0.05) and hits > 190


def test_step_sample_size_budget_and_floor() -> None:
    assert draws_needed(0.95, 0.1) == 29 and draws_needed(0.99, 0.1) == 44 and draws_needed(0.99, 0.5) == 7
    assert p_detect_steps(44, 0.1) >= 0.99 > p_detect_steps(43, 0.1)
    one = [SeedRange(1, 640, SEED)]
    roomy = choose_step_sample(one, _ends([1] * 640), target_p_detect=0.99)
    assert (roomy.draws, roomy.capped) == (44, False) and roomy.p_detect[0.1] >= 0.99
    # the 5 % budget of 640 one-step segments: 32 steps, one kept for the FLOP count → 31 draws, and it says so
    cap = budget_draws([1] * 640, 0.05, reserved_steps=1)
    tight = choose_step_sample(one, _ends([1] * 640), target_p_detect=0.99, max_draws=cap)
    assert cap == 31 and tight.capped and tight.draws == 31
    assert tight.p_detect[0.1] == pytest.approx(1 - 0.9 ** 31) and tight.drawn_steps == roomy.drawn_steps[:31]
    # the floor: half the steps faked is caught with P >= 0.99 whatever the budget
    floor = choose_step_sample(one, _ends([1] * 640), max_draws=0)
    assert floor.draws == 7 and floor.p_detect[0.5] >= 0.99
    # the budget divides by the step-weighted mean segment length (the expected replay of a draw)
    assert weighted_mean_segment([10] * 100) == 10 and budget_draws([10] * 100, 0.05) == 5
    assert budget_draws([1] * 640, None) is None
    with pytest.raises(ValueError, match="budget"):
        budget_draws([1], 0.0)


def test_seed_ranges_cannot_be_rerolled_and_each_is_drawn_from_its_own_seed() -> None:
    """A later declaration of steps already declared does not change their draws: each range of steps is drawn
    with the seed of the first declaration that committed to it."""
    ends = _ends([1] * 100)
    first = [SeedRange(1, 50, b"a" * 32, 5, 6), SeedRange(51, 100, b"b" * 32, 9, 10)]
    again = [SeedRange(1, 50, b"a" * 32, 5, 6), SeedRange(51, 100, b"c" * 32, 12, 13)]
    x = choose_step_sample(first, ends, target_p_detect=0.9)
    y = choose_step_sample(again, ends, target_p_detect=0.9)
    n1 = sum(1 for st in x.drawn_steps if st <= 50)
    assert n1 == math.ceil(x.draws * 50 / 100) and x.drawn_steps[:n1] == y.drawn_steps[:n1]
    assert all(st <= 50 for st in x.drawn_steps[:n1]) and all(st > 50 for st in x.drawn_steps[n1:])
    assert x.seed != y.seed
    with pytest.raises(ValueError, match="cover"):
        choose_step_sample([SeedRange(1, 40, SEED)], ends)


def test_the_policy_is_one_validated_object_with_a_digest() -> None:
    p = VerificationPolicy()
    assert (p.target_p_detect, p.budget, p.assumed_fake_fraction, p.flop_tolerance) == (0.99, 0.05, 0.1, 0.01)
    assert p.digest() == VerificationPolicy().digest() != VerificationPolicy(budget=0.1).digest()
    with pytest.raises(MalformedInput, match="budget"):
        VerificationPolicy.of(budget=2.0)
    with pytest.raises(MalformedInput, match="surprise"):
        VerificationPolicy.of(surprise=1)


# --- distances ----------------------------------------------------------------------------


def test_compare_states_and_tolerance() -> None:
    a = {"model.w": torch.ones(4, 4), "optimizer.state.0.exp_avg": torch.zeros(3), "optimizer.state.0.step":
         torch.tensor(5.0), "rng.torch_cpu": torch.arange(4, dtype=torch.uint8)}
    assert compare_states(a, dict(a)).bitwise_equal
    b = {**a, "model.w": a["model.w"] + 1e-3}
    d = compare_states(b, a)
    assert not d.bitwise_equal and d.differing == ("model.w",) and not d.exact_mismatches
    assert d.model.linf == pytest.approx(1e-3, rel=1e-3) and d.model.l2 == pytest.approx(4e-3, rel=1e-3)
    assert not Tolerance.exact().accepts(d)
    loose = Tolerance(False, model=d.model.__class__(l2=1e-2, linf=1e-2, cosine=1e-2, rel_l2=1e-2))
    assert loose.accepts(d)
    assert Tolerance.from_json(loose.to_json()) == loose
    c = {**a, "rng.torch_cpu": torch.arange(1, 5, dtype=torch.uint8)}
    assert not loose.accepts(compare_states(c, a))  # generator state must match exactly
    assert not compare_states(a, a, {"redline.step": "1"}, {"redline.step": "2"}).bitwise_equal


def test_calibration_on_cpu_is_bitwise(runs: dict[int, Path]) -> None:
    t = load_transcript(runs[1])
    tol = calibrate(t, 1)
    assert tol.bitwise and tol.calibrated_from == 2


# --- verification -------------------------------------------------------------------------


def test_honest_runs_pass(runs: dict[int, Path]) -> None:
    for i, (seed, path) in enumerate(runs.items()):
        res = verify_transcript(path, seed=hashlib.sha256(bytes([seed])).digest(), workers=2 if i == 0 else 1)
        assert res.verdict == "pass", [c for c in res.checks if not c.passed]
        assert [c.name for c in res.checks] == ["transcript", "code", "init", "data", "segments", "compute"]
        # 60 steps in 6 segments: the 5 % budget caps the sample at its floor (7 step draws: half the steps
        # faked is caught with P >= 0.99) plus the 2 largest updates, and the report says the target was missed
        assert res.sample.capped and res.sample.draws == 7 and res.failing_step is None
        assert res.segments_checked == len(res.sample.indexes) >= 2
        seg = next(c for c in res.checks if c.name == "segments")
        assert "below the target 0.99: the 5% compute budget allows 0 step draws" in seg.detail
        full = verify_transcript(path, seed=hashlib.sha256(bytes([seed])).digest(), workers=1,
                                 policy=VerificationPolicy(budget=None))
        assert full.sample.draws == 44 and not full.sample.capped  # no cap: 44 draws reach P=0.99
        assert all(o.distance is not None and o.distance.bitwise_equal for o in res.outcomes)
        assert res.compute_spent_flop == res.per_step_flop * res.replayed_steps > 0
        report = res.to_predicate(party="auditor-a", seq=1, run_id="r1", run_party="lab-a")
        assert report.verdict == "pass" and report.sample_seed == res.sample.seed.hex()
        assert report.policy_digest == VerificationPolicy().digest()
        assert [(r.first_step, r.last_step) for r in report.seed_ranges] == [(1, 60)]


def test_tampered_checkpoint_fails_and_bisection_names_the_step(tampered: Path) -> None:
    # no budget: 44 step draws of 60 meet every segment, to see both bad ones
    res = verify_transcript(tampered, seed=SEED, workers=1, policy=VerificationPolicy(budget=None))
    assert res.verdict == "fail"
    failing = {(o.start_step, o.end_step) for o in res.failing_segments}
    assert failing == {(20, 30), (30, 40)}  # ends at the forged state / starts from it
    seg = next(c for c in res.checks if c.name == "segments")
    assert not seg.passed and "steps 21..30" in seg.detail and "first bad step 30" in seg.detail
    assert res.bisect is not None and res.bisect.method == "end-checkpoint" and res.failing_step == 30
    nxt = next(o for o in res.outcomes if o.start_step == 30)
    assert nxt.mismatched_steps[0] == 31  # its first loss is computed from the forged weights
    key = SigningKey.generate("auditor-a")
    env = sign_report(res, key, seq=3, run_id="r1", run_party="lab-a")
    pred, _ = open_envelope(env, [key.verifier()])
    assert pred.verdict == "fail" and pred.failing_step == 30 and pred.segments_checked == 6


def test_bisection_with_intermediate_states_takes_log_rounds(runs: dict[int, Path]) -> None:
    t = load_transcript(runs[2])

    def prover(step: int):  # an honest prover regenerating states (at the recorded thread count) ...
        before = torch.get_num_threads()
        torch.set_num_threads(t.manifest.environment.num_threads)
        try:
            state = replay_segment(t, 20, step).state.tensors
        finally:
            torch.set_num_threads(before)
        if step >= 27:  # the prover left the update rule at step 27
            state = {k: (v + 1e-3 if k.startswith("model.") else v) for k, v in state.items()}
        return state

    oracle = FunctionOracle(prover)
    res = bisect_segment(t, 20, 30, oracle=oracle)
    assert res.first_bad_step == 27 and res.method == "intermediate-states"
    assert res.rounds <= math.ceil(math.log2(10)) and len(oracle.queries) == res.rounds


def test_declaration_roots_and_flop_are_checked(runs: dict[int, Path]) -> None:
    t = load_transcript(runs[1])
    flop = t.manifest.flop.per_step * t.step_count

    def finish(**over):
        fields = dict(party="lab-a", seq=3, run_id="r1", total_flop=flop, flop_estimates=FlopEstimates(counted=flop),
                      estimates_disagree=False, final_model_digest={"sha256": t.final_model_digest()},
                      commitments=t.commitments, spec_digest=t.spec_digest, manifest_digest=t.manifest.digest(),
                      finished_at=t.manifest.finished_at)
        return RunFinish.build(**{**fields, **over})

    ok = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(), policy=LOOSE)
    assert ok.verdict == "pass" and next(c for c in ok.checks if c.name == "commitments").passed
    other = load_transcript(runs[2]).commitments
    bad = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(commitments=other),
                            policy=LOOSE)
    c = next(c for c in bad.checks if c.name == "commitments")
    assert bad.verdict == "fail" and not c.passed and "steps_root" in c.detail
    inflated = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(total_flop=flop * 0.5),
                                 policy=LOOSE)
    assert not next(c for c in inflated.checks if c.name == "compute").passed
    progress = RunProgress.build(party="lab-a", seq=2, run_id="r1", step=30, flop_so_far=flop / 2,
                                 commitments=t.commitments_at(30), spec_digest=t.spec_digest,
                                 as_of=t.manifest.finished_at)
    res = verify_transcript(runs[1], seed=SEED, workers=1, declaration=progress, policy=LOOSE)
    assert res.verdict == "pass"


def _commitments_detail(runs: dict[int, Path], decl: RunFinish) -> str:
    res = verify_transcript(runs[1], seed=SEED, workers=1, declaration=decl, policy=LOOSE)
    check = next(c for c in res.checks if c.name == "commitments")
    assert res.verdict == "fail" and not check.passed and not check.inconclusive
    return check.detail


@pytest.mark.parametrize("field, want", [
    ("spec_digest", "spec_digest"), ("manifest_digest", "manifest_digest"), ("finished_at", "'finished_at'"),
    ("final_model_digest", "final model digest")])
def test_every_part_of_the_manifest_is_bound_to_the_run_finish(runs: dict[int, Path], field: str,
                                                               want: str) -> None:
    """A manifest that is not the declared one, in any field, fails verification naming that field."""
    from datetime import timedelta

    t = load_transcript(runs[1])
    flop = t.manifest.flop.per_step * t.step_count
    fields = dict(party="lab-a", seq=3, run_id="r1", total_flop=flop, flop_estimates=FlopEstimates(counted=flop),
                  estimates_disagree=False, final_model_digest={"sha256": t.final_model_digest()},
                  commitments=t.commitments, spec_digest=t.spec_digest, manifest_digest=t.manifest.digest(),
                  finished_at=t.manifest.finished_at)
    other = {"spec_digest": "ab" * 32, "manifest_digest": "cd" * 32,
             "finished_at": t.manifest.finished_at + timedelta(seconds=1), "final_model_digest": {"sha256": "ef" * 32}}
    assert want in _commitments_detail(runs, RunFinish.build(**{**fields, field: other[field]}))


@pytest.mark.parametrize("field", ["flop", "started_at"])
def test_manifest_fields_nothing_else_binds_are_named_when_changed(runs: dict[int, Path], tmp_path: Path,
                                                                   field: str) -> None:
    """Every other manifest field is re-derived on load; a change to these two is caught by manifest_digest."""
    import shutil

    from redline.crypto.canonical import canonical_json, parse_json

    t = load_transcript(runs[1])
    finish = _finish(t)
    copy = tmp_path / "edited"
    shutil.copytree(runs[1], copy)
    obj = parse_json((copy / "manifest.json").read_bytes(), limit=1 << 26)
    if field == "flop":
        obj["flop"]["per_step"] *= 2
    else:
        obj["started_at"] = "2001-01-01T00:00:00Z"
    (copy / "manifest.json").write_bytes(canonical_json(obj))
    res = verify_transcript(copy, seed=SEED, workers=1, declaration=finish, policy=LOOSE)
    check = next(c for c in res.checks if c.name == "commitments")
    assert res.verdict == "fail" and "manifest_digest" in check.detail and f"'{field}'" in check.detail


def test_the_declared_flop_must_match_the_count_within_1_percent(runs: dict[int, Path]) -> None:
    t = load_transcript(runs[1])
    flop = t.manifest.flop.per_step * t.step_count

    def compute(counted: float | None, total: float) -> Check:
        decl = _finish(t, total_flop=total, flop_estimates=FlopEstimates(counted=counted))
        res = verify_transcript(runs[1], seed=SEED, workers=1, declaration=decl, policy=LOOSE)
        return next(c for c in res.checks if c.name == "compute")

    assert compute(flop, flop).passed and compute(flop * 0.999, flop).passed
    assert not compute(flop * 0.98, flop).passed and not compute(flop * 0.701, flop * 0.701).passed
    low = compute(flop, flop * 0.5)  # the headline under the count, however honest the estimate
    assert not low.passed and "total_flop" in low.detail
    assert compute(None, flop * 1.2).passed  # over-declaring is conservative


def _finish(t, **over) -> RunFinish:  # noqa: ANN001 - the RunFinish lab-a signs for the transcript t
    flop = t.manifest.flop.per_step * t.step_count
    fields = dict(party="lab-a", seq=3, run_id="r1", total_flop=flop, flop_estimates=FlopEstimates(counted=flop),
                  estimates_disagree=False, final_model_digest={"sha256": t.final_model_digest()},
                  commitments=t.commitments, spec_digest=t.spec_digest, manifest_digest=t.manifest.digest(),
                  finished_at=t.manifest.finished_at)
    return RunFinish.build(**{**fields, **over})


def _run_start(t, **over) -> RunStart:  # noqa: ANN001 - the RunStart lab-a signs for the transcript t
    fields = dict(party="lab-a", seq=1, run_id="r1", model_name="tiny", declared_flop=1e12, flop_method="counted",
                  hardware=[], started_at=t.manifest.started_at, spec=t.spec,
                  init_model_digest=t.checkpoints[0].entry.model_digest)
    return RunStart.build(**{**fields, **over})


def test_the_transcript_must_be_the_one_the_run_start_committed_to(runs: dict[int, Path]) -> None:
    t = load_transcript(runs[1])
    ok = verify_transcript(runs[1], seed=SEED, workers=1, run_start=_run_start(t), policy=LOOSE)
    assert ok.verdict == "pass" and next(c for c in ok.checks if c.name == "start").passed
    # another spec: the same run committed to other factory arguments before training
    decl = t.spec.declaration
    wider = decl.model_copy(update={"model_factory": decl.model_factory.model_copy(
        update={"kwargs": {**decl.model_factory.kwargs, "d_model": 32}})})
    bad = verify_transcript(runs[1], seed=SEED, workers=1, policy=LOOSE,
                            run_start=_run_start(t, spec=t.spec.model_copy(update={"declaration": wider})))
    check = next(c for c in bad.checks if c.name == "start")
    assert bad.verdict == "fail" and "'spec.declaration.model_factory.kwargs.d_model'" in check.detail
    # another checkpoint 0
    bad = verify_transcript(runs[1], seed=SEED, workers=1, policy=LOOSE,
                            run_start=_run_start(t, init_model_digest="00" * 32))
    assert bad.verdict == "fail" and "init_model_digest" in next(c for c in bad.checks if c.name == "start").detail
    # a RunStart without a spec binds no transcript
    bare = _run_start(t, spec=None, init_model_digest=None)
    bad = verify_transcript(runs[1], seed=SEED, workers=1, policy=LOOSE, run_start=bare)
    assert bad.verdict == "fail" and "commits to no run spec" in next(c for c in bad.checks if c.name == "start").detail


def test_a_transcript_of_another_run_fails_the_identity_check(runs: dict[int, Path]) -> None:
    res = verify_transcript(runs[1], seed=SEED, workers=1, policy=LOOSE, run=("lab-b", "r1"))
    check = next(c for c in res.checks if c.name == "identity")
    assert res.verdict == "fail" and "recorded for run lab-a/r1, not lab-b/r1" in check.detail


def test_code_the_verifier_cannot_match_is_inconclusive_never_failed(runs: dict[int, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An auditor whose installed factories differ from the pins cannot decide: inconclusive, and no replay runs."""
    from redline.errors import FactoryPinMismatch
    from redline.transcript import factories

    def mismatch(field, ref):  # noqa: ANN001, ANN202
        raise FactoryPinMismatch(f"factory {ref.name!r}: installed files differ", field=field, name=ref.name,
                                 group="redline.models", what="files_digest", want=ref.files_digest, got="00" * 32)
    monkeypatch.setattr(factories, "load", mismatch)
    res = verify_transcript(runs[1], seed=SEED, workers=1, policy=LOOSE)
    assert res.verdict == "inconclusive" and not res.outcomes and res.failing_step is None
    code = next(c for c in res.checks if c.name == "code")
    assert code.inconclusive and not code.passed and "installed files differ" in code.detail
    report = res.to_predicate(party="auditor-a", seq=1, run_id="r1", run_party="lab-a")
    assert report.verdict == "inconclusive" and report.failing_step is None


def test_sample_depends_only_on_the_seed(runs: dict[int, Path]) -> None:
    a = verify_transcript(runs[0], seed=SEED, workers=1, policy=LOOSE)
    b = verify_transcript(runs[0], seed=SEED, workers=1, policy=LOOSE)
    assert a.sample.indexes == b.sample.indexes and len(a.sample.indexes) < 6
    assert a.verification_fraction == pytest.approx(len(a.sample.indexes) / 6)
    c = verify_transcript(runs[0], seed=bytes(32), workers=1, policy=LOOSE)
    assert c.sample.drawn_steps != a.sample.drawn_steps


def test_runner_interface_is_pluggable(runs: dict[int, Path]) -> None:
    seen = []

    class Recording(LocalRunner):
        def run(self, tasks, on_done=None):
            seen.extend(tasks)
            return super().run(tasks, on_done)

    res = verify_transcript(runs[0], seed=SEED, runner=Recording(1), policy=LOOSE)
    assert res.verdict == "pass" and [t.index for t in seen] == res.sample.indexes


def test_compute_fraction_with_120_segments(tmp_path: Path) -> None:
    """A 120-step run with a checkpoint every step (120 one-step segments): counted FLOP spent vs the run's."""
    path = _train(tmp_path / "long", 120, 1, 3)
    full = verify_transcript(path, seed=SEED, workers=1, policy=VerificationPolicy(budget=None))
    assert full.verdict == "pass" and not full.sample.capped and full.sample.draws == 44
    n = len(full.sample.indexes)
    counted = full.compute.counted_steps  # one step of the one batch shape, and a seed-drawn second to cross-check
    assert counted == 2 and full.replayed_steps == n + counted
    assert full.compute_fraction == pytest.approx((n + counted) / 120)
    # a 40 % budget (48 steps: two for the FLOP count, two for the largest-update segments, 44 draws) fits the
    # target's 44
    roomy = verify_transcript(path, seed=SEED, workers=1, policy=VerificationPolicy(budget=0.4))
    assert not roomy.sample.capped and roomy.sample.max_draws == 44
    assert roomy.compute_fraction <= 0.4 and roomy.p_detect >= 0.99
    # the default 5 % (6 steps) cannot: the sample falls to its floor, 7 draws (+ 2 largest), and says so
    res = verify_transcript(path, seed=SEED, workers=1)
    assert res.verdict == "pass" and res.sample.capped and res.sample.draws == 7
    assert res.p_detect == pytest.approx(1 - 0.9 ** 7) and res.sample.p_detect[0.5] >= 0.99
    # at one step per segment (2 steps for the FLOP count, 2 largest-update segments) the 5 % default reaches
    # P >= 0.99 from 960 segments on, P >= 0.95 from 660
    assert budget_draws([1] * 960, 0.05, reserved_steps=4) >= draws_needed(0.99, 0.1)
    assert budget_draws([1] * 660, 0.05, reserved_steps=4) >= draws_needed(0.95, 0.1)


MANIFEST_FLIPS: dict[str, tuple[Any, str]] = {
    # field: (how to change it in manifest.json, what the failing check names)
    "format": (lambda m: m.update(format="redline-transcript/v9"), "format"),
    "spec.party": (lambda m: m["spec"].update(party="lab-z"), "run.json"),
    "spec.declaration": (lambda m: m["spec"]["declaration"]["model_factory"]["kwargs"].update(d_model=32),
                         "run.json"),
    "spec.init": (lambda m: m["spec"]["init"].update(seed=99), "run.json"),
    "spec.parameter_count": (lambda m: m["spec"].update(parameter_count=1), "run.json"),
    "spec.environment": (lambda m: m["spec"]["environment"].update(num_threads=7), "run.json"),
    "started_at": (lambda m: m.update(started_at="2001-01-01T00:00:00Z"), "'started_at'"),
    "finished_at": (lambda m: m.update(finished_at="2001-01-01T00:00:00Z"), "finished_at"),
    "tokens": (lambda m: m.update(tokens=m["tokens"] + 1), "tokens"),
    "flop": (lambda m: m["flop"].update(per_step=m["flop"]["per_step"] / 2), "'flop'"),
    "files": (lambda m: m["files"]["steps.jsonl"].update(size=1), "steps.jsonl"),
    "checkpoints": (lambda m: m["checkpoints"][1].update(model_digest="11" * 32), "checkpoints root"),
    "commitments": (lambda m: m["commitments"].update(steps_root="22" * 32), "steps root"),
}


@pytest.mark.parametrize("field", sorted(MANIFEST_FLIPS))
def test_every_field_of_the_manifest_is_bound(runs: dict[int, Path], tmp_path: Path, field: str) -> None:
    """Change any field of a declared transcript's manifest: verification against the logged RunStart and
    RunFinish fails, and the failing check names the field (or the file it describes)."""
    import shutil

    from redline.crypto.canonical import canonical_json, parse_json

    t = load_transcript(runs[1])
    finish = _finish(t)
    copy = tmp_path / "edited"
    shutil.copytree(runs[1], copy)
    obj = parse_json((copy / "manifest.json").read_bytes(), limit=1 << 26)
    edit, named = MANIFEST_FLIPS[field]
    edit(obj)
    (copy / "manifest.json").write_bytes(canonical_json(obj))
    res = verify_transcript(copy, seed=SEED, workers=1, declaration=finish, run_start=_run_start(t), policy=LOOSE)
    failed = [c for c in res.checks if not c.passed]
    assert res.verdict == "fail" and failed, field
    assert any(named in c.detail for c in failed), [c.detail[:300] for c in failed]


def test_code_that_changes_under_the_replay_is_inconclusive_never_fail(runs: dict[int, Path]) -> None:
    # The code check passed, then the segment workers find the pinned code not as pinned (the auditor's install
    # changed meanwhile, or differs between the checking process and its workers): the segments cannot be decided
    # here, which says nothing of the lab's run.
    from redline.errors import FactoryPinMismatch
    from redline.transcript import replay
    from redline.verify.segments import run_segment

    def changed(field: str, ref: object) -> object:
        raise FactoryPinMismatch(f"field {field!r}: the installed files digest to something else",
                                 field=field, name="x", group="g", what="files_digest", want="a", got="b")

    class Changing(LocalRunner):
        def run(self, tasks, on_done=None):
            real = replay.load  # what the replay loads the pinned factories with
            replay.load = changed  # type: ignore[assignment]
            try:
                return [run_segment(task) for task in tasks]
            finally:
                replay.load = real  # type: ignore[assignment]

    res = verify_transcript(runs[0], seed=SEED, runner=Changing(1), policy=LOOSE)
    seg = next(c for c in res.checks if c.name == "segments")
    assert res.verdict == "inconclusive" and seg.inconclusive and "could not run the code" in seg.detail
    assert all(o.undecided and not o.passed for o in res.outcomes)
    assert res.failing_step is None and res.bisect is None
