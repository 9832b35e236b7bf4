"""Globs over repository-relative paths (syntax in the rule file's header)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from redline.errors import (
    MalformedEvidence,
)


def _glob_regex(pattern: str) -> str:
    """The regular expression of one glob (syntax in the rule file's header)."""
    pat = pattern.strip()
    if not pat:
        raise MalformedEvidence("empty glob pattern")
    anchored = pat.startswith("/")
    pat = pat.lstrip("/")
    if pat.endswith("/"):
        pat = pat + "**"
        if not anchored and "/" not in pat[:-3].rstrip("/"):
            pat = "**/" + pat
    elif "/" not in pat and not anchored:
        pat = "**/" + pat
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pat.find("]", i + 2 if pat.startswith("[!", i) or pat.startswith("[]", i) else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pat[i + 1:j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


class GlobSet:
    """A set of globs matched against repository-relative paths (``/``-separated)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        # Each pattern is anchored at both ends on its own: "a|b\Z" would leave every pattern but the
        # last matching as a prefix ("*.js" would match "x.json").
        self._re = re.compile("|".join(rf"(?:{_glob_regex(p)})\Z" for p in self.patterns)) \
            if self.patterns else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, path: str) -> bool:
        return self._re is not None and self._re.match(path) is not None
