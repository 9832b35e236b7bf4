"""Diff streaming (window mode): added lines per commit, from ``git log -p -U0``."""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable, Iterator, Sequence

from redline.errors import (
    GitFailed,
)
from redline.indicators.codeshare.commits import _NFIELDS, _RECORD_FORMAT, _RECORD_SEP, CommitInfo, _commit_from_fields
from redline.indicators.codeshare.git import Git, _path, _unquote_c
from redline.indicators.codeshare.rules import Rules

_FileHunks = dict[str, tuple[str | None, list[tuple[int, int, int, int]]]]


def _file_hunks(lines: Iterable[bytes]) -> _FileHunks:
    """One commit's ``-U0`` patch as new path -> (old path, or ``None`` for a new file; hunks
    ``(old_start, old_count, new_start, new_count)``)."""
    out: _FileHunks = {}
    old_path: str | None = None
    hunks: list[tuple[int, int, int, int]] = []
    in_hunk = 0
    for line in lines:
        if in_hunk:
            c = line[:1]
            if c in (b"+", b"-", b"\\"):
                in_hunk -= c != b"\\"
                continue
            in_hunk = 0
        if line.startswith(b"@@ "):
            m = _HUNK_FULL.match(line)
            if m is None:
                raise GitFailed(f"cannot parse hunk header {line[:80]!r}")
            os_, oc, ns, nc = (int(g) if g is not None else 1 for g in m.groups())
            hunks.append((os_, oc, ns, nc))
            in_hunk = oc + nc
        elif line.startswith(b"--- "):
            raw = line[4:].rstrip(b"\n")
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            old_path = _path(raw[2:]) if raw.startswith(b"a/") else None
        elif line.startswith(b"+++ "):
            raw = line[4:].rstrip(b"\n")
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            if raw.startswith(b"b/"):
                hunks = []
                out[_path(raw[2:])] = (old_path, hunks)
        elif line.startswith(b"diff --git "):
            old_path, hunks = None, []
    return out


def _file_diffs(git: Git, requests: Sequence[str]) -> dict[str, _FileHunks]:
    """Diffs for many ``"<commit> [<parent>]"`` requests through one ``git diff-tree --stdin``: commit -> hunks."""
    result: dict[str, _FileHunks] = {}
    if not requests:
        return result
    data = git.out("diff-tree", "--stdin", "--always", "-r", *_DIFF_OPTS,
                   input="".join(f"{r}\n" for r in requests).encode())
    sha, chunk = None, []
    for line in data.split(b"\n"):
        if _COMMIT_LINE.fullmatch(line + b"\n"):
            if sha is not None:
                result[sha] = _file_hunks(chunk)
            sha, chunk = line.decode(), []
        else:
            chunk.append(line)
    if sha is not None:
        result[sha] = _file_hunks(chunk)
    return result


#: An added line that is blank: "+" and nothing but whitespace (in a block of lines joined by newlines).
_BLANK_ADDED = re.compile(rb"^\+[ \t\r\f\v]*$", re.MULTILINE)
_COMMIT_LINE = re.compile(rb"(?:[0-9a-f]{40}|[0-9a-f]{64})\n")
_HUNK_FULL = re.compile(rb"@@ -([0-9]+)(?:,([0-9]+))? \+([0-9]+)(?:,([0-9]+))? @@")


#: The fewest first-parent commits worth a git process of their own in window mode.
_SEGMENT_MIN = 500
_DIFF_OPTS = ["-p", "-U0", "--inter-hunk-context=0", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
              "--diff-algorithm=myers", "--src-prefix=a/", "--dst-prefix=b/"]


def _added_lines(git: Git, newest: str, boundary: str | None, rules: Rules,
                 want: Callable[[str], bool] = lambda path: True, mainline: Container[str] | None = None) \
        -> Iterator[tuple[CommitInfo, str | None, list[int]] | tuple[CommitInfo, _FileHunks]]:
    """The diffs of the commits from ``newest`` back to (not including) ``boundary``, each against its first parent.

    One ``git log -p -U0`` process streams every header and diff; it is read in large blocks and
    cut into commits at the record marker. With ``mainline=None`` only the first-parent chain is
    walked; otherwise every commit of the range is, and those not in ``mainline`` (the commits
    merges bring in) come in the same pass, sharing git's delta-base cache.

    For a first-parent commit, yields ``(commit, path, lines)`` for each file for which
    ``want(path)`` holds: the new-side numbers of its added, non-blank lines (a commit that adds
    nothing counted is yielded once with ``path=None``, so that every header is seen). For any
    other commit, yields ``(commit, hunks)`` (see :func:`_file_hunks`).
    """
    args = ["log", *(["--first-parent"] if mainline is None else []), "--diff-merges=first-parent", "--no-notes",
            *_DIFF_OPTS, f"--format={_RECORD_FORMAT}", newest, *([f"^{boundary}"] if boundary else []), "--"]
    for record in git.records(args, _RECORD_SEP):
        fields = record.split(b"\x00", _NFIELDS)
        if len(fields) != _NFIELDS + 1:
            raise GitFailed(f"cannot parse a commit header in git log output: {record[:80]!r}")
        info = _commit_from_fields(fields[:_NFIELDS], rules)
        if mainline is not None and info.sha not in mainline:
            yield info, _file_hunks(fields[_NFIELDS].split(b"\n"))
            continue
        yielded = False
        for path, added in _record_files(fields[_NFIELDS].split(b"\n"), want):
            yield info, path, added
            yielded = True
        if not yielded:
            yield info, None, []


def _record_files(lines: list[bytes], want: Callable[[str], bool]) -> Iterator[tuple[str, list[int]]]:
    """The counted files of one commit's ``-U0`` patch and the new-side numbers of their non-blank added lines."""
    path: str | None = None
    added: list[int] = []
    submodule = False
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith(b"@@ "):
            m = _HUNK_FULL.match(line)
            if m is None:
                raise GitFailed(f"cannot parse hunk header {line[:80]!r}")
            oc = int(m.group(2)) if m.group(2) is not None else 1
            ns = int(m.group(3))
            nc = int(m.group(4)) if m.group(4) is not None else 1
            i += 1
            # With -U0 a hunk is one change: oc removed lines, then nc added ones, each side
            # possibly followed by a "\ No newline at end of file" line. Check, then slice.
            j = i + oc
            if j < n and lines[j][:1] == b"\\":
                j += 1
            k = j + nc
            ok = (k <= n and (oc == 0 or lines[j - 1][:1] in (b"-", b"\\"))
                  and (nc == 0 or (lines[j][:1] == b"+" and lines[k - 1][:1] == b"+"))
                  and (k == n or lines[k][:1] not in (b"+", b"-")))
            if not ok:  # not the expected shape: read it line by line
                newno, left_old, left_new = ns, oc, nc
                while i < n and (left_old or left_new or lines[i][:1] == b"\\"):
                    c = lines[i][:1]
                    if c == b"+" and left_new:
                        if path is not None and len(lines[i]) > 1 and not lines[i][1:].isspace():
                            added.append(newno)
                        newno += 1
                        left_new -= 1
                    elif c == b"-" and left_old:
                        left_old -= 1
                    elif c != b"\\":
                        break
                    i += 1
                continue
            if nc and path is not None:
                joined = b"\n".join(lines[j:k])
                blanks = [joined.count(b"\n", 0, m.start()) for m in _BLANK_ADDED.finditer(joined)]
                if not blanks:
                    added.extend(range(ns, ns + nc))
                else:
                    skip = set(blanks)
                    added.extend(ns + x for x in range(nc) if x not in skip)
            i = k
            if i < n and lines[i][:1] == b"\\":
                i += 1
            continue
        if line.startswith(b"diff --git "):
            if path is not None and added:
                yield path, added
            path, added, submodule = None, [], False
        elif line.startswith(b"+++ "):
            raw = line[4:]
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            path = _path(raw[2:]) if raw.startswith(b"b/") and not submodule else None
            if path is not None and not want(path):
                path = None
        elif line.startswith(b"new file mode 160000") or (line.startswith(b"index ") and line.endswith(b" 160000")):
            submodule = True  # its "lines" are commit IDs
        i += 1
    if path is not None and added:
        yield path, added
