#!/usr/bin/env python3
"""Benchmark: redline's SQLite log against pymerkle's ``SqliteTree``, in the same run.

Two measurements, each side by side with pymerkle 7.0.0 (the baseline), ratio last:

1. Durable append throughput: ``--entries`` random entries of ``--entry-bytes``
   (default 100,000 x 1,024 bytes, fixed seed), appended in batches of ``--batch``
   (default 1,000), in ``--runs`` runs (default 3; median reported). Every batch is
   one durable commit on both sides: redline's ``Log.append(batch)`` is one
   ``BEGIN IMMEDIATE`` transaction holding the leaves, their stored hashes and one
   signed checkpoint; pymerkle's ``SqliteTree.append_entries(batch)`` is one
   ``with connection:`` transaction.
2. Inclusion-proof latency at ``--proof-size`` entries (default 1,000,000 entries of
   ``--proof-entry-bytes``, default 32 bytes, to keep the build quick): both logs are
   built (build time reported, not counted), reopened, and each proves the same
   fixed random sample of indexes against the full tree size.

Fairness: both databases live in one temporary directory on one file system; both
connections run ``journal_mode=WAL`` and ``synchronous=FULL`` (redline sets these
itself; pymerkle leaves SQLite's defaults, ``journal_mode=DELETE`` with
``synchronous=FULL``, so the benchmark sets WAL + FULL on its public ``con``
connection and reads both pragmas back). pymerkle with its own defaults is also
measured for appends, for information. Appends are interleaved batch by batch
(rotating which side goes first) so both see the same disk and cache conditions;
the ratio is the median of the per-run ratios. The output starts with the file
system and the measured fsync latency, since a durable commit's cost depends on them.
Proofs use pymerkle's default subroot cache (LRU, 1 GiB, subtrees of >= 128 leaves),
empty after reopening and kept across proofs, as a long-lived process would; a
second pass over the same indexes shows both with warm caches.

Correctness is checked outside the timings: every redline proof verifies with
``redline.log.merkle.verify_inclusion`` against the root in redline's signed
checkpoint; every pymerkle proof verifies with ``pymerkle.verify_inclusion``; and
pymerkle's leaf hashes (``SHA-256(0x00 || entry)``, the RFC 6962 leaf hash) are
loaded into redline's ``ListHashReader``, whose root must equal pymerkle's root and
whose ``merkle.prove_inclusion`` paths must equal pymerkle's proof paths hash for
hash, so both sides compute the same RFC 6962 audit paths. (redline's own leaves
carry an 8-byte integration time before the entry, so its roots differ from
pymerkle's for the same entries; that is why the cross-check uses pymerkle's
leaf hashes.)

Run:  .venv/bin/python bench/log_append.py            (full: 3 x 100k appends, proofs at 1M; ~30 s here)
      .venv/bin/python bench/log_append.py --quick    (smoke run, well under a minute)
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymerkle
from pymerkle import SqliteTree

from redline.crypto.keys import SigningKey
from redline.log import merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.service import MAX_BATCH, Log
from redline.log.sqlite import SqliteStore

GOAL_APPENDS_PER_S = 10_000
GOAL_APPEND_RATIO = 1.0
GOAL_PROOF_SPEEDUP = 10.0
ORIGIN = "bench.redline.example/log"


# --- helpers -----------------------------------------------------------------


def fs_type(path: Path) -> str:
    """The file system type and device holding ``path`` (best effort, from /proc/mounts)."""
    try:
        best = ("", "?", "?")
        real = str(path.resolve())
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, typ, *_ = line.split()
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, typ, dev)
        return f"{best[1]} on {best[2]} (mounted at {best[0]})"
    except OSError:
        return "unknown"


def fsync_probe(tmp: Path, count: int = 20) -> str:
    """Median time to write and fsync 4 KiB and 1 MiB in ``tmp``: what a durable commit costs on this disk."""
    out = []
    for size in (4096, 1 << 20):
        path = tmp / "fsync-probe"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            ts = []
            for _ in range(count):
                os.write(fd, os.urandom(size))
                t = time.perf_counter()
                os.fsync(fd)
                ts.append(time.perf_counter() - t)
        finally:
            os.close(fd)
            path.unlink()
        out.append(f"{size // 1024:,} KiB {statistics.median(ts) * 1e3:.2f} ms")
    return "fsync after writing " + ", ".join(out) + " (median)"


def pragmas(con: sqlite3.Connection) -> str:
    jm = con.execute("PRAGMA journal_mode").fetchone()
    sy = con.execute("PRAGMA synchronous").fetchone()
    # pymerkle's connection has a row factory returning the bare value.
    jm = jm[0] if isinstance(jm, tuple) else jm
    sy = sy[0] if isinstance(sy, tuple) else sy
    return f"journal_mode={jm}, synchronous={ {0: 'OFF', 1: 'NORMAL', 2: 'FULL', 3: 'EXTRA'}.get(sy, sy)}"


def make_durable_like_redline(tree: SqliteTree) -> None:
    """Give pymerkle's connection redline's pragmas: WAL, synchronous=FULL."""
    tree.con.execute("PRAGMA journal_mode=WAL")
    tree.con.execute("PRAGMA synchronous=FULL")


def random_entries(n: int, size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(n)]


@dataclass
class Latency:
    ns: list[int]

    @property
    def median_us(self) -> float:
        return statistics.median(self.ns) / 1e3

    @property
    def p95_us(self) -> float:
        s = sorted(self.ns)
        return s[max(0, math.ceil(0.95 * len(s)) - 1)] / 1e3

    @property
    def first_us(self) -> float:
        return self.ns[0] / 1e3


def fmt_us(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), line]
    for r in rows:
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


def say(msg: str = "") -> None:
    print(msg, flush=True)


# --- 1. durable appends ----------------------------------------------------------


def append_run(tmp: Path, batches: list[list[bytes]], n: int, run: int) -> dict[str, float]:
    """One interleaved run of all three sides over fresh databases; entries/s per side."""
    key = SigningKey.generate(ORIGIN)
    store = SqliteStore(tmp / f"redline-append-{run}.db", create=True)
    log = Log.create(store, key)
    pm = SqliteTree(str(tmp / f"pymerkle-append-{run}.db"))
    make_durable_like_redline(pm)
    pm_default = SqliteTree(str(tmp / f"pymerkle-default-append-{run}.db"))
    if run == 0:
        say(f"redline connection:            {pragmas(store._db)}")
        say(f"pymerkle connection (as run):  {pragmas(pm.con)}  (set by this benchmark, as redline's)")
        say(f"pymerkle with its defaults:    {pragmas(pm_default.con)}  (informational row)")

    def run_redline(b: list[bytes]) -> None:
        log.append(b)

    sides = [("redline", run_redline), ("pymerkle", pm.append_entries), ("pymerkle-default", pm_default.append_entries)]
    spent = {name: 0.0 for name, _ in sides}
    gc.collect()
    for i, b in enumerate(batches):
        k = (i + run) % len(sides)
        for name, fn in sides[k:] + sides[:k]:  # rotate who goes first
            t0 = time.perf_counter()
            fn(b)
            spent[name] += time.perf_counter() - t0

    # Correctness (untimed): sizes, and roots against an independent computation.
    assert log.size == n and pm.get_size() == n and pm_default.get_size() == n
    cp, _ = open_checkpoint(log.checkpoint(), key.verifier())
    rl_root = merkle.root_of([merkle.leaf_hash(leaf) for _, leaf in store.iter_leaves()])
    assert cp.size == n and cp.root == rl_root == log.root(), "redline root mismatch"
    pm_root = merkle.root_of([merkle.leaf_hash(e) for b in batches for e in b])
    assert pm.get_root() == pm_root == pm_default.get_root(), "pymerkle root mismatch"
    store.close()
    pm.close()
    pm_default.close()
    for f in tmp.glob(f"*-append-{run}.db*"):
        f.unlink()
    return {name: n / s for name, s in spent.items()}


def bench_appends(tmp: Path, n: int, entry_bytes: int, batch: int, seed: int, runs: int) -> dict[str, float]:
    say(f"## Durable appends: {n:,} entries of {entry_bytes:,} bytes (seed {seed}), {batch:,} entries per commit, "
        f"{runs} run(s)")
    entries = random_entries(n, entry_bytes, seed)
    batches = [entries[i : i + batch] for i in range(0, n, batch)]
    per_run = [append_run(tmp, batches, n, r) for r in range(runs)]
    say("check: every run's redline signed checkpoint root and both pymerkle roots match independent RFC 6962 roots")
    labels = {
        "redline": "redline Log.append (WAL, FULL, 1 signed checkpoint/batch)",
        "pymerkle": "pymerkle SqliteTree.append_entries (WAL, FULL)",
        "pymerkle-default": "pymerkle, its defaults (DELETE journal, FULL)",
    }
    med = {name: statistics.median(r[name] for r in per_run) for name in labels}
    rows = [[label, *(f"{r[name]:,.0f}" for r in per_run), f"{med[name]:,.0f}"] for name, label in labels.items()]
    for base, label in (("pymerkle", "ratio redline/pymerkle (WAL, FULL)"),
                        ("pymerkle-default", "ratio redline/pymerkle (its defaults)")):
        ratios = [r["redline"] / r[base] for r in per_run]
        med[f"ratio-{base}"] = statistics.median(ratios)
        rows.append([label, *(f"{x:.2f}x" for x in ratios), f"{med[f'ratio-{base}']:.2f}x"])
    say(table(["entries/s", *(f"run {i + 1}" for i in range(runs)), "median"], rows))
    say()
    return med


# --- 2. inclusion proofs -------------------------------------------------------


def bench_proofs(tmp: Path, size: int, entry_bytes: int, samples: int, pm_samples: int, seed: int
                 ) -> dict[str, tuple[Latency, Latency]]:
    say(f"## Inclusion proofs at {size:,} entries of {entry_bytes} bytes (seed {seed + 1})")
    entries = random_entries(size, entry_bytes, seed + 1)
    chunk = min(MAX_BATCH, 100_000)
    key = SigningKey.generate(ORIGIN)

    t0 = time.perf_counter()
    store = SqliteStore(tmp / "redline-proofs.db", create=True)
    log = Log.create(store, key)
    for i in range(0, size, chunk):
        log.append(entries[i : i + chunk])
    store.close()
    rl_build = time.perf_counter() - t0
    say(f"built redline log in {rl_build:.1f} s ({chunk:,} entries per commit)")

    t0 = time.perf_counter()
    pm = SqliteTree(str(tmp / "pymerkle-proofs.db"))
    make_durable_like_redline(pm)
    for i in range(0, size, chunk):
        pm.append_entries(entries[i : i + chunk])
    pm.close()
    pm_build = time.perf_counter() - t0
    say(f"built pymerkle tree in {pm_build:.1f} s ({chunk:,} entries per commit)")

    rng = random.Random(seed + 2)
    indexes = [rng.randrange(size) for _ in range(samples)]  # 0-based
    pm_indexes = indexes[:pm_samples]

    # Reopen both: fresh connections, empty pymerkle subroot cache.
    store = SqliteStore(tmp / "redline-proofs.db")
    log = Log.open(store, key=key, verify=False)  # verify=True would re-hash the whole log: opening cost, not proofs
    pm = SqliteTree(str(tmp / "pymerkle-proofs.db"))
    make_durable_like_redline(pm)
    assert log.size == size and pm.get_size() == size

    def time_redline() -> tuple[Latency, list[list[bytes]]]:
        ns, proofs = [], []
        for i in indexes:
            t = time.perf_counter_ns()
            p = log.prove_inclusion(i, size)
            ns.append(time.perf_counter_ns() - t)
            proofs.append(p)
        return Latency(ns), proofs

    def time_pymerkle() -> tuple[Latency, list[pymerkle.InclusionProof]]:
        ns, proofs = [], []
        for i in pm_indexes:
            t = time.perf_counter_ns()
            p = pm.prove_inclusion(i + 1, size)  # pymerkle counts leaves from one
            ns.append(time.perf_counter_ns() - t)
            proofs.append(p)
        return Latency(ns), proofs

    gc.collect()
    rl_cold, rl_proofs = time_redline()
    pm_cold, pm_proofs = time_pymerkle()
    rl_warm, _ = time_redline()
    pm_warm, _ = time_pymerkle()
    info = pm.get_cache_info()

    # Correctness (untimed).
    cp, _ = open_checkpoint(log.checkpoint(), key.verifier())
    assert cp.size == size
    for i, p in zip(indexes, rl_proofs):
        merkle.verify_inclusion(i, size, merkle.leaf_hash(log.leaf(i)), p, cp.root)
    pm_root = pm.get_root(size)
    for i, p in zip(pm_indexes, pm_proofs):
        pymerkle.verify_inclusion(pm.get_leaf(i + 1), pm_root, p, index=i + 1, size=size)
    reader = merkle.ListHashReader(merkle.leaf_hash(e) for e in entries)
    assert reader.root() == pm_root, "pymerkle's root is not the RFC 6962 root of its leaves"
    for i, p in zip(pm_indexes, pm_proofs):
        assert p.path[0] == merkle.leaf_hash(entries[i])
        assert p.path[1:] == merkle.prove_inclusion(i, size, reader), f"pymerkle's path for {i} differs"
    say(f"check: {len(indexes)} redline proofs verify against its signed checkpoint; {len(pm_indexes)} pymerkle "
        "proofs verify with pymerkle and equal redline's merkle.prove_inclusion over pymerkle's leaf hashes")
    say(f"pymerkle subroot cache after both passes: {info.size / 2**20:.1f} MiB, {info.hits:,} hits, "
        f"{info.misses:,} misses")
    store.close()
    pm.close()

    rows = []
    for label, rl, pml in (("fresh (reopened, empty caches)", rl_cold, pm_cold),
                           ("warm (same indexes again)", rl_warm, pm_warm)):
        rows.append([f"redline, {label}", f"{len(rl.ns)}", fmt_us(rl.median_us), fmt_us(rl.p95_us),
                     fmt_us(rl.first_us)])
        rows.append([f"pymerkle, {label}", f"{len(pml.ns)}", fmt_us(pml.median_us), fmt_us(pml.p95_us),
                     fmt_us(pml.first_us)])
    say(table(["implementation, pass", "proofs", "median", "p95", "first proof"], rows))
    say()
    return {"fresh": (rl_cold, pm_cold), "warm": (rl_warm, pm_warm)}


# --- main ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=100_000, help="entries to append (default 100000)")
    ap.add_argument("--entry-bytes", type=int, default=1024, help="bytes per appended entry (default 1024)")
    ap.add_argument("--batch", type=int, default=1000, help="entries per durable commit, both sides (default 1000)")
    ap.add_argument("--runs", type=int, default=3, help="append runs, median reported (default 3)")
    ap.add_argument("--proof-size", type=int, default=1_000_000, help="log size for the proof part (default 1000000)")
    ap.add_argument("--proof-entry-bytes", type=int, default=32, help="bytes per entry in the proof part (default 32)")
    ap.add_argument("--samples", type=int, default=200, help="inclusion proofs timed for redline (default 200)")
    ap.add_argument("--pymerkle-samples", type=int, default=None,
                    help="inclusion proofs timed for pymerkle, the first of redline's indexes (default: --samples)")
    ap.add_argument("--seed", type=int, default=20240601, help="random seed for entries and indexes")
    ap.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the databases (the directory is printed)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5,000 appends, proofs at 50,000 entries")
    args = ap.parse_args(argv)
    if args.quick:
        args.entries, args.proof_size = 5_000, 50_000
        args.samples = min(args.samples, 100)
    pm_samples = args.samples if args.pymerkle_samples is None else min(args.pymerkle_samples, args.samples)
    if args.batch < 1 or args.batch > MAX_BATCH:
        ap.error(f"--batch must be between 1 and {MAX_BATCH}")

    tmp = Path(tempfile.mkdtemp(prefix="redline-bench-", dir=args.dir))
    say("# bench/log_append.py: redline log vs pymerkle SqliteTree")
    say(f"date {time.strftime('%Y-%m-%d %H:%M:%S %z')}; {platform.platform()}; {os.cpu_count()} CPUs; "
        f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; pymerkle {pymerkle.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} (other work on the machine skews both sides)")
    say(f"databases in {tmp}: {fs_type(tmp)}; {fsync_probe(tmp)}")
    say()
    try:
        rates = bench_appends(tmp, args.entries, args.entry_bytes, args.batch, args.seed, args.runs)
        lat = bench_proofs(tmp, args.proof_size, args.proof_entry_bytes, args.samples, pm_samples, args.seed)
    finally:
        if args.keep:
            say(f"(databases kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    rl_rate, pm_rate, pmd_rate = rates["redline"], rates["pymerkle"], rates["pymerkle-default"]
    append_ratio = rates["ratio-pymerkle"]  # median over runs of the per-run (interleaved) ratio
    rl_cold, pm_cold = lat["fresh"]
    rl_warm, pm_warm = lat["warm"]
    speedup = pm_cold.median_us / rl_cold.median_us
    speedup_warm = pm_warm.median_us / rl_warm.median_us
    size = f"{args.proof_size / 1e6:g}M" if args.proof_size >= 1_000_000 else f"{args.proof_size:,}"
    ok_rate = rl_rate >= GOAL_APPENDS_PER_S
    ok_ratio = append_ratio >= GOAL_APPEND_RATIO
    mark = {True: "met", False: "NOT met"}
    note = "" if args.proof_size >= 1_000_000 else f" [the proof goal is set at 1M entries; this run used {size}]"
    say("## Result")
    say(f"appends/s (median of {args.runs} interleaved runs): redline {rl_rate:,.0f}, pymerkle {pm_rate:,.0f} "
        f"(same pragmas), pymerkle with its defaults {pmd_rate:,.0f}")
    say(f"proof latency at {size}, median (p95): fresh trees: redline {fmt_us(rl_cold.median_us)} "
        f"({fmt_us(rl_cold.p95_us)}), pymerkle {fmt_us(pm_cold.median_us)} ({fmt_us(pm_cold.p95_us)}); "
        f"warm caches: redline {fmt_us(rl_warm.median_us)} ({fmt_us(rl_warm.p95_us)}), "
        f"pymerkle {fmt_us(pm_warm.median_us)} ({fmt_us(pm_warm.p95_us)})")
    say(f"goal >= {GOAL_APPENDS_PER_S:,} appends/s: {mark[ok_rate]}; goal appends >= 1x pymerkle: {mark[ok_ratio]}; "
        f"goal proofs >= {GOAL_PROOF_SPEEDUP:g}x faster: {mark[speedup >= GOAL_PROOF_SPEEDUP]} on freshly opened "
        f"trees, {mark[speedup_warm >= GOAL_PROOF_SPEEDUP]} once pymerkle's subroot cache is warm{note}")
    say(f"append ratio (redline/pymerkle): {append_ratio:.2f}x  (vs pymerkle's defaults: "
        f"{rates['ratio-pymerkle-default']:.2f}x)")
    say(f"proof speedup at {size} (pymerkle/redline median latency): {speedup:.1f}x fresh, {speedup_warm:.1f}x warm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
