"""Transcript reuse: lab B claims lab A's verified run as its own.

Lab A records a run, declares it through ``redline run start|declare`` (RunStart, RunProgress, RunFinish)
and an auditor verifies it: ``pass``. Lab B, which trained nothing, then tries three ways to declare A's
training as its own:

1. **as is**: ``redline run start`` of A's transcript with B's key, and a ``RunStart`` forged by B to carry
   A's spec — refused: the spec names another party and run (``RunStart.spec`` must be B's own);
2. **copied roots**: with a ``RunStart`` of its own, B submits a ``RunProgress`` and a ``RunFinish`` that
   carry A's declared roots (and A's final weights) — refused by the engine: those roots were already
   declared by another run;
3. **relabelled copy**: B rewrites the spec with its own party and run id and writes A's records and
   checkpoints again through :class:`~redline.transcript.format.TranscriptWriter`, which binds every leaf to
   B's spec: new roots, the same final weights. B declares the copy with ``redline run start|declare``. Its
   ``RunFinish`` is refused by the engine — those final weights are already another run's — and an auditor
   who is handed A's untouched transcript as B's run fails it on the ``identity`` check (its spec names A).

B's real training compute is zero (``cost`` 0.0 of what it declares). ``verify_copy=True`` also verifies the
relabelled copy against B's accepted ``RunProgress`` and records the verdict in
``details["relabelled_copy_verdict"]``: re-execution cannot tell who ran an honest computation, so the end
(the final weights, bound by the engine) is what stops the copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redline.statements.runs import FlopEstimates, RunFinish, RunProgress, RunStart
from redline.testing.attacks import BindingRun, attack
from redline.testing.attacks._binding import BindingAttack, lab_run, relabel, story
from redline.testing.scenario import now


@attack
class TranscriptReuse(BindingAttack):
    name = "transcript-reuse"
    description = "declares another lab's verified transcript as its own: as is, by its roots, or relabelled"

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             verify_copy: bool = False) -> BindingRun:
        from redline.transcript.transcript import load_transcript

        a_run, b_run = f"a-{seed}", f"b-{seed}"
        a_model, b_model = f"lab-a-tiny-{seed}", f"lab-b-tiny-{seed}"
        a_dir, b_dir = out / "lab-a" / a_run, out / "lab-b" / b_run
        _, a_manifest, cfg = lab_run(a_dir, seed, steps, checkpoint_every, party="lab-a", run_id=a_run)
        a_start, a_declare = scenario.declare_run("lab-a", a_dir, a_model)
        a_audit = scenario.audit("lab-a", a_run, a_dir)
        if a_audit.verdict != "pass":
            raise RuntimeError(f"lab A's honest run does not verify: {a_audit.failed_checks()}")
        a = load_transcript(a_dir)
        a_flop = a_manifest.flop.per_step * a.step_count if a_manifest.flop is not None else 1.0
        answers = [a_start, a_declare, *([a_audit.report] if a_audit.report else [])]
        stopped: dict[str, bool] = {}

        # 1. A's transcript as is
        as_is_cli = scenario.run_start("lab-b", a_dir, b_model, a_flop,
                                       what="(i) lab-b: redline run start of lab A's transcript")
        as_is_forged = scenario.forge("(i) lab-b: a RunStart carrying lab A's spec", "lab-b", RunStart,
                                      run_id=a_run, model_name=b_model, base_model=None, base_model_flop=None,
                                      declared_flop=a_flop, flop_method="counted", hardware=[],
                                      started_at=now(), spec=a.spec,
                                      init_model_digest=a.checkpoints[0].entry.model_digest)
        answers += [as_is_cli, as_is_forged]
        stopped[as_is_cli.what] = as_is_cli.refused
        stopped[as_is_forged.what] = as_is_forged.refused

        # 3 (first half). the relabelled copy, with B's own RunStart
        b_manifest = relabel(a_dir, b_dir, party="lab-b", run_id=b_run)
        b_start = scenario.run_start("lab-b", b_dir, b_model, a_flop,
                                     what="(iii) lab-b: redline run start of its relabelled copy")
        answers.append(b_start)

        # 2. A's roots in B's own statements
        ps = a.checkpoints[-1].step
        copied_progress = scenario.say("(ii) lab-b: a RunProgress carrying lab A's roots", "lab-b", RunProgress,
                                       run_id=b_run, step=ps, flop_so_far=a_flop, commitments=a.commitments_at(ps),
                                       spec_digest=b_manifest.spec_digest, as_of=a_manifest.finished_at)
        copied_finish = scenario.say("(ii) lab-b: a RunFinish carrying lab A's roots and final weights", "lab-b",
                                     RunFinish, run_id=b_run, total_flop=a_flop,
                                     flop_estimates=FlopEstimates(counted=a_flop), estimates_disagree=False,
                                     final_model_digest={"sha256": a.final_model_digest()},
                                     commitments=a.commitments, spec_digest=b_manifest.spec_digest,
                                     manifest_digest=b_manifest.digest(), finished_at=a_manifest.finished_at)
        answers += [copied_progress, copied_finish]
        stopped[copied_progress.what] = copied_progress.refused
        stopped[copied_finish.what] = copied_finish.refused

        # 3 (second half). B declares the relabelled copy: RunProgress (new roots), then RunFinish (A's weights)
        b_declare = scenario.run_declare("lab-b", b_dir, b_run, b_model,
                                         what="(iii) lab-b: redline run declare of its relabelled copy")
        answers.append(b_declare)
        b_finished = scenario.state().runs[f"lab-b/{b_run}"].finished
        stopped["(iii) lab-b: the RunFinish of its relabelled copy"] = b_declare.refused and not b_finished
        audits = {"lab A's run": a_audit}
        as_b = scenario.audit("lab-b", b_run, a_dir)
        audits["lab A's transcript verified as lab B's run"] = as_b
        if as_b.report:
            answers.append(as_b.report)
        identity = as_b.check("identity")
        stopped["(iii) lab A's transcript handed in as lab B's run"] = as_b.verdict == "fail" and not identity.passed
        details: dict[str, Any] = {}
        if verify_copy:
            copy = scenario.audit("lab-b", b_run, b_dir, submit=False)
            audits["lab B's relabelled copy"] = copy
            details["relabelled_copy_verdict"] = copy.verdict
        run = story(self.name, b_dir, cfg, b_manifest, checkpoint_every, cost=0.0, scenario=scenario,
                    victim=a_dir, victim_final_weights=a.final_model_digest(),
                    copy_final_weights=b_manifest.checkpoints[-1].model_digest,
                    victim_roots=a.commitments.model_dump(mode="json"),
                    copy_roots=b_manifest.commitments.model_dump(mode="json"),
                    faked="ownership: lab A's training declared as lab B's (as is, by its roots, relabelled)",
                    **details)
        run.answers, run.audits, run.stopped = answers, audits, stopped
        run.violations = [v for v in scenario.violations() if v.party == "lab-b"]
        return run
