"""The share of a repository's code authored by AI, measured from git history.

Population
    *Window mode* (:func:`code_share`): the commits on the first-parent history of a
    branch whose **committer** date falls in ``[since, until)`` (author dates can be set to
    anything; committer dates are set when a commit lands). Each step is diffed against
    its first parent, so a squash merge, a merge commit and a fast-forwarded run of
    commits all count the lines they brought to the branch exactly once. The population
    is the added lines, less blank lines and less files that nobody writes (generated,
    vendored and lock files: the rule file's ``ignore`` list, overridable), filtered by
    include/exclude globs.

    *Survival mode* (:func:`survival`): the lines of the tree at END that were added after
    START, found with ``git blame -M -C -C START..END`` (moved and copied lines keep their
    original commit); each is attributed to the commit that last touched it.

Evidence, strongest first
    Line level: git-ai authorship notes (``refs/notes/ai``, Git AI Standard v3.0.0) and
    Agent Trace records (``.agent-trace/traces.jsonl``, Agent Trace v0.1). A git-ai note
    lists the AI-authored lines of its commit, so the commit's other lines are human by
    line-level evidence. Agent Trace ranges say ``ai``/``mixed`` (AI), ``human`` or ``unknown``.
    Commit level: ``Co-authored-by`` trailers (parsed as git parses them), bot identities
    and aider's name and subject markers (the rule file's ``commit`` section). A commit
    with commit-level evidence fills the lines its line-level evidence leaves unknown.

    A commit with no note, no trace record and no commit-level evidence is **unknown**,
    never human, unless the repository declares its notes complete for that commit (a
    ``notes-complete-since`` date in ``.redline/code-share.yaml`` at the branch tip, or
    ``notes_complete=True``): then a missing note means "no AI lines".

    Lines that a merge commit brings in are attributed to the commits that wrote them
    (``git blame FIRST_PARENT..MERGE``), so side-branch notes and trailers count.

Output
    With N counted lines, ``ai_line`` of them AI and ``human_line`` human by line-level
    evidence, ``ai_commit`` unknown at line level but AI by commit-level evidence, and
    ``unknown`` the rest:

    - lower bound = ai_line / N (line-level evidence only),
    - point estimate = (ai_line + ai_commit) / N,
    - upper bound = (N - human_line) / N = lower bound + the share line-level evidence leaves open,
    - unknown share = unknown / N (no evidence either way), and the evidence coverage.

    The signed indicator (``ai-code-share``, unit ``fraction``) carries the point estimate
    as its value and [lower bound, upper bound] as its interval.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redline.crypto.canonical import canonical_json
from redline.errors import MalformedInput, RedlineError

INDICATOR_NAME = "ai-code-share"
UNIT = "fraction"
METHOD_WINDOW = "git-first-parent-added-lines"
METHOD_SURVIVAL = "git-blame-survival"
METHOD_VERSION = "1"
EVIDENCE_FORMAT = "redline.codeshare.evidence/v1"
NOTES_REF = "refs/notes/ai"
AGENT_TRACE_PATH = ".agent-trace/traces.jsonl"
CONFIG_PATH = ".redline/code-share.yaml"
DEFAULT_RULES = "ai-authorship-v1.yaml"
GIT_AI_SCHEMA = "authorship/3.0.0"
CLASSES = ("source", "tests", "config", "docs")

# Line categories, in the order of every count tuple.
AI_LINE, HUMAN_LINE, AI_COMMIT, UNKNOWN = range(4)
CATEGORIES = ("ai_line", "human_line", "ai_commit", "unknown")


# --- errors -------------------------------------------------------------------------------------------


class CodeShareError(RedlineError):
    """A code-share measurement that cannot be made as asked (the message says why)."""


class NotARepository(CodeShareError):
    """A path that is not a git repository (or a revision that is not in it)."""


class HistoryMissing(CodeShareError):
    """History the measurement needs is absent, e.g. a shallow clone cut inside the window."""


class EmptyWindow(CodeShareError):
    """Nothing to measure: no commits, or no countable lines, in the window."""


class GitFailed(CodeShareError):
    """A git command failed unexpectedly."""


class MalformedEvidence(MalformedInput):
    """A git-ai note, an Agent Trace record, a rule file or a repository declaration that does not parse."""


# --- globs --------------------------------------------------------------------------------------------


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
        self._re = re.compile("|".join(f"(?:{_glob_regex(p)})" for p in self.patterns) + r"\Z") \
            if self.patterns else None

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def match(self, path: str) -> bool:
        return self._re is not None and self._re.match(path) is not None


# --- rules --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _CommitRules(_Strict):
    trailer_keys: list[str] = Field(alias="trailer-keys", min_length=1)
    emails: list[str] = Field(default_factory=list)
    email_suffixes: list[str] = Field(alias="email-suffixes", default_factory=list)
    bot_logins: list[str] = Field(alias="bot-logins", default_factory=list)
    name_suffixes: list[str] = Field(alias="name-suffixes", default_factory=list)
    subject_prefixes: list[str] = Field(alias="subject-prefixes", default_factory=list)


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
    name_suffixes: tuple[str, ...]
    subject_prefixes: tuple[str, ...]
    agent_trace: Mapping[str, str]
    ignore: GlobSet
    classes: tuple[tuple[str, GlobSet], ...]

    @property
    def rule_version(self) -> str:
        """What every result records: ``<id>-v<version>``, e.g. ``ai-authorship-v1``."""
        return f"{self.id}-v{self.version}"

    def file_class(self, path: str) -> str:
        for name, globs in self.classes:
            if globs.match(path):
                return name
        return "source"


def parse_rules(data: bytes, source: str) -> Rules:
    """Parse and validate a rule file; every problem is ``MalformedEvidence`` naming the file and field."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise MalformedEvidence(f"{source}: not valid YAML: {exc}") from None
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
        name_suffixes=tuple(c.name_suffixes), subject_prefixes=tuple(c.subject_prefixes),
        agent_trace=rf.agent_trace.model_dump(), ignore=ignore, classes=classes)


def load_rules(path: str | Path | None = None) -> Rules:
    """The rule file at ``path``, or the built-in ``ai-authorship-v1``."""
    if path is None:
        data = resources.files("redline.indicators").joinpath("rules", DEFAULT_RULES).read_bytes()
        return parse_rules(data, f"built-in rules {DEFAULT_RULES}")
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise MalformedEvidence(f"cannot read rule file {p}: {exc.strerror or exc}") from None
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


# --- git ----------------------------------------------------------------------------------------------

_GIT_ENV = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0",
            "LC_ALL": "C", "GIT_PAGER": "cat"}
_GIT_CONFIG = ("-c", "core.quotepath=on", "-c", "log.showSignature=false", "-c", "diff.noprefix=false",
               "-c", "diff.mnemonicPrefix=false", "-c", "diff.relative=false", "-c", "blame.ignoreRevsFile=",
               "-c", "core.commitGraph=true")


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


# --- git-ai authorship notes (Git AI Standard v3.0.0) --------------------------------------------------

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


# --- Agent Trace records (agent-trace.dev v0.1) --------------------------------------------------------

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


# --- the repository's own declaration ------------------------------------------------------------------


def _parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedEvidence(f"{what}: {value!r} is not an ISO 8601 date or date-time") from None
    elif hasattr(value, "year") and hasattr(value, "month"):  # a YAML date
        dt = datetime(value.year, value.month, value.day)
    else:
        raise MalformedEvidence(f"{what}: expected a date or date-time, got {value!r}")
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def parse_time(value: str | datetime, what: str = "time") -> datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when no offset is given)."""
    return _parse_time(value, what)


@dataclass(frozen=True)
class RepoConfig:
    """``.redline/code-share.yaml`` at the branch tip: the repository's declarations about its evidence."""

    notes_complete_since: datetime | None = None

    @classmethod
    def parse(cls, data: bytes, where: str) -> RepoConfig:
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise MalformedEvidence(f"{where}: not valid YAML: {exc}") from None
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise MalformedEvidence(f"{where}: must be a YAML mapping")
        unknown = set(doc) - {"version", "notes-complete-since"}
        if unknown:
            raise MalformedEvidence(f"{where}: unknown field {sorted(unknown)[0]!r} (known: version, "
                                    "notes-complete-since)")
        if doc.get("version", 1) != 1:
            raise MalformedEvidence(f"{where}: version must be 1")
        since = doc.get("notes-complete-since")
        return cls(_parse_time(since, f"{where}: notes-complete-since") if since is not None else None)


# --- commits and commit-level evidence ------------------------------------------------------------------

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
    """One commit's header and the AI markers the rules find in it."""

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


def _email_of(value: str) -> str:
    m = _EMAIL.search(value)
    return (m.group(1) if m else value).strip().lower()


def commit_markers(rules: Rules, *, author: str, author_email: str, committer: str, committer_email: str,
                   subject: str, trailers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The commit-level AI markers the rules find: ``co-author:<email>``, ``bot:<login>``, ``name:...``, ..."""
    hits: list[str] = []

    def bot(email: str) -> str | None:
        if not email.endswith("@users.noreply.github.com"):
            return None
        m = _BOT_EMAIL.fullmatch(email)
        return m.group("login") if m and m.group("login") in rules.bot_logins else None

    for who, email in (("author", author_email.lower()), ("committer", committer_email.lower())):
        login = bot(email)
        if login:
            hits.append(f"{who}-bot:{login}")
    for key, value in trailers:
        if key.lower() not in rules.trailer_keys:
            continue
        email = _email_of(value)
        login = bot(email)
        if email in rules.emails or any(email.endswith(s) for s in rules.email_suffixes):
            hits.append(f"co-author:{email}")
        elif login:
            hits.append(f"co-author-bot:{login}")
    for who, name in (("author", author), ("committer", committer)):
        for suffix in rules.name_suffixes:
            if name.rstrip().endswith(suffix):
                hits.append(f"{who}-name:{suffix}")
    for prefix in rules.subject_prefixes:
        if subject.startswith(prefix):
            hits.append(f"subject:{prefix}")
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
                                     subject=subject, trailers=tr))


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


# --- classification -----------------------------------------------------------------------------------


class _Ranges:
    __slots__ = ("starts", "ends")

    def __init__(self, ranges: Iterable[tuple[int, int]]) -> None:
        merged = _merge(ranges)
        self.starts = [s for s, _ in merged]
        self.ends = [e for _, e in merged]

    def __contains__(self, line: int) -> bool:
        i = bisect.bisect_right(self.starts, line) - 1
        return i >= 0 and line <= self.ends[i]

    def __bool__(self) -> bool:
        return bool(self.starts)


_EMPTY = _Ranges(())


@dataclass
class _FileEvidence:
    gitai: _Ranges
    trace_ai: _Ranges
    trace_human: _Ranges
    default: int  # HUMAN_LINE (a note or a completeness declaration covers the commit) or UNKNOWN
    commit_ai: bool

    def classify(self, lines: Iterable[int], counts: list[int], sources: Counter[str]) -> None:
        gitai, tai, thu = self.gitai, self.trace_ai, self.trace_human
        fallback = AI_COMMIT if (self.default == UNKNOWN and self.commit_ai) else self.default
        if not gitai and not tai and not thu:
            n = sum(1 for _ in lines)
            counts[fallback] += n
            if fallback == AI_COMMIT:
                sources["commit-level"] += n
            return
        for n in lines:
            if gitai and n in gitai:
                counts[AI_LINE] += 1
                sources["git-ai"] += 1
            elif tai and n in tai:
                counts[AI_LINE] += 1
                sources["agent-trace"] += 1
            elif thu and n in thu:
                counts[HUMAN_LINE] += 1
            else:
                counts[fallback] += 1
                if fallback == AI_COMMIT:
                    sources["commit-level"] += 1


class _Evidence:
    """Everything known about the authorship of one commit's lines."""

    def __init__(self, info: CommitInfo, note: GitAiNote | None, traces: Mapping[str, tuple[TraceRange, ...]] | None,
                 notes_complete: bool) -> None:
        self.info = info
        self.note = note
        self.traces = traces or {}
        self.notes_complete = notes_complete
        self._files: dict[str, _FileEvidence] = {}

    @property
    def notes_complete_applies(self) -> bool:
        """A declared-complete note set says "no note, no AI lines" -- unless commit-level evidence says otherwise.

        A declaration of absence never beats positive evidence: a commit with no note but an AI
        co-author trailer stays AI at commit level.
        """
        return self.note is None and self.notes_complete and not self.info.ai_markers

    @property
    def kinds(self) -> tuple[str, ...]:
        k = []
        if self.note is not None:
            k.append("git-ai")
        if self.traces:
            k.append("agent-trace")
        if self.notes_complete_applies:
            k.append("notes-complete")
        k.extend(self.info.ai_markers)
        return tuple(k)

    def file(self, path: str) -> _FileEvidence:
        if self.note is None and not self.traces:  # nothing line-level: one judgement for every file
            fe = self._files.get("")
            if fe is None:
                fe = self._files[""] = _FileEvidence(_EMPTY, _EMPTY, _EMPTY,
                                                     HUMAN_LINE if self.notes_complete_applies else UNKNOWN,
                                                     bool(self.info.ai_markers))
            return fe
        fe = self._files.get(path)
        if fe is None:
            gitai = _Ranges(self.note.files.get(path, ())) if self.note is not None else _EMPTY
            tr = self.traces.get(path, ())
            fe = _FileEvidence(
                gitai, _Ranges((r.start, r.end) for r in tr if r.kind == "ai") if tr else _EMPTY,
                _Ranges((r.start, r.end) for r in tr if r.kind == "human") if tr else _EMPTY,
                HUMAN_LINE if (self.note is not None or self.notes_complete_applies) else UNKNOWN,
                bool(self.info.ai_markers))
            self._files[path] = fe
        return fe


class _EvidenceSource:
    """Notes, traces and declarations of a repository, looked up per commit (notes fetched in batches)."""

    def __init__(self, git: Git, rules: Rules, *, notes_ref: str, traces: AgentTraces | None,
                 trace_revision: str, notes_complete: bool | None, config: RepoConfig,
                 child_of: Mapping[str, str] | None = None) -> None:
        self.git, self.rules, self.notes_ref = git, rules, notes_ref
        self.notes_tip = git.ref_tip(notes_ref)
        self.note_blobs: dict[str, str] = {}
        if self.notes_tip is not None:
            for line in git.out("notes", f"--ref={notes_ref}", "list").decode().splitlines():
                blob, _, commit = line.partition(" ")
                if commit:
                    self.note_blobs[commit.strip()] = blob.strip()
        self.notes: dict[str, GitAiNote | None] = {}
        self.traces = traces
        self.trace_for: dict[str, Mapping[str, tuple[TraceRange, ...]]] = {}
        if traces is not None:
            for rev, files in traces.by_revision.items():
                target = rev if trace_revision == "commit" else (child_of or {}).get(rev)
                if target is not None:
                    self.trace_for[target] = files
        self.trace_used: set[str] = set()
        self.notes_complete, self.config = notes_complete, config
        self.infos: dict[str, CommitInfo] = {}
        self._ev: dict[str, _Evidence] = {}

    def complete_for(self, info: CommitInfo) -> bool:
        if self.notes_complete is not None:
            return self.notes_complete
        since = self.config.notes_complete_since
        return since is not None and info.time >= since.timestamp()

    def load(self, shas: Iterable[str]) -> None:
        """Fetch the commit headers and notes of ``shas`` not yet known (two git processes at most)."""
        shas = list(dict.fromkeys(shas))
        self.infos.update(read_commits(self.git, [s for s in shas if s not in self.infos], self.rules))
        self.load_notes(shas)

    def load_notes(self, shas: Iterable[str]) -> None:
        need = [s for s in dict.fromkeys(shas) if s not in self.notes]
        blobs = self.git.cat_blobs(sorted({self.note_blobs[s] for s in need if s in self.note_blobs}))
        for s in need:
            b = self.note_blobs.get(s)
            self.notes[s] = parse_git_ai_note(blobs[b], f"git-ai note on commit {s[:12]} ({self.notes_ref})") \
                if b is not None else None

    def used(self) -> list[_Evidence]:
        return list(self._ev.values())

    def evidence(self, sha: str) -> _Evidence:
        ev = self._ev.get(sha)
        if ev is None:
            if sha not in self.infos or sha not in self.notes:
                self.load([sha])
            info = self.infos[sha]
            traces = self.trace_for.get(sha)
            if traces:
                self.trace_used.add(sha)
            ev = _Evidence(info, self.notes[sha], traces, self.complete_for(info))
            self._ev[sha] = ev
        return ev


# --- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shares:
    """Line counts in the four categories, and the shares derived from them."""

    ai_line: int = 0
    human_line: int = 0
    ai_commit: int = 0
    unknown: int = 0

    @classmethod
    def of(cls, counts: Sequence[int]) -> Shares:
        return cls(*counts)

    @property
    def total(self) -> int:
        return self.ai_line + self.human_line + self.ai_commit + self.unknown

    def _frac(self, n: int) -> float:
        return n / self.total if self.total else 0.0

    @property
    def lower_bound(self) -> float:
        """AI share by line-level evidence only."""
        return self._frac(self.ai_line)

    @property
    def point(self) -> float:
        """AI share when commit-level evidence fills the gaps line-level evidence leaves."""
        return self._frac(self.ai_line + self.ai_commit)

    @property
    def upper_bound(self) -> float:
        """Largest AI share consistent with line-level evidence: everything not shown to be human."""
        return self._frac(self.total - self.human_line)

    @property
    def unknown_share(self) -> float:
        """Share with no evidence either way."""
        return self._frac(self.unknown)

    @property
    def human_share(self) -> float:
        return self._frac(self.human_line)

    @property
    def line_coverage(self) -> float:
        """Share of lines with line-level evidence (AI or human)."""
        return self._frac(self.ai_line + self.human_line)

    @property
    def coverage(self) -> float:
        """Share of lines with any evidence."""
        return self._frac(self.total - self.unknown)

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.total, "ai_line": self.ai_line, "human_line": self.human_line,
                "ai_commit": self.ai_commit, "unknown": self.unknown,
                "lower_bound": round(self.lower_bound, 6), "point": round(self.point, 6),
                "upper_bound": round(self.upper_bound, 6), "unknown_share": round(self.unknown_share, 6),
                "line_coverage": round(self.line_coverage, 6), "coverage": round(self.coverage, 6)}


@dataclass(frozen=True)
class CommitRow:
    """One commit's contribution: its lines in the four categories and the evidence it carried."""

    sha: str
    time: int
    counts: tuple[int, int, int, int]
    evidence: tuple[str, ...]

    def to_list(self) -> list[Any]:
        return [self.sha, self.time, *self.counts, list(self.evidence)]


def _utc(ts: int | float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).replace(tzinfo=None).isoformat() + "Z"


@dataclass(frozen=True)
class CodeShareResult:
    """A code-share measurement: the shares, per file class, per commit, and what it was computed from."""

    mode: str  # "window" or "survival"
    repository: str
    branch: str
    tip: str
    start: str | None  # survival: the START commit
    window_start: datetime
    window_end: datetime
    since: datetime | None
    until: datetime | None
    rules: Rules
    filters: Filters
    notes_ref: str
    notes_tip: str | None
    notes_complete: str | None  # how the completeness of notes was declared, if it was
    agent_trace: dict[str, Any] | None
    totals: Shares
    by_class: Mapping[str, Shares]
    commits: tuple[CommitRow, ...]
    population_commits: int
    sources: Mapping[str, int]
    markers: Mapping[str, int]  # commit-level marker -> commits carrying it
    merges: int

    @property
    def method(self) -> str:
        return METHOD_WINDOW if self.mode == "window" else METHOD_SURVIVAL

    @property
    def lower_bound(self) -> float:
        return self.totals.lower_bound

    @property
    def point(self) -> float:
        return self.totals.point

    @property
    def upper_bound(self) -> float:
        return self.totals.upper_bound

    @property
    def unknown(self) -> float:
        return self.totals.unknown_share

    def summary(self) -> dict[str, Any]:
        """Everything but the per-commit rows."""
        commit_counts = Counter()
        for row in self.commits:
            ev = set(row.evidence)
            commit_counts["with-git-ai-note"] += "git-ai" in ev
            commit_counts["with-agent-trace"] += "agent-trace" in ev
            commit_counts["with-commit-markers"] += any(":" in e for e in ev)
        return {
            "format": EVIDENCE_FORMAT,
            "indicator": INDICATOR_NAME,
            "mode": self.mode,
            "method": self.method,
            "method_version": METHOD_VERSION,
            "rules": {"version": self.rules.rule_version, "sha256": self.rules.sha256},
            "filters": {"include": list(self.filters.include), "exclude": list(self.filters.exclude),
                        "default_ignore": self.filters.default_ignore},
            "repository": {"branch": self.branch, "tip": self.tip, "start": self.start,
                           "notes_ref": self.notes_ref, "notes_tip": self.notes_tip,
                           "agent_trace": self.agent_trace, "notes_complete": self.notes_complete},
            "window": {"start": _iso(self.window_start), "end": _iso(self.window_end),
                       "since": _iso(self.since) if self.since else None,
                       "until": _iso(self.until) if self.until else None},
            "population": {"commits": self.population_commits, "merges": self.merges,
                           "commits_with_lines": len(self.commits), **dict(sorted(commit_counts.items()))},
            "totals": self.totals.to_dict(),
            "by_class": {k: v.to_dict() for k, v in self.by_class.items()},
            "ai_lines_by_source": dict(sorted(self.sources.items())),
            "commit_markers": dict(sorted(self.markers.items())),
        }

    def evidence(self) -> dict[str, Any]:
        """The evidence document: the summary plus one row per commit ``[sha, time, ai_line, human_line,
        ai_commit, unknown, [evidence]]``. Its canonical JSON digest is the statement's evidence digest;
        anyone with the repository recomputes it."""
        return {**self.summary(), "commit_columns": ["sha", "committer_time", *CATEGORIES, "evidence"],
                "commits": [r.to_list() for r in self.commits]}

    @property
    def evidence_digest(self) -> str:
        return hashlib.sha256(canonical_json(self.evidence())).hexdigest()

    def indicator_fields(self, subject: str) -> dict[str, Any]:
        """Keyword arguments for :func:`redline.indicators.signing.indicator_envelope` (less ``seq``)."""
        return {"name": INDICATOR_NAME, "subject": subject, "value": self.point, "unit": UNIT,
                "interval": (self.lower_bound, self.upper_bound), "window": (self.window_start, self.window_end),
                "method": self.method, "method_version": METHOD_VERSION, "rule_version": self.rules.rule_version,
                "evidence_digest": self.evidence_digest}


class _Tally:
    def __init__(self) -> None:
        self.by_class: dict[str, list[int]] = {c: [0, 0, 0, 0] for c in CLASSES}
        self.by_commit: dict[str, list[int]] = {}
        self.extra: dict[str, set[str]] = {}
        self.sources: Counter[str] = Counter()

    def add(self, row: str, cls: str, fe: _FileEvidence, lines: Iterable[int]) -> None:
        """Count ``lines`` (judged by ``fe``) under the commit row ``row`` and the file class ``cls``."""
        counts = [0, 0, 0, 0]
        fe.classify(lines, counts, self.sources)
        c = self.by_class[cls]
        r = self.by_commit.setdefault(row, [0, 0, 0, 0])
        for i in range(4):
            c[i] += counts[i]
            r[i] += counts[i]


def _finish(tally: _Tally, src: _EvidenceSource, **kw: Any) -> CodeShareResult:
    markers: Counter[str] = Counter()
    for ev in src.used():  # every commit whose evidence judged a counted line (merged side commits too)
        markers.update(ev.info.ai_markers)
    rows = []
    for sha, counts in tally.by_commit.items():
        if not any(counts):
            continue
        ev = src.evidence(sha)
        kinds = ev.kinds + tuple(sorted(tally.extra.get(sha, ())))
        rows.append(CommitRow(sha, ev.info.time, (counts[0], counts[1], counts[2], counts[3]), kinds))
    rows.sort(key=lambda r: (r.time, r.sha))
    totals = [sum(c[i] for c in tally.by_class.values()) for i in range(4)]
    if sum(totals) == 0:
        raise EmptyWindow(kw.pop("empty_message"))
    kw.pop("empty_message", None)
    traces = src.traces
    return CodeShareResult(
        rules=src.rules, notes_ref=src.notes_ref, notes_tip=src.notes_tip,
        agent_trace=None if traces is None else {"sha256": traces.sha256, "records": traces.records,
                                                 "records_without_git_revision": traces.other_vcs,
                                                 "commits_matched": len(src.trace_used)},
        totals=Shares.of(totals), by_class={c: Shares.of(v) for c, v in tally.by_class.items()},
        commits=tuple(rows), sources=dict(tally.sources), markers=dict(markers), **kw)


# --- diff streaming (window mode) -----------------------------------------------------------------------

#: An added line that is blank: "+" and nothing but whitespace (in a block of lines joined by newlines).
_BLANK_ADDED = re.compile(rb"^\+[ \t\r\f\v]*$", re.M)
_COMMIT_LINE = re.compile(rb"(?:[0-9a-f]{40}|[0-9a-f]{64})\n")
_HUNK_FULL = re.compile(rb"@@ -([0-9]+)(?:,([0-9]+))? \+([0-9]+)(?:,([0-9]+))? @@")


#: The fewest first-parent commits worth a git process of their own in window mode.
_SEGMENT_MIN = 500
_DIFF_OPTS = ["-p", "-U0", "--inter-hunk-context=0", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
              "--diff-algorithm=myers", "--src-prefix=a/", "--dst-prefix=b/"]


def _added_lines(git: Git, newest: str, boundary: str | None, rules: Rules,
                 want: Callable[[str], bool] = lambda path: True, mainline: Container[str] | None = None) \
        -> Iterator[tuple[CommitInfo, str | None, list[int]] | tuple[CommitInfo, _FileHunks]]:
    """The diffs of the commits from ``newest`` back to (not including) ``boundary``, each against its first parent.

    One ``git log -p -U0`` process streams every header and diff; it is read in large blocks and
    cut into commits at the record marker. With ``mainline=None`` only the first-parent chain is
    walked; otherwise every commit of the range is, and those not in ``mainline`` (the commits
    merges bring in) come in the same pass, sharing git's delta-base cache.

    For a first-parent commit, yields ``(commit, path, lines)`` for each file for which
    ``want(path)`` holds: the new-side numbers of its added, non-blank lines (a commit that adds
    nothing counted is yielded once with ``path=None``, so that every header is seen). For any
    other commit, yields ``(commit, hunks)`` (see :func:`_file_hunks`).
    """
    args = ["log", *(["--first-parent"] if mainline is None else []), "--diff-merges=first-parent", "--no-notes",
            *_DIFF_OPTS, f"--format={_RECORD_FORMAT}", newest, *([f"^{boundary}"] if boundary else []), "--"]
    for record in git.records(args, _RECORD_SEP):
        fields = record.split(b"\x00", _NFIELDS)
        if len(fields) != _NFIELDS + 1:
            raise GitFailed(f"cannot parse a commit header in git log output: {record[:80]!r}")
        info = _commit_from_fields(fields[:_NFIELDS], rules)
        if mainline is not None and info.sha not in mainline:
            yield info, _file_hunks(fields[_NFIELDS].split(b"\n"))
            continue
        yielded = False
        for path, added in _record_files(fields[_NFIELDS].split(b"\n"), want):
            yield info, path, added
            yielded = True
        if not yielded:
            yield info, None, []


def _record_files(lines: list[bytes], want: Callable[[str], bool]) -> Iterator[tuple[str, list[int]]]:
    """The counted files of one commit's ``-U0`` patch and the new-side numbers of their non-blank added lines."""
    path: str | None = None
    added: list[int] = []
    submodule = False
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith(b"@@ "):
            m = _HUNK_FULL.match(line)
            if m is None:
                raise GitFailed(f"cannot parse hunk header {line[:80]!r}")
            oc = int(m.group(2)) if m.group(2) is not None else 1
            ns = int(m.group(3))
            nc = int(m.group(4)) if m.group(4) is not None else 1
            i += 1
            # With -U0 a hunk is one change: oc removed lines, then nc added ones, each side
            # possibly followed by a "\ No newline at end of file" line. Check, then slice.
            j = i + oc
            if j < n and lines[j][:1] == b"\\":
                j += 1
            k = j + nc
            ok = (k <= n and (oc == 0 or lines[j - 1][:1] in (b"-", b"\\"))
                  and (nc == 0 or (lines[j][:1] == b"+" and lines[k - 1][:1] == b"+"))
                  and (k == n or lines[k][:1] not in (b"+", b"-")))
            if not ok:  # not the expected shape: read it line by line
                newno, left_old, left_new = ns, oc, nc
                while i < n and (left_old or left_new or lines[i][:1] == b"\\"):
                    c = lines[i][:1]
                    if c == b"+" and left_new:
                        if path is not None and len(lines[i]) > 1 and not lines[i][1:].isspace():
                            added.append(newno)
                        newno += 1
                        left_new -= 1
                    elif c == b"-" and left_old:
                        left_old -= 1
                    elif c != b"\\":
                        break
                    i += 1
                continue
            if nc and path is not None:
                joined = b"\n".join(lines[j:k])
                blanks = [joined.count(b"\n", 0, m.start()) for m in _BLANK_ADDED.finditer(joined)]
                if not blanks:
                    added.extend(range(ns, ns + nc))
                else:
                    skip = set(blanks)
                    added.extend(ns + x for x in range(nc) if x not in skip)
            i = k
            if i < n and lines[i][:1] == b"\\":
                i += 1
            continue
        if line.startswith(b"diff --git "):
            if path is not None and added:
                yield path, added
            path, added, submodule = None, [], False
        elif line.startswith(b"+++ "):
            raw = line[4:]
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            path = _path(raw[2:]) if raw.startswith(b"b/") and not submodule else None
            if path is not None and not want(path):
                path = None
        elif line.startswith(b"new file mode 160000") or (line.startswith(b"index ") and line.endswith(b" 160000")):
            submodule = True  # its "lines" are commit IDs
        i += 1
    if path is not None and added:
        yield path, added


# --- blame ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlamedLine:
    """A line of a file and the commit that last touched it (with the path and line number there)."""

    final: int
    commit: str
    orig_path: str
    orig_line: int
    boundary: bool
    blank: bool


def parse_blame_porcelain(out: bytes) -> list[BlamedLine]:
    """Parse ``git blame --porcelain`` output."""
    result: list[BlamedLine] = []
    boundary: set[bytes] = set()
    lines = out.split(b"\n")
    i, n = 0, len(lines)
    filename = b""
    while i < n and lines[i]:
        head = lines[i].split(b" ")
        sha, orig, final = head[0], int(head[1]), int(head[2])
        i += 1
        while i < n and not lines[i].startswith(b"\t"):
            key, _, val = lines[i].partition(b" ")
            if key == b"boundary":
                boundary.add(sha)
            elif key == b"filename":
                filename = _unquote_c(val)
            i += 1
        content = lines[i][1:] if i < n else b""
        i += 1
        result.append(BlamedLine(final, sha.decode(), _path(filename), orig, sha in boundary, not content.strip()))
    return result


def _blame(git: Git, args: Sequence[str], rev_range: str, path: str) -> list[BlamedLine]:
    return parse_blame_porcelain(git.out("blame", "--porcelain", *args, rev_range, "--", path))


def _parallel(jobs: int | None, fn: Any, items: Sequence[Any]) -> list[Any]:
    workers = jobs or min(8, os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


# --- the measurements -----------------------------------------------------------------------------------


def _load_traces(git: Git, tip: str, rules: Rules, agent_trace: str | Path | None) -> AgentTraces | None:
    if agent_trace is not None:
        p = Path(agent_trace)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise MalformedEvidence(f"cannot read Agent Trace file {p}: {exc.strerror or exc}") from None
        return parse_agent_trace(data, str(p), rules)
    data = git.blob_at(tip, AGENT_TRACE_PATH)
    return parse_agent_trace(data, f"{AGENT_TRACE_PATH} at {tip[:12]}", rules) if data is not None else None


def _load_config(git: Git, tip: str) -> RepoConfig:
    data = git.blob_at(tip, CONFIG_PATH)
    return RepoConfig.parse(data, f"{CONFIG_PATH} at {tip[:12]}") if data is not None else RepoConfig()


def _completeness(notes_complete: bool | None, config: RepoConfig) -> str | None:
    if notes_complete:
        return "asserted by the caller for every commit"
    if notes_complete is None and config.notes_complete_since is not None:
        return f"declared in {CONFIG_PATH} for commits from {_iso(config.notes_complete_since)}"
    return None


def _repo_label(git: Git) -> str:
    try:
        top = git.out("rev-parse", "--show-toplevel").decode().strip()
        return Path(top).name if top else git.path.resolve().name
    except GitFailed:
        name = git.path.resolve().name
        return name[:-4] if name.endswith(".git") else name


def _mainline_sides(git: Git, newest: str, boundary: str | None, mainline: Sequence[str]) \
        -> tuple[dict[str, list[str]], dict[str, tuple[str, ...]]]:
    """For every merge on the first-parent chain: the commits it brings in (``rev-list M^1..M``), newest first.

    One ``git rev-list --parents`` over the span; then each mainline commit, oldest first, claims
    the commits reachable from it that no earlier one claimed.
    """
    graph: dict[str, tuple[str, ...]] = {}
    for line in git.out("rev-list", "--parents", newest, *([f"^{boundary}"] if boundary else []), "--") \
            .decode().splitlines():
        parts = line.split()
        graph[parts[0]] = tuple(parts[1:])
    claimed: set[str] = set()
    sides: dict[str, list[str]] = {}
    for m in mainline:
        if m not in graph:
            continue
        claimed.add(m)
        parents = graph[m]
        if len(parents) < 2:
            continue
        found: list[str] = []
        stack = list(reversed(parents[1:]))
        while stack:
            c = stack.pop()
            if c in claimed or c not in graph:
                continue
            claimed.add(c)
            found.append(c)
            stack.extend(reversed(graph[c]))
        sides[m] = found
    return sides, graph


_FileHunks = dict[str, tuple[str | None, list[tuple[int, int, int, int]]]]


def _file_hunks(lines: Iterable[bytes]) -> _FileHunks:
    """One commit's ``-U0`` patch as new path -> (old path, or ``None`` for a new file; hunks
    ``(old_start, old_count, new_start, new_count)``)."""
    out: _FileHunks = {}
    old_path: str | None = None
    hunks: list[tuple[int, int, int, int]] = []
    in_hunk = 0
    for line in lines:
        if in_hunk:
            c = line[:1]
            if c in (b"+", b"-", b"\\"):
                in_hunk -= c != b"\\"
                continue
            in_hunk = 0
        if line.startswith(b"@@ "):
            m = _HUNK_FULL.match(line)
            if m is None:
                raise GitFailed(f"cannot parse hunk header {line[:80]!r}")
            os_, oc, ns, nc = (int(g) if g is not None else 1 for g in m.groups())
            hunks.append((os_, oc, ns, nc))
            in_hunk = oc + nc
        elif line.startswith(b"--- "):
            raw = line[4:].rstrip(b"\n")
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            old_path = _path(raw[2:]) if raw.startswith(b"a/") else None
        elif line.startswith(b"+++ "):
            raw = line[4:].rstrip(b"\n")
            raw = _unquote_c(raw) if raw.startswith(b'"') else raw.removesuffix(b"\t")
            if raw.startswith(b"b/"):
                hunks = []
                out[_path(raw[2:])] = (old_path, hunks)
        elif line.startswith(b"diff --git "):
            old_path, hunks = None, []
    return out


def _file_diffs(git: Git, requests: Sequence[str]) -> dict[str, _FileHunks]:
    """Diffs for many ``"<commit> [<parent>]"`` requests through one ``git diff-tree --stdin``: commit -> hunks."""
    result: dict[str, _FileHunks] = {}
    if not requests:
        return result
    data = git.out("diff-tree", "--stdin", "--always", "-r", *_DIFF_OPTS,
                   input="".join(f"{r}\n" for r in requests).encode())
    sha, chunk = None, []
    for line in data.split(b"\n"):
        if _COMMIT_LINE.fullmatch(line + b"\n"):
            if sha is not None:
                result[sha] = _file_hunks(chunk)
            sha, chunk = line.decode(), []
        else:
            chunk.append(line)
    if sha is not None:
        result[sha] = _file_hunks(chunk)
    return result


def _through(lines: list[tuple[int, int]], hunks: list[tuple[int, ...]]) \
        -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split ``(key, line)`` pairs (new-side numbers) into the lines the diff added and the others (mapped to
    old-side numbers)."""
    ends: list[int] = []
    deltas: list[int] = []
    added: list[tuple[int, int]] = []
    total = 0
    for _, oc, ns, nc in sorted(hunks, key=lambda h: h[2]):
        ends.append(ns + nc - 1 if nc else ns)
        total += nc - oc
        deltas.append(total)
        if nc:
            added.append((ns, ns + nc - 1))
    made, kept = [], []
    starts = [a for a, _ in added]
    for key, n in lines:
        i = bisect.bisect_right(starts, n) - 1
        if i >= 0 and n <= added[i][1]:
            made.append((key, n))
            continue
        j = bisect.bisect_left(ends, n) - 1  # the last hunk that ends before n
        kept.append((key, n - (deltas[j] if j >= 0 else 0)))
    return made, kept


def _track_linear(merge: CommitInfo, chain: Sequence[str], path: str, added: list[int],
                  diffs: Mapping[str, Mapping[str, tuple[str | None, list[tuple[int, ...]]]]]) \
        -> dict[tuple[str, str], list[int]] | None:
    """Where each of ``added`` (lines of ``path`` at the merge) was written, following the merged commits' diffs.

    ``chain`` is the merged side branch, newest first, each commit with one parent. The
    merge's diff against its second parent gives the lines the merge itself wrote; each side
    commit's diff against its parent gives the lines it wrote, and maps the others one step
    back -- what ``git blame MERGE^1..MERGE`` does. Lines that reach the side branch's base
    are judged by the merge (as a blame boundary would be). ``None`` when the path history
    cannot be followed this way.
    """
    out: dict[tuple[str, str], list[int]] = {}
    todo = [(n, n) for n in added]  # (line at the merge, line at the current commit)
    cur_path = path
    for sha, rec in [(merge.sha, diffs.get(merge.sha, {}).get(path)), *((c, None) for c in chain)]:
        if sha != merge.sha:
            rec = diffs.get(sha, {}).get(cur_path)
        if rec is None:
            continue  # the file did not change in this step
        old_path, hunks = rec
        if old_path is None:
            out.setdefault((sha, cur_path), []).extend(n for _, n in todo)
            return out
        made, todo = _through(todo, hunks)
        if made:
            out.setdefault((sha, cur_path), []).extend(n for _, n in made)
        cur_path = old_path
        if not todo:
            return out
    for key, _ in todo:
        out.setdefault((merge.sha, path), []).append(key)
    return out


@dataclass
class _MergePlan:
    """What attributing merges needs, prepared while the diffs stream: side branches, chains and their diffs."""

    sides: dict[str, list[str]]
    chains: dict[str, list[str]]
    diffs: dict[str, _FileHunks]


def _prepare_merges(git: Git, src: _EvidenceSource, merges: Sequence[str], shallow: frozenset[str], *,
                    newest: str, boundary: str | None, mainline: Sequence[str]) -> _MergePlan:
    """Find what each merge brings in, load those commits' headers and notes, and diff the linear side branches."""
    if shallow:
        for m in merges:
            cut = shallow & set(git.out("rev-list", f"{m}^1..{m}").decode().split())
            if cut:
                raise HistoryMissing(f"{git.path} is a shallow clone and the history merged by {m[:12]} is cut "
                                     f"at {sorted(cut)[0][:12]}; fetch more history")
    sides, graph = _mainline_sides(git, newest, boundary, mainline)
    src.load_notes([*merges, *(c for m in merges for c in sides.get(m, ()))])
    chains: dict[str, list[str]] = {}
    for m in merges:
        side = sides.get(m, [])
        parents = graph.get(m, ())
        chain, c = [], parents[1] if len(parents) == 2 else None
        members = set(side)
        while c is not None and c in members:
            cp = graph.get(c, ())
            if len(cp) != 1:
                break
            chain.append(c)
            c = cp[0]
        if len(parents) == 2 and len(chain) == len(side):
            chains[m] = chain
    # The side commits' own diffs come with the main stream; here only each merge against its second parent.
    diffs = _file_diffs(git, [f"{m} {graph[m][1]}" for m in chains])
    return _MergePlan(sides, chains, diffs)


def _attribute_merges(git: Git, src: _EvidenceSource, tally: _Tally,
                      pending: list[tuple[CommitInfo, str, str, list[int]]], plan: _MergePlan,
                      jobs: int | None) -> None:
    """Count the lines merge commits bring in, each judged by the evidence of the commit that wrote it.

    For a merge of a linear side branch (the usual pull request), each line is followed back
    through the merge's diff against its second parent and the side commits' own diffs (one
    ``git diff-tree --stdin`` for all merges); otherwise ``git blame MERGE^1..MERGE -- PATH``
    names the commit. A line that reaches the side branch's base (the two diffs may disagree)
    or that the merge itself wrote is judged by the merge's own evidence. The lines count under
    the merge's row, tagged ``merged-from:N`` (N: the commits the merge brought in).
    """
    results: list[dict[tuple[str, str], list[int]] | None] = [
        _track_linear(info, plan.chains[info.sha], path, added, plan.diffs) if info.sha in plan.chains else None
        for info, path, _, added in pending]
    fallback = [i for i, r in enumerate(results) if r is None]
    blamed = _parallel(jobs, lambda i: _blame(git, (), f"{pending[i][0].sha}^1..{pending[i][0].sha}", pending[i][1]),
                       fallback)
    src.load({b.commit for bl in blamed for b in bl if not b.boundary})
    for i, bl in zip(fallback, blamed):
        info, path, _, added = pending[i]
        by_final = {b.final: b for b in bl}
        groups: dict[tuple[str, str], list[int]] = {}
        for n in added:
            b = by_final.get(n)
            if b is not None and not b.boundary:
                groups.setdefault((b.commit, b.orig_path), []).append(b.orig_line)
            else:
                groups.setdefault((info.sha, path), []).append(n)
        results[i] = groups
    for (info, _, cls, _), groups in zip(pending, results):
        assert groups is not None
        for (sha, opath), lines in groups.items():
            tally.add(info.sha, cls, src.evidence(sha).file(opath), sorted(lines))
    for m in dict.fromkeys(info.sha for info, _, _, _ in pending):
        for c in plan.sides.get(m, ()):
            src.evidence(c)  # every merged commit's markers count, whichever lines survived to the merge
        tally.extra.setdefault(m, set()).add(f"merged-from:{len(plan.sides.get(m, ()))}")


def code_share(repo: str | Path, *, branch: str = "HEAD", since: datetime | str | None = None,
               until: datetime | str | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
               default_ignore: bool = True, rules: Rules | str | Path | None = None,
               notes_complete: bool | None = None, agent_trace: str | Path | None = None,
               agent_trace_revision: str = "commit", notes_ref: str = NOTES_REF,
               jobs: int | None = None) -> CodeShareResult:
    """Measure the AI share of the lines added to ``branch`` by commits committed in ``[since, until)``.

    ``notes_complete``: ``True`` asserts that every commit in the window that has AI-written lines
    carries a git-ai note (so a commit without one is human); ``False`` refuses any such
    declaration; ``None`` (the default) uses the repository's own declaration, if any.
    ``agent_trace``: an Agent Trace JSONL file to use instead of ``.agent-trace/traces.jsonl`` at
    the tip. ``agent_trace_revision``: ``"commit"`` (the Agent Trace spec: a record's revision is
    the commit holding the lines) or ``"parent"`` (the reference hook's behaviour: the revision is
    the HEAD the edit was made on, so the lines land in its first-parent child on this branch).
    """
    if agent_trace_revision not in ("commit", "parent"):
        raise CodeShareError("agent_trace_revision must be 'commit' or 'parent'")
    git = Git(repo)
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    since_dt = parse_time(since, "since") if since is not None else None
    until_dt = parse_time(until, "until") if until is not None else None
    if since_dt and until_dt and not since_dt < until_dt:
        raise EmptyWindow(f"the window [{_iso(since_dt)}, {_iso(until_dt)}) is empty: 'since' must be before 'until'")
    tip = git.resolve(branch, "branch")
    lo = since_dt.timestamp() if since_dt else None
    hi = until_dt.timestamp() if until_dt else None

    # The first-parent chain from the commit-graph: (sha, committer time, first parent); the next entry is the
    # first parent, except past a root or a shallow boundary.
    stamps = git.out("rev-list", "--first-parent", "--timestamp", tip, "--").decode().split()
    shas, cts = stamps[1::2], [int(t) for t in stamps[0::2]]
    fp_merges = set(git.out("rev-list", "--first-parent", "--merges", tip, "--").decode().split())
    shallow = git.shallow_commits() if git.is_shallow() else frozenset()
    walk = [(sha, ct, shas[i + 1] if i + 1 < len(shas) and sha not in shallow else None)
            for i, (sha, ct) in enumerate(zip(shas, cts))]
    for sha, ct, _ in walk:
        if sha in shallow and (lo is None or ct >= lo):
            need = f"the window starts {_iso(since_dt)}" if since_dt else "the window is the whole history"
            raise HistoryMissing(
                f"{git.path} is a shallow clone and the history before commit {sha[:12]} ({_iso(_utc(ct))}) is "
                f"missing, but {need}; fetch more (git fetch --shallow-since=DATE, --deepen=N or --unshallow)")
    chosen_idx = [i for i, (_, ct, _) in enumerate(walk) if (lo is None or ct >= lo) and (hi is None or ct < hi)]
    window_text = f"[{_iso(since_dt) if since_dt else 'beginning'}, {_iso(until_dt) if until_dt else 'now'})"
    if not chosen_idx:
        raise EmptyWindow(f"no commits on the first-parent history of {branch} ({tip[:12]}) were committed in "
                          f"the window {window_text}")
    selected = [walk[i] for i in reversed(chosen_idx)]  # oldest first
    chosen = {sha for sha, _, _ in selected}
    child_of = {fp: sha for sha, _, fp in selected if fp}

    config = _load_config(git, tip)
    traces = _load_traces(git, tip, rules, agent_trace)
    src = _EvidenceSource(git, rules, notes_ref=notes_ref, traces=traces, trace_revision=agent_trace_revision,
                          notes_complete=notes_complete, config=config, child_of=child_of)
    filters = Filters(tuple(include), tuple(exclude), default_ignore)
    pf = filters.compile(rules)

    # The span from the newest to the oldest chosen commit, cut into segments diffed by parallel git processes,
    # while another thread loads the notes and prepares the merges.
    span = walk[chosen_idx[0]:chosen_idx[-1] + 1]
    newest, boundary = span[0][0], span[-1][2]
    workers = jobs or min(4, os.cpu_count() or 1)
    size = max(_SEGMENT_MIN, -(-len(span) // workers))
    segments = [span[i:i + size] for i in range(0, len(span), size)]
    merges = [sha for sha, _, _ in selected if sha in fp_merges]

    on_mainline = {sha for sha, _, _ in walk}

    def diff_segment(seg: list[tuple[str, int, str | None]]) -> list[Any]:
        return list(_added_lines(git, seg[0][0], seg[-1][2], rules, lambda p: pf.classify(p) is not None,
                                 mainline=on_mainline if merges else None))

    def evidence_job() -> _MergePlan | None:
        src.load_notes(chosen)
        if not merges:
            return None
        return _prepare_merges(git, src, merges, shallow, newest=newest, boundary=boundary,
                               mainline=[sha for sha, _, _ in reversed(walk)])

    with ThreadPoolExecutor(max_workers=len(segments) + 1) as pool:
        plan_future = pool.submit(evidence_job)
        streamed = list(pool.map(diff_segment, segments))
        plan = plan_future.result()

    tally = _Tally()
    pending: list[tuple[CommitInfo, str, str, list[int]]] = []
    side_hunks: dict[str, _FileHunks] = {}
    for item in (item for part in streamed for item in part):
        if len(item) == 2:  # a commit a merge brings in
            src.infos.setdefault(item[0].sha, item[0])
            side_hunks[item[0].sha] = item[1]
            continue
        info, path, added = item
        if info.sha not in chosen:
            continue  # inside the span but committed outside the window (committer dates are not monotonic)
        src.infos.setdefault(info.sha, info)
        cls = pf.classify(path) if path is not None else None
        if cls is None:
            continue
        if len(info.parents) > 1:
            pending.append((info, path, cls, added))  # judged by the commits that wrote the lines, below
        else:
            tally.add(info.sha, cls, src.evidence(info.sha).file(path), added)
    if pending:
        assert plan is not None
        plan.diffs.update(side_hunks)
        _attribute_merges(git, src, tally, pending, plan, jobs)

    times = [ct for _, ct, _ in selected]
    return _finish(tally, src, empty_message=(
        f"the window {window_text} of {branch} ({tip[:12]}) has {len(selected)} commit(s) but no countable added "
        "lines (after blank lines, ignored files and include/exclude globs)"),
        mode="window", repository=_repo_label(git), branch=branch, tip=tip, start=None,
        window_start=since_dt or _utc(min(times)), window_end=until_dt or _utc(max(times)),
        since=since_dt, until=until_dt, filters=filters,
        notes_complete=_completeness(notes_complete, config), population_commits=len(selected), merges=len(merges))


def survival(repo: str | Path, rev_range: str, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
             default_ignore: bool = True, rules: Rules | str | Path | None = None,
             notes_complete: bool | None = None, agent_trace: str | Path | None = None,
             agent_trace_revision: str = "commit", notes_ref: str = NOTES_REF,
             jobs: int | None = None) -> CodeShareResult:
    """Measure the AI share of the lines added after START that still exist at END (``rev_range`` is ``START..END``).

    Each line of END's tree that ``git blame -M -C -C START..END`` attributes to a commit after START
    counts, judged by the evidence of that commit at the path and line number it had there.
    """
    start_rev, sep, end_rev = rev_range.partition("..")
    if not sep or not start_rev or not end_rev or end_rev.startswith("."):
        raise CodeShareError(f"survival range {rev_range!r} must be START..END (two revisions)")
    if agent_trace_revision not in ("commit", "parent"):
        raise CodeShareError("agent_trace_revision must be 'commit' or 'parent'")
    git = Git(repo)
    rules = rules if isinstance(rules, Rules) else load_rules(rules)
    start = git.resolve(start_rev, "survival START")
    end = git.resolve(end_rev, "survival END")
    if git._run(["merge-base", "--is-ancestor", start, end], check=False).returncode != 0:
        raise CodeShareError(f"survival START {start_rev} ({start[:12]}) is not an ancestor of END {end_rev} "
                             f"({end[:12]})")
    in_range = git.out("rev-list", f"{start}..{end}").decode().split()
    if not in_range:
        raise EmptyWindow(f"no commits between {start_rev} and {end_rev}: nothing can have been added")
    if git.is_shallow():
        cut = git.shallow_commits() & set(in_range)
        if cut:
            raise HistoryMissing(f"{git.path} is a shallow clone cut at {sorted(cut)[0][:12]}, inside "
                                 f"{start_rev}..{end_rev}; fetch more history")
    child_of = {}
    for line in git.out("log", "--first-parent", "--format=%H %P", f"{start}..{end}").decode().splitlines():
        parts = line.split()
        if len(parts) > 1:
            child_of[parts[1]] = parts[0]
    config = _load_config(git, end)
    traces = _load_traces(git, end, rules, agent_trace)
    src = _EvidenceSource(git, rules, notes_ref=notes_ref, traces=traces, trace_revision=agent_trace_revision,
                          notes_complete=notes_complete, config=config, child_of=child_of)
    filters = Filters(tuple(include), tuple(exclude), default_ignore)
    pf = filters.compile(rules)

    files: list[tuple[str, str]] = []
    for rec in git.out("diff", "--numstat", "-z", "--no-renames", start, end).split(b"\x00"):
        if not rec:
            continue
        a, _, rest = rec.partition(b"\t")
        _, _, p = rest.partition(b"\t")
        if a == b"-" or a == b"0":
            continue  # binary, or nothing added
        path = _path(p)
        cls = pf.classify(path)
        if cls is not None:
            files.append((path, cls))
    blamed = _parallel(jobs, lambda f: _blame(git, ("-M", "-C", "-C"), f"{start}..{end}", f[0]), files)
    src.load({b.commit for bl in blamed for b in bl if not b.boundary})
    tally = _Tally()
    for (_, cls), bl in zip(files, blamed):
        groups: dict[tuple[str, str], list[int]] = {}
        for b in bl:
            if not b.boundary and not b.blank:
                groups.setdefault((b.commit, b.orig_path), []).append(b.orig_line)
        for (sha, opath), lines in groups.items():
            tally.add(sha, cls, src.evidence(sha).file(opath), sorted(lines))
    st, et = src.infos.get(start), src.infos.get(end)
    if st is None or et is None:
        src.load([start, end])
        st, et = src.infos[start], src.infos[end]
    if st.time > et.time:
        raise CodeShareError(f"survival START {start_rev} was committed after END {end_rev}; cannot form a window")
    return _finish(tally, src, empty_message=(
        f"no countable lines added after {start_rev} survive at {end_rev} (after blank lines, ignored files "
        "and include/exclude globs)"),
        mode="survival", repository=_repo_label(git), branch=end_rev, tip=end, start=start,
        window_start=_utc(st.time), window_end=_utc(et.time), since=None, until=None, filters=filters,
        notes_complete=_completeness(notes_complete, config), population_commits=len(in_range),
        merges=int(git.out("rev-list", "--merges", "--count", f"{start}..{end}").decode().strip() or 0))


# --- the plot -------------------------------------------------------------------------------------------


def plot(result: CodeShareResult, path: str | Path) -> Path:
    """Write a PNG of the code share over time (lower bound, point estimate, upper bound; lines per period)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CodeShareError("--plot needs matplotlib (pip install 'redline[evals]')") from None
    rows = result.commits
    span = rows[-1].time - rows[0].time if rows else 0
    day = 86400
    width = day if span <= 45 * day else 7 * day if span <= 400 * day else 30 * day
    buckets: dict[int, list[int]] = {}
    for r in rows:
        b = buckets.setdefault(r.time // width * width, [0, 0, 0, 0])
        for i in range(4):
            b[i] += r.counts[i]
    keys = sorted(buckets)
    import matplotlib.dates as mdates

    edges = [mdates.date2num(_utc(k)) for k in keys] + [mdates.date2num(_utc(keys[-1] + width))]
    sh = [Shares.of(buckets[k]) for k in keys]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax.stairs([s.upper_bound for s in sh], edges, baseline=[s.lower_bound for s in sh], fill=True, alpha=0.2,
              color="tab:red", label="interval (lower bound .. upper bound)")
    ax.stairs([s.point for s in sh], edges, baseline=None, color="tab:red", linewidth=1.8, label="point estimate")
    ax.stairs([s.lower_bound for s in sh], edges, baseline=None, color="tab:red", linestyle="--", linewidth=0.8,
              label="lower bound (line-level evidence)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("AI share of surviving lines" if result.mode == "survival" else "AI share of added lines")
    unit = {day: "day", 7 * day: "week", 30 * day: "30 days"}[width]
    what = "surviving lines, by their commit" if result.mode == "survival" else "lines added"
    ax.set_title(f"AI code share of {result.repository} ({result.branch}), per {unit}: {what}\n"
                 f"overall {result.point:.1%} [{result.lower_bound:.1%}, {result.upper_bound:.1%}], "
                 f"unknown {result.unknown:.1%}; rules {result.rules.rule_version}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    bottoms = [0] * len(keys)
    for i, (label, color) in enumerate((("AI (line level)", "tab:red"), ("human (line level)", "tab:blue"),
                                        ("AI (commit level)", "salmon"), ("unknown", "lightgray"))):
        vals = [buckets[k][i] for k in keys]
        ax2.bar(edges[:-1], vals, width=width / day * 0.9, bottom=bottoms, color=color, label=label, align="edge")
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax2.xaxis_date()
    ax2.set_ylabel("lines")
    ax2.legend(loc="upper left", fontsize=8, ncol=4)
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out


__all__ = [
    "AgentTraces", "BlamedLine", "CodeShareError", "CodeShareResult", "CommitInfo", "CommitRow", "EmptyWindow",
    "Filters", "Git", "GitAiNote", "GitFailed", "GlobSet", "HistoryMissing", "INDICATOR_NAME", "MalformedEvidence",
    "NotARepository", "RepoConfig", "Rules", "Shares", "TraceRange", "UNIT", "code_share", "commit_markers",
    "load_rules", "parse_agent_trace", "parse_blame_porcelain", "parse_git_ai_note", "parse_rules", "parse_time",
    "plot", "read_commits", "survival",
]
