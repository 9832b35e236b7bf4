"""The report: per-model horizons, the doubling time, the signed indicator's fields."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np

from redline.errors import MalformedInput
from redline.indicators.horizon.constants import CONFIDENCE, DEFAULT_C, INDICATOR_NAME, METHOD, METHOD_VERSION
from redline.times import format_utc


@dataclass
class ModelHorizon:
    """The fitted horizons of one model, with the raw counts beside them."""

    model: str
    #: ``ok``; ``all-failed`` / ``all-succeeded`` (no finite horizon); ``no-scored-runs``; ``no-finite-horizon``.
    status: str
    n_runs: int
    n_tasks: int
    n_families: int
    n_errored: int
    n_limit_hit: int
    completion_rate: float | None
    weighted_score: float | None
    shortest_minutes: float | None
    longest_minutes: float | None
    slope: float | None = None
    intercept: float | None = None
    p50_minutes: float | None = None
    p50_low: float | None = None
    p50_high: float | None = None
    p80_minutes: float | None = None
    p80_low: float | None = None
    p80_high: float | None = None
    n_bootstrap_used: int = 0
    #: Runs whose score is null (no score recorded): left out of the fit, reported apart from errored runs.
    n_null_score: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None
    release_date: date | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def finite(self) -> bool:
        return self.p50_minutes is not None and math.isfinite(self.p50_minutes)

    def horizon_text(self, which: str = "p50") -> str:
        """The horizon as a human reads it: ``42.0 min``, ``< 1 min (shortest task)``, ..."""
        if self.status == "all-failed":
            return f"< {_fmt_minutes(self.shortest_minutes)} (shortest task)"
        if self.status == "all-succeeded":
            return f"> {_fmt_minutes(self.longest_minutes)} (longest task)"
        if self.status == "no-scored-runs":
            return "n/a (no scored runs)"
        value = getattr(self, f"{which}_minutes")
        if value is None or not math.isfinite(value):
            return "not finite"
        return _fmt_minutes(value)

    def interval_text(self, which: str = "p50") -> str:
        lo, hi = getattr(self, f"{which}_low"), getattr(self, f"{which}_high")
        if lo is None or hi is None:
            return ""
        return f"[{_fmt_minutes(lo)}, {_fmt_minutes(hi)}]"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k in ("window_start", "window_end"):
            out[k] = _iso(out[k])
        out["release_date"] = self.release_date.isoformat() if self.release_date else None
        out["horizon_text"] = self.horizon_text("p50")
        out["p80_text"] = self.horizon_text("p80")
        out["p50_hours"] = self.p50_minutes / 60 if self.finite else None
        return {k: _json_number(v) for k, v in out.items()}


@dataclass
class DoublingTime:
    """The doubling time of the 50% horizon across models with release dates."""

    models: list[str]
    days: float | None
    low_days: float | None
    high_days: float | None
    median_days: float | None
    n_bootstrap_used: int
    r_squared: float | None
    sota_only: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def months(self) -> float | None:
        return None if self.days is None else self.days / (365.25 / 12)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["months"] = self.months
        out["low_months"] = None if self.low_days is None else self.low_days / (365.25 / 12)
        out["high_months"] = None if self.high_days is None else self.high_days / (365.25 / 12)
        return {k: _json_number(v) for k, v in out.items()}


@dataclass
class HorizonReport:
    """Everything ``redline indicators horizon`` reports: per-model horizons, the trend, the evidence."""

    models: list[ModelHorizon]
    doubling: DoublingTime | None
    files: list[dict[str, Any]]
    evidence_digest: str
    n_bootstrap: int
    seed: int
    regularization_c: float
    notes: list[str] = field(default_factory=list)
    #: The bootstrap draws of the 50% horizon (draw × model, minutes; NaN where skipped). Not in JSON.
    p50_draws: np.ndarray | None = None

    def model(self, name: str) -> ModelHorizon:
        for m in self.models:
            if m.model == name:
                return m
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "indicator": INDICATOR_NAME,
            "method": METHOD,
            "method_version": method_version(self.n_bootstrap, self.seed, self.regularization_c),
            "weighting": "invsqrt_task",
            "regularization_C": self.regularization_c,
            "bootstrap": {"draws": self.n_bootstrap, "seed": self.seed, "levels": ["task_family", "task_id", "run_id"],
                          "confidence": CONFIDENCE},
            "inputs": self.files,
            "evidence_digest": {"sha256": self.evidence_digest},
            "models": [m.to_json() for m in self.models],
            "doubling_time": self.doubling.to_json() if self.doubling else None,
            "notes": list(self.notes),
        }


def method_version(n_bootstrap: int, seed: int, c: float = DEFAULT_C) -> str:
    """The method version label: the version plus the settings that change the numbers."""
    return f"{METHOD_VERSION};C={c:g};weights=invsqrt-task;bootstrap=family-task-run/{n_bootstrap}/seed={seed}"


def _fmt_minutes(minutes: float | None) -> str:
    if minutes is None or not math.isfinite(minutes):
        return "n/a"
    if minutes < 1:
        return f"{minutes * 60:.3g} s"
    if minutes < 120:
        return f"{minutes:.3g} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.3g} h"
    return f"{minutes / 1440:.3g} d"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else format_utc(value)


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.floating):
        return _json_number(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def indicator_fields(report: HorizonReport, model: str, *, window_start: datetime | None = None,
                     window_end: datetime | None = None) -> dict[str, Any]:
    """Keyword arguments for :func:`redline.indicators.signing.indicator_envelope` / ``submit_or_write``
    (all but the key and ``seq``): one model's 50% horizon as an ``Indicator`` in hours.

    The interval is the bootstrap 95% interval (``None`` without a bootstrap), widened
    to contain the point estimate if a skewed bootstrap left it outside (the predicate
    requires low <= value <= high). The window is the time span of the model's runs in
    the logs unless given. The evidence digest is SHA-256 over the sorted SHA-256
    digests of the input files. Raises ``MalformedInput`` when the model has no finite
    horizon or no time window is known.
    """
    try:
        m = report.model(model)
    except KeyError:
        raise MalformedInput(f"no model {model!r} in the report "
                             f"(models: {', '.join(x.model for x in report.models)})") from None
    if not m.finite or m.p50_minutes is None:
        raise MalformedInput(f"model {model!r} has no finite 50% horizon ({m.horizon_text()}); nothing to sign")
    start = window_start or m.window_start
    end = window_end or m.window_end
    if start is None or end is None:
        raise MalformedInput(f"the logs of model {model!r} carry no run times; give the window explicitly "
                             f"(--window-start and --window-end)")
    if start.tzinfo is None or end.tzinfo is None:
        raise MalformedInput("window times must carry a time zone")
    if not report.evidence_digest:
        raise MalformedInput("no evidence digest: the report was not made from log files")
    value = m.p50_minutes / 60
    interval = None
    if m.p50_low is not None and m.p50_high is not None and math.isfinite(m.p50_high):
        interval = (min(m.p50_low / 60, value), max(m.p50_high / 60, value))
    return {
        "name": INDICATOR_NAME,
        "subject": model,
        "value": value,
        "unit": "hours",
        "interval": interval,
        "window": (start, end),
        "method": METHOD,
        "method_version": method_version(report.n_bootstrap, report.seed, report.regularization_c),
        "rule_version": None,
        "evidence_digest": report.evidence_digest,
    }
