"""``redline serve``: the tlog-tiles read API (partial tiles for every checkpointed size), batched submissions
with receipts, refusals, body and queue limits, the JSON views, and the command itself."""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from fastapi.testclient import TestClient
from helpers.loopback import LoopbackServer
from scenario_kit import T0_MS, Clock, inventory_fields, key, labs_world, publication_fields, utc

from redline.cli.logdir import create_log, open_log
from redline.cli.main import cli
from redline.crypto.keys import SigningKey, save_signing_key
from redline.crypto.note import sign_note
from redline.errors import InvalidProof
from redline.log import merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.log.tiles import (
    TileHashReader,
    TilePath,
    parse_entry_bundle,
    tile_implied,
    tiles_for_size,
    tiles_for_sizes,
    write_static,
)
from redline.policy import load_pack
from redline.registry import Registry
from redline.server import create_app
from redline.server.app import MAX_BODY_BYTES, status_for
from redline.statements import ComputeInventory, PolicyPublication

#: Batches end at these sizes: each signs a checkpoint (around tile edges at levels 0 and 1).
SIZES = (1, 2, 3, 7, 8, 9, 255, 256, 257, 300, 511, 512, 513, 1000)


def raw_log(tmp_path: Path, sizes: tuple[int, ...] = SIZES) -> Log:
    """A log of plain byte entries whose batches end at ``sizes``."""
    lg = Log.create(SqliteStore(tmp_path / "log.db", create=True), key("redline.example/tiles"), clock=Clock())
    n = 0
    for s in sizes:
        lg.append([b"entry %d" % i for i in range(n, s)])
        n = s
    return lg


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Log, TestClient]]:
    lg = raw_log(tmp_path_factory.mktemp("tiles"))
    with TestClient(create_app(Registry(lg))) as client:
        yield lg, client


def fetcher(client: TestClient, seen: dict[str, str] | None = None):
    def fetch(tile: TilePath) -> bytes:
        r = client.get("/" + tile.path)
        assert r.status_code == 200, (tile.path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/octet-stream"
        if seen is not None:
            seen[tile.path] = r.headers["cache-control"]
        return r.content
    return fetch


# --- tiles ---------------------------------------------------------------------------------


def test_every_checkpointed_size_verifies_from_served_tiles(tiled: tuple[Log, TestClient]) -> None:
    """For each signed checkpoint: the tree hash, inclusion and consistency proofs, all read from served tiles."""
    lg, client = tiled
    assert lg.checkpoint_sizes() == [0, *SIZES]
    caches: dict[str, str] = {}
    previous = None
    for size in SIZES:
        cp, _ = open_checkpoint(lg.checkpoint(size), lg.verifier)
        reader = TileHashReader(size, fetcher(client, caches), root=cp.root)
        assert merkle.tree_hash(size, reader) == cp.root
        for index in sorted({0, size // 2, size - 1}):
            proof = merkle.prove_inclusion(index, size, reader)
            merkle.verify_inclusion(index, size, merkle.leaf_hash(lg.leaf(index)), proof, cp.root)
        if previous is not None:
            old, _ = open_checkpoint(lg.checkpoint(previous), lg.verifier)
            merkle.verify_consistency(previous, size, old.root, cp.root,
                                      merkle.prove_consistency(previous, size, reader))
        previous = size
    # every partial tile of every size was fetched: short cache; full tiles: immutable
    for size in SIZES:
        for tile in tiles_for_size(size):
            if not tile.entries and tile.is_partial:
                assert caches[tile.path] == "public, max-age=60", tile.path
    assert caches["tile/0/000"] == "public, max-age=31536000, immutable"
    assert caches["tile/0/000.p/7"] == "public, max-age=60"


def test_entry_bundles_for_every_checkpointed_size(tiled: tuple[Log, TestClient]) -> None:
    lg, client = tiled
    for size in SIZES:
        for tile in tiles_for_size(size):
            if not tile.entries:
                continue
            r = client.get("/" + tile.path)
            assert r.status_code == 200, tile.path
            assert r.headers["cache-control"] == ("public, max-age=60" if tile.is_partial
                                                  else "public, max-age=31536000, immutable")
            leaves = parse_entry_bundle(r.content, tile.width)
            first = tile.index * 256
            assert leaves == [lg.leaf(first + k) for k in range(tile.width)]


def test_tiles_no_checkpoint_implies_are_404(tiled: tuple[Log, TestClient]) -> None:
    _, client = tiled
    for path in ("tile/0/000.p/4",          # no checkpoint at size 4
                 "tile/0/000.p/200",        # nor 200
                 "tile/0/003",              # full tile 3 needs 1024 entries
                 "tile/0/003.p/233",        # size 1000 makes tile 3 .p/232, not 233
                 "tile/1/000",              # a full level-1 tile needs 65536 entries
                 "tile/1/000.p/4",          # no size in 1024..1279 was checkpointed
                 "tile/2/000.p/1",
                 "tile/entries/000.p/4", "tile/entries/004",
                 "tile/0/0", "tile/0/x000/001", "tile/00/000", "tile/0/000.p/0", "tile/0/000.p/256",
                 "tile/0/000.p/", "tile/64/000", "tile/entries", "tile/x/000", "tile/0/000.p/7/extra"):
        r = client.get("/" + path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/tile/0/003.p/232").status_code == 200
    assert client.get("/tile/1/000.p/3").status_code == 200  # size 1000
    assert client.get("/tile/1/000.p/2").status_code == 200  # sizes 512 and 513 make it 2 wide


def test_checkpoint_is_served_as_text_without_long_cache(tiled: tuple[Log, TestClient]) -> None:
    lg, client = tiled
    r = client.get("/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.content == lg.checkpoint()


def test_tile_implied_matches_the_sizes_by_brute_force() -> None:
    sizes = [0, 1, 5, 256, 300, 65536, 65600, 70000]
    implied = set(tiles_for_sizes(sizes))
    for level in (0, 1, 2):
        for index in range(3):
            for width in range(1, 257):
                for entries in ((False, True) if level == 0 else (False,)):
                    tile = TilePath(level, index, width, entries)
                    assert tile_implied(tile, sizes) == (tile in implied), tile


def test_write_static_writes_partial_tiles_of_every_checkpointed_size(tmp_path: Path,
                                                                      tiled: tuple[Log, TestClient]) -> None:
    lg, client = tiled
    out = tmp_path / "static"
    write_static(out, size=lg.size, reader=lg.store, entries=lg.store.read_leaves, checkpoint=lg.checkpoint(),
                 sizes=lg.checkpoint_sizes())
    for size in SIZES:
        cp, _ = open_checkpoint(lg.checkpoint(size), lg.verifier)
        reader = TileHashReader(size, lambda t: (out / t.path).read_bytes(), root=cp.root)
        assert merkle.tree_hash(size, reader) == cp.root
        for tile in tiles_for_size(size):
            assert (out / tile.path).read_bytes() == client.get("/" + tile.path).content
    # a second run writes nothing new
    assert write_static(out, size=lg.size, reader=lg.store, entries=lg.store.read_leaves,
                        checkpoint=lg.checkpoint(), sizes=lg.checkpoint_sizes()) == []


def test_cli_log_tiles_writes_every_checkpointed_right_edge(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    runner = CliRunner()
    assert runner.invoke(cli, ["log", "init", str(logdir), "--origin", "redline.example/cli"]).exit_code == 0
    for n, batch in enumerate(([b"a"], [b"b", b"c"], [b"d"] * 4)):
        files = []
        for k, data in enumerate(batch):
            f = tmp_path / f"e{n}-{k}"
            f.write_bytes(data)
            files.append(str(f))
        assert runner.invoke(cli, ["log", "append", str(logdir), *files]).exit_code == 0
    res = runner.invoke(cli, ["log", "tiles", str(logdir), str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    for width in (1, 3, 7):
        assert (tmp_path / "out" / f"tile/0/000.p/{width}").is_file()
        assert (tmp_path / "out" / f"tile/entries/000.p/{width}").is_file()


# --- submissions ----------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path):
    return labs_world(tmp_path)


def test_submission_answers_a_receipt_that_verifies(world) -> None:
    with TestClient(create_app(world.registry)) as client:
        env = world.envelope("lab-a", ComputeInventory, **inventory_fields(10))
        r = client.post("/submit", content=env, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        index = int(r.headers["redline-index"])
        assert r.headers["location"] == f"/api/entries/{index}"
        cp, t = verify_receipt(Receipt.parse(r.content), env, world.log.verifier)
        assert (cp.size, t, index) == (world.log.size, int(r.headers["redline-time-ms"]), world.log.size - 1)
        assert world.log.entry(index)[1] == env


def test_a_concurrent_burst_is_batched_and_every_receipt_verifies(tmp_path: Path) -> None:
    world = labs_world(tmp_path)
    labs = [f"burst-{k:02d}" for k in range(50)]
    for name in labs:
        world.admit(name, "lab")
    envelopes = [world.envelope(name, ComputeInventory, **inventory_fields(k + 1)) for k, name in enumerate(labs)]
    before = world.log.size
    app = create_app(world.registry, batch_ms=50)
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(lambda e: client.post("/submit", content=e), envelopes))
    assert [a.status_code for a in answers] == [200] * 50
    service = app.state.service
    assert 1 <= service.appends < 50, service.appends  # batched: fewer appends than submissions
    assert world.log.size == before + 50
    assert len(world.log.checkpoint_sizes()) < before + 50 + 1
    indexes = set()
    for env, a in zip(envelopes, answers):
        receipt = Receipt.parse(a.content)
        verify_receipt(receipt, env, world.log.verifier)
        assert world.log.entry(receipt.index)[1] == env
        indexes.add(receipt.index)
    assert indexes == set(range(before, before + 50))
    assert not world.state.rejected


def test_one_batch_may_hold_consecutive_statements_of_one_party(world) -> None:
    """submit_many admits in order against the state as the batch left it: seq n and n+1 in one append."""
    first = world.envelope("lab-a", ComputeInventory, **inventory_fields(1))
    second = world.envelope("lab-a", ComputeInventory, seq=world.registry.next_seq("lab-a") + 1,
                            **inventory_fields(2))
    replayed = first
    before, sizes = world.log.size, len(world.log.checkpoint_sizes())
    results = world.registry.submit_many([first, second, replayed, b"not json"])
    assert [type(r).__name__ for r in results] == ["Submitted", "Submitted", "SequenceError", "MalformedInput"]
    assert world.log.size == before + 2 and len(world.log.checkpoint_sizes()) == sizes + 1
    for env, r in zip((first, second), results[:2]):
        verify_receipt(r.receipt, env, world.log.verifier)
    from scenario_kit import digests_in_fresh_process
    assert digests_in_fresh_process([world.entries()], world.path.parent) == [world.state.digest()]


def test_refusals_get_their_status_and_leave_the_log_alone(world) -> None:
    world.keys["impostor"] = SigningKey("lab-a", bytes(range(32)))  # a key no admitted party holds
    world.sub("lab-a", ComputeInventory, **inventory_fields(3))  # so that seq 1 replays
    cases = {
        400: (b"{not json", "MalformedInput"),
        403: (world.envelope("lab-a", ComputeInventory, signer="impostor", **inventory_fields(1)), "UnknownParty"),
        409: (world.envelope("lab-a", ComputeInventory, seq=1, **inventory_fields(1)), "SequenceError"),
        422: (world.envelope("lab-a", ComputeInventory, **inventory_fields(1, when=utc(T0_MS + 10 * 86_400_000))),
              "InvalidStatement"),
    }
    not_allowed = world.envelope("lab-b", PolicyPublication, **publication_fields(load_pack("eu-ai-act"),
                                                                                  when=utc(T0_MS)))
    with TestClient(create_app(world.registry)) as client:
        snapshot = world.snapshot()
        for status, (body, error) in cases.items():
            r = client.post("/submit", content=body)
            assert r.status_code == status, (status, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["error"] == error and r.json()["status"] == status and r.json()["detail"]
        r = client.post("/submit", content=not_allowed)
        assert (r.status_code, r.json()["error"]) == (403, "NotAuthorized"), r.text
        assert world.snapshot() == snapshot


def test_status_mapping_is_consistent() -> None:
    from redline import errors as e
    assert [status_for(x("m")) for x in (e.MalformedInput, e.NonCanonicalJSON, e.BadSignature, e.UnknownKey,
                                          e.NotAuthorized, e.UnknownParty, e.RevokedKey, e.SequenceError,
                                          e.InvalidStatement, e.InvalidPolicy, e.InputTooLarge, e.EntryTooLarge,
                                          e.InconsistentLog, e.MalformedKey)] == \
        [400, 400, 403, 403, 403, 403, 403, 409, 422, 422, 413, 413, 503, 400]
    assert status_for(InvalidProof("x")) == 503


def test_oversized_bodies_are_413(world) -> None:
    with TestClient(create_app(world.registry)) as client:
        size = world.log.size
        r = client.post("/submit", content=b"x" * (MAX_BODY_BYTES + 1))
        assert r.status_code == 413 and r.json()["error"] == "InputTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
            for _ in range(20):
                yield b"y" * 4096
        r = client.post("/submit", content=chunks())
        assert r.status_code == 413
        r = client.request("GET", "/api/state", content=b"z" * (MAX_BODY_BYTES + 1))
        assert r.status_code == 413
        assert client.post("/submit", content=b"x" * MAX_BODY_BYTES).status_code == 400  # at the limit: parsed
        assert world.log.size == size


def test_a_full_queue_answers_429_with_retry_after(world) -> None:
    entered, release = threading.Event(), threading.Event()

    def slow_publish(old_size: int, checkpoint: bytes, proof: list[bytes]) -> bytes:
        if old_size != world.log.size and old_size:  # not the start-up publication
            entered.set()
            assert release.wait(20)
        return checkpoint

    app = create_app(world.registry, queue_size=1, batch_ms=0, publish=slow_publish)
    service = app.state.service
    envs = [world.envelope(lab, ComputeInventory, **inventory_fields(1)) for lab in ("lab-a", "lab-b", "lab-c")]
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(client.post, "/submit", content=envs[0])
        assert entered.wait(20)                      # the worker holds batch 1 in publish
        second = pool.submit(client.post, "/submit", content=envs[1])
        deadline = time.monotonic() + 20
        while service.queued() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.queued() == 1                 # batch 2 waits in the queue of one
        r = client.post("/submit", content=envs[2])
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and r.json()["error"] == "QueueFull"
        release.set()
        assert first.result(20).status_code == 200 and second.result(20).status_code == 200
        assert client.post("/submit", content=envs[2]).status_code == 200


def test_publish_hook_gets_the_consistency_proof_and_its_checkpoint_is_served(world) -> None:
    witness = SigningKey.generate("witness.example")
    calls: list[tuple[int, int]] = []

    def cosign(old_size: int, checkpoint: bytes, proof: list[bytes]) -> bytes:
        new, _ = open_checkpoint(checkpoint, world.log.verifier)
        if old_size and old_size != new.size:
            old, _ = open_checkpoint(world.log.checkpoint(old_size), world.log.verifier)
            merkle.verify_consistency(old_size, new.size, old.root, new.root, proof)
        calls.append((old_size, new.size))
        text = checkpoint[: checkpoint.index(b"\n\n") + 1].decode()
        return checkpoint + sign_note(text, witness).split(b"\n\n")[-1]

    with TestClient(create_app(world.registry, publish=cosign)) as client:
        env = world.envelope("lab-a", ComputeInventory, **inventory_fields(4))
        r = client.post("/submit", content=env)
        assert r.status_code == 200
        receipt = Receipt.parse(r.content)
        verify_receipt(receipt, env, world.log.verifier, witnesses=[witness.verifier()])
        assert b"witness.example" in receipt.checkpoint
        served = client.get("/checkpoint").content
        assert served == receipt.checkpoint and served != world.log.checkpoint()
        assert calls[-1] == (world.log.size - 1, world.log.size)


def test_a_failing_publish_publishes_nothing_and_the_next_one_catches_up(world) -> None:
    calls: list[tuple[int, int, int]] = []
    fail = [True]

    def flaky(old_size: int, checkpoint: bytes, proof: list[bytes]) -> bytes:
        new, _ = open_checkpoint(checkpoint, world.log.verifier)
        calls.append((old_size, new.size, len(proof)))
        if old_size and old_size != new.size:
            old, _ = open_checkpoint(world.log.checkpoint(old_size), world.log.verifier)
            merkle.verify_consistency(old_size, new.size, old.root, new.root, proof)
        return b"garbage" if fail[0] else checkpoint

    with TestClient(create_app(world.registry, publish=flaky)) as client:
        before = client.get("/checkpoint").content
        published_size = world.log.size
        env = world.envelope("lab-a", ComputeInventory, **inventory_fields(4))
        r = client.post("/submit", content=env)
        assert r.status_code == 200
        # the receipt still verifies against the log's key; the public checkpoint did not move
        assert Receipt.parse(r.content).checkpoint == world.log.checkpoint()
        verify_receipt(Receipt.parse(r.content), env, world.log.verifier)
        assert client.get("/checkpoint").content == before
        fail[0] = False
        env = world.envelope("lab-a", ComputeInventory, **inventory_fields(5))
        assert client.post("/submit", content=env).status_code == 200
        assert client.get("/checkpoint").content == world.log.checkpoint()
        # the second publication is from the last published size, proved consistent from there
        assert calls[-1][:2] == (published_size, world.log.size)


# --- JSON views ----------------------------------------------------------------------------


def test_json_endpoints(world) -> None:
    with TestClient(create_app(world.registry)) as client:
        state = client.get("/api/state").json()
        assert state["origin"] == world.log.origin and state["next_index"] == world.log.size
        parties = client.get("/api/parties").json()
        assert parties["total"] == len(world.state.parties) and parties["offset"] == 0
        assert {p["name"] for p in parties["items"]} == set(world.state.parties)
        page = client.get("/api/parties", params={"offset": 2, "limit": 2}).json()
        assert [p["name"] for p in page["items"]] == sorted(world.state.parties)[2:4]
        assert client.get("/api/parties", params={"limit": 501}).status_code == 422
        assert client.get("/api/parties", params={"offset": -1}).status_code == 422
        for path in ("/api/runs", "/api/reviews", "/api/violations"):
            body = client.get(path).json()
            assert set(body) == {"total", "offset", "limit", "items"}, path
        entry = client.get("/api/entries/1").json()
        assert entry["index"] == 1 and entry["time"].endswith("Z")
        assert entry["envelope"]["payloadType"] == "application/vnd.in-toto+json"
        assert entry["statement"]["predicateType"].startswith("urn:redline:")
        leaf = base64.b64decode(entry["leaf"])
        assert leaf == world.log.leaf(1) and int.from_bytes(leaf[:8], "big") == entry["time_ms"]
        receipt = Receipt.parse(entry["receipt"].encode())
        verify_receipt(receipt, leaf[8:], world.log.verifier)
        assert entry["tree_size"] == world.log.size
        assert [base64.b64decode(h) for h in entry["inclusion_proof"]] == list(receipt.proof)
        r = client.get(f"/api/entries/{world.log.size}")
        assert r.status_code == 404 and r.json()["error"] == "IndexOutOfRange"
        assert client.get("/api/entries/-1").status_code == 422
        openapi = client.get("/openapi.json").json()
        responses = openapi["paths"]["/submit"]["post"]["responses"]
        assert {"413", "429", "409", "403", "422", "400", "503"} <= set(responses)


# --- the command -------------------------------------------------------------------------


def test_real_uvicorn_on_loopback_serves_and_takes_submissions(world) -> None:
    with LoopbackServer(create_app(world.registry)) as srv, httpx.Client(base_url=srv.url, timeout=20) as http:
        assert http.get("/checkpoint").content == world.log.checkpoint()
        env = world.envelope("lab-a", ComputeInventory, **inventory_fields(5))
        r = http.post("/submit", content=env)
        assert r.status_code == 200
        verify_receipt(Receipt.parse(r.content), env, world.log.verifier)
        assert http.get(f"/tile/entries/000.p/{world.log.size}").status_code == 200


def test_serve_help_names_every_option() -> None:
    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    for option in ("--host", "--port", "--batch-ms", "--queue", "--max-batch", "127.0.0.1"):
        assert option in out


def test_serve_refuses_a_store_that_does_not_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    signing = SigningKey.generate("redline.example/bad")
    save_signing_key(signing, logdir / "log.key")
    lg = create_log(logdir, signing)
    lg.append([b"one", b"two"])
    lg.store.close()
    served: list[object] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(kw))
    ok = CliRunner().invoke(cli, ["serve", str(logdir), "--port", "0"])
    assert ok.exit_code == 0 and served == [{"host": "127.0.0.1", "port": 0, "log_level": "info",
                                             "access_log": False}], ok.output
    db = sqlite3.connect(logdir / "log.db")
    row = db.execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (row[1].replace(b"\n2\n", b"\n3\n"), row[0]))
    db.commit()
    db.close()
    before = len(served)
    bad = CliRunner().invoke(cli, ["serve", str(logdir), "--port", "0"])
    assert bad.exit_code != 0 and len(served) == before
    assert "checkpoint" in bad.output
    assert CliRunner().invoke(cli, ["serve", str(tmp_path / "nothing")]).exit_code == 4
    open_log(logdir).store.close()
