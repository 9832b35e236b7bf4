"""A pause no party can escape: the policy set, commitments that hold, every route to the quorum, crossings
during a pause, the resume quorum as a policy parameter, reviews scoped by party, and readable times.

Each test is one story of issue #11 on a real log with a hand-set clock, asserting the exact state: the entry
a pause starts at, violations with their evidence entries, refusals with their error (and the CLI's exit code)
and the log left unchanged by a refusal.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from scenario_kit import (
    DAY_MS,
    H64,
    HOUR_MS,
    World,
    commitment_fields,
    inventory_fields,
    labs_world,
    publication_fields,
    run_start_fields,
    utc,
)

from redline.crypto.keys import SigningKey
from redline.engine import Entry, release_obstacles, replay
from redline.engine.effects import iso
from redline.errors import InvalidStatement, NotAuthorized
from redline.policy import Policy, load_pack, policy_from_document
from redline.statements import (
    Admission,
    Commitment,
    ComputeInventory,
    ComputeShareQuorum,
    Indicator,
    KeyRevocation,
    PauseAcknowledgement,
    PolicyPublication,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewSubmission,
    RunStart,
)

PAUSE = load_pack("coordinated-pause")
LABS = ["lab-a", "lab-b", "lab-c"]


def variant(base: Policy, *, id: str | None = None, version: int | None = None, **params: Any) -> Policy:
    """``base`` with another id/version and some parameters changed (a new digest)."""
    doc = base.document()
    doc["parameters"].update(params)
    if id is not None:
        doc["id"] = id
    if version is not None:
        doc["version"] = version
    return policy_from_document(doc)


def refused(world: World, data: bytes, error: type[Exception], match: str) -> None:
    """``data`` is refused with ``error`` matching ``match``, and nothing changes."""
    before = world.snapshot()
    with pytest.raises(error, match=match):
        world.registry.submit(data)
    assert world.snapshot() == before


def violations(world: World) -> list[tuple[str, str, list[int]]]:
    return [(v.party, v.kind, v.evidence) for v in world.state.violations]


def pause_world(tmp_path: Path, policy: Policy = PAUSE, *, pauses: tuple[str, ...] = ("training", "releases"),
                threshold: int = 3) -> World:
    """Labs with inventories, ``policy`` published (entry 6) and every lab committed to it (entries 10..12)."""
    world = labs_world(tmp_path, policy, {"lab-a": 1000, "lab-b": 500, "lab-c": 250})
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(policy, threshold, pauses=pauses))
    return world


def pause_crossing(world: World):
    """The latest crossing of a pause line."""
    return next(c for c in reversed(world.state.crossings) if c.consequence == "pause")


def cross_pause_line(world: World, lab: str = "lab-a", run_id: str = "big", flop: float = 3e25) -> int:
    return world.sub(lab, RunStart, **run_start_fields(run_id, f"{lab}-{run_id}", flop,
                                                       when=utc(world.clock()))).index


# --- 1. a policy set ------------------------------------------------------------------------


def test_a_second_policy_adds_to_the_set_and_the_pause_keeps_its_own_parameters(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    trigger = cross_pause_line(world)
    assert world.state.active_pause is not None and world.state.active_pause.started_index == trigger
    # A second pack, published during the pause with the default paused limit of 0, supersedes nothing.
    eu = load_pack("eu-ai-act")
    assert eu.parameters.paused_run_flop_limit == 0
    pub = world.publish(eu).index
    st = world.state
    assert st.in_force == [PAUSE.digest, eu.digest]
    assert st.policies[PAUSE.digest]["status"] == "in-force" and st.policies[eu.digest]["in_force_index"] == pub
    # A small run during the pause is under the pause's own limit (1e22), not the new pack's 0.
    world.clock.advance(hours=1)
    world.sub("lab-b", RunStart, **run_start_fields("small", "B-small", 1e18, when=utc(world.clock())))
    assert violations(world) == []
    # Commitments to the first policy still count: the pause binds all three labs.
    assert world.state.active_pause.bound == LABS


def test_effective_from_is_honoured(tmp_path: Path) -> None:
    world = labs_world(tmp_path, None, {"lab-a": 1000})
    start = world.clock()
    pub = world.publish(PAUSE, effective_from=utc(start + 2 * DAY_MS)).index
    st = world.state
    assert st.policies[PAUSE.digest]["status"] == "scheduled" and st.in_force == []
    # Before it is in force its lines judge nothing.
    early = world.sub("lab-a", RunStart, **run_start_fields("r1", "A-1", 2e24, when=utc(world.clock()))).index
    assert [c.line for c in world.state.crossings] == []
    world.clock.advance(days=2, ms=1)
    later = world.sub("lab-a", RunStart, **run_start_fields("r2", "A-2", 2e24, when=utc(world.clock()))).index
    st = world.state
    assert st.in_force == [PAUSE.digest]
    assert st.policies[PAUSE.digest]["in_force_index"] == later and st.policies[PAUSE.digest]["index"] == pub
    assert [(c.line, c.subject, c.index) for c in st.crossings] == [("pre-release-review", "A-2", later)]
    assert early < later


def test_supersession_is_explicit_and_checked(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    v2 = variant(PAUSE, version=2, paused_run_flop_limit=1e20)
    # Superseding an unknown policy, or publishing the same document twice, is refused.
    refused(world, world.envelope("coordinator", PolicyPublication, **_pub(v2, world, supersedes=["ee" * 32])),
            InvalidStatement, "field 'supersedes': no published policy has digest " + "ee" * 32)
    refused(world, world.envelope("coordinator", PolicyPublication, **_pub(PAUSE, world)),
            InvalidStatement, f"policy {PAUSE.digest} was already published at entry 6")
    done = world.publish(v2, supersedes=[PAUSE.digest]).index
    st = world.state
    assert st.in_force == [v2.digest]
    assert (st.policies[PAUSE.digest]["status"], st.policies[PAUSE.digest]["superseded_index"]) == ("superseded", done)
    # A commitment to the superseded policy is refused; its old commitments no longer count for new pauses.
    refused(world, world.envelope("lab-a", Commitment, **commitment_fields(PAUSE)), InvalidStatement,
            f"policy {PAUSE.digest} was superseded at entry {done}")
    trigger = cross_pause_line(world)
    assert world.state.active_pause is None
    assert pause_crossing(world).note == "no pause: the commitments' quorum is not met"
    # Once the labs commit to the successor, the waiting crossing starts the pause at the entry that met it.
    for lab in LABS:
        last = world.sub(lab, Commitment, **commitment_fields(v2)).index
    pause = world.state.active_pause
    assert pause is not None and (pause.trigger_index, pause.started_index, pause.policy) == (trigger, last,
                                                                                              v2.digest)


def _pub(policy: Policy, world: World, supersedes: list[str] | None = None) -> dict[str, Any]:
    return publication_fields(policy, when=utc(world.clock()), supersedes=supersedes or [])


# --- 2. commitments hold --------------------------------------------------------------------


def test_a_bound_lab_cannot_narrow_or_shorten_its_commitment_during_the_pause(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    trigger = cross_pause_line(world)
    refused(world, world.envelope("lab-b", Commitment, **commitment_fields(PAUSE, pauses=("releases",))),
            InvalidStatement, r"field 'pauses': lab-b is bound by pause \d+ .* cannot drop training")
    refused(world, world.envelope("lab-b", Commitment, **commitment_fields(PAUSE, days=100)),
            InvalidStatement, "field 'expires_at': lab-b is bound by pause")
    # A commitment to another policy that leaves training out changes nothing about the pause.
    eu = load_pack("eu-ai-act")
    world.publish(eu)
    world.sub("lab-b", Commitment, **commitment_fields(eu, pauses=("releases",)))
    world.clock.advance(hours=1)
    run = world.sub("lab-b", RunStart, **run_start_fields("escape", "B-escape", 9e25, when=utc(world.clock()))).index
    assert ("lab-b", "training-during-pause", [trigger, run]) in violations(world)
    # Widening is allowed and widens what the lab is held to.
    world.sub("lab-c", Commitment, **commitment_fields(PAUSE, pauses=("training", "releases", "deployment-scaling"),
                                                       days=400))
    assert world.state.active_pause.scopes["lab-c"] == ["deployment-scaling", "releases", "training"]


def test_an_expired_commitment_is_refused(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000})
    fields = commitment_fields(PAUSE)
    fields["expires_at"] = utc(world.clock()) - timedelta(days=1)
    refused(world, world.envelope("lab-a", Commitment, **fields), InvalidStatement,
            "field 'expires_at': .* is not after the log's time")


# --- 3. every route to the quorum; crossings during a pause --------------------------------


def test_a_new_inventory_that_meets_a_compute_share_quorum_starts_the_waiting_pause(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500, "lab-c": 3000})
    share = {**commitment_fields(PAUSE), "quorum": ComputeShareQuorum(kind="compute-share", threshold=0.5)}
    world.sub("lab-a", Commitment, **share)
    world.sub("lab-b", Commitment, **share)
    trigger = cross_pause_line(world)
    assert world.state.active_pause is None  # 1500 of 4500 H100e committed
    inv = world.sub("lab-a", ComputeInventory, **inventory_fields(4000, when=utc(world.clock()))).index
    pause = world.state.active_pause
    assert pause is not None
    assert (pause.trigger_index, pause.started_index, pause.bound) == (trigger, inv, ["lab-a", "lab-b"])
    assert pause_crossing(world).note == (f"pause {trigger} started at entry {inv}, when the quorum of "
                                          "commitments to its policy was met")


def test_a_readmitted_party_can_complete_the_quorum(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500, "lab-c": 250})
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(PAUSE, 3))
    world.sub("coordinator", KeyRevocation, revoked_party="lab-c",
              key_fingerprint=world.keys["lab-c"].verifier().fingerprint, reason="key leaked")
    trigger = cross_pause_line(world)
    assert world.state.active_pause is None
    world.keys["lab-c"] = SigningKey("lab-c", bytes(range(32)))  # its new key
    readmitted = world.sub("coordinator", Admission, admitted="lab-c", role="lab", display_name="LAB-C",
                           jurisdiction="EU", verifier_key=world.keys["lab-c"].verifier().to_string()).index
    pause = world.state.active_pause
    assert pause is not None and (pause.trigger_index, pause.started_index) == (trigger, readmitted)
    assert pause.bound == LABS


def test_a_crossing_during_a_pause_joins_it_and_ends_with_it(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    first = cross_pause_line(world)
    world.clock.advance(hours=1)
    second = world.sub("gov", Indicator, name="time-horizon-50", subject="lab-b-model", value=9.0, unit="hours",
                       interval_low=None, interval_high=None, window_start=utc(world.clock() - DAY_MS),
                       window_end=utc(world.clock()), method="metr-horizon", method_version="1",
                       rule_version=None, evidence_digest={"sha256": H64}).index
    pause = world.state.active_pause
    assert pause.triggers == [first, second] and world.state.pending_pause == []
    assert pause_crossing(world).note == f"joins pause {first}"
    world.sub("lab-a", ResumeProposal, proposal_id="p1", reason="safety case accepted")
    world.sub("lab-a", ResumeApproval, proposal_id="p1")
    ended = world.sub("lab-b", ResumeApproval, proposal_id="p1").index
    st = world.state
    assert st.status == "resumed" and st.pauses[-1].ended_index == ended and st.pending_pause == []
    # The next commitment does not start a new pause from the crossing the resume already covered.
    world.sub("lab-a", Commitment, **commitment_fields(PAUSE, 2, days=400))
    assert len(world.state.pauses) == 1 and world.state.status == "resumed"


def test_a_crossing_of_another_policy_during_a_pause_binds_its_own_committed_parties(tmp_path: Path) -> None:
    other = variant(PAUSE, id="second-pause")
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500, "lab-c": 250})
    world.publish(other)
    for lab in ("lab-a", "lab-b"):
        world.sub(lab, Commitment, **commitment_fields(PAUSE, 2))
    world.sub("lab-c", Commitment, **commitment_fields(other, 1))
    trigger = cross_pause_line(world)  # crosses both policies' pause lines
    pause = world.state.active_pause
    assert pause.bound == LABS and pause.triggers == [trigger] and len(pause.trigger_positions) == 2
    assert pause.joined == {"lab-a": trigger, "lab-b": trigger, "lab-c": trigger}


# --- 6. resume quorum as a policy parameter; reviews scoped by party ------------------------


def test_the_resume_quorum_is_a_policy_parameter(tmp_path: Path) -> None:
    policy = variant(PAUSE, resume_quorum={"kind": "count", "more_than": 0.7, "also_required": ["regulator"]})
    world = pause_world(tmp_path, policy)
    cross_pause_line(world)
    world.sub("lab-a", ResumeProposal, proposal_id="p1", reason="done")
    world.sub("lab-a", ResumeApproval, proposal_id="p1")
    world.sub("lab-b", ResumeApproval, proposal_id="p1")
    assert world.state.status == "paused"  # 2 of 3 is not more than 0.7
    world.sub("lab-c", ResumeApproval, proposal_id="p1")
    assert world.state.status == "paused"  # the regulator must approve too
    refused(world, world.envelope("audit", ResumeApproval, proposal_id="p1"), NotAuthorized,
            "an auditor's approval does not count|role 'auditor'")
    ended = world.sub("gov", ResumeApproval, proposal_id="p1").index
    assert world.state.status == "resumed" and world.state.pauses[-1].ended_index == ended


def test_a_regulator_approval_does_not_count_unless_the_policy_says_so(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    cross_pause_line(world)
    world.sub("lab-a", ResumeProposal, proposal_id="p1", reason="done")
    refused(world, world.envelope("gov", ResumeApproval, proposal_id="p1"), NotAuthorized,
            "a regulator's approval does not count")


def test_compute_share_resume_quorum(tmp_path: Path) -> None:
    world = pause_world(tmp_path, variant(PAUSE, resume_quorum={"kind": "compute-share", "more_than": 0.5}))
    cross_pause_line(world)
    world.sub("lab-b", ResumeProposal, proposal_id="p1", reason="done")
    world.sub("lab-b", ResumeApproval, proposal_id="p1")
    world.sub("lab-c", ResumeApproval, proposal_id="p1")
    assert world.state.status == "paused"  # 750 of 1750 H100e
    world.sub("lab-a", ResumeApproval, proposal_id="p1")
    assert world.state.status == "resumed"


def test_submission_ids_are_scoped_by_party(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500})
    world.sub("lab-a", ReviewSubmission, submission_id="s1", model_name="A-1", model_digest={"sha256": H64})
    # lab-b's own "s1" is its own: taking the same id first does not block anyone.
    world.sub("lab-b", ReviewSubmission, submission_id="s1", model_name="B-1", model_digest={"sha256": "cd" * 32})
    refused(world, world.envelope("lab-a", ReviewSubmission, submission_id="s1", model_name="A-2",
                                  model_digest={"sha256": "ef" * 32}),
            InvalidStatement, "lab-a already made submission 's1'")
    world.sub("gov", ReviewDecision, submitter="lab-b", submission_id="s1", decision="block", reason="no")
    st = world.state
    assert sorted(st.reviews) == ["lab-a/s1", "lab-b/s1"]
    assert (st.reviews["lab-a/s1"].decision, st.reviews["lab-b/s1"].decision) == (None, "block")
    refused(world, world.envelope("gov", ReviewDecision, submitter="lab-c", submission_id="s1", decision="clear",
                                  reason="x"), InvalidStatement, "'lab-c' made no review submission 's1'")


# --- 8. readable times and may-release --------------------------------------------------------


def test_texts_give_times_in_iso_and_release_obstacles_say_why(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    model = "lab-a-big"
    cross_pause_line(world)
    digest = {"sha256": H64}
    sub = world.sub("lab-a", ReviewSubmission, submission_id="s1", model_name=model, model_digest=digest)
    now = world.state.last_time_ms
    obstacles = release_obstacles(world.state, "lab-a", model, H64, now)
    assert [k for k, _ in obstacles] == ["release-during-pause", "release-unverified-weights",
                                         "release-before-clearance"]
    assert f"window ends {iso(sub.time_ms + 30 * DAY_MS)}" in obstacles[-1][1]
    world.clock.advance(hours=2)
    world.sub("lab-a", Release, model_name=model, model_digest=digest, released_at=utc(world.clock()))
    texts = [v.detail for v in world.state.violations] + [e.text for e in world.state.timeline]
    assert not any(re.search(r"\d{13}", t) for t in texts), [t for t in texts if re.search(r"\d{13}", t)]
    assert [v.kind for v in world.state.violations] == [k for k, _ in obstacles]


def test_the_usage_report_of_a_late_joiner_starts_with_its_period(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500, "lab-c": 250})
    for lab in ("lab-a", "lab-b"):
        world.sub(lab, Commitment, **commitment_fields(PAUSE, 2))
    trigger = cross_pause_line(world)
    world.clock.advance(days=8)
    joined = world.sub("lab-c", Commitment, **commitment_fields(PAUSE, 2)).index
    pause = world.state.active_pause
    assert pause.joined["lab-c"] == joined and pause.trigger_index == trigger
    reports = [(o.party, o.ref) for o in world.state.obligations if o.kind == "usage-report"]
    assert ("lab-c", f"compute usage, period 1 of pause {trigger}") not in reports
    assert ("lab-c", f"compute usage, period 2 of pause {trigger}") in reports
    acks = [(o.party, o.due_ms) for o in world.state.obligations if o.kind == "acknowledgement"]
    assert ("lab-c", world.state.last_time_ms + 72 * HOUR_MS) in acks


def test_replay_agrees_with_the_registry(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    cross_pause_line(world)
    world.publish(load_pack("eu-ai-act"))
    world.sub("lab-a", ResumeProposal, proposal_id="p1", reason="done")
    assert replay(world.entries()).digest() == world.state.digest()
    assert isinstance(world.entries()[0], Entry)


# --- 7. key history: which key spoke for a party when is a state query -------------------------------


def test_key_history_answers_which_key_was_valid_at_an_entry(tmp_path: Path) -> None:
    from redline.statements import KeyRotation

    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000})
    old = world.keys["lab-a"].verifier().to_string()
    before = world.sub("lab-a", Commitment, **commitment_fields(PAUSE, 1)).index
    new_key = SigningKey("lab-a", bytes(range(1, 33)))
    rotated = world.sub("lab-a", KeyRotation, new_verifier_key=new_key.verifier().to_string()).index
    world.keys["lab-a"] = new_key
    after = world.sub("lab-a", Commitment, **commitment_fields(PAUSE, 1, days=400)).index
    party = world.state.parties["lab-a"]
    assert party.key_history == [
        {"key": old, "from_index": party.admitted_index + 1, "to_index": rotated + 1},
        {"key": new_key.verifier().to_string(), "from_index": rotated + 1, "to_index": None}]
    assert (party.key_at(before), party.key_at(rotated), party.key_at(after)) == (
        old, old, new_key.verifier().to_string())
    assert party.key_at(party.admitted_index) is None  # not yet admitted
    world.sub("coordinator", KeyRevocation, revoked_party="lab-a", key_fingerprint=new_key.verifier().fingerprint,
              reason="leaked")
    assert world.state.parties["lab-a"].key_at(world.state.next_index) is None


def test_a_commitment_that_expires_during_the_pause_still_holds_the_lab(tmp_path: Path) -> None:
    world = labs_world(tmp_path, PAUSE, {"lab-a": 1000, "lab-b": 500, "lab-c": 250})
    for lab in LABS:
        world.sub(lab, Commitment, **commitment_fields(PAUSE, 3, days=10))
    trigger = cross_pause_line(world)
    for lab in LABS:
        world.sub(lab, PauseAcknowledgement, pause_id=str(trigger))
    world.clock.advance(days=12)  # every commitment has expired; the pause has not ended
    run = world.sub("lab-c", RunStart, **run_start_fields("late", "C-late", 5e24, when=utc(world.clock()))).index
    assert world.state.status == "paused" and world.state.active_pause.bound == LABS
    assert ("lab-c", "training-during-pause", [trigger, run]) in violations(world)


def test_a_superseded_policys_commitments_bind_nobody_new(tmp_path: Path) -> None:
    world = pause_world(tmp_path)
    v2 = variant(PAUSE, version=2)
    world.publish(v2, supersedes=[PAUSE.digest])
    world.sub("lab-a", Commitment, **commitment_fields(v2, 1))
    trigger = cross_pause_line(world, "lab-b")  # crosses v2's line only: v1 is no longer in force
    pause = world.state.active_pause
    assert pause is not None and pause.trigger_index == trigger and pause.bound == ["lab-a"]
    assert pause.policy == v2.digest


# --- refusals through the command line: exit codes, and the log left as it was ------------------------------


def test_refusals_through_redline_submit_keep_the_log_unchanged(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from scenario_kit import LOG_NAME, key

    from redline.cli.main import cli
    from redline.crypto.keys import save_signing_key
    from redline.log.service import Log

    world = pause_world(tmp_path)
    cross_pause_line(world)
    save_signing_key(key(LOG_NAME), tmp_path / "log.key")
    real_open = Log.open
    monkeypatch.setattr(Log, "open", lambda store, **kw: real_open(store, **{**kw, "clock": world.clock}))
    cases = [
        (world.envelope("lab-b", Commitment, **commitment_fields(PAUSE, pauses=("releases",))), 65,
         "field 'pauses': lab-b is bound by pause"),
        (world.envelope("gov", ResumeApproval, proposal_id="p1"), 65, "no open resume proposal 'p1'"),
        (world.envelope("lab-a", PolicyPublication, **_pub(PAUSE, world)), 7, "role 'lab'"),
    ]
    for i, (envelope, code, message) in enumerate(cases):
        path = tmp_path / f"e{i}.json"
        path.write_bytes(envelope)
        size = world.log.size
        result = CliRunner().invoke(cli, ["submit", str(tmp_path), str(path)])
        assert (result.exit_code, message in result.stderr) == (code, True), result.output
        assert Log.open(world.log.store).size == size
