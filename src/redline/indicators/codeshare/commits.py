"""Commit headers and the commit-level markers the rules find in them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from redline.errors import (
    GitFailed,
)
from redline.indicators.codeshare.git import Git
from redline.indicators.codeshare.rules import Rules

#: ``git log`` format of one commit's header: fields end in NUL, the record starts with SOH.
_FORMAT = "%x01%H%x00%P%x00%ct%x00%an%x00%ae%x00%cn%x00%ce%x00%s%x00%(trailers:only,unfold)%x00"
#: The same fields for the patch stream, whose records are cut at ``_RECORD_SEP`` (a line starting SOH STX ETX).
_RECORD_FORMAT = "%x01%x02%x03%H%x00%P%x00%ct%x00%an%x00%ae%x00%cn%x00%ce%x00%s%x00%(trailers:only,unfold)%x00"
_RECORD_SEP = b"\n\x01\x02\x03"
_NFIELDS = 9
_BOT_EMAIL = re.compile(r"(?:[0-9]+\+)?(?P<login>[^@\s]+)@users\.noreply\.github\.com")
_EMAIL = re.compile(r"<([^<>]*)>\s*$")


@dataclass(frozen=True)
class CommitInfo:
    """One commit's header, the AI markers the rules find in it and the markers of a tool's mere involvement."""

    sha: str
    parents: tuple[str, ...]
    time: int
    author: str
    author_email: str
    committer: str
    committer_email: str
    subject: str
    trailers: tuple[tuple[str, str], ...]
    ai_markers: tuple[str, ...]
    involvement: tuple[str, ...] = ()


def _email_of(value: str) -> str:
    m = _EMAIL.search(value)
    return (m.group(1) if m else value).strip().lower()


def _bot(rules: Rules, email: str) -> str | None:
    if not email.endswith("@users.noreply.github.com"):
        return None
    m = _BOT_EMAIL.fullmatch(email)
    return m.group("login") if m and m.group("login") in rules.bot_logins else None


def _ai_identity(rules: Rules, email: str) -> bool:
    return email in rules.emails or any(email.endswith(s) for s in rules.email_suffixes)


def commit_markers(rules: Rules, *, author: str, author_email: str, committer: str, committer_email: str,
                   subject: str, trailers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The commit-level markers that the commit's code was written by AI (``author-bot:<login>``,
    ``author:<email>``, ``co-author:<email>``, ``co-author-bot:<login>``, ``author-name:<suffix>``,
    ``subject:<prefix>``).

    Only the *author* side and co-authors count: the committer records who applied the commit,
    and tools mark the committer on every commit they make, the user's own changes included
    (see :func:`involvement_markers`).
    """
    hits: list[str] = []
    ae = author_email.lower()
    login = _bot(rules, ae)
    if login:
        hits.append(f"author-bot:{login}")
    elif _ai_identity(rules, ae):
        hits.append(f"author:{ae}")
    for key, value in trailers:
        if key.lower() not in rules.trailer_keys:
            continue
        email = _email_of(value)
        login = _bot(rules, email)
        if _ai_identity(rules, email):
            hits.append(f"co-author:{email}")
        elif login:
            hits.append(f"co-author-bot:{login}")
    fold = (lambda x: x) if rules.match_case else str.casefold
    name = fold(author.rstrip())
    for suffix in rules.author_name_suffixes:
        if name.endswith(fold(suffix)):
            hits.append(f"author-name:{suffix}")
    for part in rules.author_name_contains:
        if fold(part) in name:
            hits.append(f"author-name-contains:{part}")
    subj = fold(subject)
    for prefix in rules.subject_prefixes:
        if subj.startswith(fold(prefix)):
            hits.append(f"subject:{prefix}")
    return tuple(dict.fromkeys(hits))


def involvement_markers(rules: Rules, *, committer: str, committer_email: str,
                        trailers: Iterable[tuple[str, str]] = ()) -> tuple[str, ...]:
    """Markers that a tool took part in making the commit, not that it wrote the code: recorded, never counted
    (``committer-bot:<login>``, ``committer:<email>``, ``committer-name:<suffix>``, ``trailer:<key>``)."""
    hits: list[str] = []
    ce = committer_email.lower()
    login = _bot(rules, ce)
    if login:
        hits.append(f"committer-bot:{login}")
    elif _ai_identity(rules, ce):
        hits.append(f"committer:{ce}")
    fold = (lambda x: x) if rules.match_case else str.casefold
    for suffix in rules.committer_name_suffixes:
        if fold(committer.rstrip()).endswith(fold(suffix)):
            hits.append(f"committer-name:{suffix}")
    for key, _value in trailers:
        if key.lower() in rules.involvement_trailer_keys:
            hits.append(f"trailer:{key.lower()}")
    return tuple(dict.fromkeys(hits))


def _parse_trailers(block: str) -> tuple[tuple[str, str], ...]:
    if not block:
        return ()
    out = []
    for line in block.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out.append((key.strip(), value.strip()))
    return tuple(out)


def _commit_from_fields(fields: list[bytes], rules: Rules) -> CommitInfo:
    sha, parents, ct, an, ae, cn, ce, subject, trailers = (f.decode("utf-8", "replace") for f in fields)
    tr = _parse_trailers(trailers)
    return CommitInfo(sha, tuple(parents.split()), int(ct), an, ae, cn, ce, subject, tr,
                      commit_markers(rules, author=an, author_email=ae, committer=cn, committer_email=ce,
                                     subject=subject, trailers=tr),
                      involvement_markers(rules, committer=cn, committer_email=ce, trailers=tr))


def _read_header(first: bytes, lines: Iterator[bytes]) -> list[bytes]:
    buf = first[1:]
    while buf.count(b"\x00") < _NFIELDS:
        try:
            buf += next(lines)
        except StopIteration:
            raise GitFailed("git log output ended inside a commit header") from None
    return buf.split(b"\x00")[:_NFIELDS]


def read_commits(git: Git, shas: Sequence[str], rules: Rules) -> dict[str, CommitInfo]:
    """Headers (and markers) of many commits through one ``git log --no-walk --stdin``."""
    if not shas:
        return {}
    out: dict[str, CommitInfo] = {}
    lines = git.stream(["log", "--no-walk=unsorted", "--stdin", "--no-patch", "--no-notes", f"--format={_FORMAT}"],
                       input="".join(f"{s}\n" for s in shas).encode())
    for line in lines:
        if line.startswith(b"\x01"):
            info = _commit_from_fields(_read_header(line, lines), rules)
            out[info.sha] = info
    return out
