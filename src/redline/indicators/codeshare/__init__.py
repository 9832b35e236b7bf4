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

from redline.errors import CodeShareError, EmptyWindow, GitFailed, HistoryMissing, MalformedEvidence, NotARepository
from redline.indicators.codeshare.agenttrace import AgentTraces, TraceRange, parse_agent_trace
from redline.indicators.codeshare.blame import BlamedLine, parse_blame_porcelain
from redline.indicators.codeshare.commits import CommitInfo, commit_markers, involvement_markers, read_commits
from redline.indicators.codeshare.constants import (
    CATEGORIES,
    EVIDENCE_FORMAT,
    INDICATOR_NAME,
    METHOD_SURVIVAL,
    METHOD_VERSION,
    METHOD_WINDOW,
    NOTES_REF,
    UNIT,
)
from redline.indicators.codeshare.git import Git, _unquote_c
from redline.indicators.codeshare.gitai import GitAiNote, parse_git_ai_note
from redline.indicators.codeshare.globs import GlobSet
from redline.indicators.codeshare.plotting import plot
from redline.indicators.codeshare.profiles import PROFILES, Profile, get_profile
from redline.indicators.codeshare.repoconfig import RepoConfig, parse_time
from redline.indicators.codeshare.results import CodeShareResult, CommitRow, Shares
from redline.indicators.codeshare.rules import Filters, Rules, builtin_rules, load_rules, parse_rules
from redline.indicators.codeshare.surviving import survival
from redline.indicators.codeshare.window import code_share

__all__ = [
    "CATEGORIES",
    "EVIDENCE_FORMAT",
    "INDICATOR_NAME",
    "METHOD_SURVIVAL",
    "METHOD_VERSION",
    "METHOD_WINDOW",
    "NOTES_REF",
    "PROFILES",
    "UNIT",
    "AgentTraces",
    "BlamedLine",
    "CodeShareError",
    "CodeShareResult",
    "CommitInfo",
    "CommitRow",
    "EmptyWindow",
    "Filters",
    "Git",
    "GitAiNote",
    "GitFailed",
    "GlobSet",
    "HistoryMissing",
    "MalformedEvidence",
    "NotARepository",
    "Profile",
    "RepoConfig",
    "Rules",
    "Shares",
    "TraceRange",
    "_unquote_c",
    "builtin_rules",
    "code_share",
    "commit_markers",
    "get_profile",
    "involvement_markers",
    "load_rules",
    "parse_agent_trace",
    "parse_blame_porcelain",
    "parse_git_ai_note",
    "parse_rules",
    "parse_time",
    "plot",
    "read_commits",
    "survival",
]
