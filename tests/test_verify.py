"""``redline.verify``: sampling, distances, segment re-execution, bisection and the verification report."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch

from redline.crypto.keys import SigningKey
from redline.statements import open_envelope
from redline.statements.runs import FlopEstimates, RunFinish, RunProgress
from redline.transcript import load_transcript, replay_segment
from redline.transcript.tinygpt import TrainConfig, train
from redline.verify import (
    FunctionOracle,
    LocalRunner,
    Tolerance,
    bisect_segment,
    budget_segments,
    calibrate,
    choose_sample,
    compare_states,
    p_detect,
    sample_size,
    seed_from_checkpoint,
    sign_report,
    uniform_sample,
    verify_transcript,
)
from verify_helpers import MODEL, tamper_checkpoint

SEED = hashlib.sha256(b"test checkpoint note").digest()


def _train(path: Path, steps: int, every: int, seed: int) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(steps=steps, seed=seed, batch_size=2, model=MODEL), path, checkpoint_every=every)
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


def test_a_budget_caps_the_sample_down_to_its_floor_and_says_so() -> None:
    norms = [float(i % 17) for i in range(1000)]
    # a roomy cap changes nothing: 29 uniform + 2 largest fit in 40
    roomy = choose_sample(SEED, 1000, update_norms=norms, max_segments=40)
    assert not roomy.capped and roomy.uniform == choose_sample(SEED, 1000, update_norms=norms).uniform
    # a tight cap shrinks the uniform draw (cap - largest) and P(detect) is the true, lower figure
    tight = choose_sample(SEED, 1000, update_norms=norms, max_segments=12)
    assert tight.capped and len(tight.uniform) == 10 and len(tight.largest) == 2
    assert tight.uniform == roomy.uniform[:10]  # the same stream: a prefix of the uncapped draw
    assert tight.p_detect[0.1] == pytest.approx(p_detect(1000, 10, 0.1)) and tight.p_detect[0.1] < 0.95
    # never below the floor: half the segments faked is caught with P >= 0.99 (7 segments here)
    floor = choose_sample(SEED, 1000, update_norms=norms, max_segments=0)
    assert floor.capped and len(floor.uniform) == sample_size(1000, 0.99, 0.5) == 7
    assert floor.p_detect[0.5] >= 0.99
    assert floor.to_json()["capped"] is True and floor.to_json()["max_segments"] == 0
    with pytest.raises(ValueError, match="max_segments"):
        choose_sample(SEED, 10, max_segments=-1)


def test_budget_segments_counts_the_longest_segment_and_the_flop_step() -> None:
    assert budget_segments([10] * 100, 1000, 0.05) == 4  # 50 steps - 1 for the FLOP count = 49 → 4 segments of 10
    assert budget_segments([10] * 99 + [3], 993, 0.05) == 4
    assert budget_segments([1] * 640, 640, 0.05) == 31
    assert budget_segments([10] * 6, 60, 0.05) == 0
    assert budget_segments([10] * 6, 60, None) is None
    with pytest.raises(ValueError, match="budget"):
        budget_segments([1], 1, 0.0)


def test_compute_budget_formula() -> None:
    """At the default (P ≥ 0.95 against 10 % faked) the uniform sample is ~ln(0.05)/ln(0.9) ≈ 29 segments
    whatever m is, so the replayed share (n + 2 largest + 1 FLOP-count step of a segment) falls to 5 %
    at 620 segments; with 100 segments it is 28 %."""
    assert sample_size(100, 0.95, 0.1) == 25
    assert sample_size(1000, 0.95, 0.1) == 29
    assert (sample_size(100, 0.95, 0.1) + 2) / 100 > 0.05
    for m in (620, 1000, 10_000, 100_000):
        assert (sample_size(m, 0.95, 0.1) + 2 + 1) / m <= 0.05


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
        assert res.verdict == "pass", res.to_json()["checks"]
        assert [c.name for c in res.checks] == ["transcript", "data", "segments", "compute"]
        # 6 segments: the 5 % budget caps the sample at its floor (4 uniform: half the segments faked is
        # caught for sure) plus the 2 largest updates, and the report says the target was not reached
        assert res.sample.capped and len(res.sample.uniform) == 4 and res.failing_step is None
        assert res.segments_checked == len(res.sample.indexes) >= 4
        seg = next(c for c in res.checks if c.name == "segments")
        assert "below the target 0.95: the 5% compute budget allows 0 of 6 segments" in seg.detail
        full = verify_transcript(path, seed=hashlib.sha256(bytes([seed])).digest(), workers=1, budget=None)
        assert full.segments_checked == 6 and not full.sample.capped  # no cap: all 6 sampled at P=0.95
        assert all(o.distance is not None and o.distance.bitwise_equal for o in res.outcomes)
        assert res.compute_spent_flop == res.per_step_flop * res.replayed_steps > 0
        report = res.to_predicate(party="auditor-a", seq=1, run_id="r1", run_party="lab-a")
        assert report.verdict == "pass" and report.sample_seed == res.sample.seed.hex()


def test_tampered_checkpoint_fails_and_bisection_names_the_step(tampered: Path) -> None:
    res = verify_transcript(tampered, seed=SEED, workers=1, budget=None)  # every segment, to see both bad ones
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
                      commitments=t.commitments, finished_at=t.manifest.finished_at)
        return RunFinish.build(**{**fields, **over})

    ok = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(), largest=0, target_p_detect=0.5)
    assert ok.verdict == "pass" and next(c for c in ok.checks if c.name == "commitments").passed
    other = load_transcript(runs[2]).commitments
    bad = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(commitments=other),
                            largest=0, target_p_detect=0.5)
    c = next(c for c in bad.checks if c.name == "commitments")
    assert bad.verdict == "fail" and not c.passed and "steps_root" in c.detail
    inflated = verify_transcript(runs[1], seed=SEED, workers=1, declaration=finish(total_flop=flop * 0.5),
                                 largest=0, target_p_detect=0.5)
    assert not next(c for c in inflated.checks if c.name == "compute").passed
    progress = RunProgress.build(party="lab-a", seq=2, run_id="r1", step=30, flop_so_far=flop / 2,
                                 commitments=t.commitments_at(30), as_of=t.manifest.finished_at)
    res = verify_transcript(runs[1], seed=SEED, workers=1, declaration=progress, largest=0, target_p_detect=0.5)
    assert res.verdict == "pass"


def test_sample_depends_only_on_the_seed(runs: dict[int, Path]) -> None:
    a = verify_transcript(runs[0], seed=SEED, workers=1, target_p_detect=0.5, largest=0)
    b = verify_transcript(runs[0], seed=SEED, workers=1, target_p_detect=0.5, largest=0)
    assert a.sample.indexes == b.sample.indexes and len(a.sample.indexes) < 6
    assert a.verification_fraction == pytest.approx(len(a.sample.indexes) / 6)


def test_runner_interface_is_pluggable(runs: dict[int, Path]) -> None:
    seen = []

    class Recording(LocalRunner):
        def run(self, tasks, on_done=None):
            seen.extend(tasks)
            return super().run(tasks, on_done)

    res = verify_transcript(runs[0], seed=SEED, runner=Recording(1), target_p_detect=0.5, largest=0)
    assert res.verdict == "pass" and [t.index for t in seen] == res.sample.indexes


def test_compute_fraction_with_100_segments(tmp_path: Path) -> None:
    """A 120-step run with a checkpoint every step (120 segments): counted FLOP spent vs the run's."""
    path = _train(tmp_path / "long", 120, 1, 3)
    full = verify_transcript(path, seed=SEED, workers=1, budget=None)
    assert full.verdict == "pass" and not full.sample.capped
    n = len(full.sample.indexes)
    assert full.replayed_steps == n + 1  # the sampled one-step segments and the FLOP-count step
    assert full.compute_fraction == pytest.approx((n + 1) / 120)
    assert sample_size(120, 0.95, 0.1) == 26 <= n <= 28
    # a 25 % budget (30 steps: 29 segments and the FLOP-count step) fits the target's 26 + 2
    quarter = verify_transcript(path, seed=SEED, workers=1, budget=0.25)
    assert not quarter.sample.capped and quarter.sample.max_segments == 29
    assert quarter.compute_fraction <= 0.25 and quarter.p_detect >= 0.95
    # the default 5 % (6 steps) cannot: the sample falls to its floor, 7 uniform (+ 2 largest), and says so
    res = verify_transcript(path, seed=SEED, workers=1)
    assert res.verdict == "pass" and res.sample.capped and len(res.sample.uniform) == 7
    assert res.p_detect == pytest.approx(p_detect(120, 7, 0.1)) and res.p_detect < 0.95
    assert res.sample.p_detect[0.5] >= 0.99
    # at one step per segment the 5 % default holds the target from m = 620 segments on
    assert budget_segments([1] * 620, 620, 0.05) == 30 >= sample_size(620, 0.95, 0.1) + 2
    assert budget_segments([1] * 600, 600, 0.05) == 29 < sample_size(600, 0.95, 0.1) + 2
