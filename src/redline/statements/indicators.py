"""Statements about indicators of recursive self-improvement (AI code share, time horizons, ...)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import model_validator

from redline.statements.base import Digest, FiniteFloat, Label, Name, Predicate, Timestamp, register


@register
class Indicator(Predicate):
    """A measured indicator (e.g. ai-code-share, time-horizon-50) of a repository or model over a time window."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:indicator:v1"
    KIND: ClassVar[str] = "indicator"

    name: Name
    subject: Label
    value: FiniteFloat
    unit: Label
    interval_low: FiniteFloat | None = None
    interval_high: FiniteFloat | None = None
    window_start: Timestamp
    window_end: Timestamp
    method: Label
    method_version: Label
    rule_version: Label | None = None
    evidence_digest: Digest

    @model_validator(mode="after")
    def _consistent(self) -> Indicator:
        if self.interval_low is not None and not self.interval_low <= self.value:
            raise ValueError(f"field 'interval_low' ({self.interval_low!r}) must be <= value ({self.value!r})")
        if self.interval_high is not None and not self.value <= self.interval_high:
            raise ValueError(f"field 'interval_high' ({self.interval_high!r}) must be >= value ({self.value!r})")
        if not self.window_start <= self.window_end:
            raise ValueError("field 'window_start' must not be after 'window_end'")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(),
                {"name": f"{self.statement_name()}/evidence", "digest": dict(self.evidence_digest)}]


__all__ = ["Indicator"]
