"""Classification: what a commit's evidence says about each of its lines."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from redline.indicators.codeshare.agenttrace import AgentTraces, TraceRange
from redline.indicators.codeshare.commits import CommitInfo, read_commits
from redline.indicators.codeshare.constants import AI_COMMIT, AI_LINE, HUMAN_LINE, UNKNOWN
from redline.indicators.codeshare.git import Git
from redline.indicators.codeshare.gitai import GitAiNote, _merge, parse_git_ai_note
from redline.indicators.codeshare.repoconfig import RepoConfig
from redline.indicators.codeshare.rules import Rules


class _Ranges:
    __slots__ = ("ends", "starts")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged = _merge(ranges)
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __contains__(self, line: int) -> bool:
        i = bisect.bisect_right(self.starts, line) - 1
        return i >= 0 and line <= self.ends[i]

    def __bool__(self) -> bool:
        return bool(self.starts)


_EMPTY = _Ranges(())


@dataclass
class _FileEvidence:
    gitai: _Ranges
    trace_ai: _Ranges
    trace_human: _Ranges
    default: int  # HUMAN_LINE (a note or a completeness declaration covers the commit) or UNKNOWN
    commit_ai: bool

    def classify(self, lines: Iterable[int], counts: list[int], sources: Counter[str]) -> None:
        gitai, tai, thu = self.gitai, self.trace_ai, self.trace_human
        fallback = AI_COMMIT if (self.default == UNKNOWN and self.commit_ai) else self.default
        if not gitai and not tai and not thu:
            n = sum(1 for _ in lines)
            counts[fallback] += n
            if fallback == AI_COMMIT:
                sources["commit-level"] += n
            return
        for n in lines:
            if gitai and n in gitai:
                counts[AI_LINE] += 1
                sources["git-ai"] += 1
            elif tai and n in tai:
                counts[AI_LINE] += 1
                sources["agent-trace"] += 1
            elif thu and n in thu:
                counts[HUMAN_LINE] += 1
            else:
                counts[fallback] += 1
                if fallback == AI_COMMIT:
                    sources["commit-level"] += 1


class _Evidence:
    """Everything known about the authorship of one commit's lines."""

    def __init__(self, info: CommitInfo, note: GitAiNote | None, traces: Mapping[str, tuple[TraceRange, ...]] | None,
                 notes_complete: bool) -> None:
        self.info = info
        self.note = note
        self.traces = traces or {}
        self.notes_complete = notes_complete
        self._files: dict[str, _FileEvidence] = {}

    @property
    def notes_complete_applies(self) -> bool:
        """A declared-complete note set says "no note, no AI lines" -- unless commit-level evidence says otherwise.

        A declaration of absence never beats positive evidence: a commit with no note but an AI
        co-author trailer stays AI at commit level.
        """
        return self.note is None and self.notes_complete and not self.info.ai_markers

    @property
    def kinds(self) -> tuple[str, ...]:
        k = []
        if self.note is not None:
            k.append("git-ai")
        if self.traces:
            k.append("agent-trace")
        if self.notes_complete_applies:
            k.append("notes-complete")
        k.extend(self.info.ai_markers)
        return tuple(k)

    def file(self, path: str) -> _FileEvidence:
        if self.note is None and not self.traces:  # nothing line-level: one judgement for every file
            fe = self._files.get("")
            if fe is None:
                fe = self._files[""] = _FileEvidence(_EMPTY, _EMPTY, _EMPTY,
                                                     HUMAN_LINE if self.notes_complete_applies else UNKNOWN,
                                                     bool(self.info.ai_markers))
            return fe
        fe = self._files.get(path)
        if fe is None:
            gitai = _Ranges(self.note.files.get(path, ())) if self.note is not None else _EMPTY
            tr = self.traces.get(path, ())
            fe = _FileEvidence(
                gitai, _Ranges((r.start, r.end) for r in tr if r.kind == "ai") if tr else _EMPTY,
                _Ranges((r.start, r.end) for r in tr if r.kind == "human") if tr else _EMPTY,
                HUMAN_LINE if (self.note is not None or self.notes_complete_applies) else UNKNOWN,
                bool(self.info.ai_markers))
            self._files[path] = fe
        return fe


class _EvidenceSource:
    """Notes, traces and declarations of a repository, looked up per commit (notes fetched in batches)."""

    def __init__(self, git: Git, rules: Rules, *, notes_ref: str, traces: AgentTraces | None,
                 trace_revision: str, notes_complete: bool | None, config: RepoConfig,
                 child_of: Mapping[str, str] | None = None) -> None:
        self.git, self.rules, self.notes_ref = git, rules, notes_ref
        self.notes_tip = git.ref_tip(notes_ref) if rules.line_evidence else None
        self.note_blobs: dict[str, str] = {}
        if self.notes_tip is not None:
            for line in git.out("notes", f"--ref={notes_ref}", "list").decode().splitlines():
                blob, _, commit = line.partition(" ")
                if commit:
                    self.note_blobs[commit.strip()] = blob.strip()
        self.notes: dict[str, GitAiNote | None] = {}
        self.traces = traces
        self.trace_for: dict[str, Mapping[str, tuple[TraceRange, ...]]] = {}
        if traces is not None:
            for rev, files in traces.by_revision.items():
                target = rev if trace_revision == "commit" else (child_of or {}).get(rev)
                if target is not None:
                    self.trace_for[target] = files
        self.trace_used: set[str] = set()
        self.notes_complete, self.config = notes_complete, config
        self.infos: dict[str, CommitInfo] = {}
        self._ev: dict[str, _Evidence] = {}

    def complete_for(self, info: CommitInfo) -> bool:
        if self.notes_complete is not None:
            return self.notes_complete
        since = self.config.notes_complete_since
        return since is not None and info.time >= since.timestamp()

    def load(self, shas: Iterable[str]) -> None:
        """Fetch the commit headers and notes of ``shas`` not yet known (two git processes at most)."""
        shas = list(dict.fromkeys(shas))
        self.infos.update(read_commits(self.git, [s for s in shas if s not in self.infos], self.rules))
        self.load_notes(shas)

    def load_notes(self, shas: Iterable[str]) -> None:
        need = [s for s in dict.fromkeys(shas) if s not in self.notes]
        blobs = self.git.cat_blobs(sorted({self.note_blobs[s] for s in need if s in self.note_blobs}))
        for s in need:
            b = self.note_blobs.get(s)
            self.notes[s] = parse_git_ai_note(blobs[b], f"git-ai note on commit {s[:12]} ({self.notes_ref})") \
                if b is not None else None

    def used(self) -> list[_Evidence]:
        return list(self._ev.values())

    def evidence(self, sha: str) -> _Evidence:
        ev = self._ev.get(sha)
        if ev is None:
            if sha not in self.infos or sha not in self.notes:
                self.load([sha])
            info = self.infos[sha]
            traces = self.trace_for.get(sha)
            if traces:
                self.trace_used.add(sha)
            ev = _Evidence(info, self.notes[sha], traces, self.complete_for(info))
            self._ev[sha] = ev
        return ev
