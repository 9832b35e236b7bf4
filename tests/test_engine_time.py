"""Statements are bound to the log's time: the times they give are judged against the integration time.

A time that says when something happened (a run's start or finish, an inventory's or a progress report's
date, a release, an evaluation) may be at most the policy's ``max_clock_skew_minutes`` ahead of the log's
time and at most ``max_backdating_days`` behind it; a commitment must expire after it. Refusals leave the log
untouched, and replay decides exactly as the registry did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scenario_kit import World, commitment_fields, make_world, run_start_fields, utc

from redline.engine import Entry, replay
from redline.errors import InvalidStatement
from redline.policy import load_pack
from redline.statements import Commitment, Release, RunStart


@pytest.fixture()
def world(tmp_path: Path) -> World:
    w = make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab")])
    w.publish("coordinated-pause")
    return w


def refused(world: World, envelope: bytes, pattern: str) -> None:
    size = world.log.size
    with pytest.raises(InvalidStatement, match=pattern):
        world.registry.submit(envelope)
    assert world.log.size == size


@pytest.mark.parametrize("when, pattern", [
    (datetime(9999, 12, 31, tzinfo=UTC), r"field 'started_at': 9999-12-31.* is ahead of the log's time"),
    (datetime(1, 1, 1, tzinfo=UTC), r"field 'started_at': 0001-01-01.* more than 366 days before"),
])
def test_a_run_dated_far_from_the_log_is_refused(world: World, when: datetime, pattern: str) -> None:
    refused(world, world.envelope("lab-a", RunStart, **run_start_fields("r1", "A-1", 1e20, when=when)), pattern)


def test_the_bounds_are_the_policys(world: World) -> None:
    now = utc(world.clock())
    world.sub("lab-a", RunStart, **run_start_fields("r1", "A-1", 1e20, when=now + timedelta(minutes=4)))
    refused(world, world.envelope("lab-a", RunStart, **run_start_fields("r2", "A-2", 1e20,
                                                                          when=now + timedelta(minutes=6))),
            r"more than 5 minutes")
    world.sub("lab-a", RunStart, **run_start_fields("r3", "A-3", 1e20, when=now - timedelta(days=365)))
    refused(world, world.envelope("lab-a", RunStart, **run_start_fields("r4", "A-4", 1e20,
                                                                          when=now - timedelta(days=367))),
            r"more than 366 days before")


def test_a_release_dated_in_9999_and_an_expired_commitment_are_refused(world: World) -> None:
    env = world.envelope("lab-a", Release, model_name="A-1", model_digest={"sha256": "ab" * 32},
                         released_at=datetime(9999, 1, 1, tzinfo=UTC))
    refused(world, env, r"field 'released_at'")
    expired = commitment_fields(load_pack("coordinated-pause")) | {"expires_at": datetime(2001, 1, 1,
                                                                                            tzinfo=UTC)}
    refused(world, world.envelope("lab-a", Commitment, **expired), r"field 'expires_at': 2001-01-01.* would have "
                                                                    r"expired already")
    world.sub("lab-a", Commitment, **commitment_fields(load_pack("coordinated-pause")))


def test_replay_judges_times_by_each_entrys_own_integration_time(world: World) -> None:
    """A statement accepted when it was logged stays accepted on replay, however much later the replay runs."""
    world.sub("lab-a", RunStart, **run_start_fields("r1", "A-1", 1e20, when=utc(world.clock())))
    world.clock.advance(days=800)
    world.sub("lab-b", RunStart, **run_start_fields("r2", "B-2", 1e20, when=utc(world.clock())))
    again = replay(Entry(i, t, e) for i, t, e in world.log.entries())
    assert not again.rejected and again.to_dict() == world.state.to_dict()


def test_statements_are_bound_to_their_log(tmp_path: Path) -> None:
    """Every statement names the log it is for: another log refuses it verbatim, genesis included."""
    from redline.registry import Registry

    a = make_world(tmp_path / "a", [("lab-a", "lab")], origin="a.example/log")
    b = make_world(tmp_path / "b", [("lab-a", "lab")], origin="b.example/log")
    a.publish("coordinated-pause")
    b.publish("coordinated-pause")
    statement = a.sub("lab-a", RunStart, **run_start_fields("r1", "A-1", 1e20, when=utc(a.clock())))
    _, data = a.log.entry(statement.index)
    assert statement.predicate.log == "a.example/log"
    size = b.log.size
    with pytest.raises(InvalidStatement, match=r"field 'log': the statement is for log 'a.example/log', this log "
                                               r"is 'b.example/log'"):
        b.registry.submit(data)
    assert b.log.size == size
    # a statement that names no log is refused by every log, with the fix in the message
    unbound = a.pred("lab-a", RunStart, **run_start_fields("r2", "A-2", 1e20, when=utc(a.clock())), log=None)
    from redline.statements import sign_predicate

    with pytest.raises(InvalidStatement, match=r"for log None.*sign it for this log"):
        a.registry.submit(sign_predicate(unbound, a.keys["lab-a"]).to_json())
    # one log's genesis is not another's first entry
    from scenario_kit import key

    from redline.log.service import Log
    from redline.log.sqlite import SqliteStore

    empty = Log.create(SqliteStore(tmp_path / "c.db", create=True), key("c.example/log"))
    _, genesis = a.log.entry(0)
    with pytest.raises(InvalidStatement, match=r"the genesis is for log 'a.example/log', this log is "
                                               r"'c.example/log'"):
        Registry(empty).submit(genesis)
    assert empty.size == 0
