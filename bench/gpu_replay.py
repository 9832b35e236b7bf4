"""Replay on a GPU the segments of a transcript recorded on the CPU, against calibrated tolerances.

Verification is bitwise where replay is deterministic (same device type, deterministic
algorithms); across devices it is not, and the verifier falls back to per-metric
tolerances (L2, L∞, cosine) calibrated from honest replays. This script measures what
that means in numbers: for every segment of a CPU-recorded tiny-GPT transcript it
replays the segment on the GPU and reports the distance to the committed CPU end
checkpoint, the GPU-to-GPU replay noise, the tolerance ``calibrate`` derives, whether
each honest segment is accepted, and whether an end checkpoint forged by a small
perturbation (relative 1e-3 on every weight) would be accepted. The baseline is the
CPU replay of the same segment (bitwise); the ratio printed last is the largest
honest cross-device L2 distance over the forged one.

    python bench/gpu_replay.py --transcript DIR [--device cuda] [--out OUTDIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _cpu(tensors):
    return {k: v.detach().cpu() for k, v in tensors.items()}


def _forge(tensors, rel: float):
    out = {}
    for k, v in tensors.items():
        if k.startswith("model.") and v.is_floating_point():
            out[k] = v + rel * v.abs().mean()
        else:
            out[k] = v
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcript", required=True, type=Path, help="a transcript recorded on the CPU")
    parser.add_argument("--device", default="cuda", help="device to replay on (default cuda)")
    parser.add_argument("--calibrate", type=int, default=2, help="segments used to calibrate (default 2)")
    parser.add_argument("--forge", type=float, default=1e-3, help="relative perturbation of a forged end")
    parser.add_argument("--out", type=Path, default=None, help="write gpu_replay.json here")
    args = parser.parse_args(argv)

    import torch

    from redline.transcript import load_transcript
    from redline.transcript.replay import replay_segment
    from redline.verify.distance import calibrate, compare_states

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device here", file=sys.stderr)
        return 2
    t = load_transcript(args.transcript)
    env = {"torch": torch.__version__, "device": args.device,
           "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
           "recorded_on": t.manifest.environment.device_type}
    print(f"transcript {args.transcript}: {t.step_count} steps, {len(t.segments())} segments; replay on {env}")

    t0 = time.perf_counter()
    tol = calibrate(t, args.calibrate, device=args.device)
    print(f"calibrated tolerance ({args.calibrate} segments, {time.perf_counter() - t0:.1f} s): {tol.to_json()}")

    rows = []
    for seg in t.segments():
        a, b = seg.start.step, seg.end.step
        end = seg.end.load()
        started = time.perf_counter()
        cpu = replay_segment(t, a, b, device="cpu")
        gpu1 = replay_segment(t, a, b, device=args.device)
        gpu2 = replay_segment(t, a, b, device=args.device)
        took = time.perf_counter() - started
        g1, g2 = _cpu(gpu1.state.tensors), _cpu(gpu2.state.tensors)
        d_cpu = compare_states(_cpu(cpu.state.tensors), end.tensors, cpu.state.metadata, end.metadata)
        d_gpu = compare_states(g1, end.tensors, gpu1.state.metadata, end.metadata)
        d_noise = compare_states(g1, g2, gpu1.state.metadata, gpu2.state.metadata)
        d_forged = compare_states(g1, _forge(end.tensors, args.forge), gpu1.state.metadata, end.metadata)
        row = {"segment": f"{a}..{b}", "cpu_bitwise": d_cpu.bitwise_equal, "gpu_vs_cpu": d_gpu.to_json(),
               "gpu_vs_gpu": d_noise.to_json(), "honest_accepted": tol.accepts(d_gpu),
               "forged_accepted": tol.accepts(d_forged), "forged": d_forged.to_json(), "seconds": round(took, 2)}
        rows.append(row)
        m, f = d_gpu.to_json()["model"], d_forged.to_json()["model"]
        print(f"segment {a:>4}..{b:<4} cpu bitwise {d_cpu.bitwise_equal!s:5}  gpu-vs-cpu L2 {m['l2']:.3e} "
              f"Linf {m['linf']:.3e} cos {m['cosine']:.3e}  gpu-vs-gpu bitwise {d_noise.bitwise_equal!s:5}  "
              f"honest accepted {row['honest_accepted']!s:5}  forged (L2 {f['l2']:.3e}) accepted "
              f"{row['forged_accepted']!s:5}")

    worst_honest = max(r["gpu_vs_cpu"]["model"]["l2"] for r in rows)
    least_forged = min(r["forged"]["model"]["l2"] for r in rows)
    summary = {"environment": env, "tolerance": tol.to_json(), "segments": rows,
               "all_honest_accepted": all(r["honest_accepted"] for r in rows),
               "any_forged_accepted": any(r["forged_accepted"] for r in rows),
               "worst_honest_l2": worst_honest, "least_forged_l2": least_forged}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_replay.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print(f"all honest segments accepted: {summary['all_honest_accepted']}; "
          f"any forged end accepted: {summary['any_forged_accepted']}")
    print(f"ratio (worst honest cross-device L2 / least forged L2): {worst_honest / least_forged:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
