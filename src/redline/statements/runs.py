"""Statements about training runs: declared at start, committed to as they progress, totalled at the end."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from redline.statements.base import (
    BoundedList,
    Count,
    Digest,
    Flop,
    Model,
    Name,
    Predicate,
    Sha256Hex,
    Timestamp,
    register,
    unique,
)
from redline.statements.compute import ChipCount

FlopMethod = Literal["counted", "6ND", "hardware"]


class TranscriptCommitments(Model):
    """Merkle roots of a run's training transcript: its steps, its data order and its checkpoints."""

    steps_root: Sha256Hex
    data_root: Sha256Hex
    checkpoints_root: Sha256Hex
    step_count: Count


class FlopEstimates(Model):
    """A run's compute by each method that was applied: counted operations, 6·N·D, chip-hours × peak."""

    counted: Flop | None = None
    six_nd: Flop | None = None
    hardware: Flop | None = None


class _RunPredicate(Predicate):
    run_id: Name

    def run_subject_name(self) -> str:
        """The subject name every statement about this run carries: ``party/run/run_id``."""
        return f"{self.party}/run/{self.run_id}"

    def subjects(self) -> list[dict[str, Any]]:
        own = super().subjects()
        return [*own, {"name": self.run_subject_name(), "digest": dict(own[0]["digest"])}]

    @staticmethod
    def _commitment_subjects(run: str, c: TranscriptCommitments) -> list[dict[str, Any]]:
        return [{"name": f"{run}/steps", "digest": {"sha256": c.steps_root}},
                {"name": f"{run}/data", "digest": {"sha256": c.data_root}},
                {"name": f"{run}/checkpoints", "digest": {"sha256": c.checkpoints_root}}]


@register
class RunStart(_RunPredicate):
    """A lab declares a training run before it starts: what it trains, on what, and how much compute it plans."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-start:v1"
    KIND: ClassVar[str] = "run-start"

    model_name: Name
    base_model: Name | None = None
    base_model_flop: Flop | None = None
    declared_flop: Flop
    flop_method: FlopMethod
    hardware: BoundedList[ChipCount]
    started_at: Timestamp

    @model_validator(mode="after")
    def _consistent(self) -> RunStart:
        if self.base_model_flop is not None and self.base_model is None:
            raise ValueError("field 'base_model_flop' is given without 'base_model'")
        if self.flop_method == "hardware" and not self.hardware:
            raise ValueError("field 'hardware' must list the chips when flop_method is 'hardware'")
        unique(self.hardware, lambda c: c.chip_model, "chip_model in hardware")
        return self


@register
class RunProgress(_RunPredicate):
    """A lab commits to its run so far: the step reached, the compute spent, and the transcript's Merkle roots."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-progress:v1"
    KIND: ClassVar[str] = "run-progress"

    step: Count
    flop_so_far: Flop
    commitments: TranscriptCommitments
    as_of: Timestamp

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), *self._commitment_subjects(self.run_subject_name(), self.commitments)]


@register
class RunFinish(_RunPredicate):
    """A lab closes a run: its total compute by each method, the final model's digest and the transcript roots."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-finish:v1"
    KIND: ClassVar[str] = "run-finish"

    total_flop: Flop
    flop_estimates: FlopEstimates
    estimates_disagree: bool
    final_model_digest: Digest
    commitments: TranscriptCommitments
    finished_at: Timestamp

    def subjects(self) -> list[dict[str, Any]]:
        run = self.run_subject_name()
        return [*super().subjects(), *self._commitment_subjects(run, self.commitments),
                {"name": f"{run}/model", "digest": dict(self.final_model_digest)}]


__all__ = ["FlopEstimates", "FlopMethod", "RunFinish", "RunProgress", "RunStart", "TranscriptCommitments"]
