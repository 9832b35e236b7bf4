"""What a measurement loads besides history: traces, the declaration, the repository's label."""

from __future__ import annotations

from pathlib import Path

from redline.errors import (
    GitFailed,
    MalformedEvidence,
)
from redline.indicators.codeshare.agenttrace import AgentTraces, parse_agent_trace
from redline.indicators.codeshare.constants import AGENT_TRACE_PATH, CONFIG_PATH
from redline.indicators.codeshare.git import Git
from redline.indicators.codeshare.repoconfig import RepoConfig
from redline.indicators.codeshare.rules import Rules
from redline.indicators.files import read_regular
from redline.times import format_utc

#: Largest Agent Trace file read from disk (bytes).
MAX_AGENT_TRACE_BYTES = 64 * 1024 * 1024


def _load_traces(git: Git, tip: str, rules: Rules, agent_trace: str | Path | None) -> AgentTraces | None:
    if agent_trace is not None:
        p = Path(agent_trace)
        data = read_regular(p, MAX_AGENT_TRACE_BYTES, f"Agent Trace file {p}", MalformedEvidence)
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
        return f"declared in {CONFIG_PATH} for commits from {format_utc(config.notes_complete_since)}"
    return None


def _repo_label(git: Git) -> str:
    try:
        top = git.out("rev-parse", "--show-toplevel").decode().strip()
        return Path(top).name if top else git.path.resolve().name
    except GitFailed:
        name = git.path.resolve().name
        return name.removesuffix(".git")
