"""The ``git`` command, driven safely: fixed configuration, no textconv, no external diff."""

from __future__ import annotations

import copy
import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from redline.errors import (
    CodeShareError,
    EmptyWindow,
    GitFailed,
    NotARepository,
)

_GIT_ENV = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
            "LC_ALL": "C", "GIT_PAGER": "cat"}
_GIT_CONFIG = ("-c", "core.quotepath=on", "-c", "log.showSignature=false", "-c", "diff.noprefix=false",
               "-c", "diff.mnemonicPrefix=false", "-c", "diff.relative=false", "-c", "blame.ignoreRevsFile=",
               "-c", "core.commitGraph=true", "-c", "core.fsmonitor=false")
# Never run a program the repository names: every diff-producing command also passes --no-textconv and
# --no-ext-diff (textconv filters and external diff drivers come from .gitattributes and the repository's config).


class Git:
    """A repository on disk, driven through the ``git`` command (never a library)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise NotARepository(f"{self.path}: no such file or directory")
        if not self.path.is_dir():
            raise NotARepository(f"{self.path}: not a directory, so not a git repository")
        self.env = {**os.environ, **_GIT_ENV}
        self.env.pop("GIT_DIR", None)
        self.env.pop("GIT_WORK_TREE", None)
        proc = self._run(["rev-parse", "--git-dir"], check=False)
        if proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = f" ({msg[-1]})" if msg and "not a git repository" not in msg[-1] else ""
            raise NotARepository(f"{self.path}: not a git repository{detail}")
        gd = Path(os.fsdecode(proc.stdout.strip()))
        self.git_dir = gd if gd.is_absolute() else (self.path / gd)

    def _run(self, args: Sequence[str], *, input: bytes | None = None, check: bool = True) \
            -> subprocess.CompletedProcess[bytes]:
        try:
            proc = subprocess.run(["git", *_GIT_CONFIG, *args], cwd=self.path, env=self.env, input=input,
                                  capture_output=True, check=False)
        except FileNotFoundError:
            raise CodeShareError("git is not installed (or not on PATH)") from None
        if check and proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip()
            raise GitFailed(f"git {args[0]} failed in {self.path}: {err or f'exit {proc.returncode}'}")
        return proc

    def out(self, *args: str, input: bytes | None = None) -> bytes:
        return self._run(args, input=input).stdout

    def stream(self, args: Sequence[str], input: bytes | None = None) -> Iterator[bytes]:
        """Lines of a git command's output, read as it runs (stderr to a file, so nothing blocks)."""
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(["git", *_GIT_CONFIG, *args], cwd=self.path, env=self.env,
                                        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=err, bufsize=1 << 20)
            except FileNotFoundError:
                raise CodeShareError("git is not installed (or not on PATH)") from None
            assert proc.stdout is not None
            try:
                if input is not None:
                    assert proc.stdin is not None
                    proc.stdin.write(input)  # git reads all of --stdin before it writes anything
                    proc.stdin.close()
                yield from proc.stdout
            finally:
                proc.stdout.close()
                code = proc.wait()
            if code != 0:
                err.seek(0)
                text = err.read().decode("utf-8", "replace").strip()
                raise GitFailed(f"git {args[0]} failed in {self.path}: {text or f'exit {code}'}")

    def records(self, args: Sequence[str], sep: bytes, block: int = 1 << 20) -> Iterator[bytes]:
        """A git command's output cut at every ``sep`` (the first record's ``sep`` starts the output
        without its leading newline), read in large blocks as it runs."""
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(["git", *_GIT_CONFIG, *args], cwd=self.path, env=self.env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            except FileNotFoundError:
                raise CodeShareError("git is not installed (or not on PATH)") from None
            assert proc.stdout is not None
            buf = b"\n"
            try:
                while True:
                    data = proc.stdout.read1(block) if hasattr(proc.stdout, "read1") else proc.stdout.read(block)
                    if not data:
                        break
                    buf += data
                    cut = buf.rfind(sep)
                    if cut > 0:
                        parts = buf[:cut].split(sep)
                        buf = buf[cut:]
                        yield from (p for p in parts if p)
                parts = buf.split(sep)
                yield from (p for p in parts if p and p != b"\n")
            finally:
                proc.stdout.close()
                code = proc.wait()
            if code != 0:
                err.seek(0)
                text = err.read().decode("utf-8", "replace").strip()
                raise GitFailed(f"git {args[0]} failed in {self.path}: {text or f'exit {code}'}")

    def with_env(self, **extra: str) -> Git:
        """This repository, driven with more environment variables (the same configuration isolation)."""
        other = copy.copy(self)
        other.env = {**self.env, **extra}
        return other

    def objects_dir(self) -> Path:
        """The repository's object store (``git rev-parse --git-path objects``), as an absolute path."""
        p = Path(os.fsdecode(self.out("rev-parse", "--git-path", "objects").rstrip(b"\n")))
        return p if p.is_absolute() else (self.path / p)

    def resolve(self, rev: str, what: str = "revision") -> str:
        proc = self._run(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], check=False)
        if proc.returncode != 0:
            if not self._run(["rev-list", "-n1", "--all"], check=False).stdout.strip():
                raise EmptyWindow(f"{self.path}: the repository has no commits yet")
            shallow = " (this is a shallow clone: the commit may be outside its history)" if self.is_shallow() else ""
            raise NotARepository(f"{self.path}: no commit {rev!r} ({what}){shallow}")
        return proc.stdout.decode().strip()

    def ref_tip(self, ref: str) -> str | None:
        proc = self._run(["rev-parse", "--verify", "--quiet", ref], check=False)
        return proc.stdout.decode().strip() if proc.returncode == 0 else None

    def is_shallow(self) -> bool:
        return (self.git_dir / "shallow").is_file()

    def shallow_commits(self) -> frozenset[str]:
        try:
            text = (self.git_dir / "shallow").read_text()
        except OSError:
            return frozenset()
        return frozenset(line.strip() for line in text.splitlines() if line.strip())

    def blob_at(self, rev: str, path: str) -> bytes | None:
        proc = self._run(["cat-file", "blob", f"{rev}:{path}"], check=False)
        return proc.stdout if proc.returncode == 0 else None

    def cat_blobs(self, oids: Sequence[str]) -> dict[str, bytes]:
        """Many objects through one ``git cat-file --batch``."""
        if not oids:
            return {}
        data = self.out("cat-file", "--batch", input="".join(f"{o}\n" for o in oids).encode())
        result, pos = {}, 0
        for oid in oids:
            nl = data.index(b"\n", pos)
            head = data[pos:nl].split(b" ")
            if len(head) != 3:
                raise GitFailed(f"git cat-file: object {oid} is missing")
            size = int(head[2])
            result[oid] = data[nl + 1:nl + 1 + size]
            pos = nl + 1 + size + 1
        return result


def _unquote_c(raw: bytes) -> bytes:
    """Undo git's C-style path quoting (``"a\\tb\\303\\251"``)."""
    if not (raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2):
        return raw
    body, out, i = raw[1:-1], bytearray(), 0
    simple = {ord("a"): 7, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11, ord("f"): 12, ord("r"): 13,
              ord('"'): 34, ord("\\"): 92}
    while i < len(body):
        c = body[i]
        if c == 92 and i + 1 < len(body):
            n = body[i + 1]
            if 48 <= n <= 55 and i + 3 < len(body) + 0 and all(48 <= d <= 55 for d in body[i + 1:i + 4]):
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(simple.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return bytes(out)


def _path(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")
