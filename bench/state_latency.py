#!/usr/bin/env python3
"""Benchmark: how long ``redline state`` and an open for append take on a big log, with and without the caches.

The log is the replay benchmark's mix (``bench/replay.py``: every statement signed, 0.2% bad on purpose),
``--n`` entries (default 1,000,000) written into a real SQLite log directory, each entry at its own logged time
(written through the store, one signed checkpoint per 50,000 entries; built once and kept in ``bench/out/``).
Then, each ``redline`` command in a fresh process, timed from start to exit (start-up included):

1. the full open: ``redline log verify`` (re-derives every stored hash; it also leaves the verification record);
2. the full replay: ``redline state --no-cache`` (every entry replayed on both cores, every signature verified);
   it leaves a state snapshot beside the log;
3. ``--tail`` (1,000) new entries are appended, and ``redline state`` answers from the snapshot plus those
   entries (median of ``--repeat`` runs);
4. an open for append, in one process: ``open_log(LOGDIR, signing=True, verify=True)`` (cheap: the latest
   checkpoint and what changed since the verification record) against the full verification, same process;
5. the memory of the state after ``--n`` entries: the RSS a process gains loading it (from the snapshot: its
   timeline and transcript roots stay encoded until read), the snapshot's size, and the peak RSS of the full
   replay's largest process (every part of the state decoded, plus the entries in flight).

Goals (issue #17): state with 1,000 new entries ≤ 1 s; open for append ≤ 100 ms; the ratio (full replay over
snapshot-based state) is printed last.

Run:  .venv/bin/python bench/state_latency.py              (1,000,000 entries; the first run builds the log, long)
      .venv/bin/python bench/state_latency.py --n 100000   (a tenth)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from redline.crypto.keys import SigningKey
from redline.engine import Entry
from redline.log import merkle
from redline.log.checkpoint import Checkpoint
from redline.log.leaf import encode_leaf
from redline.log.service import Log, counter_line
from redline.log.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
REDLINE = Path(sys.executable).with_name("redline")
BATCH = 50_000
STATE_GOAL_S = 1.0
OPEN_GOAL_S = 0.100


def say(msg: str = "") -> None:
    print(msg, flush=True)


def _replay_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("_bench_replay", ROOT / "replay.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log_key(origin: str) -> SigningKey:
    return SigningKey(name=origin, seed=hashlib.sha256(b"redline bench state_latency log key").digest())


def write_entries(log: Log, entries: list[Entry], key: SigningKey) -> None:
    """Append ``entries`` through the store, each leaf with its entry's own time, one checkpoint per batch."""
    store = log.store
    size = store.size()
    frontier = list(store.read_hashes(merkle.frontier_indexes(size)))
    count = len(store.checkpoint_sizes())
    for start in range(0, len(entries), BATCH):
        batch = entries[start:start + BATCH]
        leaves, hashes = [], []
        for e in batch:
            leaf = encode_leaf(e.time_ms, e.data)
            leaves.append(leaf)
            hashes.extend(merkle.hashes_for_append(merkle.leaf_hash(leaf), size, frontier))
            size += 1
        cp = Checkpoint(key.name, size, merkle.root_from_frontier(frontier), (counter_line(count),)).sign(key)
        store.append(size - len(batch), leaves, hashes, cp, size)
        count += 1


def build(logdir: Path, entries: list[Entry], origin: str) -> None:
    """The log directory holding ``entries`` (built once: a ``complete`` marker says it is whole)."""
    if (logdir / "complete").exists():
        return
    if logdir.exists():
        shutil.rmtree(logdir)
    logdir.mkdir(parents=True)
    key = log_key(origin)
    from redline.crypto.keys import save_signing_key

    save_signing_key(key, logdir / "log.key")
    log = Log.create(SqliteStore(logdir / "log.db", create=True), key)
    t0 = time.perf_counter()
    write_entries(log, entries, key)
    log.store.close()
    (logdir / "complete").write_text("ok\n")
    say(f"log written in {time.perf_counter() - t0:.1f} s")


#: Runs one command and prints its wall time and the peak RSS of it and its helpers. A small process of its own:
#: a child forked from this (large) benchmark process would count the benchmark's pages in its peak.
RUN_PROBE = """
import resource, subprocess, sys, time
t0 = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

PEAKS: dict[str, float] = {}  # MiB, by command


def timed_cli(*args: str | Path, env: dict[str, str]) -> float:
    """Wall seconds of ``redline ARGS`` from start to exit; its peak RSS (with its helpers') goes to ``PEAKS``."""
    out = subprocess.run([sys.executable, "-c", RUN_PROBE, str(REDLINE), *map(str, args)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    PEAKS[" ".join(map(str, args[:1]))] = max(PEAKS.get(" ".join(map(str, args[:1])), 0.0), int(out[1]) / 1024)
    return float(out[0])


OPEN_PROBE = """
import sys, time
from pathlib import Path
from redline.cli.logdir import open_log
d = Path(sys.argv[1])
for mode in ("full", True, True):
    t0 = time.perf_counter()
    try:
        log = open_log(d, signing=True, verify=mode)
    except TypeError:
        log = open_log(d, signing=True, verify=True)
    dt = time.perf_counter() - t0
    log.store.close()
    print(mode, dt)
"""

MEMORY_PROBE = """
import gc, resource, sys
from pathlib import Path
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
from redline.cli.logdir import open_log
from redline import statecache
d = Path(sys.argv[1])
log = open_log(d, verify=True)
gc.collect()
before = rss()
loaded = statecache.load_state(log, d, save=False)
gc.collect()
print(rss() - before, loaded.snapshot_size, loaded.replayed)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="entries in the log (default 1,000,000)")
    ap.add_argument("--tail", type=int, default=1_000, help="new entries after the snapshot (default 1,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the snapshot-based state (median; default 3)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    n, tail = args.n, args.tail
    say(f"redline state latency benchmark: {n:,} entries + {tail:,} new, {time.strftime('%Y-%m-%d %H:%M')}")
    say(f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"{platform.platform()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rb = _replay_bench()
    entries, how = rb.load_or_generate(n + tail, args.seed)
    say(f"entries: {how}")
    logdir = OUT / f"state-latency-n{n}-t{tail}-seed{args.seed}"
    build(logdir, entries[:n], rb.BENCH_ORIGIN)
    # a private cache key and a log at exactly n entries with no caches: every run starts from the same place
    env = {**os.environ, "REDLINE_CACHE_KEY": str(logdir / "bench-cache.key")}
    os.environ["REDLINE_CACHE_KEY"] = env["REDLINE_CACHE_KEY"]
    store = SqliteStore(logdir / "log.db")
    size = store.size()
    store.close()
    if size != n:  # an earlier run appended the tail: start again from a copy-free rebuild
        (logdir / "complete").unlink()
        build(logdir, entries[:n], rb.BENCH_ORIGIN)
    for stale in ("snapshots", "verified"):  # the snapshots and the verification records (beside the bench key)
        p = logdir / stale
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    t_verify = timed_cli("log", "verify", logdir, env=env)
    say(f"full open   redline log verify                     {t_verify:8.2f} s")
    t_full = timed_cli("state", logdir, "--no-cache", env=env)
    peak_full = PEAKS.pop("state")  # MiB: the full replay, which also writes the snapshot
    snaps = sorted((logdir / "snapshots").glob("*.sealed")) if (logdir / "snapshots").is_dir() else []
    snap_bytes = snaps[-1].stat().st_size if snaps else 0
    say(f"full replay redline state --no-cache               {t_full:8.2f} s  ({n / t_full:,.0f} entries/s; "
        f"snapshot written: {snaps[-1].name if snaps else 'none'}, {snap_bytes / 1e6:,.1f} MB)")

    key = log_key(rb.BENCH_ORIGIN)
    store = SqliteStore(logdir / "log.db")
    log = Log.open(store, key=key, verify=False)
    write_entries(log, entries[n:n + tail], key)
    store.close()
    runs = [timed_cli("state", logdir, env=env) for _ in range(max(1, args.repeat))]
    t_state = statistics.median(runs)
    say(f"snapshot    redline state ({tail:,} new entries)        {t_state:8.2f} s  (runs: "
        f"{', '.join(f'{r:.2f}' for r in runs)})")

    out = subprocess.run([sys.executable, "-c", OPEN_PROBE, str(logdir)], env=env, check=True, capture_output=True,
                         text=True).stdout.split("\n")
    opens = [float(line.split()[1]) for line in out if line.strip()]
    say(f"open for append: full verification {opens[0] * 1e3:,.0f} ms; cheap {opens[1] * 1e3:,.1f} ms "
        f"(record written by the first), then {opens[2] * 1e3:,.1f} ms")

    mem = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(logdir)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    say(f"memory: the state of {n + tail:,} entries takes {int(mem[0]) / 2**20:,.0f} MiB of RSS (loaded from the "
        f"snapshot at {mem[1]}, {mem[2]} entries replayed); its snapshot file {snap_bytes / 2**20:,.0f} MiB; the "
        f"full replay (writing the snapshot) peaked at {peak_full:,.0f} MiB of RSS, `redline state` from the snapshot "
        f"at {PEAKS.get('state', 0):,.0f} MiB")
    say(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say()
    say(f"goal: redline state with {tail:,} new entries <= {STATE_GOAL_S:g} s: "
        f"{'MET' if t_state <= STATE_GOAL_S else 'NOT MET'} ({t_state:.2f} s)")
    say(f"goal: open for append <= {OPEN_GOAL_S * 1e3:g} ms: {'MET' if opens[2] <= OPEN_GOAL_S else 'NOT MET'} "
        f"({opens[2] * 1e3:.1f} ms)")
    say(f"ratio (full replay / snapshot-based state): {t_full / t_state:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
