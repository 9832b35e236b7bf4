"""METR-style time horizons: the task length (in human minutes) at which a model succeeds 50% (80%) of the time.

Method (Kwa et al., "Measuring AI Ability to Complete Long Tasks", METR 2025, and
METR's public analysis code, ``METR/eval-analysis-public``: ``compute_task_weights.py``,
``utils/logistic.py``, ``wrangle/logistic.py``, ``wrangle/bootstrap.py``,
``plot/bootstrap_ci.py``):

* **Weights.** Per model, each run weighs ``1 / (runs of its task × √(tasks in its
  family))``, counted over that model's runs, then normalised to sum to 1 per model
  (METR's ``invsqrt_task_weight``).
* **Fit.** Per model, a weighted logistic regression of success on
  ``log2(human minutes)`` with scikit-learn's ``LogisticRegression(C=10)`` (METR's
  ``regularization: 0.1``; L2 on the slope, intercept unpenalised). A fractional score
  ``y`` becomes two rows, a 0 weighted ``(1-y)·w`` and a 1 weighted ``y·w``.
* **Horizons.** ``p`` horizon = ``2 ** ((logit(p) - intercept) / slope)`` minutes:
  ``2 ** (-intercept / slope)`` for 50%, ``logit(0.8) = ln 4`` for 80%. A slope that is
  not negative draws a warning (the fit says success does not fall with length).
  A model that fails (or succeeds at) every task has no finite horizon; it is
  reported as below the shortest (above the longest) task, never a crash.
* **Intervals.** A hierarchical bootstrap over all models at once: resample task
  families, then tasks within each drawn family, then runs within each (task,
  model), with replacement; weights are those of the original rows (not
  renormalised); a draw where a model's successes are all 0 or all 1 is skipped for
  that model; each refit solves the same objective to machine precision by Newton's
  method (:func:`fit_logistic_exact`, about 5x faster than lbfgs); draw ``i`` uses
  ``numpy.random.default_rng(seed + i)`` (seed 42 by default, as METR). 1,000 draws;
  the 95% interval is the 2.5% and 97.5% quantiles.
* **Doubling time.** Across models with release dates, ordinary least squares of
  ``log2(p50 minutes)`` (clipped below at 1e-3 minutes) on the release date in days;
  the doubling time is ``1 / slope`` days. Its interval refits the line on each
  bootstrap draw's horizons (models with a non-finite or < 1e-3 minute horizon in a
  draw left out, at least two models needed) and takes the 2.5/97.5% quantiles of
  the positive doubling times, as METR does. ``sota_only`` keeps only models whose
  horizon is the best so far at their release date (METR's trend uses these).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from redline.errors import MalformedInput
from redline.indicators.evallogs import Run, RunSet

#: Indicator name; feeds the policy metric ``time_horizon_50`` (hours).
INDICATOR_NAME = "time-horizon-50"
METHOD = "metr-logistic-2025"
METHOD_VERSION = "1"
#: METR's ``regularization: 0.1`` → ``LogisticRegression(C=1/0.1)``.
DEFAULT_C = 10.0
DEFAULT_BOOTSTRAP = 1000
DEFAULT_SEED = 42
CONFIDENCE = 0.95
#: Horizons below this (minutes) are clipped in the trend fit and dropped from bootstrap trend draws (METR).
MIN_TREND_MINUTES = 1e-3


# --- results ------------------------------------------------------------------------


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
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.floating):
        return _json_number(float(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


# --- weights and the logistic fit -----------------------------------------------------


def invsqrt_task_weights(task_ids: Sequence[str], families: Sequence[str]) -> np.ndarray:
    """METR's ``invsqrt_task_weight`` for one model's runs: ``1/(runs in task · √tasks in family)``, summing to 1."""
    runs_in_task: dict[str, int] = {}
    for t in task_ids:
        runs_in_task[t] = runs_in_task.get(t, 0) + 1
    family_tasks: dict[str, set[str]] = {}
    for t, f in zip(task_ids, families):
        family_tasks.setdefault(f, set()).add(t)
    w = np.array([1.0 / (runs_in_task[t] * math.sqrt(len(family_tasks[f]))) for t, f in zip(task_ids, families)])
    return w / w.sum()


def _split_fractional(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frac = (y > 0) & (y < 1)
    if not frac.any():
        return x, y, w
    xf, yf, wf = x[frac], y[frac], w[frac]
    return (np.concatenate([x[~frac], xf, xf]),
            np.concatenate([y[~frac], np.zeros(len(yf)), np.ones(len(yf))]),
            np.concatenate([w[~frac], (1 - yf) * wf, yf * wf]))


def fit_logistic(log2_minutes: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = DEFAULT_C,
                 ) -> tuple[float, float, list[str]] | None:
    """``(slope, intercept, warnings)`` of METR's weighted logistic regression; ``None`` when y is constant."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x, yy, ww = _split_fractional(np.asarray(log2_minutes, float), np.asarray(y, float), np.asarray(w, float))
    keep = ww > 0
    x, yy, ww = x[keep], yy[keep], ww[keep]
    if len(np.unique(yy)) < 2:
        return None
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=c)
        model.fit(x.reshape(-1, 1), yy.astype(int), sample_weight=ww)
    if any(issubclass(c_.category, ConvergenceWarning) for c_ in caught):
        notes.append("the logistic regression did not fully converge")
    return float(model.coef_[0][0]), float(model.intercept_[0]), notes


def fit_logistic_exact(log2_minutes: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = DEFAULT_C,
                       ) -> tuple[float, float] | None:
    """The same fit as :func:`fit_logistic`, solved to machine precision by damped Newton steps.

    It minimises scikit-learn's objective for ``LogisticRegression(C=c)``,
    ``c * sum(w_i * logloss_i) + slope**2 / 2`` with the intercept unpenalised, which
    lbfgs (scikit-learn's default solver, tolerance 1e-4) approximates; the two agree
    to about 1e-3 in log2 of the horizon. About five times faster, so the bootstrap's
    thousands of refits use it. Falls back to scikit-learn if the Newton system is singular.
    """
    from scipy.special import expit

    x, yy, ww = _split_fractional(np.asarray(log2_minutes, float), np.asarray(y, float), np.asarray(w, float))
    keep = ww > 0
    x, yy, ww = x[keep], yy[keep], ww[keep]
    if len(np.unique(yy)) < 2:
        return None

    def objective(b: np.ndarray) -> float:
        z = b[0] * x + b[1]
        return float(c * np.sum(ww * (np.logaddexp(0.0, z) - yy * z)) + 0.5 * b[0] ** 2)

    b = np.zeros(2)
    f = objective(b)
    for _ in range(100):
        p = expit(b[0] * x + b[1])
        r = ww * (p - yy)
        g = np.array([c * np.dot(r, x) + b[0], c * np.sum(r)])
        s = ww * p * (1 - p)
        h = np.array([[c * np.dot(s, x * x) + 1.0, c * np.dot(s, x)], [c * np.dot(s, x), c * np.sum(s)]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        t = 1.0
        while True:
            nb = b - t * step
            nf = objective(nb)
            if nf <= f - 1e-4 * t * float(g @ step) or t < 1e-10:
                break
            t /= 2
        b, f = nb, nf
        if np.max(np.abs(t * step)) < 1e-10:
            return float(b[0]), float(b[1])
    fit = fit_logistic(log2_minutes, y, w, c)
    return None if fit is None else (fit[0], fit[1])


def horizon_minutes(slope: float, intercept: float, p: float) -> float:
    """The task length (minutes) at which the fitted success probability is ``p``: ``2**((logit p - b0)/b1)``."""
    if slope == 0:
        return math.inf
    x = (math.log(p / (1 - p)) - intercept) / slope
    if x > 1000:
        return math.inf
    if x < -1000:
        return 0.0
    return float(2.0 ** x)


# --- the analysis ---------------------------------------------------------------------


@dataclass
class _Data:
    models: list[str]
    model_idx: np.ndarray
    task_idx: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    family_of_task: np.ndarray
    n_tasks: int
    n_families: int


def _prepare(runs: Sequence[Run], models: list[str]) -> _Data:
    scored = [r for r in runs if r.score is not None and r.model in set(models)]
    tasks = sorted({r.task_id for r in scored})
    fams = sorted({r.task_family for r in scored})
    t_index = {t: i for i, t in enumerate(tasks)}
    f_index = {f: i for i, f in enumerate(fams)}
    m_index = {m: i for i, m in enumerate(models)}
    family_of_task = np.zeros(len(tasks), dtype=np.int64)
    for r in scored:
        family_of_task[t_index[r.task_id]] = f_index[r.task_family]
    model_idx = np.array([m_index[r.model] for r in scored], dtype=np.int64)
    w = np.zeros(len(scored))
    for m, name in enumerate(models):
        rows = np.flatnonzero(model_idx == m)
        if len(rows):
            w[rows] = invsqrt_task_weights([scored[i].task_id for i in rows], [scored[i].task_family for i in rows])
    return _Data(
        models=models, model_idx=model_idx,
        task_idx=np.array([t_index[r.task_id] for r in scored], dtype=np.int64),
        x=np.log2(np.array([r.human_minutes for r in scored], dtype=float)),
        y=np.array([r.score for r in scored], dtype=float), w=w,
        family_of_task=family_of_task, n_tasks=len(tasks), n_families=len(fams),
    )


class _Sampler:
    """Hierarchical resampling (families → tasks → runs within task and model), vectorised."""

    def __init__(self, d: _Data) -> None:
        # tasks grouped by family
        self.fam_tasks = np.argsort(d.family_of_task, kind="stable")
        self.fam_size = np.bincount(d.family_of_task, minlength=d.n_families)
        self.fam_start = np.concatenate([[0], np.cumsum(self.fam_size)[:-1]])
        # rows grouped by task, then model
        self.order = np.lexsort((d.model_idx, d.task_idx))
        self.task_len = np.bincount(d.task_idx, minlength=d.n_tasks)
        self.task_start = np.concatenate([[0], np.cumsum(self.task_len)[:-1]])
        key = d.task_idx[self.order] * (len(d.models) + 1) + d.model_idx[self.order]
        boundaries = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate([[0], boundaries])
        sizes = np.diff(np.concatenate([starts, [len(key)]]))
        self.grp_start = np.repeat(starts, sizes)
        self.grp_size = np.repeat(sizes, sizes)
        self.n_families = d.n_families

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        fams = rng.choice(self.n_families, size=self.n_families, replace=True)
        slots = np.repeat(fams, self.fam_size[fams])
        pick = (rng.random(len(slots)) * self.fam_size[slots]).astype(np.int64)
        tasks = self.fam_tasks[self.fam_start[slots] + pick]
        lens = self.task_len[tasks]
        total = int(lens.sum())
        offsets = np.repeat(self.task_start[tasks] - (np.cumsum(lens) - lens), lens)
        pos = offsets + np.arange(total)
        new = self.grp_start[pos] + (rng.random(total) * self.grp_size[pos]).astype(np.int64)
        return self.order[new]


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
            release_date=(release_dates or {}).get(name),
        )
        excluded = sum(r.errored and r.score is None for r in mr)
        if excluded:
            res.warnings.append(f"{excluded} errored run(s) left out of the fit")
        elif res.n_errored:
            res.warnings.append(f"{res.n_errored} errored run(s) counted as failures")
        if not scored:
            res.status = "no-scored-runs"
            res.warnings.append("no scored runs: every run errored")
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


def _bootstrap(d: _Data, n: int, seed: int, c: float, progress: Callable[[int, int], None] | None,
               ) -> tuple[np.ndarray, np.ndarray]:
    sampler = _Sampler(d)
    p50 = np.full((n, len(d.models)), np.nan)
    p80 = np.full((n, len(d.models)), np.nan)
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        idx = sampler.draw(rng)
        mi = d.model_idx[idx]
        for m in range(len(d.models)):
            rows = idx[mi == m]
            if len(rows) == 0:
                continue
            fit = fit_logistic_exact(d.x[rows], d.y[rows], d.w[rows], c)
            if fit is None:
                continue
            slope, intercept = fit
            p50[i, m] = horizon_minutes(slope, intercept, 0.5)
            p80[i, m] = horizon_minutes(slope, intercept, 0.8)
        if progress is not None:
            progress(i + 1, n)
    return p50, p80


# --- the trend across models ------------------------------------------------------------


def read_release_dates(path: Path | str) -> dict[str, date]:
    """A CSV ``model,date`` (header optional; dates ``YYYY-MM-DD``) → model → release date."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
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


# --- the signed indicator ---------------------------------------------------------------


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


# --- the plot ---------------------------------------------------------------------------


def plot(report: HorizonReport, runs: Sequence[Run], path: Path | str) -> None:
    """A PNG of success against task length (log scale) per model, with the fitted curves and 50% horizons."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    try:
        scored = [r for r in runs if r.score is not None]
        if not scored:
            raise MalformedInput("nothing to plot: no scored runs")
        lo = min(r.human_minutes for r in scored)
        hi = max(r.human_minutes for r in scored)
        grid = np.logspace(np.log10(lo / 2), np.log10(hi * 2), 200)
        colours = plt.get_cmap("tab10")
        for i, m in enumerate(report.models):
            colour = colours(i % 10)
            per_task: dict[str, list[float]] = {}
            minutes: dict[str, float] = {}
            for r in scored:
                if r.model == m.model:
                    per_task.setdefault(r.task_id, []).append(float(r.score))  # type: ignore[arg-type]
                    minutes[r.task_id] = r.human_minutes
            if not per_task:
                continue
            xs = np.array([minutes[t] for t in per_task])
            ys = np.array([np.mean(v) for v in per_task.values()])
            sizes = np.array([12 + 6 * len(v) for v in per_task.values()])
            label = f"{m.model}: p50 {m.horizon_text()}"
            ax.scatter(xs, ys, s=sizes, color=colour, alpha=0.45, edgecolors="none")
            if m.slope is not None and m.intercept is not None:
                z = m.intercept + m.slope * np.log2(grid)
                ax.plot(grid, 1 / (1 + np.exp(-z)), color=colour, lw=2, label=label)
                if m.finite and m.p50_minutes is not None and lo / 2 <= m.p50_minutes <= hi * 2:
                    ax.axvline(m.p50_minutes, color=colour, ls=":", lw=1)
            else:
                ax.plot([], [], color=colour, lw=2, label=label)
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("task length for a human (minutes, log scale)")
        ax.set_ylabel("success (per task: mean over runs)")
        ax.set_title("Success against human task length, with METR-style logistic fits")
        ax.grid(alpha=0.2)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        fig.savefig(str(path), format="png")
    finally:
        plt.close(fig)


__all__ = [
    "CONFIDENCE", "DEFAULT_BOOTSTRAP", "DEFAULT_C", "DEFAULT_SEED", "DoublingTime", "HorizonReport",
    "INDICATOR_NAME", "METHOD", "METHOD_VERSION", "ModelHorizon", "analyse", "doubling_time", "fit_logistic",
    "fit_logistic_exact", "horizon_minutes", "indicator_fields", "invsqrt_task_weights", "method_version", "plot",
    "read_release_dates",
]
