"""Entry points: ``module:qualname`` strings that name the code a run was declared with.

Resolving one imports the named module, so a verifier replays only code it has
installed and chosen to trust; nothing is ever loaded from the transcript itself.
"""

from __future__ import annotations

import importlib
from typing import Any

from redline.errors import MalformedInput


def resolve(name: str) -> Any:
    """The object named ``module:qualname`` (``MalformedInput`` naming it if it cannot be found)."""
    module_name, _, qualname = name.partition(":")
    if not module_name or not qualname:
        raise MalformedInput(f"entry point {name!r} is not of the form 'module:qualname'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise MalformedInput(f"entry point {name!r}: cannot import {module_name!r}: {exc}") from None
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise MalformedInput(f"entry point {name!r}: {module_name!r} has no attribute {qualname!r}") from None
    return obj


__all__ = ["resolve"]
