"""Readers for evaluation results: Inspect AI logs (``.eval``, ``.json``) and METR-style run tables (``.jsonl``).

Every reader yields :class:`Run` rows, one per attempt of one model at one task,
with the task's human length in minutes. Inspect logs are read only through
``inspect_ai``'s own log API (recent ``.eval`` files are zstd-compressed zips that
plain :mod:`zipfile` cannot open); a file that is not the format its name claims
raises :class:`~redline.errors.MalformedInput` naming the file, never a traceback.

An Inspect sample becomes one run per epoch. Its task is ``<eval task>/<sample id>``;
its family is the sample's ``task_family`` metadata (key configurable) or else the
Inspect task's name; its human length comes from a metadata key (default
``human_minutes``) or a CSV ``task_id,human_minutes`` whose ``task_id`` is either the
sample id or ``<eval task>/<sample id>``. A sample that ended in an error has no
score: it is counted as *errored* and left out of the fit (or scored 0 with
``errors="fail"``). A sample that hit a limit (tokens, messages, time, ...) keeps the
score its scorer gave it and is counted as *limit-hit*.

A METR run table has one JSON object a line with ``task_id``, ``task_family``,
``run_id``, ``alias`` or ``model``, ``score_binarized`` or ``score_cont`` and
``human_minutes`` (the latter may come from the CSV instead); optional
``started_at`` / ``completed_at`` (RFC 3339 text, or Unix seconds or milliseconds)
give the time window. A row whose score is ``null`` has no score: it is left out of the fit and
reported as such (``Run.null_score``), not counted as an errored run. A run table may start with a
UTF-8 byte-order mark.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from redline.errors import MalformedInput
from redline.indicators.files import read_regular, regular_size
from redline.times import SECOND_MS, from_seconds, parse_iso_lenient

#: File-name suffixes read as logs when a directory is given.
LOG_SUFFIXES = (".eval", ".json", ".jsonl")
#: Files Inspect writes into a log directory that are not logs.
_BOOKKEEPING = frozenset({"logs.json", "eval-set.json", "listing.json"})
#: Largest METR run table read (bytes).
MAX_RUN_TABLE = 512 * 1024 * 1024
#: Largest human-minutes or release-dates CSV read (bytes).
MAX_CSV_BYTES = 64 * 1024 * 1024
#: Largest Inspect ``.json`` log (bytes): inspect_ai parses it whole.
MAX_INSPECT_JSON = 256 * 1024 * 1024
#: Largest Inspect ``.eval`` archive (bytes, compressed); inspect_ai streams its members.
MAX_EVAL_ZIP = 4 * 1024 * 1024 * 1024
#: Bounds on what an ``.eval`` archive may expand to, checked on its central directory before inspect_ai reads it:
#: each member's uncompressed size, all members together, the members' count and a member's compression ratio.
MAX_EVAL_MEMBER = 128 * 1024 * 1024
MAX_EVAL_TOTAL = 4 * 1024 * 1024 * 1024
MAX_EVAL_MEMBERS = 100_000
MAX_EVAL_RATIO = 100

ErrorPolicy = Literal["exclude", "fail"]


@dataclass(frozen=True)
class Run:
    """One attempt of one model at one task."""

    model: str
    task_id: str
    task_family: str
    run_id: str
    human_minutes: float
    #: Score in [0, 1]; ``None`` for an errored run that is excluded from the fit.
    score: float | None
    errored: bool = False
    #: The kind of limit the run hit (``token``, ``message``, ``time``, ...), if any.
    limit: str | None = None
    #: A run-table row whose score is ``null``: no score recorded (left out of the fit), not an error.
    null_score: bool = False
    started_at: datetime | None = None
    completed_at: datetime | None = None
    source: str = ""


@dataclass(frozen=True)
class LogFile:
    """One input file: where it is, its SHA-256, its format and how many runs it gave."""

    path: str
    sha256: str
    format: str
    runs: int


@dataclass
class RunSet:
    """All runs read from a set of input files, with the files' digests."""

    runs: list[Run] = field(default_factory=list)
    files: list[LogFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def evidence_digest(self) -> str:
        """SHA-256 (hex) over the sorted hex SHA-256 digests of the input files, each followed by a newline."""
        return evidence_digest(f.sha256 for f in self.files)

    def models(self) -> list[str]:
        return sorted({r.model for r in self.runs})


def evidence_digest(file_digests: Iterable[str]) -> str:
    """``sha256("".join(d + "\\n" for d in sorted(file_digests)))`` as lower-case hex."""
    h = hashlib.sha256()
    for d in sorted(file_digests):
        h.update(d.encode("ascii") + b"\n")
    return h.hexdigest()


# --- helpers ------------------------------------------------------------------------


def _limit(path: Path) -> int:
    """The size bound of an input log, by its suffix."""
    suffix = path.suffix.lower()
    return {".eval": MAX_EVAL_ZIP, ".json": MAX_INSPECT_JSON, ".jsonl": MAX_RUN_TABLE}.get(suffix, MAX_RUN_TABLE)


def check_eval_archive(path: Path) -> None:
    """Refuse an ``.eval`` zip whose central directory promises more than the bounds above (a zip bomb)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise MalformedInput(f"{path}: not an Inspect AI .eval log (not a readable zip archive: {_short(exc)})") \
            from None
    if len(infos) > MAX_EVAL_MEMBERS:
        raise MalformedInput(f"{path}: {len(infos)} archive members, over the limit of {MAX_EVAL_MEMBERS}")
    total = 0
    for info in infos:
        if info.file_size > MAX_EVAL_MEMBER:
            raise MalformedInput(f"{path}: member {info.filename!r} expands to {info.file_size} bytes, over the "
                                 f"limit of {MAX_EVAL_MEMBER}")
        if info.file_size > MAX_EVAL_RATIO * max(info.compress_size, 1) and info.file_size > 1 << 20:
            raise MalformedInput(f"{path}: member {info.filename!r} expands {info.file_size} bytes from "
                                 f"{info.compress_size}, over the compression ratio limit of {MAX_EVAL_RATIO} "
                                 "(a zip bomb?)")
        total += info.file_size
        if total > MAX_EVAL_TOTAL:
            raise MalformedInput(f"{path}: the archive expands to over {MAX_EVAL_TOTAL} bytes")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _minutes(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise MalformedInput(f"{where}: human minutes must be a positive number, got {value!r}")
    try:
        out = float(value)
    except ValueError:
        raise MalformedInput(f"{where}: human minutes must be a positive number, got {value!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise MalformedInput(f"{where}: human minutes must be a positive finite number, got {value!r}")
    return out


def _time(value: Any, where: str) -> datetime | None:
    """An aware UTC datetime from RFC 3339 text or Unix seconds / milliseconds; ``None`` when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        out = value
    elif isinstance(value, bool):
        raise MalformedInput(f"{where}: not a time: {value!r}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise MalformedInput(f"{where}: not a time: {value!r}")
        seconds = value / SECOND_MS if abs(value) > 1e11 else value  # milliseconds after 1973 are > 1e11
        try:
            out = from_seconds(seconds)
        except (OverflowError, OSError, ValueError):
            raise MalformedInput(f"{where}: time out of range: {value!r}") from None
    elif isinstance(value, str):
        try:
            return parse_iso_lenient(value)
        except MalformedInput:
            raise MalformedInput(f"{where}: not an RFC 3339 time: {value!r}") from None
    else:
        raise MalformedInput(f"{where}: not a time: {value!r}")
    if out.tzinfo is None:
        out = out.replace(tzinfo=UTC)
    return out.astimezone(UTC)


def score_to_float(value: Any, where: str, key: str | None = None) -> float:
    """An Inspect score value as a number in [0, 1].

    ``C``/``I``/``P``/``N`` (Inspect's correct, incorrect, partial, no-answer) map to
    1, 0, 0.5, 0; booleans, numbers and numeric strings are taken as they are;
    ``yes``/``no``/``true``/``false`` map to 1 and 0. A dict value needs ``key``.
    Anything else, or a number outside [0, 1], is refused.
    """
    if isinstance(value, dict):
        if key is None:
            raise MalformedInput(f"{where}: score is a dict with keys {sorted(value)}; choose one with --score-key")
        if key not in value:
            raise MalformedInput(f"{where}: score has no key {key!r} (keys: {sorted(value)})")
        value = value[key]
    out: float | None = None
    if isinstance(value, bool):
        out = float(value)
    elif isinstance(value, int | float):
        out = float(value)
    elif isinstance(value, str):
        text = value.strip()
        table = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}
        if text in table:
            out = table[text]
        elif text.lower() in ("yes", "true"):
            out = 1.0
        elif text.lower() in ("no", "false"):
            out = 0.0
        else:
            try:
                out = float(text)
            except ValueError:
                out = None
    if out is None:
        raise MalformedInput(f"{where}: score {value!r} is not a success value (C/I/P/N, a boolean or a number)")
    if not (math.isfinite(out) and 0.0 <= out <= 1.0):
        raise MalformedInput(f"{where}: score {value!r} is outside [0, 1]; time horizons need success in [0, 1]")
    return out


def read_minutes_table(path: Path) -> dict[str, float]:
    """A CSV with a header naming ``task_id`` and ``human_minutes``: task → human minutes."""
    try:
        return _read_minutes_table(path)
    except csv.Error as exc:  # e.g. a bare carriage return inside an unquoted field
        raise MalformedInput(f"{path}: not a valid CSV file: {exc}") from None


def _read_minutes_table(path: Path) -> dict[str, float]:
    try:
        text = read_regular(path, MAX_CSV_BYTES, str(path)).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedInput(f"{path}: not a UTF-8 CSV file") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip() for f in (reader.fieldnames or [])]
    if "task_id" not in fields or "human_minutes" not in fields:
        raise MalformedInput(f"{path}: a human-minutes CSV needs a header with 'task_id' and 'human_minutes' "
                             f"(found {fields or 'no header'})")
    out: dict[str, float] = {}
    for n, row in enumerate(reader, start=2):
        if None in row:  # csv.DictReader files the cells beyond the header under the key None
            raise MalformedInput(f"{path}, line {n}: {len(fields) + len(row[None])} fields, the header names "
                                 f"{len(fields)}")
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        task = row.get("task_id", "")
        if not task:
            raise MalformedInput(f"{path}, line {n}: empty task_id")
        minutes = _minutes(row.get("human_minutes", ""), f"{path}, line {n}")
        if task in out and out[task] != minutes:
            raise MalformedInput(f"{path}, line {n}: task {task!r} is listed twice with different minutes")
        out[task] = minutes
    if not out:
        raise MalformedInput(f"{path}: no rows")
    return out


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files named directly, plus the ``.eval``/``.json``/``.jsonl`` files under any directory named."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix in LOG_SUFFIXES
                           and q.name not in _BOOKKEEPING and not q.name.startswith("."))
            if not found:
                raise MalformedInput(f"{p}: no evaluation logs (.eval, .json or .jsonl files) in this directory")
            for q in found:
                regular_size(q, _limit(q), str(q))
            out.extend(found)
        elif p.exists():
            regular_size(p, _limit(p), str(p))
            out.append(p)
        else:
            raise MalformedInput(f"{p}: no such file or directory")
    return out


# --- Inspect AI logs ----------------------------------------------------------------


def _looks_like_inspect_json(path: Path) -> None:
    """Refuse a ``.json`` file that is not an Inspect log before handing it to inspect_ai."""
    with path.open("rb") as f:
        head = f.read(4096)
    stripped = head.lstrip()
    if not stripped.startswith(b"{"):
        raise MalformedInput(f"{path}: not an Inspect AI evaluation log (expected a JSON object)")
    # Inspect writes "version" and "status" first and an "eval" spec; a random JSON object has neither.
    if b'"eval"' not in head and b'"version"' not in head:
        raise MalformedInput(f"{path}: not an Inspect AI evaluation log (a JSON object with no 'version' or "
                             f"'eval' field)")


def _inspect_header(path: Path) -> Any:
    from inspect_ai.log import read_eval_log

    if path.suffix == ".eval":
        with path.open("rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise MalformedInput(f"{path}: not an Inspect AI .eval log (not a zip archive)")
        check_eval_archive(path)
    else:
        _looks_like_inspect_json(path)
    try:
        header = read_eval_log(str(path), header_only=True)
    except Exception as exc:  # inspect_ai raises many kinds; every one means "not a log we can read"
        raise MalformedInput(f"{path}: not a readable Inspect AI evaluation log ({_short(exc)})") from None
    if getattr(header, "eval", None) is None or not getattr(header.eval, "model", None):
        raise MalformedInput(f"{path}: Inspect AI log has no eval spec or model")
    return header


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _pick_score(scores: Mapping[str, Any] | None, scorer: str | None, where: str) -> Any:
    if not scores:
        return None
    if scorer is not None:
        if scorer not in scores:
            raise MalformedInput(f"{where}: no score from scorer {scorer!r} (scorers: {sorted(scores)})")
        return scores[scorer]
    if len(scores) > 1:
        raise MalformedInput(f"{where}: several scorers ({', '.join(sorted(scores))}); choose one with --scorer")
    return next(iter(scores.values()))


def read_inspect_log(
    path: Path,
    *,
    minutes_key: str = "human_minutes",
    family_key: str = "task_family",
    minutes_table: Mapping[str, float] | None = None,
    scorer: str | None = None,
    score_key: str | None = None,
    errors: ErrorPolicy = "exclude",
) -> list[Run]:
    """The runs of one Inspect AI log (``.eval`` or ``.json``), read through ``inspect_ai.log``."""
    from inspect_ai.log import read_eval_log_sample_summaries

    header = _inspect_header(path)
    try:
        summaries = read_eval_log_sample_summaries(str(path))
    except Exception as exc:
        raise MalformedInput(f"{path}: cannot read the samples of this Inspect AI log ({_short(exc)})") from None
    spec = header.eval
    model = str(spec.model)
    task = str(spec.task)
    log_start = _time(getattr(header.stats, "started_at", None) or None, f"{path}: stats.started_at") \
        if header.stats else None
    log_end = _time(getattr(header.stats, "completed_at", None) or None, f"{path}: stats.completed_at") \
        if header.stats else None
    created = _time(spec.created, f"{path}: eval.created")
    runs: list[Run] = []
    for s in summaries:
        where = f"{path}: sample {s.id!r} (epoch {s.epoch})"
        meta = s.metadata or {}
        task_id = f"{task}/{s.id}"
        if minutes_table is not None:
            raw = minutes_table.get(task_id, minutes_table.get(str(s.id)))
            if raw is None:
                raise MalformedInput(f"{where}: task {task_id!r} (or {str(s.id)!r}) is not in the human-minutes CSV")
        else:
            if minutes_key not in meta:
                raise MalformedInput(f"{where}: no metadata key {minutes_key!r} for the human task length; "
                                     f"name the key with --minutes-key or give a --human-minutes CSV")
            raw = meta[minutes_key]
        minutes = _minutes(raw, where)
        family = meta.get(family_key)
        family = str(family) if family is not None and str(family) != "" else task
        errored = s.error is not None and s.error != ""
        limit = None
        if s.limit is not None:
            limit = str(s.limit) if isinstance(s.limit, str) else str(getattr(s.limit, "type", s.limit))
        value = None if errored else _pick_score(s.scores, scorer, where)
        if value is None:
            if not errored:
                raise MalformedInput(f"{where}: sample has no score (was the log scored?)")
            score = 0.0 if errors == "fail" else None
        else:
            raw_value = getattr(value, "value", value)
            score = score_to_float(raw_value, where, score_key)
        runs.append(Run(
            model=model, task_id=task_id, task_family=family,
            run_id=f"{spec.eval_id or spec.run_id}/{s.id}/{s.epoch}",
            human_minutes=minutes, score=score, errored=errored, limit=limit,
            started_at=_time(s.started_at, where) or log_start or created,
            completed_at=_time(s.completed_at, where) or log_end or log_start or created,
            source=str(path),
        ))
    return runs


# --- METR run tables ----------------------------------------------------------------


def read_run_table(
    path: Path,
    *,
    minutes_table: Mapping[str, float] | None = None,
    score_field: Literal["auto", "score_binarized", "score_cont"] = "auto",
    errors: ErrorPolicy = "exclude",
) -> list[Run]:
    """The runs of a METR-style JSONL run table."""
    try:
        # a byte-order mark is accepted, as in the CSV files
        text = read_regular(path, MAX_RUN_TABLE, str(path)).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MalformedInput(f"{path}: not a UTF-8 JSONL run table") from None
    runs: list[Run] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedInput(f"{where}: not a JSON line of a run table ({exc.msg})") from None
        except (RecursionError, ValueError) as exc:  # deep nesting, integers over Python's digit limit
            raise MalformedInput(f"{where}: not a JSON line of a run table ({_short(exc)})") from None
        if not isinstance(row, dict):
            raise MalformedInput(f"{where}: a run table line must be a JSON object")
        task_id = row.get("task_id")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool) or str(task_id) == "":
            raise MalformedInput(f"{where}: missing 'task_id' (is this a METR run table?)")
        task_id = str(task_id)
        model = row.get("alias") or row.get("model")
        if not isinstance(model, str) or not model:
            raise MalformedInput(f"{where}: missing 'alias' or 'model'")
        family = row.get("task_family")
        family = str(family) if family not in (None, "") else task_id
        if row.get("human_minutes") is not None:
            minutes = _minutes(row["human_minutes"], where)
        elif minutes_table is not None and task_id in minutes_table:
            minutes = minutes_table[task_id]
        else:
            raise MalformedInput(f"{where}: no 'human_minutes' for task {task_id!r} "
                                 f"(add the field or give a --human-minutes CSV)")
        if score_field == "auto":
            name = "score_binarized" if "score_binarized" in row else "score_cont"
        else:
            name = score_field
        if name not in row:
            wanted = "score_binarized or score_cont" if score_field == "auto" else repr(name)
            raise MalformedInput(f"{where}: missing {wanted}")
        raw = row[name]
        null_score = raw is None
        score = None if null_score else score_to_float(raw, f"{where}: {name}")
        limit = row.get("limit")
        runs.append(Run(
            model=model, task_id=task_id, task_family=family,
            run_id=str(row.get("run_id") if row.get("run_id") not in (None, "") else f"{path.name}:{n}"),
            human_minutes=minutes, score=score, null_score=null_score,
            limit=str(limit) if limit not in (None, "", False) else None,
            started_at=_time(row.get("started_at"), f"{where}: started_at"),
            completed_at=_time(row.get("completed_at"), f"{where}: completed_at"),
            source=str(path),
        ))
    return runs


# --- everything ---------------------------------------------------------------------


def read_runs(
    paths: Sequence[Path | str],
    *,
    minutes_key: str = "human_minutes",
    family_key: str = "task_family",
    minutes_csv: Path | str | None = None,
    scorer: str | None = None,
    score_key: str | None = None,
    score_field: Literal["auto", "score_binarized", "score_cont"] = "auto",
    errors: ErrorPolicy = "exclude",
) -> RunSet:
    """Read every run from ``paths`` (files or directories); see the module docstring for the formats.

    Raises :class:`~redline.errors.MalformedInput` naming the file (and sample or line)
    for a file of another format, a sample with no human length, a score that is not a
    success value, or an input with no runs at all. The same file given twice (same
    SHA-256) is read once.
    """
    if not paths:
        raise MalformedInput("no evaluation logs given")
    if errors not in ("exclude", "fail"):
        raise MalformedInput(f"errors must be 'exclude' or 'fail', not {errors!r}")
    table = read_minutes_table(Path(minutes_csv)) if minutes_csv is not None else None
    out = RunSet()
    seen: dict[str, Path] = {}
    for path in expand_paths([Path(p) for p in paths]):
        digest = _sha256_file(path)
        if digest in seen:
            out.notes.append(f"{path} has the same contents as {seen[digest]}; read once")
            continue
        seen[digest] = path
        suffix = path.suffix.lower()
        if suffix in (".eval", ".json"):
            runs = read_inspect_log(path, minutes_key=minutes_key, family_key=family_key, minutes_table=table,
                                    scorer=scorer, score_key=score_key, errors=errors)
            fmt = "inspect-eval" if suffix == ".eval" else "inspect-json"
        elif suffix == ".jsonl":
            runs = read_run_table(path, minutes_table=table, score_field=score_field, errors=errors)
            fmt = "metr-runs-jsonl"
        else:
            raise MalformedInput(f"{path}: not an evaluation log: expected an Inspect AI log (.eval or .json) "
                                 f"or a METR run table (.jsonl), got a {suffix or 'suffix-less'} file")
        out.files.append(LogFile(path=str(path), sha256=digest, format=fmt, runs=len(runs)))
        out.runs.extend(runs)
    if not out.runs:
        raise MalformedInput("no runs in the input logs (no samples or run-table lines)")
    _check_consistent(out.runs)
    return out


def _check_consistent(runs: Sequence[Run]) -> None:
    """One human length and one family per task; run ids unique per model."""
    minutes: dict[str, tuple[float, str]] = {}
    family: dict[str, tuple[str, str]] = {}
    seen: set[tuple[str, str]] = set()
    for r in runs:
        m = minutes.setdefault(r.task_id, (r.human_minutes, r.source))
        if m[0] != r.human_minutes:
            raise MalformedInput(f"task {r.task_id!r} has human length {m[0]} min in {m[1]} but "
                                 f"{r.human_minutes} min in {r.source}")
        f = family.setdefault(r.task_id, (r.task_family, r.source))
        if f[0] != r.task_family:
            raise MalformedInput(f"task {r.task_id!r} is in family {f[0]!r} in {f[1]} but {r.task_family!r} "
                                 f"in {r.source}")
        key = (r.model, r.run_id)
        if key in seen:
            raise MalformedInput(f"run {r.run_id!r} of model {r.model!r} appears twice ({r.source})")
        seen.add(key)


__all__ = [
    "LOG_SUFFIXES", "LogFile", "Run", "RunSet", "evidence_digest", "expand_paths", "read_inspect_log",
    "read_minutes_table", "read_run_table", "read_runs", "score_to_float",
]
