#!/usr/bin/env python3
"""Benchmark: AI code share over 10,000 commits, against a plain per-file ``git blame`` loop.

Baseline and redline run in the same process on the same repository and range, ratio last:

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

The goal: window mode at least 10x faster than the blame loop.

Run:  .venv/bin/python bench/codeshare.py               (10,000 commits)
      .venv/bin/python bench/codeshare.py --quick       (2,000 commits)
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

from redline.indicators.codeshare import code_share  # noqa: E402

OUT = ROOT / "bench" / "out"
FORMAT_VERSION = 2
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
        elif ai and roll < 0.30:
            who = (who[0] + " (aider)", who[1])
            msg = "aider: " + msg
        out.append(f"commit {ref}\nmark :{mark}\n".encode())
        out.append(f"author {who[0]} <{who[1]}> {t - rng.randint(0, 86400)} +0000\n".encode())
        out.append(f"committer {who[0]} <{who[1]}> {t} +0000\n".encode())
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000, help="commits in the generated repository")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="2,000 commits")
    ap.add_argument("--jobs", type=int, default=None,
                    help="redline's parallel git processes (default: up to 4, one per CPU)")
    ap.add_argument("--repeat", type=int, default=3, help="redline runs (the median is compared)")
    args = ap.parse_args()
    commits = 2_000 if args.quick else args.commits
    repo, bloom = ensure_repo(commits, args.seed)
    tip = _git(repo, "rev-parse", "main").decode().strip()
    git_version = _git(repo, "--version").decode().strip()
    print(f"repository: {repo.relative_to(ROOT)} ({commits} commits, tip {tip[:12]}); {git_version}; "
          f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)

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
    print(f"ratio: {base_s / redline_s:.1f}x against the blame loop ({base_cpu / redline_cpu:.1f}x in CPU); "
          f"{bloom_s / redline_s:.1f}x against it with Bloom filters ({bloom_cpu / redline_cpu:.1f}x in CPU); "
          f"goal >= 10x")


if __name__ == "__main__":
    main()
