"""The metrics a danger line may be drawn on: name, unit, the scopes it applies to, and where it comes from.

A policy naming a metric that is not here, or using it with another unit or
scope, is refused: the engine must know how to compute every line it enforces.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A quantity the engine derives from statements on the log."""

    name: str
    unit: str
    scopes: tuple[str, ...]
    description: str


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("training_compute", "FLOP", ("run", "model-lineage"),
           "Compute of a training run (scope run), or cumulative over a model's lineage, base models "
           "included (scope model-lineage), from run declarations: the largest of planned, progress "
           "and final figures."),
    Metric("modification_compute_fraction", "ratio", ("model-lineage",),
           "A modification's own compute divided by its base model's cumulative compute "
           "(the EU one-third rule)."),
    Metric("cluster_h100e", "H100e", ("cluster",),
           "H100-equivalents of one declared cluster (dense BF16 peak / 989 TFLOP/s per chip)."),
    Metric("party_h100e", "H100e", ("party",),
           "H100-equivalents of all clusters a party declares."),
    Metric("time_horizon_50", "hours", ("model-lineage",),
           "METR-style 50% time horizon of a model (indicator 'time-horizon-50')."),
    Metric("ai_code_share", "fraction", ("party",),
           "Share of a lab's merged code authored by AI (indicator 'ai-code-share')."),
    Metric("research_task_completion", "fraction", ("model-lineage",),
           "Completion rate on autonomous research tasks (indicator or evaluation metric "
           "'research-task-completion')."),
)}

#: Indicator and evaluation-metric names that feed each capability metric.
INDICATOR_METRICS = {
    "time-horizon-50": "time_horizon_50",
    "ai-code-share": "ai_code_share",
    "research-task-completion": "research_task_completion",
}

SCOPES = ("run", "model-lineage", "party", "cluster")
