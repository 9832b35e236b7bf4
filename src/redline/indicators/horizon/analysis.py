"""The analysis: fit every model, bootstrap the intervals, add the trend."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import numpy as np

from redline.errors import MalformedInput
from redline.indicators.evallogs import Run, RunSet
from redline.indicators.horizon.bootstrap import _bootstrap, _prepare
from redline.indicators.horizon.constants import CONFIDENCE, DEFAULT_BOOTSTRAP, DEFAULT_C, DEFAULT_SEED
from redline.indicators.horizon.fit import fit_logistic, horizon_minutes
from redline.indicators.horizon.report import HorizonReport, ModelHorizon, _fmt_minutes
from redline.indicators.horizon.trend import doubling_time


def _window(runs: Iterable[Run]) -> tuple[datetime | None, datetime | None]:
    starts = [t for r in runs for t in (r.started_at, r.completed_at) if t is not None]
    if not starts:
        return None, None
    return min(starts), max(starts)


def analyse(
    runset: RunSet | Sequence[Run],
    *,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    c: float = DEFAULT_C,
    release_dates: Mapping[str, date] | None = None,
    sota_only: bool = False,
    models: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> HorizonReport:
    """Fit every model's 50% and 80% horizons with bootstrap intervals, and the doubling time if dates are given.

    ``n_bootstrap`` may be 0 (no intervals). ``models`` restricts the analysis to those
    models (an unknown name is an error). ``progress(done, total)`` is called during the bootstrap.
    """
    if isinstance(runset, RunSet):
        runs, files, digest, notes = runset.runs, [asdict(f) for f in runset.files], runset.evidence_digest(), \
            list(runset.notes)
    else:
        runs, files, digest, notes = list(runset), [], "", []
    if not runs:
        raise MalformedInput("no runs to analyse")
    if n_bootstrap < 0:
        raise MalformedInput("the number of bootstrap draws must be >= 0")
    if not (c > 0 and math.isfinite(c)):
        raise MalformedInput("the regularisation C must be a positive number")
    all_models = sorted({r.model for r in runs})
    if models:
        unknown = [m for m in models if m not in all_models]
        if unknown:
            raise MalformedInput(f"no runs for model(s) {', '.join(map(repr, unknown))} "
                                 f"(models in the logs: {', '.join(all_models)})")
        all_models = [m for m in all_models if m in set(models)]
    by_model: dict[str, list[Run]] = {m: [] for m in all_models}
    for r in runs:
        if r.model in by_model:
            by_model[r.model].append(r)

    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    # Thousands of tiny fits: BLAS threads only add overhead (about 3x slower on small inputs).
    with threadpool_limits(limits=1):
        return _analyse(runs, files, digest, notes, all_models, by_model, n_bootstrap=n_bootstrap, seed=seed, c=c,
                        release_dates=release_dates, sota_only=sota_only, progress=progress)


def _analyse(runs: Sequence[Run], files: list[dict[str, Any]], digest: str, notes: list[str], all_models: list[str],
             by_model: dict[str, list[Run]], *, n_bootstrap: int, seed: int, c: float,
             release_dates: Mapping[str, date] | None, sota_only: bool,
             progress: Callable[[int, int], None] | None) -> HorizonReport:
    fitted_models = [m for m in all_models if any(r.score is not None for r in by_model[m])]
    d = _prepare(runs, fitted_models)

    results: list[ModelHorizon] = []
    for name in all_models:
        mr = by_model[name]
        scored = [r for r in mr if r.score is not None]
        ws, we = _window(mr)
        res = ModelHorizon(
            model=name, status="ok", n_runs=len(scored), n_tasks=len({r.task_id for r in scored}),
            n_families=len({r.task_family for r in scored}), n_errored=sum(r.errored for r in mr),
            n_limit_hit=sum(r.limit is not None for r in mr),
            completion_rate=(sum(r.score for r in scored) / len(scored)) if scored else None,  # type: ignore[misc]
            weighted_score=None,
            shortest_minutes=min((r.human_minutes for r in scored), default=None),
            longest_minutes=max((r.human_minutes for r in scored), default=None),
            window_start=ws, window_end=we,
            release_date=(release_dates or {}).get(name), n_null_score=sum(r.null_score for r in mr),
        )
        if res.n_null_score:
            res.warnings.append(f"{res.n_null_score} run(s) with a null score (no score recorded) left out of the fit")
        excluded = sum(r.errored and r.score is None for r in mr)
        if excluded:
            res.warnings.append(f"{excluded} errored run(s) left out of the fit")
        elif res.n_errored:
            res.warnings.append(f"{res.n_errored} errored run(s) counted as failures")
        if not scored:
            res.status = "no-scored-runs"
            res.warnings.append("no scored runs: every run errored or has a null score")
            results.append(res)
            continue
        m = fitted_models.index(name)
        rows = d.model_idx == m
        res.weighted_score = float(np.sum(d.y[rows] * d.w[rows]) / np.sum(d.w[rows]))
        fit = fit_logistic(d.x[rows], d.y[rows], d.w[rows], c)
        if fit is None:
            if np.all(d.y[rows] <= 0):
                res.status = "all-failed"
                res.warnings.append(f"failed every task: no finite horizon; it is below the shortest task "
                                    f"({_fmt_minutes(res.shortest_minutes)})")
            else:
                res.status = "all-succeeded"
                res.warnings.append(f"succeeded at every task: no finite horizon; it is beyond the longest task "
                                    f"({_fmt_minutes(res.longest_minutes)})")
            results.append(res)
            continue
        slope, intercept, fit_notes = fit
        res.warnings.extend(fit_notes)
        res.slope, res.intercept = slope, intercept
        if slope >= 0:
            res.warnings.append(f"slope {slope:.3g} is not negative: success does not fall with task length, "
                                f"so the horizon is not meaningful")
        res.p50_minutes = horizon_minutes(slope, intercept, 0.5)
        res.p80_minutes = horizon_minutes(slope, intercept, 0.8)
        if not math.isfinite(res.p50_minutes):
            res.status = "no-finite-horizon"
            res.warnings.append("the fitted 50% horizon is not finite")
        results.append(res)

    draws = _bootstrap(d, n_bootstrap, seed, c, progress) if n_bootstrap and len(d.y) else None
    lo_q, hi_q = (1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2
    if draws is not None:
        p50s, p80s = draws
        for res in results:
            if res.model not in fitted_models or res.status != "ok":
                continue
            m = fitted_models.index(res.model)
            col50, col80 = p50s[:, m], p80s[:, m]
            used = int(np.sum(~np.isnan(col50)))
            res.n_bootstrap_used = used
            if used == 0:
                res.warnings.append("no bootstrap draw could be fitted: no interval")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                res.p50_low, res.p50_high = (float(v) for v in np.nanquantile(col50, [lo_q, hi_q]))
                res.p80_low, res.p80_high = (float(v) for v in np.nanquantile(col80, [lo_q, hi_q]))
            if used < n_bootstrap:
                res.warnings.append(f"{n_bootstrap - used} of {n_bootstrap} bootstrap draws had all-0 or all-1 "
                                    f"success for this model and were skipped")
    report = HorizonReport(models=results, doubling=None, files=files, evidence_digest=digest,
                           n_bootstrap=n_bootstrap, seed=seed, regularization_c=c, notes=notes,
                           p50_draws=None if draws is None else draws[0])
    if release_dates is not None:
        report.doubling = doubling_time(report, release_dates, fitted_models, sota_only=sota_only)
    return report
