#!/usr/bin/env python3
"""Benchmark: AI code share over 10,000 commits, against the per-file ``git blame`` loops it replaces.

Two comparisons on the same generated repository, each baseline and redline in the same process:

1. Survival mode against aider's method (the ratio printed last). Baseline: what aider's
   ``scripts/blame.py`` runs for one release range START..END, reimplemented here from its
   description: ``git rev-list START..END``, two ``git show -s`` per commit (author name, subject),
   ``git ls-tree -r END``, aider's file list, then one ``git blame -M100 -C100 -C -C START..END
   -- FILE`` per file, one after another, counting non-boundary lines per author. redline:
   ``survival(repo, "START..END", profile="aider")``: blames only the files the range touched, in
   parallel, from an uncompressed, undeltified copy of the range's objects in a temporary directory
   (``redline.indicators.codeshare.objcache``); it is also run once without that copy
   (``object_cache=False``) to show what each part brings. Same flags, same files: the counts must
   be identical (checked, all three; the run fails otherwise). Goal: >= 3x faster.
2. Window mode against a blame of every file at the tip. This measures something different (the
   lines each commit added, not the lines that survive) and is kept as the earlier benchmark:

* baseline: for every file in the tip's tree, one ``git blame --porcelain TIP -- FILE``
  (the usual way to ask "who wrote these lines"), one process after another, output parsed;
* redline: ``redline.indicators.codeshare.code_share`` in window mode over the whole
  first-parent history: ``git log --first-parent -p`` streams (one per CPU, up to 4, each
  over a segment of the history) for every diff and header, one ``git cat-file --batch``
  for the notes, one ``git diff-tree --stdin`` for what merge commits bring in. The median
  of ``--repeat`` runs (default 3) is compared; its result is printed too.

The repository (``--commits``, default 10,000) is generated deterministically from ``--seed``
with ``git fast-import``: ~400 files (source, tests, docs, config, vendored code and a lock
file), each commit inserting and deleting lines in one to three of them, 2% of mainline
steps are merge commits of one- or two-commit side branches, ~30% of commits carry an AI
co-author trailer (Claude, Codex, Copilot, a bot author or aider), ~20% carry a git-ai note
under ``refs/notes/ai`` attesting part of what they added. It is then ``git gc``'d (packed,
with a commit-graph: the state a maintained clone is in), and a copy also gets changed-path
Bloom filters in its commit-graph (``git commit-graph write --changed-paths``, what makes
``git blame`` fastest): the baseline is timed on both, redline on the first. The
repositories are cached in ``bench/out/``, keyed by the parameters.

Goals: survival with the aider profile at least 3x faster than aider's loop, with identical
counts; window mode at least 10x faster than the tip blame loop.

Run:  .venv/bin/python bench/codeshare.py               (10,000 commits, release range of 1,000)
      .venv/bin/python bench/codeshare.py --quick       (2,000 commits, release range of 200)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from redline.indicators.codeshare import code_share, survival  # noqa: E402

OUT = ROOT / "bench" / "out"
FORMAT_VERSION = 3
SESSION = "5eed5eed5eed5eed"
TRAILERS = ["Co-authored-by: Claude <noreply@anthropic.com>", "Co-authored-by: Codex <noreply@openai.com>",
            "Co-authored-by: Copilot <175728472+Copilot@users.noreply.github.com>",
            "Co-authored-by: aider (gpt-4o) <aider@aider.chat>"]
HUMANS = [("Ada Lovelace", "ada@lab.example"), ("Alan Turing", "alan@lab.example"),
          ("Grace Hopper", "grace@lab.example"), ("Edsger Dijkstra", "edsger@lab.example")]
BOT = ("claude[bot]", "209825114+claude[bot]@users.noreply.github.com")


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    return subprocess.run(["git", *args], cwd=repo, input=input, env=env, check=True, capture_output=True).stdout


def _files(rng: random.Random) -> list[str]:
    files = [f"src/mod{m}/part{j}.py" for m in range(20) for j in range(12)]
    files += [f"tests/mod{m}/test_part{j}.py" for m in range(20) for j in range(4)]
    files += [f"docs/guide{j}.md" for j in range(20)] + [f"config/service{j}.yaml" for j in range(20)]
    files += [f"vendor/lib{j}/index.js" for j in range(30)] + ["package-lock.json"]
    rng.shuffle(files)
    return files


def _note(spans: dict[str, tuple[int, int]]) -> bytes:
    head = "".join(f"{p}\n  {SESSION} {a}-{b}\n" for p, (a, b) in sorted(spans.items()))
    meta = {"schema_version": "authorship/3.0.0", "git_ai_version": "bench", "base_commit_sha": "0" * 40,
            "prompts": {SESSION: {"agent_id": {"tool": "claude", "id": "bench", "model": "claude-opus-4"},
                                  "messages": [], "total_additions": 0, "total_deletions": 0,
                                  "accepted_lines": 0, "overriden_lines": 0}}}
    return (head + "---\n" + json.dumps(meta)).encode()


def generate(repo: Path, commits: int, seed: int) -> None:
    """Write a ``git fast-import`` stream of ``commits`` commits and import it into a bare repository."""
    rng = random.Random(seed)
    files = _files(rng)
    weights = [0.2 if p.startswith("vendor/") or p == "package-lock.json" else 1.0 for p in files]
    content: dict[str, list[str]] = {}
    out: list[bytes] = []
    notes: list[tuple[int, bytes]] = []
    t = 1_700_000_000
    mark = 0
    main_tip = 0
    counter = 0

    def data(b: bytes) -> None:
        out.append(b"data %d\n" % len(b))
        out.append(b)
        out.append(b"\n")

    def change(k: int) -> tuple[dict[str, list[str]], dict[str, tuple[int, int]]]:
        nonlocal counter
        changed: dict[str, list[str]] = {}
        spans: dict[str, tuple[int, int]] = {}
        for path in rng.choices(files, weights, k=k):
            lines = list(changed.get(path, content.get(path, [])))
            if lines and rng.random() < 0.5:
                d = rng.randrange(len(lines))
                del lines[d:d + rng.randint(1, 4)]
            n = rng.randint(1, 16)
            at = rng.randint(0, len(lines))
            new = []
            for _ in range(n):
                counter += 1
                new.append("" if rng.random() < 0.1 else
                           f"    value_{counter} = compute(alpha={counter % 97}, beta={rng.randrange(10**6)})")
            lines[at:at] = new
            changed[path] = lines
            spans[path] = (at + 1, at + n)
        return changed, spans

    def commit(ref: str, parents: list[int], changed: dict[str, list[str]], spans: dict[str, tuple[int, int]],
               ai: bool = True) -> int:
        nonlocal mark, t
        mark += 1
        t += rng.randint(600, 7200)
        who = rng.choice(HUMANS)
        msg = f"change {mark}: touch {', '.join(sorted(changed))[:120]}\n"
        roll = rng.random()
        if ai and roll < 0.26:
            msg += "\nSome explanation of the change.\n\n" + rng.choice(TRAILERS) + "\n"
        elif ai and roll < 0.28:
            who = BOT
        committer = who
        if ai and roll < 0.30:  # aider wrote it (aider/repo.py: author and committer "<user> (aider)")
            who = committer = (who[0] + " (aider)", who[1])
            if roll < 0.285:
                msg = "aider: " + msg  # older aider: the subject prefix
        elif ai and roll < 0.45:  # the user's own change, committed through aider: the committer only
            committer = (who[0] + " (aider)", who[1])
        out.append(f"commit {ref}\nmark :{mark}\n".encode())
        out.append(f"author {who[0]} <{who[1]}> {t - rng.randint(0, 86400)} +0000\n".encode())
        out.append(f"committer {committer[0]} <{committer[1]}> {t} +0000\n".encode())
        data(msg.encode())
        if parents:
            out.append(f"from :{parents[0]}\n".encode())
            for p in parents[1:]:
                out.append(f"merge :{p}\n".encode())
        for path, lines in changed.items():
            out.append(f"M 100644 inline {path}\n".encode())
            data(("\n".join(lines) + "\n").encode() if lines else b"")
        if ai and rng.random() < 0.2 and spans:
            path = rng.choice(sorted(spans))
            a, b = spans[path]
            notes.append((mark, _note({path: (a, a + (b - a) // 2)})))
        return mark

    # The first commit creates every file.
    first = {p: [f"# {p}", f"    base_{i} = 0" ] for i, p in enumerate(files)}
    main_tip = commit("refs/heads/main", [], first, {}, ai=False)
    content.update(first)
    made = 1
    while made < commits:
        if rng.random() < 0.02 and commits - made >= 3:
            side_n = rng.randint(1, 2)
            side_tip, side_content = main_tip, {}
            for _ in range(side_n):
                saved = dict(content)
                content.update(side_content)
                changed, spans = change(rng.randint(1, 2))
                content.clear()
                content.update(saved)
                side_content.update(changed)
                side_tip = commit("refs/heads/side", [side_tip], changed, spans)
            # The merge's tree: main's plus the side branch's files (main did not move meanwhile).
            main_tip = commit("refs/heads/main", [main_tip, side_tip], side_content, {}, ai=False)
            content.update(side_content)
            made += side_n + 1
        else:
            changed, spans = change(rng.choices([1, 2, 3], [6, 3, 1])[0])
            main_tip = commit("refs/heads/main", [main_tip], changed, spans)
            content.update(changed)
            made += 1
    out.append(b"commit refs/notes/ai\ncommitter Notes <notes@lab.example> %d +0000\n" % t)
    data(b"git-ai notes")
    for m, text in notes:
        out.append(f"N inline :{m}\n".encode())
        data(text)
    out.append(b"reset refs/heads/side\nfrom 0000000000000000000000000000000000000000\n\n")
    _git(repo.parent, "init", "-q", "--bare", "-b", "main", str(repo))
    _git(repo, "fast-import", "--quiet", "--done", input=b"".join(out) + b"done\n")
    _git(repo, "gc", "--quiet")  # the state a maintained clone is in: packed, with a commit-graph


def ensure_repo(commits: int, seed: int) -> tuple[Path, Path]:
    """The generated repository as ``git gc`` leaves it, and a copy whose commit-graph also has changed-path
    Bloom filters (``git commit-graph write --changed-paths``: what makes ``git blame`` fastest)."""
    repo = OUT / f"codeshare-repo-v{FORMAT_VERSION}-n{commits}-seed{seed}.git"
    bloom = OUT / f"codeshare-repo-v{FORMAT_VERSION}-n{commits}-seed{seed}-bloom.git"
    if (repo / "redline-bench-complete").exists() and (bloom / "redline-bench-complete").exists():
        return repo, bloom
    for d in (repo, bloom):
        if d.exists():
            shutil.rmtree(d)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    generate(repo, commits, seed)
    _git(OUT, "clone", "-q", "--bare", "--local", str(repo), str(bloom))
    _git(bloom, "fetch", "-q", str(repo), "refs/notes/ai:refs/notes/ai")
    _git(bloom, "commit-graph", "write", "--reachable", "--changed-paths")
    for d in (repo, bloom):
        (d / "redline-bench-complete").write_text("ok\n")
    print(f"generated {repo.relative_to(ROOT)} (and a copy with Bloom filters) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return repo, bloom


def _cpu() -> float:
    """CPU seconds (user + system) of this process and its finished children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def baseline(repo: Path, tip: str) -> tuple[float, float, int, int]:
    """Blame every file of the tip, one ``git blame`` process per file; return wall and CPU seconds, files, lines."""
    paths = [p for p in _git(repo, "ls-tree", "-r", "-z", "--name-only", tip).split(b"\0") if p]
    t0, c0 = time.perf_counter(), _cpu()
    lines = 0
    for p in paths:
        out = _git(repo, "blame", "--porcelain", tip, "--", p.decode())
        lines += sum(1 for line in out.split(b"\n") if line.startswith(b"\t"))
    return time.perf_counter() - t0, _cpu() - c0, len(paths), lines


_AIDER_WEBSITE = {"aider/website/index.html", "aider/website/share/index.md",
                  "aider/website/_includes/head_custom.html", "aider/website/_includes/home.css",
                  "aider/website/docs/leaderboards/index.md"}


def _aider_file(f: str) -> bool:
    """aider's file selection, as its script states it (suffixes, two .yml directories, pages, fixtures)."""
    keep = (f.endswith((".js", ".py", ".scm", ".sh", "Dockerfile", "Gemfile"))
            or (f.startswith(".github/workflows/") and f.endswith(".yml"))
            or (f.startswith("aider/resources/") and f.endswith(".yml"))
            or f in _AIDER_WEBSITE or (f.startswith("tests/fixtures/languages/") and "/test." in f))
    return keep and not f.endswith("prompts.py") and not f.startswith("tests/fixtures/watch") and \
        f not in ("aider/website/install.ps1", "aider/website/install.sh")


def aider_loop(repo: Path, start: str, end: str) -> tuple[float, float, int, int, int, int]:
    """aider's per-file method for START..END: wall and CPU seconds, commits, files, aider's lines, all lines."""
    t0, c0 = time.perf_counter(), _cpu()
    commits = _git(repo, "rev-list", f"{start}..{end}").decode().split()
    authors = {}
    for c in commits:
        name = _git(repo, "show", "-s", "--format=%an", c).decode().strip()
        if _git(repo, "show", "-s", "--format=%s", c).decode().strip().lower().startswith("aider:"):
            name += " (aider)"
        authors[c[:9]] = name
    files = [f for f in _git(repo, "ls-tree", "-r", "--name-only", end).decode().splitlines() if _aider_file(f)]
    aider = total = 0
    for f in files:
        out = _git(repo, "blame", "-M100", "-C100", "-C", "-C", "--abbrev=9", f"{start}..{end}", "--", f).decode()
        for line in out.splitlines():
            if line.startswith("^"):
                continue
            total += 1
            aider += "(aider)" in authors.get(line[:9], "Unknown").lower()
    return time.perf_counter() - t0, _cpu() - c0, len(commits), len(files), aider, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000, help="commits in the generated repository")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2,000 commits")
    ap.add_argument("--jobs", type=int, default=None,
                    help="redline's parallel git processes (default: up to 4, one per CPU)")
    ap.add_argument("--repeat", type=int, default=3, help="redline runs (the median is compared)")
    ap.add_argument("--release", type=int, default=None,
                    help="first-parent commits in the survival range END~N..END (default: a tenth of --commits)")
    args = ap.parse_args()
    commits = 2_000 if args.quick else args.commits
    release = args.release or commits // 10
    repo, bloom = ensure_repo(commits, args.seed)
    tip = _git(repo, "rev-parse", "main").decode().strip()
    git_version = _git(repo, "--version").decode().strip()
    print(f"repository: {repo.relative_to(ROOT)} ({commits} commits, tip {tip[:12]}); {git_version}; "
          f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

    print("-- window mode vs a blame of every file at the tip (a different measurement: lines added per commit, "
          "not lines surviving) --", flush=True)
    times, cpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), _cpu()
        result = code_share(repo, branch="main", jobs=args.jobs)
        times.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    redline_s, redline_cpu = statistics.median(times), statistics.median(cpus)
    t = result.totals
    print(f"redline result: {result.population_commits} commits ({result.merges} merges), {t.total} lines; "
          f"point {t.point:.3f}, interval [{t.lower_bound:.3f}, {t.upper_bound:.3f}], unknown "
          f"{t.unknown_share:.3f}; evidence digest {result.evidence_digest[:16]}", flush=True)

    base_s, base_cpu, nfiles, nlines = baseline(repo, tip)
    bloom_s, bloom_cpu, _, _ = baseline(bloom, tip)
    print(f"baseline: per-file git blame loop over {nfiles} files ({nlines} lines at the tip): "
          f"{base_s:.2f} s ({base_cpu:.2f} s CPU) as git gc leaves the repository; "
          f"{bloom_s:.2f} s ({bloom_cpu:.2f} s CPU) with changed-path Bloom filters")
    print(f"redline: code-share window mode over {commits} commits: {redline_s:.2f} s ({redline_cpu:.2f} s CPU; "
          f"median of {args.repeat}: {', '.join(f'{x:.2f}' for x in times)} s)")
    print(f"window ratio: {base_s / redline_s:.1f}x against the tip blame loop ({base_cpu / redline_cpu:.1f}x in "
          f"CPU); {bloom_s / redline_s:.1f}x against it with Bloom filters ({bloom_cpu / redline_cpu:.1f}x in CPU); "
          f"goal >= 10x", flush=True)

    print(f"-- survival mode, aider profile, vs aider's per-file blame loop, release range main~{release}..main --",
          flush=True)
    start = _git(repo, "rev-parse", f"main~{release}").decode().strip()
    load0 = os.getloadavg()[0]
    stimes, scpus = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), _cpu()
        res = survival(repo, f"{start}..{tip}", profile="aider", jobs=args.jobs)
        stimes.append(time.perf_counter() - t0)
        scpus.append(_cpu() - c0)
    surv_s, surv_cpu = statistics.median(stimes), statistics.median(scpus)
    t0, c0 = time.perf_counter(), _cpu()
    plain = survival(repo, f"{start}..{tip}", profile="aider", jobs=args.jobs, object_cache=False)
    plain_s, plain_cpu = time.perf_counter() - t0, _cpu() - c0
    load1 = os.getloadavg()[0]
    loop_s, loop_cpu, ncommits, nfiles, aider, total = aider_loop(repo, start, tip)
    load2 = os.getloadavg()[0]
    got = (res.totals.ai_commit + res.totals.ai_line, res.totals.total)
    same = got == (aider, total) == (plain.totals.ai_commit + plain.totals.ai_line, plain.totals.total)
    print(f"aider's loop: {ncommits} commits (2 git show each), {nfiles} files blamed one after another: {aider} of "
          f"{total} lines by aider ({100 * aider / max(total, 1):.2f}%); {loop_s:.2f} s ({loop_cpu:.2f} s CPU); "
          f"load average {load1:.1f} before, {load2:.1f} after")
    print(f"redline survival --profile aider, without the blame object cache (touched files only, {os.cpu_count()} "
          f"CPUs): {plain.totals.ai_commit} of {plain.totals.total} lines; {plain_s:.2f} s ({plain_cpu:.2f} s CPU)")
    print(f"redline survival --profile aider: {res.totals.ai_commit} of {res.totals.total} lines "
          f"({100 * res.point:.2f}%); {surv_s:.2f} s ({surv_cpu:.2f} s CPU; median of {args.repeat}: "
          f"{', '.join(f'{x:.2f}' for x in stimes)} s); load average {load0:.1f} before; counts identical: {same}")
    if not same:
        raise SystemExit(f"counts differ from aider's loop: redline {got}, aider's loop {(aider, total)}")
    print(f"ratio: {loop_s / surv_s:.1f}x against aider's per-file blame loop ({loop_cpu / surv_cpu:.1f}x in CPU; "
          f"without the object cache {loop_s / plain_s:.1f}x); goal >= 3x with identical counts")

if __name__ == "__main__":
    main()
