"""The adaptive lab's evasions (``redline.testing.attacks``: seed grinding, calibration poisoning, a late smooth
fake with or without a long warm-up, four compute under-declarations), each mounted through the API a lab and an
auditor use (``Scenario``: ``redline run start|declare``, the statement builders, the registry;
``verify_transcript``), and the ``other-cpu`` baseline.

Deterministic bindings are caught in 20 of 20 seeds. The late smooth fake is sampled: its verdicts must be what
the sample implies (a drawn faked step fails the run) and its detection rate the stated ``1 - (1 - f)^draws``
within sampling noise. Honest runs never fail.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from redline.testing.attacks import (
    ADAPTIVE_BINDING_CASES,
    ADAPTIVE_CASES,
    ATTACKS,
    BindingRun,
    SpoofedRun,
)
from redline.verify import VerificationPolicy, verify_transcript

SEEDS = range(20)
MICRO = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One torch thread: the runs are tiny, and two busy test workers oversubscribe two cores otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _caught(s: BindingRun) -> None:
    assert s.caught, "\n".join(f"{'stopped' if ok else 'GOT THROUGH'}: {what}" for what, ok in s.stopped.items())


def _state(s: BindingRun) -> Any:
    from redline.cli.registry import open_registry

    reg = open_registry(s.details["log"])
    try:
        return reg.state
    finally:
        reg.log.store.close()


def test_the_adaptive_classes_are_registered() -> None:
    from redline.testing.attacks import OTHER_CPU

    new = {"seed-grinding", "calibration-poisoning", "late-smooth-fake", "long-warmup", "under-declared-flop",
           "uncounted-matmuls", "small-first-batches", "under-declared-tokens"}
    assert new <= set(ATTACKS)
    for table in (ADAPTIVE_CASES, ADAPTIVE_BINDING_CASES):
        assert {name for name, _ in table.values()} <= new
    assert OTHER_CPU.name == "other-cpu" and OTHER_CPU.name not in ATTACKS  # a baseline, not an attack


# --- seed grinding ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grind_transcript(tmp_path_factory: pytest.TempPathFactory) -> SpoofedRun:
    """Lab A's 100-segment run with its last 10 % of steps faked, forged once per worker (each story declares a
    copy on its own log, so every story draws its own seeds)."""
    from redline.testing.attacks.seed_grinding import forge_late_fake

    return forge_late_fake(tmp_path_factory.mktemp("grind"), seed=0, segments=100)


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_grinding_cannot_reroll_the_sample(tmp_path: Path, grind_transcript: SpoofedRun, seed: int) -> None:
    from redline.testing.attacks.seed_grinding import planned_sample
    from redline.transcript.transcript import load_transcript
    from redline.verify import update_norms
    from redline.verify.sampling import p_detect_steps

    s = ATTACKS["seed-grinding"].run(tmp_path, seed=seed, forged=grind_transcript, tries=4)
    _caught(s)
    trail = s.details["trail"]
    assert len(trail) == 4 and len({tr["index"] for tr in trail}) == 4  # four RunProgress, all accepted
    first = trail[0]
    assert all(tr["ranges"] == first["ranges"] and tr["engine_ranges"] == first["engine_ranges"] for tr in trail)
    assert first["engine_ranges"] == [[1, 100, first["index"]]]  # seeded by the first declaration, for good
    assert all(tr["sample"] == first["sample"] for tr in trail)  # the sample a verifier draws never moved
    # the former rule would have re-rolled it at every declaration
    assert len({tr["old_rule_seed"] for tr in trail}) == 4
    audit = s.audits["verify the run"]
    sample = audit.result.sample
    assert [r.to_json() for r in sample.ranges] == first["ranges"] and sample.indexes == first["sample"]
    t = load_transcript(s.transcript_dir)
    assert planned_sample(t, sample.ranges, VerificationPolicy(), update_norms(t), 2).indexes == sample.indexes
    faked = set(s.details["faked_transcript_segments"])
    assert faked == set(range(90, 100))
    assert s.details["detected"] == bool(faked & set(sample.indexes))  # caught iff the honest sample meets it
    assert audit.verdict == ("fail" if s.details["detected"] else "pass")
    assert s.details["draws"] == 7 and s.details["p_detect"] == pytest.approx(p_detect_steps(7, 0.1))
    rerolled = s.answers[-1]
    assert rerolled.refused and "field 'seed_ranges'" in rerolled.error
    assert f"[[1, 100, {first['index']}]]" in rerolled.error and f"[[1, 100, {s.details['rerolled_entry']}]]" \
        in rerolled.error
    assert _state(s).runs["lab-a/grind-0"].seed_ranges == [[1, 100, first["index"]]]
    assert s.details["verified_after_audit"] == audit.verdict  # what the log holds until a re-rolled report
    assert s.details["verified_final_after_audit"] == (audit.verdict == "pass")


# --- calibration poisoning ------------------------------------------------------------------------------------


def _poison(tmp_path: Path, seed: int) -> SpoofedRun:
    name, params = ADAPTIVE_CASES["calibration-poisoning"]
    return ATTACKS[name].run(tmp_path, seed=seed, steps=10, checkpoint_every=2, config={"model": MICRO}, **params)


@pytest.mark.parametrize("seed", SEEDS)
def test_calibration_poisoning_fails_the_forged_segments_and_the_swapped_weights(tmp_path: Path, seed: int) -> None:
    s = _poison(tmp_path, seed)
    assert s.faked_segments == [0, 1, 2, 4] and s.cost == 11.0
    assert s.details["old_rule_admits_swap"]  # a tolerance calibrated on a poisoned end would have let it in
    assert s.details["old_rule_tolerance_l2"] == pytest.approx(2 * s.details["swap_l2"], rel=1e-6)
    r = verify_transcript(s.transcript_dir, seed=bytes([seed]) * 32, workers=1,
                          policy=VerificationPolicy(calibrate_segments=2))
    assert r.tolerance.bitwise and r.tolerance.calibrated_from == 4  # two replays of two segments, compared
    assert r.verdict == "fail" and [c.name for c in r.checks if not c.passed] == ["segments"]
    failing = {o.index for o in r.failing_segments}
    assert failing <= set(s.faked_segments) and 4 in failing  # the swapped-in final weights do not replay
    assert set(r.sample.largest) >= {4}  # the swap is the run's largest update
    assert failing & {0, 1, 2}  # and the poisoned ends fail like any forgery


def test_calibration_poisoning_through_the_log_leaves_the_weights_unverified(tmp_path: Path) -> None:
    from redline.testing.scenario import Scenario
    from redline.transcript.transcript import load_transcript

    name, params = ADAPTIVE_CASES["calibration-poisoning"]
    s = ATTACKS[name].run(tmp_path, seed=3, steps=10, checkpoint_every=2,
                          config={"model": MICRO, "party": "lab-a", "run_id": "poison"}, **params)
    scenario = Scenario(tmp_path / "story")
    scenario.declare_run("lab-a", s.transcript_dir, "lab-a-poison")
    audit = scenario.audit("lab-a", "poison", s.transcript_dir, policy=VerificationPolicy(calibrate_segments=2))
    assert audit.verdict == "fail" and audit.failed_checks() == ["segments"] and not audit.report.refused
    final = load_transcript(s.transcript_dir).final_model_digest()
    release = scenario.release("lab-a", "lab-a-poison", final)
    assert not release.refused
    kinds = {v.kind for v in scenario.violations(audit.report.indexes[0])}
    assert kinds == {"failed-verification", "release-unverified-weights"}
    assert not scenario.state().runs["lab-a/poison"].verified_final


# --- a late smooth fake, with and without a long warm-up ---------------------------------------------------------


@pytest.fixture(scope="module")
def late_fake(tmp_path_factory: pytest.TempPathFactory) -> tuple[SpoofedRun, list[int]]:
    """100 one-step segments, the last 10 % of the steps faked; and which segments fail replay (every one)."""
    from redline.transcript.transcript import load_transcript
    from redline.verify import Tolerance
    from redline.verify.segments import run_segment, tasks_for

    name, params = ADAPTIVE_CASES["late-smooth-fake"]
    s = ATTACKS[name].run(tmp_path_factory.mktemp("late"), seed=0, steps=100, checkpoint_every=1,
                          config={"model": MICRO}, **params)
    t = load_transcript(s.transcript_dir)
    segs = t.segments()
    outcomes = [run_segment(task) for task in tasks_for(str(s.transcript_dir), ((i, g.start.step, g.end.step)
                                                                               for i, g in enumerate(segs)),
                                                         Tolerance.exact())]
    return s, [o.index for o in outcomes if not o.passed]


def _draw(t: Any, seed: bytes, policy: VerificationPolicy, norms: list[float], reserved: int) -> Any:
    from redline.testing.attacks.seed_grinding import planned_sample
    from redline.verify import SeedRange

    return planned_sample(t, [SeedRange(1, t.step_count, seed)], policy, norms, reserved)


def test_late_smooth_fake_fails_exactly_its_faked_segments(late_fake: tuple[SpoofedRun, list[int]]) -> None:
    from redline.transcript.transcript import load_transcript
    from redline.verify import update_norms

    s, failing = late_fake
    assert s.faked_segments == failing == list(range(90, 100)) and s.cost == 0.9
    assert s.details["fake_fraction"] == 0.1 and s.details["first_faked_step"] == 91
    norms = update_norms(load_transcript(s.transcript_dir))
    largest = sorted(range(100), key=lambda i: -norms[i])[:10]
    assert not set(largest) & set(failing)  # smooth: never among the largest updates


@pytest.mark.parametrize("seed", range(8))
def test_late_smooth_fake_verdict_is_what_the_step_sample_implies(late_fake: tuple[SpoofedRun, list[int]],
                                                                  seed: int) -> None:
    from redline.verify.sampling import p_detect_steps

    s, failing = late_fake
    r = verify_transcript(s.transcript_dir, seed=bytes([seed, 7]) * 16, workers=1)
    meets = bool(set(failing) & set(r.sample.indexes))
    assert r.verdict == ("fail" if meets else "pass")
    assert r.sample.capped and r.sample.draws == 7 and r.p_detect == pytest.approx(p_detect_steps(7, 0.1))


def test_late_smooth_fake_is_caught_at_the_stated_probability(late_fake: tuple[SpoofedRun, list[int]]) -> None:
    """The shortcut the bench uses (every segment replayed once, then the real sample drawn per seed) over 400
    seeds: the detection rate is the stated bound within four standard deviations."""
    from redline.transcript.transcript import load_transcript
    from redline.verify import update_norms
    from redline.verify.sampling import p_detect_steps

    s, failing = late_fake
    t = load_transcript(s.transcript_dir)
    policy, norms = VerificationPolicy(), update_norms(t)
    hits = [bool(set(failing) & set(_draw(t, i.to_bytes(4, "big") * 8, policy, norms, 2).indexes))
            for i in range(400)]
    p = p_detect_steps(7, 0.1)
    rate = sum(hits) / len(hits)
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / len(hits)), (rate, p)


def test_an_honestly_declared_long_warmup_loads_and_caps_the_sample(tmp_path: Path) -> None:
    from redline.transcript.transcript import load_transcript
    from redline.verify.sampling import budget_draws, p_detect_steps

    s = ATTACKS["late-smooth-fake"].run(tmp_path, seed=1, steps=120, checkpoint_every=1, warmup=20,
                                        config={"model": MICRO}, fake_fraction=0.1)
    t = load_transcript(s.transcript_dir)
    assert t.spec.checkpoint_every == 20 and [g.end.step - g.start.step for g in t.segments()][:2] == [20, 1]
    lengths = [g.end.step - g.start.step for g in t.segments()]
    assert budget_draws(lengths, 0.05, reserved_steps=2) < 7  # one long segment costs the budget dearly ...
    r = verify_transcript(s.transcript_dir, seed=b"\x05" * 32, workers=1)
    assert r.sample.capped and r.sample.draws == 7  # ... down to the floor, and the sample says so
    assert r.p_detect == pytest.approx(p_detect_steps(7, 0.1))
    assert "below the target" in next(c for c in r.checks if c.name == "segments").detail or r.verdict == "fail"
    assert r.verdict == ("fail" if set(s.faked_segments) & set(r.sample.indexes) else "pass")


@pytest.mark.parametrize("seed", SEEDS)
def test_a_warmup_longer_than_checkpoint_every_is_refused_on_load(tmp_path: Path, seed: int) -> None:
    from redline.errors import MalformedInput
    from redline.transcript.transcript import load_transcript

    name, params = ADAPTIVE_CASES["long-warmup"]
    s = ATTACKS[name].run(tmp_path, seed=seed, steps=20, checkpoint_every=1, config={"model": MICRO}, **params)
    assert s.details["longest_segment"] == 4 and s.details["declared_checkpoint_every"] == 1
    want = "the segment from step 0 to 4 is 4 steps, longer than the declared checkpoint_every 1"
    with pytest.raises(MalformedInput, match=want):
        load_transcript(s.transcript_dir)
    r = verify_transcript(s.transcript_dir, seed=bytes([seed]) * 32, workers=1)
    assert r.verdict == "fail" and len(r.checks) == 1 and want in r.checks[0].detail and r.sample is None


# --- compute under-declaration ----------------------------------------------------------------------------------


COMPUTE_CASES = ["under-declared-flop-0.701", "uncounted-matmuls", "small-first-batches", "under-declared-tokens"]
COMPUTE_WHY = {"under-declared-flop-0.701": "(-29.90 %, allowed ±1 %)",
               "uncounted-matmuls": "below 0.5: the model does matmul-class work the counter does not see",
               "small-first-batches": "RunFinish.flop_estimates.counted",
               "under-declared-tokens": "step 2 records 8 tokens, but its batch holds 32"}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", COMPUTE_CASES)
def test_compute_under_declaration_fails_the_compute_check(tmp_path: Path, case: str, seed: int) -> None:
    name, params = ADAPTIVE_BINDING_CASES[case]
    s = ATTACKS[name].run(tmp_path, seed=seed, steps=4, checkpoint_every=2, **params)
    assert isinstance(s, BindingRun) and s.attack == name
    _caught(s)
    assert not any(a.refused for a in s.answers)  # the log cannot tell
    audit = s.audits["verify the run"]
    assert audit.verdict == "fail" and audit.failed_checks() == ["compute"]  # every other binding holds
    assert COMPUTE_WHY[case] in audit.check("compute").detail
    assert [v.kind for v in s.violations] == ["failed-verification"]
    assert s.cost > 1.4  # what the lab did over what it declared


def test_the_test_only_factories_are_resolved_only_during_the_story(tmp_path: Path) -> None:
    from redline.errors import UntrustedCode
    from redline.testing.attacks.compute_evasion import lab_factories, lab_ref
    from redline.transcript import factories, replay

    real, real_replay = factories.load, replay.load
    with lab_factories():
        assert factories.load("model_factory", lab_ref("lab-gpt")).__name__ == "MulSumLM"
    assert factories.load is real and replay.load is real_replay
    with pytest.raises(UntrustedCode):
        factories.load("model_factory", lab_ref("lab-gpt"))


# --- honest baselines -------------------------------------------------------------------------------------------


def test_honest_runs_never_fail(tmp_path: Path) -> None:
    from redline.testing.attacks import HONEST
    from redline.testing.attacks._binding import honest_story

    _, audit, _ = honest_story(tmp_path / "log", seed=5)
    assert audit.verdict == "pass" and not audit.report.refused
    s = HONEST.run(tmp_path, seed=2, steps=100, checkpoint_every=1, config={"model": MICRO})
    for i, policy in enumerate((VerificationPolicy(), VerificationPolicy(calibrate_segments=2))):
        r = verify_transcript(s.transcript_dir, seed=bytes([i]) * 32, workers=1, policy=policy)
        assert r.verdict == "pass", [c for c in r.checks if not c.passed]


def test_an_honest_run_verified_on_another_cpu_is_never_failed(tmp_path: Path) -> None:
    from redline.testing.attacks import OTHER_CPU

    r = OTHER_CPU.run(tmp_path, seed=0, steps=10, checkpoint_every=5)
    assert r.never_failed, (r.returncode, r.verdict, r.failed, r.stderr)
    assert r.run_verified == r.verdict and not r.violations
    if r.recorded_capability != "DEFAULT" and r.verdict == "inconclusive":
        assert r.returncode == 8 and r.undecided
        # the machine's kernels; or, in a working tree edited while the test runs, redline's own files no longer
        # matching the pin the recording took (the code check: inconclusive as well, never failed)
        assert all("cpu_capability" in c["detail"] or c["name"] == "code" for c in r.undecided), r.undecided
