"""The outcome of a verification, and the signed ``VerificationReport`` made from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redline.statements.verification import Check, SeedRangeRef, VerificationReport
from redline.verify.bisect import BisectResult
from redline.verify.distance import Tolerance
from redline.verify.policy import VerificationPolicy
from redline.verify.sampling import StepSample
from redline.verify.segments import SegmentOutcome

if TYPE_CHECKING:
    from redline.crypto.dsse import Envelope
    from redline.crypto.keys import SigningKey


@dataclass
class VerificationResult:
    """Everything :func:`redline.verify.verify_transcript` found."""

    transcript_dir: str
    checks: list[Check]
    sample: StepSample | None
    tolerance: Tolerance
    outcomes: list[SegmentOutcome] = field(default_factory=list)
    bisect: BisectResult | None = None
    per_step_flop: float | None = None  # counted on one replayed step
    compute_spent_flop: float = 0.0  # per_step_flop × every step the verifier replayed
    training_flop: float | None = None  # the run's (declared, else counted) training FLOP
    replayed_steps: int = 0  # all replays: segments, bisection, calibration, the FLOP-count step
    total_steps: int = 0
    seconds: float = 0.0
    declaration_index: int | None = None  # the log entry of the declaration verified, when read from a log
    policy: VerificationPolicy = field(default_factory=VerificationPolicy)
    compute: Any = None  # the compute check's findings (redline.verify.compute.ComputeFindings)

    @property
    def passed(self) -> bool:
        """Every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def verdict(self) -> str:
        """``"fail"`` if a check failed on the evidence; else ``"inconclusive"`` if the verifier could not decide
        a check (another machine, code not installed); else ``"pass"``."""
        if any(not c.passed and not c.inconclusive for c in self.checks):
            return "fail"
        return "inconclusive" if any(c.inconclusive for c in self.checks) else "pass"

    @property
    def failing_segments(self) -> list[SegmentOutcome]:
        """Re-executed segments that did not match."""
        return [o for o in self.outcomes if not o.passed]

    @property
    def failing_step(self) -> int | None:
        """The first bad step that bisection named (None if no segment failed)."""
        return self.bisect.first_bad_step if self.bisect is not None else None

    @property
    def p_detect(self) -> float | None:
        """P(detect) at the assumed fake fraction (a lower bound: the largest-update segments are extra)."""
        if self.sample is None:
            return None
        return self.sample.p_detect.get(self.sample.assumed_fake_fraction)

    @property
    def segments_checked(self) -> int:
        """Segments re-executed."""
        return len(self.outcomes)

    @property
    def verification_fraction(self) -> float:
        """Steps replayed in segment checks / steps of the run."""
        return sum(o.steps for o in self.outcomes) / self.total_steps if self.total_steps else 0.0

    @property
    def compute_fraction(self) -> float | None:
        """FLOP the verification spent / the run's training FLOP."""
        if not self.training_flop:
            return None
        return self.compute_spent_flop / self.training_flop

    def to_json(self) -> dict[str, Any]:
        """JSON-able form of the whole result (for ``--json``)."""
        return {"transcript": self.transcript_dir, "verdict": self.verdict, "policy": self.policy.to_json(),
                "policy_digest": self.policy.digest(), "declaration_index": self.declaration_index,
                "checks": [c.model_dump(mode="json") for c in self.checks],
                "sample": self.sample.to_json() if self.sample else None, "tolerance": self.tolerance.to_json(),
                "segments": [o.to_json() for o in self.outcomes],
                "bisect": self.bisect.to_json() if self.bisect else None, "failing_step": self.failing_step,
                "per_step_flop": self.per_step_flop, "compute_spent_flop": self.compute_spent_flop,
                "training_flop": self.training_flop, "compute_fraction": self.compute_fraction,
                "replayed_steps": self.replayed_steps, "total_steps": self.total_steps,
                "verification_fraction": self.verification_fraction, "p_detect": self.p_detect,
                "compute": self.compute.to_json() if self.compute is not None else None,
                "seconds": round(self.seconds, 3)}

    def to_predicate(self, *, party: str, seq: int, run_id: str, run_party: str) -> VerificationReport:
        """The ``VerificationReport`` an auditor ``party`` signs about ``run_party``'s run ``run_id``."""
        seed = self.sample.seed.hex() if self.sample else "00"
        return VerificationReport.build(party=party, seq=seq, run_id=run_id, run_party=run_party,
                                        checks=[c.model_dump() for c in self.checks], verdict=self.verdict,
                                        compute_spent_flop=float(self.compute_spent_flop), sample_seed=seed,
                                        segments_checked=self.segments_checked, p_detect=self.p_detect,
                                        failing_step=self.failing_step if self.verdict == "fail" else None,
                                        declaration_index=self.declaration_index,
                                        policy_digest=self.policy.digest(),
                                        seed_ranges=[SeedRangeRef(first_step=r.first_step, last_step=r.last_step,
                                                                  seed=r.seed.hex(),
                                                                  declaration_index=r.declaration_index,
                                                                  checkpoint_size=r.checkpoint_size)
                                                     for r in (self.sample.ranges if self.sample else ())])


def sign_report(result: VerificationResult, key: SigningKey, *, seq: int, run_id: str, run_party: str,
                log: str | None = None) -> Envelope:
    """Sign the result's ``VerificationReport`` with the auditor's key (its name is the auditor party), for the
    log whose origin is ``log``."""
    from redline.statements import sign_predicate

    return sign_predicate(result.to_predicate(party=key.name, seq=seq, run_id=run_id, run_party=run_party), key,
                          log=log)


__all__ = ["VerificationResult", "sign_report"]
