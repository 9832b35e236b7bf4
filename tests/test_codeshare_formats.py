"""The formats code share reads: git-ai notes, Agent Trace records, trailers, globs, the rule file, git's quoting."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_codeshare import SESSION, Repo, gitai_note, isolated_git  # noqa: F401  (the fixture is autouse)

from redline.errors import MalformedInput
from redline.indicators.codeshare import (
    Git,
    GlobSet,
    MalformedEvidence,
    _unquote_c,
    commit_markers,
    involvement_markers,
    load_rules,
    parse_agent_trace,
    parse_blame_porcelain,
    parse_git_ai_note,
    parse_rules,
    read_commits,
)

RULES = load_rules()

# --- git-ai authorship notes --------------------------------------------------------------------------

SPEC_EXAMPLE = """src/main.rs
  abcd1234abcd1234 1-10,15-20
  ef0a5678ef0a5678 25,30-35
src/lib.rs
  abcd1234abcd1234 1-50
"src/my file.rs"
  ef0a5678ef0a5678 7
---
{
  "schema_version": "authorship/3.0.0",
  "git_ai_version": "1.0.23",
  "base_commit_sha": "7734793b756b3921c88db5375a8c156e9532447b",
  "prompts": {
    "abcd1234abcd1234": {
      "agent_id": {"tool": "cursor", "id": "6ef2299e-a67f-432b-aa80-3d2fb4d28999", "model": "claude-4.5-opus"},
      "human_author": "Developer <dev@example.com>",
      "messages": [{"type": "user", "text": "Add error handling", "timestamp": "2025-12-05T01:22:13.211Z"}],
      "total_additions": 25, "total_deletions": 5, "accepted_lines": 20, "overriden_lines": 0
    },
    "ef0a5678ef0a5678": {
      "agent_id": {"tool": "cursor", "id": "a1b2c3d4-e5f6-7890-abcd-ef1234567890", "model": "claude-3-sonnet"},
      "messages": [],
      "total_additions": 6, "total_deletions": 0, "accepted_lines": 6, "overriden_lines": 0
    }
  }
}"""


def test_git_ai_note_of_the_standard() -> None:
    note = parse_git_ai_note(SPEC_EXAMPLE.encode())
    assert note.files == {"src/main.rs": ((1, 10), (15, 20), (25, 25), (30, 35)), "src/lib.rs": ((1, 50),),
                          "src/my file.rs": ((7, 7),)}
    assert note.agents == {"abcd1234abcd1234": "cursor/claude-4.5-opus", "ef0a5678ef0a5678": "cursor/claude-3-sonnet"}
    assert note.base_commit_sha == "7734793b756b3921c88db5375a8c156e9532447b"
    # A log with no attestations (a commit with no AI lines) is valid: every line of it is human.
    empty = parse_git_ai_note("---\n" + SPEC_EXAMPLE.split("---\n", 1)[1])
    assert empty.files == {}
    # Seven-digit hashes of older logs are accepted.
    old = SPEC_EXAMPLE.replace("abcd1234abcd1234", "abcd123")
    assert "abcd123" in parse_git_ai_note(old).agents


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.replace("---\n", ""), r"no '---' line"),
    (lambda t: t.replace("  abcd1234abcd1234 1-50", "   abcd1234abcd1234 1-50"), r"line 5: expected"),
    (lambda t: t.replace("  abcd1234abcd1234 1-50", "\tabcd1234abcd1234 1-50"), r"line 5: entries are indented"),
    (lambda t: t.replace("1-10,15-20", "1-10, 15-20"), r"line 2: bad line ranges"),
    (lambda t: t.replace("1-10,15-20", "15-20,1-10"), r"line 2: line ranges not in ascending order"),
    (lambda t: t.replace("1-10,15-20", "10-1"), r"line 2: bad line range '10-1'"),
    (lambda t: t.replace("1-10,15-20", "0-3"), r"line 2: bad line range '0-3'"),
    (lambda t: t.replace("  abcd1234abcd1234 1-50", "  xyz1234abcd1234z 1-50"), r"line 5: expected"),
    (lambda t: "  abcd1234abcd1234 1\n" + t, r"line 1: attestation entry before any file path"),
    (lambda t: t.replace("src/lib.rs\n", "src/lib.rs\nsrc/extra.rs\n"), r"file 'src/lib.rs' has no attestation"),
    (lambda t: t.replace("src/lib.rs\n", "src/main.rs\n"), r"file 'src/main.rs' appears twice"),
    (lambda t: t.replace("src/lib.rs\n", "\nsrc/lib.rs\n"), r"blank line in the attestation section"),
    (lambda t: t.replace('"src/my file.rs"', '"src/my file.rs'), r"badly quoted file path"),
    (lambda t: t.replace("  ef0a5678ef0a5678 7", "  0123456789abcdef 7"), r"session 0123456789abcdef has no prompt"),
    (lambda t: t.replace("authorship/3.0.0", "authorship/2.0.0"), r"schema_version is 'authorship/2.0.0'"),
    (lambda t: t.replace('"base_commit_sha": "7734793b756b3921c88db5375a8c156e9532447b",', ""),
     r"'base_commit_sha' must be a string"),
    (lambda t: t.replace('"total_additions": 6', '"total_additions": -6'), r"'total_additions' must be a non-negat"),
    (lambda t: t.replace('"model": "claude-3-sonnet"', '"model": 3'), r"'agent_id' must be an object"),
    (lambda t: t.replace('"messages": [],', ""), r"'messages' must be an array"),
    (lambda t: t.replace('"git_ai_version": "1.0.23",', '"git_ai_version": "1", "git_ai_version": "2",'),
     r"not valid JSON: duplicate key"),
    (lambda t: t[:-1], r"not valid JSON"),
    (lambda t: t.split("---\n")[0] + "---\n[]", r"must be a JSON object"),
])
def test_git_ai_note_strict_parser(mutate, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message) as info:
        parse_git_ai_note(mutate(SPEC_EXAMPLE).encode(), "note on abc")
    assert str(info.value).startswith("note on abc: ")
    assert isinstance(info.value, MalformedInput) and info.value.exit_code == 65


def test_git_ai_note_not_utf8() -> None:
    with pytest.raises(MalformedEvidence, match="not UTF-8"):
        parse_git_ai_note(b"\xff\xfe---\n{}")


def test_the_test_helper_writes_valid_notes() -> None:
    note = parse_git_ai_note(gitai_note({"a b.py": "1-2", "c.py": "3"}))
    assert note.files == {"a b.py": ((1, 2),), "c.py": ((3, 3),)} and SESSION in note.agents


# --- Agent Trace ----------------------------------------------------------------------------------------

README_RECORD = {
    "version": "0.1.0", "id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2026-01-23T14:30:00Z",
    "vcs": {"type": "git", "revision": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0"},
    "tool": {"name": "cursor", "version": "2.4.0"},
    "files": [
        {"path": "src/utils/parser.ts", "conversations": [{
            "url": "https://api.cursor.com/v1/conversations/12345",
            "contributor": {"type": "ai", "model_id": "anthropic/claude-opus-4-5-20251101"},
            "ranges": [{"start_line": 42, "end_line": 67, "content_hash": "murmur3:9f2e8a1b"}],
            "related": [{"type": "session", "url": "https://api.cursor.com/v1/sessions/67890"}]}]},
        {"path": "src/utils/helpers.ts", "conversations": [{
            "url": "https://api.cursor.com/v1/conversations/12345",
            "contributor": {"type": "mixed", "model_id": "openai/gpt-4o"},
            "ranges": [{"start_line": 10, "end_line": 25},
                       {"start_line": 30, "end_line": 31, "contributor": {"type": "human"}}]}]}],
    "metadata": {"confidence": 0.95, "dev.cursor": {"workspace_id": "ws-abc123"}},
}
MINIMAL = {"version": "1.0", "id": "550e8400-e29b-41d4-a716-446655440001", "timestamp": "2026-01-25T10:00:00Z",
           "files": [{"path": "src/app.ts", "conversations": [{"contributor": {"type": "ai"},
                                                                "ranges": [{"start_line": 1, "end_line": 50}]}]}]}


def _jsonl(*records: dict) -> bytes:
    return ("\n".join(json.dumps(r) for r in records) + "\n").encode()


def test_agent_trace_of_the_specification() -> None:
    traces = parse_agent_trace(_jsonl(README_RECORD, MINIMAL), "traces.jsonl", RULES)
    assert traces.records == 2 and traces.other_vcs == 1  # the minimal record names no revision
    files = traces.by_revision["a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0"]
    assert [(r.start, r.end, r.kind, r.model) for r in files["src/utils/parser.ts"]] == \
        [(42, 67, "ai", "anthropic/claude-opus-4-5-20251101")]
    # "mixed" counts as AI under ai-authorship-v3; a range may override its conversation's contributor.
    assert [(r.start, r.end, r.kind) for r in files["src/utils/helpers.ts"]] == [(10, 25, "ai"), (30, 31, "human")]
    assert len(traces.sha256) == 64


def _with(record: dict, path: list, value) -> dict:
    rec = json.loads(json.dumps(record))
    obj = rec
    for key in path[:-1]:
        obj = obj[key]
    if value is KeyError:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return rec


CONV = ["files", 0, "conversations", 0]


@pytest.mark.parametrize(("path", "value", "message"), [
    (["version"], "2.0", r"not a supported Agent Trace version"),
    (["version"], 1, r"not a supported Agent Trace version"),
    (["id"], "not-a-uuid", r"id must be a UUID"),
    (["timestamp"], "yesterday", r"RFC 3339"),
    (["files"], KeyError, r"required field 'files' is missing"),
    (["extra"], 1, r"unknown field 'extra'"),
    (["vcs", "type"], "cvs", r"vcs.type 'cvs'"),
    (["vcs", "revision"], "a1b2c3d", r"full lower-case commit SHA"),
    (["tool", "name"], 7, r"tool.name: must be a string"),
    (["metadata"], [], r"metadata must be an object"),
    (["files", 0, "path"], "/abs/path.ts", r"relative to the repository root"),
    ([*CONV, "contributor", "type"], "robot", r"'robot' is not one of human, ai, mixed, unknown"),
    ([*CONV, "contributor", "model_id"], "m" * 251, r"at most 250 characters"),
    ([*CONV, "ranges", 0, "start_line"], 0, r"start_line: must be an integer >= 1"),
    ([*CONV, "ranges", 0, "end_line"], 41, r"end_line 41 is before start_line 42"),
    ([*CONV, "ranges", 0, "end_line"], True, r"end_line: must be an integer"),
    ([*CONV, "ranges", 0, "colour"], "red", r"unknown field 'colour'"),
    ([*CONV, "related", 0, "url"], KeyError, r"required field 'url' is missing"),
])
def test_agent_trace_strict_parser(path: list, value, message: str) -> None:
    bad = _with(README_RECORD, path, value)
    with pytest.raises(MalformedEvidence, match=message) as info:
        parse_agent_trace(_jsonl(MINIMAL, bad), "t.jsonl", RULES)
    assert str(info.value).startswith("t.jsonl: line 2")


def test_agent_trace_bad_lines() -> None:
    with pytest.raises(MalformedEvidence, match="line 1: not a JSON object"):
        parse_agent_trace(b"{nope\n", "t.jsonl", RULES)
    with pytest.raises(MalformedEvidence, match="line 1: must be a JSON object"):
        parse_agent_trace(b"[]\n", "t.jsonl", RULES)
    assert parse_agent_trace(b"\n\n", "t.jsonl", RULES).records == 0


# --- commit-level markers and git's trailer parser ------------------------------------------------------


def _markers(**kw) -> tuple[str, ...]:
    base = dict(author="Dev", author_email="dev@lab.example", committer="Dev", committer_email="dev@lab.example",
                subject="change", trailers=())
    return commit_markers(RULES, **(base | kw))


def test_commit_markers() -> None:
    assert _markers() == ()
    assert _markers(trailers=[("Co-authored-by", "Claude <noreply@anthropic.com>")]) == \
        ("co-author:noreply@anthropic.com",)
    assert _markers(trailers=[("co-authored-by", "Whoever <NoReply@Anthropic.com>")]) == \
        ("co-author:noreply@anthropic.com",)  # keys and addresses compare without case; the name is irrelevant
    assert _markers(trailers=[("Co-authored-by", "Claude <claude@lab.example>")]) == ()
    assert _markers(trailers=[("Signed-off-by", "Claude <noreply@anthropic.com>")]) == ()
    assert _markers(trailers=[("Co-authored-by", "Copilot <175728472+Copilot@users.noreply.github.com>")]) == \
        ("co-author:175728472+copilot@users.noreply.github.com",)
    for email in ("cursoragent@cursor.com", "noreply@openai.com", "aider@aider.chat", "copilot@github.com"):
        assert _markers(trailers=[("Co-authored-by", f"X <{email}>")]) == (f"co-author:{email}",)
    assert _markers(author="claude[bot]", author_email="209825114+claude[bot]@users.noreply.github.com") == \
        ("author-bot:claude[bot]",)
    # A bot or AI identity as committer only, or a committer named "... (aider)": involvement, not authorship.
    assert _markers(committer_email="158243242+devin-ai-integration[bot]@users.noreply.github.com") == ()
    assert involvement_markers(RULES, committer="Devin", committer_email="1+devin-ai-integration[bot]@users.noreply."
                               "github.com") == ("committer-bot:devin-ai-integration[bot]",)
    assert _markers(author="Cursor Agent", author_email="cursoragent@cursor.com") == ("author:cursoragent@cursor.com",)
    assert _markers(author="claude[bot]") == ()  # a display name alone is not an identity
    assert _markers(trailers=[("Co-authored-by", "x <198982749+copilot-swe-agent[bot]@users.noreply.github.com>")]) \
        == ("co-author-bot:copilot-swe-agent[bot]",)
    assert _markers(author="Paul Gauthier (aider)") == ("author-name:(aider)",)
    assert _markers(committer="Paul (aider)") == ()  # aider marks the committer of every commit it makes
    assert involvement_markers(RULES, committer="Paul (aider)", committer_email="p@x") == ("committer-name:(aider)",)
    assert _markers(author="Paul (Aider)") == ()  # the default rules match aider's documented suffix exactly
    assert _markers(subject="aider: fix the bug") == ("subject:aider:",)
    assert _markers(subject="fix aider: bug") == ()


MESSAGES = {
    "trailer": ("Add x\n\nBody.\n\nCo-authored-by: Claude <noreply@anthropic.com>\n", 1),
    "folded": ("Add x\n\nCo-authored-by: Claude\n  <noreply@anthropic.com>\n", 1),
    "in the body": ("Add x\n\nCo-authored-by: Claude <noreply@anthropic.com>\n\nThe end, not trailers.\n", 0),
    "mixed block": ("Add x\n\nSigned-off-by: A <a@x>\nCo-authored-by: Codex <noreply@openai.com>\n", 1),
    "no body": ("Co-authored-by: Claude <noreply@anthropic.com>\n", 0),
    "two": ("x\n\nCo-authored-by: A <noreply@anthropic.com>\nCo-authored-by: B <aider@aider.chat>\n", 2),
}


#: Commits made the way each tool makes them (rules version 3; sources in ai-authorship-v3.yaml):
#: (message, author, committer) -> (AI markers, involvement markers).
_BOT = "@users.noreply.github.com"
TOOL_COMMITS = {
    # Claude Code: the model in the trailer's name, the session link after it.
    "claude code": (("Add x\n\nWhy.\n\nCo-Authored-By: Claude Opus 4.5 <noreply@anthropic.com>\n"
                     "Claude-Session: https://claude.ai/code/session_01AbCd\n", None, None),
                    (("co-author:noreply@anthropic.com",), ("trailer:claude-session",))),
    # Claude Code with attribution.commit = "": only the session link, which claims no authorship.
    "claude code, attribution off": (("Add x\n\nClaude-Session: https://claude.ai/code/session_01AbCd\n", None, None),
                                     ((), ("trailer:claude-session",))),
    # Cursor's agent in the editor or CLI (attributeCommitsToAgent on).
    "cursor agent": (("Add x\n\nCo-authored-by: Cursor <cursoragent@cursor.com>\n", None, None),
                     (("co-author:cursoragent@cursor.com",), ())),
    # Cursor's cloud agent commits as itself on its own branch.
    "cursor cloud agent": (("Add x\n", ("Cursor Agent", "cursoragent@cursor.com"),
                            ("Cursor Agent", "cursoragent@cursor.com")),
                           (("author:cursoragent@cursor.com",), ("committer:cursoragent@cursor.com",))),
    # "Made-with: Cursor" is in no public document: not a rule.
    "made with cursor": (("Add x\n\nMade-with: Cursor\n", None, None), ((), ())),
    # Codex CLI's prepare-commit-msg hook (features.codex_git_commit).
    "codex cli": (("Fix y\n\nCo-authored-by: Codex <noreply@openai.com>\n", None, None),
                  (("co-author:noreply@openai.com",), ())),
    # Codex's placeholder identity when none is configured (a bug report, not a convention).
    "codex placeholder": (("Fix y\n", ("Codex Test", "codex@example.com"), ("Codex Test", "codex@example.com")),
                          ((), ())),
    # A commit authored by OpenAI's ChatGPT Codex connector app.
    "codex connector": (("Fix y\n", ("chatgpt-codex-connector[bot]",
                                      f"199175422+chatgpt-codex-connector[bot]{_BOT}"), None),
                        (("author-bot:chatgpt-codex-connector[bot]",), ())),
    # "codex[bot]" is tied to Codex by no document: no longer a bot identity (version 3).
    "codex[bot]": (("Fix y\n", ("codex[bot]", f"codex[bot]{_BOT}"), None), ((), ())),
    # Devin CLI's trailer and Devin's GitHub App as author.
    "devin cli": (("Fix z\n\nGenerated with [Devin](https://devin.ai)\n\n"
                   f"Co-Authored-By: Devin <158243242+devin-ai-integration[bot]{_BOT}>\n", None, None),
                  (("co-author-bot:devin-ai-integration[bot]",), ())),
    "devin app": (("Fix z\n", ("devin-ai-integration[bot]", f"158243242+devin-ai-integration[bot]{_BOT}"),
                   ("devin-ai-integration[bot]", f"158243242+devin-ai-integration[bot]{_BOT}")),
                  (("author-bot:devin-ai-integration[bot]",), ("committer-bot:devin-ai-integration[bot]",))),
    # Copilot CLI's trailer.
    "copilot cli": ((f"Fix w\n\nCo-authored-by: Copilot <223556219+Copilot{_BOT}>\n", None, None),
                    ((f"co-author:223556219+copilot{_BOT}",), ())),
}


def test_each_tool_s_commits_as_the_tool_makes_them(tmp_path: Path) -> None:
    """Version 3 of the rules, checked against each tool's documented conventions: real commits made as the tool
    makes them give the markers the rule file's sources call for (authorship or mere involvement)."""
    r = Repo(tmp_path / "repo")
    shas = {name: r.commit(msg, {f"{i}.py": "x = 1\n"}, author=author, committer=committer)
            for i, (name, ((msg, author, committer), _)) in enumerate(TOOL_COMMITS.items())}
    infos = read_commits(Git(r.path), list(shas.values()), RULES)
    for name, (_, (ai, involved)) in TOOL_COMMITS.items():
        info = infos[shas[name]]
        assert (info.ai_markers, info.involvement) == (ai, involved), name
    # Version 2 read "codex[bot]" as Codex's and did not know the session link.
    v2 = load_rules(Path(__file__).parent.parent / "src/redline/indicators/rules/ai-authorship-v2.yaml")
    old = read_commits(Git(r.path), [shas["codex[bot]"], shas["claude code, attribution off"]], v2)
    assert old[shas["codex[bot]"]].ai_markers == ("author-bot:codex[bot]",)
    assert old[shas["claude code, attribution off"]].involvement == ()
    # In a measurement: involvement is recorded per commit, never counted.
    from redline.indicators.codeshare import code_share

    res = code_share(r.path)
    assert res.rules.rule_version == "ai-authorship-v3"
    assert res.involvement.get("trailer:claude-session") == 2
    assert not any(m.startswith("trailer:") for m in res.markers)
    ai_commits = {name for name, (_, (ai, _)) in TOOL_COMMITS.items() if ai}
    assert res.totals.ai_commit == len(ai_commits) and res.totals.unknown == len(TOOL_COMMITS) - len(ai_commits)


def test_trailers_are_parsed_as_git_interpret_trailers_parses_them(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    shas = {name: r.commit(msg, {f"{i}.txt": "x\n"}) for i, (name, (msg, _)) in enumerate(MESSAGES.items())}
    infos = read_commits(Git(r.path), list(shas.values()), RULES)
    for name, (msg, n) in MESSAGES.items():
        git_says = subprocess.run(["git", "interpret-trailers", "--parse"], input=msg, capture_output=True,
                                  text=True, check=True).stdout
        expected = tuple(tuple(p.strip() for p in line.split(":", 1)) for line in git_says.splitlines())
        info = infos[shas[name]]
        assert info.trailers == expected, name
        assert len(info.ai_markers) == n, name


# --- globs, rules, quoting, blame ---------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("*.lock", ["Cargo.lock", "a/b/poetry.lock"], ["Cargo.lock.txt", "lock"]),
    ("package-lock.json", ["package-lock.json", "web/package-lock.json"], ["package-lock.json.bak"]),
    ("vendor/", ["vendor/x.go", "a/vendor/b/c.go"], ["vendored/x.go", "vendor"]),
    ("/vendor/", ["vendor/x.go"], ["a/vendor/x.go"]),
    ("src/**/*.py", ["src/a.py", "src/x/y/a.py"], ["lib/src/a.py", "src/a.pyc"]),
    ("test_*.py", ["test_a.py", "pkg/test_b.py"], ["pkg/a_test.rs", "test_a.pyc"]),
    ("docs/*.md", ["docs/a.md"], ["docs/x/a.md", "a/docs/a.md"]),
    ("f?o.[ch]", ["foo.c", "x/fao.h"], ["fooo.c", "foo.cc"]),
    ("[!a]bc", ["xbc"], ["abc"]),
    ("*.js", ["a.js", "web/x/a.js"], ["a.json", "a.jsonl", "a.js.map", "a.jsx"]),
    ("*.map", ["a.js.map"], ["foo.mapper.py", "a.map/x.py"]),
    ("node_modules/", ["node_modules/a/b.js", "web/node_modules/c.js"], ["node_modules.py", "my_node_modules/x"]),
    ("/.github/workflows/**/*.yml", [".github/workflows/ci.yml", ".github/workflows/a/b.yml"],
     [".github/workflows/ci.yaml", "x/.github/workflows/ci.yml", ".github/workflows/ci.yml.bak"]),
])
def test_globs(pattern: str, yes: list[str], no: list[str]) -> None:
    g = GlobSet([pattern])
    for p in yes:
        assert g.match(p), (pattern, p)
    for p in no:
        assert not g.match(p), (pattern, p)


def test_globs_anchor_every_pattern() -> None:
    """Version 1 joined the patterns with "|" and anchored only the last: every other one matched as a prefix."""
    g = GlobSet(["*.js", "*.md"])
    assert g.match("a.js") and g.match("a.md")
    assert not g.match("a.json") and not g.match("a.jsonl") and not g.match("a.mdx")
    g = GlobSet(["vendor/", "*.lock", "go.sum"])
    assert g.match("vendor/x.go") and g.match("Cargo.lock") and g.match("go.sum")
    assert not g.match("vendored.go") and not g.match("models.locked.py") and not g.match("go.summary.go")


# A name each ignore pattern must drop, and near misses it must keep (a prefix, a longer suffix, a lookalike).
IGNORED = {
    "*.lock": (["Cargo.lock", "a/poetry.lock"], ["models.locked.py", "lock.py"]),
    "package-lock.json": (["package-lock.json", "w/package-lock.json"], ["package-lock.json5", "package-lock.js"]),
    "npm-shrinkwrap.json": (["npm-shrinkwrap.json"], ["npm-shrinkwrap.jsonc"]),
    "pnpm-lock.yaml": (["pnpm-lock.yaml"], ["pnpm-lock.yaml.py"]),
    "bun.lockb": (["bun.lockb"], ["bun.lockbox.py"]),
    "go.sum": (["go.sum", "m/go.sum"], ["go.summary.go", "go.sum.py"]),
    "go.work.sum": (["go.work.sum"], ["go.work.summary"]),
    "packages.lock.json": (["packages.lock.json"], ["packages.lock.jsonx"]),
    "*.lockfile": (["a.lockfile"], ["a.lockfiles.py"]),
    "vendor/": (["vendor/a.go", "x/vendor/b/c.go"], ["vendors/a.go", "vendor.go"]),
    "third_party/": (["third_party/a.c"], ["third_party_x/a.c"]),
    "third-party/": (["third-party/a.c"], ["third-party-x/a.c"]),
    "node_modules/": (["node_modules/a.js"], ["node_modules_x/a.js"]),
    "bower_components/": (["bower_components/a.js"], ["bower_componentsx/a.js"]),
    "site-packages/": (["lib/site-packages/a.py"], ["site-packages.py"]),
    ".venv/": ([".venv/lib/a.py"], [".venvrc", "x.venv/a.py"]),
    "*.min.js": (["a.min.js"], ["a.min.json", "a.min.jsx"]),
    "*.min.css": (["a.min.css"], ["a.min.cssx"]),
    "*.map": (["a.js.map"], ["foo.mapper.py", "a.maps"]),
    "*_pb2.py": (["x_pb2.py"], ["x_pb2.pyx", "x_pb2.py.txt"]),
    "*_pb2.pyi": (["x_pb2.pyi"], ["x_pb2.pyix"]),
    "*_pb2_grpc.py": (["x_pb2_grpc.py"], ["x_pb2_grpc.pyc"]),
    "*.pb.go": (["x.pb.go"], ["x.pb.gox", "x.pb.golden"]),
    "*.pb.cc": (["x.pb.cc"], ["x.pb.ccx"]),
    "*.pb.h": (["x.pb.h"], ["x.pb.hpp"]),
    "*.pb.swift": (["x.pb.swift"], ["x.pb.swiftx"]),
    "*_generated.*": (["x_generated.ts"], ["x_generatedts"]),
    "*.generated.*": (["x.generated.ts"], ["x.generatedts"]),
    "*.g.dart": (["x.g.dart"], ["x.g.darts"]),
    "*.freezed.dart": (["x.freezed.dart"], ["x.freezed.darts"]),
    "*.snap": (["x.snap"], ["x.snapshot.py"]),
    "__snapshots__/": (["a/__snapshots__/x.js"], ["__snapshots__x/a.js"]),
    "dist/": (["dist/a.js", "w/dist/b.js"], ["distance.py", "dists/a.js"]),
    "*.svg": (["a.svg"], ["a.svgz", "a.svg.py"]),
    ".agent-trace/": ([".agent-trace/traces.jsonl"], [".agent-trace.py"]),
}


def test_every_default_ignore_pattern_alone_and_in_the_list() -> None:
    assert sorted(IGNORED) == sorted(RULES.ignore.patterns)  # every pattern of the rule file is covered
    for pattern, (yes, no) in IGNORED.items():
        one = GlobSet([pattern])
        for p in yes:
            assert one.match(p) and RULES.ignore.match(p), (pattern, p)
        for p in no:
            assert not one.match(p), (pattern, p)
            assert not RULES.ignore.match(p), (pattern, p)  # and no other pattern of the list takes it as a prefix


def test_file_classes() -> None:
    cases = {"src/app.py": "source", "tests/test_app.py": "tests", "pkg/app_test.go": "tests",
             "web/app.spec.ts": "tests", "pyproject.toml": "config", "requirements-dev.txt": "config",
             ".github/workflows/ci.yml": "config", "README.md": "docs", "docs/conf.py": "docs",
             "notes.txt": "docs", "Makefile": "config", "tests/fixtures/data.json": "tests"}
    for path, cls in cases.items():
        assert RULES.file_class(path) == cls, path


def test_rule_files(tmp_path: Path) -> None:
    text = RULES.source
    assert text.startswith("built-in rules")
    rules_dir = Path(__file__).parent.parent / "src/redline/indicators/rules"
    data = (rules_dir / "ai-authorship-v3.yaml").read_bytes()
    assert parse_rules(data, "x").sha256 == RULES.sha256 and RULES.rule_version == "ai-authorship-v3"
    # Version 2 stays loadable, so that results computed under it can be recomputed.
    v2 = load_rules(rules_dir / "ai-authorship-v2.yaml")
    assert v2.rule_version == "ai-authorship-v2" and "codex[bot]" in v2.bot_logins and not v2.involvement_trailer_keys
    mine = tmp_path / "mine.yaml"
    mine.write_bytes(data.replace(b"\nversion: 3\n", b"\nversion: 4\n", 1).replace(b"  ai: ai\n", b"  ai: human\n"))
    rules = load_rules(mine)
    assert rules.rule_version == "ai-authorship-v4" and rules.agent_trace["ai"] == "human"
    for bad, message in [(b"[]", "a YAML mapping"), (b"id: x\n", "field 'version'"),
                         (data.replace(b"  mixed: ai\n", b"  mixed: maybe\n"), "agent-trace.mixed"),
                         (data.replace(b"classes:", b"klasses:"), "field 'classes'"),
                         (b"{", "not valid YAML")]:
        mine.write_bytes(bad)
        with pytest.raises(MalformedEvidence, match=message):
            load_rules(mine)
    with pytest.raises(MalformedEvidence, match="cannot read rule file"):
        load_rules(tmp_path / "missing.yaml")


def test_git_c_quoting() -> None:
    assert _unquote_c(b'"b/tab\\tname.py"') == b"b/tab\tname.py"
    assert _unquote_c(b'"b/\\303\\274n\\"q\\\\"') == "b/ün\"q\\".encode()
    assert _unquote_c(b"b/plain") == b"b/plain"


def test_blame_porcelain() -> None:
    out = (b"aaaa 1 1 2\nauthor A\nboundary\nfilename \"x y\\tz.py\"\n\tfirst\naaaa 2 2\n\t\n"
           b"bbbb 7 3 1\nauthor B\nprevious aaaa x.py\nfilename old.py\n\tthird\n")
    lines = parse_blame_porcelain(out)
    assert [(b.final, b.commit, b.orig_path, b.orig_line, b.boundary, b.blank) for b in lines] == [
        (1, "aaaa", "x y\tz.py", 1, True, False), (2, "aaaa", "x y\tz.py", 2, True, True),
        (3, "bbbb", "old.py", 7, False, False)]


def test_repo_config_and_rules_refuse_odd_keys_and_deep_nesting(tmp_path: Path) -> None:
    """``.redline/code-share.yaml`` with non-string keys (TypeError before) or nested too deeply (RecursionError
    before), and a rule file nested too deeply, are MalformedEvidence naming the file."""
    from redline.indicators.codeshare.repoconfig import RepoConfig
    from redline.indicators.codeshare.rules import load_rules

    with pytest.raises(MalformedEvidence, match="cfg: field names must be strings"):
        RepoConfig.parse(b"1: a\nversion: 1\n", "cfg")
    deep = b"[" * 20_000 + b"]" * 20_000
    with pytest.raises(MalformedEvidence, match="cfg: nested too deeply"):
        RepoConfig.parse(deep, "cfg")
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(deep)
    with pytest.raises(MalformedEvidence, match="rules.yaml: nested too deeply"):
        load_rules(rules)
