"""Statements about the pause: conditional commitments, acknowledgements, and the quorum resume."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from redline.statements.base import Model, Name, NonEmptyText, Predicate, Sha256Hex, Timestamp, register, unique

PauseScope = Literal["training", "releases", "deployment-scaling"]
#: Largest count quorum accepted.
MAX_QUORUM_COUNT = 10_000


class CountQuorum(Model):
    """The commitment binds once at least ``threshold`` parties have made it."""

    kind: Literal["count"]
    threshold: Annotated[int, Field(ge=1, le=MAX_QUORUM_COUNT)]


class ComputeShareQuorum(Model):
    """The commitment binds once the committed parties hold at least ``threshold`` of the declared compute."""

    kind: Literal["compute-share"]
    threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


Quorum = Annotated[CountQuorum | ComputeShareQuorum, Field(discriminator="kind")]


@register
class Commitment(Predicate):
    """A lab commits to pause (what, under which policy) once a quorum of others has committed too."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:pause-commitment:v1"
    KIND: ClassVar[str] = "commitment"

    policy_digest: Sha256Hex
    pauses: Annotated[list[PauseScope], Field(min_length=1, max_length=3)]
    quorum: Quorum
    expires_at: Timestamp

    @model_validator(mode="after")
    def _consistent(self) -> Commitment:
        unique(self.pauses, lambda p: p, "pause scope")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), {"name": "policy", "digest": {"sha256": self.policy_digest}}]


@register
class PauseAcknowledgement(Predicate):
    """A party acknowledges a pause the engine has triggered (pause_id is the engine's id for it)."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:pause-acknowledgement:v1"
    KIND: ClassVar[str] = "pause-ack"

    pause_id: Name


@register
class ResumeProposal(Predicate):
    """A party proposes ending the current pause, giving its reason."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:resume-proposal:v1"
    KIND: ClassVar[str] = "resume-proposal"

    proposal_id: Name
    reason: NonEmptyText


@register
class ResumeApproval(Predicate):
    """A party approves a resume proposal; a quorum of approvals ends the pause."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:resume-approval:v1"
    KIND: ClassVar[str] = "resume-approval"

    proposal_id: Name


__all__ = ["Commitment", "ComputeShareQuorum", "CountQuorum", "PauseAcknowledgement", "PauseScope", "Quorum",
           "ResumeApproval", "ResumeProposal"]
