"""``redline state`` (tables and ``--json``) and ``redline policy show`` as a reader sees them.

A real log (``scenario_kit``) goes through a pause that starts after its trigger (the crossing waits for the
quorum), a missed acknowledgement, a quorum resume and a pre-release review that is cleared; at each stage the
command line must show every time as ISO 8601 UTC (never raw epoch milliseconds), the pause's start as well as
its trigger, and whether the reviewed model may be released now, and why not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from scenario_kit import (
    HOUR_MS,
    World,
    commitment_fields,
    finish_fields,
    labs_world,
    report_fields,
    run_spec,
    run_start_fields,
    utc,
    weights,
)

from redline.cli.main import cli
from redline.engine.view import iso, state_json, with_times
from redline.policy import PACKS, load_pack
from redline.statements import (
    Commitment,
    PauseAcknowledgement,
    ResumeApproval,
    ResumeProposal,
    ReviewDecision,
    ReviewSubmission,
    RunFinish,
    RunStart,
    VerificationReport,
)

POLICY = load_pack("coordinated-pause")
INVENTORIES = {"lab-a": 1000, "lab-b": 500, "lab-c": 250}
#: A 13-digit (or longer) number standing alone: epoch milliseconds that leaked into text meant for people.
EPOCH_MS = re.compile(r"\b\d{13,}\b")
ISO = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\b")


def redline(*args: str | Path, columns: int = 250) -> Result:
    """Run ``redline ARGS`` (on a wide terminal, so that no digest is folded) and require success."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"COLUMNS": str(columns)}, catch_exceptions=False)
    assert result.exit_code == 0, f"redline {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result


def readable(text: str) -> str:
    """``text`` after checking it holds no raw epoch milliseconds."""
    leaked = EPOCH_MS.findall(text)
    assert not leaked, f"raw epoch milliseconds {leaked} in:\n{text}"
    return text


@dataclass
class Story:
    """A log that went through a pause, and the entries that mark it."""

    world: World
    dir: Path
    marks: dict[str, Any] = field(default_factory=dict)

    def human(self) -> str:
        return readable(redline("state", self.dir).stdout)

    def json(self) -> dict[str, Any]:
        return json.loads(redline("state", self.dir, "--json").stdout)


def paused(tmp_path: Path) -> Story:
    """Two commitments, a pause-line crossing that waits, the third commitment that starts the pause, lab-a's
    acknowledgement."""
    world = labs_world(tmp_path, "coordinated-pause", INVENTORIES)
    s = Story(world, tmp_path)
    world.clock.advance(hours=1)
    world.sub("lab-a", Commitment, **commitment_fields(POLICY))
    world.sub("lab-b", Commitment, **commitment_fields(POLICY))
    world.clock.advance(hours=2)
    s.marks["trigger"] = world.sub("lab-c", RunStart, **run_start_fields("rc1", "C-1", 2e25, when=utc(world.clock())))
    world.clock.advance(hours=5)
    s.marks["start"] = world.sub("lab-c", Commitment, **commitment_fields(POLICY))
    world.clock.advance(hours=1)
    s.marks["pause_id"] = pid = world.state.pauses[0].pause_id
    s.marks["ack"] = world.sub("lab-a", PauseAcknowledgement, pause_id=pid)
    return s


def resumed_with_review(s: Story) -> None:
    """lab-b acknowledges late (lab-b and lab-c miss the deadline), a quorum resumes, lab-b finishes a verified
    run over the review line and submits its weights for review."""
    w, pid = s.world, s.marks["pause_id"]
    w.clock.set(s.marks["start"].time_ms + 73 * HOUR_MS)
    s.marks["late"] = w.sub("lab-b", PauseAcknowledgement, pause_id=pid)
    w.clock.advance(hours=1)
    w.sub("lab-a", ResumeProposal, proposal_id="r1", reason="the line is re-evaluated")
    w.sub("lab-b", ResumeApproval, proposal_id="r1")
    s.marks["end"] = w.sub("lab-c", ResumeApproval, proposal_id="r1")
    assert w.state.status == "resumed"
    spec = run_spec("lab-b", "rb1")
    w.sub("lab-b", RunStart, **run_start_fields("rb1", "B-1", 5e24, spec=spec, when=utc(w.clock())))
    finish = w.sub("lab-b", RunFinish, **finish_fields("rb1", 5e24, weights("B-1"), spec=spec, when=utc(w.clock())))
    w.sub("audit", VerificationReport, **report_fields("lab-b", "rb1", finish.index))
    s.marks["review"] = w.sub("lab-b", ReviewSubmission, submission_id="s1", model_name="B-1",
                              model_digest={"sha256": weights("B-1")}, run_id="rb1")


def test_iso_is_utc_to_the_second_unless_milliseconds_are_set() -> None:
    assert iso(1_800_000_000_000) == "2027-01-15T08:00:00Z"
    assert iso(1_800_000_000_007) == "2027-01-15T08:00:00.007Z"
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert with_times({"due_ms": 0, "ended_ms": None, "n": [{"time_ms": 1_800_000_000_000}], "count": 3,
                       "joined_ms": {"lab-a": 0}}) == {
        "due_ms": 0, "due_at": "1970-01-01T00:00:00Z", "ended_ms": None, "ended_at": None,
        "n": [{"time_ms": 1_800_000_000_000, "time_at": "2027-01-15T08:00:00Z"}], "count": 3,
        "joined_ms": {"lab-a": 0}, "joined_at": {"lab-a": "1970-01-01T00:00:00Z"}}
    # a mapping keyed by party names is no record: a party called "x_ms" gets no twin, its record does
    keyed = {"acknowledged": {"lab_ms": 3}, "parties": {"p_ms": {"admitted_ms": 0}}}
    assert with_times(keyed) == {"acknowledged": {"lab_ms": 3},
                                 "parties": {"p_ms": {"admitted_ms": 0, "admitted_at": "1970-01-01T00:00:00Z"}}}


def test_state_shows_the_pause_from_its_start_not_only_its_trigger(tmp_path: Path) -> None:
    s = paused(tmp_path)
    trigger, start = s.marks["trigger"], s.marks["start"]
    assert trigger.index < start.index
    shown = s.human()
    assert (f"status PAUSED since entry {start.index} ({iso(start.time_ms)}), triggered by pause-line at entry "
            f"{trigger.index}") in shown
    assert f"started      │ entry {start.index} ({iso(start.time_ms)})" in shown
    assert POLICY.digest in shown  # the policies in force, and the policy governing the pause, in full
    assert "in-force" in shown and iso(s.world.state.policies[POLICY.digest]["effective_from_ms"]) in shown
    # the bound parties, what each is held to and who acknowledged; the open deadlines with their due times
    assert re.search(r"lab-a\s*│ entry \d+\s*│ releases, training\s*│ entry " + str(s.marks["ack"].index), shown)
    assert re.search(r"lab-c\s*│ entry \d+\s*│ releases, training\s*│ no", shown)
    ack_due = iso(start.time_ms + 72 * HOUR_MS)
    assert re.search(r"acknowledgement\s*│ lab-b\s*│ pause \S+\s*│ " + re.escape(ack_due), shown)
    assert ISO.search(shown)


def test_state_json_has_an_iso_twin_for_every_time_and_the_pause_view(tmp_path: Path) -> None:
    s = paused(tmp_path)
    result = redline("state", s.dir, "--json")
    doc = json.loads(result.stdout)
    assert result.stderr.strip().splitlines()[-1] == f"digest {s.world.state.digest()}"  # of to_dict(), unchanged
    assert doc == json.loads(json.dumps(state_json(s.world.state)))
    twins = 0

    def walk(obj: Any) -> None:
        nonlocal twins
        if isinstance(obj, list):
            for v in obj:
                walk(v)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                if k.endswith("_ms") and (v is None or isinstance(v, int)):
                    assert obj[k[:-3] + "_at"] == (None if v is None else iso(v)), k
                    twins += 1
                walk(v)

    walk(doc)
    assert twins > 20
    assert doc["obligations"][0]["due_at"] == iso(doc["obligations"][0]["due_ms"])
    assert doc["last_time_at"] == iso(s.world.state.last_time_ms)
    pv = doc["pause_view"]
    start, trigger = s.marks["start"], s.marks["trigger"]
    assert (pv["status"], pv["started_index"], pv["started_at"], pv["trigger_index"], pv["trigger_line"]) == (
        "active", start.index, iso(start.time_ms), trigger.index, "pause-line")
    assert pv["policy"] == POLICY.digest and pv["policy_id"] == "coordinated-pause"
    assert [p["party"] for p in pv["parties"]] == ["lab-a", "lab-b", "lab-c"]
    assert pv["acknowledgements"] == {"lab-a": s.marks["ack"].index}
    assert {(d["kind"], d["party"], d["status"]) for d in pv["deadlines"] if d["kind"] == "acknowledgement"} == {
        ("acknowledgement", "lab-a", "met"), ("acknowledgement", "lab-b", "open"),
        ("acknowledgement", "lab-c", "open")}
    assert pv["ended_index"] is None and pv["ended_at"] is None
    assert doc["release_status"] == []


def test_may_release_says_no_and_why_under_an_open_review_then_yes_once_cleared(tmp_path: Path) -> None:
    s = paused(tmp_path)
    resumed_with_review(s)
    end, late = s.marks["end"], s.marks["late"]
    shown = s.human()
    assert f"status resumed (pause {s.marks['pause_id']} from entry {s.marks['start'].index}" in shown
    assert f"ended at entry {end.index} ({iso(end.time_ms)})" in shown
    # the missed acknowledgements: evidence entries and the time they were found, in ISO
    assert re.search(r"lab-c\s*│ missed-acknowledgement\s*│.*│ \d+, " + str(late.index) + r"\s*│ "
                     + re.escape(iso(late.time_ms)), shown)
    assert re.search(r"r1\s*│ lab-a\s*│ \d+\s*│ lab-b \(entry \d+\), lab-c \(entry " + str(end.index), shown)
    window_end = iso(s.marks["review"].time_ms + 30 * 86_400_000)
    row = next(line for line in shown.splitlines() if "lab-b/s1" in line)
    assert window_end in row and "pending" in row
    assert "no: release-before-clearance" in row
    [status] = s.json()["release_status"]
    assert (status["review"], status["model"], status["weights"], status["may_release"], status["window_end_at"]) == (
        "lab-b/s1", "B-1", weights("B-1"), False, window_end)
    assert [o["kind"] for o in status["obstacles"]] == ["release-before-clearance"]
    assert window_end in status["obstacles"][0]["reason"]

    decision = s.world.sub("gov", ReviewDecision, submission_id="s1", submitter="lab-b", decision="clear",
                           reason="evaluations within bounds")
    shown = s.human()
    row = next(line for line in shown.splitlines() if "lab-b/s1" in line)
    assert f"clear (entry {decision.index})" in row and row.rstrip("│ ").endswith("yes")
    [status] = s.json()["release_status"]
    assert (status["may_release"], status["obstacles"], status["decision"]) == (True, [], "clear")


def test_state_of_an_empty_log_says_it_is_empty(tmp_path: Path) -> None:
    d = tmp_path / "log"
    redline("log", "init", d, "--origin", "redline.test/empty")
    shown = readable(redline("state", d).stdout)
    assert f"log in {d} is empty (no genesis yet: run 'redline party genesis" in shown
    assert "None" not in shown
    doc = json.loads(redline("state", d, "--json").stdout)
    assert (doc["coordinator"], doc["next_index"], doc["pause_view"], doc["release_status"]) == (None, 0, None, [])


def test_state_of_a_directory_without_a_log_says_how_to_make_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["state", str(tmp_path / "nowhere")])
    assert result.exit_code == 4
    assert f"no log in {tmp_path / 'nowhere'} (run 'redline log init" in result.stderr


def test_policy_show_prints_the_full_digest_and_every_parameter() -> None:
    shown = readable(redline("policy", "show", "coordinated-pause", columns=80).stdout)
    assert f"digest {POLICY.digest}" in shown
    params = POLICY.parameters.model_dump(mode="json")
    for name in params:
        assert name in shown, name
    for name in ("resume_quorum.kind", "resume_quorum.more_than", "resume_quorum.also_required"):
        assert name in shown
    assert re.search(r"paused_run_flop_limit\s*│ 1e\+22", shown)
    assert re.search(r"resume_quorum\.more_than\s*│ " + re.escape(f"{params['resume_quorum']['more_than']:g}"), shown)
    wide = redline("policy", "show", "coordinated-pause").stdout
    assert re.search(r"pause-line\s*│ training_compute\s*│ run\s*│ > 1e\+25 FLOP", wide)


@pytest.mark.parametrize("pack", sorted(PACKS))
def test_policy_packs_lists_full_digests(pack: str) -> None:
    assert f"digest {load_pack(pack).digest}" in redline("policy", "packs", columns=80).stdout


def test_a_superseded_policy_is_shown_with_the_entry_that_superseded_it(tmp_path: Path) -> None:
    d, coord = tmp_path / "log", tmp_path / "coordinator.key"
    redline("log", "init", d, "--origin", "redline.test/policies")
    redline("key", "new", "coordinator.example", "-o", coord)
    redline("party", "genesis", d, "--key", coord)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    redline("policy", "publish", d, "coordinated-pause", "--key", coord, "--effective-from", yesterday)
    review = load_pack("pre-release-review")
    redline("policy", "publish", d, "pre-release-review", "--key", coord, "--supersedes", POLICY.digest)
    doc = json.loads(redline("state", d, "--json").stdout)
    old, new = doc["policies"][POLICY.digest], doc["policies"][review.digest]
    assert (old["status"], old["in_force_index"], old["superseded_index"]) == ("superseded", 1, 2)
    assert (new["status"], new["in_force_index"], new["supersedes"]) == ("in-force", 2, [POLICY.digest])
    assert old["effective_from_at"] == iso(old["effective_from_ms"])
    rows = {line.split("│")[1].strip(): line for line in readable(redline("state", d).stdout).splitlines()
            if line.startswith("│ ") and ("coordinated-pause" in line or "pre-release-review" in line)}
    assert re.search(re.escape(POLICY.digest) + r"\s*│ superseded\s*│ " + re.escape(old["effective_from_at"])
                     + r"\s*│ entry 1\s*│ entry 2\s*│ entry 1", rows["coordinated-pause"])
    assert re.search(re.escape(review.digest) + r"\s*│ in-force\s*│ " + re.escape(new["effective_from_at"])
                     + r"\s*│ entry 2\s*│\s*│ entry 2", rows["pre-release-review"])


def test_state_json_is_a_copy_built_from_the_states_own_lists(tmp_path: Path) -> None:
    # state_json reads the state's lists and dicts without a deep copy first; what it returns must still be the
    # view of the deep copy, and changing it must leave the state as it was
    from redline.engine.view import pause_view, release_status

    state = paused(tmp_path).world.state
    before, digest = state.to_dict(), state.digest()
    view = state_json(state)
    assert view == with_times({**before, "pause_view": pause_view(state), "release_status": release_status(state)})

    def scribble(obj: Any) -> None:
        if isinstance(obj, list):
            for v in obj:
                scribble(v)
            obj.append("scribbled")
        elif isinstance(obj, dict):
            for v in list(obj.values()):
                scribble(v)
            obj["scribbled"] = True

    scribble(view)
    assert state.to_dict() == before and state.digest() == digest
    assert state.to_dict(copy=False) == before
