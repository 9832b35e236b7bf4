"""The rule file (schema, parsing, loading) and the file filters built from it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redline.errors import (
    MalformedEvidence,
)
from redline.indicators.codeshare.constants import DEFAULT_RULES
from redline.indicators.codeshare.globs import GlobSet
from redline.indicators.files import read_regular

#: Largest rule file read (bytes).
MAX_RULES_BYTES = 1 << 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _CommitRules(_Strict):
    trailer_keys: list[str] = Field(alias="trailer-keys", default_factory=list)
    emails: list[str] = Field(default_factory=list)
    email_suffixes: list[str] = Field(alias="email-suffixes", default_factory=list)
    bot_logins: list[str] = Field(alias="bot-logins", default_factory=list)
    author_name_suffixes: list[str] = Field(alias="author-name-suffixes", default_factory=list)
    author_name_contains: list[str] = Field(alias="author-name-contains", default_factory=list)
    subject_prefixes: list[str] = Field(alias="subject-prefixes", default_factory=list)
    match_case: bool = Field(alias="match-case", default=True)


class _InvolvementRules(_Strict):
    committer_name_suffixes: list[str] = Field(alias="committer-name-suffixes", default_factory=list)
    trailer_keys: list[str] = Field(alias="trailer-keys", default_factory=list)


class _AgentTraceRules(_Strict):
    ai: str
    mixed: str
    human: str
    unknown: str


class _Classes(_Strict):
    tests: list[str] = Field(default_factory=list)
    config: list[str] = Field(default_factory=list)
    docs: list[str] = Field(default_factory=list)


class _RuleFile(_Strict):
    id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    version: int = Field(ge=1)
    commit: _CommitRules
    involvement: _InvolvementRules = Field(default_factory=_InvolvementRules)
    line_evidence: bool = Field(alias="line-evidence", default=True)
    agent_trace: _AgentTraceRules = Field(alias="agent-trace")
    ignore: list[str] = Field(default_factory=list)
    classes: _Classes


@dataclass(frozen=True)
class Rules:
    """A parsed rule file: commit-level markers, Agent Trace mapping, the ignore list and file classes."""

    id: str
    version: int
    sha256: str
    source: str
    trailer_keys: frozenset[str]
    emails: frozenset[str]
    email_suffixes: tuple[str, ...]
    bot_logins: frozenset[str]
    author_name_suffixes: tuple[str, ...]
    author_name_contains: tuple[str, ...]
    subject_prefixes: tuple[str, ...]
    match_case: bool
    committer_name_suffixes: tuple[str, ...]
    #: Trailer keys (lower-cased) whose mere presence marks a tool's involvement (e.g. ``claude-session``).
    involvement_trailer_keys: frozenset[str]
    #: Whether git-ai notes and Agent Trace records are read at all (a profile reproducing a
    #: commit-level method, such as aider's, turns them off).
    line_evidence: bool
    agent_trace: Mapping[str, str]
    ignore: GlobSet
    classes: tuple[tuple[str, GlobSet], ...]

    @property
    def rule_version(self) -> str:
        """What every result records: ``<id>-v<version>``, e.g. ``ai-authorship-v3``."""
        return f"{self.id}-v{self.version}"

    def file_class(self, path: str) -> str:
        for name, globs in self.classes:
            if globs.match(path):
                return name
        return "source"


def parse_rules(data: bytes, source: str) -> Rules:
    """Parse and validate a rule file; every problem is ``MalformedEvidence`` naming the file and field."""
    if len(data) > MAX_RULES_BYTES:
        raise MalformedEvidence(f"{source}: {len(data)} bytes, over the limit of {MAX_RULES_BYTES} for a rule file")
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise MalformedEvidence(f"{source}: not valid YAML: {exc}") from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML recognises but cannot build (2027-13-45, huge ints)
        raise MalformedEvidence(f"{source}: a value YAML cannot read: {exc}") from None
    except RecursionError:
        raise MalformedEvidence(f"{source}: nested too deeply to be a rule file") from None
    if not isinstance(doc, dict):
        raise MalformedEvidence(f"{source}: a rule file is a YAML mapping")
    try:
        rf = _RuleFile.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise MalformedEvidence(f"{source}: field '{loc}': {err.get('msg')}") from None
    kinds = {"ai", "human", "unknown"}
    for typ, kind in rf.agent_trace.model_dump().items():
        if kind not in kinds:
            raise MalformedEvidence(f"{source}: field 'agent-trace.{typ}': must be one of ai, human, unknown")
    c = rf.commit
    try:
        ignore = GlobSet(rf.ignore)
        classes = tuple((name, GlobSet(getattr(rf.classes, name))) for name in ("tests", "config", "docs"))
    except (re.error, MalformedEvidence) as exc:
        raise MalformedEvidence(f"{source}: bad glob: {exc}") from None
    return Rules(
        id=rf.id, version=rf.version, sha256=hashlib.sha256(data).hexdigest(), source=source,
        trailer_keys=frozenset(k.lower() for k in c.trailer_keys), emails=frozenset(e.lower() for e in c.emails),
        email_suffixes=tuple(s.lower() for s in c.email_suffixes),
        bot_logins=frozenset(b.lower() for b in c.bot_logins),
        author_name_suffixes=tuple(c.author_name_suffixes), author_name_contains=tuple(c.author_name_contains),
        subject_prefixes=tuple(c.subject_prefixes), match_case=c.match_case,
        committer_name_suffixes=tuple(rf.involvement.committer_name_suffixes),
        involvement_trailer_keys=frozenset(k.lower() for k in rf.involvement.trailer_keys),
        line_evidence=rf.line_evidence, agent_trace=rf.agent_trace.model_dump(), ignore=ignore, classes=classes)


def builtin_rules(name: str = DEFAULT_RULES) -> Rules:
    """A rule file shipped in ``redline/indicators/rules/`` (``ai-authorship-v3.yaml``, the default;
    ``ai-authorship-v2.yaml``, kept so that earlier results can be recomputed; ``aider-blame-v1.yaml``)."""
    data = resources.files("redline.indicators").joinpath("rules", name).read_bytes()
    return parse_rules(data, f"built-in rules {name}")


def load_rules(path: str | Path | None = None) -> Rules:
    """The rule file at ``path``, or the built-in default (``ai-authorship-v3``)."""
    if path is None:
        return builtin_rules()
    p = Path(path)
    data = read_regular(p, MAX_RULES_BYTES, f"rule file {p}", MalformedEvidence)
    return parse_rules(data, str(p))


@dataclass(frozen=True)
class Filters:
    """Which files count: the rule file's ignore list (unless dropped), include and exclude globs.

    An explicit include beats the default ignore list (``--include 'vendor/ours/**'`` counts a
    vendored directory that is in fact yours); an exclude beats everything.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    default_ignore: bool = True

    def compile(self, rules: Rules) -> _PathFilter:
        return _PathFilter(self, rules)


class _PathFilter:
    def __init__(self, filters: Filters, rules: Rules) -> None:
        try:
            self.include = GlobSet(filters.include)
            self.exclude = GlobSet(filters.exclude)
        except re.error as exc:
            raise MalformedEvidence(f"bad glob: {exc}") from None
        self.ignore = rules.ignore if filters.default_ignore else GlobSet(())
        self.rules = rules
        self._cache: dict[str, str | None] = {}

    def classify(self, path: str) -> str | None:
        """The file class of ``path``, or ``None`` when it does not count."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        cls: str | None
        if self.exclude.match(path):
            cls = None
        elif self.include:
            cls = self.rules.file_class(path) if self.include.match(path) else None
        elif self.ignore.match(path):
            cls = None
        else:
            cls = self.rules.file_class(path)
        self._cache[path] = cls
        return cls
