"""Bounded reads of the files a command is given: nothing is read whole before its size is known to be sane.

Every file a ``redline`` command takes goes through :func:`read_bounded` (read it here) or
:func:`check_regular` (a library loader reads it, after this check): a path that is not a
regular file (a directory, ``/dev/zero``, a FIFO, a socket) is refused with one line, and a
file over the command's bound is :class:`~redline.errors.InputTooLarge` (exit 65) after at
most ``limit + 1`` bytes were read. Standard input (``-``) may be a pipe or a terminal, and
is read with the same bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from redline.errors import InputTooLarge, MalformedInput

#: Bounds of the inputs no library constant bounds (bytes).
MAX_FIELDS_BYTES = 1 << 20  # a JSON object of predicate fields (as redline.crypto.canonical.MAX_JSON_BYTES)
MAX_CHECKPOINT_BYTES = 1 << 16  # a signed checkpoint note
MAX_KEY_BYTES = 4096  # a key file (as redline.crypto.keys)

_CHUNK = 1 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _refuse(what: str, mode: int, path: str | os.PathLike[str] | None = None) -> MalformedInput:
    return MalformedInput(f"{what} is {_kind(mode)}, not a regular file", path=None if path is None else str(path))


def _too_large(what: str, size: int, limit: int, path: str | os.PathLike[str]) -> InputTooLarge:
    return InputTooLarge(f"{what} is {size} bytes, over the limit of {limit}", size=size, limit=limit, path=str(path))


def check_regular(path: str | os.PathLike[str], limit: int, what: str | None = None) -> int:
    """The size of the regular file at ``path``; refuses anything else, and a file over ``limit`` bytes.

    A missing file raises ``FileNotFoundError`` (exit 74 through the ``redline`` group).
    """
    name = what or str(path)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(name, st.st_mode, path)
    if st.st_size > limit:
        raise _too_large(name, st.st_size, limit, path)
    return st.st_size


def _read_fd(read, limit: int, what: str, path: str | None = None) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got <= limit:
        chunk = read(min(_CHUNK, limit + 1 - got))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    if got > limit:
        raise InputTooLarge(f"{what} is over the limit of {limit} bytes", limit=limit, path=path)
    return b"".join(parts)


def read_bounded(source: str | os.PathLike[str] | BinaryIO, limit: int, what: str | None = None) -> bytes:
    """The bytes of ``source`` (a path, ``-`` for standard input, or an open binary file), at most ``limit``.

    A path must be a regular file (opened without blocking, so a FIFO is refused, not waited on); an open
    file may also be a pipe or a terminal (standard input), never a directory or a device. At most
    ``limit + 1`` bytes are read: more is :class:`~redline.errors.InputTooLarge`.
    """
    if isinstance(source, str | os.PathLike) and str(source) != "-":
        name = what or str(source)
        fd = os.open(source, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(name, st.st_mode, source)
            if st.st_size > limit:
                raise _too_large(name, st.st_size, limit, source)
            return _read_fd(lambda n: os.read(fd, n), limit, name, str(source))
        finally:
            os.close(fd)
    if isinstance(source, str | os.PathLike):
        import sys

        source = sys.stdin.buffer
    f: BinaryIO = source  # type: ignore[assignment]
    name = what or str(getattr(f, "name", "input"))
    try:
        fileno = f.fileno()
    except (AttributeError, OSError, ValueError):
        fileno = None
    if fileno is not None:
        st = os.fstat(fileno)
        mode = st.st_mode
        if stat.S_ISDIR(mode) or stat.S_ISBLK(mode) or (stat.S_ISCHR(mode) and not os.isatty(fileno)):
            raise _refuse(name, mode)
        if stat.S_ISREG(mode) and st.st_size > limit:
            raise InputTooLarge(f"{name} is {st.st_size} bytes, over the limit of {limit}", size=st.st_size,
                                limit=limit)
    return _read_fd(f.read, limit, name)


def signing_key(path: str | os.PathLike[str]):
    """The private key file at ``path`` (``redline.crypto.keys.load_signing_key``), refused first unless it is a
    regular file of at most :data:`MAX_KEY_BYTES` (a FIFO would block the reader, a device never end)."""
    from redline.crypto.keys import load_signing_key
    from redline.errors import MalformedKey

    if os.path.lexists(path):
        try:
            check_regular(path, MAX_KEY_BYTES, f"key file {path}")
        except MalformedInput as exc:
            raise MalformedKey(str(exc), path=str(path)) from None
    return load_signing_key(Path(path))


def read_prefix(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of the regular file at ``path`` (b"" for anything that is not one)."""
    p = Path(path)
    try:
        if not p.is_file():
            return b""
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return b""
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


__all__ = ["MAX_CHECKPOINT_BYTES", "MAX_FIELDS_BYTES", "MAX_KEY_BYTES", "check_regular", "read_bounded",
           "read_prefix",
           "signing_key"]
