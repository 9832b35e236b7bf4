"""The attack suite: every spoofed transcript loads (tampering excepted), its faked segments do not replay
bit for bit while its honest segments do, and the verifier fails it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from redline.errors import MalformedInput  # noqa: E402
from redline.testing.attacks import ATTACKS, CASES, SpoofedRun  # noqa: E402
from redline.transcript import load_transcript, replay_segment  # noqa: E402

STEPS, EVERY, SEED = 40, 10, 0
VERIFY_SEED = bytes(range(32))

_cache: dict[str, SpoofedRun] = {}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One torch thread: the runs are tiny, and two busy test workers oversubscribe two cores badly otherwise.

    The forged manifests record it, so replays (and the verifier's) use one thread too.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def spoof(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Forge a case once per worker."""
    def get(case: str) -> SpoofedRun:
        if case not in _cache:
            name, params = CASES[case]
            _cache[case] = ATTACKS[name].run(tmp_path_factory.mktemp(case), seed=SEED, steps=STEPS,
                                             checkpoint_every=EVERY, **params)
        return _cache[case]
    return get


def test_registry_has_every_family() -> None:
    from redline.testing.attacks import BINDING_CASES, TAMPER_CASES

    assert set(ATTACKS) == {"skipped-steps", "data-substitution", "data-reordering", "compute-under-declaration",
                            "forged-final-weights", "splice", "tamper", "adversarial-tolerance", "code-execution",
                            "hidden-pretraining", "transcript-reuse", "release-unverified-weights", "late-smooth-fake",
                            "long-warmup", "calibration-poisoning", "seed-grinding", "under-declared-flop",
                            "uncounted-matmuls", "small-first-batches", "under-declared-tokens"}
    for name, attack in ATTACKS.items():
        assert attack.name == name and attack.description
    for table in (CASES, TAMPER_CASES, BINDING_CASES):
        assert {name for name, _ in table.values()} <= set(ATTACKS)
    assert not set(CASES) & set(TAMPER_CASES) and not set(CASES) & set(BINDING_CASES)


def test_attack_decorator_registers_by_name_and_refuses_a_second_attack_of_that_name() -> None:
    from redline.testing import attacks
    from redline.testing.attacks import attack
    from redline.testing.attacks._base import BaseAttack

    @attack
    class Probe(BaseAttack):
        name = "probe-attack"
        description = "registered by a test"

    try:
        assert isinstance(ATTACKS["probe-attack"], Probe)
        assert attacks.registered() is ATTACKS  # one registry: the decorator writes where ATTACKS reads

        class Other(BaseAttack):
            name = "probe-attack"
            description = "another attack under a taken name"

        with pytest.raises(ValueError, match="already registered"):
            attack(Other)

        @attack(name="probe-renamed")
        class Renamed(BaseAttack):
            name = ""
            description = "named by the decorator"

        assert ATTACKS["probe-renamed"].name == "probe-renamed"
        with pytest.raises(TypeError, match="not an attack"):
            attack(type("Nameless", (BaseAttack,), {"description": "no name"}))
    finally:
        ATTACKS.pop("probe-attack", None)
        ATTACKS.pop("probe-renamed", None)


def test_the_attack_suite_is_not_in_the_products_import_path() -> None:
    import importlib.util
    import subprocess
    import sys

    assert importlib.util.find_spec("redline.verify.attacks") is None
    code = ("import sys, redline.verify, redline.engine, redline.registry, redline.cli.main, "
            "redline.transcript.recorder; print(sorted(m for m in sys.modules if m.startswith('redline.testing')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("case", sorted(CASES))
def test_spoof_loads_and_only_faked_segments_fail_replay(spoof: Any, case: str) -> None:
    s = spoof(case)
    t = load_transcript(s.transcript_dir)  # the commitments are consistent: only training is faked
    assert t.step_count == s.declared.steps == STEPS
    assert s.segment_starts == [seg.start.step for seg in t.segments()]
    assert s.faked_segments and s.commitments_before is None and s.attack == CASES[case][0]
    assert t.manifest.parameter_count == s.declared.parameter_count
    assert s.declared.flop == t.manifest.flop.per_step * STEPS
    for i, start in enumerate(s.segment_starts):
        if case == "data-substitution-actual" and i in s.faked_segments:
            with pytest.raises(MalformedInput, match="the data source's batch"):  # the replay's own data check
                replay_segment(t, start)
            continue
        if case == "under-declared-width" and i in s.faked_segments:
            with pytest.raises(RuntimeError, match="size mismatch"):  # the wide weights fit no declared model
                replay_segment(t, start)
            continue
        result = replay_segment(t, start)
        end = t.checkpoint(result.end_step).load()
        if case == "data-reordering-actual":
            # the true positions are committed: every segment replays what was done; only the order is wrong
            assert result.differences(end) == []
            assert [r.position for r in t.data] != list(range(STEPS))
        elif i in s.faked_segments:
            assert result.differences(end), f"{case}: faked segment {i} replayed bit for bit"
        else:
            assert result.differences(end) == [], f"{case}: honest segment {i} does not replay"
            assert result.mismatched_steps(t) == []


def test_costs_and_declarations(spoof: Any) -> None:
    assert spoof("skipped-steps").cost == pytest.approx((20 + 5) / 40)
    assert spoof("under-declared-steps").cost == 2.0
    assert spoof("under-declared-steps").details["actual_steps"] == 2 * STEPS
    wide = spoof("under-declared-width")
    assert wide.cost > 2 and wide.details["actual_model"]["d_model"] == 2 * wide.declared.model["d_model"]
    assert wide.details["actual_flop"] > 2 * wide.declared.flop
    for eps in ("0", "1e-3", "1"):
        assert spoof(f"adversarial-eps-{eps}").cost < 0.8
    assert spoof("splice").faked_segments == [1]
    assert spoof("forged-final-weights").faked_segments == [STEPS // EVERY - 1]


@pytest.mark.parametrize("target", ["checkpoint", "steps", "data"])
def test_tampering_after_commitment_is_refused_naming_the_file(tmp_path: Path, target: str) -> None:
    s = ATTACKS["tamper"].run(tmp_path, seed=SEED, steps=20, checkpoint_every=10, target=target)
    assert s.commitments_before is not None and s.tampered_file is not None and s.tampered_file.exists()
    with pytest.raises(MalformedInput) as info:
        load_transcript(s.transcript_dir)
    assert str(info.value).startswith(str(s.tampered_file))


def test_fabricated_generator_states_are_faithful() -> None:
    from redline.testing.attacks._forge import Run, advance_rng, make_config

    cfg = make_config(SEED, STEPS)
    run = Run(cfg)
    rng = run.rng
    for position in range(3):
        run.train(run.batch(position))
        rng = advance_rng(cfg, rng)
        assert rng.digests() == run.rng.digests()


def test_adversarial_checkpoints_fit_a_loose_tolerance_but_not_bitwise(spoof: Any) -> None:
    from redline.testing.attacks.adversarial import replay_deviation
    from redline.verify.distance import GroupDistance, Tolerance, compare_states

    worst = {}
    for eps in ("0", "1e-3", "1"):
        s = spoof(f"adversarial-eps-{eps}")
        t = load_transcript(s.transcript_dir)
        devs = [replay_deviation(t, start) for start in s.faked_starts()]
        worst[eps] = max(v for d in devs for k, v in d.items() if k.startswith("model."))
        assert worst[eps] > 0  # never bit-identical
        # only weights and moments differ: generator states, schedule and step counters are faithful
        for start in s.faked_starts():
            r = replay_segment(t, start)
            end = t.checkpoint(r.end_step).load()
            d = compare_states(r.state.tensors, end.tensors, r.state.metadata, end.metadata)
            assert not d.bitwise_equal and d.exact_mismatches == ()
            assert not Tolerance.exact().accepts(d)
            loose = Tolerance(bitwise=False, model=GroupDistance(1e9, 2 * d.model.linf, 1.0, 1e9),
                              optimizer=GroupDistance(1e9, 1e9, 1.0, 1e9))
            assert loose.accepts(d)  # a tolerance loose enough in L∞ lets the checkpoint through
        assert max(s.details["max_drift"]) <= float(eps) * (1 + 1e-6)  # the drift stays within the budget


# --- the verifier ------------------------------------------------------------------------------------------


def _verify(s: SpoofedRun) -> Any:
    from redline.verify import verify_transcript

    return verify_transcript(s.transcript_dir, seed=VERIFY_SEED, workers=1)


VERIFY_CASES = sorted(CASES)


@pytest.mark.parametrize("case", VERIFY_CASES)
def test_verifier_fails_every_spoof(spoof: Any, case: str) -> None:
    s = spoof(case)
    result = _verify(s)
    assert set(s.faked_segments) & set(result.sample.indexes), "the fixed seed must sample a faked segment"
    assert result.verdict == "fail"
    checks = {c.name: c for c in result.checks}
    assert checks["transcript"].passed
    if case.endswith("-actual"):  # the batches actually used are committed: caught before any re-execution
        assert not checks["data"].passed
    else:
        assert checks["data"].passed
        assert not checks["segments"].passed
        failing = {o.index for o in result.failing_segments}
        assert failing and failing <= set(s.faked_segments)


def test_verifier_passes_the_honest_baseline(tmp_path: Path) -> None:
    from redline.testing.attacks import HONEST

    s = HONEST.run(tmp_path, seed=SEED, steps=STEPS, checkpoint_every=EVERY)
    assert s.faked_segments == [] and s.cost == 1.0
    result = _verify(s)
    assert result.verdict == "pass", [c for c in result.checks if not c.passed]


def test_verifier_refuses_tampered_transcripts(tmp_path: Path) -> None:
    s = ATTACKS["tamper"].run(tmp_path, seed=SEED, steps=20, checkpoint_every=10, target="checkpoint")
    result = _verify(s)
    assert result.verdict == "fail"
    check = next(c for c in result.checks if c.name == "transcript")
    assert not check.passed and check.detail.startswith(str(s.tampered_file))
