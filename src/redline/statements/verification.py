"""Statements about verification: an auditor's signed report on a declared training run."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from redline.statements.base import (
    BoundedList,
    Count,
    Flop,
    HexBytes,
    Model,
    Name,
    PartyName,
    Predicate,
    Probability,
    Sha256Hex,
    Text,
    register,
    unique,
)

Verdict = Literal["pass", "fail", "inconclusive"]


class Check(Model):
    """One check the verifier ran, and its outcome.

    ``inconclusive`` marks a check that did not pass because the verifier could not decide (its machine or
    installed code differs from what the run was recorded with), not because the evidence is against the run.
    """

    name: Name
    passed: bool
    detail: Text
    inconclusive: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Check:
        if self.passed and self.inconclusive:
            raise ValueError(f"check {self.name!r} cannot be both passed and inconclusive")
        return self


class SeedRangeRef(Model):
    """Steps ``first_step..last_step`` were sampled with ``seed``: the SHA-256 of the log's signed checkpoint of
    size ``checkpoint_size``, the first after the declaration at ``declaration_index`` that committed to them
    (both null when verified without a log)."""

    first_step: Annotated[int, Field(ge=1, le=2**53 - 1)]
    last_step: Annotated[int, Field(ge=1, le=2**53 - 1)]
    seed: HexBytes
    declaration_index: Count | None = None
    checkpoint_size: Count | None = None


@register
class VerificationReport(Predicate):
    """A verifier reports on a declared run: the checks it ran, its verdict, its cost and its detection probability.

    ``declaration_index`` is the log entry of the ``RunProgress`` or ``RunFinish`` whose commitments were
    verified (None when verified without a log): only a passing report on a run's ``RunFinish`` verifies its
    final weights. ``policy_digest`` names the ``VerificationPolicy`` it was reached under; ``seed_ranges`` the
    seed of each range of steps and the declaration and checkpoint it came from (``sample_seed`` digests them).
    """

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:verification-report:v2"
    KIND: ClassVar[str] = "verification-report"

    run_id: Name
    run_party: PartyName
    checks: Annotated[BoundedList[Check], Field(min_length=1)]
    verdict: Verdict
    compute_spent_flop: Flop
    sample_seed: HexBytes
    segments_checked: Count
    p_detect: Probability | None = None
    failing_step: Count | None = None
    declaration_index: Count | None = None
    policy_digest: Sha256Hex | None = None
    seed_ranges: BoundedList[SeedRangeRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> VerificationReport:
        unique(self.checks, lambda c: c.name, "check name")
        failed = [c.name for c in self.checks if not c.passed and not c.inconclusive]
        undecided = [c.name for c in self.checks if c.inconclusive]
        if self.verdict == "pass" and (failed or undecided):
            raise ValueError(f"field 'verdict' is 'pass' but check(s) did not pass: {', '.join(failed + undecided)}")
        if self.verdict != "fail" and self.failing_step is not None:
            raise ValueError(f"field 'failing_step' is given but the verdict is {self.verdict!r}")
        if self.verdict == "fail" and not failed:
            raise ValueError("field 'verdict' is 'fail' but no check failed")
        expect = 1
        for r in self.seed_ranges:
            if r.first_step != expect or r.last_step < r.first_step:
                raise ValueError(f"field 'seed_ranges' must cover the steps in order from step 1; a range starts at "
                                 f"{r.first_step}, expected {expect}")
            expect = r.last_step + 1
        if self.verdict == "inconclusive" and (failed or not undecided):
            raise ValueError("field 'verdict' is 'inconclusive' only when no check failed and one was inconclusive")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        own = super().subjects()
        return [*own, {"name": f"{self.run_party}/run/{self.run_id}", "digest": dict(own[0]["digest"])}]


__all__ = ["Check", "SeedRangeRef", "Verdict", "VerificationReport"]
