"""Statements about evaluations: one measured result of one model on one task."""

from __future__ import annotations

from typing import Any, ClassVar

from redline.statements.base import Digest, FiniteFloat, Label, Name, Predicate, Timestamp, register


@register
class EvaluationResult(Predicate):
    """An evaluator reports a model's score on one task of a suite, with the digest of the evaluation log behind it."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:evaluation-result:v1"
    KIND: ClassVar[str] = "evaluation"

    model_name: Name
    model_digest: Digest
    suite: Label
    task: Label
    metric: Label
    value: FiniteFloat
    evaluator: Label
    log_digest: Digest
    evaluated_at: Timestamp

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(),
                {"name": f"model/{self.model_name}", "digest": dict(self.model_digest)},
                {"name": f"{self.statement_name()}/log", "digest": dict(self.log_digest)}]


__all__ = ["EvaluationResult"]
