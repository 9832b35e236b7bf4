"""Agent Trace records (agent-trace.dev v0.1)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redline.errors import (
    MalformedEvidence,
)
from redline.indicators.codeshare.gitai import _no_duplicates
from redline.indicators.codeshare.rules import Rules

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRACE_VERSION = re.compile(r"(0|1)\.[0-9]+(?:\.[0-9]+)?")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class TraceRange:
    """One attributed range of an Agent Trace record, mapped through the rules to ai/human/unknown."""

    start: int
    end: int
    kind: str
    model: str | None


@dataclass(frozen=True)
class AgentTraces:
    """Agent Trace records indexed by git revision: revision -> path -> ranges."""

    by_revision: Mapping[str, Mapping[str, tuple[TraceRange, ...]]]
    records: int
    other_vcs: int  # records without a git revision: they cannot be placed and are not used
    sha256: str | None


def _fields(obj: Any, at: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedEvidence(f"{at}: must be a JSON object")
    req = set(required)
    allowed = req | set(optional)
    for k in obj:
        if k not in allowed:
            raise MalformedEvidence(f"{at}: unknown field {k!r}")
    for k in req:
        if k not in obj:
            raise MalformedEvidence(f"{at}: required field {k!r} is missing")
    return obj


def _string(v: Any, at: str) -> str:
    if not isinstance(v, str):
        raise MalformedEvidence(f"{at}: must be a string")
    return v


def _contributor(obj: Any, at: str, mapping: Mapping[str, str]) -> tuple[str, str | None]:
    c = _fields(obj, at, ("type",), ("model_id",))
    typ = c["type"]
    if typ not in mapping:
        raise MalformedEvidence(f"{at}.type: {typ!r} is not one of human, ai, mixed, unknown")
    model = c.get("model_id")
    if model is not None and (not isinstance(model, str) or len(model) > 250):
        raise MalformedEvidence(f"{at}.model_id: must be a string of at most 250 characters")
    return mapping[typ], model


def parse_agent_trace(data: bytes, where: str, rules: Rules) -> AgentTraces:
    """Parse an Agent Trace JSONL file (one trace record per line), strictly, following the v0.1 schema.

    A record needs ``version`` (``MAJOR.MINOR[.PATCH]``, major 0 or 1), ``id`` (UUID), ``timestamp``
    (RFC 3339) and ``files``; ``vcs``, ``tool`` and ``metadata`` are optional and no other field is
    allowed (vendor data goes in ``metadata``). Each file has ``path`` and ``conversations``; each
    conversation has ``ranges`` and optionally ``url``, ``contributor`` and ``related``; each range
    has ``start_line <= end_line`` (1-based) and optionally ``content_hash`` and a ``contributor``
    overriding the conversation's. A range with no contributor at all is ``unknown``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEvidence(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    mapping = rules.agent_trace
    by_rev: dict[str, dict[str, list[TraceRange]]] = {}
    records = other = 0
    for no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        at = f"{where}: line {no}"
        try:
            rec = json.loads(line, object_pairs_hook=_no_duplicates)
        except ValueError as exc:
            raise MalformedEvidence(f"{at}: not a JSON object: {exc}") from None
        rec = _fields(rec, at, ("version", "id", "timestamp", "files"), ("vcs", "tool", "metadata"))
        if not isinstance(rec["version"], str) or not _TRACE_VERSION.fullmatch(rec["version"]):
            raise MalformedEvidence(f"{at}: version {rec['version']!r} is not a supported Agent Trace version "
                                    "(0.x or 1.x)")
        if not isinstance(rec["id"], str) or not _UUID.fullmatch(rec["id"]):
            raise MalformedEvidence(f"{at}: id must be a UUID")
        if not isinstance(rec["timestamp"], str) or not _RFC3339.fullmatch(rec["timestamp"]):
            raise MalformedEvidence(f"{at}: timestamp must be an RFC 3339 date-time")
        if "metadata" in rec and not isinstance(rec["metadata"], dict):
            raise MalformedEvidence(f"{at}: metadata must be an object")
        if "tool" in rec:
            tool = _fields(rec["tool"], f"{at}: tool", (), ("name", "version"))
            for k, v in tool.items():
                _string(v, f"{at}: tool.{k}")
        revision = None
        if "vcs" in rec:
            vcs = _fields(rec["vcs"], f"{at}: vcs", ("type", "revision"))
            if vcs["type"] not in ("git", "jj", "hg", "svn"):
                raise MalformedEvidence(f"{at}: vcs.type {vcs['type']!r} is not one of git, jj, hg, svn")
            rev = _string(vcs["revision"], f"{at}: vcs.revision")
            if vcs["type"] == "git":
                if not _SHA.fullmatch(rev):
                    raise MalformedEvidence(f"{at}: vcs.revision of a git trace must be a full lower-case commit SHA")
                revision = rev
        if not isinstance(rec["files"], list):
            raise MalformedEvidence(f"{at}: files must be an array")
        records += 1
        if revision is None:
            other += 1
        for fi, f in enumerate(rec["files"]):
            fat = f"{at}: files[{fi}]"
            f = _fields(f, fat, ("path", "conversations"))
            path = _string(f["path"], f"{fat}.path")
            if not path or path.startswith("/"):
                raise MalformedEvidence(f"{fat}.path: must be relative to the repository root")
            if not isinstance(f["conversations"], list):
                raise MalformedEvidence(f"{fat}.conversations: must be an array")
            for ci, conv in enumerate(f["conversations"]):
                cat = f"{fat}.conversations[{ci}]"
                conv = _fields(conv, cat, ("ranges",), ("url", "contributor", "related"))
                if "url" in conv:
                    _string(conv["url"], f"{cat}.url")
                if "related" in conv:
                    if not isinstance(conv["related"], list):
                        raise MalformedEvidence(f"{cat}.related: must be an array")
                    for ri, rel in enumerate(conv["related"]):
                        rel = _fields(rel, f"{cat}.related[{ri}]", ("type", "url"))
                        _string(rel["type"], f"{cat}.related[{ri}].type")
                        _string(rel["url"], f"{cat}.related[{ri}].url")
                base = _contributor(conv["contributor"], f"{cat}.contributor", mapping) \
                    if "contributor" in conv else ("unknown", None)
                if not isinstance(conv["ranges"], list):
                    raise MalformedEvidence(f"{cat}.ranges: must be an array")
                for ri, r in enumerate(conv["ranges"]):
                    rat = f"{cat}.ranges[{ri}]"
                    r = _fields(r, rat, ("start_line", "end_line"), ("content_hash", "contributor"))
                    s, e = r["start_line"], r["end_line"]
                    for name, v in (("start_line", s), ("end_line", e)):
                        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 2**53 - 1:
                            raise MalformedEvidence(f"{rat}.{name}: must be an integer >= 1")
                    if e < s:
                        raise MalformedEvidence(f"{rat}: end_line {e} is before start_line {s}")
                    if "content_hash" in r:
                        _string(r["content_hash"], f"{rat}.content_hash")
                    kind, model = _contributor(r["contributor"], f"{rat}.contributor", mapping) \
                        if "contributor" in r else base
                    if revision is not None:
                        by_rev.setdefault(revision, {}).setdefault(path, []).append(TraceRange(s, e, kind, model))
    return AgentTraces({rev: {p: tuple(rs) for p, rs in files.items()} for rev, files in by_rev.items()},
                       records, other, hashlib.sha256(data).hexdigest())
