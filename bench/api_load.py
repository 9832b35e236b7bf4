#!/usr/bin/env python3
"""Benchmark: ``redline serve`` under load on loopback, each side beside its baseline, ratio last.

1. Submissions: ``--parties`` admitted labs each send ``--per-party`` signed ``ComputeInventory``
   statements in sequence-number order (one request in flight per party, all parties at once) to a
   real ``redline serve`` (a separate process, uvicorn on 127.0.0.1). Every statement is verified
   (signature against the party's admitted key, strict parsing, role, sequence number) and
   appended durably (SQLite WAL, ``synchronous=FULL``) before its receipt comes back; every
   receipt is verified afterwards (untimed) with ``verify_receipt``. Baseline: the same envelopes
   appended in-process with ``Log.append`` to a fresh log, one durable append per entry (what a
   server without batching does, before any verification), and in batches of the size the server
   actually formed (for information).
2. Tile reads: ``--tile-reads`` GETs of the log's tiles and entry bundles (every tile of the final
   tree, round robin, ``--tile-concurrency`` connections) from ``redline serve``, and the same
   paths from a plain static file server (Python's ``http.server``, threading, HTTP/1.1 keep-alive,
   in its own process) over the directory ``redline log tiles`` wrote. Bytes are compared.

Keys and statements are deterministic (seeded). Only 127.0.0.1 is used. The client is a minimal
asyncio HTTP/1.1 keep-alive client in this process; client and server share the machine's cores.

Run:  .venv/bin/python bench/api_load.py            (about 30 s on the 2-core machine)
      .venv/bin/python bench/api_load.py --quick    (smoke run, a few seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.crypto.canonical import canonical_digest
from redline.crypto.keys import SigningKey, save_signing_key
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.log.tiles import tiles_for_sizes, write_static
from redline.registry import Registry
from redline.statements import Admission, ChipCount, Cluster, ComputeInventory, sign_predicate

ORIGIN = "bench.redline.example/log"
HOST = "127.0.0.1"


def det_key(name: str, seed: int) -> SigningKey:
    return SigningKey(name, bytes.fromhex(canonical_digest(["api-load", seed, name])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


class Conn:
    """A minimal HTTP/1.1 client connection (keep-alive; reconnects when the server closes)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.writer.close()
            self.reader = self.writer = None
        return int(status), headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# --- set-up ------------------------------------------------------------------------------


def build(workdir: Path, parties: int, per_party: int, seed: int) -> tuple[Path, list[list[bytes]], Log]:
    """A log directory with genesis and ``parties`` labs admitted; each lab's statements, signed, in order."""
    logdir = workdir / "log"
    logdir.mkdir()
    log_key = det_key(ORIGIN, seed)
    save_signing_key(log_key, logdir / "log.key")
    lg = Log.create(SqliteStore(logdir / "log.db", create=True), log_key)
    coordinator = det_key("coordinator", seed)
    reg = Registry.genesis(lg, coordinator)
    labs = [det_key(f"lab-{k:03d}", seed) for k in range(parties)]
    admissions = [sign_predicate(Admission.build(party="coordinator", seq=2 + k, log=ORIGIN, admitted=lab.name,
                                                 verifier_key=lab.verifier().to_string(), role="lab",
                                                 display_name=lab.name.upper(), jurisdiction="EU"),
                                 coordinator).to_json() for k, lab in enumerate(labs)]
    assert all(not isinstance(r, Exception) for r in reg.submit_many(admissions))
    now = datetime.now(UTC).replace(microsecond=0)
    statements = []
    for k, lab in enumerate(labs):
        mine = []
        for j in range(per_party):
            pred = ComputeInventory.build(party=lab.name, seq=1 + j, log=ORIGIN, as_of=now, clusters=[
                Cluster(cluster_id=f"c{j}", site=f"site {k}", chips=[ChipCount(chip_model="H100 SXM",
                                                                               count=1 + (k * 7 + j) % 5000)])])
            mine.append(sign_predicate(pred, lab).to_json())
        statements.append(mine)
    lg.store.close()
    return logdir, statements, lg


def baseline_appends(workdir: Path, envelopes: list[bytes], batch: int) -> float:
    """Entries/s of in-process ``Log.append`` on a fresh log, ``batch`` entries per durable append."""
    lg = Log.create(SqliteStore(workdir / f"baseline-{batch}.db", create=True), det_key("baseline.example/log", 0))
    t = time.perf_counter()
    for i in range(0, len(envelopes), batch):
        lg.append(envelopes[i : i + batch])
    rate = len(envelopes) / (time.perf_counter() - t)
    lg.store.close()
    return rate


# --- load -------------------------------------------------------------------------------


async def submit_all(port: int, statements: list[list[bytes]]) -> tuple[float, list[float], list[tuple[bytes, bytes]]]:
    latencies: list[float] = []
    answers: list[tuple[bytes, bytes]] = []

    async def party(mine: list[bytes]) -> None:
        conn = Conn(port)
        try:
            for env in mine:
                t = time.perf_counter()
                status, _, body = await conn.request("POST", "/submit", env)
                latencies.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"submission refused: {status} {body[:200]!r}")
                answers.append((env, body))
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(party(m) for m in statements))
    return time.perf_counter() - t0, latencies, answers


async def read_tiles(port: int, paths: list[str], total: int, concurrency: int) -> tuple[float, dict[str, bytes]]:
    got: dict[str, bytes] = {}
    counter = iter(range(total))

    async def worker() -> None:
        conn = Conn(port)
        try:
            for i in counter:
                path = paths[i % len(paths)]
                status, _, body = await conn.request("GET", "/" + path)
                if status != 200:
                    raise RuntimeError(f"GET /{path}: {status}")
                got.setdefault(path, body)
        finally:
            conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, got


STATIC_SERVER = """
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])),
                                functools.partial(H, directory=sys.argv[2])).serve_forever()
"""


def main() -> None:
    try:  # the client on uvloop where it is installed (uvicorn[standard] brings it), as the server then is
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parties", type=int, default=50, help="labs submitting at once (default 50)")
    ap.add_argument("--per-party", type=int, default=40, help="statements per lab, in order (default 40)")
    ap.add_argument("--tile-reads", type=int, default=30_000, help="tile GETs per server (default 30000)")
    ap.add_argument("--tile-concurrency", type=int, default=32, help="connections reading tiles (default 32)")
    ap.add_argument("--batch-ms", type=float, default=5.0, help="the server's batching window (default 5)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 20 labs x 5, 2000 tile reads")
    args = ap.parse_args()
    if args.quick:
        args.parties, args.per_party, args.tile_reads = 20, 5, 2000
    if not (1 <= args.parties <= 1000 and 1 <= args.per_party <= 1000 and 1 <= args.tile_reads <= 10**6):
        ap.error("keep the load bounded: parties and per-party in 1..1000, tile reads in 1..1e6")
    loop = type(asyncio.new_event_loop()).__module__.split(".")[0]
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    print(f"api_load {datetime.now(UTC).isoformat(timespec='seconds')}  cpus={os.cpu_count()}  "
          f"load={os.getloadavg()[0]:.2f}  event loop={loop}  uvicorn http={http}")
    with tempfile.TemporaryDirectory(prefix="redline-api-load-") as tmp:
        work = Path(tmp)
        logdir, statements, _ = build(work, args.parties, args.per_party, args.seed)
        flat = [e for mine in statements for e in mine]
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "redline.cli.main", "serve", str(logdir), "--port",
                                   str(port), "--batch-ms", str(args.batch_ms), "--queue", "4096",
                                   "--log-level", "warning"], cwd=ROOT)
        static = None
        try:
            wait_port(port, server)
            elapsed, lat, answers = asyncio.run(submit_all(port, statements))
            n = len(answers)
            lg = Log.open(SqliteStore(logdir / "log.db"), verify=False)
            batches = len(lg.checkpoint_sizes())
            for env, body in answers:  # untimed: every receipt verifies
                verify_receipt(Receipt.parse(body), env, lg.verifier)
            sizes = lg.checkpoint_sizes()
            mean_batch = max(1, round(n / max(1, sum(1 for s in sizes if s > args.parties + 1))))
            print(f"submissions: {n} from {args.parties} parties in {elapsed:.2f} s = {n / elapsed:,.0f}/s; "
                  f"latency p50 {pct(lat, .5) * 1e3:.1f} ms, p99 {pct(lat, .99) * 1e3:.1f} ms; "
                  f"{batches} checkpoints in the log, mean batch about {mean_batch}; every receipt verified")
            one = baseline_appends(work, flat, 1)
            same = baseline_appends(work, flat, mean_batch)
            print(f"baseline Log.append in-process, no verification: 1 entry/append {one:,.0f}/s; "
                  f"{mean_batch} entries/append {same:,.0f}/s")

            out = work / "static"
            write_static(out, size=lg.size, reader=lg.store, entries=lg.store.read_leaves,
                         checkpoint=lg.checkpoint(), sizes=sizes)
            paths = [t.path for t in tiles_for_sizes([lg.size])]
            sport = free_port()
            static = subprocess.Popen([sys.executable, "-c", STATIC_SERVER, str(sport), str(out)])
            wait_port(sport, static)
            asyncio.run(read_tiles(port, paths, len(paths) * 2, 4))  # warm both
            asyncio.run(read_tiles(sport, paths, len(paths) * 2, 4))
            t_red, got_red = asyncio.run(read_tiles(port, paths, args.tile_reads, args.tile_concurrency))
            t_sta, got_sta = asyncio.run(read_tiles(sport, paths, args.tile_reads, args.tile_concurrency))
            assert got_red == got_sta, "redline serve and the static files differ"
            r_red, r_sta = args.tile_reads / t_red, args.tile_reads / t_sta
            print(f"tile reads ({len(paths)} tiles of a {lg.size}-entry log, {args.tile_concurrency} connections): "
                  f"redline serve {r_red:,.0f}/s, http.server {r_sta:,.0f}/s; bytes identical")
            lg.store.close()
            sub_ok = n / elapsed >= 1000 and pct(lat, .99) <= 0.1
            print(f"goals: >=1,000 submissions/s with p99 <= 100 ms: {'met' if sub_ok else 'NOT met'}; "
                  f">=10,000 tile reads/s: {'met' if r_red >= 10_000 else 'NOT met'}")
            print(f"ratio: submissions/s vs 1-entry Log.append {(n / elapsed) / one:.2f}x; "
                  f"tile reads vs http.server {r_red / r_sta:.2f}x")
        finally:
            for proc in (server, static):
                if proc is not None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()


if __name__ == "__main__":
    main()
