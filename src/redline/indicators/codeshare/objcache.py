"""A read cache for ``git blame``: the objects of a survival range, stored uncompressed and undeltified.

``git blame -C -C -C`` (aider's flags) reads, at every commit that added lines to the blamed file,
every file of that commit's parent to look for copies; ``-C -C`` does so at the commit that created
the file. Each read inflates a zlib stream and resolves a delta chain, and each blame process does it
again for the same blobs: profiled on the benchmark's repository, zlib alone was over half of a
blame's CPU time.

:func:`blame_object_cache` writes, into a temporary directory, one pack of the objects a blame of
``START..END`` reads (the commits of the range, everything their trees reach, and the boundary
commits with their whole trees) with no deltas and zlib level 0 (stored blocks), and hands back a
:class:`~redline.indicators.codeshare.git.Git` whose object store is that directory
(``GIT_OBJECT_DIRECTORY``), with the repository's own object store as its alternate
(``info/alternates``). Everything else about the repository stays as it was: the commands still run
in it, under its configuration (less what ``Git`` overrides), its shallow file, its commit-graph.

Objects are named by their content, so a blame reads the same bytes whichever store serves them:
the output is identical, only faster (an object missing from the cache is read from the repository).
The cache's pack gets a multi-pack index of its own: git consults multi-pack indexes (the primary
store's first) before any other pack, so the cache serves everything it holds even after a read has
fallen through to the repository (git searches its other packs in most-recently-used order, and
without the index one such read, say of ``HEAD:.mailmap``, would put the repository's pack first
for every later read).

The cache is skipped (blame reads the repository directly) when the objects would take more than
``budget`` bytes or more than half the free space of the temporary directory, in a partial clone
(its missing objects must not be fetched), or when anything in building it fails.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redline.errors import GitFailed
from redline.indicators.codeshare.git import Git

#: The most object data (uncompressed bytes) the cache may hold; a larger range blames without it.
BUDGET = 1 << 30


def range_objects(git: Git, start: str, end: str) -> list[str]:
    """The objects a blame of ``start..end`` reads: the range's commits and all their trees reach, and the
    boundary commits (parents of range commits outside it) with their whole trees."""
    ids = dict.fromkeys(git.out("rev-list", "--objects", "--no-object-names", f"{start}..{end}", "--")
                        .decode().split())
    boundary = [line[1:] for line in git.out("rev-list", "--boundary", f"{start}..{end}", "--").decode().split()
                if line.startswith("-")]
    if boundary:
        ids.update(dict.fromkeys(git.out("rev-list", "--objects", "--no-object-names", "--no-walk", "--stdin",
                                         input="".join(f"{b}\n" for b in boundary).encode()).decode().split()))
    return list(ids)


def _size(git: Git, ids: list[str]) -> int:
    out = git.out("cat-file", "--batch-check=%(objectsize)", "--buffer",
                  input="".join(f"{i}\n" for i in ids).encode())
    return sum(int(x) for x in out.split())


@contextmanager
def blame_object_cache(git: Git, start: str, end: str, *, budget: int = BUDGET) -> Iterator[Git]:
    """``git`` reading the objects of ``start..end`` from an uncompressed, undeltified pack first (see the
    module's documentation); ``git`` itself where the cache is skipped. The directory is removed on exit."""
    tmp = None
    cached = git
    try:
        objects = git.objects_dir()
        alt = str(objects.resolve())
        pack_dir = objects / "pack"
        if "\n" in alt or alt.startswith('"') or not pack_dir.is_dir() or any(pack_dir.glob("*.promisor")):
            raise _Skip
        ids = range_objects(git, start, end)
        size = _size(git, ids)
        tmp = Path(tempfile.mkdtemp(prefix="redline-blame-objects-"))
        if size > budget or size > shutil.disk_usage(tmp).free // 2:
            raise _Skip
        (tmp / "pack").mkdir()
        (tmp / "info").mkdir()
        (tmp / "info" / "alternates").write_text(alt + "\n")
        git.out("pack-objects", "-q", "--no-reuse-object", "--compression=0", "--window=0", "--depth=0",
                str(tmp / "pack" / "pack"), input="".join(f"{i}\n" for i in ids).encode())
        cached = git.with_env(GIT_OBJECT_DIRECTORY=str(tmp))
        cached.out("multi-pack-index", "write")
    except (_Skip, GitFailed, OSError):
        cached = git
    try:
        yield cached
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


class _Skip(Exception):
    """The cache is not worth building (or cannot be built) for this repository."""
