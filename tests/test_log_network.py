"""The public log on loopback, end to end: `redline serve` publishing through two witnesses (2-of-2), statements
submitted over HTTP, and a monitor following it from tiles alone; then the operator forks the log and shows the
other branch to a second client — the witnesses refuse to cosign it, and the monitor catches the split view and
keeps both signed checkpoints as proof.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from scenario_kit import LOG_NAME, inventory_fields, key, make_world, utc

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from helpers.loopback import LoopbackServer  # noqa: E402

from redline.cli.main import cli  # noqa: E402
from redline.crypto.keys import SigningKey  # noqa: E402
from redline.log.service import Log  # noqa: E402
from redline.log.sqlite import SqliteStore  # noqa: E402
from redline.log.witness import WitnessPolicy, check_cosigned, make_publisher, witness_verifier  # noqa: E402
from redline.registry import Registry  # noqa: E402
from redline.server import create_app  # noqa: E402
from redline.statements import ComputeInventory  # noqa: E402
from redline.witness.core import Witness, WitnessState  # noqa: E402
from redline.witness.server import create_app as witness_app  # noqa: E402

W1 = SigningKey("witness.example/w1", bytes(range(1, 33)))
W2 = SigningKey("witness.example/w2", bytes(range(2, 34)))


def monitor(url: str, memory: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["monitor", url, "--log-key", key(LOG_NAME).verifier().to_string(),
                                      "--memory", str(memory), "--once", *extra])
    return result.exit_code, result.output


def test_two_witnesses_a_served_log_and_a_monitor_catch_a_fork(tmp_path: Path) -> None:
    # real time: the monitor judges cosignature times against its own clock
    world = make_world(tmp_path, [("lab-a", "lab")], start_ms=int(time.time() * 1000) - 4 * 3_600_000)
    world.publish("coordinated-pause")
    clock = world.clock
    log_key = key(LOG_NAME).verifier()
    witnesses = [Witness(w, (log_key,), WitnessState(tmp_path / f"witness-{i}"), clock=lambda: clock() // 1000)
                 for i, w in enumerate((W1, W2))]
    with LoopbackServer(witness_app(witnesses[0])) as w1, LoopbackServer(witness_app(witnesses[1])) as w2:
        policy = WitnessPolicy((witness_verifier(W1), witness_verifier(W2)), 2,
                               urls={W1.name: w1.url, W2.name: w2.url})
        trust = tmp_path / "witnesses.txt"
        trust.write_text(policy.to_text())
        app = create_app(world.registry, publish=make_publisher(None, policy, world.log), batch_ms=1)
        with LoopbackServer(app) as served, httpx.Client(base_url=served.url, timeout=20) as http:
            for count in (10, 20, 30):
                clock.advance(hours=1)
                env = world.envelope("lab-a", ComputeInventory, **inventory_fields(count, when=utc(clock())))
                answer = http.post("/submit", content=env)
                assert answer.status_code == 200, answer.text
            cosigned = http.get("/checkpoint").content
            cp, times = check_cosigned(cosigned, log_key, policy, now_s=clock() // 1000)
            assert cp.size == world.log.size and set(times) == {W1.name, W2.name}
            memory = tmp_path / "memory"
            code, out = monitor(served.url, memory, "--witness-policy", str(trust))
            assert code == 0, out
            # the state from tiles alone is the registry's
            state = CliRunner().invoke(cli, ["state", served.url, "--log-key", log_key.to_string(), "--json"])
            assert state.exit_code == 0, state.output
            assert world.state.digest() in state.stderr

            # --- the operator forks: a copy of the store grows another branch, served to another client ------
            fork_dir = tmp_path / "fork"
            fork_dir.mkdir()
            with sqlite3.connect(world.path) as src, sqlite3.connect(fork_dir / "log.db") as dst:
                src.backup(dst)  # a consistent copy of the store, WAL included
            fork = Registry(Log.open(SqliteStore(fork_dir / "log.db"), key=key(LOG_NAME), clock=clock))
            clock.advance(hours=1)
            branch_b = fork.submit(world.envelope("lab-a", ComputeInventory,
                                                  **inventory_fields(99, when=utc(clock()))))
            branch_a = http.post("/submit", content=world.envelope("lab-a", ComputeInventory,
                                                                   **inventory_fields(40, when=utc(clock()))))
            assert branch_a.status_code == 200 and branch_b.index == int(branch_a.headers["Redline-Index"])
            fork_app = create_app(fork, publish=make_publisher(None, policy, fork.log), batch_ms=1)
            with LoopbackServer(fork_app) as other:
                # the witnesses already cosigned branch A at this size: they refuse B, so B is not cosigned
                shown = httpx.get(other.url + "/checkpoint", timeout=20).content
                with pytest.raises(Exception, match="cosign|quorum|policy"):
                    check_cosigned(shown, log_key, policy, now_s=clock() // 1000)
                code, out = monitor(other.url, tmp_path / "fresh-memory", "--witness-policy", str(trust))
                assert code == 9, out  # the witness policy is not met
                # the monitor that remembers branch A, shown branch B: a split view, with both checkpoints kept
                code, out = monitor(served.url, memory)
                assert code == 0, out
                code, out = monitor(other.url, memory)
                assert code == 11, out
                proofs = list(memory.glob("proof-*"))
                assert len(proofs) == 1
                text = proofs[0].read_text()
                assert shown.decode().split("\n\n")[0] in text
                assert text.count("— " + LOG_NAME) >= 2


def test_serve_takes_a_witness_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from redline.cli.logdir import create_log
    from redline.crypto.keys import save_signing_key
    from redline.server import app as server_app

    logdir = tmp_path / "log"
    logdir.mkdir()
    signing = SigningKey.generate("redline.example/served")
    save_signing_key(signing, logdir / "log.key")
    create_log(logdir, signing).store.close()
    policy = WitnessPolicy((witness_verifier(W1),), 1, urls={W1.name: "http://127.0.0.1:9/w1"})
    trust = tmp_path / "witnesses.txt"
    trust.write_text(policy.to_text())
    published: list[object] = []
    real_create = server_app.create_app

    def spy(registry, **kw):  # type: ignore[no-untyped-def]
        published.append(kw.get("publish"))
        return real_create(registry, **kw)

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr("redline.server.create_app", spy)
    ok = CliRunner().invoke(cli, ["serve", str(logdir), "--witness-policy", str(trust)])
    assert ok.exit_code == 0, ok.output
    assert len(published) == 1 and callable(published[0]) and published[0].__name__ == "publish"
    missing = CliRunner().invoke(cli, ["serve", str(logdir), "--witness-policy", str(tmp_path / "none.txt")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_a_log_whose_clock_runs_ahead_of_its_witnesses_is_refused(tmp_path: Path) -> None:
    world = make_world(tmp_path, [("lab-a", "lab")], start_ms=int(time.time() * 1000) - 3_600_000)
    clock = world.clock
    log_key = key(LOG_NAME).verifier()
    # the witnesses' clocks say two hours earlier than the log's integration times
    witnesses = [Witness(w, (log_key,), WitnessState(tmp_path / f"witness-{i}"),
                         clock=lambda: (clock() - 2 * 3_600_000) // 1000) for i, w in enumerate((W1, W2))]
    with LoopbackServer(witness_app(witnesses[0])) as w1, LoopbackServer(witness_app(witnesses[1])) as w2:
        policy = WitnessPolicy((witness_verifier(W1), witness_verifier(W2)), 2,
                               urls={W1.name: w1.url, W2.name: w2.url})
        trust = tmp_path / "witnesses.txt"
        trust.write_text(policy.to_text())
        app = create_app(world.registry, publish=make_publisher(None, policy, world.log), batch_ms=1)
        with LoopbackServer(app) as served, httpx.Client(base_url=served.url, timeout=20) as http:
            env = world.envelope("lab-a", ComputeInventory, **inventory_fields(10, when=utc(clock())))
            assert http.post("/submit", content=env).status_code == 200
            code, out = monitor(served.url, tmp_path / "memory", "--witness-policy", str(trust))
            assert code == 10, out
            assert "ahead" in out
            state = CliRunner().invoke(cli, ["state", served.url, "--log-key", log_key.to_string(),
                                             "--witness-policy", str(trust)])
            assert state.exit_code == 10, state.output
