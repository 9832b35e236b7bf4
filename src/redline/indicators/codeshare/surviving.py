"""Survival mode: the lines added after START that still exist at END (``survival``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from redline.errors import (
    CodeShareError,
    EmptyWindow,
    HistoryMissing,
)
from redline.indicators.codeshare.blame import _blame, _parallel
from redline.indicators.codeshare.constants import NOTES_REF
from redline.indicators.codeshare.evidence import _EvidenceSource
from redline.indicators.codeshare.git import Git, _path
from redline.indicators.codeshare.objcache import blame_object_cache
from redline.indicators.codeshare.profiles import Profile, get_profile
from redline.indicators.codeshare.repoconfig import RepoConfig
from redline.indicators.codeshare.results import CodeShareResult, _finish, _Tally
from redline.indicators.codeshare.rules import Filters, Rules, builtin_rules, load_rules
from redline.indicators.codeshare.sources import _completeness, _load_config, _load_traces, _repo_label
from redline.times import from_seconds


def _touched_files(git: Git, start: str, end: str) -> set[str]:
    """Every path that some commit in ``start..end`` changed against one of its parents (merges: against each).

    A path no commit in the range touched has the same blob at END as at the boundary, and git blame
    hands all of it to the boundary (a parent with an identical blob takes all the blame before any
    move or copy detection runs), so blaming it would add nothing.
    """
    out = git.out("log", "--format=", "--name-only", "-z", "--no-renames", "-m", "--no-ext-diff", "--no-textconv",
                  f"{start}..{end}", "--")
    return {_path(p.strip(b"\n")) for p in out.split(b"\x00") if p.strip(b"\n")}


def _tree_files(git: Git, end: str) -> dict[str, str]:
    """Path -> blob id of END's files and symbolic links (not submodules)."""
    files = {}
    for rec in git.out("ls-tree", "-r", "-z", "--full-tree", end).split(b"\x00"):
        if not rec:
            continue
        meta, _, path = rec.partition(b"\t")
        _mode, typ, oid = meta.split(b" ")
        if typ == b"blob":
            files[_path(path)] = oid.decode()
    return files


def _binary(git: Git, start: str, end: str, candidates: dict[str, str]) -> set[str]:
    """The candidates git takes for binary at END: by ``git diff --numstat`` where the file changed from START
    to END, else by git's own rule (a NUL in the first 8,000 bytes)."""
    binary, seen = set(), set()
    for rec in git.out("diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", "--no-textconv", start, end,
                       "--").split(b"\x00"):
        if not rec:
            continue
        a, _, rest = rec.partition(b"\t")
        _, _, p = rest.partition(b"\t")
        path = _path(p)
        seen.add(path)
        if a == b"-":
            binary.add(path)
    rest = {p: oid for p, oid in candidates.items() if p not in seen}
    blobs = git.cat_blobs(sorted(set(rest.values())))
    binary.update(p for p, oid in rest.items() if b"\x00" in blobs[oid][:8000])
    return binary


def survival(repo: str | Path, rev_range: str, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
             default_ignore: bool = True, rules: Rules | str | Path | None = None,
             notes_complete: bool | None = None, agent_trace: str | Path | None = None,
             agent_trace_revision: str = "commit", notes_ref: str = NOTES_REF,
             jobs: int | None = None, profile: str | Profile | None = None,
             object_cache: bool = True) -> CodeShareResult:
    """Measure the AI share of the lines added after START that still exist at END (``rev_range`` is ``START..END``).

    Each line of END's tree that ``git blame START..END`` (the profile's flags: ``-M -C -C`` by default)
    attributes to a commit after START counts, judged by the evidence of that commit at the path and line
    number it had there. ``profile="aider"`` reproduces aider's ``scripts/blame.py`` (see
    :mod:`redline.indicators.codeshare.profiles`): its rules, files, blank lines and blame flags.
    ``include`` replaces the profile's include list; ``exclude`` adds to its exclude list.

    Only the files some commit of the range touched are blamed (the others are all boundary lines), ``jobs``
    at a time, from an uncompressed, undeltified copy of the range's objects in a temporary directory
    (:mod:`redline.indicators.codeshare.objcache`; ``object_cache=False`` blames from the repository's own
    object store): the counts are the same either way.
    """
    prof = get_profile(profile)
    start_rev, sep, end_rev = rev_range.partition("..")
    if not sep or not start_rev or not end_rev or end_rev.startswith("."):
        raise CodeShareError(f"survival range {rev_range!r} must be START..END (two revisions)")
    if agent_trace_revision not in ("commit", "parent"):
        raise CodeShareError("agent_trace_revision must be 'commit' or 'parent'")
    git = Git(repo)
    rules = rules if isinstance(rules, Rules) else load_rules(rules) if rules is not None else builtin_rules(prof.rules)
    start = git.resolve(start_rev, "survival START")
    end = git.resolve(end_rev, "survival END")
    if git._run(["merge-base", "--is-ancestor", start, end], check=False).returncode != 0:
        raise CodeShareError(f"survival START {start_rev} ({start[:12]}) is not an ancestor of END {end_rev} "
                             f"({end[:12]})")
    in_range = git.out("rev-list", f"{start}..{end}").decode().split()
    if not in_range:
        raise EmptyWindow(f"no commits between {start_rev} and {end_rev}: nothing can have been added")
    if git.is_shallow():
        cut = git.shallow_commits() & set(in_range)
        if cut:
            raise HistoryMissing(f"{git.path} is a shallow clone cut at {min(cut)[:12]}, inside "
                                 f"{start_rev}..{end_rev}; fetch more history")
    child_of = {}
    for line in git.out("log", "--first-parent", "--format=%H %P", f"{start}..{end}").decode().splitlines():
        parts = line.split()
        if len(parts) > 1:
            child_of[parts[1]] = parts[0]
    if rules.line_evidence:
        config = _load_config(git, end)
        traces = _load_traces(git, end, rules, agent_trace)
    else:
        config, traces, notes_complete = RepoConfig(), None, False
    src = _EvidenceSource(git, rules, notes_ref=notes_ref, traces=traces, trace_revision=agent_trace_revision,
                          notes_complete=notes_complete, config=config, child_of=child_of)
    filters = Filters(tuple(include) or prof.include, prof.exclude + tuple(exclude),
                      default_ignore and prof.default_ignore)
    pf = filters.compile(rules)

    tree = _tree_files(git, end)
    touched = _touched_files(git, start, end)
    candidates = {p: oid for p, oid in tree.items() if p in touched and pf.classify(p) is not None}
    skip = _binary(git, start, end, candidates) if not prof.count_blank else set()
    files = [(p, pf.classify(p)) for p in sorted(candidates) if p not in skip]
    with blame_object_cache(git, start, end) if object_cache and files else nullcontext(git) as bgit:
        blamed = _parallel(jobs, lambda f: _blame(bgit, prof.blame_flags, f"{start}..{end}", f[0]), files)
    src.load({b.commit for bl in blamed for b in bl if not b.boundary})
    tally = _Tally()
    count_blank = prof.count_blank
    for (_, cls), bl in zip(files, blamed):
        groups: dict[tuple[str, str], list[int]] = {}
        for b in bl:
            if not b.boundary and (count_blank or not b.blank):
                groups.setdefault((b.commit, b.orig_path), []).append(b.orig_line)
        for (sha, opath), lines in groups.items():
            tally.add(sha, cls, src.evidence(sha).file(opath), sorted(lines))
    st, et = src.infos.get(start), src.infos.get(end)
    if st is None or et is None:
        src.load([start, end])
        st, et = src.infos[start], src.infos[end]
    if st.time > et.time:
        raise CodeShareError(f"survival START {start_rev} was committed after END {end_rev}; cannot form a window")
    return _finish(tally, src, empty_message=(
        f"no countable lines added after {start_rev} survive at {end_rev} (after "
        f"{'' if count_blank else 'blank lines, '}ignored files and include/exclude globs)"),
        mode="survival", repository=_repo_label(git), branch=end_rev, tip=end, start=start,
        window_start=from_seconds(st.time), window_end=from_seconds(et.time), since=None, until=None, filters=filters,
        notes_complete=_completeness(notes_complete, config), population_commits=len(in_range),
        merges=int(git.out("rev-list", "--merges", "--count", f"{start}..{end}").decode().strip() or 0),
        profile=prof)
