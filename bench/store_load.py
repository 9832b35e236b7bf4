#!/usr/bin/env python3
"""Benchmark: durable signed submissions per second on PostgreSQL with 1, 2 and 4 ``redline serve`` processes,
beside SQLite with one, in the same run; ratios last.

Each configuration gets a fresh log (genesis and ``--parties`` admitted labs) and the same pre-signed
``ComputeInventory`` statements (each lab's in sequence order). ``--parties`` client threads submit at once,
one request in flight per lab, each request to the next server in turn (so a lab's statement ``n+1``
usually reaches another process than ``n``: every server must catch up with the others' appends before
admitting). Every submission is fully admitted and durable (SQLite WAL + ``synchronous=FULL``; PostgreSQL
``fsync=on``, ``synchronous_commit=on``) before its receipt comes back; receipts are verified afterwards
(untimed), and the final log is opened with full verification and checked for lost or duplicated entries.

PostgreSQL is a throwaway cluster (``tests/pg_fixture.py``: ``initdb`` in a temporary folder, Unix socket
only) on the same disk as the SQLite file. Clients and servers share the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx

from redline.cli.logdir import create_log, open_log
from redline.crypto.canonical import canonical_digest
from redline.crypto.keys import SigningKey, save_signing_key
from redline.log.receipt import Receipt, verify_receipt
from redline.registry import Registry
from redline.statements import Admission, ChipCount, Cluster, ComputeInventory, sign_predicate

ORIGIN = "bench.redline.example/store-load"


def det_key(name: str, seed: int) -> SigningKey:
    return SigningKey(name, bytes.fromhex(canonical_digest(["store-load", seed, name])))


def build(logdir: Path, url: str | None, parties: int, per_party: int, seed: int) -> list[list[bytes]]:
    """A log dir (SQLite, or PostgreSQL at ``url``) with genesis and the labs admitted; each lab's statements."""
    logdir.mkdir(parents=True)
    if url:
        (logdir / "store.url").write_text(url + "\n")
    log_key = det_key(ORIGIN, seed)
    save_signing_key(log_key, logdir / "log.key")
    lg = create_log(logdir, log_key)
    coordinator = det_key("coordinator", seed)
    reg = Registry.genesis(lg, coordinator)
    labs = [det_key(f"lab-{k:03d}", seed) for k in range(parties)]
    admissions = [sign_predicate(Admission.build(party="coordinator", seq=2 + k, log=ORIGIN, admitted=lab.name,
                                                 verifier_key=lab.verifier().to_string(), role="lab",
                                                 display_name=lab.name.upper(), jurisdiction="EU"),
                                 coordinator).to_json() for k, lab in enumerate(labs)]
    assert all(not isinstance(r, Exception) for r in reg.submit_many(admissions))
    lg.store.close()
    now = datetime.now(UTC).replace(microsecond=0)
    return [[sign_predicate(ComputeInventory.build(party=lab.name, seq=1 + j, log=ORIGIN, as_of=now, clusters=[
        Cluster(cluster_id=f"c{j}", site=f"site {k}", chips=[ChipCount(chip_model="H100 SXM",
                                                                       count=1 + (k * 7 + j) % 5000)])]),
                            lab).to_json() for j in range(per_party)] for k, lab in enumerate(labs)]


class Serve:
    """``redline serve LOGDIR`` on a free loopback port."""

    def __init__(self, logdir: Path, batch_ms: float) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-c", "from redline.cli.main import main; main()", "serve",
                                      str(logdir), "--port", str(self.port), "--batch-ms", str(batch_ms),
                                      "--log-level", "warning"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def wait(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redline serve exited")
            try:
                if httpx.get(self.url + "/checkpoint", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("redline serve did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_config(logdir: Path, servers: int, statements: list[list[bytes]], batch_ms: float) -> dict:
    procs = [Serve(logdir, batch_ms) for _ in range(servers)]
    answers: list[tuple[bytes, bytes]] = []
    latencies: list[float] = []
    errors: list[str] = []
    try:
        for p in procs:
            p.wait()
        urls = [p.url for p in procs]

        def lab(k: int, mine: list[bytes]) -> None:
            with httpx.Client(timeout=60) as http:
                for j, env in enumerate(mine):
                    t = time.perf_counter()
                    r = http.post(urls[(k + j) % len(urls)] + "/submit", content=env)
                    latencies.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")
                        return
                    answers.append((env, r.content))

        threads = [threading.Thread(target=lab, args=(k, m)) for k, m in enumerate(statements)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        for p in procs:
            p.stop()
    if errors:
        raise RuntimeError(f"{len(errors)} submissions refused, e.g. {errors[0]}")
    lg = open_log(logdir, verify=True)  # one consistent tree
    logged = [e for _, _, e in lg.entries()]
    for env, body in answers:
        verify_receipt(Receipt.parse(body), env, lg.verifier)
    expected = sum(map(len, statements))
    assert len(answers) == expected and len(set(logged)) == len(logged)
    assert {env for env, _ in answers} <= set(logged), "an acknowledged entry is missing"
    checkpoints = len(lg.checkpoint_sizes())
    lg.store.close()
    lat = sorted(latencies)
    return {"rate": expected / elapsed, "seconds": elapsed, "p50": statistics.median(lat) * 1000,
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000, "checkpoints": checkpoints}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=32, help="labs submitting at once (default 32)")
    ap.add_argument("--per-party", type=int, default=40, help="statements per lab, in order (default 40)")
    ap.add_argument("--batch-ms", type=float, default=5.0, help="each server's batching window (default 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 8 labs x 5")
    args = ap.parse_args()
    if args.quick:
        args.parties, args.per_party = 8, 5
    from pg_fixture import missing_postgres, start_cluster

    missing = missing_postgres()
    if missing:
        sys.exit(f"store_load: {'; '.join(missing)} missing (make system-deps)")
    work = Path(tempfile.mkdtemp(prefix="redline-store-load-"))
    cluster = start_cluster()
    try:
        print(f"# store_load {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs; load "
              f"{os.getloadavg()[0]:.2f}; {args.parties} labs x {args.per_party} statements; batch {args.batch_ms} ms; "
              f"PostgreSQL {cluster.bindir.parent.name} (Unix socket, fsync=on); SQLite WAL synchronous=FULL")
        results = {}
        for name, servers, pg in (("SQLite", 1, False), ("PostgreSQL", 1, True), ("PostgreSQL", 2, True),
                                  ("PostgreSQL", 4, True)):
            url = cluster.new_url("bench") if pg else None
            logdir = work / f"{name}-{servers}"
            statements = build(logdir, url, args.parties, args.per_party, args.seed)
            r = run_config(logdir, servers, statements, args.batch_ms)
            results[(name, servers)] = r
            print(f"{name:<10} x{servers} servers: {r['rate']:8.0f} submissions/s  p50 {r['p50']:6.1f} ms  "
                  f"p99 {r['p99']:6.1f} ms  {r['checkpoints']} checkpoints  ({r['seconds']:.1f} s)", flush=True)
        base = results[("SQLite", 1)]["rate"]
        for servers in (1, 2, 4):
            print(f"ratio PostgreSQL x{servers} / SQLite x1: {results[('PostgreSQL', servers)]['rate'] / base:.2f}")
        print(f"ratio PostgreSQL x4 / PostgreSQL x1: "
              f"{results[('PostgreSQL', 4)]['rate'] / results[('PostgreSQL', 1)]['rate']:.2f}")
    finally:
        try:
            cluster.pg_ctl("stop")
        finally:
            shutil.rmtree(cluster.root, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
