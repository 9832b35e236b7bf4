"""6·N·D, the hardware estimate and the EU counting rules: known answers and boundaries."""

from __future__ import annotations

import itertools

import pytest

from redline.compute.estimates import DEFAULT_UTILIZATION, hardware_estimate, hardware_flop, six_nd
from redline.compute.eu import (
    TOLERANCE,
    LineageModel,
    count_activities,
    cross_check,
    cumulative_compute,
    is_substantial_modification,
    modification_fraction,
    within_tolerance,
)
from redline.errors import MalformedInput


def test_six_nd_known_answers() -> None:
    assert six_nd(7e9, 2e12) == 8.4e22  # Llama 2-7B in Epoch's notes: 6 × 7B × 2T
    assert six_nd(405e9, 15.6e12) == pytest.approx(3.79e25, rel=1e-3)  # Llama 3.1-405B
    assert six_nd(1, 1) == 6.0


def test_hardware_known_answers() -> None:
    assert DEFAULT_UTILIZATION == 0.4
    flop = hardware_flop("H100 SXM", 1000, 24)
    assert flop == pytest.approx(1000 * 24 * 3600 * 989e12 * 0.4) == pytest.approx(3.418e22, rel=1e-4)
    est = hardware_estimate("H100 SXM", 1000, 24)
    assert est.h100e == 1000 and est.h100e_hours == 24_000
    assert est.peak_flop == pytest.approx(flop / 0.4)
    a100 = hardware_estimate("A100", 2048, 1000, utilization=0.3)
    assert a100.flop == pytest.approx(2048 * 1000 * 3600 * 312e12 * 0.3)
    assert a100.h100e == pytest.approx(2048 * 312 / 989)
    assert a100.to_json()["bf16_dense_tflops"] == 312


@pytest.mark.parametrize(("call", "needle"), [
    (lambda: six_nd(0, 1), "params"),
    (lambda: six_nd(1, float("nan")), "tokens"),
    (lambda: six_nd(True, 1), "params"),
    (lambda: hardware_flop("H100 SXM", 0, 1), "chip count"),
    (lambda: hardware_flop("H100 SXM", 8, -1), "hours"),
    (lambda: hardware_flop("H100 SXM", 8, 1, utilization=1.5), "utilization"),
    (lambda: hardware_flop("H1000", 8, 1), "unknown chip 'H1000'"),
])
def test_bad_estimate_inputs(call, needle: str) -> None:
    with pytest.raises(MalformedInput, match=needle):
        call()


def test_cross_check_flags_31_not_29_percent() -> None:
    assert TOLERANCE == 0.3
    assert cross_check(counted=1.31e24, six_nd=1e24).disagree
    assert not cross_check(counted=1.29e24, six_nd=1e24).disagree
    for a, b in itertools.permutations([1.0e24, 1.31e24]):  # symmetric: the larger over the smaller
        assert cross_check(six_nd=a, hardware=b).disagree
    for a, b in itertools.permutations([1.0e24, 1.29e24]):
        assert not cross_check(six_nd=a, hardware=b).disagree
    assert not cross_check(counted=1.3e24, six_nd=1e24).disagree  # exactly 30% is within


def test_cross_check_three_estimates() -> None:
    check = cross_check(counted=1.0e24, six_nd=1.2e24, hardware=1.4e24)
    assert check.ratios[("counted", "six_nd")] == pytest.approx(1 / 1.2)
    assert check.ratios[("counted", "hardware")] == pytest.approx(1 / 1.4)
    assert check.disagreeing == (("counted", "hardware"),)  # 1.4 > 1.3; the others within
    assert check.disagree and check.compared == 3
    assert check.to_json()["disagreeing"] == ["counted/hardware"]
    lone = cross_check(six_nd=5e23)
    assert not lone.disagree and lone.ratios == {} and lone.compared == 1
    assert not cross_check().disagree
    with pytest.raises(MalformedInput, match="hardware"):
        cross_check(hardware=-1.0)


def test_within_tolerance() -> None:
    assert within_tolerance(1.3e25, 1e25) and within_tolerance(0.7e25, 1e25)
    assert not within_tolerance(1.31e25, 1e25) and not within_tolerance(0.69e25, 1e25)


def test_cumulative_compute_over_a_lineage() -> None:
    models = [LineageModel("base", 8e24), LineageModel("sft", 5e23, ("base",)), LineageModel("rl", 1e24, ("sft",)),
              LineageModel("other", 2e24), LineageModel("merge", 1e22, ("rl", "other"))]
    assert cumulative_compute("base", models) == 8e24
    assert cumulative_compute("rl", models) == pytest.approx(9.5e24)
    assert cumulative_compute("merge", models) == pytest.approx(9.5e24 + 2e24 + 1e22)
    # the fine-tune chain crosses 1e25 only with the merge: the lineage rule, not the run, decides
    assert cumulative_compute("merge", models) > 1e25 > cumulative_compute("rl", models)
    diamond = [LineageModel("b", 1e24), LineageModel("x", 1e23, ("b",)), LineageModel("y", 1e23, ("b",)),
               LineageModel("m", 0, ("x", "y"))]
    assert cumulative_compute("m", diamond) == pytest.approx(1.2e24)  # the shared base counted once
    with pytest.raises(MalformedInput, match="'ghost'"):
        cumulative_compute("x", [LineageModel("x", 1.0, ("ghost",))])
    with pytest.raises(MalformedInput, match="cycle"):
        cumulative_compute("a", [LineageModel("a", 1.0, ("b",)), LineageModel("b", 1.0, ("a",))])


def test_one_third_rule() -> None:
    assert modification_fraction(1e24, 3e24) == pytest.approx(1 / 3)
    assert not is_substantial_modification(1e24, 3e24)  # exactly a third is not more than a third
    assert is_substantial_modification(1.01e24, 3e24)
    assert not is_substantial_modification(0.99e24, 3e24)
    assert is_substantial_modification(1, 2)
    with pytest.raises(MalformedInput, match="original"):
        modification_fraction(1.0, 0.0)


def test_what_counts() -> None:
    result = count_activities({"pre-training": 1e25, "synthetic-data": 1e23, "post-training": 2e23,
                               "evaluation": 5e22, "exploratory-research": 1e24})
    assert result.counted == pytest.approx(1.03e25) and result.excluded == pytest.approx(1.05e24)
    with pytest.raises(MalformedInput, match="unknown activity 'vibes'"):
        count_activities({"vibes": 1.0})


def test_a_lineage_thousands_deep_is_counted_without_recursion() -> None:
    from redline.compute.eu import LineageModel, cumulative_compute

    depth = 20_000  # far beyond Python's recursion limit: a lab cannot break the count with a long chain
    models = {f"m{i}": LineageModel(f"m{i}", 1.0, (f"m{i + 1}",) if i < depth else ()) for i in range(depth + 1)}
    assert cumulative_compute("m0", models) == depth + 1
    models[f"m{depth}"] = LineageModel(f"m{depth}", 1.0, ("m5",))
    with pytest.raises(MalformedInput, match=rf"lineage cycle: m0 -> .* -> m{depth} -> m5$"):
        cumulative_compute("m0", models)
