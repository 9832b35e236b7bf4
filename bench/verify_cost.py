"""Detection rate of every known attack against the verification fraction, and what verification costs.

**Sampled cases** (``redline.testing.attacks.CASES``, the three ``TAMPER_CASES`` and the adaptive lab's
``ADAPTIVE_CASES``: a late smooth fake with and without a long warm-up, a warm-up longer than the declared
``checkpoint_every``, calibration poisoning). For each case and seed the spoofed transcript is forged **once**
(tiny GPT, ``--steps`` steps, a checkpoint every ``--every``: m segments) and every segment is re-executed
**once** (``redline.verify.segments.run_segment``, bitwise, at the recorded single thread). The checks of
``verify_transcript`` that do not depend on the sample are run once too, with the verifier's own functions:
``transcript`` (``load_transcript``: refuses tampering and overlong segments), ``init`` (``init_check``),
``data`` (``scan_batches(t).data_check()``) and ``compute`` (``compute_check``: every batch shape counted,
tokens recomputed, 6·N·D, the manifest's declared FLOP within the policy's 1 %). Then a run counts as caught
for a sample iff one of those checks fails or a sampled segment's cached replay fails — ``verify_transcript``'s
verdict rule. Samples: for each verification fraction (10, 20, 30, 50, 100 % of the segments) a uniform sample
of segments (``uniform_sample``), and *default*: the sample ``verify_transcript`` draws under its policy
(``VerificationPolicy()``; ``calibrate_segments=2`` for calibration poisoning), i.e. ``choose_step_sample``
(steps drawn, P ≥ 0.99 vs f = 0.1 of the steps, plus the 2 largest-update segments) capped by
``budget_draws`` (5 % of the steps, after the FLOP-count and calibration replays). ``verify_transcript`` itself
is run end to end on seed 0 of every case: its verdict and sample must equal the emulated ones.

Baseline: Proof-of-Learning-style verification (Jia et al. 2021): re-execute the ⌈m/2⌉ segments with the
largest parameter updates (PoL's top-Q rule, Q ≈ half the updates here), with the same sample-independent
checks. redline: the default sample. Honest runs are verified end to end with both, ``--honest-seeds`` of them,
timed; the compute ratio redline / baseline is printed last.

**Binding cases** (``BINDING_CASES`` and ``ADAPTIVE_BINDING_CASES``: code execution, hidden pre-training,
transcript reuse, releasing unverified weights; seed grinding and four compute under-declarations) are stories,
each played end to end, ``--seeds`` times, through the same API a lab and an auditor use (a real log, ``redline
run start|declare``, the statement builders, the registry, ``verify_transcript`` with the log's RunStart and
declaration); a story counts as caught iff every attacking move in it was stopped. As their baseline,
``--honest-seeds`` honest runs are declared and verified through the same API (false rejections).

**At scale** (the acceptance measurement): runs of ``--scale-steps`` one-step segments (micro model). Replaying
a few hundred seeds × every class end to end at 640 segments takes hours on two cores, so the shortcut above is
used with many seeds: each class's transcript is forged **once**, every segment re-executed **once** and the
sample-independent checks run once; then for ``--scale-seeds`` (≥ 200) sample seeds the real sample is drawn
with ``choose_step_sample`` exactly as ``verify_transcript`` draws it, and a seed counts as a detection iff that
sample holds a failing segment (or a sample-independent check fails). The shortcut is checked against full
``verify_transcript`` runs on ``--scale-e2e`` (≥ 10) of those seeds per class: verdicts and samples must agree.
Seed grinding at scale: its transcript is a late smooth fake; the verifier's sample is drawn from the first
declaration's seed (emulated per seed), and what the former latest-declaration rule would have given a lab
with K tries is emulated from K independent seeds; ``--scale-e2e`` real stories on their own logs re-declare the
same transcript and are audited, checked against the shortcut's prediction for the seeds their logs gave.
``--high-steps`` repeats the shortcut for ``--high-cases`` at a run long enough for the 0.99 target to fit the
5 % budget; ``--huge-steps`` verifies one honest run end to end (its compute share); ``--scale-honest`` honest
long runs are verified end to end (false rejections, compute share).

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

from redline.testing.attacks import ADAPTIVE_BINDING_CASES, ADAPTIVE_CASES, BINDING_CASES, TAMPER_CASES
from redline.testing.attacks import CASES as ATTACK_CASES

#: case id -> (attack name, parameters): the cases of tests/test_attacks.py, tampering, the adaptive lab's.
CASES: dict[str, tuple[str, dict[str, Any]]] = {**ATTACK_CASES, **TAMPER_CASES, **ADAPTIVE_CASES}
#: The stories: binding attacks and the adaptive lab's attacks on the sample and on compute.
STORIES: dict[str, tuple[str, dict[str, Any]]] = {**BINDING_CASES, **ADAPTIVE_BINDING_CASES}
FRACTIONS = (0.1, 0.2, 0.3, 0.5, 1.0)
#: The long runs: a smaller model, so that 640 one-step segments stay affordable.
MICRO_MODEL = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}
#: Cases verified under another policy than the default (the one the attack is aimed at).
POLICY_SETTINGS: dict[str, dict[str, Any]] = {"calibration-poisoning": {"calibrate_segments": 2}}
#: Cases forged with the micro model even at m = 10 (their attacker trains 10x the declared steps).
MICRO_AT_SMALL = {"calibration-poisoning"}
#: The former rule's grinding: tries a lab gets (the latest declaration's seed re-rolled at each).
GRIND_TRIES = (4, 16, 64)


def policy_for(case: str) -> Any:
    from redline.verify import VerificationPolicy

    return VerificationPolicy.of(**POLICY_SETTINGS.get(case, {}))


def sample_seed(case: str, seed: int) -> bytes:
    """The per-(case, seed) sampling seed (stands in for the log checkpoint's hash)."""
    return hashlib.sha256(f"redline-bench-verify-cost/{case}/{seed}".encode()).digest()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


# --- what verify_transcript decides, once per transcript --------------------------------------------------------


def analyse(transcript_dir: str | Path, policy: Any, seed: bytes) -> dict[str, Any]:
    """Everything ``verify_transcript`` decides that does not depend on the sample, with its own functions, and
    every segment re-executed once."""
    from redline.errors import MalformedInput
    from redline.transcript.transcript import load_transcript
    from redline.verify import Tolerance, init_check, update_norms
    from redline.verify.compute import compute_check, scan_batches
    from redline.verify.segments import run_segment, tasks_for

    t0 = time.perf_counter()
    try:
        t = load_transcript(transcript_dir)
    except MalformedInput as exc:
        return {"transcript_ok": False, "transcript_detail": str(exc)[:300], "m": 0, "seg_ok": [],
                "analyse_s": time.perf_counter() - t0}
    segs = t.segments()
    scan = scan_batches(t)
    init = init_check(t)
    comp = compute_check(t, None, flop_tolerance=policy.flop_tolerance, scan=scan, seed=seed)
    tasks = tasks_for(str(transcript_dir), ((i, g.start.step, g.end.step) for i, g in enumerate(segs)),
                      Tolerance.exact())
    outcomes = [run_segment(task) for task in tasks]
    return {"transcript_ok": True, "init_ok": init.passed, "data_ok": scan.data_check().passed,
            "compute_ok": comp.check.passed, "compute_detail": comp.check.detail[:300],
            "counted_steps": comp.counted_steps, "steps": t.step_count, "m": len(segs),
            "lengths": [g.end.step - g.start.step for g in segs], "ends": [g.end.step for g in segs],
            "seg_ok": [o.passed for o in outcomes], "norms": update_norms(t),
            "mean_step_flop": comp.mean_step_flop, "analyse_s": time.perf_counter() - t0}


def independent_failures(rec: dict[str, Any]) -> list[str]:
    """The sample-independent checks that failed."""
    if not rec["transcript_ok"]:
        return ["transcript"]
    return [name for name in ("init", "data", "compute") if not rec[f"{name}_ok"]]


def caught(rec: dict[str, Any], indexes: list[int]) -> bool:
    """``verify_transcript``'s verdict rule on cached check results, for a given sample."""
    return bool(independent_failures(rec)) or any(not rec["seg_ok"][i] for i in indexes)


def draw(rec: dict[str, Any], ranges: list[Any], policy: Any) -> Any:
    """The sample ``verify_transcript`` draws from ``ranges`` under ``policy`` (budget, FLOP-count and calibration
    replays included)."""
    from redline.verify.sampling import budget_draws, choose_step_sample, uniform_sample

    reserved = rec["counted_steps"]
    if policy.calibrate_segments:
        starts = uniform_sample(ranges[0].seed, rec["m"], min(policy.calibrate_segments, rec["m"]),
                                label=b"calibration")
        reserved += 2 * sum(rec["lengths"][i] for i in starts)
    return choose_step_sample(ranges, rec["ends"], target_p_detect=policy.target_p_detect,
                              assumed_fake_fraction=policy.assumed_fake_fraction,
                              update_norms=rec["norms"] if policy.largest > 0 else None, largest=policy.largest,
                              max_draws=budget_draws(rec["lengths"], policy.budget, reserved_steps=reserved))


def default_sample(rec: dict[str, Any], seed: bytes, policy: Any) -> Any:
    from redline.verify import SeedRange

    return draw(rec, [SeedRange(1, rec["steps"], seed)], policy)


def e2e(transcript_dir: Path, seed: bytes, policy: Any) -> dict[str, Any]:
    """``verify_transcript`` end to end."""
    from redline.verify import verify_transcript

    t0 = time.perf_counter()
    r = verify_transcript(transcript_dir, seed=seed, policy=policy, workers=1)
    return {"verdict": r.verdict, "failing": [c.name for c in r.checks if not c.passed],
            "sample": r.sample.indexes if r.sample else None, "draws": r.sample.draws if r.sample else None,
            "capped": r.sample.capped if r.sample else None, "p_detect": r.p_detect,
            "compute_fraction": r.compute_fraction, "replayed_steps": r.replayed_steps,
            "seconds": time.perf_counter() - t0}


def agrees(rec: dict[str, Any], seed: bytes, policy: Any, got: dict[str, Any]) -> bool:
    """The end-to-end verdict (and sample) equals the shortcut's."""
    if not rec["transcript_ok"]:
        return got["verdict"] == "fail" and got["failing"] == ["transcript"]
    sample = default_sample(rec, seed, policy)
    want = "fail" if caught(rec, sample.indexes) else "pass"
    return got["verdict"] == want and got["sample"] == sample.indexes


# --- worker jobs (run in spawned processes) -----------------------------------------------------------------


def _forge(case: str, seed: int, steps: int, every: int, work: str, model: dict[str, Any] | None = None) -> Any:
    from redline.testing.attacks import ATTACKS

    name, params = CASES[case]
    params = dict(params)
    if model is not None:
        params["config"] = {"model": model}
    if name in ("late-smooth-fake", "long-warmup") and params.get("warmup") and every == 1:
        steps += params["warmup"] - 1  # as many segments as asked for, the first one long
    return ATTACKS[name].run(work, seed=seed, steps=steps, checkpoint_every=every, **params)


def forge_and_replay(case: str, seed: int, steps: int, every: int, end_to_end: bool) -> dict[str, Any]:
    """Forge one spoofed transcript (m = steps / every), replay every segment once, the independent checks."""
    _one_thread()
    work = tempfile.mkdtemp(prefix="verify-cost-")
    policy = policy_for(case)
    try:
        t0 = time.perf_counter()
        s = _forge(case, seed, steps, every, work, MICRO_MODEL if case in MICRO_AT_SMALL else None)
        out: dict[str, Any] = {"case": case, "seed": seed, "cost": s.cost, "faked": list(s.faked_segments),
                               "forge_s": time.perf_counter() - t0}
        out.update(analyse(s.transcript_dir, policy, sample_seed(case, seed)))
        if out["m"] == 0:
            out["m"] = len(s.segment_starts)
        if end_to_end:
            out["e2e"] = e2e(s.transcript_dir, sample_seed(case, seed), policy)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def honest_job(seed: int, steps: int, every: int) -> dict[str, Any]:
    """An honest run verified end to end by redline (default sample) and by the PoL-style baseline, timed."""
    _one_thread()
    from redline.testing.attacks import HONEST
    from redline.transcript.transcript import load_transcript
    from redline.verify import Tolerance, update_norms
    from redline.verify.compute import compute_check, scan_batches
    from redline.verify.segments import run_segment, tasks_for

    work = tempfile.mkdtemp(prefix="verify-cost-honest-")
    try:
        s = HONEST.run(work, seed=seed, steps=steps, checkpoint_every=every)
        # redline: the full verifier at its defaults
        red = e2e(s.transcript_dir, sample_seed("honest", seed), policy_for("honest"))
        # baseline: load, data, the ceil(m/2) largest-update segments re-executed, FLOP counted once per shape
        t0 = time.perf_counter()
        t = load_transcript(s.transcript_dir)
        segs = t.segments()
        scan = scan_batches(t)
        comp = compute_check(t, None, scan=scan, probe=False)
        norms = update_norms(t)
        q = math.ceil(len(segs) / 2)
        top = sorted(range(len(segs)), key=lambda i: (-norms[i], i))[:q]
        outs = [run_segment(task) for task in tasks_for(str(s.transcript_dir),
                                                          ((i, segs[i].start.step, segs[i].end.step) for i in top),
                                                          Tolerance.exact())]
        base_flop = comp.spent_flop + sum(comp.flop_of_steps(o.start_step, o.end_step) for o in outs)
        base_ok = scan.data_check().passed and comp.check.passed and all(o.passed for o in outs)
        base_s = time.perf_counter() - t0
        return {"seed": seed, "m": len(segs), "verdict": red["verdict"], "failing": red["failing"],
                "red_compute_fraction": red["compute_fraction"], "red_replayed_steps": red["replayed_steps"],
                "red_seconds": red["seconds"], "base_pass": base_ok,
                "base_replayed_steps": sum(o.steps for o in outs) + comp.counted_steps,
                "base_compute_fraction": base_flop / comp.counted_flop, "base_seconds": base_s,
                "steps": t.step_count}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def stopped_by(story: Any) -> list[str]:
    """What stopped a story's moves: refusals (by the command line or the registry), the verifier's failed or
    inconclusive checks, and the engine's violations."""
    out = set()
    for a in story.answers:
        if a is not None and a.refused:
            out.add("refused:" + ("redline run" if a.via.startswith("redline run") else
                                  "statement builder" if a.via.endswith(".build") else "registry"))
    for label, audit in story.audits.items():
        if audit.verdict != "pass" and label != "the re-rolled report":
            out.update(f"{audit.verdict}:{c.name}" for c in audit.result.checks if not c.passed)
    out.update(f"violation:{v.kind}" for v in story.violations)
    return sorted(out)


STORY_DETAILS = ("detected", "p_detect", "draws", "old_rule_escape", "old_rule_escape_at", "mislabelled_report_refused",
                 "verified_final_after_mislabelled", "declared_share", "six_nd_share", "real_over_declared",
                 "verdict")


def binding_job(case: str, seed: int, steps: int, every: int) -> dict[str, Any]:
    """Play one story end to end on its own log; what was stopped, by what, at what cost."""
    _one_thread()
    from redline.testing.attacks import ATTACKS

    name, params = STORIES[case]
    work = tempfile.mkdtemp(prefix="verify-cost-binding-")
    try:
        t0 = time.perf_counter()
        s = ATTACKS[name].run(work, seed=seed, steps=steps, checkpoint_every=every, **params)
        return {"case": case, "seed": seed, "caught": s.caught, "stopped": s.stopped, "cost": s.cost,
                "stopped_by": stopped_by(s), "verdicts": {k: a.verdict for k, a in s.audits.items()},
                "violations": [v.kind for v in s.violations], "fired": s.details.get("fired"),
                "details": {k: s.details[k] for k in STORY_DETAILS if k in s.details},
                "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def honest_log_job(seed: int, steps: int, every: int) -> dict[str, Any]:
    """The stories' baseline: an honest run declared on a log and verified through the same API."""
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


def scale_job(case: str, steps: int, seeds: int, e2e_seeds: int, tag: str = "scale") -> dict[str, Any]:
    """The shortcut at scale for one class: forge once (one-step segments, micro model), replay every segment
    once, draw ``seeds`` real samples, and check ``e2e_seeds`` of them with ``verify_transcript``."""
    _one_thread()
    policy = policy_for(case)
    work = tempfile.mkdtemp(prefix="verify-cost-scale-")
    try:
        t0 = time.perf_counter()
        s = _forge(case, 0, steps, 1, work, MICRO_MODEL)
        forge_s = time.perf_counter() - t0
        rec = analyse(s.transcript_dir, policy, sample_seed(f"{tag}/{case}", 0))
        hits, draws, distinct, capped = [], [], [], []
        for i in range(seeds):
            if not rec["transcript_ok"]:
                hits.append(True)
                continue
            sample = default_sample(rec, sample_seed(f"{tag}/{case}", i), policy)
            hits.append(caught(rec, sample.indexes))
            draws.append(sample.draws)
            distinct.append(len(sample.indexes))
            capped.append(sample.capped)
        checked = []
        for i in range(e2e_seeds):
            got = e2e(s.transcript_dir, sample_seed(f"{tag}/{case}", i), policy)
            checked.append({"seed": i, "verdict": got["verdict"], "agrees": agrees(rec, sample_seed(f"{tag}/{case}", i),
                                                                                   policy, got),
                            "seconds": got["seconds"], "compute_fraction": got["compute_fraction"]})
        failing = [i for i, ok in enumerate(rec["seg_ok"]) if not ok]
        return {"case": case, "tag": tag, "steps": rec.get("steps", steps), "m": rec["m"],
                "faked": len(s.faked_segments), "failing_segments": len(failing),
                "failing_step_share": (sum(rec["lengths"][i] for i in failing) / rec["steps"]
                                       if rec["transcript_ok"] else None),
                "independent": independent_failures(rec), "seeds": seeds, "detected": sum(hits) / len(hits),
                "draws": min(draws) if draws else None, "distinct_mean": _mean(distinct),
                "capped": any(capped), "longest_segment": max(rec.get("lengths") or [0]),
                "e2e": checked, "e2e_agree": sum(c["agrees"] for c in checked), "forge_s": forge_s,
                "analyse_s": rec["analyse_s"], "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def grind_scale_job(steps: int, seeds: int, stories: int, tries: int = 4) -> dict[str, Any]:
    """Seed grinding at scale: the shortcut for the verifier's sample (the first declaration's seed) and for the
    former rule (K tries); ``stories`` real stories on their own logs re-declaring the same transcript."""
    _one_thread()
    from redline.testing.attacks import ATTACKS
    from redline.testing.attacks.seed_grinding import forge_late_fake
    from redline.verify import SeedRange

    policy = policy_for("seed-grinding")
    work = Path(tempfile.mkdtemp(prefix="verify-cost-grind-"))
    try:
        t0 = time.perf_counter()
        forged = forge_late_fake(work / "forge", seed=0, segments=steps, model=MICRO_MODEL)
        rec = analyse(forged.transcript_dir, policy, sample_seed("grind", 0))
        hit = [caught(rec, default_sample(rec, sample_seed("grind", i), policy).indexes)
               for i in range(seeds * max(GRIND_TRIES))]
        old = {k: sum(not all(hit[i * k:(i + 1) * k]) for i in range(seeds)) / seeds for k in GRIND_TRIES
               if seeds * k <= len(hit)}
        checked = []
        for i in range(stories):
            story = ATTACKS["seed-grinding"].run(work / f"story-{i}", seed=i, forged=forged, tries=tries)
            audit = story.audits["verify the run"]
            ranges = [SeedRange(r.first_step, r.last_step, r.seed, r.declaration_index, r.checkpoint_size)
                      for r in audit.result.sample.ranges]
            want = draw(rec, ranges, policy)
            checked.append({"story": i, "caught": story.caught, "verdict": audit.verdict,
                            "agrees": audit.verdict == ("fail" if caught(rec, want.indexes) else "pass")
                            and audit.result.sample.indexes == want.indexes,
                            "old_rule_escape": story.details["old_rule_escape"],
                            "mislabelled_report_refused": story.details["mislabelled_report_refused"]})
        return {"case": "seed-grinding", "steps": steps, "m": rec["m"], "faked": len(forged.faked_segments),
                "seeds": seeds, "detected": sum(hit[:seeds]) / seeds,
                "draws": default_sample(rec, sample_seed("grind", 0), policy).draws,
                "old_rule_escape": old, "stories": checked, "e2e_agree": sum(c["agrees"] for c in checked),
                "stories_caught": sum(c["caught"] for c in checked), "seconds": time.perf_counter() - t0}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def honest_scale_job(seed: int, steps: int, tag: str = "scale") -> dict[str, Any]:
    """A long honest run (``steps`` one-step segments, micro model) verified end to end at the defaults."""
    _one_thread()
    from redline.testing.attacks import HONEST

    work = tempfile.mkdtemp(prefix="verify-cost-honest-scale-")
    try:
        t0 = time.perf_counter()
        s = HONEST.run(work, seed=seed, steps=steps, checkpoint_every=1, config={"model": MICRO_MODEL})
        forge_s = time.perf_counter() - t0
        got = e2e(s.transcript_dir, sample_seed(f"{tag}/honest", seed), policy_for("honest"))
        return {"seed": seed, "steps": steps, "tag": tag, **got, "forge_s": forge_s}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- evaluating samples on the cached verdicts (m = 10) ----------------------------------------------------------


def evaluate(rec: dict[str, Any]) -> dict[str, Any]:
    """Detection per fraction (uniform sample), at the default sample, and by the PoL baseline."""
    from redline.verify.sampling import uniform_sample

    seed = sample_seed(rec["case"], rec["seed"])
    m = rec["m"]
    if not rec["transcript_ok"]:  # refused on load: caught whatever the sample
        return {"by_fraction": {f: True for f in FRACTIONS}, "default": True, "pol": True, "largest": True,
                "why": "transcript", "default_sample": None}
    per = {}
    for f in FRACTIONS:
        n = max(1, min(m, round(f * m)))
        per[f] = caught(rec, sorted(uniform_sample(seed, m, n)))
    sample = default_sample(rec, seed, policy_for(rec["case"]))
    q = math.ceil(m / 2)
    top = sorted(range(m), key=lambda i: (-rec["norms"][i], i))[:q]
    why = ",".join(independent_failures(rec) + (["segments"] if not all(rec["seg_ok"]) else [])) or "none"
    return {"by_fraction": per, "default": caught(rec, sample.indexes), "pol": caught(rec, top),
            "largest": caught(rec, top[:2]), "why": why, "default_sample": sample.indexes}


def budget_table(policy: Any) -> list[dict[str, Any]]:
    """The default sample on runs of m one-step segments: draws, P(detect), replayed share (upper bound)."""
    from redline.verify.sampling import FLOOR_FAKE_FRACTION, FLOOR_P_DETECT, budget_draws, draws_needed, p_detect_steps

    need = draws_needed(policy.target_p_detect, policy.assumed_fake_fraction)
    floor = draws_needed(FLOOR_P_DETECT, FLOOR_FAKE_FRACTION)
    rows = []
    for m in (60, 100, 640, 920, 960, 1000, 10_000, 100_000):
        cap = budget_draws([1] * m, policy.budget, reserved_steps=2)
        n = max(floor, min(need, cap))
        red = min(m, n + policy.largest + 2) / m  # draws + largest-update segments + the two FLOP-count steps
        pol = math.ceil(m / 2) / m
        rows.append({"m": m, "draws": n, "capped": n < need,
                     "p_detect": p_detect_steps(n, policy.assumed_fake_fraction), "redline_fraction": red,
                     "pol_fraction": pol, "ratio": red / pol,
                     "within_budget": red <= policy.budget})
    return rows


def smallest_m(policy: Any, *, warmup: int = 0, extras: bool = False) -> int:
    """The fewest one-step segments (after one ``warmup``-step segment, if any) at which the target's draws fit
    the budget; with ``extras``, the largest-update segments too (what the budget does not reserve)."""
    from redline.verify.sampling import budget_draws, draws_needed, weighted_mean_segment

    need = draws_needed(policy.target_p_detect, policy.assumed_fake_fraction)
    m = 2
    while True:
        lengths = ([warmup] if warmup else []) + [1] * (m - (1 if warmup else 0))
        if budget_draws(lengths, policy.budget, reserved_steps=2) >= need:
            if not extras:
                return m
            # the worst case: the largest updates are the longest segments, on top of the draws' expected steps
            extra = sum(sorted(lengths)[-policy.largest:])
            if need * weighted_mean_segment(lengths) + 2 + extra <= policy.budget * sum(lengths):
                return m
        m += 1


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
    ax.plot([x / m0 * 100 for x in xs], [p_detect(m0, x, 0.1) for x in xs], "k-", lw=2, alpha=0.4,
            label=f"p_detect(m={m0}, n, f=0.1)")
    ax.set_xlabel(f"verification fraction (% of the {m0} segments re-executed, uniform sample)")
    ax.set_ylabel(f"detection rate ({result['config']['seeds']} seeds)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("redline verification: detection rate vs verification fraction")
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


QUICK_SCALE = ["late-smooth-fake", "late-smooth-fake-warmup", "long-warmup", "skipped-steps", "splice",
               "tamper-data"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per attack case and story (default 20)")
    ap.add_argument("--honest-seeds", type=int, default=50, help="honest runs, plain and on a log (default 50)")
    ap.add_argument("--steps", type=int, default=100, help="steps per forged run (default 100)")
    ap.add_argument("--every", type=int, default=10, help="checkpoint every (default 10)")
    ap.add_argument("--honest-steps", type=int, default=60, help="steps per honest run (default 60)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES) + sorted(STORIES) + ["seed-grinding-scale"],
                    help="only these cases, sampled and stories (default: all)")
    ap.add_argument("--binding-steps", type=int, default=20,
                    help="steps per story (seed grinding: its own 100 segments) and per honest run on a log")
    ap.add_argument("--scale-steps", type=int, default=640,
                    help="one-step segments of the long runs (default 640)")
    ap.add_argument("--scale-seeds", type=int, default=200, help="sample seeds per class at scale (default 200)")
    ap.add_argument("--scale-e2e", type=int, default=10,
                    help="of those, seeds verified end to end per class to check the shortcut (default 10)")
    ap.add_argument("--scale-honest", type=int, default=10, help="long honest runs verified end to end (default 10)")
    ap.add_argument("--high-steps", type=int, default=1000,
                    help="one-step segments of the second, longer size (default 1000; 0: skip)")
    ap.add_argument("--high-cases", nargs="*", default=["late-smooth-fake", "late-smooth-fake-warmup"],
                    help="classes measured at --high-steps too")
    ap.add_argument("--huge-steps", type=int, default=10_000,
                    help="one honest run of this many one-step segments, verified end to end (default 10000; 0: skip)")
    ap.add_argument("--quick", action="store_true",
                    help="3 seeds, 5 honest runs; at scale 6 classes, 2 end-to-end checks, 2 honest, 2,000 steps "
                         "for the compute share")
    ap.add_argument("--out", type=Path, default=Path("bench/out/verify_cost"), help="PNG and JSON go here")
    args = ap.parse_args(argv)
    scale_cases = None
    if args.quick:
        args.seeds, args.honest_seeds, args.scale_e2e, args.scale_honest = 3, 5, 2, 2
        args.huge_steps, args.high_cases = min(args.huge_steps, 2000), ["late-smooth-fake"]
        scale_cases = QUICK_SCALE
    args.out.mkdir(parents=True, exist_ok=True)
    cases = [c for c in args.cases or list(CASES) if c in CASES]
    bcases = [c for c in args.cases or list(STORIES) if c in STORIES]
    grind_scale = args.cases is None or "seed-grinding-scale" in args.cases or "seed-grinding" in args.cases
    scases = [c for c in cases if scale_cases is None or c in scale_cases]
    hcases = [c for c in args.high_cases if c in cases] if args.high_steps else []
    import multiprocessing

    import torch

    from redline.verify import VerificationPolicy

    default = VerificationPolicy()
    began = time.perf_counter()
    print(f"verify_cost: {len(cases)} sampled cases × {args.seeds} seeds ({args.steps} steps, a checkpoint every "
          f"{args.every}), {args.honest_seeds if cases else 0} honest runs ({args.honest_steps} steps); "
          f"{len(bcases)} stories × {args.seeds} seeds and {args.honest_seeds} honest runs on a log "
          f"({args.binding_steps} steps); at scale {len(scases)} classes + seed grinding at {args.scale_steps} "
          f"one-step segments × {args.scale_seeds} sample seeds ({args.scale_e2e} end to end), "
          f"{len(hcases)} at {args.high_steps}, {args.scale_honest} honest long runs, one honest run of "
          f"{args.huge_steps}; torch {torch.__version__}, {os.cpu_count()} CPUs, {args.workers} workers, "
          f"1 torch thread each", flush=True)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
        # the long jobs first, so that the pool stays busy to the end
        huge = pool.submit(honest_scale_job, 0, args.huge_steps, "huge") if args.huge_steps and cases else None
        gfut = (pool.submit(grind_scale_job, args.scale_steps, args.scale_seeds, args.scale_e2e)
                if grind_scale and cases else None)
        sfuts = [pool.submit(scale_job, c, args.scale_steps, args.scale_seeds, args.scale_e2e) for c in scases]
        sfuts += [pool.submit(scale_job, c, args.high_steps, args.scale_seeds, args.scale_e2e, "high")
                  for c in hcases]
        shfuts = [pool.submit(honest_scale_job, s, args.scale_steps) for s in range(args.scale_honest if cases else 0)]
        afuts = [pool.submit(forge_and_replay, c, s, args.steps, args.every, s == 0)
                 for s in range(args.seeds) for c in cases]
        hfuts = [pool.submit(honest_job, s, args.honest_steps, args.every)
                 for s in range(args.honest_seeds if cases else 0)]
        bfuts = [pool.submit(binding_job, c, s, args.binding_steps, args.every)
                 for s in range(args.seeds) for c in bcases]
        hlfuts = [pool.submit(honest_log_job, s, args.binding_steps, args.every) for s in range(args.honest_seeds)]

        scale = []
        for fut in sfuts:
            scale.append(fut.result())
            print(f"  at scale: {scale[-1]['case']} ({scale[-1]['m']} segments) done "
                  f"({time.perf_counter() - began:.0f} s)", flush=True)
        grind = gfut.result() if gfut is not None else None
        scale_honest = [f.result() for f in shfuts]
        huge_rec = huge.result() if huge is not None else None
        print(f"  long runs done ({time.perf_counter() - began:.0f} s)", flush=True)
        recs = []
        for i, fut in enumerate(afuts):
            recs.append(fut.result())
            if (i + 1) % len(cases) == 0:
                print(f"  seed {(i + 1) // len(cases) - 1} forged and replayed "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
        honest = [f.result() for f in hfuts]
        brecs = [f.result() for f in bfuts]
        honest_log = [f.result() for f in hlfuts]
        print(f"  {len(brecs)} stories and {len(honest_log)} honest runs on a log done "
              f"({time.perf_counter() - began:.0f} s)", flush=True)

    problems: list[str] = []

    # --- stories ---------------------------------------------------------------------------------------------------
    binding: dict[str, Any] = {}
    for case in bcases:
        rs = [r for r in brecs if r["case"] == case]
        b = {"seeds": len(rs), "caught": sum(r["caught"] for r in rs) / len(rs),
             "stopped_by": sorted({x for r in rs for x in r["stopped_by"]}),
             "moves": len(rs[0]["stopped"]), "moves_stopped": _mean([sum(r["stopped"].values()) for r in rs]),
             "cost_mean": _mean([r["cost"] for r in rs]), "code_ran": sum(bool(r["fired"]) for r in rs),
             "escaped": sorted({m for r in rs for m, ok in r["stopped"].items() if not ok}),
             "seconds_mean": _mean([r["seconds"] for r in rs])}
        d = [r["details"] for r in rs]
        if case == "seed-grinding":
            b.update(detected=_mean([x["detected"] for x in d]), p_detect=_mean([x["p_detect"] for x in d]),
                     old_rule_escape=_mean([x["old_rule_escape"] for x in d]),
                     mislabelled_accepted=sum(x["mislabelled_report_refused"] is False for x in d),
                     mislabelled_verified_final=sum(bool(x["verified_final_after_mislabelled"]) for x in d))
        binding[case] = b
    honest_log_rej = [h for h in honest_log if h["verdict"] != "pass" or h["report_refused"]]
    escaped = [c for c, b in binding.items() if b["caught"] < 1.0 or b["code_ran"]]
    if escaped:
        problems.append(f"stories NOT always caught: {[(c, binding[c]['escaped']) for c in escaped]}")
    if honest_log_rej:
        problems.append(f"HONEST RUNS ON A LOG REJECTED: {[(h['seed'], h['failing']) for h in honest_log_rej]}")
    if bcases:
        print(f"\nStories over {args.seeds} seeds ({args.binding_steps} steps, a checkpoint every {args.every}; "
              f"seed grinding: 100 one-step segments, 4 RunProgress), each on its own log through redline run "
              f"start|declare, the statement builders, the registry and verify_transcript with the log's RunStart "
              f"and declaration; caught = every attacking move stopped:")
        print("| attack | caught | stopped by | attacking moves stopped (mean) | attacker cost | s per story |")
        print("|---|---:|---|---:|---:|---:|")
        for case, b in binding.items():
            print(f"| {case} | {b['caught']:.2f} ({round(b['caught'] * b['seeds'])}/{b['seeds']}) | "
                  f"{', '.join(b['stopped_by'])} | {b['moves_stopped']:.1f} of {b['moves']} | {b['cost_mean']:.2f} | "
                  f"{b['seconds_mean']:.2f} |")
        if "seed-grinding" in binding:
            g = binding["seed-grinding"]
            print(f"Seed grinding, 100 segments: the audit (the first declaration's seed) caught the fake in "
                  f"{g['detected']:.2f} of the stories (stated P(detect) {g['p_detect']:.3f}); under the former "
                  f"latest-declaration rule 4 tries would have escaped in {g['old_rule_escape']:.2f}. The re-rolled "
                  f"seed labelled as the first declaration's was accepted by the engine in {g['mislabelled_accepted']}"
                  f"/{g['seeds']} stories, and made the final weights verified in "
                  f"{g['mislabelled_verified_final']} (the engine does not check seeds: docs/verification.md, Limits).")
        ran = sum(b["code_ran"] for b in binding.values())
        print(f"Code named by a transcript run during a story: {ran} times. Honest runs on a log "
              f"({len(honest_log)}, {args.binding_steps} steps): false rejections {len(honest_log_rej)}/"
              f"{len(honest_log)}; {_mean([h['seconds'] for h in honest_log]):.2f} s per story")
    if not cases:
        (args.out / "verify_cost.json").write_text(json.dumps(
            {"config": {"seeds": args.seeds, "honest_seeds": args.honest_seeds, "every": args.every,
                        "torch": torch.__version__},
             "binding": {"steps": args.binding_steps, "attacks": binding, "runs": brecs, "honest_on_log": honest_log},
             "seconds": time.perf_counter() - began}, indent=1, default=str))
        print(f"\nwrote {args.out / 'verify_cost.json'} ({time.perf_counter() - began:.0f} s)")
        for p in problems:
            print(p)
        return 1 if problems else 0

    # --- per-attack detection at m = 10 -----------------------------------------------------------------------------
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
            "expected_by_fraction": {f: sum(1.0 if independent_failures(r) else
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
                same = r["e2e"]["verdict"] == want and (e["default_sample"] is None
                                                        or r["e2e"]["sample"] == e["default_sample"])
                summary[case]["end_to_end"] = {**r["e2e"], "cached_verdict": want, "agrees": same}
                if not same:
                    mismatches.append(case)
    if mismatches:
        problems.append(f"m = 10: cached verdicts differ from verify_transcript's: {mismatches}")

    hdr = "| attack | caught by | attacker cost | bad segs | " + " | ".join(
        f"{int(f * 100)}%" for f in FRACTIONS) + " | default | 2 largest only | PoL ½ |"
    print(f"\nDetection rate over {args.seeds} seeds against the verification fraction (uniform sample of the "
          f"m = {recs[0]['m'] if recs else '?'} segments; default = the policy's step sample, P ≥ "
          f"{default.target_p_detect} vs f = {default.assumed_fake_fraction} of the steps + {default.largest} "
          f"largest updates, capped by the {default.budget:.0%} budget; calibration-poisoning with "
          f"calibrate_segments=2; 2 largest only = those 2 segments alone; PoL ½ = the ⌈m/2⌉ largest-update "
          f"segments). In brackets: hypergeometric expectation from the measured share of failing segments.")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for case, s in summary.items():
        cells = " | ".join(f"{s['by_fraction'][f]:.2f} ({s['expected_by_fraction'][f]:.2f})" for f in FRACTIONS)
        print(f"| {case} | {','.join(s['caught_by'])} | {s['cost_mean']:.2f} | {s['failing_segment_share']:.2f} | "
              f"{cells} | {s['default']:.2f} | {s['largest_only']:.2f} | {s['pol']:.2f} |")
    e2e_n = sum(1 for s in summary.values() if "end_to_end" in s)
    print(f"\nverify_transcript end to end on seed 0 of each case: {e2e_n - len(mismatches)}/{e2e_n} verdicts and "
          f"samples equal the cached ones" + (f"; MISMATCH: {mismatches}" if mismatches else ""))

    # --- honest runs -------------------------------------------------------------------------------------------
    false_rej = [h for h in honest if h["verdict"] != "pass"]
    base_rej = [h for h in honest if not h["base_pass"]]
    if false_rej:
        problems.append(f"HONEST RUNS REJECTED: {[(h['seed'], h['failing']) for h in false_rej]}")
    hm = honest[0]["m"] if honest else 0
    red_cf = _mean([h["red_compute_fraction"] for h in honest])
    base_cf = _mean([h["base_compute_fraction"] for h in honest])
    print(f"\nHonest runs ({len(honest)}, {args.honest_steps} steps, m = {hm} segments): redline false rejections "
          f"{len(false_rej)}/{len(honest)}; baseline false rejections {len(base_rej)}/{len(honest)}")
    print(f"  redline (verify_transcript, default policy): compute fraction {red_cf:.3f}, "
          f"{_mean([h['red_seconds'] for h in honest]):.2f} s per run")
    print(f"  baseline (PoL ½, ⌈m/2⌉ largest-update segments): compute fraction {base_cf:.3f}, "
          f"{_mean([h['base_seconds'] for h in honest]):.2f} s per run")

    # --- the 5 % budget ----------------------------------------------------------------------------------------
    rows = budget_table(default)
    m_star, m_extras = smallest_m(default), smallest_m(default, extras=True)
    warm = int(ADAPTIVE_CASES["late-smooth-fake-warmup"][1]["warmup"])
    m_warm = smallest_m(default, warmup=warm)
    print(f"\nThe default sample on runs of m one-step segments (P ≥ {default.target_p_detect} vs f = "
          f"{default.assumed_fake_fraction} of the steps; draws capped by budget_draws at {default.budget:.0%} after "
          f"the 2 FLOP-count steps, never under the floor of 7; replayed share = draws + {default.largest} "
          f"largest-update segments + 2 FLOP-count steps, an upper bound):")
    print("| segments m | draws | P(detect) at f = 0.1 | replayed share (≤) | PoL ½ | redline / PoL | ≤ 5 % |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['m']:,} | {r['draws']}{' (capped)' if r['capped'] else ''} | {r['p_detect']:.3f} | "
              f"{r['redline_fraction'] * 100:.2f} % | {r['pol_fraction'] * 100:.0f} % | {r['ratio']:.3f} | "
              f"{'yes' if r['within_budget'] else 'no'} |")
    print(f"The {default.target_p_detect} target fits budget_draws from m = {m_star} one-step segments; with the "
          f"{default.largest} largest-update segments counted too (the budget does not reserve them), from m = "
          f"{m_extras}; after one {warm}-step warm-up segment, from m = {m_warm} segments.")

    # --- at scale: the shortcut ---------------------------------------------------------------------------------------
    def bound(r: dict[str, Any]) -> float | None:
        from redline.verify.sampling import p_detect_steps

        if r["independent"] or r["draws"] is None:
            return None
        return p_detect_steps(r["draws"], default.assumed_fake_fraction)

    print(f"\nAt scale — the shortcut (each class forged once, every segment re-executed once, then the real sample "
          f"drawn with choose_step_sample for {args.scale_seeds} seeds; detected = the sample holds a failing segment "
          f"or a sample-independent check fails), checked against verify_transcript end to end on "
          f"{args.scale_e2e} of the seeds per class (micro model {MICRO_MODEL}, default policy; "
          f"calibration-poisoning with calibrate_segments=2):")
    print("| attack | segments | faked / failing segments | failing share of steps | caught by | draws | "
          "detected | stated P(detect) at f = 0.1 | end to end agrees |")
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    shortfall = []
    for r in scale:
        b = bound(r)
        share = "—" if r["failing_step_share"] is None else f"{r['failing_step_share']:.3f}"
        by = ",".join(r["independent"]) or "segments"
        if r["independent"] == ["transcript"]:
            size = f"{r['steps']:,} steps, refused on load"
        else:
            size = f"{r['m']:,}" + (f" (longest {r['longest_segment']})" if r["longest_segment"] > 1 else "")
        print(f"| {r['case']} | {size} | {r['faked']} / {r['failing_segments']} | {share} | {by} | "
              f"{'—' if r['draws'] is None else str(r['draws']) + (' (capped)' if r['capped'] else '')} | "
              f"{r['detected']:.3f} ({round(r['detected'] * r['seeds'])}/{r['seeds']}) | "
              f"{'—' if b is None else f'{b:.3f}'} | {r['e2e_agree']}/{len(r['e2e'])} |")
        if r["e2e_agree"] != len(r["e2e"]):
            problems.append(f"at scale, the shortcut disagrees with verify_transcript for {r['case']} ({r['tag']})")
        # the bound holds for a faked *share* f; a class with a larger failing share must do at least as well
        if b is not None and r["failing_step_share"] and r["failing_step_share"] >= default.assumed_fake_fraction:
            sd = math.sqrt(b * (1 - b) / r["seeds"])
            if r["detected"] < b - 3 * sd:
                shortfall.append(r["case"])
    if shortfall:
        problems.append(f"detection more than 3 σ below the stated bound: {shortfall}")
    if grind is not None:
        old = ", ".join(f"{k} tries {v:.3f}" for k, v in grind["old_rule_escape"].items())
        print(f"| seed-grinding (verifier's sample: the first declaration's seed) | {grind['m']:,} | "
              f"{grind['faked']} / {grind['faked']} | — | segments | {grind['draws']} (capped) | "
              f"{grind['detected']:.3f} ({round(grind['detected'] * grind['seeds'])}/{grind['seeds']}) | "
              f"{1 - 0.9 ** grind['draws']:.3f} | {grind['e2e_agree']}/{len(grind['stories'])} stories |")
        print(f"Seed grinding at {grind['m']} segments: under the former latest-declaration rule a lab re-declaring "
              f"the same steps would have escaped with {old} (from {grind['seeds']} × K emulated seeds); "
              f"{grind['stories_caught']}/{len(grind['stories'])} real stories on their own logs had every move "
              f"stopped (seed ranges unchanged, the re-rolled report refused), and their audits' verdicts and samples "
              f"equal the shortcut's for the seeds their logs gave in {grind['e2e_agree']}/{len(grind['stories'])}.")
        if grind["e2e_agree"] != len(grind["stories"]) or grind["stories_caught"] != len(grind["stories"]):
            problems.append("seed grinding at scale: a story escaped or disagreed with the shortcut")
    sampled = [r for r in scale if r["tag"] == "scale" and not r["independent"]
               and (r["failing_step_share"] or 0) >= default.assumed_fake_fraction]
    if sampled:
        worst = min(sampled, key=lambda r: r["detected"])
        print(f"Acceptance (≥ 0.99 at ≥ 640 segments with ≥ 10 % of the steps faked, ≥ 200 seeds): "
              f"{'met' if worst['detected'] >= 0.99 else 'NOT met'} at {args.scale_steps} segments — lowest "
              f"{worst['detected']:.3f} ({worst['case']}); the stated bound there is {bound(worst):.3f}.")

    # --- honest long runs ---------------------------------------------------------------------------------------
    scale_false = [r for r in scale_honest if r["verdict"] != "pass"]
    if scale_false:
        problems.append(f"HONEST LONG RUNS REJECTED: {[(r['seed'], r['failing']) for r in scale_false]}")
    scale_cf = max((r["compute_fraction"] for r in scale_honest), default=float("nan"))
    print(f"\nHonest long runs ({len(scale_honest)}, {args.scale_steps} one-step segments, end to end): false "
          f"rejections {len(scale_false)}/{len(scale_honest)}; compute fraction (counted FLOP spent / the run's "
          f"FLOP) max {scale_cf * 100:.2f} %, mean {_mean([r['compute_fraction'] for r in scale_honest]) * 100:.2f} %"
          f" ({_mean([r['replayed_steps'] for r in scale_honest]):.1f} of {args.scale_steps} steps replayed); "
          f"{_mean([r['seconds'] for r in scale_honest]):.2f} s to verify vs "
          f"{_mean([r['forge_s'] for r in scale_honest]):.2f} s to train")
    if scale_honest and scale_cf > default.budget:
        problems.append(f"OVER BUDGET: honest {args.scale_steps}-segment runs spent up to {scale_cf * 100:.2f} % of "
                        f"their training compute (the budget is {default.budget:.0%})")
    if huge_rec is not None:
        print(f"Honest run of {args.huge_steps:,} one-step segments, end to end: {huge_rec['verdict']}; "
              f"{huge_rec['draws']} draws, {len(huge_rec['sample'] or [])} segments re-executed, P(detect) "
              f"{huge_rec['p_detect']:.3f}; compute share {huge_rec['compute_fraction'] * 100:.3f} % "
              f"({huge_rec['replayed_steps']} steps replayed); {huge_rec['seconds']:.1f} s to verify vs "
              f"{huge_rec['forge_s']:.1f} s to train")
        if huge_rec["verdict"] != "pass":
            problems.append(f"the honest {args.huge_steps}-segment run was not passed: {huge_rec['failing']}")
        if args.huge_steps >= 10_000 and huge_rec["compute_fraction"] > 0.01:
            problems.append(f"compute share {huge_rec['compute_fraction'] * 100:.2f} % > 1 % at {args.huge_steps}")

    # --- outputs -------------------------------------------------------------------------------------------------
    result = {"config": {"seeds": args.seeds, "honest_seeds": args.honest_seeds, "steps": args.steps,
                         "every": args.every, "honest_steps": args.honest_steps, "torch": torch.__version__,
                         "fractions": FRACTIONS, "scale_steps": args.scale_steps, "scale_seeds": args.scale_seeds,
                         "scale_e2e": args.scale_e2e, "high_steps": args.high_steps, "huge_steps": args.huge_steps,
                         "policy": default.to_json(), "policies": POLICY_SETTINGS},
              "attacks": {c: {**s, "by_fraction": {str(k): v for k, v in s["by_fraction"].items()},
                              "expected_by_fraction": {str(k): v for k, v in s["expected_by_fraction"].items()}}
                          for c, s in summary.items()},
              "scale": scale, "grind_scale": grind, "scale_honest": scale_honest, "huge": huge_rec,
              "binding": {"steps": args.binding_steps, "attacks": binding, "runs": brecs,
                          "honest_on_log": honest_log},
              "records": recs, "honest": honest, "budget": rows,
              "budget_from_m": {"draws": m_star, "with_largest": m_extras, f"warmup_{warm}": m_warm},
              "end_to_end_mismatches": mismatches, "problems": problems, "seconds": time.perf_counter() - began}
    png = plot(result, args.out / "detection_vs_fraction.png")
    (args.out / "verify_cost.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {png} and {args.out / 'verify_cost.json'} ({time.perf_counter() - began:.0f} s)")
    for p in problems:
        print(p)
    r1000 = next(r for r in rows if r["m"] == 1000)
    print(f"compute ratio redline / PoL-style baseline: measured on {hm}-segment honest runs "
          f"{red_cf / base_cf:.2f}× ({red_cf:.3f} vs {base_cf:.3f}); at m = 1,000 one-step segments "
          f"{r1000['ratio']:.3f}× ({r1000['redline_fraction'] * 100:.1f} % vs {r1000['pol_fraction'] * 100:.0f} %)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
