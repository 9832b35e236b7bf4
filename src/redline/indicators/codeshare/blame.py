"""``git blame --porcelain``: parsing and running it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from redline.indicators.codeshare.git import Git, _path, _unquote_c


@dataclass(frozen=True)
class BlamedLine:
    """A line of a file and the commit that last touched it (with the path and line number there)."""

    final: int
    commit: str
    orig_path: str
    orig_line: int
    boundary: bool
    blank: bool


def parse_blame_porcelain(out: bytes) -> list[BlamedLine]:
    """Parse ``git blame --porcelain`` output."""
    result: list[BlamedLine] = []
    boundary: set[bytes] = set()
    lines = out.split(b"\n")
    i, n = 0, len(lines)
    filename = b""
    while i < n and lines[i]:
        head = lines[i].split(b" ")
        sha, orig, final = head[0], int(head[1]), int(head[2])
        i += 1
        while i < n and not lines[i].startswith(b"\t"):
            key, _, val = lines[i].partition(b" ")
            if key == b"boundary":
                boundary.add(sha)
            elif key == b"filename":
                filename = _unquote_c(val)
            i += 1
        content = lines[i][1:] if i < n else b""
        i += 1
        result.append(BlamedLine(final, sha.decode(), _path(filename), orig, sha in boundary, not content.strip()))
    return result


def _blame(git: Git, args: Sequence[str], rev_range: str, path: str) -> list[BlamedLine]:
    """``git blame`` of one file. ``--no-textconv``: git blame runs a repository's textconv filter by default,
    and a measured repository is untrusted (its config could name any program)."""
    return parse_blame_porcelain(git.out("blame", "--porcelain", "--no-textconv", *args, rev_range, "--", path))


def _parallel(jobs: int | None, fn: Any, items: Sequence[Any]) -> list[Any]:
    workers = jobs or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))
