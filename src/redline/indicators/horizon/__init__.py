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

from redline.indicators.horizon.analysis import analyse
from redline.indicators.horizon.bootstrap import _Data, _prepare, _Sampler
from redline.indicators.horizon.constants import (
    CONFIDENCE,
    DEFAULT_BOOTSTRAP,
    DEFAULT_C,
    DEFAULT_SEED,
    INDICATOR_NAME,
    METHOD,
    METHOD_VERSION,
)
from redline.indicators.horizon.fit import fit_logistic, fit_logistic_exact, horizon_minutes, invsqrt_task_weights
from redline.indicators.horizon.plotting import plot
from redline.indicators.horizon.report import (
    DoublingTime,
    HorizonReport,
    ModelHorizon,
    indicator_fields,
    method_version,
)
from redline.indicators.horizon.trend import _sota, doubling_time, read_release_dates

__all__ = [
    "CONFIDENCE",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_C",
    "DEFAULT_SEED",
    "DoublingTime",
    "HorizonReport",
    "INDICATOR_NAME",
    "METHOD",
    "METHOD_VERSION",
    "ModelHorizon",
    "_Data",
    "_Sampler",
    "_prepare",
    "_sota",
    "analyse",
    "doubling_time",
    "fit_logistic",
    "fit_logistic_exact",
    "horizon_minutes",
    "indicator_fields",
    "invsqrt_task_weights",
    "method_version",
    "plot",
    "read_release_dates",
]
