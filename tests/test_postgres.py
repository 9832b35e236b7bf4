"""The PostgreSQL log store end to end: a log directory naming it in ``store.url``, ``redline log migrate``
between SQLite and PostgreSQL, and a bounded load test of four ``redline serve`` processes appending to one
PostgreSQL log under concurrent submitters (nothing lost, nothing twice, one consistent tree, every receipt
verifies). The throwaway cluster comes from ``pg_fixture``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pg_fixture import PgCluster, pg  # noqa: F401 - the PostgreSQL cluster fixture
from scenario_kit import LOG_NAME, Clock, World, inventory_fields, key, utc

from redline.cli.logdir import create_log, open_log
from redline.cli.main import cli
from redline.crypto.keys import save_signing_key
from redline.engine import Entry, State, replay
from redline.log.checkpoint import open_checkpoint
from redline.log.postgres import PostgresStore
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log, system_clock_ms
from redline.registry import Registry
from redline.statements import ComputeInventory

httpx = pytest.importorskip("httpx")


def pg_logdir(pg: PgCluster, path: Path) -> Path:  # noqa: F811
    """A log directory whose store is a fresh PostgreSQL schema."""
    path.mkdir(parents=True)
    (path / "store.url").write_text(pg.new_url() + "\n")
    return path


def pg_world(pg: PgCluster, path: Path, labs: int) -> World:  # noqa: F811
    """A registry on a PostgreSQL log dir (LOGDIR/log.key, the system clock): genesis, ``labs`` labs admitted."""
    logdir = pg_logdir(pg, path)
    log_key = key(LOG_NAME)
    save_signing_key(log_key, logdir / "log.key")
    log = create_log(logdir, log_key)
    registry = Registry.genesis(log, key("coordinator"))
    world = World(logdir, Clock(), log, registry, {"coordinator": key("coordinator")})
    for i in range(labs):
        world.admit(f"lab-{i}", "lab")
    return world


def test_a_log_dir_naming_postgres_works_with_every_log_command(pg: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    logdir = pg_logdir(pg, tmp_path / "log")
    run = CliRunner().invoke
    made = run(cli, ["log", "init", str(logdir), "--origin", "redline.test/pg"])
    assert made.exit_code == 0, made.output
    log_key = made.stdout.strip()
    entry = tmp_path / "e.json"
    entry.write_bytes(b'{"hello": "postgres"}')
    for _ in range(3):
        assert run(cli, ["log", "append", str(logdir), str(entry)]).exit_code == 0
    ok = run(cli, ["log", "verify", str(logdir), "--log-key", log_key])
    assert ok.exit_code == 0 and "holds 3 entries" in ok.output, ok.output
    receipt = run(cli, ["log", "receipt", str(logdir), "2", "-o", str(tmp_path / "2.tlog-proof")])
    assert receipt.exit_code == 0
    assert run(cli, ["log", "verify", "--receipt", str(tmp_path / "2.tlog-proof"), "--entry", str(entry),
                     "--log-key", log_key]).exit_code == 0
    again = run(cli, ["log", "init", str(logdir), "--origin", "redline.test/pg"])
    assert again.exit_code != 0  # LogExists (or the key file exists): never a second log over the first
    assert open_log(logdir).size == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(cli, ["log", "verify", str(empty)]).exit_code == 4  # LogNotFound
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "store.url").write_text("mysql://nope\n")
    assert run(cli, ["log", "checkpoint", str(bad)]).exit_code == 65


def test_migrate_sqlite_to_postgres_and_back(pg: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "sqlite"
    run = CliRunner().invoke
    assert run(cli, ["log", "init", str(src), "--origin", "redline.test/migrate"]).exit_code == 0
    lg = open_log(src, signing=True)
    for n in (1, 3, 16, 40, 300, 2):
        lg.append([b"entry %d" % (lg.size + i) for i in range(n)])
    lg.store.close()
    dst = pg_logdir(pg, tmp_path / "pg")
    moved = run(cli, ["log", "migrate", str(src), str(dst)])
    assert moved.exit_code == 0, moved.output
    back = tmp_path / "back"
    assert run(cli, ["log", "migrate", str(dst), str(back)]).exit_code == 0
    a, b, c = open_log(src, verify=True), open_log(dst, verify=True), open_log(back, verify=True)
    assert a.checkpoint_sizes() == b.checkpoint_sizes() == c.checkpoint_sizes()
    for size in a.checkpoint_sizes():
        assert a.checkpoint(size) == b.checkpoint(size) == c.checkpoint(size)
        assert a.root(size) == b.root(size) == c.root(size)
    assert list(a.store.iter_hashes()) == list(b.store.iter_hashes()) == list(c.store.iter_hashes())
    assert (back / "log.key").stat().st_mode & 0o077 == 0
    b2 = open_log(dst, signing=True)  # the copy appends with the copied key
    b2.append([b"after the move"])
    again = run(cli, ["log", "migrate", str(src), str(dst)])
    assert again.exit_code == 4 and "already" in again.output  # refuses to copy over a log


# --- four server processes, one log ----------------------------------------------------------------------------


class ServeProcess:
    """``redline serve LOGDIR`` in a child process on a free loopback port."""

    def __init__(self, logdir: Path, log_file: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from redline.cli.main import main; main()", "serve", str(logdir),
             "--port", str(self.port), "--batch-ms", "3", "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=log_file.open("wb"), env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redline serve exited: {self.log_file.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/checkpoint", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"redline serve did not start: {self.log_file.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def submit_loop(world: World, party: str, servers: list[str], deadline: float, acked: list,
                problems: list[str]) -> None:
    """Submit ``party``'s statements in sequence until ``deadline``, each to the next server in turn; a 503 or
    429 is retried; a 409 after a retry means the earlier try was logged after all."""
    log_key = world.log.verifier
    seq = world.registry.next_seq(party)
    with httpx.Client(timeout=30) as http:
        n = 0
        while time.monotonic() < deadline:
            env = world.envelope(party, ComputeInventory, seq=seq,
                                 **inventory_fields(seq % 50 + 1, when=utc(system_clock_ms() - 60_000)))
            retried = False
            while True:
                n += 1
                try:
                    r = http.post(servers[n % len(servers)] + "/submit", content=env)
                except httpx.HTTPError as exc:
                    problems.append(f"{party} seq {seq}: {exc!r}")
                    return
                if r.status_code == 200:
                    receipt = Receipt.parse(r.content)
                    verify_receipt(receipt, env, log_key)
                    acked.append((int(r.headers["Redline-Index"]), env, receipt))
                    break
                if r.status_code in (429, 503):
                    retried = True
                    time.sleep(0.02)
                    continue
                if r.status_code == 409 and retried:
                    break
                problems.append(f"{party} seq {seq}: {r.status_code} {r.text}")
                return
            seq += 1


def test_four_serve_processes_on_one_postgres_log(pg: PgCluster, tmp_path: Path) -> None:  # noqa: F811
    labs, load_s = 12, 6.0
    world = pg_world(pg, tmp_path / "log", labs)
    start_size = world.log.size
    servers = [ServeProcess(world.path, tmp_path / f"serve-{i}.log") for i in range(4)]
    try:
        ready = time.monotonic() + 45
        for s in servers:
            s.wait_ready(ready)
        acked: list[tuple[int, bytes, Receipt]] = []
        problems: list[str] = []
        deadline = time.monotonic() + load_s
        threads = [threading.Thread(target=submit_loop, args=(world, f"lab-{i}", [s.url for s in servers],
                                                              deadline, acked, problems)) for i in range(labs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for s in servers:
            s.stop()
    assert not problems, problems[:5]
    url = (world.path / "store.url").read_text().strip()
    final = Log.open(PostgresStore(url), trusted=world.log.verifier)  # verify=True: one consistent tree
    entries = list(final.entries())
    logged = [e for _, _, e in entries]
    assert len(set(logged)) == len(logged), "an entry was logged twice"
    assert len({i for i, _, _ in acked}) == len(acked), "two receipts for one index"
    for index, env, receipt in acked:
        assert logged[index] == env, f"acknowledged entry {index} is not in the log"
        cp, _ = open_checkpoint(receipt.checkpoint, final.verifier)
        assert final.root(cp.size) == cp.root, "a receipt's checkpoint is not on the final tree"
    state = replay((Entry(i, t, e) for i, t, e in entries), State(origin=final.origin))
    assert not state.rejected, state.rejected[:3]
    assert final.size - start_size >= len(acked) > 50, (final.size, len(acked))
    print(f"\n4 serve processes x {labs} submitters: {len(acked)} acknowledged in {load_s:.0f} s "
          f"({len(acked) / load_s:.0f}/s), log size {final.size}, {len(final.checkpoint_sizes())} checkpoints")
