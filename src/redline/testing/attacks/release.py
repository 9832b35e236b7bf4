"""Releasing unverified weights: bind the end of a verified run to what is released.

A policy puts every model over a (low) compute line under pre-release review
(:func:`redline.testing.scenario.review_policy`). Lab A records a run, declares it through
``redline run start|declare`` (crossing the line, so the model needs a review before release) and an
auditor verifies it: ``pass``, so its final weights are verified. Then A releases, without any review:

a. weights trained ``factor`` × longer than the verified run (A keeps training after the declared end:
   another digest) under the verified model's name — the engine raises ``release-unverified-weights``
   (no run on the log finished with those weights; the name does not carry the verification);
b. the verified weights under another model name, to dodge the review the verified model's name requires —
   the engine raises ``release-without-review``: the requirement follows the weights to the run that
   produced them, whatever the release calls them.

Each violation names its evidence (log entries). ``cost`` is A's real training compute over the compute it
declared (``factor``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redline.testing.attacks import BindingRun, attack
from redline.testing.attacks._binding import (
    BindingAttack,
    lab_run,
    model_digest,
    real_flop,
    story,
    train_off_the_record,
)


@attack
class ReleaseUnverifiedWeights(BindingAttack):
    name = "release-unverified-weights"
    description = "releases weights trained past the verified run, or the verified weights under another name"

    def policy(self) -> Any:
        from redline.testing.scenario import review_policy

        return review_policy()

    def play(self, scenario: Any, out: Path, *, seed: int, steps: int, checkpoint_every: int,
             factor: int = 10) -> BindingRun:
        if factor < 2:
            raise ValueError("factor must be at least 2")
        party, run_id, model_name = "lab-a", f"a-{seed}", f"lab-a-tiny-{seed}"
        transcript = out / "transcript"
        run, manifest, cfg = lab_run(transcript, seed, steps, checkpoint_every, party=party, run_id=run_id)
        start, declare = scenario.declare_run(party, transcript, model_name)
        audit = scenario.audit(party, run_id, transcript)
        if audit.verdict != "pass":
            raise RuntimeError(f"lab A's honest run does not verify: {audit.failed_checks()}")
        verified = manifest.checkpoints[-1].model_digest
        if not scenario.state().runs[f"{party}/{run_id}"].verified_final:
            raise RuntimeError("the passing report did not verify lab A's final weights")
        # off the record: A keeps training the verified run's model, to factor × the declared steps
        train_off_the_record(run, range(steps, factor * steps))
        longer = model_digest(run.capture(factor * steps))
        answers = [start, declare, *([audit.report] if audit.report else [])]
        stopped: dict[str, bool] = {}
        found: list[Any] = []
        for _label, what, name, weights, kind in (
                ("a", f"(a) {party}: release {model_name} with weights trained {factor}x longer", model_name,
                 longer, "release-unverified-weights"),
                ("b", f"(b) {party}: release the verified weights as {model_name}-renamed", f"{model_name}-renamed",
                 verified, "release-without-review")):
            answer = scenario.release(party, name, weights, what=what)
            answers.append(answer)
            index = answer.indexes[0] if answer.indexes else None
            raised = [v for v in scenario.violations(index) if v.party == party] if index is not None else []
            found += raised
            stopped[what] = answer.refused or any(v.kind == kind and index in v.evidence for v in raised)
        result = story(self.name, transcript, cfg, manifest, checkpoint_every, cost=float(factor),
                       scenario=scenario, verified_weights=verified, longer_weights=longer,
                       extra_steps=(factor - 1) * steps, real_flop=real_flop(cfg, factor * steps),
                       declared_flop=real_flop(cfg, steps),
                       faked="the end: released weights that are not the verified run's, or the verified "
                             "weights under another name, with no review")
        result.answers, result.audits, result.stopped, result.violations = (answers, {"lab A's run": audit},
                                                                            stopped, found)
        return result
