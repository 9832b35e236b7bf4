#!/usr/bin/env python3
"""Benchmark: the dashboard's pages from a 100,000-entry log, each beside the JSON endpoint for the same data.

The log is ``bench/replay.py``'s mixed log (``load_or_generate(n, seed)``: parties, policies, runs, reviews,
verification reports, pauses, violations...), written into a real SQLite log (one append per minute of
logged time, at the minute's last entry's time) signed with a fresh key named after the log's origin.
``redline serve``'s app is built over it (the registry replays it once) and each page is requested
in-process through the ASGI stack (Starlette's ``TestClient``: routing, rendering, headers; no network),
as is its JSON counterpart:

    /  ↔ /api/state    /parties ↔ /api/parties   /runs ↔ /api/runs   /reviews ↔ /api/reviews
    /violations ↔ /api/violations   /log ↔ /checkpoint   /entry/N ↔ /api/entries/N

Per page: *cold* (the first request after the log moved: the view of the state is derived again, then
rendered) and *warm* (the view cached for this log size: the common case), median and p95 of ``--repeat``
requests; the JSON endpoint's median; the ratio page / JSON last. Goal: every page at most 300 ms.

Run:  .venv/bin/python bench/dashboard.py            (100,000 entries; the log is cached in bench/out/)
      .venv/bin/python bench/dashboard.py --quick    (10,000 entries)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from replay import BENCH_ORIGIN, load_or_generate

from redline.crypto.keys import SigningKey
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.registry import Registry

GOAL_MS = 300.0


def build_log(path: Path, n: int, seed: int, window_ms: int) -> Log:
    """A real SQLite log holding bench/replay.py's ``n`` entries, one durable batch per ``window_ms`` of their
    logged time (each batch logged at its last entry's time)."""
    entries, how = load_or_generate(n, seed)
    print(f"log: {n:,} entries ({how})")
    log = Log.create(SqliteStore(path / "log.db", create=True), SigningKey.generate(BENCH_ORIGIN))
    t0 = time.perf_counter()
    batch: list[bytes] = []
    first = at = 0
    for e in entries:
        if batch and (e.time_ms - first > window_ms or len(batch) >= 10_000):
            log.append(batch, at_ms=at)
            batch = []
        if not batch:
            first = e.time_ms
        batch.append(e.data)
        at = e.time_ms
    if batch:
        log.append(batch, at_ms=at)
    print(f"written into {path / 'log.db'} in {time.perf_counter() - t0:.1f} s "
          f"({len(log.checkpoint_sizes()):,} checkpoints)")
    return log


def timed(client, path: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise SystemExit(f"{path}: HTTP {r.status_code}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="log entries")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20, help="warm requests per page")
    ap.add_argument("--cold", type=int, default=3, help="cold requests per page (view derived again each time)")
    ap.add_argument("--window-s", type=int, default=60,
                    help="entries within this many seconds of logged time share one append (one checkpoint)")
    ap.add_argument("--quick", action="store_true", help="10,000 entries")
    args = ap.parse_args()
    n = 10_000 if args.quick else args.n
    from fastapi.testclient import TestClient

    from redline.server import create_app

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="redline-bench-dash-") as tmp:
        log = build_log(Path(tmp), n, args.seed, args.window_s * 1000)
        t = time.perf_counter()
        registry = Registry(log)
        st = registry.state
        print(f"registry replayed in {time.perf_counter() - t:.1f} s: {len(st.parties)} parties, {len(st.runs):,} "
              f"runs, {len(st.reviews):,} reviews, {len(st.violations):,} violations, {len(st.pauses)} pauses, "
              f"status {st.status}")
        app = create_app(registry)
        dash = app.state.dashboard
        mid = log.size // 2
        pairs = [("/", "/api/state"), ("/parties", "/api/parties"), ("/runs", "/api/runs"),
                 ("/reviews", "/api/reviews"), ("/violations", "/api/violations"), ("/log", "/checkpoint"),
                 (f"/entry/{mid}", f"/api/entries/{mid}"), ("/runs?page=5", "/api/runs?offset=400")]
        rows = []
        with TestClient(app) as client:
            client.get("/")  # warm imports and templates
            for page, api in pairs:
                cold = []
                for _ in range(args.cold):
                    dash._view = None  # as after the log moved
                    cold += timed(client, page, 1)
                warm = timed(client, page, args.repeat)
                js = timed(client, api, max(3, args.repeat // 2))
                rows.append((page, api, statistics.median(cold), statistics.median(warm),
                             sorted(warm)[int(0.95 * (len(warm) - 1))], statistics.median(js)))
        print(f"\n{'page':<16} {'cold ms':>8} {'warm ms':>8} {'p95 ms':>8}   {'JSON':<20} {'JSON ms':>8} "
              f"{'page/JSON':>9}")
        worst = 0.0
        for page, api, c, w, p95, j in rows:
            worst = max(worst, c, p95)
            print(f"{page:<16} {c:8.1f} {w:8.1f} {p95:8.1f}   {api:<20} {j:8.1f} {w / j:9.2f}")
        print(f"\nslowest page request (cold or warm p95): {worst:.1f} ms — goal at most {GOAL_MS:.0f} ms: "
              f"{'met' if worst <= GOAL_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
