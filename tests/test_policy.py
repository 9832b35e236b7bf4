"""Danger-line policies: the built-in packs, refusal of bad policies, comparators, and the EU counting rules."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from scenario_kit import World, commits, make_world, run_start_fields, utc

from redline.errors import InputTooLarge, InvalidPolicy, MalformedInput
from redline.policy import PACKS, Line, Policy, load_pack, load_policy, policy_from_document, resolve_policy
from redline.policy.model import MAX_POLICY_BYTES
from redline.statements import RunProgress, RunStart


def lines_of(policy: Policy) -> dict[str, Line]:
    return {line.id: line for line in policy.lines}


# --- the packs --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PACKS)
def test_every_pack_loads_and_every_line_cites_a_source(name: str) -> None:
    policy = load_pack(name)
    assert policy.id == name and policy.version >= 1
    assert len(policy.source.strip()) >= 20
    assert policy.lines
    for line in policy.lines:
        assert len(line.source.strip()) >= 20, f"{name}/{line.id} cites no source"
    # The published document is a fixed point: it validates to the same policy and digest.
    again = policy_from_document(policy.document())
    assert again == policy and again.digest == policy.digest
    assert resolve_policy(name) == policy


def test_packs_have_distinct_digests() -> None:
    assert len({load_pack(name).digest for name in PACKS}) == len(PACKS)


def test_eu_ai_act_pack() -> None:
    lines = lines_of(load_pack("eu-ai-act"))
    gpai, systemic, modification = lines["gpai-indicator"], lines["systemic-risk"], lines["substantial-modification"]
    assert (gpai.metric, gpai.comparator, gpai.value, gpai.scope) == ("training_compute", ">", 1e23, "model-lineage")
    assert (systemic.metric, systemic.comparator, systemic.value, systemic.scope) == (
        "training_compute", ">", 1e25, "model-lineage")
    assert (systemic.consequence.kind, systemic.consequence.deadline_days) == ("notify", 14)
    assert "51" in systemic.source and "52" in systemic.source
    assert (modification.metric, modification.unit, modification.comparator) == (
        "modification_compute_fraction", "ratio", ">")
    assert modification.value == pytest.approx(1 / 3, abs=1e-15)
    assert "one third" in modification.source


@pytest.mark.parametrize("name", ["ca-sb53", "ny-raise"])
def test_sb53_and_raise_lines_are_over_1e26(name: str) -> None:
    [line] = load_pack(name).lines
    assert (line.metric, line.comparator, line.value, line.scope) == ("training_compute", ">", 1e26, "model-lineage")
    assert line.crossed_by(1.0000001e26) and not line.crossed_by(1e26)


def test_miri_pack() -> None:
    policy = load_pack("miri-draft")
    lines = lines_of(policy)
    assert (lines["monitored-run"].value, lines["monitored-run"].consequence.kind) == (1e22, "notify")
    assert (lines["prohibited-run"].value, lines["prohibited-run"].consequence.kind) == (1e24, "prohibit")
    cluster = lines["covered-cluster"]
    assert (cluster.metric, cluster.unit, cluster.comparator, cluster.value, cluster.scope) == (
        "cluster_h100e", "H100e", ">", 16, "cluster")
    assert policy.parameters.paused_run_flop_limit == 1e22


def test_coordinated_pause_pack_parameters() -> None:
    policy = load_pack("coordinated-pause")
    p = policy.parameters
    assert (p.ack_window_hours, p.usage_report_period_days, p.paused_run_flop_limit, p.review_window_days) == (
        72, 7, 1e22, 30)
    assert lines_of(policy)["pause-line"].consequence.kind == "pause"


def test_unknown_pack() -> None:
    with pytest.raises(InvalidPolicy, match=r"unknown policy pack 'eu-ai-act-2' \(packs: eu-ai-act, "):
        load_pack("eu-ai-act-2")


# --- bad policies -----------------------------------------------------------------------------


def _doc(**line_over: Any) -> dict[str, Any]:
    doc = copy.deepcopy(load_pack("eu-ai-act").document())
    doc["lines"][1].update(line_over)
    return doc


@pytest.mark.parametrize(("change", "pattern"), [
    ({"metric": "flops"}, r"lines\.1: .*field 'metric': unknown metric 'flops' \(known: ai_code_share, "),
    ({"unit": "H100e"}, r"lines\.1: .*field 'unit': metric 'training_compute' is measured in 'FLOP', not 'H100e'"),
    ({"scope": "party"}, r"lines\.1: .*field 'scope': metric 'training_compute' applies to scope\(s\) run, "
                         r"model-lineage, not 'party'"),
    ({"scope": "galaxy"}, r"lines\.1: .*field 'scope': unknown scope 'galaxy'"),
    ({"comparator": "=="}, r"lines\.1\.comparator: Input should be '>', '>=', '<' or '<='"),
    ({"consequence": {"kind": "review"}}, r"lines\.1\.consequence: .*a review consequence needs window_days"),
    ({"consequence": {"kind": "notify"}}, r"lines\.1\.consequence: .*a notify consequence needs deadline_days"),
    ({"consequence": {"kind": "flag", "window_days": 3}}, r"window_days only applies to review, not flag"),
    ({"value": math.nan}, r"lines\.1\.value: .*value must be finite"),
    ({"value": math.inf}, r"lines\.1\.value: .*value must be finite"),
    ({"evidence": "rumoured"}, r"lines\.1\.evidence: Input should be 'declared', 'attested' or 'verified'"),
    ({"source": ""}, r"lines\.1\.source: String should have at least 1 character"),
    ({"id": "Systemic Risk"}, r"lines\.1\.id: String should match pattern"),
    ({"threshold": 1e25}, r"lines\.1\.threshold: Extra inputs are not permitted"),
])
def test_bad_line_is_refused_naming_the_field(change: dict[str, Any], pattern: str) -> None:
    with pytest.raises(InvalidPolicy, match=pattern):
        policy_from_document(_doc(**change))


def test_duplicate_line_ids() -> None:
    doc = _doc(id="gpai-indicator")
    with pytest.raises(InvalidPolicy, match=r"line id 'gpai-indicator' appears twice"):
        policy_from_document(doc)


def test_not_a_mapping_and_no_lines() -> None:
    with pytest.raises(InvalidPolicy, match=r"a policy must be a mapping"):
        policy_from_document([1, 2])
    doc = load_pack("eu-ai-act").document()
    doc["lines"] = []
    with pytest.raises(InvalidPolicy, match=r"lines: List should have at least 1 item"):
        policy_from_document(doc)


def test_bad_parameters() -> None:
    doc = load_pack("eu-ai-act").document()
    doc["parameters"]["ack_window_hours"] = 0
    with pytest.raises(InvalidPolicy, match=r"parameters\.ack_window_hours: Input should be greater than 0"):
        policy_from_document(doc)


@pytest.mark.parametrize("days", [0, 1e-9, 0.5 / 24])
def test_usage_report_periods_under_an_hour_are_refused(days: float) -> None:
    """A vanishing period would make the engine open periods forever (it once hung replay at 1e-9 days)."""
    doc = load_pack("coordinated-pause").document()
    doc["parameters"]["usage_report_period_days"] = days
    with pytest.raises(InvalidPolicy, match=r"parameters\.usage_report_period_days: Input should be greater than "
                                            r"or equal to 0\.0416"):
        policy_from_document(doc)
    doc["parameters"]["usage_report_period_days"] = 1 / 24
    assert policy_from_document(doc).parameters.usage_report_period_days == 1 / 24


def test_policy_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(load_pack("miri-draft").document()), "utf-8")
    assert load_policy(path).digest == load_pack("miri-draft").digest
    assert resolve_policy(str(path)) == load_pack("miri-draft")


def test_bad_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("id: [unclosed\n", "utf-8")
    with pytest.raises(InvalidPolicy, match=r"p\.yaml: not valid YAML"):
        load_policy(path)


def test_bad_policy_file_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(_doc(metric="flops")), "utf-8")
    with pytest.raises(InvalidPolicy, match=rf"{path}: lines\.1: .*unknown metric 'flops'"):
        load_policy(path)


def test_oversized_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    doc = load_pack("eu-ai-act").document()
    doc["source"] = "x" * 1000
    text = yaml.safe_dump(doc) + "".join(f"# padding {i:06d} {'.' * 60}\n" for i in range(1000))
    path.write_text(text, "utf-8")
    assert path.stat().st_size > MAX_POLICY_BYTES
    with pytest.raises(InputTooLarge, match=rf"big\.yaml is {path.stat().st_size} bytes, over the policy limit "
                                            rf"of {MAX_POLICY_BYTES}") as info:
        load_policy(path)
    assert isinstance(info.value, MalformedInput)


# --- comparators --------------------------------------------------------------------------------

_T = 1e25
_ABOVE, _BELOW = math.nextafter(_T, math.inf), math.nextafter(_T, -math.inf)


@pytest.mark.parametrize(("comparator", "below", "at", "above"), [
    (">", False, False, True),
    (">=", False, True, True),
    ("<", True, False, False),
    ("<=", True, True, False),
])
def test_crossed_by_at_and_around_the_threshold(comparator: str, below: bool, at: bool, above: bool) -> None:
    line = load_pack("eu-ai-act").line("systemic-risk").model_copy(update={"comparator": comparator})
    assert [line.crossed_by(v) for v in (_BELOW, _T, _ABOVE)] == [below, at, above]
    assert line.crossed_by(0.0) is below and line.crossed_by(1e35) is above


def test_unknown_line() -> None:
    with pytest.raises(InvalidPolicy, match=r"policy 'eu-ai-act' has no line 'nope'"):
        load_pack("eu-ai-act").line("nope")


# --- the EU counting rules in the engine -------------------------------------------------------


@pytest.fixture()
def eu(tmp_path: Path) -> World:
    """lab-a and lab-b under the EU AI Act pack."""
    world = make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab")])
    world.publish("eu-ai-act")
    return world


def crossings(world: World, subject: str) -> dict[str, float]:
    """Line id → value of each crossing of ``subject``."""
    return {c.line: c.value for c in world.state.crossings if c.subject == subject}


def test_fine_tune_compute_is_cumulative_with_its_base(eu: World) -> None:
    eu.sub("lab-a", RunStart, **run_start_fields("base", "Base-1", 8e24))
    assert crossings(eu, "Base-1") == {"gpai-indicator": 8e24}
    # lab-b fine-tunes lab-a's model; its own claim of the base's compute is overridden by the log.
    ft = eu.sub("lab-b", RunStart, **run_start_fields("ft", "Tuned-1", 3e24, base_model="Base-1",
                                                        base_model_flop=1e20))
    assert crossings(eu, "Tuned-1") == {"gpai-indicator": 1.1e25, "systemic-risk": 1.1e25,
                                        "substantial-modification": 0.375}
    systemic = next(c for c in eu.state.crossings if c.line == "systemic-risk")
    assert (systemic.party, systemic.index, systemic.consequence) == ("lab-b", ft.index, "notify")
    [notice] = eu.state.obligations
    assert (notice.kind, notice.party, notice.due_ms, notice.met_index) == (
        "notification", "lab-b", ft.time_ms + 14 * 86_400_000, ft.index)  # its own declaration notifies
    assert eu.state.violations == []


def test_a_small_fine_tune_is_not_a_substantial_modification(eu: World) -> None:
    eu.sub("lab-a", RunStart, **run_start_fields("base", "Base-1", 8e24))
    eu.sub("lab-b", RunStart, **run_start_fields("ft", "Tuned-1", 1e24, base_model="Base-1"))
    assert crossings(eu, "Tuned-1") == {"gpai-indicator": 1e24 + 8e24}


@pytest.mark.parametrize(("base", "own"), [(9e24, 3e24), (6e24, 2e24), (3e24, 1e24)])
def test_a_fine_tune_of_exactly_one_third_is_not_more_than_one_third(eu: World, base: float, own: float) -> None:
    eu.sub("lab-a", RunStart, **run_start_fields("base", "Base-1", base))
    eu.sub("lab-b", RunStart, **run_start_fields("ft", "Tuned-1", own, base_model="Base-1"))
    assert "substantial-modification" not in crossings(eu, "Tuned-1")
    eu.sub("lab-b", RunProgress, run_id="ft", step=1, flop_so_far=math.nextafter(own, math.inf) * (1 + 1e-9),
           commitments=commits(run="ft"), spec_digest=None, as_of=utc(eu.clock()))
    assert crossings(eu, "Tuned-1")["substantial-modification"] > 1 / 3


def test_base_not_on_the_log_counts_the_declared_base_compute(eu: World) -> None:
    eu.sub("lab-b", RunStart, **run_start_fields("ft", "Tuned-1", 4e24, base_model="Open-Weights-9",
                                                  base_model_flop=7e24))
    assert crossings(eu, "Tuned-1") == {"gpai-indicator": 1.1e25, "systemic-risk": 1.1e25,
                                        "substantial-modification": 4e24 / 7e24}


def test_lineage_over_two_generations(eu: World) -> None:
    eu.sub("lab-a", RunStart, **run_start_fields("r1", "Gen-1", 4e24))
    eu.sub("lab-a", RunStart, **run_start_fields("r2", "Gen-2", 4e24, base_model="Gen-1"))
    eu.sub("lab-b", RunStart, **run_start_fields("r3", "Gen-3", 3e24, base_model="Gen-2"))
    assert crossings(eu, "Gen-3") == {"gpai-indicator": 1.1e25, "systemic-risk": 1.1e25,
                                      "substantial-modification": 3e24 / 8e24}
    assert crossings(eu, "Gen-2") == {"gpai-indicator": 8e24, "substantial-modification": 1.0}


def test_a_cycle_of_base_models_is_counted_once(eu: World) -> None:
    """Model X names Y as its base before Y exists; then Y names X: each run's compute counts once."""
    eu.sub("lab-a", RunStart, **run_start_fields("rx", "X", 1e24, base_model="Y"))
    eu.sub("lab-b", RunStart, **run_start_fields("ry", "Y", 1e24, base_model="X"))
    assert crossings(eu, "Y") == {"gpai-indicator": 2e24, "substantial-modification": 1.0}
    assert "systemic-risk" not in crossings(eu, "Y")
