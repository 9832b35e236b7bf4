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
    Text,
    register,
    unique,
)

Verdict = Literal["pass", "fail", "inconclusive"]


class Check(Model):
    """One check the verifier ran, and its outcome."""

    name: Name
    passed: bool
    detail: Text


@register
class VerificationReport(Predicate):
    """A verifier reports on a declared run: the checks it ran, its verdict, its cost and its detection probability."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:verification-report:v1"
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

    @model_validator(mode="after")
    def _consistent(self) -> VerificationReport:
        unique(self.checks, lambda c: c.name, "check name")
        failed = [c.name for c in self.checks if not c.passed]
        if self.verdict == "pass" and failed:
            raise ValueError(f"field 'verdict' is 'pass' but check(s) failed: {', '.join(failed)}")
        if self.verdict == "pass" and self.failing_step is not None:
            raise ValueError("field 'failing_step' is given but the verdict is 'pass'")
        if self.verdict == "fail" and not failed:
            raise ValueError("field 'verdict' is 'fail' but every check passed")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        own = super().subjects()
        return [*own, {"name": f"{self.run_party}/run/{self.run_id}", "digest": dict(own[0]["digest"])}]


__all__ = ["Check", "Verdict", "VerificationReport"]
