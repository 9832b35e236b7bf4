"""Verifying declared training runs: re-execute an unpredictable sample of a transcript's segments.

:func:`verify_transcript` checks, in order:

1. ``transcript`` — the transcript against its own roots (``load_transcript``);
   ``identity`` — its run spec names the run's party and run id;
   ``start`` — against the logged ``RunStart`` when one is given (the whole run spec, field by field, and
   checkpoint 0's model digest);
   ``commitments`` — against the logged declaration when one is given (``RunFinish``: spec digest, manifest
   digest, all roots, step count, final model digest, finish time and counted FLOP; ``RunProgress``: spec
   digest and the roots of the transcript cut at its step);
   ``code`` — every declared factory is registered on this machine and matches its pin (distribution,
   version, files digest); nothing a transcript names is imported otherwise (inconclusive when the code is
   not installed here: the verifier cannot decide);
   ``init`` — checkpoint 0 is what the initialisation says, bit for bit: the model rebuilt from the
   registered factory and the seed (or the base model's weights), a fresh optimizer and scheduler;
2. ``data`` — every step's batch, re-created from the declared data source, has the
   committed digest, in order;
3. ``segments`` — a sample of segments (drawn from ``seed``, see
   :mod:`redline.verify.sampling`) re-executed from their committed start
   checkpoints match their committed end checkpoints (bitwise on CPU, else within a
   calibrated :class:`Tolerance`) and every committed step record; the first failing
   segment is bisected to its first bad step (:mod:`redline.verify.bisect`);
4. ``compute`` — the FLOP counted on one replayed step × the step count is within
   ±30 % of the declared FLOP.

A check the verifier cannot decide on its machine is *inconclusive*, never failed: the
verdict is then ``inconclusive``, which the engine treats as pending.

The result (:class:`VerificationResult`) becomes a signed ``VerificationReport``
with :func:`sign_report`. See ``docs/verification.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redline.errors import MalformedInput, UntrustedCode
from redline.statements.verification import Check
from redline.verify.bisect import BisectResult, CheckpointOracle, FunctionOracle, StateOracle, bisect_segment
from redline.verify.distance import Distance, GroupDistance, Tolerance, calibrate, compare_states
from redline.verify.policy import VerificationPolicy
from redline.verify.report import VerificationResult, sign_report
from redline.verify.sampling import (
    REPORT_FRACTIONS,
    Sample,
    SeedRange,
    StepSample,
    budget_draws,
    checkpoint_after,
    choose_sample,
    choose_step_sample,
    draws_needed,
    p_detect,
    p_detect_steps,
    sample_size,
    seed_from_checkpoint,
    seed_from_log,
    seed_note,
    uniform_sample,
)
from redline.verify.segments import LocalRunner, SegmentOutcome, SegmentRunner, SegmentTask, run_segment, tasks_for

if TYPE_CHECKING:
    from redline.statements.runs import RunFinish, RunProgress, RunStart
    from redline.transcript.transcript import Transcript

def _differences(got: Any, want: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ (at most a few)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out: list[str] = []
        for k in sorted(set(got) | set(want)):
            out += _differences(got.get(k), want.get(k), f"{path}.{k}" if path else k)
        return out[:8]
    return [] if got == want else [path or "(value)"]


def identity_check(t: Transcript, run_party: str, run_id: str) -> Check:
    """The transcript's run spec names this run: a transcript belongs to one party's one run."""
    spec = t.spec
    if (spec.party, spec.run_id) != (run_party, run_id):
        return Check(name="identity", passed=False,
                     detail=f"the transcript was recorded for run {spec.party}/{spec.run_id}, not {run_party}/{run_id} "
                            "(its run spec, and so every Merkle leaf, names another run)")
    return Check(name="identity", passed=True, detail=f"the run spec names {run_party}/{run_id}")


def start_check(t: Transcript, start: RunStart) -> Check:
    """The transcript is the one the run's ``RunStart`` committed to before training: the same run spec, field by
    field, and the same checkpoint 0."""
    problems = []
    if start.spec is None:
        problems.append(f"the RunStart #{start.seq} commits to no run spec, so no transcript can be bound to it")
    else:
        diff = _differences(t.spec.model_dump(mode="json"), start.spec.model_dump(mode="json"))
        if diff:
            problems.append("the transcript's run spec differs from the one the RunStart committed to in "
                            + ", ".join(f"'spec.{d}'" for d in diff))
        if start.init_model_digest != t.checkpoints[0].entry.model_digest:
            problems.append(f"checkpoint 0's model digest {t.checkpoints[0].entry.model_digest[:16]}… is not the "
                            f"RunStart's init_model_digest {str(start.init_model_digest)[:16]}…")
    return Check(name="start", passed=not problems,
                 detail="; ".join(problems) or f"the run spec and checkpoint 0 are those RunStart #{start.seq} "
                                                f"committed to (spec {t.spec_digest[:16]}…)")


def _commitments_check(t: Transcript, decl: RunFinish | RunProgress) -> Check:
    from redline.statements.runs import RunFinish

    problems = []
    if decl.spec_digest != t.spec_digest:
        problems.append(f"the {decl.KIND}'s spec_digest {str(decl.spec_digest)[:16]}… is not the transcript's "
                        f"run spec digest {t.spec_digest[:16]}…")
    if isinstance(decl, RunFinish):
        want, what = t.commitments, "the transcript's"
        m = t.manifest
        if decl.manifest_digest != m.digest():
            problems.append(f"the manifest's SHA-256 {m.digest()[:16]}… is not the RunFinish's manifest_digest "
                            f"{str(decl.manifest_digest)[:16]}…: the manifest was changed after it was declared "
                            "(its spec, checkpoints, files, tokens and roots are checked on their own, so the "
                            "change is in field 'flop' or 'started_at', which nothing else binds)")
        if decl.final_model_digest.get("sha256") != t.final_model_digest():
            problems.append(f"final model digest {decl.final_model_digest} is not the last checkpoint's "
                            f"{t.final_model_digest()}")
        if decl.finished_at != m.finished_at:
            problems.append(f"field 'finished_at' of the manifest ({m.finished_at.isoformat()}) is not the "
                            f"RunFinish's ({decl.finished_at.isoformat()})")
    else:
        if decl.step > t.step_count:
            return Check(name="commitments", passed=False,
                         detail=f"the RunProgress is at step {decl.step}; the transcript has {t.step_count} steps")
        want, what = t.commitments_at(decl.step), f"the transcript's cut at step {decl.step}"
    if decl.commitments != want:
        diff = [k for k in ("steps_root", "data_root", "checkpoints_root", "step_count")
                if getattr(decl.commitments, k) != getattr(want, k)]
        problems.insert(0, f"the declared {', '.join(diff)} differ from {what}")
    return Check(name="commitments", passed=not problems,
                 detail="; ".join(problems) or f"the {decl.KIND} #{decl.seq} commits to {what} roots, run spec"
                                               + (" and manifest" if isinstance(decl, RunFinish) else ""))


def code_check(t: Transcript) -> Check:
    """Every declared factory is registered here and matches its pin (nothing else is imported)."""
    from redline.transcript.factories import load
    from redline.transcript.format import declaration_entries

    decl = t.manifest.declaration
    missing = [f for f in ("model_factory", "optimizer", "data_source", "train_step") if getattr(decl, f) is None]
    if missing:
        return Check(name="code", passed=False,
                     detail=f"the run spec declares no {', '.join(m.replace('_', ' ') for m in missing)}: the run "
                            "cannot be re-executed")
    refs = declaration_entries(decl)
    try:
        for field, ref in refs.items():
            load(field, ref)
    except UntrustedCode as exc:
        return Check(name="code", passed=False, inconclusive=True, detail=str(exc)[:4000])
    return Check(name="code", passed=True,
                 detail="registered and pinned here: " + ", ".join(
                     f"{ref.name} ({ref.distribution} {ref.version})" for ref in refs.values()))


def init_check(t: Transcript) -> Check:
    """Checkpoint 0 is the declared initialisation, bit for bit (model, optimizer and scheduler state)."""
    from redline.transcript.replay import initial_state

    init = t.spec.init
    ckpt0 = t.checkpoint(0)
    try:
        loaded = ckpt0.load()
        if init.kind == "base":
            if ckpt0.entry.model_digest != init.base_model_digest:
                return Check(name="init", passed=False,
                             detail=f"checkpoint 0's model digest {ckpt0.entry.model_digest[:16]}… is not the "
                                    f"declared base model's {str(init.base_model_digest)[:16]}…")
            rebuilt = initial_state(t.spec, loaded.model_state)
            how = f"the base model {str(init.base_model_digest)[:16]}…"
        else:
            rebuilt = initial_state(t.spec)
            how = f"the registered model factory seeded with {init.seed}"
    except UntrustedCode as exc:
        return Check(name="init", passed=False, inconclusive=True, detail=str(exc)[:4000])
    except Exception as exc:  # the declared factories cannot build the declared state: the lab's declaration
        return Check(name="init", passed=False,
                     detail=f"could not rebuild checkpoint 0: {type(exc).__name__}: {exc}"[:4000])
    want = {k: v for k, v in rebuilt.tensors.items() if not k.startswith("rng.")}
    got = {k: v for k, v in loaded.tensors.items() if not k.startswith("rng.")}
    from redline.transcript.torchstate import named_tensors_equal

    bad = named_tensors_equal(want, got)
    for key in ("redline.optimizer", "redline.scheduler"):
        if rebuilt.metadata.get(key) != loaded.metadata.get(key):
            bad.append(f"metadata:{key}")
    if bad:
        return Check(name="init", passed=False,
                     detail=f"checkpoint 0 is not {how} with a fresh optimizer and scheduler: "
                            f"{len(bad)} differ ({', '.join(bad[:5])}); the run did not start where it declares "
                            "(e.g. it was trained before recording began)")
    return Check(name="init", passed=True,
                 detail=f"checkpoint 0 is {how} with a fresh optimizer and scheduler, bit for bit "
                        f"({len(want)} tensors)")


def _replay_environment(t: Transcript, device: str) -> list[str]:
    """Where this machine differs from the recording one in a way that changes floating-point results."""
    from redline.transcript.recorder import current_environment

    recorded = t.manifest.environment
    out = recorded.replay_differences(current_environment(device))
    if recorded.device_type != "cpu" and not recorded.deterministic_algorithms:
        out.append(f"recorded on {recorded.device_type} without deterministic algorithms (replays there are not "
                   "bitwise reproducible, and no tolerance has been measured for that device class)")
    return out


def _undecidable(check: Check, env_diff: list[str]) -> Check:
    """A failed replay-dependent check made on a machine unlike the recording one: inconclusive, not failed."""
    if check.passed or check.inconclusive or not env_diff:
        return check
    return Check(name=check.name, passed=False, inconclusive=True,
                 detail=(f"this machine differs from the recording one ({'; '.join(env_diff)}), so bitwise replay "
                         f"cannot decide: re-verify on a machine that matches. What was seen: {check.detail}")[:4000])


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


def _seed_ranges(seed: bytes | Sequence[SeedRange], total_steps: int) -> list[SeedRange]:
    if isinstance(seed, (bytes, bytearray)):
        if not 1 <= len(seed) <= 64:
            raise ValueError("a seed is 1..64 bytes")
        return [SeedRange(1, total_steps, bytes(seed))]
    return list(seed)


def _earlier_check(t: Transcript, earlier: Sequence[tuple[int, RunProgress | RunFinish]]) -> Check | None:
    """Every earlier declaration of the run committed to a prefix of this same transcript."""
    from redline.statements.runs import RunFinish

    for index, decl in earlier:
        step = decl.commitments.step_count if isinstance(decl, RunFinish) else decl.step
        if step > t.step_count or decl.commitments != t.commitments_at(step) or decl.spec_digest != t.spec_digest:
            return Check(name="history", passed=False,
                         detail=f"the {decl.KIND} at log entry {index} committed to other roots at step {step} than "
                                "this transcript has: the transcript was rewritten after it was declared")
    if not earlier:
        return None
    return Check(name="history", passed=True,
                 detail=f"the {len(earlier)} earlier declaration(s) commit to prefixes of this transcript")


def verify_transcript(transcript_dir: str | Path, *, seed: bytes | Sequence[SeedRange],
                      policy: VerificationPolicy | None = None, workers: int = 2, device: str = "cpu",
                      runner: SegmentRunner | None = None, tolerance: Tolerance | None = None,
                      oracle: StateOracle | None = None, declaration: RunFinish | RunProgress | None = None,
                      declaration_index: int | None = None,
                      earlier: Sequence[tuple[int, RunProgress | RunFinish]] = (),
                      run_start: RunStart | None = None, run: tuple[str, str] | None = None,
                      extra_checks: list[Check] | None = None,
                      on_sample: Callable[[StepSample], None] | None = None,
                      on_segment: Callable[[SegmentOutcome], None] | None = None) -> VerificationResult:
    """Verify the transcript in ``transcript_dir`` under ``policy`` (default :class:`VerificationPolicy`).

    ``seed``: the seed ranges the log implies (:func:`redline.verify.logged.logged_run`), or one seed for
    every step (verifying without a log). ``declaration``: the logged ``RunFinish``/``RunProgress`` the
    transcript must match, at log entry ``declaration_index`` (named in the report); ``earlier``: the run's
    earlier declarations, each of which must commit to a prefix of this transcript; ``run_start``: the
    run's logged ``RunStart`` (the spec and checkpoint 0 it committed to); ``run``: ``(party, run_id)`` the
    transcript must belong to (default: the declaration's); ``extra_checks``: checks made by the caller
    (e.g. the declaration's signature and log inclusion). Where it runs: ``device``, ``workers`` local
    processes or a ``runner``; ``tolerance`` overrides the replay comparison (tests; by default replay is
    bitwise and a mismatch on a machine unlike the recording one is inconclusive). ``on_sample`` /
    ``on_segment``: progress callbacks.
    """
    from redline.transcript.transcript import load_transcript

    policy = policy or VerificationPolicy()
    began = time.perf_counter()
    path = str(transcript_dir)
    checks: list[Check] = list(extra_checks or [])
    tol = tolerance or Tolerance.exact()

    def done(result: VerificationResult) -> VerificationResult:
        result.seconds = time.perf_counter() - began
        return result

    try:
        t = load_transcript(path)
    except MalformedInput as exc:
        checks.append(Check(name="transcript", passed=False, detail=str(exc)[:4000]))
        return done(VerificationResult(path, checks, None, tol, declaration_index=declaration_index,
                                       policy=policy))
    n = t.step_count
    env_diff = _replay_environment(t, device)
    checks.append(Check(name="transcript", passed=True,
                        detail=f"{n} steps, {len(t.checkpoints)} checkpoints of at most {t.spec.checkpoint_every} "
                               f"steps apart; every file, blob and root recomputed (steps root "
                               f"{t.commitments.steps_root[:16]}…)"
                               + (f"; recorded on another machine: {'; '.join(env_diff)}" if env_diff else "")))
    if run is None and declaration is not None:
        run = (declaration.party, declaration.run_id)
    if run is not None:
        checks.append(identity_check(t, *run))
    if run_start is not None:
        checks.append(start_check(t, run_start))
    if declaration is not None:
        checks.append(_commitments_check(t, declaration))
    history = _earlier_check(t, earlier)
    if history is not None:
        checks.append(history)
    result = VerificationResult(path, checks, None, tol, total_steps=n, declaration_index=declaration_index,
                                policy=policy)
    checks.append(code_check(t))
    if not checks[-1].passed:  # nothing named by the transcript may run unless it is registered and pinned here
        return done(result)
    from redline.verify.compute import compute_check, scan_batches

    checks.append(_undecidable(init_check(t), env_diff))
    scan = scan_batches(t)  # every batch re-created once: its digest (the data check), tokens and shape
    checks.append(scan.data_check())
    ranges = _seed_ranges(seed, n)
    computed = compute_check(t, declaration, device=device, flop_tolerance=policy.flop_tolerance, scan=scan,
                             seed=ranges[0].seed, earlier=earlier)
    segs = t.segments()
    if not segs:
        checks.append(Check(name="segments", passed=False, detail="the transcript has no segment to re-execute"))
        return done(result)
    replayed = 0
    if tolerance is None and policy.calibrate_segments:
        starts = [segs[i].start.step for i in uniform_sample(ranges[0].seed, len(segs),
                                                               min(policy.calibrate_segments, len(segs)),
                                                               label=b"calibration")]
        tol = calibrate(t, len(starts), device=device, start_steps=starts)
        replayed += 2 * sum(t.segment(s).end.step - s for s in starts)
    result.tolerance = tol
    lengths = [s.end.step - s.start.step for s in segs]
    norms = update_norms(t) if policy.largest > 0 else None
    # the budget pays for the FLOP count, the calibration and the largest-update segments before any draw
    top = sorted(range(len(segs)), key=lambda i: (-norms[i], i))[:policy.largest] if norms is not None else []
    sample = choose_step_sample(ranges, [s.end.step for s in segs],
                                target_p_detect=policy.target_p_detect,
                                assumed_fake_fraction=policy.assumed_fake_fraction,
                                update_norms=norms, largest=policy.largest,
                                max_draws=budget_draws(lengths, policy.budget,
                                                       reserved_steps=computed.counted_steps + replayed
                                                       + sum(lengths[i] for i in top)))
    result.sample = sample
    if on_sample:
        on_sample(sample)
    tasks = tasks_for(path, ((i, segs[i].start.step, segs[i].end.step) for i in sample.indexes), tol, device)
    outcomes = (runner or LocalRunner(workers)).run(tasks, on_segment)
    result.outcomes = outcomes
    replayed += sum(o.steps for o in outcomes)
    failed = [o for o in outcomes if not o.passed]
    f = policy.assumed_fake_fraction
    pd = sample.p_detect[f]
    if failed and all(o.undecided for o in failed):  # the code could not run here: nothing is shown either way
        where = "; ".join(_describe(o) for o in failed[:5])
        checks.append(Check(name="segments", passed=False, inconclusive=True,
                            detail=f"{len(failed)} of {len(outcomes)} re-executed segments could not run the code "
                                   f"pinned by the run here: {where}"[:4000]))
    elif failed and env_diff:  # bisecting would blame a step for the machine's arithmetic: leave it undecided
        where = "; ".join(_describe(o) for o in failed[:5])
        checks.append(_undecidable(Check(name="segments", passed=False,
                                         detail=f"{len(failed)} of {len(outcomes)} re-executed segments do not "
                                                f"replay: {where}"[:4000]), env_diff))
    elif failed:
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
        extra = len(set(sample.largest) - set(sample.uniform))
        checks.append(Check(name="segments", passed=True,
                            detail=f"{len(outcomes)} of {len(segs)} segments re-executed, all match {mode} "
                                   f"({sample.draws} steps drawn in {len(sample.ranges)} seed range(s) "
                                   f"(seed {sample.seed.hex()[:16]}…) → {len(sample.uniform)} segments, + {extra} "
                                   f"largest-update; P(detect) ≥ {pd:.3f} if {f:g} of the steps were faked"
                                   + _capped_note(sample, policy) + ")"))
    # compute: every batch shape counted, summed over the steps, against 6·N·D and the declaration
    checks.append(_undecidable(computed.check, env_diff))
    result.compute = computed
    result.per_step_flop = computed.mean_step_flop
    result.replayed_steps = replayed + computed.counted_steps
    if computed.counted_flop is not None:
        spent = computed.spent_flop + sum(computed.flop_of_steps(o.start_step, o.end_step) for o in outcomes)
        if result.bisect is not None:
            spent += int(result.bisect.replayed_steps * (computed.mean_step_flop or 0))
        result.compute_spent_flop = float(spent)
        result.training_flop = (computed.declared_flop if computed.declared_flop is not None
                                else float(computed.counted_flop))
    return done(result)


def _capped_note(sample: StepSample, policy: VerificationPolicy) -> str:
    if not sample.capped:
        return ""
    return (f"; below the target {sample.target_p_detect:g}: the {policy.budget:.0%} compute budget allows "
            f"{sample.max_draws} step draws, so record shorter segments (more checkpoints) or raise the budget")


def _describe(o: SegmentOutcome) -> str:
    head = f"segment {o.index} (steps {o.start_step + 1}..{o.end_step}): "
    if o.error:
        return head + o.error
    if o.mismatched_steps:
        return head + "step records differ at steps " + ", ".join(map(str, o.mismatched_steps[:5]))
    if o.distance is not None:
        return head + f"end checkpoint differs (model L2 {o.distance.model.l2:.3g}, L∞ {o.distance.model.linf:.3g})"
    return head + "failed"


__all__ = ["BisectResult", "CheckpointOracle", "Distance", "FunctionOracle", "GroupDistance",
           "LocalRunner", "REPORT_FRACTIONS", "Sample", "SeedRange", "SegmentOutcome", "SegmentRunner", "SegmentTask",
           "StateOracle", "StepSample", "Tolerance", "VerificationPolicy", "VerificationResult", "bisect_segment",
           "budget_draws", "calibrate", "checkpoint_after", "choose_sample", "choose_step_sample", "code_check",
           "compare_states", "draws_needed", "identity_check", "init_check",
           "p_detect", "p_detect_steps", "run_segment", "sample_size", "seed_from_checkpoint", "seed_from_log",
           "seed_note", "sign_report", "start_check", "tasks_for", "uniform_sample", "update_norms",
           "verify_transcript"]
