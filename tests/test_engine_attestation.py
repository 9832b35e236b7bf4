"""Finding the runs nobody declared (issue #18): providers attest their customers' chip-hours per period, and the
engine cross-checks them against the runs the customers declared.

Each test is one story on a real log with a hand-set clock: a hidden run caught by attested chip-hours, an honest
lab inside the utilisation band, a provider that misses its attestation, a tagged but undeclared run, hidden
training during a pause, two providers attesting the same cluster, late declarations that explain a period, the
arithmetic shown in the state, and every refusal with the log left unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from scenario_kit import (
    DAY_MS,
    HOUR_MS,
    T0_MS,
    World,
    commitment_fields,
    inventory_fields,
    make_world,
    progress_fields,
    run_start_fields,
    utc,
)

from redline.engine import replay
from redline.errors import InvalidStatement, NotAuthorized
from redline.policy import load_pack
from redline.statements import (
    AttestedUsage,
    ChipCount,
    Cluster,
    Commitment,
    ComputeAttestation,
    ComputeInventory,
    RunProgress,
    RunStart,
)

PAUSE = load_pack("coordinated-pause")
PERIOD = 7 * DAY_MS
START = T0_MS - T0_MS % PERIOD + PERIOD  # the first whole period after the world begins
END = START + PERIOD
H100_PEAK = 989e12
HOURS = PERIOD / HOUR_MS  # 168


def world_with_providers(tmp_path: Path) -> World:
    world = make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab"), ("lab-c", "lab"), ("cloud-1", "provider"),
                                  ("cloud-2", "provider"), ("gov", "regulator")])
    world.publish(PAUSE)
    for lab in ("lab-a", "lab-b", "lab-c"):  # each declares the clusters its providers run for it
        world.sub(lab, ComputeInventory, as_of=utc(world.clock()), clusters=[
            Cluster(cluster_id=cid, site="rented", chips=[ChipCount(chip_model="H100 SXM", count=100_000)])
            for cid in ("c1", "shared", "own")])
    return world


def usage(cluster: str, chips: int, utilisation: float = 1.0, model: str = "H100 SXM") -> AttestedUsage:
    return AttestedUsage(cluster_id=cluster, chip_model=model, chip_count=chips, chip_hours=chips * HOURS * utilisation)


def attest(world: World, provider: str, customer: str, *uses: AttestedUsage, start: int = START,
           run_ids: tuple[str, ...] = (), final: bool = False) -> int:
    return world.sub(provider, ComputeAttestation, customer=customer, period_start=utc(start),
                     period_end=utc(start + PERIOD), usage=list(uses), run_ids=list(run_ids), final=final).index


def after_period(world: World, start: int = START) -> None:
    world.clock.set(max(world.clock(), start + PERIOD + HOUR_MS))


def refused(world: World, data: bytes, error: type[Exception], match: str) -> None:
    before = world.snapshot()
    with pytest.raises(error, match=match):
        world.registry.submit(data)
    assert world.snapshot() == before


def violations(world: World) -> list[tuple[str, str, list[int]]]:
    return [(v.party, v.kind, v.evidence) for v in world.state.violations]


def key(customer: str, start: int = START) -> str:
    return f"{customer}@{start}"


def declare_run(world: World, lab: str, run_id: str, flop: float, *, at: int, started: int = START) -> list[int]:
    """A run started at ``started`` that declares ``flop`` reached at ``at``."""
    now = world.clock()
    world.clock.set(max(now, started + HOUR_MS))
    first = world.sub(lab, RunStart, **run_start_fields(run_id, f"{lab}-{run_id}", flop, when=utc(started))).index
    world.clock.set(max(world.clock(), at + HOUR_MS))
    second = world.sub(lab, RunProgress, **progress_fields(run_id, 10, flop, when=utc(at))).index
    return [first, second]


def test_a_hidden_run_is_caught_by_attested_chip_hours(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    after_period(world)
    entry = attest(world, "cloud-1", "lab-a", usage("c1", 100_000, utilisation=0.9))
    finding = world.state.findings[key("lab-a")]
    chip_hours = 100_000 * HOURS * 0.9
    low = chip_hours * 3600 * H100_PEAK * 0.2
    assert finding["chip_hours"] == pytest.approx(chip_hours)
    assert finding["capacity_low_flop"] == pytest.approx(low)
    assert finding["capacity_high_flop"] == pytest.approx(chip_hours * 3600 * H100_PEAK * 0.6)
    assert finding["declared_flop"] == 0 and finding["unexplained_flop"] == pytest.approx(low)
    assert finding["evidence"] == [entry] and finding["minimum_flop"] == 1e25
    assert re.search(r"15,120,000 chip-hours of H100 SXM \(c1\) × 9\.89e\+14 FLOP/s × 3600 s × utilisation "
                     r"\[0\.2, 0\.6\] = 1\.08e\+25\.\.3\.23e\+25 FLOP; declared runs explain 0 FLOP",
                     finding["arithmetic"])
    assert violations(world) == []  # a finding, not a violation: idle capacity and inference are possible


def test_an_honest_lab_inside_the_band_raises_nothing(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    chips, utilisation = 100_000, 0.4
    flop = chips * HOURS * 3600 * H100_PEAK * utilisation
    declare_run(world, "lab-b", "r1", flop, at=END - HOUR_MS)
    after_period(world)
    attest(world, "cloud-1", "lab-b", usage("c1", chips))
    assert world.state.findings == {} and violations(world) == []


def test_a_declaration_made_after_the_period_explains_it(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    chips = 100_000
    after_period(world)
    attest(world, "cloud-1", "lab-b", usage("c1", chips))
    assert key("lab-b") in world.state.findings
    # the run ran all period at 40 % and declares its progress a week later: linear between its points
    flop = chips * HOURS * 3600 * H100_PEAK * 0.4 * 2
    declare_run(world, "lab-b", "r1", flop, at=END + PERIOD, started=START)
    assert world.state.findings == {}
    assert any(e.kind == "finding" and "now explained" in e.text for e in world.state.timeline)


def test_a_provider_that_misses_its_attestation_is_in_violation(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    after_period(world)
    first = attest(world, "cloud-1", "lab-a", usage("c1", 10))
    # it owes the next period within the grace of 7 days after that period's end
    world.clock.set(END + PERIOD + 7 * DAY_MS + HOUR_MS)
    late = world.sub("lab-a", ComputeInventory, **inventory_fields(10, when=utc(world.clock()))).index
    assert ("cloud-1", "missed-attestation", [first, late]) in violations(world)
    # a final attestation ends the obligation
    world2 = world_with_providers(tmp_path / "w2")
    after_period(world2)
    attest(world2, "cloud-1", "lab-a", usage("c1", 10), final=True)
    world2.clock.set(END + 3 * PERIOD)
    world2.sub("lab-a", ComputeInventory, **inventory_fields(10, when=utc(world2.clock())))
    assert violations(world2) == []


def test_a_tagged_but_undeclared_run_is_a_violation(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    declare_run(world, "lab-a", "known", 1e20, at=START + DAY_MS)
    after_period(world)
    entry = attest(world, "cloud-1", "lab-a", usage("c1", 10), run_ids=("known", "secret"))
    assert violations(world) == [("lab-a", "undeclared-run", [entry])]
    assert "run 'secret' of lab-a" in world.state.violations[0].detail


def test_hidden_training_during_a_pause_is_a_violation(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    for lab in ("lab-a", "lab-c"):  # lab-b made no commitment
        world.sub(lab, Commitment, **commitment_fields(PAUSE, 2))
    world.clock.set(START - DAY_MS)
    trigger = world.sub("lab-c", RunStart, **run_start_fields("big", "C-big", 3e25, when=utc(world.clock()))).index
    assert world.state.active_pause is not None
    after_period(world)
    # lab-a declares nothing; its provider saw 1,000 H100 busy all week: far beyond the paused limit of 1e22
    entry = attest(world, "cloud-1", "lab-a", usage("c1", 1_000))
    assert ("lab-a", "unexplained-compute-during-pause", [trigger, entry]) in violations(world)
    assert key("lab-a") not in world.state.findings  # under the 1e25 monitoring line: no finding outside a pause
    # a lab not bound by the pause is not in violation for the same use
    attest(world, "cloud-1", "lab-b", usage("c1", 1_000))
    assert not any(p == "lab-b" for p, _, _ in violations(world))


def test_two_providers_attesting_the_same_cluster_are_not_double_counted(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    after_period(world)
    one = attest(world, "cloud-1", "lab-a", usage("shared", 100_000, 0.9))
    two = attest(world, "cloud-2", "lab-a", usage("shared", 100_000, 0.9))
    rec = world.state.attested[key("lab-a")]
    assert list(rec["usage"]) == ["shared/H100 SXM"] and rec["entries"] == [one, two]
    finding = world.state.findings[key("lab-a")]
    assert finding["chip_hours"] == pytest.approx(100_000 * HOURS * 0.9)  # once, not twice
    assert finding["evidence"] == [one, two]
    # a different cluster (here the lab's own account of its own) adds up
    attest(world, "lab-a", "lab-a", usage("own", 10_000, 0.9))
    assert world.state.findings[key("lab-a")]["chip_hours"] == pytest.approx(110_000 * HOURS * 0.9)


def test_attested_chips_feed_the_holdings_lines_and_a_cluster_must_be_registered(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    after_period(world)
    entry = attest(world, "cloud-1", "lab-a", usage("c9", 1_000, 0.5))
    crossing = next(c for c in world.state.crossings if c.subject == "lab-a/c9")
    assert (crossing.line, crossing.value, crossing.evidence, crossing.index) == ("covered-cluster", 1000.0,
                                                                                  "attested", entry)
    # c9 is in no inventory of lab-a: a covered cluster run for it that it never declared
    assert violations(world) == [("lab-a", "unregistered-cluster", [entry])]
    assert "cloud-1 ran cluster c9 (1,000 H100e) for lab-a" in world.state.violations[0].detail
    # a small cluster under every cluster line needs no registration, and each cluster is reported once
    attest(world, "cloud-2", "lab-a", usage("c9", 1_000, 0.5), usage("tiny", 8, 1.0))
    assert [v.kind for v in world.state.violations] == ["unregistered-cluster"]


def test_the_arithmetic_is_in_the_json_view_and_replay_agrees(tmp_path: Path) -> None:
    from redline.engine.view import state_json

    world = world_with_providers(tmp_path)
    after_period(world)
    attest(world, "cloud-1", "lab-a", usage("c1", 100_000, 0.9))
    view: dict[str, Any] = state_json(world.state)
    finding = view["findings"][key("lab-a")]
    assert "chip-hours" in finding["arithmetic"] and finding["period_start_at"].endswith("Z")
    assert replay(world.entries()).digest() == world.state.digest()


def test_refusals(tmp_path: Path) -> None:
    world = world_with_providers(tmp_path)
    after_period(world)

    def envelope(party: str, **fields: Any) -> bytes:
        base = {"customer": "lab-a", "period_start": utc(START), "period_end": utc(END), "usage": [usage("c1", 10)],
                "run_ids": [], "final": False}
        return world.envelope(party, ComputeAttestation, **{**base, **fields})

    refused(world, envelope("cloud-1", period_start=utc(START + HOUR_MS), period_end=utc(END + HOUR_MS)),
            InvalidStatement, "a period is 7 days from a multiple of 7 days")
    refused(world, envelope("cloud-1", period_start=utc(END), period_end=utc(END + PERIOD)), InvalidStatement,
            "has not come yet")
    refused(world, envelope("lab-b"), NotAuthorized, "a lab attests only its own clusters")
    refused(world, envelope("gov"), NotAuthorized, "role 'regulator'")
    refused(world, envelope("cloud-1", customer="cloud-2"), InvalidStatement, "'cloud-2' is not an admitted lab")
    refused(world, envelope("cloud-1", usage=[AttestedUsage(cluster_id="c1", chip_model="H100 SXM", chip_count=10,
                                                            chip_hours=10 * HOURS + 1)]),
            InvalidStatement, "more than 168 hours each")
    world.registry.submit(envelope("cloud-1"))
    refused(world, envelope("cloud-1"), InvalidStatement, "cloud-1 already attested lab-a's compute")
    world.registry.submit(envelope("lab-a"))  # the lab's own account of the same period is its own


def test_the_state_view_shows_the_finding_with_its_arithmetic(tmp_path: Path) -> None:
    from rich.console import Console

    from redline.cli.state_view import render_state

    world = world_with_providers(tmp_path)
    after_period(world)
    attest(world, "cloud-1", "lab-a", usage("c1", 100_000, 0.9))
    console = Console(width=300, record=True)
    render_state(world.state, console)
    text = console.export_text()
    assert "unexplained compute (findings)" in text and "15,120,000 chip-hours of H100 SXM" in text
    assert not re.search(r"\b\d{13}\b", text)
