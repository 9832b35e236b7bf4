"""Real data: Epoch AI's "Notable AI Models" CSV, screened against danger lines and used to test 6·N·D.

Credit: Epoch AI, "Data on Notable AI Models", CC BY 4.0. Every face that shows
results derived from it prints ``CREDIT``.

- ``read_epoch_csv(path)`` parses the CSV with the ``csv`` module: numbers such as
  ``3.8e+25`` become floats; empty cells become ``None``; a cell that does not parse
  as a non-negative finite number becomes ``None`` and is listed in ``problems``
  (row, column, text). A file that is not UTF-8 text, is not CSV, or lacks a needed
  column is refused with ``MalformedInput`` naming what is wrong.
- ``screen(data, policy)`` says which models cross which lines. Only lines on
  ``training_compute`` (scopes ``run`` and ``model-lineage``) and on
  ``modification_compute_fraction`` can be judged from this data; every other line
  is listed as skipped, with the reason.
- ``six_nd_check(data)`` compares 6·N·D with Epoch's own figure on the rows Epoch
  estimated by operation counting.

How lineage compute is worked out from the CSV (``lineage_of``): Epoch gives a fine-tune's
``Base model`` (sometimes several, comma-separated) and its ``Finetune compute (FLOP)``.
Its ``Training compute (FLOP)`` for a fine-tune sometimes already includes the base
model's compute (EXAONE Deep 32B: 1.25e24 + 7.04e21 = 1.26e24) and sometimes is the
fine-tune alone (Segment Anything: training = finetune = 7.8e21, base ViT-Huge/14
4.26e21). So the lineage figure is the larger of Epoch's training compute and
(the bases' cumulative compute, looked up by name in the same file, recursively,
+ the finetune compute). When the finetune compute is missing, the bases' compute
is still a floor: a fine-tune's cumulative compute is at least its base's
(GPT-4V ≥ GPT-4's 2.1e25). A figure built from an incomplete lineage is marked ``≥``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redline.errors import InputTooLarge, MalformedInput

CREDIT = 'Epoch AI, "Data on Notable AI Models" (epoch.ai/data/notable_ai_models), CC BY 4.0'

MAX_CSV_BYTES = 64 * 1024 * 1024
MAX_ROWS = 200_000

COL_MODEL = "Model"
COL_ORG = "Organization"
COL_DATE = "Publication date"
COL_DOMAIN = "Domain"
COL_PARAMS = "Parameters"
COL_COMPUTE = "Training compute (FLOP)"
COL_DATASET = "Training dataset size (datapoints)"
COL_EPOCHS = "Epochs"
COL_BASE = "Base model"
COL_FINETUNE = "Finetune compute (FLOP)"
COL_METHOD = "Training compute estimation method"

#: Columns the commands need; a file without one of them is refused, naming it.
REQUIRED_COLUMNS = (COL_MODEL, COL_ORG, COL_DATE, COL_DOMAIN, COL_PARAMS, COL_COMPUTE, COL_DATASET, COL_EPOCHS,
                    COL_BASE, COL_FINETUNE, COL_METHOD)
#: Columns read when present.
OPTIONAL_COLUMNS = ("Parameters notes", "Dataset size notes", "Training compute notes", "Confidence",
                    "Training hardware", "Hardware quantity",
                    "Training time (hours)", "Hardware utilization", "Frontier model")

OPERATION_COUNTING = "Operation counting"


@dataclass(frozen=True)
class EpochModel:
    """One row of the CSV, with its numbers parsed (``None`` when absent or unparseable)."""

    line: int
    name: str
    organization: str
    date: str
    domain: str
    parameters: float | None
    compute: float | None
    dataset_size: float | None
    epochs: float | None
    base_model: str
    finetune_compute: float | None
    methods: tuple[str, ...]
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def parameters_notes(self) -> str:
        return self.extra.get("Parameters notes", "")

    @property
    def dataset_notes(self) -> str:
        return self.extra.get("Dataset size notes", "")

    @property
    def compute_notes(self) -> str:
        return self.extra.get("Training compute notes", "")


@dataclass(frozen=True)
class EpochData:
    """The parsed file: its models in file order and the cells that did not parse."""

    source: str
    models: tuple[EpochModel, ...]
    problems: tuple[str, ...] = ()

    def by_name(self) -> dict[str, EpochModel]:
        """Models by exact name (the first row wins if a name repeats)."""
        table: dict[str, EpochModel] = {}
        for m in self.models:
            table.setdefault(m.name, m)
        return table


def _number(text: str, column: str, line: int, problems: list[str]) -> float | None:
    t = text.strip()
    if not t:
        return None
    try:
        v = float(t)
    except ValueError:
        problems.append(f"line {line}, {column}: {t[:40]!r} is not a number")
        return None
    if not math.isfinite(v) or v < 0:
        problems.append(f"line {line}, {column}: {t[:40]!r} is not a finite non-negative number")
        return None
    return v


def parse_epoch_csv(text: str, *, what: str = "CSV") -> EpochData:
    """Parse the text of an Epoch notable-models CSV; see the module docstring."""
    if not text.strip():
        raise MalformedInput(f"{what}: empty file, expected Epoch AI's notable models CSV")
    if "\x00" in text:
        raise MalformedInput(f"{what}: contains NUL bytes; not a CSV file")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""), strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise MalformedInput(f"{what}: not valid CSV: {exc}") from exc
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        shown = ", ".join(repr(h) for h in header[:6]) + (", ..." if len(header) > 6 else "")
        raise MalformedInput(f"{what}: not Epoch AI's notable models CSV: missing column(s) "
                             f"{', '.join(repr(c) for c in missing)} (header starts {shown or '(empty)'})")
    dupes = sorted({h for h in header if header.count(h) > 1 and h in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)})
    if dupes:
        raise MalformedInput(f"{what}: column(s) {', '.join(map(repr, dupes))} appear more than once")
    index = {h: i for i, h in enumerate(header)}
    problems: list[str] = []
    models: list[EpochModel] = []
    seen: set[str] = set()
    try:
        end = reader.line_num
        for row in reader:
            line, end = end + 1, reader.line_num  # a quoted cell may span lines: name the row's first line
            if not any(cell.strip() for cell in row):
                continue
            if len(models) >= MAX_ROWS:
                raise InputTooLarge(f"{what}: more than {MAX_ROWS} rows")
            if len(row) != len(header):
                raise MalformedInput(f"{what} line {line}: {len(row)} fields, the header has {len(header)}")

            def cell(col: str, row: list[str] = row) -> str:
                return row[index[col]].strip()

            name = cell(COL_MODEL)
            if not name:
                problems.append(f"line {line}: no model name; row skipped")
                continue
            if name in seen:
                problems.append(f"line {line}: model {name!r} appears again; lookups by name use the first row")
            seen.add(name)
            num = {c: _number(cell(c), c, line, problems)
                   for c in (COL_PARAMS, COL_COMPUTE, COL_DATASET, COL_EPOCHS, COL_FINETUNE)}
            methods = tuple(m.strip() for m in cell(COL_METHOD).split(",") if m.strip())
            extra = {c: row[index[c]] for c in OPTIONAL_COLUMNS if c in index and row[index[c]].strip()}
            models.append(EpochModel(line, name, cell(COL_ORG), cell(COL_DATE), cell(COL_DOMAIN), num[COL_PARAMS],
                                     num[COL_COMPUTE], num[COL_DATASET], num[COL_EPOCHS], cell(COL_BASE),
                                     num[COL_FINETUNE], methods, extra))
    except csv.Error as exc:
        raise MalformedInput(f"{what} line {reader.line_num}: not valid CSV: {exc}") from exc
    if not models:
        raise MalformedInput(f"{what}: the header is there but no model rows follow")
    return EpochData(what, tuple(models), tuple(problems))


def read_epoch_csv(path: str | Path) -> EpochData:
    """Read and parse an Epoch notable-models CSV file."""
    p = Path(path)
    if p.is_dir():
        raise MalformedInput(f"{p}: is a directory, expected a CSV file", path=str(p))
    size = p.stat().st_size
    if size > MAX_CSV_BYTES:
        raise InputTooLarge(f"{p}: {size} bytes, over the limit of {MAX_CSV_BYTES}", size=size, limit=MAX_CSV_BYTES,
                            path=str(p))
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"{p}: not UTF-8 text (byte {exc.start}); expected Epoch AI's notable models CSV") \
            from exc
    return parse_epoch_csv(text, what=str(p))


# --- lineages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lineage:
    """A model's cumulative compute as far as the CSV tells it.

    ``value``: the figure screened against lineage lines (``None`` when the row gives no
    compute at all); ``base_compute``: the bases' cumulative compute found in the file
    (``None`` without a base or when none was found); ``complete``: every base was found
    and the finetune compute is given (always true without a base); ``note``: how the
    figure was made, for people. A base whose own lineage is incomplete makes this one
    incomplete too.
    """

    value: float | None
    base_compute: float | None
    complete: bool
    note: str
    missing_bases: tuple[str, ...] = ()


def base_names(model: EpochModel, table: Mapping[str, EpochModel]) -> tuple[str, ...]:
    """The base model names of a row: the whole cell if it names a model, else its comma-separated parts."""
    text = model.base_model.strip()
    if not text:
        return ()
    if text in table:
        return (text,)
    return tuple(part.strip() for part in text.split(",") if part.strip())


def lineage_of(model: EpochModel, table: Mapping[str, EpochModel], _path: tuple[str, ...] = ()) -> Lineage:
    """Cumulative compute of ``model`` over its lineage in ``table`` (see the module docstring)."""
    bases = base_names(model, table)
    own = model.compute
    if not bases:
        return Lineage(own, None, True, "")
    base_sum = 0.0
    found: list[str] = []
    missing: list[str] = []
    bases_complete = True
    for b in bases:
        base = table.get(b)
        if base is None or b in _path or b == model.name:
            missing.append(b)
            continue
        sub = lineage_of(base, table, (*_path, model.name))
        if sub.value is None:
            missing.append(b)
            continue
        base_sum += sub.value
        bases_complete = bases_complete and sub.complete
        found.append(f"{b} {_fmt(sub.value)}{'' if sub.complete else ' (≥)'}")
    ft = model.finetune_compute
    complete = not missing and bases_complete and ft is not None
    parts = []
    if found:
        parts.append(" + ".join(found))
    if ft is not None:
        parts.append(f"finetune {_fmt(ft)}")
    candidate = (base_sum if found else None)
    if ft is not None:
        candidate = (candidate or 0.0) + ft
    note = " + ".join(parts)
    if candidate is not None and len(parts) > 1:
        note += f" = {_fmt(candidate)}"
    gaps = []
    if missing:
        gaps.append(f"base {', '.join(missing)} not in the data or without compute")
    if ft is None:
        gaps.append("finetune compute not given")
    if gaps:
        note = (note + "; " if note else "") + "; ".join(gaps)
    values = [v for v in (own, candidate) if v is not None]
    value = max(values) if values else None
    if value is not None and own is not None and candidate is not None and own > candidate:
        note += f"; Epoch's training compute {_fmt(own)} is larger and is used"
    return Lineage(value, base_sum if found else None, complete, note, tuple(missing))


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# --- screening --------------------------------------------------------------------------------

#: (metric, scope) pairs this data can answer.
SCREENABLE = {("training_compute", "run"), ("training_compute", "model-lineage"),
              ("modification_compute_fraction", "model-lineage")}

_SKIP_REASONS = {
    "cluster_h100e": "the CSV lists the hardware one model was trained on, not the clusters a party declares",
    "party_h100e": "the CSV lists the hardware one model was trained on, not all the clusters a party holds",
    "time_horizon_50": "the CSV has no time-horizon measurements",
    "ai_code_share": "the CSV has no measurements of AI-written code",
    "research_task_completion": "the CSV has no research-task evaluations",
}


def skip_reason(line: Any) -> str | None:
    """Why ``line`` cannot be screened from this data, or ``None`` when it can."""
    if (line.metric, line.scope) in SCREENABLE:
        return None
    return _SKIP_REASONS.get(line.metric, f"metric {line.metric!r} (scope {line.scope}) is not in the CSV")


@dataclass(frozen=True)
class ScreenRow:
    """One model with the values screened and the lines it crosses."""

    model: EpochModel
    lineage: Lineage
    run_compute: float | None
    modification_fraction: float | None
    crossed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        m = self.model
        return {"model": m.name, "organization": m.organization, "date": m.date or None, "domain": m.domain,
                "training_compute": m.compute, "run_compute": self.run_compute,
                "base_model": m.base_model or None, "finetune_compute": m.finetune_compute,
                "lineage_compute": self.lineage.value, "lineage_complete": self.lineage.complete,
                "lineage_note": self.lineage.note or None, "modification_fraction": self.modification_fraction,
                "lines_crossed": list(self.crossed)}


@dataclass(frozen=True)
class ScreenResult:
    """The outcome of screening a file against a policy."""

    policy_id: str
    policy_digest: str
    screened_lines: tuple[Any, ...]
    skipped_lines: tuple[tuple[Any, str], ...]
    rows: tuple[ScreenRow, ...]
    without_compute: int
    problems: tuple[str, ...]

    def crossing(self, line_id: str) -> list[ScreenRow]:
        """The rows that cross ``line_id``."""
        return [r for r in self.rows if line_id in r.crossed]

    def to_json(self, *, crossing_only: bool = False) -> dict[str, Any]:
        rows = [r for r in self.rows if r.crossed] if crossing_only else list(self.rows)
        return {
            "source": CREDIT,
            "policy": {"id": self.policy_id, "digest": self.policy_digest},
            "screened_lines": [{"id": ln.id, "metric": ln.metric, "scope": ln.scope, "comparator": ln.comparator,
                                "value": ln.value, "crossed_by": len(self.crossing(ln.id))}
                               for ln in self.screened_lines],
            "skipped_lines": [{"id": ln.id, "metric": ln.metric, "scope": ln.scope, "reason": why}
                              for ln, why in self.skipped_lines],
            "models_screened": len(self.rows), "models_without_compute": self.without_compute,
            "models": [r.to_json() for r in rows],
            "data_problems": list(self.problems),
        }


def screen(data: EpochData, policy: Any) -> ScreenResult:
    """Judge every model with a compute figure against the policy's screenable lines.

    Values per line: ``training_compute``/``run`` takes the finetune compute of a
    fine-tune that gives one and Epoch's training compute otherwise;
    ``training_compute``/``model-lineage`` takes ``lineage_of(...).value``;
    ``modification_compute_fraction`` takes finetune compute / the bases' cumulative
    compute, when every base is found and the finetune compute is given. Rows with no
    compute figure at all are counted, not listed. Rows are sorted by lineage compute,
    largest first.
    """
    table = data.by_name()
    screened, skipped = [], []
    for line in policy.lines:
        why = skip_reason(line)
        if why is None:
            screened.append(line)
        else:
            skipped.append((line, why))
    rows: list[ScreenRow] = []
    without = 0
    for m in data.models:
        lin = lineage_of(m, table)
        if lin.value is None:
            without += 1
            continue
        is_finetune = bool(base_names(m, table))
        run_value = m.finetune_compute if is_finetune and m.finetune_compute is not None else m.compute
        fraction = None
        if is_finetune and lin.complete and lin.base_compute and m.finetune_compute is not None:
            fraction = m.finetune_compute / lin.base_compute
        crossed = []
        for line in screened:
            if line.metric == "modification_compute_fraction":
                value = fraction
            else:
                value = run_value if line.scope == "run" else lin.value
            if value is not None and line.crossed_by(value):
                crossed.append(line.id)
        rows.append(ScreenRow(m, lin, run_value, fraction, tuple(crossed)))
    rows.sort(key=lambda r: (-(r.lineage.value or 0.0), r.model.line))
    return ScreenResult(policy.id, policy.digest, tuple(screened), tuple(skipped), tuple(rows), without,
                        data.problems)


# --- 6·N·D against Epoch -------------------------------------------------------------------------

_MOE = re.compile(r"mixture[- ]of[- ]experts|\bMoE\b|\bexperts\b|\bactivated\b|\bactivates\b"
                  r"|activation param|active param", re.I)
_WORDS = re.compile(r"\bwords?\b", re.I)
_COMBINED = re.compile(r"sqrt|geometric mean", re.I)
_RECURRENT = re.compile(r"LSTM|RNN|QRNN|SRU|GRU")


@dataclass(frozen=True)
class SixNDRow:
    """One row compared: ``ratio = 6·N·D / Epoch's training compute`` with D = dataset size × epochs."""

    model: EpochModel
    tokens: float
    epochs_used: float | None
    six_nd: float
    ratio: float
    hints: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        m = self.model
        return {"model": m.name, "domain": m.domain, "date": m.date or None, "parameters": m.parameters,
                "dataset_size": m.dataset_size, "epochs": self.epochs_used, "six_nd": self.six_nd,
                "epoch_compute": m.compute, "ratio": self.ratio, "hints": list(self.hints)}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Linear-interpolation percentile (numpy's default) of already sorted values; ``p`` in [0, 100]."""
    if not sorted_values:
        raise MalformedInput("percentile of no values")
    k = (len(sorted_values) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


@dataclass(frozen=True)
class RatioStats:
    """Distribution of ratios: count, median, quartiles, 10th and 90th percentiles, share within ±30%."""

    count: int
    median: float
    q1: float
    q3: float
    p10: float
    p90: float
    within_30: int

    @classmethod
    def of(cls, ratios: Sequence[float]) -> RatioStats | None:
        if not ratios:
            return None
        s = sorted(ratios)
        return cls(len(s), percentile(s, 50), percentile(s, 25), percentile(s, 75), percentile(s, 10),
                   percentile(s, 90), sum(1 for r in s if 0.7 <= r <= 1.3))

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "median": self.median, "q1": self.q1, "q3": self.q3, "p10": self.p10,
                "p90": self.p90, "within_30_percent": self.within_30}


@dataclass(frozen=True)
class SixNDReport:
    """6·N·D against Epoch's operation-counting estimates: overall, by group, and the rows."""

    rows: tuple[SixNDRow, ...]
    overall: RatioStats | None
    groups: Mapping[str, RatioStats | None]
    considered: int
    excluded: Mapping[str, int]

    def outliers(self, top: int = 15) -> list[SixNDRow]:
        """The ``top`` rows furthest from Epoch's figure (by |log ratio|)."""
        return sorted(self.rows, key=lambda r: -abs(math.log(r.ratio)))[:top]

    def to_json(self, *, top: int = 15) -> dict[str, Any]:
        return {"source": CREDIT, "method": OPERATION_COUNTING, "considered": self.considered,
                "excluded": dict(self.excluded),
                "overall": self.overall.to_json() if self.overall else None,
                "groups": {k: (v.to_json() if v else None) for k, v in self.groups.items()},
                "outliers": [r.to_json() for r in self.outliers(top)]}


def _hints(m: EpochModel, ratio: float) -> tuple[str, ...]:
    hints = []
    if m.base_model:
        hints.append(f"fine-tune of {m.base_model} (Epoch's figure may include the base)")
    if _MOE.search(m.parameters_notes) or _MOE.search(m.compute_notes):
        hints.append("MoE: N counts all experts, not the active ones")
    if _COMBINED.search(m.compute_notes):
        hints.append("Epoch's figure is a geometric mean of estimates")
    if _RECURRENT.search(m.name):
        hints.append("recurrent network")
    if m.domain != "Language":
        hints.append(f"{m.domain or '?'}: D counts samples, not tokens")
    elif _WORDS.search(m.dataset_notes):
        hints.append("D in words (1 token ≈ 0.75 words)")
    if m.epochs is None and ratio < 1:
        hints.append("epochs not given")
    year = m.date[:4]
    if year.isdigit() and int(year) < 2017:
        hints.append(f"pre-Transformer ({year})")
    return tuple(hints)


def six_nd_check(data: EpochData, *, exact_method: bool = False) -> SixNDReport:
    """6·N·D against Epoch's training compute, on rows estimated by operation counting.

    Rows qualify when ``Training compute estimation method`` includes ``Operation
    counting`` (only that method with ``exact_method``) and the row gives parameters
    N > 0, dataset size > 0 and training compute > 0. D = dataset size × ``Epochs``
    when epochs are given, else the dataset size (one pass). Groups: ``language``
    (domain exactly Language, no base model), ``fine-tunes`` (a base model is given),
    ``other domains`` (the rest).
    """
    rows: list[SixNDRow] = []
    excluded = {"other method": 0, "no parameters": 0, "no dataset size": 0, "no training compute": 0}
    considered = 0
    for m in data.models:
        uses = m.methods == (OPERATION_COUNTING,) if exact_method else OPERATION_COUNTING in m.methods
        if not uses:
            excluded["other method"] += 1
            continue
        considered += 1
        if not m.parameters:
            excluded["no parameters"] += 1
        elif not m.dataset_size:
            excluded["no dataset size"] += 1
        elif not m.compute:
            excluded["no training compute"] += 1
        else:
            tokens = m.dataset_size * (m.epochs if m.epochs else 1.0)
            est = 6.0 * m.parameters * tokens
            ratio = est / m.compute
            if ratio <= 0:  # epochs 0
                excluded["no dataset size"] += 1
                continue
            rows.append(SixNDRow(m, tokens, m.epochs, est, ratio, _hints(m, ratio)))
    groups = {
        "language": RatioStats.of([r.ratio for r in rows if r.model.domain == "Language" and not r.model.base_model]),
        "fine-tunes": RatioStats.of([r.ratio for r in rows if r.model.base_model]),
        "other domains": RatioStats.of([r.ratio for r in rows
                                        if r.model.domain != "Language" and not r.model.base_model]),
    }
    return SixNDReport(tuple(rows), RatioStats.of([r.ratio for r in rows]), groups, considered, excluded)


__all__ = ["CREDIT", "OPERATION_COUNTING", "REQUIRED_COLUMNS", "EpochData", "EpochModel", "Lineage", "RatioStats",
           "ScreenResult", "ScreenRow", "SixNDReport", "SixNDRow", "base_names", "lineage_of", "parse_epoch_csv",
           "percentile", "read_epoch_csv", "screen", "six_nd_check", "skip_reason"]
