"""Faults around a PostgreSQL log served over HTTP: the database restarted under load (clean 503s during the
outage, success after, nothing acknowledged lost), and both witnesses down (the log keeps accepting, and
publishes a cosigned checkpoint once the quorum is back). SIGKILL of the writer mid-batch is in
``test_store_conformance`` (every store)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pg_fixture import PgCluster, pg  # noqa: F401 - the PostgreSQL cluster fixture
from scenario_kit import LOG_NAME, inventory_fields, key, utc
from test_postgres import pg_world

from redline.cli.logdir import open_log
from redline.log.checkpoint import open_checkpoint
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import system_clock_ms
from redline.log.witness import WitnessPolicy, check_cosigned, make_publisher, witness_verifier
from redline.registry import Registry
from redline.server import create_app
from redline.statements import ComputeInventory

httpx = pytest.importorskip("httpx")
from helpers.loopback import LoopbackServer

from redline.crypto.keys import SigningKey
from redline.witness.core import Witness, WitnessState
from redline.witness.server import create_app as witness_app


def _inventory(world, party: str, seq: int) -> bytes:  # type: ignore[no-untyped-def]
    return world.envelope(party, ComputeInventory, seq=seq,
                          **inventory_fields(seq % 50 + 1, when=utc(system_clock_ms() - 60_000)))


def test_postgres_restart_under_load_loses_nothing_acknowledged(pg: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    world = pg_world(pg, tmp_path / "log", 2)
    world.log.store.close()
    registry = Registry(open_log(world.path, signing=True, verify=True))
    statuses: list[int] = []
    acked: list[tuple[int, bytes]] = []
    after_restart = threading.Event()
    restarted = threading.Event()
    with LoopbackServer(create_app(registry, batch_ms=1)) as srv:

        def client(party: str) -> None:
            seq, retried = registry.next_seq(party), False
            with httpx.Client(base_url=srv.url, timeout=30) as http:
                deadline = time.monotonic() + 40
                while time.monotonic() < deadline:
                    env = _inventory(world, party, seq)
                    r = http.post("/submit", content=env)
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        verify_receipt(Receipt.parse(r.content), env, world.log.verifier)
                        acked.append((int(r.headers["Redline-Index"]), env))
                        seq, retried = seq + 1, False
                        if restarted.is_set() and len([s for s in statuses if s == 200]) > 0:
                            after_restart.set()
                            if len(acked) > 60:
                                return
                    elif r.status_code == 503:
                        assert r.json()["error"] in ("StoreUnavailable", "LogError", "InconsistentLog"), r.text
                        retried = True
                        time.sleep(0.05)
                    elif r.status_code == 409 and retried:  # the try before the outage was logged after all
                        seq, retried = seq + 1, False
                    else:
                        raise AssertionError(f"{r.status_code} {r.text}")

        threads = [threading.Thread(target=client, args=(f"lab-{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        while len(acked) < 20:
            time.sleep(0.01)
        pg.pg_ctl("restart")
        restarted.set()
        for t in threads:
            t.join(60)
    assert 503 in statuses, "the outage was not seen"
    assert after_restart.is_set() and statuses[-1] == 200, "no success after the restart"
    final = open_log(world.path, verify=True, trusted=world.log.verifier)
    logged = [e for _, _, e in final.entries()]
    assert len(set(logged)) == len(logged)
    for index, env in acked:
        assert logged[index] == env


class FixedPortServer(LoopbackServer):
    """A ``LoopbackServer`` on a given port (a witness restarted where the policy says it is)."""

    def __init__(self, app, port: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        import uvicorn

        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)


W1 = SigningKey("witness.example/w1", bytes(range(1, 33)))
W2 = SigningKey("witness.example/w2", bytes(range(2, 34)))


def test_witnesses_down_the_log_keeps_accepting_and_catches_up(pg: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    world = pg_world(pg, tmp_path / "log", 1)
    log_key = key(LOG_NAME).verifier()
    states = [WitnessState(tmp_path / f"witness-{i}") for i in range(2)]

    def witnesses(ports: list[int] | None = None) -> list[LoopbackServer]:
        apps = [witness_app(Witness(w, (log_key,), states[i], clock=lambda: system_clock_ms() // 1000))
                for i, w in enumerate((W1, W2))]
        return [FixedPortServer(a, p) for a, p in zip(apps, ports)] if ports else [LoopbackServer(a) for a in apps]

    up = witnesses()
    ports = [w.port for w in up]
    policy = WitnessPolicy((witness_verifier(W1), witness_verifier(W2)), 2,
                           urls={W1.name: up[0].url, W2.name: up[1].url})
    app = create_app(world.registry, publish=make_publisher(None, policy, world.log, timeout=2), batch_ms=1)
    seq = world.registry.next_seq("lab-0")
    with LoopbackServer(app) as served, httpx.Client(base_url=served.url, timeout=30) as http:
        with up[0], up[1]:
            assert http.post("/submit", content=_inventory(world, "lab-0", seq)).status_code == 200
            first, _ = check_cosigned(http.get("/checkpoint").content, log_key, policy)
            assert first.size == world.log.size
        # both witnesses are down: submissions are still logged, /checkpoint stays at the last cosigned one
        for k in range(1, 4):
            env = _inventory(world, "lab-0", seq + k)
            r = http.post("/submit", content=env)
            assert r.status_code == 200, r.text
            verify_receipt(Receipt.parse(r.content), env, world.log.verifier)  # log-signed, valid offline
        assert open_checkpoint(http.get("/checkpoint").content, world.log.verifier)[0].size == first.size
        assert world.log.size == first.size + 3
        # the quorum is back: the next batch is cosigned, with a consistency proof from the last published size
        again = witnesses(ports)
        with again[0], again[1]:
            assert http.post("/submit", content=_inventory(world, "lab-0", seq + 4)).status_code == 200
            cp, times = check_cosigned(http.get("/checkpoint").content, log_key, policy)
    assert cp.size == world.log.size == first.size + 4 and set(times) == {W1.name, W2.name}
    assert open_log(world.path, verify=True, trusted=log_key).size == cp.size
