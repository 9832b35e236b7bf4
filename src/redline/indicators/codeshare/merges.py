"""Merge commits: the lines they bring in, judged by the commits that wrote them."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redline.errors import (
    HistoryMissing,
)
from redline.indicators.codeshare.blame import _blame, _parallel
from redline.indicators.codeshare.commits import CommitInfo
from redline.indicators.codeshare.diffs import _file_diffs, _FileHunks
from redline.indicators.codeshare.evidence import _EvidenceSource
from redline.indicators.codeshare.git import Git
from redline.indicators.codeshare.results import _Tally


def _mainline_sides(git: Git, newest: str, boundary: str | None, mainline: Sequence[str]) \
        -> tuple[dict[str, list[str]], dict[str, tuple[str, ...]]]:
    """For every merge on the first-parent chain: the commits it brings in (``rev-list M^1..M``), newest first.

    One ``git rev-list --parents`` over the span; then each mainline commit, oldest first, claims
    the commits reachable from it that no earlier one claimed.
    """
    graph: dict[str, tuple[str, ...]] = {}
    for line in git.out("rev-list", "--parents", newest, *([f"^{boundary}"] if boundary else []), "--") \
            .decode().splitlines():
        parts = line.split()
        graph[parts[0]] = tuple(parts[1:])
    claimed: set[str] = set()
    sides: dict[str, list[str]] = {}
    for m in mainline:
        if m not in graph:
            continue
        claimed.add(m)
        parents = graph[m]
        if len(parents) < 2:
            continue
        found: list[str] = []
        stack = list(reversed(parents[1:]))
        while stack:
            c = stack.pop()
            if c in claimed or c not in graph:
                continue
            claimed.add(c)
            found.append(c)
            stack.extend(reversed(graph[c]))
        sides[m] = found
    return sides, graph


def _through(lines: list[tuple[int, int]], hunks: list[tuple[int, ...]]) \
        -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split ``(key, line)`` pairs (new-side numbers) into the lines the diff added and the others (mapped to
    old-side numbers)."""
    ends: list[int] = []
    deltas: list[int] = []
    added: list[tuple[int, int]] = []
    total = 0
    for _, oc, ns, nc in sorted(hunks, key=lambda h: h[2]):
        ends.append(ns + nc - 1 if nc else ns)
        total += nc - oc
        deltas.append(total)
        if nc:
            added.append((ns, ns + nc - 1))
    made, kept = [], []
    starts = [a for a, _ in added]
    for key, n in lines:
        i = bisect.bisect_right(starts, n) - 1
        if i >= 0 and n <= added[i][1]:
            made.append((key, n))
            continue
        j = bisect.bisect_left(ends, n) - 1  # the last hunk that ends before n
        kept.append((key, n - (deltas[j] if j >= 0 else 0)))
    return made, kept


def _track_linear(merge: CommitInfo, chain: Sequence[str], path: str, added: list[int],
                  diffs: Mapping[str, Mapping[str, tuple[str | None, list[tuple[int, ...]]]]]) \
        -> dict[tuple[str, str], list[int]] | None:
    """Where each of ``added`` (lines of ``path`` at the merge) was written, following the merged commits' diffs.

    ``chain`` is the merged side branch, newest first, each commit with one parent. The
    merge's diff against its second parent gives the lines the merge itself wrote; each side
    commit's diff against its parent gives the lines it wrote, and maps the others one step
    back -- what ``git blame MERGE^1..MERGE`` does. Lines that reach the side branch's base
    are judged by the merge (as a blame boundary would be). ``None`` when the path history
    cannot be followed this way.
    """
    out: dict[tuple[str, str], list[int]] = {}
    todo = [(n, n) for n in added]  # (line at the merge, line at the current commit)
    cur_path = path
    for sha, rec in [(merge.sha, diffs.get(merge.sha, {}).get(path)), *((c, None) for c in chain)]:
        if sha != merge.sha:
            rec = diffs.get(sha, {}).get(cur_path)
        if rec is None:
            continue  # the file did not change in this step
        old_path, hunks = rec
        if old_path is None:
            out.setdefault((sha, cur_path), []).extend(n for _, n in todo)
            return out
        made, todo = _through(todo, hunks)
        if made:
            out.setdefault((sha, cur_path), []).extend(n for _, n in made)
        cur_path = old_path
        if not todo:
            return out
    for key, _ in todo:
        out.setdefault((merge.sha, path), []).append(key)
    return out


@dataclass
class _MergePlan:
    """What attributing merges needs, prepared while the diffs stream: side branches, chains and their diffs."""

    sides: dict[str, list[str]]
    chains: dict[str, list[str]]
    diffs: dict[str, _FileHunks]


def _prepare_merges(git: Git, src: _EvidenceSource, merges: Sequence[str], shallow: frozenset[str], *,
                    newest: str, boundary: str | None, mainline: Sequence[str]) -> _MergePlan:
    """Find what each merge brings in, load those commits' headers and notes, and diff the linear side branches."""
    if shallow:
        for m in merges:
            cut = shallow & set(git.out("rev-list", f"{m}^1..{m}").decode().split())
            if cut:
                raise HistoryMissing(f"{git.path} is a shallow clone and the history merged by {m[:12]} is cut "
                                     f"at {min(cut)[:12]}; fetch more history")
    sides, graph = _mainline_sides(git, newest, boundary, mainline)
    src.load_notes([*merges, *(c for m in merges for c in sides.get(m, ()))])
    chains: dict[str, list[str]] = {}
    for m in merges:
        side = sides.get(m, [])
        parents = graph.get(m, ())
        chain, c = [], parents[1] if len(parents) == 2 else None
        members = set(side)
        while c is not None and c in members:
            cp = graph.get(c, ())
            if len(cp) != 1:
                break
            chain.append(c)
            c = cp[0]
        if len(parents) == 2 and len(chain) == len(side):
            chains[m] = chain
    # The side commits' own diffs come with the main stream; here only each merge against its second parent.
    diffs = _file_diffs(git, [f"{m} {graph[m][1]}" for m in chains])
    return _MergePlan(sides, chains, diffs)


def _attribute_merges(git: Git, src: _EvidenceSource, tally: _Tally,
                      pending: list[tuple[CommitInfo, str, str, list[int]]], plan: _MergePlan,
                      jobs: int | None) -> None:
    """Count the lines merge commits bring in, each judged by the evidence of the commit that wrote it.

    For a merge of a linear side branch (the usual pull request), each line is followed back
    through the merge's diff against its second parent and the side commits' own diffs (one
    ``git diff-tree --stdin`` for all merges); otherwise ``git blame MERGE^1..MERGE -- PATH``
    names the commit. A line that reaches the side branch's base (the two diffs may disagree)
    or that the merge itself wrote is judged by the merge's own evidence. The lines count under
    the merge's row, tagged ``merged-from:N`` (N: the commits the merge brought in).
    """
    results: list[dict[tuple[str, str], list[int]] | None] = [
        _track_linear(info, plan.chains[info.sha], path, added, plan.diffs) if info.sha in plan.chains else None
        for info, path, _, added in pending]
    fallback = [i for i, r in enumerate(results) if r is None]
    blamed = _parallel(jobs, lambda i: _blame(git, (), f"{pending[i][0].sha}^1..{pending[i][0].sha}", pending[i][1]),
                       fallback)
    src.load({b.commit for bl in blamed for b in bl if not b.boundary})
    for i, bl in zip(fallback, blamed):
        info, path, _, added = pending[i]
        by_final = {b.final: b for b in bl}
        groups: dict[tuple[str, str], list[int]] = {}
        for n in added:
            b = by_final.get(n)
            if b is not None and not b.boundary:
                groups.setdefault((b.commit, b.orig_path), []).append(b.orig_line)
            else:
                groups.setdefault((info.sha, path), []).append(n)
        results[i] = groups
    for (info, _, cls, _), groups in zip(pending, results):
        assert groups is not None
        for (sha, opath), lines in groups.items():
            tally.add(info.sha, cls, src.evidence(sha).file(opath), sorted(lines))
    for m in dict.fromkeys(info.sha for info, _, _, _ in pending):
        for c in plan.sides.get(m, ()):
            src.evidence(c)  # every merged commit's markers count, whichever lines survived to the merge
        tally.extra.setdefault(m, set()).add(f"merged-from:{len(plan.sides.get(m, ()))}")
