"""git-ai authorship notes (Git AI Standard v3.0.0)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from redline.errors import (
    MalformedEvidence,
)
from redline.indicators.codeshare.constants import GIT_AI_SCHEMA

_SESSION = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{7}")
_RANGES = re.compile(r"[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*")
_PROMPT_INTS = ("total_additions", "total_deletions", "accepted_lines", "overriden_lines")


@dataclass(frozen=True)
class GitAiNote:
    """A parsed git-ai authorship log: AI-authored line ranges per file and the agents behind them."""

    files: Mapping[str, tuple[tuple[int, int], ...]]
    agents: Mapping[str, str]  # session hash -> "tool/model"
    base_commit_sha: str


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _merge(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


def parse_git_ai_note(data: bytes | str, where: str = "git-ai note") -> GitAiNote:
    """Parse a git-ai authorship log (Git AI Standard v3.0.0), strictly.

    The log is an attestation section, a line ``---``, and a JSON metadata section. In the
    attestation section a file path starts a line (double-quoted when it holds whitespace);
    each entry under it is two spaces, a 16-hex-digit session hash (7 digits accepted for
    older logs), one space and ascending 1-based line ranges such as ``1-4,9,12-20``. The
    metadata is a JSON object with ``schema_version`` ``"authorship/3.0.0"``,
    ``base_commit_sha`` and ``prompts`` (session hash -> prompt record with ``agent_id``
    {tool, id, model}, ``messages`` and four line counts); every session hash used in the
    attestations must be a key of ``prompts``. Any deviation raises ``MalformedEvidence``
    naming ``where`` and the line.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedEvidence(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    else:
        text = data
    lines = text.split("\n")
    try:
        divider = lines.index("---")
    except ValueError:
        raise MalformedEvidence(f"{where}: no '---' line dividing the attestation section from the metadata "
                                "(not a git-ai authorship log v3)") from None
    files: dict[str, list[tuple[int, int]]] = {}
    used: dict[str, int] = {}
    current: str | None = None
    entries_of_current = 0
    for no, line in enumerate(lines[:divider], 1):
        line = line.rstrip("\r")
        if not line.strip():
            raise MalformedEvidence(f"{where}: line {no}: blank line in the attestation section")
        if line.startswith("  "):
            if current is None:
                raise MalformedEvidence(f"{where}: line {no}: attestation entry before any file path")
            body = line[2:]
            sess, sep, spec = body.partition(" ")
            if not sep or not _SESSION.fullmatch(sess):
                raise MalformedEvidence(f"{where}: line {no}: expected '  <16-hex-digit session hash> <line ranges>',"
                                        f" got {line!r}")
            if not _RANGES.fullmatch(spec):
                raise MalformedEvidence(f"{where}: line {no}: bad line ranges {spec!r} (expected e.g. 1-4,9,12-20)")
            prev = 0
            for part in spec.split(","):
                a, _, b = part.partition("-")
                start, end = int(a), int(b or a)
                if start < 1 or end < start:
                    raise MalformedEvidence(f"{where}: line {no}: bad line range {part!r} (1-based, start <= end)")
                if start <= prev:
                    raise MalformedEvidence(f"{where}: line {no}: line ranges not in ascending order at {part!r}")
                prev = end
                files[current].append((start, end))
            used.setdefault(sess, no)
            entries_of_current += 1
        elif line[0].isspace():
            raise MalformedEvidence(f"{where}: line {no}: entries are indented by exactly two spaces")
        else:
            if current is not None and entries_of_current == 0:
                raise MalformedEvidence(f"{where}: line {no - 1}: file {current!r} has no attestation entries")
            if line.startswith('"'):
                if len(line) < 3 or not line.endswith('"') or '"' in line[1:-1]:
                    raise MalformedEvidence(f"{where}: line {no}: badly quoted file path {line!r}")
                path = line[1:-1]
            else:
                path = line
            if path in files:
                raise MalformedEvidence(f"{where}: line {no}: file {path!r} appears twice")
            files[path] = []
            current, entries_of_current = path, 0
    if current is not None and entries_of_current == 0:
        raise MalformedEvidence(f"{where}: file {current!r} has no attestation entries")
    raw = "\n".join(lines[divider + 1:])
    try:
        meta = json.loads(raw, object_pairs_hook=_no_duplicates)
    except ValueError as exc:
        raise MalformedEvidence(f"{where}: metadata section is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise MalformedEvidence(f"{where}: metadata section must be a JSON object")
    if meta.get("schema_version") != GIT_AI_SCHEMA:
        raise MalformedEvidence(f"{where}: schema_version is {meta.get('schema_version')!r}; this reader "
                                f"implements {GIT_AI_SCHEMA!r}")
    if not isinstance(meta.get("base_commit_sha"), str):
        raise MalformedEvidence(f"{where}: metadata field 'base_commit_sha' must be a string")
    if "git_ai_version" in meta and not isinstance(meta["git_ai_version"], str | None):
        raise MalformedEvidence(f"{where}: metadata field 'git_ai_version' must be a string")
    prompts = meta.get("prompts")
    if not isinstance(prompts, dict):
        raise MalformedEvidence(f"{where}: metadata field 'prompts' must be an object")
    agents: dict[str, str] = {}
    for key, rec in prompts.items():
        at = f"{where}: prompts[{key!r}]"
        if not _SESSION.fullmatch(key):
            raise MalformedEvidence(f"{at}: a session hash is 16 hexadecimal digits")
        if not isinstance(rec, dict):
            raise MalformedEvidence(f"{at}: a prompt record must be an object")
        aid = rec.get("agent_id")
        if not isinstance(aid, dict) or not all(isinstance(aid.get(k), str) for k in ("tool", "id", "model")):
            raise MalformedEvidence(f"{at}: 'agent_id' must be an object with string fields tool, id and model")
        if not isinstance(rec.get("messages"), list):
            raise MalformedEvidence(f"{at}: 'messages' must be an array")
        for k in _PROMPT_INTS:
            v = rec.get(k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise MalformedEvidence(f"{at}: {k!r} must be a non-negative integer")
        if "human_author" in rec and not isinstance(rec["human_author"], str | None):
            raise MalformedEvidence(f"{at}: 'human_author' must be a string")
        agents[key] = f"{aid['tool']}/{aid['model']}"
    for sess, no in used.items():
        if sess not in prompts:
            raise MalformedEvidence(f"{where}: line {no}: session {sess} has no prompt record in the metadata")
    return GitAiNote({p: _merge(r) for p, r in files.items()}, agents, meta["base_commit_sha"])
