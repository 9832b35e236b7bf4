"""Statements about pre-release review: submission, findings, decision, and the release itself."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from redline.statements.base import Digest, Name, NonEmptyText, PartyName, Predicate, Timestamp, register

Severity = Literal["info", "concern", "critical"]
Decision = Literal["clear", "block"]


@register
class ReviewSubmission(Predicate):
    """A lab submits a model for pre-release review, opening the review window (``submission_id`` is the lab's
    own: ids are scoped by party, so findings and decisions name the ``submitter`` too)."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:review-submission:v1"
    KIND: ClassVar[str] = "review-submission"

    submission_id: Name
    model_name: Name
    model_digest: Digest
    run_id: Name | None = None

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), {"name": f"model/{self.model_name}", "digest": dict(self.model_digest)}]


@register
class ReviewFinding(Predicate):
    """A reviewer records a finding on a submission (``submitter``'s ``submission_id``), with its severity."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:review-finding:v2"
    KIND: ClassVar[str] = "review-finding"

    submitter: PartyName
    submission_id: Name
    finding: NonEmptyText
    severity: Severity


@register
class ReviewDecision(Predicate):
    """A regulator clears or blocks the release of a submitted model (``submitter``'s ``submission_id``), giving
    its reason."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:review-decision:v2"
    KIND: ClassVar[str] = "review-decision"

    submitter: PartyName
    submission_id: Name
    decision: Decision
    reason: NonEmptyText


@register
class Release(Predicate):
    """A lab declares it has released a model (checked against its review)."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:release:v1"
    KIND: ClassVar[str] = "release"

    model_name: Name
    model_digest: Digest
    released_at: Timestamp

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), {"name": f"model/{self.model_name}", "digest": dict(self.model_digest)}]


__all__ = ["Decision", "Release", "ReviewDecision", "ReviewFinding", "ReviewSubmission", "Severity"]
