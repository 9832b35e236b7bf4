"""Detection rate of every known attack against the verification fraction, and what verification costs.

For each attack case (the cases of ``tests/test_attacks.py`` plus the three ``tamper`` targets) and each
seed, the spoofed transcript is forged **once** (tiny GPT, ``--steps`` steps, a checkpoint every
``--every``: m segments) and every segment is re-executed **once** (``redline.verify.segments.run_segment``,
bitwise, at the recorded single thread). The checks of ``verify_transcript`` that do not depend on the
sample are run once too: ``transcript`` (``load_transcript``: refuses tampering), ``data`` (``data_check``)
and ``compute`` (``count_step_flop`` from each segment's start vs the manifest's declared FLOP). Then, for
each verification fraction (10, 20, 30, 50, 100 % of the segments), the uniform sample is drawn with the
real ``redline.verify.sampling.uniform_sample`` from a per-seed sample seed, and the run counts as caught
iff a sample-independent check fails, a sampled segment's cached replay fails, or the compute check made
from the first sampled segment fails — exactly the verdict rule of ``verify_transcript``. The *default*
column is ``choose_sample`` at its defaults (P ≥ 0.95 vs f = 0.1, plus the 2 largest-update segments),
which is what ``verify_transcript`` replays; ``verify_transcript`` itself is run end to end on seed 0 of
every case to confirm the cached verdict equals its verdict.

Baseline: Proof-of-Learning-style verification (Jia et al. 2021): re-execute the ⌈m/2⌉ segments with the
largest parameter updates (PoL's top-Q rule, Q ≈ half the updates here), with the same data check.
redline: the default sample. Honest runs are verified end to end with both, ``--honest-seeds`` of them,
timed; the compute ratio redline / baseline is printed last.

Binding attacks (``redline.testing.attacks.BINDING_CASES``: code execution, hidden pre-training, transcript
reuse, releasing unverified weights) are not sampled: each is a deterministic binding, so each story is played
end to end, ``--seeds`` times, through the same API a lab and an auditor use (a real log, ``redline run
start|declare``, the registry, ``verify_transcript`` with the log's RunStart and declaration) at
``--binding-steps`` steps; a story counts as caught iff every attacking move in it was stopped (refused,
failed or left inconclusive by the verifier without running anything, or met with a violation). As their
baseline, ``--honest-seeds`` honest runs are declared and verified through the same API (false rejections).

    .venv/bin/python bench/verify_cost.py [--seeds 20] [--honest-seeds 50] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from redline.testing.attacks import BINDING_CASES, TAMPER_CASES
from redline.testing.attacks import CASES as ATTACK_CASES

#: case id -> (attack name, parameters): the cases of tests/test_attacks.py plus tampering.
CASES: dict[str, tuple[str, dict[str, Any]]] = {**ATTACK_CASES, **TAMPER_CASES}
FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
TARGET, ASSUMED_F, LARGEST = 0.95, 0.1, 2
BUDGET = 0.05
#: The long runs of the "at scale" part: a smaller model, so that 640 one-step segments stay affordable.
MICRO_MODEL = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


def sample_seed(case: str, seed: int) -> bytes:
    """The per-(case, seed) sampling seed (stands in for the log checkpoint's hash)."""
    return hashlib.sha256(f"redline-bench-verify-cost/{case}/{seed}".encode()).digest()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


# --- worker jobs (run in spawned processes) -----------------------------------------------------------------


def forge_and_replay(case: str, seed: int, steps: int, every: int, end_to_end: bool) -> dict[str, Any]:
    """Forge one spoofed transcript, replay every segment once, run the sample-independent checks."""
    _one_thread()
    from redline.errors import MalformedInput
    from redline.transcript.transcript import load_transcript
    from redline.verify import count_step_flop, data_check, update_norms, verify_transcript
    from redline.verify.distance import Tolerance
    from redline.verify.segments import run_segment, tasks_for

    name, params = CASES[case]
    from redline.testing.attacks import ATTACKS

    work = tempfile.mkdtemp(prefix="verify-cost-")
    try:
        t0 = time.perf_counter()
        s = ATTACKS[name].run(work, seed=seed, steps=steps, checkpoint_every=every, **params)
        out: dict[str, Any] = {"case": case, "seed": seed, "cost": s.cost, "faked": list(s.faked_segments),
                               "m": len(s.segment_starts), "forge_s": time.perf_counter() - t0}
        t1 = time.perf_counter()
        try:
            t = load_transcript(s.transcript_dir)
        except MalformedInput as exc:
            out.update(transcript_ok=False, transcript_detail=str(exc)[:300], data_ok=True, seg_ok=[],
                       flop_ok=[], norms=[])
            if end_to_end:
                r = verify_transcript(s.transcript_dir, seed=sample_seed(case, seed), workers=1)
                out["e2e"] = {"verdict": r.verdict, "failing": [c.name for c in r.checks if not c.passed]}
            return out
        segs = t.segments()
        out["m"] = len(segs)
        out["transcript_ok"] = True
        out["data_ok"] = data_check(t).passed
        tasks = tasks_for(str(s.transcript_dir), ((i, g.start.step, g.end.step) for i, g in enumerate(segs)),
                          Tolerance.exact())
        outcomes = [run_segment(task) for task in tasks]
        out["seg_ok"] = [o.passed for o in outcomes]
        out["seg_steps"] = [o.steps for o in outcomes]
        declared = t.manifest.flop.per_step * t.step_count if t.manifest.flop is not None else None
        flop_ok = []
        for g in segs:  # the compute check as verify_transcript makes it from a segment's start step
            try:
                per_step = count_step_flop(t, g.start.step)
                measured = per_step * t.step_count
                flop_ok.append(declared is None or abs(measured - declared) <= 0.3 * measured)
            except Exception:
                flop_ok.append(False)
        out["flop_ok"] = flop_ok
        out["norms"] = update_norms(t)
        out["replay_s"] = time.perf_counter() - t1
        if end_to_end:
            r = verify_transcript(s.transcript_dir, seed=sample_seed(case, seed), workers=1)
            out["e2e"] = {"verdict": r.verdict, "failing": [c.name for c in r.checks if not c.passed],
                          "sample": r.sample.indexes if r.sample else None,
                          "compute_fraction": r.compute_fraction}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def honest_job(seed: int, steps: int, every: int) -> dict[str, Any]:
    """An honest run verified end to end by redline (default sample) and by the PoL-style baseline, timed."""
    _one_thread()
    from redline.testing.attacks import HONEST
    from redline.transcript.transcript import load_transcript
    from redline.verify import count_step_flop, data_check, update_norms, verify_transcript
    from redline.verify.distance import Tolerance
    from redline.verify.segments import run_segment, tasks_for

    work = tempfile.mkdtemp(prefix="verify-cost-honest-")
    try:
        s = HONEST.run(work, seed=seed, steps=steps, checkpoint_every=every)
        # redline: the full verifier at its defaults
        t0 = time.perf_counter()
        r = verify_transcript(s.transcript_dir, seed=sample_seed("honest", seed), workers=1)
        red_s = time.perf_counter() - t0
        # baseline: load, data check, the ceil(m/2) largest-update segments re-executed, one step counted
        t0 = time.perf_counter()
        t = load_transcript(s.transcript_dir)
        segs = t.segments()
        ok = data_check(t).passed
        norms = update_norms(t)
        q = math.ceil(len(segs) / 2)
        top = sorted(range(len(segs)), key=lambda i: (-norms[i], i))[:q]
        outs = [run_segment(task) for task in tasks_for(str(s.transcript_dir),
                                                          ((i, segs[i].start.step, segs[i].end.step) for i in top),
                                                          Tolerance.exact())]
        per_step = count_step_flop(t, segs[top[0]].start.step)
        base_steps = sum(o.steps for o in outs) + 1
        base_ok = ok and all(o.passed for o in outs)
        base_s = time.perf_counter() - t0
        return {"seed": seed, "m": len(segs), "verdict": r.verdict,
                "failing": [c.name for c in r.checks if not c.passed],
                "red_compute_fraction": r.compute_fraction, "red_replayed_steps": r.replayed_steps,
                "red_seconds": red_s, "base_pass": base_ok, "base_replayed_steps": base_steps,
                "base_compute_fraction": per_step * base_steps / (per_step * t.step_count),
                "base_seconds": base_s, "steps": t.step_count}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scale_job(case: str, seed: int, steps: int) -> dict[str, Any]:
    """A long run (``steps`` segments of one step, micro model) verified end to end at the defaults."""
    _one_thread()
    from redline.testing.attacks import ATTACKS, HONEST
    from redline.verify import verify_transcript

    name, params = ("honest", {}) if case == "honest" else CASES[case]
    attack = HONEST if case == "honest" else ATTACKS[name]
    work = tempfile.mkdtemp(prefix="verify-cost-scale-")
    try:
        t0 = time.perf_counter()
        s = attack.run(work, seed=seed, steps=steps, checkpoint_every=1, config={"model": MICRO_MODEL}, **params)
        forge_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = verify_transcript(s.transcript_dir, seed=sample_seed(f"scale/{case}", seed), workers=1)
        out = {"case": case, "seed": seed, "verdict": r.verdict, "failing": [c.name for c in r.checks if not c.passed],
               "m": r.sample.segment_count if r.sample else None, "faked": len(s.faked_segments),
               "sampled": len(r.sample.indexes) if r.sample else 0,
               "uniform": len(r.sample.uniform) if r.sample else 0, "capped": r.sample.capped if r.sample else None,
               "p_detect": r.p_detect, "compute_fraction": r.compute_fraction,
               # refused on load (tampering): nothing re-executed
               "sample_compute_fraction": (sum(o.steps for o in r.outcomes) + 1) / r.total_steps if r.outcomes else 0.0,
               "failing_step": r.failing_step, "forge_s": forge_s, "verify_s": time.perf_counter() - t0}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stopped_by(story: Any) -> list[str]:
    """What stopped a binding attack's moves: refusals (by the command line or the registry), the verifier's
    failed or inconclusive checks, and the engine's violations."""
    out = set()
    for a in story.answers:
        if a.refused:
            out.add("refused:" + ("redline run" if a.via.startswith("redline run") else
                                  "statement builder" if a.via.endswith(".build") else "registry"))
    for audit in story.audits.values():
        if audit.verdict != "pass":
            out.update(f"{audit.verdict}:{c.name}" for c in audit.result.checks if not c.passed)
    out.update(f"violation:{v.kind}" for v in story.violations)
    return sorted(out)


def binding_job(case: str, seed: int, steps: int, every: int) -> dict[str, Any]:
    """Play one binding attack's story end to end on its own log; what was stopped, by what, at what cost."""
    _one_thread()
    from redline.testing.attacks import ATTACKS

    name, params = BINDING_CASES[case]
    work = tempfile.mkdtemp(prefix="verify-cost-binding-")
    try:
        t0 = time.perf_counter()
        s = ATTACKS[name].run(work, seed=seed, steps=steps, checkpoint_every=every, **params)
        return {"case": case, "seed": seed, "caught": s.caught, "stopped": s.stopped, "cost": s.cost,
                "stopped_by": stopped_by(s), "verdicts": {k: a.verdict for k, a in s.audits.items()},
                "violations": [v.kind for v in s.violations], "fired": s.details.get("fired"),
                "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def honest_log_job(seed: int, steps: int, every: int) -> dict[str, Any]:
    """The binding attacks' baseline: an honest run declared on a log and verified through the same API."""
    _one_thread()
    from redline.testing.attacks._binding import honest_story

    work = tempfile.mkdtemp(prefix="verify-cost-honest-log-")
    try:
        t0 = time.perf_counter()
        _, audit, _ = honest_story(work, seed=seed, steps=steps, checkpoint_every=every)
        return {"seed": seed, "verdict": audit.verdict, "failing": audit.failed_checks(),
                "report_refused": audit.report is None or audit.report.refused,
                "checks": [c.name for c in audit.result.checks], "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- evaluating samples on the cached verdicts --------------------------------------------------------------


def caught(rec: dict[str, Any], indexes: list[int]) -> bool:
    """``verify_transcript``'s verdict rule on cached check results, for a given sample."""
    if not rec["transcript_ok"] or not rec["data_ok"]:
        return True
    if any(not rec["seg_ok"][i] for i in indexes):
        return True
    return not rec["flop_ok"][min(indexes)]


def default_indexes(rec: dict[str, Any], seed: bytes) -> list[int]:
    """The sample ``verify_transcript`` draws at its defaults, 5 % budget included."""
    from redline.verify import budget_segments
    from redline.verify.sampling import choose_sample

    cap = budget_segments(rec["seg_steps"], sum(rec["seg_steps"]), BUDGET)
    return choose_sample(seed, rec["m"], target_p_detect=TARGET, assumed_fake_fraction=ASSUMED_F,
                         update_norms=rec["norms"], largest=LARGEST, max_segments=cap).indexes


def evaluate(rec: dict[str, Any]) -> dict[str, Any]:
    """Detection per fraction (uniform sample), at the default sample, and by the PoL baseline."""
    from redline.verify.sampling import uniform_sample

    seed = sample_seed(rec["case"], rec["seed"])
    m = rec["m"]
    if not rec["transcript_ok"]:  # refused on load: caught whatever the sample
        return {"by_fraction": {f: True for f in FRACTIONS}, "default": True, "pol": True, "largest": True,
                "why": "transcript"}
    per = {}
    for f in FRACTIONS:
        n = max(1, min(m, round(f * m)))
        per[f] = caught(rec, sorted(uniform_sample(seed, m, n)))
    d = caught(rec, default_indexes(rec, seed))
    q = math.ceil(m / 2)
    top = sorted(range(m), key=lambda i: (-rec["norms"][i], i))[:q]
    pol = caught(rec, top)
    largest = caught(rec, top[:LARGEST])  # the largest-update rule alone (what catches 1-segment forgeries at large m)
    why = "data" if not rec["data_ok"] else ("segments" if not all(rec["seg_ok"]) else
                                           ("compute" if not all(rec["flop_ok"]) else "none"))
    return {"by_fraction": per, "default": d, "pol": pol, "largest": largest, "why": why}


def budget_table() -> list[dict[str, Any]]:
    """Verification fraction at the defaults for long runs, from sample_size/p_detect."""
    from redline.verify.sampling import p_detect, sample_size

    rows = []
    for m in (10, 100, 620, 1000, 10_000):
        n = sample_size(m, TARGET, ASSUMED_F)
        red = min(m, n + LARGEST + 1) / m  # uniform + at most 2 largest-update segments + the FLOP-count step
        pol = math.ceil(m / 2) / m
        rows.append({"m": m, "n": n, "p_detect": p_detect(m, n, ASSUMED_F), "redline_fraction": red,
                     "pol_fraction": pol, "ratio": red / pol, "within_5pct": red <= BUDGET})
    return rows


def smallest_m_within_budget() -> int:
    from redline.verify import budget_segments
    from redline.verify.sampling import sample_size

    m = 1  # one-step segments: the budget must hold the target's sample, the largest updates and the FLOP step
    while budget_segments([1] * m, m, BUDGET) < sample_size(m, TARGET, ASSUMED_F) + LARGEST:
        m += 1
    return m


def plot(result: dict[str, Any], png: Path) -> Path:
    """Detection rate against the verification fraction, one line per attack case (from the JSON result)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from redline.verify.sampling import p_detect

    fig, ax = plt.subplots(figsize=(9, 6))
    colors = plt.get_cmap("tab20").colors
    for i, (case, s) in enumerate(result["attacks"].items()):
        fr = sorted(s["by_fraction"], key=float)
        ax.plot([float(f) * 100 for f in fr], [s["by_fraction"][f] for f in fr], marker="osd^v<>"[i % 7],
                linestyle=("-", "--", ":")[i % 3], color=colors[i % len(colors)], label=case, alpha=0.85)
    m0 = next(iter(result["attacks"].values()))["m"] if result["attacks"] else 10
    xs = list(range(1, m0 + 1))
    ax.plot([x / m0 * 100 for x in xs], [p_detect(m0, x, ASSUMED_F) for x in xs], "k-", lw=2, alpha=0.4,
            label=f"p_detect(m={m0}, n, f={ASSUMED_F})")
    ax.set_xlabel(f"verification fraction (% of the {m0} segments re-executed, uniform sample)")
    ax.set_ylabel(f"detection rate ({result['config']['seeds']} seeds)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("redline verification: detection rate vs verification fraction")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per attack case (default 20)")
    ap.add_argument("--honest-seeds", type=int, default=50, help="honest runs (default 50)")
    ap.add_argument("--steps", type=int, default=100, help="steps per forged run (default 100)")
    ap.add_argument("--every", type=int, default=10, help="checkpoint every (default 10)")
    ap.add_argument("--honest-steps", type=int, default=60, help="steps per honest run (default 60)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES) + sorted(BINDING_CASES),
                    help="only these attack cases, sampled and binding (default: all)")
    ap.add_argument("--binding-steps", type=int, default=20,
                    help="steps per run of the binding attacks and their honest baseline (default 20)")
    ap.add_argument("--scale-steps", type=int, default=640,
                    help="steps (= one-step segments) of the long runs verified at the defaults (default 640)")
    ap.add_argument("--scale-seeds", type=int, default=20, help="long runs per attack case (default 20)")
    ap.add_argument("--scale-honest", type=int, default=20, help="long honest runs (default 20)")
    ap.add_argument("--quick", action="store_true", help="3 seeds, 5 honest runs; 3 long runs per case, 3 honest")
    ap.add_argument("--out", type=Path, default=Path("bench/out/verify_cost"), help="PNG and JSON go here")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.honest_seeds, args.scale_seeds, args.scale_honest = 3, 5, 3, 3
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [c for c in args.cases or list(CASES) if c in CASES]
    bcases = [c for c in args.cases or list(BINDING_CASES) if c in BINDING_CASES]
    import multiprocessing

    import torch

    began = time.perf_counter()
    print(f"verify_cost: {len(cases)} attack cases × {args.seeds} seeds ({args.steps} steps, a checkpoint every "
          f"{args.every}), {args.honest_seeds if cases else 0} honest runs ({args.honest_steps} steps); "
          f"{len(bcases)} binding cases × {args.seeds} seeds and {args.honest_seeds} honest runs on a log "
          f"({args.binding_steps} steps); "
          f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.workers} workers, 1 torch thread each", flush=True)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        # the plain honest runs and the long runs are the sampled cases' baseline and scale: only with them
        hfuts = [pool.submit(honest_job, s, args.honest_steps, args.every)
                 for s in range(args.honest_seeds if cases else 0)]
        afuts = [pool.submit(forge_and_replay, c, s, args.steps, args.every, s == 0)
                 for s in range(args.seeds) for c in cases]
        bfuts = [pool.submit(binding_job, c, s, args.binding_steps, args.every)
                 for s in range(args.seeds) for c in bcases]
        hlfuts = [pool.submit(honest_log_job, s, args.binding_steps, args.every) for s in range(args.honest_seeds)]
        sfuts = [pool.submit(scale_job, "honest", s, args.scale_steps)
                 for s in range(args.scale_honest if cases else 0)]
        sfuts += [pool.submit(scale_job, c, s, args.scale_steps) for s in range(args.scale_seeds) for c in cases]
        recs = []
        for i, fut in enumerate(afuts):
            recs.append(fut.result())
            if (i + 1) % len(cases) == 0:
                print(f"  seed {(i + 1) // len(cases) - 1} forged and replayed "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
        honest = [f.result() for f in hfuts]
        brecs = [f.result() for f in bfuts]
        honest_log = [f.result() for f in hlfuts]
        print(f"  {len(brecs)} binding stories and {len(honest_log)} honest runs on a log done "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
        # the binding attacks' results, printed as soon as they are in (they use no sampling emulation)
        binding: dict[str, Any] = {}
        for case in bcases:
            rs = [r for r in brecs if r["case"] == case]
            binding[case] = {"seeds": len(rs), "caught": sum(r["caught"] for r in rs) / len(rs),
                             "stopped_by": sorted({b for r in rs for b in r["stopped_by"]}),
                             "moves": len(rs[0]["stopped"]),
                             "moves_stopped": sum(sum(r["stopped"].values()) for r in rs) / len(rs),
                             "cost_mean": mean([r["cost"] for r in rs]),
                             "code_ran": sum(bool(r["fired"]) for r in rs),
                             "escaped": sorted({m for r in rs for m, ok in r["stopped"].items() if not ok}),
                             "seconds_mean": mean([r["seconds"] for r in rs])}
        honest_log_rej = [h for h in honest_log if h["verdict"] != "pass" or h["report_refused"]]
        if bcases:
            print(f"\nBinding attacks over {args.seeds} seeds ({args.binding_steps} steps, a checkpoint every "
                  f"{args.every}; deterministic, no sample: each story played end to end on its own log through "
                  f"redline run start|declare, the registry and verify_transcript with the log's RunStart and "
                  f"declaration; caught = every attacking move stopped):")
            print("| attack | caught | stopped by | attacking moves stopped (mean) | attacker cost | s per story |")
            print("|---|---:|---|---:|---:|---:|")
            for case, b in binding.items():
                print(f"| {case} | {b['caught']:.2f} | {', '.join(b['stopped_by'])} | {b['moves_stopped']:.1f} of "
                      f"{b['moves']} | {b['cost_mean']:.2f} | {b['seconds_mean']:.2f} |")
            ran = sum(b["code_ran"] for b in binding.values())
            print(f"Code named by a transcript run during a story: {ran} times. Honest runs on a log "
                  f"({len(honest_log)}, {args.binding_steps} steps, verified with the log's RunStart and RunFinish): "
                  f"false rejections {len(honest_log_rej)}/{len(honest_log)}"
                  + (f" {[(h['seed'], h['failing']) for h in honest_log_rej]}" if honest_log_rej else "")
                  + f"; {mean([h['seconds'] for h in honest_log]):.2f} s per story")
        print(f"  {len(recs)} forged runs and {len(honest)} honest runs done; now {len(sfuts)} long runs "
              f"({time.perf_counter() - began:.0f} s)", flush=True)
        scale = []
        for i, fut in enumerate(sfuts):
            scale.append(fut.result())
            if (i + 1) % 20 == 0:
                print(f"  {i + 1}/{len(sfuts)} long runs verified ({time.perf_counter() - began:.0f} s)", flush=True)

    escaped = [c for c, b in binding.items() if b["caught"] < 1.0 or b["code_ran"]]
    if not cases:  # binding cases only: nothing sampled to evaluate
        (args.out / "verify_cost.json").write_text(json.dumps(
            {"config": {"seeds": args.seeds, "honest_seeds": args.honest_seeds, "every": args.every,
                        "torch": torch.__version__},
             "binding": {"steps": args.binding_steps, "attacks": binding, "runs": brecs, "honest_on_log": honest_log},
             "seconds": time.perf_counter() - began}, indent=1, default=str))
        print(f"\nwrote {args.out / 'verify_cost.json'} ({time.perf_counter() - began:.0f} s)")
        if escaped:
            print(f"binding attacks NOT always caught: {[(c, binding[c]['escaped']) for c in escaped]}")
        return 1 if (escaped or honest_log_rej) else 0

    # --- per-attack detection --------------------------------------------------------------------------------
    from redline.verify.sampling import p_detect

    summary: dict[str, Any] = {}
    mismatches = []
    for case in cases:
        rs = [r for r in recs if r["case"] == case]
        ev = [evaluate(r) for r in rs]
        m = rs[0]["m"]
        failing_frac = [(len(r["seg_ok"]) - sum(r["seg_ok"])) / m if r["seg_ok"] else 0.0 for r in rs]
        summary[case] = {
            "seeds": len(rs), "m": m,
            "by_fraction": {f: sum(e["by_fraction"][f] for e in ev) / len(ev) for f in FRACTIONS},
            "expected_by_fraction": {f: sum(1.0 if (not r["transcript_ok"] or not r["data_ok"]) else
                                             p_detect(m, max(1, round(f * m)), ff)
                                             for r, ff in zip(rs, failing_frac)) / len(rs) for f in FRACTIONS},
            "default": sum(e["default"] for e in ev) / len(ev),
            "pol": sum(e["pol"] for e in ev) / len(ev),
            "largest_only": sum(e["largest"] for e in ev) / len(ev),
            "cost_mean": sum(r["cost"] for r in rs) / len(rs),
            "failing_segment_share": sum(failing_frac) / len(rs),
            "caught_by": sorted({e["why"] for e in ev}),
        }
        for r, e in zip(rs, ev):
            if "e2e" in r:
                want = "fail" if e["default"] else "pass"
                summary[case]["end_to_end"] = {**r["e2e"], "cached_verdict": want}
                if r["e2e"]["verdict"] != want:
                    mismatches.append(case)

    hdr = "| attack | caught by | attacker cost | bad segs | " + " | ".join(
        f"{int(f * 100)}%" for f in FRACTIONS) + f" | default | {LARGEST} largest only | PoL ½ |"
    print(f"\nDetection rate over {args.seeds} seeds against the verification fraction (uniform sample of the "
          f"m = {recs[0]['m'] if recs else '?'} segments; default = choose_sample at P≥{TARGET} vs f={ASSUMED_F} "
          f"+ {LARGEST} largest updates; "
          f"{LARGEST} largest only = those 2 segments alone; PoL ½ = the ⌈m/2⌉ largest-update segments). "
          f"In brackets: hypergeometric expectation from the measured share of failing segments.")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for case, s in summary.items():
        cells = " | ".join(f"{s['by_fraction'][f]:.2f} ({s['expected_by_fraction'][f]:.2f})" for f in FRACTIONS)
        print(f"| {case} | {','.join(s['caught_by'])} | {s['cost_mean']:.2f} | {s['failing_segment_share']:.2f} | "
              f"{cells} | {s['default']:.2f} | {s['largest_only']:.2f} | {s['pol']:.2f} |")
    e2e_n = sum(1 for s in summary.values() if "end_to_end" in s)
    print(f"\nverify_transcript end to end on seed 0 of each case: {e2e_n - len(mismatches)}/{e2e_n} verdicts equal "
          f"the cached ones" + (f"; MISMATCH: {mismatches}" if mismatches else ""))

    # --- honest runs -------------------------------------------------------------------------------------------
    false_rej = [h for h in honest if h["verdict"] != "pass"]
    base_rej = [h for h in honest if not h["base_pass"]]
    hm = honest[0]["m"] if honest else 0
    red_cf = mean([h["red_compute_fraction"] for h in honest])
    base_cf = mean([h["base_compute_fraction"] for h in honest])
    print(f"\nHonest runs ({len(honest)}, {args.honest_steps} steps, m = {hm} segments): redline false rejections "
          f"{len(false_rej)}/{len(honest)}"
          + (f" {[(h['seed'], h['failing']) for h in false_rej]}" if false_rej else "")
          + f"; baseline false rejections {len(base_rej)}/{len(honest)}")
    print(f"  redline (verify_transcript, default sample): compute fraction {red_cf:.3f}, "
          f"{mean([h['red_seconds'] for h in honest]):.2f} s per run")
    print(f"  baseline (PoL ½, ⌈m/2⌉ largest-update segments): compute fraction {base_cf:.3f}, "
          f"{mean([h['base_seconds'] for h in honest]):.2f} s per run")

    # --- the 5 % budget ----------------------------------------------------------------------------------------
    rows = budget_table()
    m_star = smallest_m_within_budget()
    print(f"\nVerification fraction at the target without a budget (P ≥ {TARGET} vs f = {ASSUMED_F}; n uniform "
          f"+ ≤{LARGEST} largest-update segments + the FLOP-count step, one-step segments):")
    print("| segments m | n | P(detect) | redline fraction | PoL ½ fraction | redline / PoL | ≤ 5 % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['m']:,} | {r['n']} | {r['p_detect']:.3f} | {r['redline_fraction'] * 100:.2f} % | "
              f"{r['pol_fraction'] * 100:.0f} % | {r['ratio']:.3f} | {'yes' if r['within_5pct'] else 'no'} |")
    print(f"The target fits the 5 % budget from m = {m_star} segments; below that the default sample is capped "
          f"(never under the floor: half the segments faked caught with P ≥ 0.99), so a {hm}-segment run "
          f"spent {red_cf * 100:.1f} %.")

    # --- at scale: the default sample on long runs ---------------------------------------------------------------
    sh = [r for r in scale if r["case"] == "honest"]
    scale_summary: dict[str, Any] = {}
    for case in cases:
        rs = [r for r in scale if r["case"] == case]
        scale_summary[case] = {"seeds": len(rs), "caught": sum(r["verdict"] == "fail" for r in rs) / len(rs),
                               "caught_by": sorted({c for r in rs for c in r["failing"]}),
                               "faked_mean": mean([r["faked"] for r in rs]),
                               "sampled_mean": mean([r["sampled"] for r in rs]),
                               "p_detect": min((r["p_detect"] for r in rs if r["p_detect"] is not None), default=None),
                               "sample_fraction_max": max(r["sample_compute_fraction"] for r in rs)}
    scale_false = [r for r in sh if r["verdict"] != "pass"]
    scale_cf = max((r["compute_fraction"] for r in sh), default=float("nan"))
    ms = sh[0]["m"] if sh else args.scale_steps
    print(f"\nAt scale: the default sample (P ≥ {TARGET} vs f = {ASSUMED_F}, {LARGEST} largest updates, 5 % budget) "
          f"on long runs of {args.scale_steps} one-step segments (micro model {MICRO_MODEL}), verify_transcript end "
          f"to end, {args.scale_seeds} seeds per attack:")
    print("| attack | caught | caught by | faked segs (mean) | segments re-executed (mean) | P(detect) at f=0.1 | "
          "sample share of the run's steps (max) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for case, s_ in scale_summary.items():
        pd_ = "—" if s_["p_detect"] is None else f"{s_['p_detect']:.3f}"
        print(f"| {case} | {s_['caught']:.2f} | {','.join(s_['caught_by'])} | {s_['faked_mean']:.1f} | "
              f"{s_['sampled_mean']:.1f} | {pd_} | {s_['sample_fraction_max'] * 100:.2f} % |")
    print(f"Honest long runs ({len(sh)}, m = {ms}): false rejections {len(scale_false)}/{len(sh)}"
          + (f" {[(r['seed'], r['failing']) for r in scale_false]}" if scale_false else "")
          + f"; compute fraction (counted FLOP spent / the run's FLOP) max {scale_cf * 100:.2f} %, mean "
          f"{mean([r['compute_fraction'] for r in sh]) * 100:.2f} %; "
          f"{mean([r['verify_s'] for r in sh]):.2f} s to verify vs {mean([r['forge_s'] for r in sh]):.2f} s to train")

    # --- outputs -----------------------------------------------------------------------------------------------
    result = {"config": {"seeds": args.seeds, "honest_seeds": args.honest_seeds, "steps": args.steps,
                         "every": args.every, "honest_steps": args.honest_steps, "torch": torch.__version__,
                         "fractions": FRACTIONS},
              "attacks": {c: {**s, "by_fraction": {str(k): v for k, v in s["by_fraction"].items()},
                              "expected_by_fraction": {str(k): v for k, v in s["expected_by_fraction"].items()}}
                          for c, s in summary.items()},
              "scale": {"steps": args.scale_steps, "model": MICRO_MODEL, "attacks": scale_summary, "runs": scale},
              "binding": {"steps": args.binding_steps, "attacks": binding, "runs": brecs,
                          "honest_on_log": honest_log},
              "records": recs, "honest": honest, "budget": rows, "budget_from_m": m_star, "end_to_end_mismatches": mismatches,
              "seconds": time.perf_counter() - began}
    png = plot(result, args.out / "detection_vs_fraction.png")
    (args.out / "verify_cost.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {png} and {args.out / 'verify_cost.json'} ({time.perf_counter() - began:.0f} s)")
    never = [c for c, s_ in scale_summary.items() if s_["caught"] < 1.0]
    if never:
        print(f"NOT always caught at the default sample on long runs: {never}")
    if escaped:
        print(f"binding attacks NOT always caught: {[(c, binding[c]['escaped']) for c in escaped]}")
    if honest_log_rej:
        print(f"HONEST RUNS ON A LOG REJECTED: {[(h['seed'], h['failing']) for h in honest_log_rej]}")
    over = scale_cf > BUDGET
    if over:
        print(f"OVER BUDGET: honest long runs spent up to {scale_cf * 100:.2f} % of their training compute")
    r1000 = next(r for r in rows if r["m"] == 1000)
    print(f"compute ratio redline / PoL-style baseline: measured on {hm}-segment honest runs "
          f"{red_cf / base_cf:.2f}× ({red_cf:.3f} vs {base_cf:.3f}); at m = 1,000 segments {r1000['ratio']:.3f}× "
          f"({r1000['redline_fraction'] * 100:.1f} % vs {r1000['pol_fraction'] * 100:.0f} %)")
    return 1 if (false_rej or scale_false or mismatches or never or over or escaped or honest_log_rej) else 0


if __name__ == "__main__":
    sys.exit(main())
