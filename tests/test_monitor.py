"""``redline monitor``: following a log served as tiles on 127.0.0.1, its memory, and the misbehaviour it catches."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.tile_server import serve_tiles
from scenario_kit import World, make_world

from redline.cli.main import cli
from redline.cli.monitor import CheckpointMemory
from redline.crypto.encoding import b64encode
from redline.crypto.keys import SigningKey
from redline.crypto.note import add_signatures
from redline.errors import BadSignature, InconsistentLog, MalformedInput, Rollback, SplitView
from redline.log.checkpoint import open_checkpoint
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.log.tiles import write_static
from redline.log.witness import WitnessPolicy, cosign, witness_verifier


def publish(log: Log, outdir: Path, size: int | None = None) -> Path:
    """Write the tiles of ``log`` at ``size`` (its latest by default) under ``outdir``."""
    size = log.size if size is None else size
    write_static(outdir, size=size, reader=log.store, entries=log.store.read_leaves, checkpoint=log.checkpoint(size))
    return outdir


def world(tmp_path: Path, name: str) -> World:
    return make_world(tmp_path / name, [("lab-a", "lab")])


def monitor(url: str, log: Log | str, memory: Path, *args: str):
    key = log if isinstance(log, str) else log.verifier.to_string()
    return CliRunner().invoke(cli, ["monitor", url, "--log-key", key, "--memory", str(memory), *args])


def rounds(out) -> list[dict]:
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_exit_codes_are_distinct() -> None:
    codes = {SplitView.exit_code, Rollback.exit_code}
    assert len(codes) == 2 and not codes & {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 65, 66, 73, 74}
    assert issubclass(SplitView, InconsistentLog) and issubclass(Rollback, InconsistentLog)


def test_follows_growth_and_remembers(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    tiles, memory = publish(w.log, tmp_path / "tiles"), tmp_path / "memory"
    with serve_tiles(tiles) as server:
        out = monitor(server.url, w.log, memory, "--once")
        assert out.exit_code == 0, out.output
        assert out.stdout.startswith(f"round 1: {w.log.origin} size 2 (first seen")
        mem = CheckpointMemory(memory).path(w.log.origin)
        assert mem.name == "redline.example%2Flog.checkpoint"
        assert mem.read_bytes() == w.log.checkpoint(2)
        assert stat.S_IMODE(mem.stat().st_mode) == 0o644

        w.admit("lab-b", "lab")
        w.admit("lab-c", "lab")
        publish(w.log, tiles)
        out = monitor(server.url, w.log, memory, "--once")
        assert out.exit_code == 0, out.output
        assert out.stdout == f"round 1: {w.log.origin} size 4, grew from 2, consistent\n"
        assert mem.read_bytes() == w.log.checkpoint(4)

        out = monitor(server.url, w.log, memory, "--once", "--json")
        assert out.exit_code == 0
        root = b64encode(w.log.root(4))
        assert rounds(out) == [{"round": 1, "status": "unchanged", "origin": w.log.origin, "size": 4, "root": root,
                                "cosignatures": {}, "previous_size": 4, "previous_root": root}]


def test_rounds_follow_growth_in_one_run(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    for party in ("lab-b", "lab-c", "lab-d"):
        w.admit(party, "lab")
    tiles, memory = publish(w.log, tmp_path / "tiles", 2), tmp_path / "memory"
    pending = [3, 5]
    with serve_tiles(tiles) as server:
        served = 0

        def grow(path: str) -> None:
            nonlocal served
            if path == "/checkpoint":
                served += 1
                if served > 1 and pending:
                    publish(w.log, tiles, pending.pop(0))

        server.on_request = grow
        out = monitor(server.url, w.log, memory, "--interval", "0", "--max-rounds", "3", "--json", "--replay")
    assert out.exit_code == 0, out.output
    got = rounds(out)
    assert [(r["status"], r["size"], r.get("previous_size")) for r in got] == \
        [("first", 2, None), ("grew", 3, 2), ("grew", 5, 3)]
    assert all("new_violations" not in r for r in got)
    assert CheckpointMemory(memory).path(w.log.origin).read_bytes() == w.log.checkpoint(5)


def _proof_notes(path: Path) -> tuple[bytes, bytes]:
    text = path.read_bytes()
    old = text.split(b"-----BEGIN REMEMBERED CHECKPOINT-----\n")[1].split(b"-----END REMEMBERED CHECKPOINT-----")[0]
    new = text.split(b"-----BEGIN SERVED CHECKPOINT-----\n")[1].split(b"-----END SERVED CHECKPOINT-----")[0]
    return old, new


def test_rollback(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    w.admit("lab-b", "lab")
    tiles, memory = publish(w.log, tmp_path / "tiles"), tmp_path / "memory"
    with serve_tiles(tiles) as server:
        assert monitor(server.url, w.log, memory, "--once").exit_code == 0
        publish(w.log, tiles, 2)  # the server goes back to an older checkpoint
        out = monitor(server.url, w.log, memory, "--once")
        again = monitor(server.url, w.log, memory, "--once", "--json")
    assert out.exit_code == Rollback.exit_code == 12, out.output
    proof = memory / "proof-redline.example%2Flog-3-2.txt"
    assert out.stdout.startswith("round 1: ROLLBACK: redline.example/log size 2, smaller than the remembered size 3")
    assert "rollback" in out.stderr and str(proof) in out.stderr
    assert _proof_notes(proof) == (w.log.checkpoint(3), w.log.checkpoint(2))
    assert proof.read_text().startswith("redline proof of misbehaviour: rollback\norigin: redline.example/log\n")
    assert CheckpointMemory(memory).path(w.log.origin).read_bytes() == w.log.checkpoint(3)  # memory kept
    # seen again: the same proof, not a second file
    assert again.exit_code == 12
    assert rounds(again)[0]["status"] == "rollback" and rounds(again)[0]["proof"] == str(proof)
    assert sorted(p.name for p in memory.glob("proof-*")) == [proof.name]


def _forked(tmp_path: Path) -> tuple[World, World]:
    """Two logs with the same key and origin, identical for 2 entries, then each admitting a different lab."""
    a, b = world(tmp_path, "a"), world(tmp_path, "b")
    assert a.log.checkpoint() == b.log.checkpoint()
    a.admit("lab-b", "lab")
    b.admit("lab-x", "lab")
    assert a.log.root() != b.log.root() and a.log.size == b.log.size == 3
    return a, b


def test_split_view_same_size(tmp_path: Path) -> None:
    a, b = _forked(tmp_path)
    tiles_a, tiles_b, memory = publish(a.log, tmp_path / "ta"), publish(b.log, tmp_path / "tb"), tmp_path / "m"
    with serve_tiles(tiles_a) as server:
        assert monitor(server.url, a.log, memory, "--once").exit_code == 0
        server.root = tiles_b  # the same URL now shows the other history
        out = monitor(server.url, a.log, memory, "--once")
    assert out.exit_code == SplitView.exit_code == 11, out.output
    assert "SPLIT VIEW" in out.stdout and "two different roots for the same tree size 3" in out.stderr
    proof = memory / "proof-redline.example%2Flog-3-3.txt"
    assert _proof_notes(proof) == (a.log.checkpoint(), b.log.checkpoint())
    key = a.log.verifier
    old, new = (open_checkpoint(n, key)[0] for n in _proof_notes(proof))  # both verify under the log key
    assert old.size == new.size and old.root != new.root


def test_split_view_newer_tree_not_extending(tmp_path: Path) -> None:
    a, b = _forked(tmp_path)
    b.admit("lab-y", "lab")
    b.admit("lab-z", "lab")
    tiles_a, tiles_b, memory = publish(a.log, tmp_path / "ta"), publish(b.log, tmp_path / "tb"), tmp_path / "m"
    with serve_tiles(tiles_a) as server:
        assert monitor(server.url, a.log, memory, "--once").exit_code == 0
        server.root = tiles_b
        out = monitor(server.url, a.log, memory, "--once", "--json")
    assert out.exit_code == 11, out.output
    r = rounds(out)[0]
    assert (r["status"], r["size"], r["previous_size"]) == ("split-view", 5, 3)
    assert _proof_notes(Path(r["proof"])) == (a.log.checkpoint(), b.log.checkpoint())
    assert "does not extend the tree of size 3" in Path(r["proof"]).read_text()
    assert CheckpointMemory(memory).path(a.log.origin).read_bytes() == a.log.checkpoint()


def test_rekeyed_log(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    impostor = Log.create(SqliteStore(tmp_path / "impostor.db", create=True), SigningKey.generate(w.log.origin))
    impostor.append([e for _, _, e in w.log.entries()])
    tiles, memory = publish(w.log, tmp_path / "tiles"), tmp_path / "memory"
    with serve_tiles(tiles) as server:
        assert monitor(server.url, w.log, memory, "--once").exit_code == 0
        server.root = publish(impostor, tmp_path / "impostor")
        out = monitor(server.url, w.log, memory, "--once")
    assert out.exit_code == BadSignature.exit_code == 3
    assert f"{server.url}/checkpoint" in out.stderr
    assert CheckpointMemory(memory).path(w.log.origin).read_bytes() == w.log.checkpoint()
    assert not list(memory.glob("proof-*"))


def test_corrupted_tile_is_an_error_not_a_split_view(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    tiles, memory = publish(w.log, tmp_path / "tiles"), tmp_path / "memory"
    with serve_tiles(tiles) as server:
        assert monitor(server.url, w.log, memory, "--once").exit_code == 0
        w.admit("lab-b", "lab")
        w.admit("lab-c", "lab")
        publish(w.log, tiles)
        tile = tiles / "tile/0/000.p/4"
        data = bytearray(tile.read_bytes())
        data[0] ^= 1
        tile.write_bytes(bytes(data))
        out = monitor(server.url, w.log, memory, "--once")
    assert out.exit_code == InconsistentLog.exit_code == 6, out.output
    assert "tile" in out.stderr and server.url in out.stderr
    assert CheckpointMemory(memory).path(w.log.origin).read_bytes() == w.log.checkpoint(2)
    assert not list(memory.glob("proof-*"))


def test_refuses_a_memory_that_does_not_parse(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    memory = tmp_path / "memory"
    memory.mkdir()
    mem = CheckpointMemory(memory).path(w.log.origin)
    mem.write_bytes(b"not a checkpoint\n")
    with serve_tiles(publish(w.log, tmp_path / "tiles")) as server:
        out = monitor(server.url, w.log, memory, "--once")
    assert out.exit_code == MalformedInput.exit_code and "refusing to replace it" in out.stderr
    assert str(mem) in out.stderr
    assert mem.read_bytes() == b"not a checkpoint\n"


def test_fetch_errors_are_retried_then_reported(tmp_path: Path) -> None:
    w = world(tmp_path, "a")
    with serve_tiles(publish(w.log, tmp_path / "tiles")) as server:
        url = server.url
    out = monitor(url, w.log, tmp_path / "memory", "--interval", "0", "--max-rounds", "2")
    assert out.exit_code == 4
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(f"error: GET {url}/checkpoint" in line for line in lines)
    out = monitor(url + "/", w.log, tmp_path / "memory", "--once", "--json")
    assert out.exit_code == 4 and rounds(out)[0]["error"] == "FetchError"


@pytest.mark.parametrize("args", [
    ["monitor", "http://127.0.0.1:9", "--memory", "m", "--once"],  # no --log-key
    ["monitor", "logdir", "--log-key", "K", "--memory", "m", "--once"],  # not a URL
    ["monitor", "http://127.0.0.1:9", "--log-key", "K", "--memory", "m"],  # neither --once nor --interval
    ["monitor", "http://127.0.0.1:9", "--log-key", "K", "--memory", "m", "--once", "--interval", "1"],
])
def test_usage_errors(args: list[str]) -> None:
    assert CliRunner().invoke(cli, args).exit_code == 2


def test_witness_policy(tmp_path: Path) -> None:
    now_s = int(time.time())
    w = make_world(tmp_path / "a", [("lab-a", "lab")], start_ms=(now_s - 60) * 1000)
    witness = SigningKey("witness.example", bytes([7]) * 32)
    policy = tmp_path / "witnesses.txt"
    policy.write_text(WitnessPolicy((witness_verifier(witness),), 1).to_text())
    tiles, memory = publish(w.log, tmp_path / "tiles"), tmp_path / "memory"
    note = (tiles / "checkpoint").read_bytes()
    with serve_tiles(tiles) as server:
        out = monitor(server.url, w.log, memory, "--once", "--witness-policy", str(policy))
        assert out.exit_code == 9 and not memory.exists()
        text = note.decode().split("\n\n")[0] + "\n"
        (tiles / "checkpoint").write_bytes(add_signatures(note, cosign(text, witness, now_s)))
        out = monitor(server.url, w.log, memory, "--once", "--witness-policy", str(policy), "--json")
    assert out.exit_code == 0, out.output
    assert rounds(out)[0]["cosignatures"] == {"witness.example": now_s}
