"""Results: line counts, shares, the evidence document and the tally that builds them."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redline.crypto.canonical import canonical_json
from redline.errors import (
    EmptyWindow,
)
from redline.indicators.codeshare.constants import (
    CATEGORIES,
    CLASSES,
    EVIDENCE_FORMAT,
    INDICATOR_NAME,
    METHOD_SURVIVAL,
    METHOD_VERSION,
    METHOD_WINDOW,
    UNIT,
)
from redline.indicators.codeshare.evidence import _EvidenceSource, _FileEvidence
from redline.indicators.codeshare.profiles import Profile, get_profile
from redline.indicators.codeshare.rules import Filters, Rules
from redline.times import format_utc


@dataclass(frozen=True)
class Shares:
    """Line counts in the four categories, and the shares derived from them."""

    ai_line: int = 0
    human_line: int = 0
    ai_commit: int = 0
    unknown: int = 0

    @classmethod
    def of(cls, counts: Sequence[int]) -> Shares:
        return cls(*counts)

    @property
    def total(self) -> int:
        return self.ai_line + self.human_line + self.ai_commit + self.unknown

    def _frac(self, n: int) -> float:
        return n / self.total if self.total else 0.0

    @property
    def lower_bound(self) -> float:
        """AI share by line-level evidence only."""
        return self._frac(self.ai_line)

    @property
    def point(self) -> float:
        """AI share when commit-level evidence fills the gaps line-level evidence leaves."""
        return self._frac(self.ai_line + self.ai_commit)

    @property
    def upper_bound(self) -> float:
        """Largest AI share consistent with line-level evidence: everything not shown to be human."""
        return self._frac(self.total - self.human_line)

    @property
    def unknown_share(self) -> float:
        """Share with no evidence either way."""
        return self._frac(self.unknown)

    @property
    def human_share(self) -> float:
        return self._frac(self.human_line)

    @property
    def line_coverage(self) -> float:
        """Share of lines with line-level evidence (AI or human)."""
        return self._frac(self.ai_line + self.human_line)

    @property
    def coverage(self) -> float:
        """Share of lines with any evidence."""
        return self._frac(self.total - self.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.total, "ai_line": self.ai_line, "human_line": self.human_line,
                "ai_commit": self.ai_commit, "unknown": self.unknown,
                "lower_bound": round(self.lower_bound, 6), "point": round(self.point, 6),
                "upper_bound": round(self.upper_bound, 6), "unknown_share": round(self.unknown_share, 6),
                "line_coverage": round(self.line_coverage, 6), "coverage": round(self.coverage, 6)}


@dataclass(frozen=True)
class CommitRow:
    """One commit's contribution: its lines in the four categories and the evidence it carried."""

    sha: str
    time: int
    counts: tuple[int, int, int, int]
    evidence: tuple[str, ...]

    def to_list(self) -> list[Any]:
        return [self.sha, self.time, *self.counts, list(self.evidence)]


@dataclass(frozen=True)
class CodeShareResult:
    """A code-share measurement: the shares, per file class, per commit, and what it was computed from."""

    mode: str  # "window" or "survival"
    repository: str
    branch: str
    tip: str
    start: str | None  # survival: the START commit
    window_start: datetime
    window_end: datetime
    since: datetime | None
    until: datetime | None
    rules: Rules
    filters: Filters
    notes_ref: str
    notes_tip: str | None
    notes_complete: str | None  # how the completeness of notes was declared, if it was
    agent_trace: dict[str, Any] | None
    totals: Shares
    by_class: Mapping[str, Shares]
    commits: tuple[CommitRow, ...]
    population_commits: int
    sources: Mapping[str, int]
    markers: Mapping[str, int]  # commit-level marker -> commits carrying it
    merges: int
    involvement: Mapping[str, int] = field(default_factory=dict)  # involvement marker -> commits carrying it
    profile: Profile = field(default_factory=lambda: get_profile("default"))

    @property
    def method(self) -> str:
        return METHOD_WINDOW if self.mode == "window" else METHOD_SURVIVAL

    @property
    def lower_bound(self) -> float:
        return self.totals.lower_bound

    @property
    def point(self) -> float:
        return self.totals.point

    @property
    def upper_bound(self) -> float:
        return self.totals.upper_bound

    @property
    def unknown(self) -> float:
        return self.totals.unknown_share

    def summary(self) -> dict[str, Any]:
        """Everything but the per-commit rows."""
        commit_counts = Counter()
        for row in self.commits:
            ev = set(row.evidence)
            commit_counts["with-git-ai-note"] += "git-ai" in ev
            commit_counts["with-agent-trace"] += "agent-trace" in ev
            commit_counts["with-commit-markers"] += any(":" in e for e in ev)
        return {
            "format": EVIDENCE_FORMAT,
            "indicator": INDICATOR_NAME,
            "mode": self.mode,
            "method": self.method,
            "method_version": METHOD_VERSION,
            "rules": {"version": self.rules.rule_version, "sha256": self.rules.sha256},
            "profile": self.profile.to_dict(),
            "filters": {"include": list(self.filters.include), "exclude": list(self.filters.exclude),
                        "default_ignore": self.filters.default_ignore},
            "repository": {"branch": self.branch, "tip": self.tip, "start": self.start,
                           "notes_ref": self.notes_ref, "notes_tip": self.notes_tip,
                           "agent_trace": self.agent_trace, "notes_complete": self.notes_complete},
            "window": {"start": format_utc(self.window_start), "end": format_utc(self.window_end),
                       "since": format_utc(self.since) if self.since else None,
                       "until": format_utc(self.until) if self.until else None},
            "population": {"commits": self.population_commits, "merges": self.merges,
                           "commits_with_lines": len(self.commits), **dict(sorted(commit_counts.items()))},
            "totals": self.totals.to_dict(),
            "by_class": {k: v.to_dict() for k, v in self.by_class.items()},
            "ai_lines_by_source": dict(sorted(self.sources.items())),
            "commit_markers": dict(sorted(self.markers.items())),
            "involvement_markers": dict(sorted(self.involvement.items())),
        }

    def evidence(self) -> dict[str, Any]:
        """The evidence document: the summary plus one row per commit ``[sha, time, ai_line, human_line,
        ai_commit, unknown, [evidence]]``. Its canonical JSON digest is the statement's evidence digest;
        anyone with the repository recomputes it."""
        return {**self.summary(), "commit_columns": ["sha", "committer_time", *CATEGORIES, "evidence"],
                "commits": [r.to_list() for r in self.commits]}

    @property
    def evidence_digest(self) -> str:
        return hashlib.sha256(canonical_json(self.evidence())).hexdigest()

    def indicator_fields(self, subject: str) -> dict[str, Any]:
        """Keyword arguments for :func:`redline.indicators.signing.indicator_envelope` (less ``seq``)."""
        return {"name": INDICATOR_NAME, "subject": subject, "value": self.point, "unit": UNIT,
                "interval": (self.lower_bound, self.upper_bound), "window": (self.window_start, self.window_end),
                "method": self.method, "method_version": METHOD_VERSION, "rule_version": self.rules.rule_version,
                "evidence_digest": self.evidence_digest}


class _Tally:
    def __init__(self) -> None:
        self.by_class: dict[str, list[int]] = {c: [0, 0, 0, 0] for c in CLASSES}
        self.by_commit: dict[str, list[int]] = {}
        self.extra: dict[str, set[str]] = {}
        self.sources: Counter[str] = Counter()

    def add(self, row: str, cls: str, fe: _FileEvidence, lines: Iterable[int]) -> None:
        """Count ``lines`` (judged by ``fe``) under the commit row ``row`` and the file class ``cls``."""
        counts = [0, 0, 0, 0]
        fe.classify(lines, counts, self.sources)
        c = self.by_class[cls]
        r = self.by_commit.setdefault(row, [0, 0, 0, 0])
        for i in range(4):
            c[i] += counts[i]
            r[i] += counts[i]


def _finish(tally: _Tally, src: _EvidenceSource, **kw: Any) -> CodeShareResult:
    markers: Counter[str] = Counter()
    involvement: Counter[str] = Counter()
    for ev in src.used():  # every commit whose evidence judged a counted line (merged side commits too)
        markers.update(ev.info.ai_markers)
        involvement.update(ev.info.involvement)
    rows = []
    for sha, counts in tally.by_commit.items():
        if not any(counts):
            continue
        ev = src.evidence(sha)
        kinds = ev.kinds + tuple(sorted(tally.extra.get(sha, ())))
        rows.append(CommitRow(sha, ev.info.time, (counts[0], counts[1], counts[2], counts[3]), kinds))
    rows.sort(key=lambda r: (r.time, r.sha))
    totals = [sum(c[i] for c in tally.by_class.values()) for i in range(4)]
    if sum(totals) == 0:
        raise EmptyWindow(kw.pop("empty_message"))
    kw.pop("empty_message", None)
    traces = src.traces
    return CodeShareResult(
        rules=src.rules, notes_ref=src.notes_ref, notes_tip=src.notes_tip,
        agent_trace=None if traces is None else {"sha256": traces.sha256, "records": traces.records,
                                                 "records_without_git_revision": traces.other_vcs,
                                                 "commits_matched": len(src.trace_used)},
        totals=Shares.of(totals), by_class={c: Shares.of(v) for c, v in tally.by_class.items()},
        commits=tuple(rows), sources=dict(tally.sources), markers=dict(markers), involvement=dict(involvement),
        **kw)
