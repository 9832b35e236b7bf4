"""Window mode: the lines added by the first-parent commits committed in a window."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from redline.errors import (
    CodeShareError,
    EmptyWindow,
    HistoryMissing,
)
from redline.indicators.codeshare.commits import CommitInfo
from redline.indicators.codeshare.constants import NOTES_REF
from redline.indicators.codeshare.diffs import _SEGMENT_MIN, _added_lines, _FileHunks
from redline.indicators.codeshare.evidence import _EvidenceSource
from redline.indicators.codeshare.git import Git
from redline.indicators.codeshare.merges import _attribute_merges, _MergePlan, _prepare_merges
from redline.indicators.codeshare.repoconfig import parse_time
from redline.indicators.codeshare.results import CodeShareResult, _finish, _Tally
from redline.indicators.codeshare.rules import Filters, Rules, load_rules
from redline.indicators.codeshare.sources import _completeness, _load_config, _load_traces, _repo_label
from redline.times import format_utc, from_seconds


def code_share(repo: str | Path, *, branch: str = "HEAD", since: datetime | str | None = None,
               until: datetime | str | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
               default_ignore: bool = True, rules: Rules | str | Path | None = None,
               notes_complete: bool | None = None, agent_trace: str | Path | None = None,
               agent_trace_revision: str = "commit", notes_ref: str = NOTES_REF,
               jobs: int | None = None) -> CodeShareResult:
    """Measure the AI share of the lines added to ``branch`` by commits committed in ``[since, until)``.

    ``notes_complete``: ``True`` asserts that every commit in the window that has AI-written lines
    carries a git-ai note (so a commit without one is human); ``False`` refuses any such
    declaration; ``None`` (the default) uses the repository's own declaration, if any.
    ``agent_trace``: an Agent Trace JSONL file to use instead of ``.agent-trace/traces.jsonl`` at
    the tip. ``agent_trace_revision``: ``"commit"`` (the Agent Trace spec: a record's revision is
    the commit holding the lines) or ``"parent"`` (the reference hook's behaviour: the revision is
    the HEAD the edit was made on, so the lines land in its first-parent child on this branch).
    """
    if agent_trace_revision not in ("commit", "parent"):
        raise CodeShareError("agent_trace_revision must be 'commit' or 'parent'")
    git = Git(repo)
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    since_dt = parse_time(since, "since") if since is not None else None
    until_dt = parse_time(until, "until") if until is not None else None
    if since_dt and until_dt and not since_dt < until_dt:
        raise EmptyWindow(f"the window [{format_utc(since_dt)}, {format_utc(until_dt)}) is empty: 'since' must be "
                          "before 'until'")
    tip = git.resolve(branch, "branch")
    lo = since_dt.timestamp() if since_dt else None
    hi = until_dt.timestamp() if until_dt else None

    # The first-parent chain from the commit-graph: (sha, committer time, first parent); the next entry is the
    # first parent, except past a root or a shallow boundary.
    stamps = git.out("rev-list", "--first-parent", "--timestamp", tip, "--").decode().split()
    shas, cts = stamps[1::2], [int(t) for t in stamps[0::2]]
    fp_merges = set(git.out("rev-list", "--first-parent", "--merges", tip, "--").decode().split())
    shallow = git.shallow_commits() if git.is_shallow() else frozenset()
    walk = [(sha, ct, shas[i + 1] if i + 1 < len(shas) and sha not in shallow else None)
            for i, (sha, ct) in enumerate(zip(shas, cts))]
    for sha, ct, _ in walk:
        if sha in shallow and (lo is None or ct >= lo):
            need = f"the window starts {format_utc(since_dt)}" if since_dt else "the window is the whole history"
            raise HistoryMissing(
                f"{git.path} is a shallow clone and the history before commit {sha[:12]} "
                f"({format_utc(from_seconds(ct))}) is missing, but {need}; fetch more (git fetch "
                "--shallow-since=DATE, --deepen=N or --unshallow)")
    chosen_idx = [i for i, (_, ct, _) in enumerate(walk) if (lo is None or ct >= lo) and (hi is None or ct < hi)]
    window_text = (f"[{format_utc(since_dt) if since_dt else 'beginning'}, "
                   f"{format_utc(until_dt) if until_dt else 'now'})")
    if not chosen_idx:
        raise EmptyWindow(f"no commits on the first-parent history of {branch} ({tip[:12]}) were committed in "
                          f"the window {window_text}")
    selected = [walk[i] for i in reversed(chosen_idx)]  # oldest first
    chosen = {sha for sha, _, _ in selected}
    child_of = {fp: sha for sha, _, fp in selected if fp}

    config = _load_config(git, tip)
    traces = _load_traces(git, tip, rules, agent_trace)
    src = _EvidenceSource(git, rules, notes_ref=notes_ref, traces=traces, trace_revision=agent_trace_revision,
                          notes_complete=notes_complete, config=config, child_of=child_of)
    filters = Filters(tuple(include), tuple(exclude), default_ignore)
    pf = filters.compile(rules)

    # The span from the newest to the oldest chosen commit, cut into segments diffed by parallel git processes,
    # while another thread loads the notes and prepares the merges.
    span = walk[chosen_idx[0]:chosen_idx[-1] + 1]
    newest, boundary = span[0][0], span[-1][2]
    workers = jobs or min(4, os.cpu_count() or 1)
    size = max(_SEGMENT_MIN, -(-len(span) // workers))
    segments = [span[i:i + size] for i in range(0, len(span), size)]
    merges = [sha for sha, _, _ in selected if sha in fp_merges]

    on_mainline = {sha for sha, _, _ in walk}

    def diff_segment(seg: list[tuple[str, int, str | None]]) -> list[Any]:
        return list(_added_lines(git, seg[0][0], seg[-1][2], rules, lambda p: pf.classify(p) is not None,
                                 mainline=on_mainline if merges else None))

    def evidence_job() -> _MergePlan | None:
        src.load_notes(chosen)
        if not merges:
            return None
        return _prepare_merges(git, src, merges, shallow, newest=newest, boundary=boundary,
                               mainline=[sha for sha, _, _ in reversed(walk)])

    with ThreadPoolExecutor(max_workers=len(segments) + 1) as pool:
        plan_future = pool.submit(evidence_job)
        streamed = list(pool.map(diff_segment, segments))
        plan = plan_future.result()

    tally = _Tally()
    pending: list[tuple[CommitInfo, str, str, list[int]]] = []
    side_hunks: dict[str, _FileHunks] = {}
    for item in (item for part in streamed for item in part):
        if len(item) == 2:  # a commit a merge brings in
            src.infos.setdefault(item[0].sha, item[0])
            side_hunks[item[0].sha] = item[1]
            continue
        info, path, added = item
        if info.sha not in chosen:
            continue  # inside the span but committed outside the window (committer dates are not monotonic)
        src.infos.setdefault(info.sha, info)
        cls = pf.classify(path) if path is not None else None
        if cls is None:
            continue
        if len(info.parents) > 1:
            pending.append((info, path, cls, added))  # judged by the commits that wrote the lines, below
        else:
            tally.add(info.sha, cls, src.evidence(info.sha).file(path), added)
    if pending:
        assert plan is not None
        plan.diffs.update(side_hunks)
        _attribute_merges(git, src, tally, pending, plan, jobs)

    times = [ct for _, ct, _ in selected]
    return _finish(tally, src, empty_message=(
        f"the window {window_text} of {branch} ({tip[:12]}) has {len(selected)} commit(s) but no countable added "
        "lines (after blank lines, ignored files and include/exclude globs)"),
        mode="window", repository=_repo_label(git), branch=branch, tip=tip, start=None,
        window_start=since_dt or from_seconds(min(times)), window_end=until_dt or from_seconds(max(times)),
        since=since_dt, until=until_dt, filters=filters,
        notes_complete=_completeness(notes_complete, config), population_commits=len(selected), merges=len(merges))
