"""The trend across models: release dates and the doubling time of the 50% horizon."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import numpy as np

from redline.errors import MalformedInput
from redline.indicators.horizon.constants import CONFIDENCE, MIN_TREND_MINUTES
from redline.indicators.horizon.report import DoublingTime, HorizonReport


def read_release_dates(path: Path | str) -> dict[str, date]:
    """A CSV ``model,date`` (header optional; dates ``YYYY-MM-DD``) → model → release date."""
    from redline.indicators.evallogs import MAX_CSV_BYTES
    from redline.indicators.files import read_regular

    path = Path(path)
    try:
        text = read_regular(path, MAX_CSV_BYTES, str(path)).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedInput(f"{path}: not a UTF-8 CSV file") from None
    out: dict[str, date] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        row = [c.strip() for c in row]
        if not row or all(not c for c in row):
            continue
        if n == 1 and [c.lower() for c in row[:2]] == ["model", "date"]:
            continue
        if len(row) < 2 or not row[0]:
            raise MalformedInput(f"{path}, line {n}: expected 'model,date'")
        try:
            when = date.fromisoformat(row[1][:10])
        except ValueError:
            raise MalformedInput(f"{path}, line {n}: {row[1]!r} is not a date (YYYY-MM-DD)") from None
        if row[0] in out and out[row[0]] != when:
            raise MalformedInput(f"{path}, line {n}: model {row[0]!r} has two release dates")
        out[row[0]] = when
    if not out:
        raise MalformedInput(f"{path}: no release dates")
    return out


def _days(d: date) -> float:
    return float(d.toordinal())


def _ols(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    resid = y - (intercept + slope * x)
    sst = float(np.sum((y - ym) ** 2))
    r2 = 1 - float(np.sum(resid ** 2)) / sst if sst > 0 else 1.0
    return slope, intercept, r2


def _sota(models: list[tuple[str, date, float]]) -> list[str]:
    """METR's frontier: a model is SOTA if its horizon is >= the best of all models released by its date."""
    out: list[str] = []
    best = -math.inf
    for when in sorted({w for _, w, _ in models}):
        same = [(n, h) for n, w, h in models if w == when]
        best = max(best, max(h for _, h in same))
        out.extend(n for n, h in same if h >= best)
    return out


def doubling_time(report: HorizonReport, release_dates: Mapping[str, date], bootstrap_models: Sequence[str],
                  *, sota_only: bool = False) -> DoublingTime:
    """The 50% horizon's doubling time across the report's models that have release dates."""
    notes: list[str] = []
    usable: list[tuple[str, date, float]] = []
    for m in report.models:
        when = release_dates.get(m.model)
        if when is None:
            notes.append(f"{m.model}: no release date; left out of the trend")
            continue
        if not m.finite or m.p50_minutes is None or m.p50_minutes <= 0:
            notes.append(f"{m.model}: no finite 50% horizon ({m.horizon_text()}); left out of the trend")
            continue
        usable.append((m.model, when, m.p50_minutes))
    if sota_only and usable:
        keep = set(_sota(usable))
        for n, _, _ in usable:
            if n not in keep:
                notes.append(f"{n}: not state of the art at its release date; left out (sota_only)")
        usable = [u for u in usable if u[0] in keep]
    names = [n for n, _, _ in usable]
    if len(usable) < 2 or len({w for _, w, _ in usable}) < 2:
        notes.append("a doubling time needs at least two models with finite horizons and different release dates")
        return DoublingTime(models=names, days=None, low_days=None, high_days=None, median_days=None,
                            n_bootstrap_used=0, r_squared=None, sota_only=sota_only, warnings=notes)
    x = np.array([_days(w) for _, w, _ in usable])
    y = np.log2(np.clip(np.array([h for _, _, h in usable]), MIN_TREND_MINUTES, None))
    slope, _, r2 = _ols(x, y)
    days = 1.0 / slope if slope != 0 else math.inf
    if slope <= 0:
        notes.append("the 50% horizon does not grow with release date across these models (slope <= 0)")
    low = high = median = None
    used = 0
    if report.p50_draws is not None:
        cols = [list(bootstrap_models).index(n) for n in names]
        sub = report.p50_draws[:, cols]
        times: list[float] = []
        for row in sub:
            ok = np.isfinite(row) & (row >= MIN_TREND_MINUTES)
            if ok.sum() < 2 or len(set(x[ok])) < 2:
                continue
            s, _, _ = _ols(x[ok], np.log2(row[ok]))
            if s > 0:
                times.append(1.0 / s)
        used = len(times)
        if times:
            lo_q, hi_q = (1 - CONFIDENCE) / 2 * 100, (1 + CONFIDENCE) / 2 * 100
            low, high = (float(v) for v in np.percentile(times, [lo_q, hi_q]))
            median = float(np.median(times))
        else:
            notes.append("no bootstrap draw gave a positive doubling time: no interval")
    return DoublingTime(models=names, days=float(days) if math.isfinite(days) else None, low_days=low,
                        high_days=high, median_days=median, n_bootstrap_used=used, r_squared=r2,
                        sota_only=sota_only, warnings=notes)
