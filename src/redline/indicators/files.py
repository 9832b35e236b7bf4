"""Bounded reads of the files an indicator measurement is given (rule files, traces, CSVs, evaluation logs)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from redline.errors import MalformedInput

_T = TypeVar("_T")


def _guarded(fn: Callable[[], _T], what: str, error: type[MalformedInput], path: str | os.PathLike[str]) -> _T:
    try:
        return fn()
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror or exc}", path=str(path)) from None
    except MalformedInput as exc:
        if isinstance(exc, error):
            raise
        raise error(str(exc), path=str(path)) from None


def regular_size(path: str | os.PathLike[str], limit: int, what: str,
                 error: type[MalformedInput] = MalformedInput) -> int:
    """The size of the regular file at ``path``; ``error`` for anything else (a directory, ``/dev/zero``, a FIFO),
    for a missing or unreadable file, and for one over ``limit`` bytes (``InputTooLarge`` by default)."""
    from redline.cli.inputs import check_regular

    return _guarded(lambda: check_regular(path, limit, what), what, error, path)


def read_regular(path: str | os.PathLike[str], limit: int, what: str,
                 error: type[MalformedInput] = MalformedInput) -> bytes:
    """The bytes of the regular file at ``path``, at most ``limit`` of them (errors as :func:`regular_size`)."""
    from redline.cli.inputs import read_bounded

    return _guarded(lambda: read_bounded(Path(path), limit, what), what, error, path)


__all__ = ["read_regular", "regular_size"]
