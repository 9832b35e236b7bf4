#!/usr/bin/env python3
"""Benchmark: checkpoint hashing throughput, redline against the ``model-signing`` package, same files, same run.

``--files`` safetensors checkpoints of ``--mib`` MiB each (random float32
tensors) are written to a temporary directory and read once so that every side
hashes from the page cache. Then, ``--reps`` times, in rotating order:

- model-signing, SHA-256: ``model_signing.hashing.Config().use_file_serialization(
  hashing_algorithm="sha256").hash(dir)`` (its default: 1 MiB reads, files in parallel);
- model-signing, BLAKE3: the same with ``hashing_algorithm="blake3"`` (memory map, all cores);
- redline, SHA-256: ``redline.transcript.digest.hash_files(paths, "sha256")``
  (a read-only memory map, no copy out of the page cache; files in parallel);
- redline, BLAKE3: ``hash_files(paths, "blake3")`` (memory map, all cores).

Every side's digests are checked against ``hashlib``/``blake3`` (untimed). The
figure is each side's best run (as ``timeit`` does: on a shared machine the best
run is the one least disturbed by other work; the median is printed beside it);
the goals are redline SHA-256 ≥ 1× model-signing SHA-256 and redline BLAKE3 ≥ 2×
model-signing SHA-256 (its default); redline BLAKE3 against model-signing BLAKE3
is shown too.

    .venv/bin/python bench/hash_throughput.py            # 4 × 128 MiB
    .venv/bin/python bench/hash_throughput.py --quick    # 2 × 16 MiB
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import blake3
import numpy as np

from redline.transcript import stfile
from redline.transcript.digest import hash_files


def write_checkpoints(root: Path, files: int, mib: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        n = mib * 2**20 // 4 // 4
        tensors = {f"model.layer{j}.weight": stfile.TensorData("F32", (n,), rng.standard_normal(n, dtype=np.float32))
                   for j in range(4)}
        path = root / f"checkpoint-{i}.safetensors"
        with open(path, "wb") as f:
            stfile.write(f, tensors, {"redline.step": str(i)})
        paths.append(path)
    return paths


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=4, help="checkpoint files (default 4)")
    p.add_argument("--mib", type=int, default=128, help="MiB per file (default 128)")
    p.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--dir", type=Path, default=None, help="where the temporary files go")
    p.add_argument("--quick", action="store_true", help="2 files of 16 MiB, 3 repetitions")
    args = p.parse_args()
    if args.quick:
        args.files, args.mib, args.reps = 2, 16, 3
    import model_signing
    from model_signing import hashing

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, model-signing {model_signing.__version__}, "
          f"blake3 {blake3.__version__}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        paths = write_checkpoints(root, args.files, args.mib)
        total = sum(p.stat().st_size for p in paths)
        want_sha = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]  # also warms the page cache
        want_b3 = [blake3.blake3(p.read_bytes()).hexdigest() for p in paths]
        print(f"{args.files} safetensors files, {total / 2**20:.0f} MiB in all, hashed from the page cache")

        def ms(alg: str):
            def run() -> list[str]:
                manifest = hashing.Config().use_file_serialization(hashing_algorithm=alg).hash(root)
                by_name = {Path(r.identifier).name: r.digest.digest_hex for r in manifest.resource_descriptors()}
                return [by_name[p.name] for p in paths]
            return run

        sides = {
            "model-signing sha256": ms("sha256"),
            "model-signing blake3": ms("blake3"),
            "redline sha256": lambda: hash_files(paths, "sha256"),
            "redline blake3": lambda: hash_files(paths, "blake3"),
        }
        for name, run in sides.items():  # correctness, untimed
            got = run()
            assert got == (want_b3 if name.endswith("blake3") else want_sha), name
        times: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for rep in range(args.reps):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                start = time.perf_counter()
                sides[name]()
                times[name].append(time.perf_counter() - start)
    rate = {name: total / min(t) / 1e9 for name, t in times.items()}
    for name, r in rate.items():
        print(f"{name:22s} {r:6.2f} GB/s best, {total / statistics.median(times[name]) / 1e9:6.2f} GB/s median  "
              f"(runs {', '.join(f'{x:.3f}' for x in times[name])} s)")
    base = rate["model-signing sha256"]
    print(f"redline blake3 / model-signing blake3: {rate['redline blake3'] / rate['model-signing blake3']:.2f}×")
    print(f"ratio vs model-signing sha256 (its default), best of {args.reps}: redline sha256 "
          f"{rate['redline sha256'] / base:.2f}× (goal ≥ 1×), redline blake3 {rate['redline blake3'] / base:.2f}× "
          "(goal ≥ 2×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
