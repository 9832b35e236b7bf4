"""Verifying declared training runs: re-execute an unpredictable sample of a transcript's segments.

:func:`verify_transcript` checks, in order:

1. ``transcript`` — the transcript against its own roots (``load_transcript``), and
   ``commitments`` — against the roots of the logged declaration when one is given
   (``RunFinish``: all roots, step count and final model digest; ``RunProgress``:
   the roots of the transcript cut at its step);
2. ``data`` — every step's batch, re-created from the declared data source, has the
   committed digest, in order;
3. ``segments`` — a sample of segments (drawn from ``seed``, see
   :mod:`redline.verify.sampling`) re-executed from their committed start
   checkpoints match their committed end checkpoints (bitwise on CPU, else within a
   calibrated :class:`Tolerance`) and every committed step record; the first failing
   segment is bisected to its first bad step (:mod:`redline.verify.bisect`);
4. ``compute`` — the FLOP counted on one replayed step × the step count is within
   ±30 % of the declared FLOP.

The result (:class:`VerificationResult`) becomes a signed ``VerificationReport``
with :func:`sign_report`. See ``docs/verification.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redline.errors import MalformedInput
from redline.statements.verification import Check
from redline.verify.bisect import BisectResult, CheckpointOracle, FunctionOracle, StateOracle, bisect_segment
from redline.verify.distance import Distance, GroupDistance, Tolerance, calibrate, compare_states
from redline.verify.report import VerificationResult, sign_report
from redline.verify.sampling import (
    REPORT_FRACTIONS,
    Sample,
    checkpoint_after,
    choose_sample,
    p_detect,
    sample_size,
    seed_from_checkpoint,
    seed_from_log,
    uniform_sample,
)
from redline.verify.segments import LocalRunner, SegmentOutcome, SegmentRunner, SegmentTask, run_segment, tasks_for

if TYPE_CHECKING:
    from redline.statements.runs import RunFinish, RunProgress
    from redline.transcript.transcript import Transcript

#: Counted and declared FLOP must agree within this share of the counted figure.
FLOP_TOLERANCE = 0.3
#: Segments with the largest parameter update that are always re-executed.
LARGEST_UPDATES = 2
#: The default sample re-executes at most this share of the run's steps (segments + the FLOP-count step).
DEFAULT_BUDGET = 0.05


def budget_segments(segment_steps: list[int], total_steps: int, budget: float | None) -> int | None:
    """How many segments fit in ``budget`` × ``total_steps`` replayed steps, one step kept for the FLOP count.

    Counts every segment as long as the longest, so any draw of that many fits. ``None`` for no budget.
    """
    if budget is None:
        return None
    if not 0 < budget <= 1:
        raise ValueError(f"budget must lie in (0, 1], not {budget}")
    longest = max(segment_steps, default=1) or 1
    return max(0, math.floor((budget * total_steps - 1) / longest + 1e-9))


def _commitments_check(t: Transcript, decl: RunFinish | RunProgress) -> Check:
    from redline.statements.runs import RunFinish

    if isinstance(decl, RunFinish):
        want, what = t.commitments, "the transcript's"
        problems = []
        if decl.final_model_digest.get("sha256") not in (None, t.final_model_digest()):
            problems.append(f"final model digest {decl.final_model_digest} is not the last checkpoint's "
                            f"{t.final_model_digest()}")
    else:
        if decl.step > t.step_count:
            return Check(name="commitments", passed=False,
                         detail=f"the RunProgress is at step {decl.step}; the transcript has {t.step_count} steps")
        want, what, problems = t.commitments_at(decl.step), f"the transcript's cut at step {decl.step}", []
    if decl.commitments != want:
        diff = [k for k in ("steps_root", "data_root", "checkpoints_root", "step_count")
                if getattr(decl.commitments, k) != getattr(want, k)]
        problems.insert(0, f"the declared {', '.join(diff)} differ from {what}")
    return Check(name="commitments", passed=not problems,
                 detail="; ".join(problems) or f"the {decl.KIND} #{decl.seq} commits to {what} roots")


def _environment_note(t: Transcript, device: str) -> str:
    """Where the recording and the replay environments differ (bitwise replay may then fail honestly)."""
    import torch

    env = t.manifest.environment
    notes = []
    if env.torch != torch.__version__:
        notes.append(f"recorded with torch {env.torch}, replayed with {torch.__version__}")
    if env.device_type != torch.device(device).type:
        notes.append(f"recorded on {env.device_type}, replayed on {torch.device(device).type}")
    return ("; note: " + ", ".join(notes)) if notes else ""


def data_check(t: Transcript) -> Check:
    """Re-create every step's batch from the declared data source and compare its digest, in order.

    The declared data order is the source's own: step ``s`` (1-based) must have consumed the batch at
    position ``s - 1``. A transcript that commits to the true positions of batches taken out of
    order is refused here, before any re-execution.
    """
    from redline.transcript.entrypoints import resolve
    from redline.transcript.torchstate import batch_tensors, from_json, iter_tensors
    from redline.transcript.digest import tensors_digest

    ep = t.manifest.declaration.data_source
    if ep is None:
        return Check(name="data", passed=False, detail="the transcript declares no data source")
    try:
        source = resolve(ep.entry_point)(seed=ep.seed, **from_json(ep.kwargs, {}))
        for expected, rec in enumerate(t.data):
            if rec.position != expected:
                return Check(name="data", passed=False,
                             detail=f"step {rec.step}: consumed the batch at position {rec.position}, but the "
                                    f"declared data order puts position {expected} there")
            got = tensors_digest(iter_tensors(batch_tensors(source.batch(rec.position))))
            if got != rec.batch["sha256"]:
                return Check(name="data", passed=False,
                             detail=f"step {rec.step}: the data source's batch at position {rec.position} has "
                                    f"digest {got}, the transcript commits to {rec.batch['sha256']}")
    except Exception as exc:  # the declared source cannot produce the committed data
        return Check(name="data", passed=False, detail=f"{type(exc).__name__}: {exc}"[:4000])
    return Check(name="data", passed=True,
                 detail=f"all {t.step_count} batches re-read from {ep.entry_point} match the committed digests")


def update_norms(t: Transcript) -> list[float]:
    """L2 distance between each segment's start and end model weights (read with safetensors)."""
    import torch
    from safetensors import safe_open

    def model(ref: Any) -> dict[str, torch.Tensor]:
        with safe_open(str(ref.path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}

    out, prev = [], None
    for ref in t.checkpoints:
        cur = model(ref)
        if prev is not None:
            sq = sum(float((cur[k].double() - prev[k].double()).pow(2).sum())
                     for k in cur if k in prev and cur[k].is_floating_point())
            out.append(math.sqrt(sq))
        prev = cur
    return out


def count_step_flop(t: Transcript, start_step: int, device: str = "cpu") -> float:
    """FLOP of one replayed step (the step after ``start_step``), counted with ``FlopCounter``."""
    from redline.compute.flops import FlopCounter
    from redline.verify.segments import _replay_with_threads

    with FlopCounter() as fc:
        _replay_with_threads(t, start_step, start_step + 1, device)
    return float(fc.result.total)


def verify_transcript(transcript_dir: str | Path, *, seed: bytes, target_p_detect: float = 0.95,
                      assumed_fake_fraction: float = 0.1, workers: int = 2, tolerance: Tolerance | None = None,
                      declaration: RunFinish | RunProgress | None = None, runner: SegmentRunner | None = None,
                      device: str = "cpu", largest: int = LARGEST_UPDATES, calibrate_segments: int | None = None,
                      oracle: StateOracle | None = None, extra_checks: list[Check] | None = None,
                      on_sample: Callable[[Sample], None] | None = None,
                      on_segment: Callable[[SegmentOutcome], None] | None = None,
                      budget: float | None = DEFAULT_BUDGET) -> VerificationResult:
    """Verify the transcript in ``transcript_dir``; sample segments from ``seed`` (see module docs).

    ``budget``: the share of the run's steps the sample may re-execute (default 5 %; see
    :func:`redline.verify.sampling.choose_sample` for the floor below which it never goes; ``None``: no cap).

    ``tolerance``: None → bitwise on CPU (after ``calibrate_segments`` honest double replays, default 0 on
    CPU, 2 elsewhere); ``declaration``: the logged ``RunFinish``/``RunProgress`` whose roots and FLOP the
    transcript must match; ``runner``: where segments run (default ``LocalRunner(workers)``);
    ``extra_checks``: checks made by the caller (e.g. the declaration's signature and log inclusion),
    included in the result; ``on_sample``/``on_segment``: progress callbacks.
    """
    from redline.transcript.transcript import load_transcript

    began = time.perf_counter()
    path = str(transcript_dir)
    checks: list[Check] = list(extra_checks or [])
    tol = tolerance or Tolerance.exact()
    try:
        t = load_transcript(path)
    except MalformedInput as exc:
        checks.append(Check(name="transcript", passed=False, detail=str(exc)[:4000]))
        return VerificationResult(path, checks, None, tol, seconds=time.perf_counter() - began)
    n = t.step_count
    checks.append(Check(name="transcript", passed=True,
                        detail=f"{n} steps, {len(t.checkpoints)} checkpoints; every file, blob and root "
                               f"recomputed (steps root {t.commitments.steps_root[:16]}…)"
                               + _environment_note(t, device)))
    if declaration is not None:
        checks.append(_commitments_check(t, declaration))
    checks.append(data_check(t))
    result = VerificationResult(path, checks, None, tol, total_steps=n)
    segs = t.segments()
    if not segs:
        checks.append(Check(name="segments", passed=False, detail="the transcript has no segment to re-execute"))
        return result
    replayed = 0
    if tolerance is None:
        k = calibrate_segments if calibrate_segments is not None else (0 if device.startswith("cpu") else 2)
        if k:
            tol = calibrate(t, k, device=device)
            replayed += 2 * sum(s.end.step - s.start.step for s in segs[:k])
    result.tolerance = tol
    sample = choose_sample(seed, len(segs), target_p_detect=target_p_detect,
                           assumed_fake_fraction=assumed_fake_fraction,
                           update_norms=update_norms(t) if largest > 0 else None, largest=largest,
                           max_segments=budget_segments([s.end.step - s.start.step for s in segs], n, budget))
    result.sample = sample
    if on_sample:
        on_sample(sample)
    tasks = tasks_for(path, ((i, segs[i].start.step, segs[i].end.step) for i in sample.indexes), tol, device)
    outcomes = (runner or LocalRunner(workers)).run(tasks, on_segment)
    result.outcomes = outcomes
    replayed += sum(o.steps for o in outcomes)
    failed = [o for o in outcomes if not o.passed]
    pd = sample.p_detect[assumed_fake_fraction]
    if failed:
        first = failed[0]
        if first.error is None:
            result.bisect = bisect_segment(t, first.start_step, first.end_step, oracle=oracle, tolerance=tol,
                                           device=device)
            replayed += result.bisect.replayed_steps
        where = "; ".join(_describe(o) for o in failed[:5])
        bis = f"; first bad step {result.bisect.first_bad_step} ({result.bisect.method})" if result.bisect else ""
        detail = f"{len(failed)} of {len(outcomes)} re-executed segments fail: {where}{bis}"
        checks.append(Check(name="segments", passed=False, detail=detail[:4000]))
    else:
        mode = "bitwise" if tol.bitwise else "within the calibrated tolerance"
        checks.append(Check(name="segments", passed=True,
                            detail=f"{len(outcomes)} of {len(segs)} segments re-executed, all match {mode} "
                                   f"(seed {seed.hex()[:16]}…, {len(sample.uniform)} uniform + "
                                   f"{len(set(sample.largest) - set(sample.uniform))} largest-update; "
                                   f"P(detect) ≥ {pd:.3f} if {assumed_fake_fraction:g} of segments were faked"
                                   + _capped_note(sample, budget) + ")"))
    # compute
    try:
        per_step = count_step_flop(t, segs[sample.indexes[0]].start.step, device)
        replayed += 1
    except Exception as exc:
        per_step = None
        checks.append(Check(name="compute", passed=False,
                            detail=f"could not replay a step to count FLOP: {type(exc).__name__}: {exc}"[:4000]))
    result.per_step_flop = per_step
    result.replayed_steps = replayed
    if per_step is not None:
        result.compute_spent_flop = per_step * replayed
        measured = per_step * n
        declared, source = _declared_flop(t, declaration)
        if declaration is not None and hasattr(declaration, "step") and source == "RunProgress.flop_so_far":
            measured = per_step * declaration.step  # type: ignore[union-attr]
        result.training_flop = declared if declared is not None else measured
        if declared is not None:
            ok = abs(measured - declared) <= FLOP_TOLERANCE * measured
            checks.append(Check(name="compute", passed=ok,
                                detail=f"counted {per_step:.4g} FLOP per replayed step × steps = {measured:.4g}; "
                                       f"{source} = {declared:.4g} ({(declared / measured - 1) * 100:+.1f} %, "
                                       f"allowed ±{FLOP_TOLERANCE * 100:.0f} %)"))
    result.seconds = time.perf_counter() - began
    return result


def _capped_note(sample: Sample, budget: float | None) -> str:
    if not sample.capped:
        return ""
    return (f"; below the target {sample.target_p_detect:g}: the {budget:.0%} compute budget allows "
            f"{sample.max_segments} of {sample.segment_count} segments, so record more checkpoints or raise the budget")


def _describe(o: SegmentOutcome) -> str:
    head = f"segment {o.index} (steps {o.start_step + 1}..{o.end_step}): "
    if o.error:
        return head + o.error
    if o.mismatched_steps:
        return head + "step records differ at steps " + ", ".join(map(str, o.mismatched_steps[:5]))
    if o.distance is not None:
        return head + f"end checkpoint differs (model L2 {o.distance.model.l2:.3g}, L∞ {o.distance.model.linf:.3g})"
    return head + "failed"


def _declared_flop(t: Transcript, decl: RunFinish | RunProgress | None) -> tuple[float | None, str]:
    from redline.statements.runs import RunFinish

    if decl is not None:
        if isinstance(decl, RunFinish):
            return decl.total_flop, "RunFinish.total_flop"
        return decl.flop_so_far, "RunProgress.flop_so_far"
    if t.manifest.flop is not None:
        return t.manifest.flop.per_step * t.step_count, "the manifest's counted flop.per_step × steps"
    return None, ""


__all__ = ["BisectResult", "CheckpointOracle", "DEFAULT_BUDGET", "Distance", "FLOP_TOLERANCE", "FunctionOracle",
           "GroupDistance", "LocalRunner", "REPORT_FRACTIONS", "Sample", "SegmentOutcome", "SegmentRunner",
           "SegmentTask", "StateOracle", "Tolerance", "VerificationResult", "bisect_segment", "budget_segments",
           "calibrate", "checkpoint_after", "choose_sample", "compare_states", "count_step_flop", "data_check",
           "p_detect", "run_segment", "sample_size", "seed_from_checkpoint", "seed_from_log", "sign_report",
           "tasks_for", "uniform_sample", "update_norms", "verify_transcript"]
