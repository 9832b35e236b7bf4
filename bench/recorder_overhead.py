#!/usr/bin/env python3
"""Benchmark: the cost of recording a training transcript, against the same training without it.

The tiny GPT (``redline.transcript.tinygpt``) is trained twice per repetition, in
the same process and with the same seed: plain (the baseline) and with the
``Recorder`` writing a transcript (checkpoint every ``--checkpoint-every`` steps,
durable writes — the script's defaults). Counting FLOP (``count_flop``, off in
``Recorder`` by default) is a one-off cost of one step, which on a short
benchmark run would weigh hundreds of times more than on a real one: it is left
out of the recorded runs unless ``--count-flop`` is given and measured on its own
at the end instead.

Default, paired: the two trainings advance step by step, alternately (which goes
first alternates), each step timed with what it includes (the recorded one: its
``Recorder.step``, checkpoint captures included). A slow or fast spell of a shared
machine, which moves whole runs made seconds apart by ±10 % here, then falls on
both sides alike. The checkpoint writer thread's work runs beside both sides and
slows both alike, so its CPU time (measured with ``time.thread_time`` in the
thread) is added to the recorded side in full. The ratio per repetition is
(recorded steps + writer CPU) / plain steps; the median over ``--reps`` is printed
last. The recorder's start (the checkpoint of step 0) and close are outside the
steps, but the writer CPU of every checkpoint, step 0's included, is counted.

``--runs``: the older measurement, whole runs one after the other (alternating
which goes first), ratio of the training loops; on a shared VM its repetitions
scatter by ±10 %, too much to resolve 1 %. It also prints the time the training
thread spends inside ``Recorder.step`` and the writer thread's CPU time, as
shares of the loop.

    .venv/bin/python bench/recorder_overhead.py                 # full run, paired
    .venv/bin/python bench/recorder_overhead.py --quick         # smoke run
    .venv/bin/python bench/recorder_overhead.py --runs          # whole runs instead
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

import torch

from redline.transcript import load_transcript
from redline.transcript.recorder import Recorder, _CheckpointWriter
from redline.transcript.tinygpt import TrainConfig, train

#: Seconds the training thread spent inside ``Recorder.step`` (per-step work and checkpoint copies).
inside_step = [0.0]


def _timed(step):
    def timed_step(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return step(self, *args, **kwargs)
        finally:
            inside_step[0] += time.perf_counter() - start
    return timed_step


Recorder.step = _timed(Recorder.step)  # type: ignore[method-assign]

#: CPU seconds the checkpoint writer thread spent serialising, hashing and storing checkpoints.
writer_cpu = [0.0]


def _cpu_timed(write):
    def timed_write(self, *args, **kwargs):
        start = time.thread_time()  # this thread's CPU time: what it could take from training, load or not
        try:
            return write(self, *args, **kwargs)
        finally:
            writer_cpu[0] += time.thread_time() - start
    return timed_write


_CheckpointWriter._write = _cpu_timed(_CheckpointWriter._write)  # type: ignore[method-assign]


def memory(device: str) -> str:
    """Live Python objects, threads and (on CUDA) device and pinned host memory: what would show a leak across runs."""
    import gc
    import threading

    out = f"; {len(gc.get_objects()):,} objects, {threading.active_count()} threads"
    if device.startswith("cuda"):
        try:
            host = torch.cuda.host_memory_stats()
            pinned = host.get("allocated_bytes.current", host.get("allocated_bytes", {}).get("current", 0))
        except Exception:  # older torch: no host allocator statistics
            pinned = float("nan")
        out += (f", CUDA allocated {torch.cuda.memory_allocated() / 2**20:.0f} MiB, reserved "
                f"{torch.cuda.memory_reserved() / 2**20:.0f} MiB, pinned host {pinned / 2**20:.0f} MiB")
    return out


def flop_count_cost(cfg: TrainConfig, device: str) -> float:
    """Seconds one training step takes longer under ``FlopCounterMode`` than without (median of 3 pairs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from redline.transcript.tinygpt import make_model, text_batches, train_step

    model = make_model(**cfg.model_kwargs()).to(device)
    batches = text_batches(cfg.seed, cfg.batch_size, cfg.model_kwargs()["seq_len"])
    extra = []
    for i in range(4):
        batch = {k: v.to(device) for k, v in batches.batch(i).items()}
        t = time.perf_counter()
        train_step(model, batch).backward()
        model.zero_grad()
        plain = time.perf_counter() - t
        t = time.perf_counter()
        with FlopCounterMode(display=False):
            train_step(model, batch).backward()
        model.zero_grad()
        if i:  # the first pair warms up
            extra.append(time.perf_counter() - t - plain)
    return statistics.median(extra)


def paired(cfg: TrainConfig, out: Path, args: argparse.Namespace, digests: tuple[str, ...],
           record_thread: bool | None) -> tuple[float, float, float]:
    """One paired repetition: the plain and the recorded training advance step by step, alternately.

    Two identical models (same seed, same data), one with the ``Recorder``. Each step of one is
    followed by the same step of the other (which goes first alternates), and each step is timed
    with what it includes (the recorded one: its ``Recorder.step``, checkpoint captures included).
    A slow or fast spell of the machine falls on both alike, within ~0.1 s, so the ratio of the
    sums is far steadier than a ratio of whole runs made seconds apart. The checkpoint writer's work
    runs beside both and slows both alike, so its CPU time is added to the recorded side in full.
    Returns ``(plain seconds, recorded seconds + writer CPU, writer CPU)``.
    """
    from redline.transcript.tinygpt import make_model, make_scheduler, seed_everything, text_batches, update

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
        seed_everything(cfg.seed)
        model = make_model(**cfg.model).to(args.device)
        optimizer = torch.optim.AdamW(model.parameters(), **cfg.optimizer_kwargs())
        return model, optimizer, make_scheduler(optimizer, cfg.warmup_steps, cfg.steps)

    sides = [build(), build()]
    rec = Recorder(out, sides[1][0], sides[1][1], party=cfg.party, run_id=cfg.run_id, init=cfg.init(),
                   scheduler=sides[1][2], declaration=cfg.declaration(),
                   checkpoint_every=args.checkpoint_every, digests=digests, record_thread=record_thread,
                   writer_idle=args.writer_idle).start()
    source = text_batches(cfg.seed, cfg.batch_size, cfg.model_kwargs()["seq_len"])
    writer_cpu[0] = 0.0
    spent = [0.0, 0.0]
    cuda = args.device.startswith("cuda")
    for position in range(cfg.steps):
        batch = source.batch(position)
        for side in ((0, 1) if position % 2 == 0 else (1, 0)):
            model, optimizer, scheduler = sides[side]
            t = time.perf_counter()
            loss = update(model, optimizer, scheduler, batch, cfg.max_grad_norm)
            if side:
                rec.step(batch, loss, position=position)
            if cuda:
                torch.cuda.synchronize()
            spent[side] += time.perf_counter() - t
    rec.close()
    return spent[0], spent[1] + writer_cpu[0], writer_cpu[0]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300, help="steps per run (default 300)")
    p.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint interval (default 100)")
    p.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--d-model", type=int, default=192, help="model width (default 192)")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks (default 4)")
    p.add_argument("--heads", type=int, default=4, help="attention heads (default 4)")
    p.add_argument("--seq-len", type=int, default=64, help="tokens per sequence (default 64)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per batch (default 8)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--blake3", action="store_true", help="also record BLAKE3 digests of checkpoints")
    p.add_argument("--runs", action="store_true",
                   help="time whole runs, plain then recorded (alternating), instead of the paired step-by-step "
                        "measurement (the default)")
    p.add_argument("--writer-idle", action="store_true",
                   help="run the checkpoint writer thread in SCHED_IDLE (Linux) instead of at nice 10")
    p.add_argument("--count-flop", action="store_true",
                   help="also count the first step's FLOP in the recorded runs (a one-off cost; off by default, as in "
                        "Recorder, and measured separately at the end)")
    p.add_argument("--device", default="cpu", help="torch device to train on (default cpu)")
    p.add_argument("--record-thread", choices=["auto", "on", "off"], default="auto",
                   help="records on their own thread: auto (the recorder's default: on for GPU models), on, off")
    p.add_argument("--dir", type=Path, default=None, help="where the temporary transcripts go")
    p.add_argument("--quick", action="store_true", help="smoke run: 40 steps, checkpoint every 20, 2 reps, "
                                                         "a smaller model")
    args = p.parse_args()
    if args.quick:
        args.steps, args.checkpoint_every, args.reps = 40, 20, 2
        args.d_model, args.layers, args.heads, args.seq_len, args.batch_size = 64, 2, 4, 64, 8
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(steps=args.steps, seed=0, batch_size=args.batch_size,
                      model={"d_model": args.d_model, "n_layer": args.layers, "n_head": args.heads,
                             "seq_len": args.seq_len})
    digests = ("sha256", "blake3") if args.blake3 else ("sha256",)
    record_thread = {"auto": None, "on": True, "off": False}[args.record_thread]
    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, device {args.device}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        counter = 0
        shares: list[float] = []
        writer_shares: list[float] = []  # the writer thread's CPU time per recorded run / its loop time

        def plain() -> tuple[float, float]:
            result = train(cfg, None, device=args.device, count_flop=False)
            return result.seconds, result.loop_seconds

        def recorded() -> tuple[float, float]:
            nonlocal counter
            counter += 1
            out = root / f"t{counter}"
            inside_step[0] = writer_cpu[0] = 0.0
            result = train(cfg, out, checkpoint_every=args.checkpoint_every, digests=digests, device=args.device,
                           record_thread=record_thread, count_flop=args.count_flop, writer_idle=args.writer_idle)
            shares.append(inside_step[0] / result.loop_seconds)
            writer_shares.append(writer_cpu[0] / result.loop_seconds)
            return result.seconds, result.loop_seconds

        plain()
        recorded()  # warm-up pair, not counted
        m = load_transcript(root / "t1").manifest
        size = m.checkpoints[-1].size
        print(f"model: {m.parameter_count:,} parameters, {args.batch_size}×{args.seq_len} tokens per step; "
              f"{args.steps} steps, checkpoint every {args.checkpoint_every} ({len(m.checkpoints)} checkpoints of "
              f"{size / 2**20:.1f} MiB: model, AdamW state, generators); digests {', '.join(digests)}; "
              + (f"FLOP per step (counted) {m.flop.per_step:.3g}" if m.flop else "FLOP not counted"))
        if not args.runs:
            ratios = []
            for rep in range(args.reps):
                inside_step[0] = 0.0
                pl, rl, wc = paired(cfg, root / f"p{rep}", args, digests, record_thread)
                ratios.append(rl / pl)
                print(f"rep {rep + 1} (paired): plain {pl:.2f} s ({pl / args.steps * 1000:.1f} ms/step), recorded "
                      f"{rl - wc:.2f} s (of which in Recorder.step {inside_step[0] * 1000:.0f} ms) + checkpoint "
                      f"writer CPU {wc * 1000:.0f} ms; ratio {ratios[-1]:.4f}  (load {os.getloadavg()[0]:.2f})",
                      flush=True)
        whole, loop = [], []
        for rep in range(args.reps if args.runs else 0):
            order = (plain, recorded) if rep % 2 == 0 else (recorded, plain)
            times = {f.__name__: f() for f in order}
            (pw, pl), (rw, rl) = times["plain"], times["recorded"]
            whole.append(rw / pw)
            loop.append(rl / pl)
            print(f"rep {rep + 1}: plain {pw:.2f} s ({pl / args.steps * 1000:.1f} ms/step in the loop), recorded "
                  f"{rw:.2f} s (loop {rl:.2f} s, of which in Recorder.step {shares[-1] * rl * 1000:.0f} ms = "
                  f"{shares[-1] * rl / args.steps * 1e6:.0f} µs/step; start + close {rw - rl:.2f} s); ratio loop "
                  f"{loop[-1]:.4f}, whole run {whole[-1]:.4f}  (load {os.getloadavg()[0]:.2f}{memory(args.device)})")
        for i in range(counter):
            load_transcript(root / f"t{i + 1}", verify_checkpoints=False)
    if not args.runs:
        m = statistics.median(ratios)
        print(f"paired ratios {min(ratios):.4f}..{max(ratios):.4f}")
        if not args.count_flop:
            print(f"one-off cost of counting FLOP (Recorder(count_flop=True), first step under FlopCounterMode), "
                  f"median of 3: {flop_count_cost(cfg, args.device) * 1000:.0f} ms")
        print(f"median ratio recorded/plain (paired steps, writer CPU counted against the recorder): {m:.4f} "
              f"({(m - 1) * 100:+.2f} %; goal ≤ +1 %)")
        return 0
    print(f"loop ratios {min(loop):.4f}..{max(loop):.4f}; whole-run ratios {min(whole):.4f}..{max(whole):.4f}")
    print(f"training thread inside Recorder.step (median over recorded runs, warm-up excluded): "
          f"{statistics.median(shares[1:]) * 100:.2f} % of the loop")
    ws = statistics.median(writer_shares[1:])
    print(f"checkpoint writer thread CPU time (median, every checkpoint of the run, step 0's included): "
          f"{ws * 100:.2f} % of the loop; recorder CPU in all, training thread + writer: "
          f"{(statistics.median(shares[1:]) + ws) * 100:.2f} % of the loop")
    print(f"median whole-run ratio (start, loop, final checkpoint and close): {statistics.median(whole):.4f}")
    if not args.count_flop:
        print(f"one-off cost of counting FLOP (Recorder(count_flop=True), first step under FlopCounterMode), "
              f"median of 3: {flop_count_cost(cfg, args.device) * 1000:.0f} ms")
    m = statistics.median(loop)
    print(f"median ratio recorded/plain, training loop: {m:.4f} ({(m - 1) * 100:+.2f} %; goal ≤ +1 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
