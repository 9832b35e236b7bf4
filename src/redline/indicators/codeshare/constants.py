"""Names, formats and line categories shared by every module of the code-share package."""

from __future__ import annotations

INDICATOR_NAME = "ai-code-share"
UNIT = "fraction"
METHOD_WINDOW = "git-first-parent-added-lines"
METHOD_SURVIVAL = "git-blame-survival"
METHOD_VERSION = "2"
EVIDENCE_FORMAT = "redline.codeshare.evidence/v1"
NOTES_REF = "refs/notes/ai"
AGENT_TRACE_PATH = ".agent-trace/traces.jsonl"
CONFIG_PATH = ".redline/code-share.yaml"
DEFAULT_RULES = "ai-authorship-v3.yaml"
GIT_AI_SCHEMA = "authorship/3.0.0"
CLASSES = ("source", "tests", "config", "docs")

# Line categories, in the order of every count tuple.
AI_LINE, HUMAN_LINE, AI_COMMIT, UNKNOWN = range(4)
CATEGORIES = ("ai_line", "human_line", "ai_commit", "unknown")
