"""``redline state URL`` and ``redline.log.remote``: the state and proofs derived from a log's tiles alone, over HTTP.

Every log here is real (SQLite, signed checkpoints), published with ``write_static`` and served on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers.tile_server import serve_tiles
from scenario_kit import inventory_fields, labs_world, make_world

from redline.cli.main import cli
from redline.cli.remote_state import open_remote, remote_state
from redline.crypto.keys import SigningKey
from redline.crypto.note import add_signatures
from redline.errors import BadSignature, InconsistentLog, InvalidProof, MalformedInput
from redline.log.checkpoint import Checkpoint
from redline.log.remote import MAX_CHECKPOINT_BYTES, FetchError, RemoteLog, is_url
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.log.tiles import write_static
from redline.log.witness import WitnessPolicy, cosign, witness_verifier
from redline.statements import ComputeInventory


def publish(log: Log, outdir: Path, size: int | None = None) -> Path:
    """Write the tiles of ``log`` at ``size`` (its latest by default) under ``outdir``."""
    size = log.size if size is None else size
    write_static(outdir, size=size, reader=log.store, entries=log.store.read_leaves, checkpoint=log.checkpoint(size))
    return outdir


def raw_log(tmp_path: Path, batches: list[int], name: str = "redline.example/raw") -> Log:
    """A log of opaque entries appended in ``batches`` (one checkpoint each), entry i being ``b"entry i"``."""
    log = Log.create(SqliteStore(tmp_path / "raw.db", create=True), SigningKey(name, bytes(32)),
                     clock=iter(range(1_000, 10**9, 7)).__next__)
    n = 0
    for count in batches:
        log.append([b"entry %d" % i for i in range(n, n + count)])
        n += count
    return log


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def world(tmp_path: Path):
    w = labs_world(tmp_path / "log", inventories={"lab-a": 100, "lab-b": 3})
    w.sub("lab-c", ComputeInventory, **inventory_fields(7))
    return w


def test_is_url() -> None:
    assert is_url("http://127.0.0.1:1/x") and is_url("https://log.example")
    assert not is_url("logdir") and not is_url("/tmp/http://x") and not is_url("ftp://x")


def test_state_from_tiles_is_the_local_state(world, tmp_path: Path) -> None:
    logdir = world.path.parent
    with serve_tiles(publish(world.log, tmp_path / "tiles")) as server:
        key = world.log.verifier.to_string()
        remote = CliRunner().invoke(cli, ["state", server.url, "--log-key", key, "--json"], catch_exceptions=False)
        local = CliRunner().invoke(cli, ["state", str(logdir), "--json", "--log-key", key], catch_exceptions=False)
        assert remote.exit_code == 0, remote.output
        assert remote.stdout == local.stdout
        assert remote.stderr == local.stderr == f"digest {world.state.digest()}\n"
        doc = json.loads(remote.stdout)
        assert doc["origin"] == world.log.origin and doc["next_index"] == world.log.size
        assert set(doc["parties"]) >= {"lab-a", "lab-b", "lab-c", "gov", "audit"}

        shown = run("state", server.url + "/", "--log-key", key)
        assert shown.exit_code == 0
        assert shown.stdout == run("state", str(logdir)).stdout
        assert f"log {world.log.origin}: {world.log.size} entries, status normal" in shown.stdout
        assert "policies" in shown.stdout and "violations" in shown.stdout and "lab-a" in shown.stdout
        assert {"/checkpoint", f"/tile/entries/000.p/{world.log.size}"} <= set(server.requests)


def test_state_of_an_empty_remote_log_names_the_url(tmp_path: Path) -> None:
    log = raw_log(tmp_path, [])
    with serve_tiles(publish(log, tmp_path / "tiles")) as server:
        out = run("state", server.url, "--log-key", log.verifier.to_string())
        assert out.exit_code == 0
        assert "is empty" in out.stdout and "127.0.0.1" in out.stdout


def test_url_needs_a_log_key_and_a_directory_may_pin_one(world, tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["state", "http://127.0.0.1:9/"])
    assert out.exit_code == 2 and "--log-key" in out.stderr
    # a directory: --log-key pins the key (the store's own is refused if it is another)
    out = CliRunner().invoke(cli, ["state", str(world.path.parent), "--log-key", world.log.verifier.to_string()])
    assert out.exit_code == 0, out.output
    assert "trusting the log key stored" not in out.stderr
    other = SigningKey.generate(world.log.origin).verifier().to_string()
    out = CliRunner().invoke(cli, ["state", str(world.path.parent), "--log-key", other])
    assert out.exit_code == 3 and "not the trusted key" in out.output
    out = CliRunner().invoke(cli, ["state", str(world.path.parent)])
    assert out.exit_code == 0 and "trusting the log key stored in the log itself" in out.stderr
    out = CliRunner().invoke(cli, ["state", str(world.path.parent), "--witness-policy", str(__file__)])
    assert out.exit_code == 2 and "for a log URL" in out.stderr


def test_log_key_from_a_pub_file(world, tmp_path: Path) -> None:
    pub = tmp_path / "log.pub"
    pub.write_text(world.log.verifier.to_string() + "\n")
    with serve_tiles(publish(world.log, tmp_path / "tiles")) as server:
        assert remote_state(server.url, str(pub)).digest() == world.state.digest()


def test_rekeyed_log_is_refused(world, tmp_path: Path) -> None:
    impostor = Log.create(SqliteStore(tmp_path / "impostor.db", create=True), SigningKey.generate(world.log.origin))
    impostor.append([e for _, _, e in world.log.entries()])
    with serve_tiles(publish(impostor, tmp_path / "tiles")) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", world.log.verifier.to_string()])
        assert out.exit_code == BadSignature.exit_code == 3
        assert out.stdout == "" and f"{server.url}/checkpoint" in out.stderr


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("victim", "offset", "code"), [
    ("tile/0/000.p/{n}", 5, InconsistentLog.exit_code),  # a hash in the level-0 tile
    ("tile/entries/000.p/{n}", 40, InconsistentLog.exit_code),  # a byte inside an entry
    ("tile/entries/000.p/{n}", 0, MalformedInput.exit_code),  # a length prefix: the bundle no longer parses
])
def test_corrupted_tiles_give_an_error_never_a_state(world, tmp_path: Path, victim: str, offset: int,
                                                    code: int) -> None:
    tiles = publish(world.log, tmp_path / "tiles")
    path = tiles / victim.format(n=world.log.size)
    _flip(path, offset)
    with serve_tiles(tiles) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", world.log.verifier.to_string(), "--json"])
    assert out.exit_code == code, out.output
    assert out.stdout == ""
    assert "error:" in out.stderr and server.url in out.stderr


def test_truncated_hash_tile(world, tmp_path: Path) -> None:
    tiles = publish(world.log, tmp_path / "tiles")
    path = tiles / f"tile/0/000.p/{world.log.size}"
    path.write_bytes(path.read_bytes()[:-1])
    with serve_tiles(tiles) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", world.log.verifier.to_string()])
    assert out.exit_code == MalformedInput.exit_code and "tile/0/000.p" in out.stderr and out.stdout == ""


def test_tampered_checkpoint(world, tmp_path: Path) -> None:
    tiles = publish(world.log, tmp_path / "tiles")
    cp = tiles / "checkpoint"
    cp.write_bytes(cp.read_bytes().replace(b"\n%d\n" % world.log.size, b"\n%d\n" % (world.log.size - 1), 1))
    with serve_tiles(tiles) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", world.log.verifier.to_string()])
    assert out.exit_code == BadSignature.exit_code and out.stdout == ""


def test_missing_tiles_and_unreachable_servers_name_the_url(world, tmp_path: Path) -> None:
    tiles = publish(world.log, tmp_path / "tiles")
    (tiles / f"tile/entries/000.p/{world.log.size}").unlink()
    key = world.log.verifier.to_string()
    with serve_tiles(tiles) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", key])
        assert out.exit_code == FetchError.exit_code == 4
        assert f"GET {server.url}/tile/entries/000.p/{world.log.size}: HTTP 404" in out.stderr
        gone = server.url
    out = CliRunner().invoke(cli, ["state", gone, "--log-key", key])
    assert out.exit_code == 4 and f"GET {gone}/checkpoint" in out.stderr


def test_responses_are_bounded(world, tmp_path: Path) -> None:
    tiles = publish(world.log, tmp_path / "tiles")
    (tiles / "checkpoint").write_bytes(b"x" * (MAX_CHECKPOINT_BYTES + 1))
    with serve_tiles(tiles) as server, RemoteLog(server.url, world.log.verifier) as remote:
        with pytest.raises(FetchError, match="over the 65536-byte bound") as err:
            remote.checkpoint()
        assert err.value.url == f"{server.url}/checkpoint"
        with pytest.raises(FetchError, match="over the 3-byte bound"):
            remote.fetch(f"tile/0/000.p/{world.log.size}", 3)


# --- the client on bigger trees -----------------------------------------------------


def test_entries_across_many_tiles(tmp_path: Path) -> None:
    log = raw_log(tmp_path, [300, 257, 100])
    with serve_tiles(publish(log, tmp_path / "tiles")) as server, RemoteLog(server.url, log.verifier) as remote:
        cp = remote.checkpoint().checkpoint
        assert cp.size == 657
        assert list(remote.entries(cp)) == list(log.entries())
        assert list(remote.entries(cp, 520)) == list(log.entries(520))
        assert list(remote.entries(cp, 657)) == []
        assert "/tile/entries/001" in server.requests and "/tile/entries/002.p/145" in server.requests


@pytest.mark.parametrize("batches", [[1, 1], [5, 300], [256, 256, 1], [300, 257, 100, 70_000 - 657]])
def test_consistency_from_tiles_matches_the_log(tmp_path: Path, batches: list[int]) -> None:
    log = raw_log(tmp_path, batches)
    sizes = log.checkpoint_sizes()
    with serve_tiles(publish(log, tmp_path / "tiles")) as server, RemoteLog(server.url, log.verifier) as remote:
        new = remote.checkpoint().checkpoint
        for m in sizes:
            old = Checkpoint(log.origin, m, log.root(m))
            want = log.prove_consistency(m, new.size) if m else []
            assert remote.consistency_proof(old, new) == want
        forged = Checkpoint(log.origin, sizes[1], bytes(32))
        with pytest.raises(InvalidProof):
            remote.consistency_proof(forged, new)


def test_consistency_from_a_partial_older_tree(tmp_path: Path) -> None:
    """Checkpoints at 300 then 700: the proof for 300 -> 700 needs only 700's tiles."""
    log = raw_log(tmp_path, [300, 400])
    tiles = tmp_path / "tiles"
    publish(log, tiles, 300)
    publish(log, tiles, 700)
    with serve_tiles(tiles) as server, RemoteLog(server.url, log.verifier) as remote:
        new = remote.checkpoint().checkpoint
        old = Checkpoint(log.origin, 300, log.root(300))
        server.requests.clear()
        assert remote.consistency_proof(old, new) == log.prove_consistency(300, 700)
        assert all(".p/" not in r or r.endswith((".p/188", ".p/2")) for r in server.requests)


# --- witness policies ------------------------------------------------------------


def test_state_with_a_witness_policy(tmp_path: Path) -> None:
    now_s = int(time.time())
    w = make_world(tmp_path / "log", [("lab-a", "lab")], start_ms=(now_s - 3600) * 1000)
    witnesses = [SigningKey(f"witness-{n}.example", bytes([n]) * 32) for n in (1, 2, 3)]
    policy = tmp_path / "witnesses.txt"
    policy.write_text(WitnessPolicy(tuple(map(witness_verifier, witnesses)), 2).to_text())
    tiles = publish(w.log, tmp_path / "tiles")
    note = (tiles / "checkpoint").read_bytes()
    text = Checkpoint.from_text(note.decode().split("\n\n")[0] + "\n").text()
    key = w.log.verifier.to_string()
    with serve_tiles(tiles) as server:
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", key, "--witness-policy", str(policy)])
        assert out.exit_code == 9 and "needs 2 of 3" in out.stderr  # not cosigned yet

        (tiles / "checkpoint").write_bytes(add_signatures(note, cosign(text, witnesses[0], now_s),
                                                          cosign(text, witnesses[2], now_s)))
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", key, "--witness-policy", str(policy),
                                       "--json"])
        assert out.exit_code == 0, out.output
        assert out.stderr == f"digest {w.state.digest()}\n"
        with open_remote(server.url, key, policy) as remote:
            assert set(remote.checkpoint().cosignatures) == {"witness-1.example", "witness-3.example"}

        # cosigned an hour before the log integrated its last entry: the log's clock runs ahead of the witnesses
        (tiles / "checkpoint").write_bytes(add_signatures(note, cosign(text, witnesses[0], now_s - 7200),
                                                          cosign(text, witnesses[1], now_s - 7200)))
        out = CliRunner().invoke(cli, ["state", server.url, "--log-key", key, "--witness-policy", str(policy)])
        assert out.exit_code != 0 and "run ahead" in out.stderr and out.stdout == ""


def test_slow_servers_time_out(world, tmp_path: Path) -> None:
    with serve_tiles(publish(world.log, tmp_path / "tiles")) as server:
        server.on_request = lambda path: time.sleep(1.0)
        slow = r"GET http://127\.0\.0\.1:\d+/checkpoint: timed out after 0\.2 s"
        with RemoteLog(server.url, world.log.verifier, timeout_s=0.2) as remote, pytest.raises(FetchError, match=slow):
            remote.checkpoint()
