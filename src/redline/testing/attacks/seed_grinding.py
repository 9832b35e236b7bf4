"""Seed grinding: re-declare the same steps, RunProgress after RunProgress, until the sample misses the fake.

The sample a verifier draws is fixed by the log: the seed of a range of steps is the SHA-256 of the first signed
checkpoint after the declaration that committed to it. Under the former rule (the seed of the run's *latest*
declaration) a lab could re-roll the sample for the price of a statement: declare the same roots again, read
the new checkpoint, compute the sample the verifier would draw (everything it needs is public: the seed, the
policy, the transcript), and stop as soon as the sample misses what it faked — four tries sufficed in the review.

This lab records a run of ``segments`` one-step segments whose last ``fake_fraction`` of the steps are faked
by small smooth updates (:class:`~redline.testing.attacks.late_smooth.LateSmoothFake`), declares its start with
``redline run start`` and then submits ``tries`` ``RunProgress`` statements for the same steps through the
statement builders, exactly as ``redline run declare`` builds them (honestly counted FLOP, the transcript's
roots). After each it reads the log as a verifier does (:func:`redline.verify.logged.logged_run`) and the
engine's state, and records the sample it would get under both rules. Then it submits the ``RunFinish``; the
auditor verifies as ``redline verify run --log --submit`` does. Last, a colluding auditor submits a report
drawn from a re-rolled seed (the checkpoint after a later ``RunProgress``, one whose sample misses the fake
when the lab found one), naming that declaration as its seed's source.

Stopped when (1) every seed range — the verifier's (``logged_run``) and the engine's (``Run.seed_ranges``) —
after every re-declaration is the one the first declaration fixed, and the audit's sample was drawn from it
(so the detection probability is the honest one, whatever the lab re-declared), and (2) the engine refused
the report naming the re-rolled range. Whether the audit itself caught the fake is the honest sample's
chance, ``1 - (1 - f)^draws``, reported in the details (``detected``, ``p_detect``), as is whether the former
rule would have let the lab escape (``old_rule_escape``, at which try).

The details also record one move this class does not count as stopped or not: the same re-rolled seed labelled
with the *first* declaration's entry and checkpoint size (``mislabelled_report_refused``). The engine checks
which declarations a report's ranges come from, not the seeds (they are hashes of signed checkpoint notes the
engine does not replay; ``docs/verification.md``, Limits); anyone holding the log's checkpoints can recompute
them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from redline.testing.attacks import BindingRun, Declared, SpoofedRun, attack
from redline.testing.attacks._binding import BindingAttack

#: The small model of the long runs: 100 one-step segments stay cheap.
MICRO_MODEL: dict[str, Any] = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


def forge_late_fake(workdir: Path, *, seed: int, segments: int, fake_fraction: float = 0.1,
                    model: dict[str, Any] | None = None, party: str = "lab-a",
                    run_id: str | None = None) -> SpoofedRun:
    """The lab's transcript: ``segments`` one-step segments, the last ``fake_fraction`` of the steps faked by
    small smooth updates, recorded for ``party``'s run ``run_id`` (default ``grind-{seed}``)."""
    from redline.testing.attacks.late_smooth import LateSmoothFake

    return LateSmoothFake().run(workdir, seed=seed, steps=segments, checkpoint_every=1, fake_fraction=fake_fraction,
                                config={"model": dict(MICRO_MODEL if model is None else model), "party": party,
                                        "run_id": run_id or f"grind-{seed}"})


def planned_sample(t: Any, ranges: Any, policy: Any, norms: list[float], reserved: int) -> Any:
    """The sample ``verify_transcript`` draws from ``ranges`` under ``policy`` (what anyone can compute)."""
    from redline.verify.sampling import budget_draws, choose_step_sample

    segs = t.segments()
    lengths = [s.end.step - s.start.step for s in segs]
    return choose_step_sample(ranges, [s.end.step for s in segs], target_p_detect=policy.target_p_detect,
                              assumed_fake_fraction=policy.assumed_fake_fraction,
                              update_norms=norms if policy.largest > 0 else None, largest=policy.largest,
                              max_draws=budget_draws(lengths, policy.budget, reserved_steps=reserved))


def _open_log(scenario: Any) -> Any:
    from redline.log.service import Log
    from redline.log.sqlite import SqliteStore

    return Log.open(SqliteStore(scenario.dir / "log.db"))


@attack
class SeedGrinding(BindingAttack):
    name = "seed-grinding"
    description = ("re-declares the same steps RunProgress after RunProgress to re-roll the verifier's sample "
                   "until it misses the faked steps")

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             segments: int | None = 100, tries: int = 4, fake_fraction: float = 0.1,
             forged: SpoofedRun | None = None, model: dict[str, Any] | None = None) -> BindingRun:
        """Forge ``segments`` one-step segments (``steps`` and ``checkpoint_every`` are not used: the late fake
        needs many short segments), or declare ``forged``, a transcript forged before (by
        :func:`forge_late_fake`, for party ``lab-a``); ``tries`` RunProgress statements for the same steps."""
        from redline.statements.runs import FlopEstimates, RunFinish, RunProgress
        from redline.transcript.transcript import load_transcript
        from redline.verify import VerificationPolicy, seed_from_log, update_norms, verify_transcript
        from redline.verify.compute import compute_check
        from redline.verify.sampling import SeedRange, p_detect_steps

        if tries < 2:
            raise ValueError("tries must be at least 2: grinding is declaring the same steps again")
        party = "lab-a"
        transcript = out / "transcript"
        if forged is None:
            if not segments or segments < 10:
                raise ValueError("seed-grinding forges one-step segments: give segments (at least 10)")
            forged = forge_late_fake(out / "forge", seed=seed, segments=segments, fake_fraction=fake_fraction,
                                     model=model)
            shutil.move(str(forged.transcript_dir), transcript)
        else:
            shutil.copytree(forged.transcript_dir, transcript)
        faked = set(forged.faked_segments)
        t = load_transcript(transcript)
        run_id, n = t.spec.run_id, t.step_count
        model_name = f"{party}-{run_id}"
        policy = VerificationPolicy()
        m = t.manifest
        counted = compute_check(t, None, probe=False)  # as `redline run declare` counts
        total = float(counted.counted_flop)
        six_nd = 6.0 * m.parameter_count * m.tokens
        start = scenario.run_start(party, transcript, model_name, total)
        answers = [start]
        if start.refused:
            raise RuntimeError(f"the lab's RunStart was refused: {start}")
        norms = update_norms(t)
        reserved = sum(1 + (sc.steps > 1) for sc in counted.shapes)  # the steps verify_transcript counts FLOP on
        trail: list[dict[str, Any]] = []
        first_ranges: list[Any] | None = None
        first_engine: list[list[int]] | None = None
        for attempt in range(tries):
            answer = scenario.say(f"{party}: RunProgress #{attempt + 1} at step {n} (the same steps again)"
                                  if attempt else f"{party}: RunProgress at step {n}", party, RunProgress,
                                  run_id=run_id, step=n, flop_so_far=total, commitments=t.commitments_at(n),
                                  spec_digest=t.spec_digest, as_of=m.finished_at)
            answers.append(answer)
            if answer.refused:
                raise RuntimeError(f"a RunProgress was refused: {answer}")
            index = answer.indexes[0]
            log = _open_log(scenario)
            try:
                from redline.verify.logged import logged_run

                ranges = logged_run(log, run_id, party).ranges  # what a verifier draws from now
                old_seed, old_size = seed_from_log(log, index)  # the former rule: the latest declaration's seed
            finally:
                log.store.close()
            engine = [list(r) for r in scenario.state().runs[f"{party}/{run_id}"].seed_ranges]
            old = SeedRange(1, n, old_seed, index, old_size)
            now_sample = planned_sample(t, ranges, policy, norms, reserved)
            old_sample = planned_sample(t, [old], policy, norms, reserved)
            if first_ranges is None:
                first_ranges, first_engine = ranges, engine
            trail.append({"index": index, "ranges": [r.to_json() for r in ranges], "engine_ranges": engine,
                          "sample": now_sample.indexes, "sample_meets_fake": bool(faked & set(now_sample.indexes)),
                          "old_rule_seed": old_seed.hex(), "old_rule_checkpoint": old_size,
                          "old_rule_sample": old_sample.indexes,
                          "old_rule_meets_fake": bool(faked & set(old_sample.indexes)), "old_range": old})
        finish = scenario.say(f"{party}: RunFinish", party, RunFinish, run_id=run_id, total_flop=total,
                              flop_estimates=FlopEstimates(counted=total, six_nd=six_nd),
                              estimates_disagree=abs(six_nd - total) > 0.5 * total,
                              final_model_digest={"sha256": t.final_model_digest()}, commitments=t.commitments,
                              spec_digest=t.spec_digest, manifest_digest=m.digest(), finished_at=m.finished_at)
        answers.append(finish)
        if finish.refused:
            raise RuntimeError(f"the lab's RunFinish was refused: {finish}")
        audit = scenario.audit(party, run_id, transcript)
        answers.append(audit.report)
        final_ranges = list(audit.result.sample.ranges) if audit.result.sample is not None else []
        after_audit = scenario.state().runs[f"{party}/{run_id}"]
        final_engine = [list(r) for r in after_audit.seed_ranges]
        verified_after_audit = (after_audit.verified, after_audit.verified_final)
        unchanged = (all(tr["ranges"] == trail[0]["ranges"] and tr["engine_ranges"] == first_engine for tr in trail)
                     and final_ranges == list(first_ranges or []) and final_engine == first_engine)
        # the colluding auditor's report from a re-rolled seed: one whose sample misses, if the grinding found one
        regrind = next((tr for tr in trail[1:] if not tr["old_rule_meets_fake"]), trail[-1])
        logged = _logged(scenario, run_id, party)
        rerolled = verify_transcript(transcript, seed=[regrind["old_range"]], declaration=logged.declaration,
                                     declaration_index=logged.index, earlier=logged.earlier, run_start=logged.start,
                                     run=(party, run_id), extra_checks=list(logged.checks), workers=1)
        key = scenario.keys["audit"]
        report = scenario.submit(f"audit: a report drawn from the re-rolled seed of entry {regrind['index']} "
                                 f"({rerolled.verdict})",
                                 _sign(rerolled, key, seq=scenario._next_seq("audit"), run_id=run_id,
                                       run_party=party).to_json())
        answers.append(report)
        first = first_ranges[0] if first_ranges else None
        mislabelled_refused, mislabelled_answer = None, None
        if first is not None and rerolled.sample is not None:
            relabel = dataclasses.replace(regrind["old_range"], declaration_index=first.declaration_index,
                                          checkpoint_size=first.checkpoint_size)
            fake_result = dataclasses.replace(rerolled)
            fake_result.sample = dataclasses.replace(rerolled.sample, ranges=(relabel,))
            mis = scenario.submit("audit: the re-rolled seed labelled as the first declaration's",
                                  _sign(fake_result, key, seq=scenario._next_seq("audit"), run_id=run_id,
                                        run_party=party).to_json())
            mislabelled_refused = mis.refused
            mislabelled_answer = mis
        after = scenario.state().runs[f"{party}/{run_id}"]
        since = audit.report.indexes[0] if audit.report and not audit.report.refused else scenario.size
        violations = [v for v in scenario.violations(since) if v.party == party]
        sample = audit.result.sample
        escape_at = next((i + 1 for i, tr in enumerate(trail) if not tr["old_rule_meets_fake"]), None)
        for tr in trail:
            tr.pop("old_range")
        declared = Declared(steps=n, flop=total, model=dict(m.declaration.model_factory.kwargs),
                            parameter_count=m.parameter_count, tokens=m.tokens)
        result = BindingRun(attack=self.name, transcript_dir=transcript, declared=declared,
                            faked_segments=[], segment_starts=[s.start.step for s in t.segments()],
                            cost=forged.cost,
                            details={"log": scenario.dir, "tries": tries, "trail": trail,
                                     "faked_steps": forged.details.get("faked_steps"),
                                     "faked_transcript_segments": sorted(faked),
                                     "draws": sample.draws if sample else None,
                                     "p_detect": p_detect_steps(sample.draws, fake_fraction) if sample else None,
                                     "detected": audit.verdict == "fail", "verdict": audit.verdict,
                                     "old_rule_escape": escape_at is not None, "old_rule_escape_at": escape_at,
                                     "rerolled_verdict": rerolled.verdict, "rerolled_entry": regrind["index"],
                                     "rerolled_report_error": report.error,
                                     "verified_after_audit": verified_after_audit[0],
                                     "verified_final_after_audit": verified_after_audit[1],
                                     "mislabelled_report_refused": mislabelled_refused,
                                     "mislabelled_answer": str(mislabelled_answer) if mislabelled_answer else None,
                                     "verified_after_mislabelled": after.verified,
                                     "verified_final_after_mislabelled": after.verified_final,
                                     "faked": f"the last {forged.details.get('faked_steps')} of {n} steps (small "
                                              f"smooth updates), then the sample re-rolled by re-declaring "
                                              f"{tries} times"})
        result.answers = answers
        result.audits = {"verify the run": audit, "the re-rolled report": _Audit(rerolled)}
        result.violations = violations
        result.stopped = {
            f"re-declare steps 1..{n} {tries} times to re-roll the sample": unchanged,
            f"a report drawn from the re-rolled seed of entry {regrind['index']}":
                report.refused and "seed_ranges" in (report.error or ""),
        }
        return result


def _sign(result: Any, key: Any, **fields: Any) -> Any:
    """``sign_report`` for the scenario's log (a statement names the log it is for)."""
    from redline.testing.scenario import LOG_ORIGIN
    from redline.verify import sign_report

    return sign_report(result, key, log=LOG_ORIGIN, **fields)


@dataclasses.dataclass
class _Audit:
    """A verification made outside ``Scenario.audit`` (the colluding auditor's), shaped like an audit."""

    result: Any

    @property
    def verdict(self) -> str:
        return self.result.verdict


def _logged(scenario: Any, run_id: str, party: str) -> Any:
    log = _open_log(scenario)
    try:
        from redline.verify.logged import logged_run

        return logged_run(log, run_id, party)
    finally:
        log.store.close()


__all__ = ["MICRO_MODEL", "SeedGrinding", "forge_late_fake", "planned_sample"]
