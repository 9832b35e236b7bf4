"""State snapshots (``redline.engine.snapshot``) and the snapshot cache beside a log (``redline.statecache``).

A snapshot must give back exactly the state the replay had reached — derived indexes and the sharing between
objects included — so that replaying on from it gives what a full replay gives; the cache must use a snapshot
only when it is of this log's history, made by this code, under this user's seal, and must authenticate every
entry it replays on. Each attack below is a way to make a reader believe a state the log does not support.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import shutil
import sqlite3
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from redline import statecache
from redline.cli.logdir import create_log, open_log
from redline.cli.main import cli
from redline.crypto.canonical import canonical_digest
from redline.crypto.keys import SigningKey, save_signing_key
from redline.engine import Entry, State, apply, replay
from redline.engine import snapshot as codec
from redline.engine.replay import MAX_ENTRY_BYTES
from redline.errors import InconsistentLog, MalformedInput, StaleCache
from redline.log import localcache
from redline.log.tiles import encode_entry_bundle, parse_entry_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_engine_parallel as hand_made  # noqa: E402  (the hand-made scenario: pauses, rotations, forgeries)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "replay.py"


def _bench_log(n: int) -> list[Entry]:
    """``n`` entries of the replay benchmark's mix (runs, bases, verification, reviews, releases, pauses...)."""
    spec = importlib.util.spec_from_file_location("_bench_replay", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.generate(n, 7))


@pytest.fixture(scope="module")
def scenario() -> list[Entry]:
    return list(hand_made._scenario().entries)


@pytest.fixture(scope="module")
def mixed() -> list[Entry]:
    return _bench_log(2_500)


def _round_trip(state: State) -> State:
    encoded = codec.encode(state)
    return codec.decode(encoded.body, [lambda blob=blob: blob for blob in encoded.blobs])


def _all_fields(state: State) -> dict[str, Any]:
    """Every field, those left out of ``==`` and of the digest included."""
    return {f.name: getattr(state, f.name) for f in fields(State) if f.name != "line_index"}


def _same(a: State, b: State) -> None:
    assert a.digest() == b.digest() == canonical_digest(b.to_dict())  # digest(): to_dict()'s, hashed piecewise
    fa, fb = _all_fields(a), _all_fields(b)
    for name in fa:
        if name == "policy_objects":
            assert {d: p.digest for d, p in fa[name].items()} == {d: p.digest for d, p in fb[name].items()}
        else:
            assert fa[name] == fb[name], name


def _shared(state: State) -> None:
    """Open obligations are the very objects in ``obligations`` (the engine marks them met through either)."""
    ids = {id(o) for o in state.obligations}
    assert all(id(o) in ids for o in state.open_obligations)
    assert all(id(o) in ids for o in state.run_finish_due.values())


# --- the codec ---------------------------------------------------------------------------------


def test_the_logs_cover_the_state(scenario: list[Entry], mixed: list[Entry]) -> None:
    states = [replay(scenario), replay(mixed)]
    empty = [f.name for f in fields(State)
             if all(isinstance(getattr(s, f.name), (list, dict, set)) and not getattr(s, f.name) for s in states)]
    # what these two logs never fill: provider attestations (tests/test_engine_attestation.py) and nothing else
    assert set(empty) <= {"attested", "attested_by_customer", "findings", "unregistered", "pending_pause"}, empty


@pytest.mark.parametrize("which", ["scenario", "mixed"])
def test_a_snapshot_at_every_cut_point_replays_on_to_the_same_state(which: str, request: pytest.FixtureRequest
                                                                    ) -> None:
    entries: list[Entry] = request.getfixturevalue(which)
    full = replay(entries)
    cuts = range(len(entries) + 1) if len(entries) < 100 else [*range(0, 60), *range(60, len(entries) + 1, 97),
                                                                len(entries)]
    state = State()
    done = 0
    for cut in cuts:
        for e in entries[done:cut]:
            apply(state, e)
        done = cut
        restored = _round_trip(state)
        _same(restored, state)
        _shared(restored)
        if cut % 7 == 0 or cut == len(entries):
            middle = (cut + len(entries)) // 2
            for e in entries[cut:middle]:
                apply(restored, e)
            again = _round_trip(restored)  # a snapshot of a state that came from one (its parts still unread)
            _same(again, restored)
            for e in entries[middle:]:
                apply(again, e)
            _same(again, full)
            _shared(again)


def test_decoding_refuses_what_encode_never_writes(scenario: list[Entry]) -> None:
    good = codec.encode(replay(scenario)).body
    fmt, tree = marshal.loads(good)
    bad_bodies = [
        b"", b"garbage", good[:len(good) // 2],
        marshal.dumps((fmt + 1, tree)),
        marshal.dumps((fmt, [tree])),
        marshal.dumps((fmt, {k: v for k, v in tree.items() if k != "runs"})),
        marshal.dumps((fmt, {**tree, "extra": 1})),
        marshal.dumps((fmt, {**tree, "runs": {"x": {"__record__": "Run", "party": "p"}}})),
        marshal.dumps((fmt, {**tree, "pauses": [{"__record__": "Event", **{f.name: 0 for f in fields(codec.Event)}}]})),
        marshal.dumps((fmt, {**tree, "policy_objects": {"0" * 64: next(iter(tree["policy_objects"].values()))}})),
    ]
    for body in bad_bodies:
        with pytest.raises(MalformedInput):
            codec.decode(body)


def test_lazy_roots_find_exactly_the_keys_stored() -> None:
    hexes = {bytes([i]).hex() * 32: (f"lab/run-{i}", i) for i in range(0, 250, 7)}
    odd = {"not-hex-root": ("lab/x", 1), "ABCD" * 16: ("lab/y", 2), "é-root": ("lab/z", 3)}
    roots = codec.LazyRoots(codec.LazyRoots.chunks_of({**hexes, **odd}))
    for k, v in hexes.items():
        assert roots.get(k) == v and k in roots
    assert roots.get("ABCD" * 16) == ("lab/y", 2) and roots.get("abcd" * 16) is None  # case is part of the key
    assert roots.get("not-hex-root") == ("lab/x", 1) and roots.get("é-root") == ("lab/z", 3)
    assert roots.get("00" * 31) is None and "zz" not in roots and roots.get("\udc80") is None
    assert roots.setdefault("ff" * 32, ("lab/new", 9)) == ("lab/new", 9)
    assert roots.setdefault("ff" * 32, ("lab/other", 10)) == ("lab/new", 9)
    first = next(iter(hexes))
    assert roots.setdefault(first, ("lab/other", 10)) == hexes[first]  # the first declaration stays
    with pytest.raises(MalformedInput):
        codec.LazyRoots.chunks_of({"\udc80": ("lab/x", 1)})  # not text: a snapshot cannot keep it
    assert dict(roots.items()) == {**hexes, **odd, "ff" * 32: ("lab/new", 9)}


def test_lazy_runs_keep_their_order_and_decode_on_demand(mixed: list[Entry]) -> None:
    state = replay(mixed)
    keys = list(state.runs)
    runs = codec.LazyRuns(codec.LazyRuns.pack(state.runs))
    assert len(runs) == len(keys) and keys[3] in runs and "nobody/none" not in runs
    assert runs[keys[3]] == state.runs[keys[3]] and runs.get("nobody/none") is None
    new = state.runs[keys[0]]
    runs["lab-z/new"] = new
    assert list(runs) == [*keys, "lab-z/new"] and list(runs.values())[-1] is new
    with pytest.raises(KeyError):
        runs["nobody/none"]


def test_every_state_field_has_a_shape() -> None:
    assert set(codec.SHAPES) == {f.name for f in fields(State)}


# --- the cache beside a log ----------------------------------------------------------------------


ORIGIN = hand_made.ORIGIN


def loggable_entries(scenario: list[Entry]) -> list[Entry]:
    """The hand-made scenario less what the log itself refuses (entries over its size limit), renumbered."""
    kept = [e for e in scenario if len(e.data) <= MAX_ENTRY_BYTES]
    assert len(kept) >= 60
    return [Entry(i, e.time_ms, e.data) for i, e in enumerate(kept)]


@pytest.fixture(scope="module")
def loggable(scenario: list[Entry]) -> list[Entry]:
    return loggable_entries(scenario)


def _write(logdir: Path, entries: list[Entry], key: SigningKey | None = None) -> None:
    """Append ``entries`` to the log in LOGDIR (created if need be), each at its own logged time."""
    if not (logdir / "log.db").exists():
        key = key or SigningKey.generate(ORIGIN)
        create_log(logdir, key).store.close()
        save_signing_key(key, logdir / "log.key")
    log = open_log(logdir, signing=True)
    try:
        for e in entries:
            log.append([e.data], at_ms=e.time_ms)
    finally:
        log.store.close()


def _load(logdir: Path, **kw: Any) -> statecache.Loaded:
    log = open_log(logdir)
    try:
        return statecache.load_state(log, logdir, workers=1, **kw)
    finally:
        log.store.close()


@pytest.fixture
def save_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statecache, "SAVE_MIN_ENTRIES", 5)
    monkeypatch.setattr(statecache, "SAVE_SHARE", 0.0)


def _reference(entries: list[Entry], logdir: Path) -> State:
    """The state a full replay of the log in LOGDIR gives (its logged times are those of ``entries``)."""
    return _load(logdir, use_cache=False, save=False).state


def test_snapshots_then_tails_give_the_full_replay_at_every_step(tmp_path: Path, loggable: list[Entry],
                                                                  save_often: None) -> None:
    logdir = tmp_path / "log"
    written = 0
    for step in (7, 13, 20, 26, len(loggable)):
        _write(logdir, loggable[written:step])
        written = step
        got = _load(logdir)
        ref = _reference(loggable, logdir)
        _same(got.state, ref)
        _shared(got.state)
    got = _load(logdir)
    assert got.snapshot_size == len(loggable) and got.replayed == 0
    _same(got.state, replay([Entry(e.index, e.time_ms, e.data) for e in loggable], State(origin=ORIGIN)))


def test_no_cache_replays_everything(tmp_path: Path, loggable: list[Entry], save_often: None) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    assert _load(logdir).saved is not None
    got = _load(logdir, use_cache=False)
    assert got.snapshot_size is None and got.replayed == len(loggable)
    runner = CliRunner()
    out = runner.invoke(cli, ["state", str(logdir), "--json", "--no-cache"])
    cached = runner.invoke(cli, ["state", str(logdir), "--json"])
    assert out.exit_code == 0 and cached.exit_code == 0, out.output + cached.output
    assert out.stdout == cached.stdout


@pytest.fixture
def snapped(tmp_path: Path, loggable: list[Entry], save_often: None) -> tuple[Path, Path]:
    """A log of the first 40 entries with a snapshot at 40, then the rest appended (no newer snapshot)."""
    logdir = tmp_path / "log"
    _write(logdir, loggable[:40])
    saved = _load(logdir).saved
    assert saved is not None and saved.name == "state-000000000040.sealed"
    _write(logdir, loggable[40:])
    return logdir, saved


def _used(logdir: Path) -> statecache.Loaded:
    notes: list[str] = []
    log = open_log(logdir)
    try:
        got = statecache.load_state(log, logdir, workers=1, save=False, note=notes.append)
    finally:
        log.store.close()
    got.reason = got.reason or (notes[0] if notes else None)
    return got


def test_an_honest_snapshot_is_used(snapped: tuple[Path, Path], loggable: list[Entry]) -> None:
    logdir, _ = snapped
    got = _used(logdir)
    assert got.snapshot_size == 40 and got.replayed == len(loggable) - 40 and got.reason is None
    _same(got.state, _reference(loggable, logdir))


@pytest.mark.parametrize("edit", ["flip-body", "flip-header", "truncate", "empty", "append"])
def test_an_edited_snapshot_is_not_used(snapped: tuple[Path, Path], loggable: list[Entry], edit: str) -> None:
    logdir, path = snapped
    data = bytearray(path.read_bytes())
    if edit == "flip-body":
        data[len(data) // 2] ^= 1
    elif edit == "flip-header":
        data[data.index(b'"size":40') + 8] = ord("1")
    elif edit == "truncate":
        del data[-1]
    elif edit == "empty":
        data = bytearray()
    else:
        data += b"\x00"
    path.write_bytes(bytes(data))
    got = _used(logdir)
    assert got.snapshot_size is None and got.replayed == len(loggable)
    assert "seal" in (got.reason or "") or "sealed" in (got.reason or ""), got.reason
    _same(got.state, _reference(loggable, logdir))


def test_a_snapshot_sealed_by_another_user_is_not_used(snapped: tuple[Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    logdir, _ = snapped
    monkeypatch.setenv("REDLINE_CACHE_KEY", str(tmp_path / "someone-else.key"))
    got = _used(logdir)
    assert got.snapshot_size is None and "seal" in (got.reason or "")


def test_a_snapshot_made_by_other_code_is_not_used(snapped: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    logdir, _ = snapped
    monkeypatch.setattr(localcache, "code_digest", lambda: "0" * 64)
    got = _used(logdir)
    assert got.snapshot_size is None and "code" in (got.reason or "")


def test_another_logs_snapshot_is_not_used(tmp_path: Path, loggable: list[Entry], save_often: None) -> None:
    # Same origin, another key: the snapshot of one log copied beside the other.
    first, second = tmp_path / "a", tmp_path / "b"
    _write(first, loggable[:40])
    saved = _load(first).saved
    assert saved is not None
    _write(second, loggable[:40])
    (second / "snapshots").mkdir()
    shutil.copy(saved, second / "snapshots" / saved.name)
    got = _used(second)
    assert got.snapshot_size is None and "public_key" in (got.reason or "")


def test_a_snapshot_of_a_forked_history_is_not_used(tmp_path: Path, loggable: list[Entry], save_often: None) -> None:
    # The log's own key signs two histories that agree up to entry 30 (an operator who forks its log): a snapshot
    # of one is not consistent with the other's signed checkpoint, although origin, key and size all match.
    key = SigningKey.generate(ORIGIN)
    honest, fork = tmp_path / "honest", tmp_path / "fork"
    _write(honest, loggable[:40], key)
    _write(fork, loggable[:30] + [Entry(30 + i, e.time_ms, e.data) for i, e in enumerate(loggable[31:41])], key)
    saved = _load(fork).saved
    assert saved is not None and saved.name == "state-000000000040.sealed"
    _write(honest, loggable[40:])
    (honest / "snapshots").mkdir(exist_ok=True)
    for old in (honest / "snapshots").iterdir():
        old.unlink()
    shutil.copy(saved, honest / "snapshots" / saved.name)
    got = _used(honest)
    assert got.snapshot_size is None and "consistent" in (got.reason or ""), got.reason
    _same(got.state, _reference(loggable, honest))


def test_a_snapshot_ahead_of_the_log_is_not_used(snapped: tuple[Path, Path], tmp_path: Path, loggable: list[Entry],
                                                 save_often: None) -> None:
    # The store rolled back (restored from an older copy: the first 40 entries, same key) below a snapshot this
    # user made later: that snapshot is of entries the store no longer holds.
    logdir, _ = snapped
    latest = _load(logdir).saved
    assert latest is not None and latest.name == f"state-{len(loggable):012d}.sealed"
    rolled = tmp_path / "rolled"
    _write(rolled, loggable[:40], SigningKey.from_string((logdir / "log.key").read_text().strip()))
    (rolled / "snapshots").mkdir()
    shutil.copy(latest, rolled / "snapshots" / latest.name)
    got = _used(rolled)
    assert got.snapshot_size is None and f"is for {len(loggable)} entries, the log holds 40" in (got.reason or "")
    _same(got.state, _reference(loggable[:40], rolled))


def test_a_symlinked_snapshot_is_not_followed(snapped: tuple[Path, Path], tmp_path: Path) -> None:
    logdir, path = snapped
    target = tmp_path / "elsewhere.sealed"
    path.rename(target)
    path.symlink_to(target)
    got = _used(logdir)
    assert got.snapshot_size is None and "regular" in (got.reason or "") or "open" in (got.reason or "")


def _tamper_leaf(logdir: Path, index: int) -> None:
    con = sqlite3.connect(logdir / "log.db")
    with con:
        (first, count, blob), = con.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first <= ? "
                                            "ORDER BY first DESC LIMIT 1", (index,)).fetchall()
        leaves = parse_entry_bundle(bytes(blob), count)
        leaves[index - first] = leaves[index - first][:-1] + bytes([leaves[index - first][-1] ^ 1])
        con.execute("UPDATE leaf_chunks SET leaves=? WHERE first=?", (encode_entry_bundle(leaves), first))
    con.close()


def test_an_entry_after_the_snapshot_edited_in_the_store_is_refused(snapped: tuple[Path, Path]) -> None:
    logdir, _ = snapped
    _tamper_leaf(logdir, 50)
    with pytest.raises(InconsistentLog, match="altered|entry"):
        _used(logdir)
    with pytest.raises(InconsistentLog):
        _load(logdir, use_cache=False, save=False)


def test_an_entry_under_the_snapshot_edited_in_the_store(snapped: tuple[Path, Path], loggable: list[Entry]) -> None:
    # The snapshot holds the state of the entries as they were signed; a later edit of one of them changes nothing
    # it says, while a full replay (which reads that entry) refuses the store.
    logdir, _ = snapped
    before = _used(logdir).state.digest()
    _tamper_leaf(logdir, 10)
    assert _used(logdir).state.digest() == before
    with pytest.raises(InconsistentLog):
        _load(logdir, use_cache=False, save=False)


def test_snapshots_are_written_atomically_and_pruned(tmp_path: Path, loggable: list[Entry], save_often: None) -> None:
    logdir = tmp_path / "log"
    for step in (10, 20, 30, 40):
        _write(logdir, loggable[step - 10:step])
        _load(logdir)
    names = sorted(p.name for p in (logdir / "snapshots").iterdir())
    assert names == ["state-000000000030.sealed", "state-000000000040.sealed"]  # the newest two, no temporaries
    assert all(((logdir / "snapshots" / n).stat().st_mode & 0o777) == 0o600 for n in names)


def test_a_small_tail_writes_no_new_snapshot(snapped: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    logdir, _ = snapped
    monkeypatch.setattr(statecache, "SAVE_MIN_ENTRIES", 10_000)
    assert _load(logdir).saved is None
    assert [p.name for p in (logdir / "snapshots").iterdir()] == ["state-000000000040.sealed"]


def test_the_cli_state_uses_and_refreshes_snapshots(tmp_path: Path, loggable: list[Entry], save_often: None) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    runner = CliRunner()
    first = runner.invoke(cli, ["state", str(logdir)])
    assert first.exit_code == 0, first.output
    assert (logdir / "snapshots" / f"state-{len(loggable):012d}.sealed").exists()
    (logdir / "snapshots" / f"state-{len(loggable):012d}.sealed").write_bytes(b"nonsense")
    second = runner.invoke(cli, ["state", str(logdir)])
    assert second.exit_code == 0
    assert "state snapshot not used" in second.stderr and first.stdout == second.stdout


def test_a_long_lived_registry_saves_its_state_when_it_stops(tmp_path: Path, loggable: list[Entry],
                                                              save_often: None) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable[:30])
    log = open_log(logdir, verify=True)
    try:
        state = statecache.load_state(log, logdir, workers=1, save=False).state
        assert statecache.save_if_worth(log, logdir, state) is not None  # what `redline serve` does as it stops
        assert statecache.save_if_worth(log, logdir, state) is None  # nothing new since
        stale = replay(loggable[:29], State(origin=ORIGIN))
        assert statecache.save_if_worth(log, logdir, stale) is None  # never a state of another size
    finally:
        log.store.close()
    assert _used(logdir).snapshot_size == 30


def test_the_readable_state_shows_the_latest_rows_of_long_tables(tmp_path: Path, loggable: list[Entry]) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    runner = CliRunner()
    short = runner.invoke(cli, ["state", str(logdir)], terminal_width=200)
    full = runner.invoke(cli, ["state", str(logdir), "--all"], terminal_width=200)
    assert short.exit_code == 0 and full.exit_code == 0, short.output + full.output
    rejected = len(_load(logdir, save=False).state.rejected)
    assert rejected > 5
    from io import StringIO

    from rich.console import Console

    from redline.cli.state_view import render_state

    out = StringIO()
    render_state(_load(logdir, save=False).state, Console(file=out, width=200), limit=5)
    text = out.getvalue()
    assert f"the latest 5 of {rejected} rejected entries" in text
    assert "--all shows every row" not in full.stdout


def test_a_log_read_over_http_is_cached_and_checked_the_same_way(tmp_path: Path, save_often: None) -> None:
    from helpers.tile_server import serve_tiles
    from scenario_kit import inventory_fields, labs_world
    from test_remote_state import publish

    from redline.cli.remote_state import remote_cache_dir, remote_state
    from redline.statements import ComputeInventory

    world = labs_world(tmp_path / "log", inventories={"lab-a": 100})
    key = world.log.verifier.to_string()
    cache = remote_cache_dir(world.log.origin, world.log.verifier)
    shutil.rmtree(cache, ignore_errors=True)  # (the user's cache is shared by the tests of a process)
    with serve_tiles(publish(world.log, tmp_path / "tiles-1")) as server:
        assert remote_state(server.url, key).digest() == world.state.digest()
    first = sorted(p.name for p in cache.iterdir())
    assert first == [f"state-{world.log.size:012d}.sealed"]
    world.sub("lab-b", ComputeInventory, **inventory_fields(3))
    notes: list[str] = []
    with serve_tiles(publish(world.log, tmp_path / "tiles-2")) as server:
        assert remote_state(server.url, key, note=notes.append).digest() == world.state.digest()
        assert notes == []  # the snapshot was used (its root proven a prefix of the new checkpoint's)
        (cache / first[0]).write_bytes(b"edited")
        assert remote_state(server.url, key, note=notes.append).digest() == world.state.digest()
        assert notes and "seal" in notes[0]
        assert remote_state(server.url, key, use_cache=False).digest() == world.state.digest()


def test_a_remote_snapshot_whose_timeline_fails_is_recovered_from_the_tiles(tmp_path: Path, save_often: None) -> None:
    from helpers.tile_server import serve_tiles
    from scenario_kit import labs_world
    from test_remote_state import publish

    from redline.cli.remote_state import remote_cache_dir, remote_state

    world = labs_world(tmp_path / "log", inventories={"lab-a": 100})
    key = world.log.verifier.to_string()
    cache = remote_cache_dir(world.log.origin, world.log.verifier)
    shutil.rmtree(cache, ignore_errors=True)  # (the user's cache is shared by the tests of a process)
    notes: list[str] = []
    with serve_tiles(publish(world.log, tmp_path / "tiles")) as server:
        assert remote_state(server.url, key).digest() == world.state.digest()
        (path,) = cache.iterdir()
        _flip_timeline(path)
        got = remote_state(server.url, key, note=notes.append)  # the snapshot is used; the client is closed
        assert notes == []
        assert got.to_dict() == world.state.to_dict()  # the tiles are read again (a new client) for the timeline
    assert len(notes) == 1 and "cannot be read" in notes[0] and not path.exists()


def _blob_offsets(path: Path) -> list[tuple[int, int, bool]]:
    """(offset, length, read late) of each blob after the sealed part of a snapshot file."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "big")
    header, _ = localcache.unseal(statecache.KIND, data[8:8 + n], localcache.cache_key())
    out, offset = [], 8 + n
    for length, _, late in header["blobs"]:
        out.append((offset, length, late))
        offset += length
    return out


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


def test_an_edited_blob_the_state_needs_now_means_the_snapshot_is_not_used(snapped: tuple[Path, Path],
                                                                         loggable: list[Entry]) -> None:
    logdir, path = snapped
    eager = [(o, n) for o, n, late in _blob_offsets(path) if not late]
    assert eager  # the transcript roots
    _flip(path, eager[0][0] + eager[0][1] // 2)
    got = _used(logdir)
    assert got.snapshot_size is None and "does not match its seal" in (got.reason or ""), got.reason
    _same(got.state, _reference(loggable, logdir))


def _flip_timeline(path: Path) -> None:
    late = [(o, n) for o, n, is_late in _blob_offsets(path) if is_late]
    assert late  # the timeline
    _flip(path, late[0][0] + late[0][1] - 1)


def test_an_edited_timeline_blob_is_recovered_from_the_log_when_read(tmp_path: Path, loggable: list[Entry],
                                                                     save_often: None) -> None:
    # The timeline's blob is checked only when the timeline is read (so that `redline state` at a million entries
    # answers in under a second). When it fails then, the log's first entries are replayed for it and the answer
    # is the full replay's, not an error the user must get round with --no-cache; the bad snapshot is removed, so
    # the next call does not meet it again, and a good one is saved in its place. `redline state` closes the log
    # before it shows the state: the log is opened again (verified) for the timeline.
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    path = _load(logdir).saved
    assert path is not None and path.name == f"state-{len(loggable):012d}.sealed"
    _flip_timeline(path)
    runner = CliRunner()
    shown = runner.invoke(cli, ["state", str(logdir)])  # the tables never read the timeline
    assert shown.exit_code == 0 and "cannot be read" not in shown.stderr, shown.output
    assert path.exists()
    full = runner.invoke(cli, ["state", str(logdir), "--json", "--no-cache"])
    assert full.exit_code == 0, full.output
    as_json = runner.invoke(cli, ["state", str(logdir), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(full.stdout)
    assert f"timeline of state snapshot {path.name} cannot be read" in as_json.stderr
    assert "does not match its seal" in as_json.stderr
    assert f"first {len(loggable)} entries are replayed" in as_json.stderr
    assert not path.exists()
    again = runner.invoke(cli, ["state", str(logdir), "--json"])
    assert again.exit_code == 0 and again.stdout == as_json.stdout and "cannot be read" not in again.stderr
    assert _used(logdir).snapshot_size == len(loggable)  # saved afresh by the call that met no snapshot


def test_a_snapshot_saved_while_the_timeline_fails_holds_the_recovered_one(snapped: tuple[Path, Path],
                                                                           loggable: list[Entry]) -> None:
    # Entries came after the snapshot, so the call saves a new one, whose timeline is the old one's chunks plus
    # the new events: the old chunk fails its check there, and the saved snapshot holds the recovered timeline.
    logdir, path = snapped
    _flip_timeline(path)
    shown = CliRunner().invoke(cli, ["state", str(logdir)])
    assert shown.exit_code == 0, shown.output
    assert "first 40 entries are replayed" in shown.stderr and not path.exists()
    got = _used(logdir)
    assert got.snapshot_size == len(loggable) and got.reason is None
    _same(got.state, _reference(loggable, logdir))


def test_a_timeline_blob_edited_while_its_snapshot_is_open_is_recovered(snapped: tuple[Path, Path],
                                                                        loggable: list[Entry]) -> None:
    # A long-lived reader (`redline serve`) holds the snapshot open for hours: the blob is edited in place after
    # the snapshot was opened and checked. The registry's own log is read again for the timeline.
    logdir, path = snapped
    notes: list[str] = []
    log = open_log(logdir, verify=True)
    try:
        got = statecache.load_state(log, logdir, workers=1, save=False, note=notes.append)
        assert got.snapshot_size == 40 and notes == []
        _flip_timeline(path)
        assert got.state.to_dict() == _reference(loggable, logdir).to_dict()
    finally:
        log.store.close()
    assert len(notes) == 1 and "first 40 entries are replayed" in notes[0]
    assert not path.exists()


def test_a_recovered_timeline_must_be_the_one_the_snapshot_held(snapped: tuple[Path, Path]) -> None:
    # The replayed prefix must give the state digest the snapshot carries, so a recovered timeline is bound to
    # the snapshot it replaces: here a (re-sealed, so otherwise usable) snapshot says another digest, and the
    # timeline is refused rather than mixed into its state.
    logdir, path = snapped
    _resealed(path, lambda header: header.update(state_digest="0" * 64))
    _flip_timeline(path)
    log = open_log(logdir, verify=True)
    try:
        got = statecache.load_state(log, logdir, workers=1, save=False)
        assert got.snapshot_size == 40
        with pytest.raises(StaleCache, match="no longer give the state the snapshot was made from"):
            list(got.state.timeline)
    finally:
        log.store.close()


def test_a_timeline_that_cannot_be_recovered_is_an_error_never_a_wrong_state(snapped: tuple[Path, Path]) -> None:
    # Without a way to read the log again (its caller closed it, and gave no ``reopen``), the check's error stands.
    logdir, path = snapped
    got = _used(logdir)
    assert got.snapshot_size == 40
    _flip_timeline(path)
    without = codec.decode(*_body_and_failing_timeline(path))
    with pytest.raises(StaleCache, match="does not match its seal.*replaying the log for the timeline failed too"):
        got.state.to_dict()
    with pytest.raises(StaleCache, match="does not match its seal"):
        list(without.timeline)  # the codec alone, given no recovery


def _body_and_failing_timeline(path: Path) -> tuple[bytes, list[Any]]:
    """The body of the snapshot file ``path`` and its blobs' loaders, each checked against the seal's digest."""
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "big")
    header, body = localcache.unseal(statecache.KIND, data[8:8 + n], localcache.cache_key())
    loaders, offset = [], 8 + n
    for length, digest, _ in header["blobs"]:
        def load(o: int = offset, k: int = length, d: str = digest) -> bytes:
            blob = data[o:o + k]
            if hashlib.sha256(blob).hexdigest() != d:
                raise StaleCache("does not match its seal")
            return blob

        loaders.append(load)
        offset += length
    return body, loaders


def test_a_snapshot_saved_over_a_failing_timeline_holds_the_recovered_one(snapped: tuple[Path, Path],
                                                                          loggable: list[Entry]) -> None:
    # `redline serve` saves its state as it stops; the timeline it holds may still be the snapshot's unread
    # chunks. If they fail their check then, the snapshot written holds the recovered timeline, not an error.
    logdir, path = snapped
    log = open_log(logdir, verify=True)
    try:
        state = statecache.load_state(log, logdir, workers=1, save=False).state
        _flip_timeline(path)
        saved = statecache.save_if_worth(log, logdir, state)
    finally:
        log.store.close()
    assert saved is not None and saved.name == f"state-{len(loggable):012d}.sealed"
    got = _used(logdir)
    assert got.snapshot_size == len(loggable) and got.replayed == 0
    _same(got.state, _reference(loggable, logdir))


def test_a_loaded_snapshot_stays_readable_after_a_newer_one_pruned_it(snapped: tuple[Path, Path],
                                                                       loggable: list[Entry]) -> None:
    logdir, path = snapped
    got = _used(logdir)
    assert got.snapshot_size == 40
    path.unlink()  # what a newer snapshot's pruning (or anyone) does while a server holds this state
    assert got.state.to_dict() == _reference(loggable, logdir).to_dict()


# --- the state digest a snapshot carries -----------------------------------------------------


def _resealed(path: Path, change: Any) -> None:
    """Seal ``path``'s header again under this user's cache key after ``change(header)``: an honest seal over what a
    faulty writer (or codec) might have saved."""
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "big")
    header, body = localcache.unseal(statecache.KIND, raw[8:8 + length], localcache.cache_key())
    change(header)
    sealed = localcache.seal(statecache.KIND, header, body, localcache.cache_key())
    path.write_bytes(len(sealed).to_bytes(8, "big") + sealed + raw[8 + length:])


def _carried(path: Path) -> Any:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "big")
    return localcache.unseal(statecache.KIND, raw[8:8 + length], localcache.cache_key())[0].get("state_digest")


def test_a_snapshot_carries_the_digest_of_a_full_replay_of_its_entries(tmp_path: Path, loggable: list[Entry],
                                                                         save_often: None) -> None:
    logdir = tmp_path / "log"
    written = 0
    for step in (25, len(loggable)):
        _write(logdir, loggable[written:step])
        written = step
        saved = _load(logdir).saved
        assert saved is not None and saved.name == f"state-{step:012d}.sealed"
        full = replay(loggable[:step], State(origin=ORIGIN))
        assert _carried(saved) == full.digest()
    log = open_log(logdir)
    try:
        got = statecache.load_state(log, logdir, workers=1, save=False, check_snapshot=True)
    finally:
        log.store.close()
    assert got.snapshot_size == len(loggable) and got.replayed == 0
    assert got.snapshot_digest == got.state.digest() == replay(loggable, State(origin=ORIGIN)).digest()


def _checked(logdir: Path) -> statecache.Loaded:
    notes: list[str] = []
    log = open_log(logdir)
    try:
        got = statecache.load_state(log, logdir, workers=1, save=False, note=notes.append, check_snapshot=True)
    finally:
        log.store.close()
    got.reason = got.reason or (notes[0] if notes else None)
    return got


def test_a_snapshot_whose_state_is_not_the_digest_it_carries_is_caught_when_checked(
        snapped: tuple[Path, Path], loggable: list[Entry]) -> None:
    logdir, path = snapped
    _resealed(path, lambda header: header.update(state_digest="0" * 64))  # what a codec giving back another state
    unchecked = _used(logdir)  # the seal binds the bytes to this code: by default the digest is not redone
    assert unchecked.snapshot_size == 40 and unchecked.snapshot_digest == "0" * 64
    got = _checked(logdir)
    assert got.snapshot_size is None and got.replayed == len(loggable)
    assert "digest" in (got.reason or "") and "not the 0000000000000000" in (got.reason or ""), got.reason
    _same(got.state, _reference(loggable, logdir))


@pytest.mark.parametrize("digest", [None, "", "0" * 63, "A" * 64, 7])
def test_a_snapshot_without_a_state_digest_is_not_used(snapped: tuple[Path, Path], loggable: list[Entry],
                                                       digest: Any) -> None:
    logdir, path = snapped
    _resealed(path, lambda header: header.pop("state_digest") if digest is None else header.update(
        state_digest=digest))
    got = _used(logdir)
    assert got.snapshot_size is None and "carries no state digest" in (got.reason or ""), got.reason


def test_the_cli_checks_the_snapshot_digest_on_request(tmp_path: Path, loggable: list[Entry],
                                                       save_often: None) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    runner = CliRunner()
    first = runner.invoke(cli, ["state", str(logdir), "--json"])
    assert first.exit_code == 0, first.output
    checked = runner.invoke(cli, ["state", str(logdir), "--json", "--check-snapshot"])
    assert checked.exit_code == 0, checked.output
    assert "digested again" in checked.stderr and checked.stdout == first.stdout
    _resealed(logdir / "snapshots" / f"state-{len(loggable):012d}.sealed",
              lambda header: header.update(state_digest="f" * 64))
    caught = runner.invoke(cli, ["state", str(logdir), "--json", "--check-snapshot"])
    assert caught.exit_code == 0, caught.output
    assert "state snapshot not used" in caught.stderr and "not the ffffffffffffffff" in caught.stderr
    assert caught.stdout == first.stdout


@pytest.mark.parametrize("why", ["other code", "edited"])
def test_a_snapshot_that_cannot_be_used_is_replaced_at_once(tmp_path: Path, loggable: list[Entry], save_often: None,
                                                            monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    # After an upgrade every snapshot was made by other code; the full replay that follows must be saved at
    # once, not only when the log has grown well past the unusable snapshot (every call would replay it all).
    logdir = tmp_path / "log"
    _write(logdir, loggable)
    saved = _load(logdir).saved
    assert saved is not None
    if why == "other code":
        monkeypatch.setattr(localcache, "code_digest", lambda: "0" * 64)
    else:
        data = bytearray(saved.read_bytes())
        data[len(data) // 2] ^= 1
        saved.write_bytes(bytes(data))
    again = _load(logdir)
    assert again.snapshot_size is None and again.replayed == len(loggable) and again.saved == saved
    third = _used(logdir)
    assert third.snapshot_size == len(loggable) and third.replayed == 0 and third.reason is None
    _same(third.state, _reference(loggable, logdir))


def test_a_usable_snapshot_is_not_rewritten_without_new_entries(snapped: tuple[Path, Path]) -> None:
    logdir, _ = snapped
    first = _load(logdir)  # from the snapshot at 40; the entries after it replayed, and saved (save_often)
    assert first.snapshot_size == 40 and first.saved is not None
    second = _load(logdir)
    assert second.snapshot_size == first.state.next_index and second.replayed == 0 and second.saved is None
