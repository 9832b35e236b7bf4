"""The EU AI Act's compute counting rules, as arithmetic (Commission GPAI guidelines, July 2025).

- **What counts.** All compute that contributed to the model's capabilities:
  pre-training, generating synthetic data that is not public, samples later
  discarded, the training of weights merged into or used to initialise the model,
  and post-training (fine-tuning, RL). Not counted: evaluations and exploratory
  research that did not feed the model. Every operation counts the same whatever
  its precision. ``count_activities`` applies this to a breakdown by activity.
- **Cumulative over a lineage.** A model's compute includes its base models'
  (a fine-tune adds its own compute to its base's cumulative compute; a merge or
  an initialisation from several models adds each). ``cumulative_compute``.
- **The one-third rule.** A downstream modifier becomes the provider of a new model
  when its modification uses more than one third of the original model's compute.
  ``modification_fraction`` and ``is_substantial_modification``.
- **Estimates within ±30%.** An estimate of training compute must be within 30% of
  the true figure. redline applies this to its three estimates of one run (counted
  operations, 6·N·D, hardware): ``cross_check`` compares every pair and flags a
  disagreement when the larger of a pair exceeds the smaller by more than 30%
  (ratio > 1.3), which is what ``RunFinish.estimates_disagree`` records.

Pure: no I/O, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from redline.errors import MalformedInput

#: The tolerance on an estimate of training compute (±30%).
TOLERANCE = 0.30
#: The one-third modification rule.
MODIFICATION_FRACTION = 1 / 3

#: Activities whose compute counts towards a model's training compute.
COUNTED_ACTIVITIES = ("pre-training", "synthetic-data", "discarded-samples", "merged-or-initialising-weights",
                      "post-training", "fine-tuning", "reinforcement-learning")
#: Activities whose compute does not.
EXCLUDED_ACTIVITIES = ("evaluation", "exploratory-research")

ESTIMATE_NAMES = ("counted", "six_nd", "hardware")
#: Relative slack so that a boundary value written in decimal (0.7e25 against 1e25) is within, as on paper.
_EPS = 1e-12


def _flop(name: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedInput(f"{name} must be a number of FLOP, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise MalformedInput(f"{name} must be finite and >= 0, got {value!r}")
    return v


# --- cross-checking estimates --------------------------------------------------------------


@dataclass(frozen=True)
class CrossCheck:
    """Three estimates of one run's compute compared pairwise.

    ``ratios[(a, b)]`` is ``a / b`` for each pair of given estimates (in the order
    counted, six_nd, hardware); ``disagreeing`` lists the pairs whose larger value
    exceeds the smaller by more than ``tolerance``; ``disagree`` is whether any does.
    With fewer than two estimates nothing can be compared and ``disagree`` is False.
    """

    estimates: Mapping[str, float | None]
    ratios: Mapping[tuple[str, str], float]
    disagreeing: tuple[tuple[str, str], ...]
    tolerance: float = TOLERANCE

    @property
    def disagree(self) -> bool:
        return bool(self.disagreeing)

    @property
    def compared(self) -> int:
        """How many estimates were given."""
        return sum(v is not None for v in self.estimates.values())

    def to_json(self) -> dict[str, Any]:
        return {"estimates": dict(self.estimates), "tolerance": self.tolerance,
                "ratios": {f"{a}/{b}": r for (a, b), r in self.ratios.items()},
                "disagreeing": [f"{a}/{b}" for a, b in self.disagreeing], "disagree": self.disagree}


def pair_disagrees(a: float, b: float, tolerance: float = TOLERANCE) -> bool:
    """Whether the larger of ``a`` and ``b`` exceeds the smaller by more than ``tolerance`` (0.3 = 30%)."""
    lo, hi = sorted((a, b))
    if hi == 0:
        return False
    return lo == 0 or hi > lo * (1 + tolerance) * (1 + _EPS)


def cross_check(counted: float | None = None, six_nd: float | None = None, hardware: float | None = None,
                *, tolerance: float = TOLERANCE) -> CrossCheck:
    """Compare the estimates that are given; see ``CrossCheck``."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 10:
        raise MalformedInput(f"tolerance must be a number in [0, 10), got {tolerance!r}")
    est = {"counted": _flop("counted", counted, allow_none=True), "six_nd": _flop("six_nd", six_nd, allow_none=True),
           "hardware": _flop("hardware", hardware, allow_none=True)}
    given = [(k, v) for k, v in est.items() if v is not None]
    ratios: dict[tuple[str, str], float] = {}
    bad: list[tuple[str, str]] = []
    for i, (ka, va) in enumerate(given):
        for kb, vb in given[i + 1:]:
            ratios[(ka, kb)] = va / vb if vb else math.inf if va else 1.0
            if pair_disagrees(va, vb, tolerance):
                bad.append((ka, kb))
    return CrossCheck(MappingProxyType(est), MappingProxyType(ratios), tuple(bad), float(tolerance))


def within_tolerance(estimate: float, reference: float, tolerance: float = TOLERANCE) -> bool:
    """Whether ``estimate`` is within ``±tolerance`` of ``reference`` (the EU ±30% test)."""
    e, r = _flop("estimate", estimate), _flop("reference", reference)
    assert e is not None and r is not None
    return abs(e - r) <= tolerance * r * (1 + _EPS)


# --- what counts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivityCount:
    """Compute by activity, split into what counts towards training compute and what does not."""

    counted: float
    excluded: float
    by_activity: Mapping[str, float] = field(default_factory=dict)


def count_activities(flop_by_activity: Mapping[str, float]) -> ActivityCount:
    """Sum compute by activity per the counting rules; an unknown activity is refused by name."""
    counted = excluded = 0.0
    for activity, value in flop_by_activity.items():
        v = _flop(f"compute of {activity!r}", value)
        assert v is not None
        if activity in COUNTED_ACTIVITIES:
            counted += v
        elif activity in EXCLUDED_ACTIVITIES:
            excluded += v
        else:
            raise MalformedInput(f"unknown activity {activity!r}: counted are {', '.join(COUNTED_ACTIVITIES)}; "
                                 f"excluded are {', '.join(EXCLUDED_ACTIVITIES)}")
    return ActivityCount(counted, excluded, MappingProxyType(dict(flop_by_activity)))


# --- lineages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineageModel:
    """A model's own training compute and the models it was built from (fine-tuned, merged, initialised)."""

    name: str
    own_flop: float
    bases: tuple[str, ...] = ()


def cumulative_compute(name: str, models: Mapping[str, LineageModel] | Iterable[LineageModel]) -> float:
    """Own compute plus the cumulative compute of every base, recursively (each ancestor counted once).

    A base that is not among ``models`` or a cycle is refused, naming the models.
    An ancestor reached along two paths (a merge of two fine-tunes of one base) is
    counted once: its compute went into the weights once.
    """
    table = dict(models) if isinstance(models, Mapping) else {m.name: m for m in models}
    if name not in table:
        raise MalformedInput(f"unknown model {name!r} in the lineage")
    seen: set[str] = set()
    total = 0.0
    # Depth first without recursion (a lineage may be thousands of fine-tunes deep): ``path`` holds the models
    # from ``name`` down to the one being visited, each with the bases still to visit.
    path: list[tuple[str, Iterator[str]]] = []
    on_path: set[str] = set()

    def enter(n: str) -> None:
        nonlocal total
        if n in on_path:
            raise MalformedInput(f"lineage cycle: {' -> '.join((*(p for p, _ in path), n))}")
        model = table.get(n)
        if model is None:
            raise MalformedInput(f"{path[-1][0]!r} names base model {n!r}, which is not in the lineage")
        if n in seen:
            return
        seen.add(n)
        own = _flop(f"own compute of {n!r}", model.own_flop)
        assert own is not None
        total += own
        path.append((n, iter(model.bases)))
        on_path.add(n)

    enter(name)
    while path:
        n, bases = path[-1]
        base = next(bases, None)
        if base is None:
            path.pop()
            on_path.discard(n)
        else:
            enter(base)
    return total


def modification_fraction(modification_flop: float, original_flop: float) -> float:
    """A modification's compute over the original model's (cumulative) compute."""
    mod = _flop("modification compute", modification_flop)
    orig = _flop("original model compute", original_flop)
    assert mod is not None and orig is not None
    if orig == 0:
        raise MalformedInput("original model compute is 0; the fraction is undefined")
    return mod / orig


def is_substantial_modification(modification_flop: float, original_flop: float) -> bool:
    """The one-third rule: the modification used more than one third of the original model's compute."""
    modification_fraction(modification_flop, original_flop)  # validates both
    return float(modification_flop) * 3 > float(original_flop)


__all__ = ["COUNTED_ACTIVITIES", "ESTIMATE_NAMES", "EXCLUDED_ACTIVITIES", "MODIFICATION_FRACTION", "TOLERANCE",
           "ActivityCount", "CrossCheck", "LineageModel", "count_activities", "cross_check", "cumulative_compute",
           "is_substantial_modification", "modification_fraction", "pair_disagrees", "within_tolerance"]
