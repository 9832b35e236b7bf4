"""AI code share from real git history: window mode, survival mode, and the evidence rules.

Every repository here is built with real ``git`` commands: squash merges, merge
commits, fast-forwards, rebases that carry notes, trailers, git-ai notes, Agent Trace
records, moved code and a human editing AI-written lines. The helpers at the top are
shared with ``test_codeshare_cli.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from redline.indicators.codeshare import (
    EmptyWindow,
    HistoryMissing,
    MalformedEvidence,
    NotARepository,
    code_share,
    survival,
)

UTC = UTC
T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
CLAUDE = "Co-authored-by: Claude <noreply@anthropic.com>"
SESSION = "a1b2c3d4e5f60718"


@pytest.fixture(autouse=True)
def isolated_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git configuration leaks into these tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(var, raising=False)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S+0000")


class Repo:
    """A scratch git repository driven by the real ``git`` command, with a clock for commit dates."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = T0
        self.git("init", "-q", "-b", branch)
        self.git("config", "user.name", "Dev Human")
        self.git("config", "user.email", "dev@lab.example")
        self.git("config", "commit.gpgsign", "false")

    def git(self, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> str:
        proc = subprocess.run(["git", *args], cwd=self.path, env={**os.environ, **(env or {})}, input=input,
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def tick(self, hours: float = 1) -> datetime:
        self.clock += timedelta(hours=hours)
        return self.clock

    def dates(self, author: datetime | None = None, committer: datetime | None = None) -> dict[str, str]:
        when = self.tick()
        return {"GIT_AUTHOR_DATE": _iso(author or when), "GIT_COMMITTER_DATE": _iso(committer or when)}

    def write(self, files: dict[str, str | None]) -> None:
        for name, text in files.items():
            p = self.path / name
            if text is None:
                p.unlink()
            else:
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)

    def commit(self, message: str, files: dict[str, str | None] | None = None, *,
               author: tuple[str, str] | None = None, committer: tuple[str, str] | None = None,
               author_date: datetime | None = None, committer_date: datetime | None = None) -> str:
        self.write(files or {})
        self.git("add", "-A")
        env = self.dates(author_date, committer_date)
        if author:
            env |= {"GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1]}
        if committer:
            env |= {"GIT_COMMITTER_NAME": committer[0], "GIT_COMMITTER_EMAIL": committer[1]}
        self.git("commit", "-q", "--allow-empty", "-F", "-", env=env, input=message)
        return self.head()

    def head(self, rev: str = "HEAD") -> str:
        return self.git("rev-parse", rev).strip()

    def note(self, sha: str, text: str) -> None:
        self.git("notes", "--ref=refs/notes/ai", "add", "-f", "-F", "-", sha, input=text)

    def merge(self, branch: str, *args: str, message: str = "merge") -> str:
        self.git("merge", "-q", *args, "-m", message, branch, env=self.dates())
        return self.head()


def gitai_note(files: dict[str, str], *, session: str = SESSION, tool: str = "claude",
               model: str = "claude-opus-4", base: str = "0" * 40) -> str:
    """A git-ai authorship log (standard v3.0.0): ``files`` maps a path to its line-range spec."""
    lines = []
    for path, spec in files.items():
        lines.append(f'"{path}"' if any(c.isspace() for c in path) else path)
        lines.append(f"  {session} {spec}")
    meta = {"schema_version": "authorship/3.0.0", "git_ai_version": "1.0.23", "base_commit_sha": base,
            "prompts": {session: {"agent_id": {"tool": tool, "id": "6ef2299e-a67f-432b-aa80-3d2fb4d28999",
                                               "model": model},
                                  "human_author": "Dev Human <dev@lab.example>",
                                  "messages": [{"type": "user", "text": "write it"}],
                                  "total_additions": 10, "total_deletions": 0, "accepted_lines": 10,
                                  "overriden_lines": 0}}}
    return "\n".join(lines) + "\n---\n" + json.dumps(meta, indent=2)


def body(n: int, tag: str, blank_every: int = 0) -> str:
    """``n`` distinct, long-enough lines (git blame -C needs 40 alphanumerics to see a move)."""
    out = []
    for i in range(1, n + 1):
        out.append("" if blank_every and i % blank_every == 0 else
                   f"def {tag}_function_number_{i}(alpha, beta): return alpha * beta + {i}")
    return "\n".join(out) + "\n"


def counts(result, cls: str | None = None) -> tuple[int, int, int, int]:
    s = result.totals if cls is None else result.by_class[cls]
    return (s.ai_line, s.human_line, s.ai_commit, s.unknown)


# --- window mode: the evidence rules -----------------------------------------------------------------


def test_window_linear_history_with_every_kind_of_evidence(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    # A human commit with no evidence either way: unknown (8 lines; the 2 blank ones do not count).
    r.commit("start the app", {"src/app.py": body(10, "app", blank_every=5)})
    # An AI co-author trailer: the commit's lines are AI at commit level. Lock and vendored files do not count.
    r.commit(f"add ai module\n\nBody text.\n\n{CLAUDE}\n", {
        "src/ai.py": body(5, "ai"), "package-lock.json": "{\n" + '  "x": 1,\n' * 98 + "}\n",
        "vendor/lib.js": body(20, "vendored")})
    # A git-ai note: the lines it lists are AI, the commit's other lines human.
    c3 = r.commit("extend app and test it", {"src/app.py": body(10, "app", blank_every=5) + body(4, "more"),
                                             "tests/test_app.py": body(6, "test")})
    r.note(c3, gitai_note({"src/app.py": "11-12", "tests/test_app.py": "1-6"}))
    # A note beats a trailer: only line 1 is AI.
    c4 = r.commit(f"docs\n\n{CLAUDE}\n", {"docs/guide.md": "# Guide\nwritten by hand\nalso by hand\n"})
    r.note(c4, gitai_note({"docs/guide.md": "1"}))
    # A display name is not an identity: "Claude" with a human's address is no evidence.
    r.commit("settings\n\nCo-authored-by: Claude <claude@lab.example>\n", {"settings.toml": "a = 1\nb = 2\n"})

    res = code_share(r.path)
    assert counts(res) == (9, 4, 5, 10)
    assert res.totals.total == 28
    assert res.lower_bound == pytest.approx(9 / 28)
    assert res.point == pytest.approx(14 / 28)
    assert res.upper_bound == pytest.approx(24 / 28)
    assert res.unknown == pytest.approx(10 / 28)
    assert counts(res, "source") == (2, 2, 5, 8)
    assert counts(res, "tests") == (6, 0, 0, 0)
    assert counts(res, "docs") == (1, 2, 0, 0)
    assert counts(res, "config") == (0, 0, 0, 2)
    assert res.population_commits == 5
    assert res.markers == {"co-author:noreply@anthropic.com": 2}
    assert res.sources == {"git-ai": 9, "commit-level": 5}
    assert res.rules.rule_version == "ai-authorship-v3"
    kinds = {row.sha: row.evidence for row in res.commits}
    assert kinds[c3] == ("git-ai",)
    assert kinds[c4] == ("git-ai", "co-author:noreply@anthropic.com")
    # The numbers go into the statement: value, interval, method and rules.
    f = res.indicator_fields("lab-a")
    assert f["value"] == res.point and f["interval"] == (res.lower_bound, res.upper_bound)
    assert f["name"] == "ai-code-share" and f["unit"] == "fraction" and f["rule_version"] == "ai-authorship-v3"


def test_include_exclude_and_the_default_ignore_list(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    r.commit("all", {"src/a.py": body(3, "a"), "src/gen/x_pb2.py": body(4, "pb"), "vendor/v.py": body(5, "v"),
                     "yarn.lock": "x\ny\n", "docs/d.md": "doc\n", "dist/bundle.min.js": "x\n"})
    assert code_share(r.path).totals.total == 3 + 1
    assert code_share(r.path, default_ignore=False).totals.total == 3 + 4 + 5 + 2 + 1 + 1
    assert code_share(r.path, exclude=["docs/"]).totals.total == 3
    assert code_share(r.path, include=["src/**"]).totals.total == 3 + 4  # an include beats the ignore list
    assert code_share(r.path, include=["vendor/"], exclude=["*.md"]).totals.total == 5
    with pytest.raises(EmptyWindow, match="no countable added lines"):
        code_share(r.path, include=["nothing/**"])


def test_paths_with_spaces_tabs_and_non_ascii_names(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c = r.commit("odd names", {"src/my file.py": body(3, "sp"), "src/tab\tname.py": body(2, "tab"),
                               "src/ünïcødé.py": body(4, "uni"), 'src/quo"te.py': body(1, "q")})
    r.note(c, gitai_note({"src/my file.py": "1-3", "src/ünïcødé.py": "2-3", "src/tab\tname.py": "1"}))
    res = code_share(r.path)
    # AI: the spaced name's 3, the non-ASCII name's 2, the tab name's 1 (git quotes it, the note quotes it).
    # Human (the note's commit, lines it does not list): 2 + 1 + the quote-named file's 1.
    assert counts(res) == (3 + 2 + 1, 2 + 1 + 1, 0, 0)


# --- window mode: how code reaches the branch --------------------------------------------------------


def test_merge_commit_squash_merge_and_fast_forward(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    r.commit("base", {"src/a.py": body(3, "a")})
    r.git("checkout", "-q", "-b", "feature")
    f1 = r.commit(f"feature part one\n\n{CLAUDE}\n", {"src/b.py": body(4, "b")})
    f2 = r.commit("feature part two", {"src/c.py": body(3, "c")})
    r.note(f2, gitai_note({"src/c.py": "1-2"}))
    r.git("checkout", "-q", "main")
    r.commit("main moves on", {"src/d.py": body(2, "d")})
    m = r.merge("feature", "--no-ff", message="Merge branch 'feature'")

    r.git("checkout", "-q", "-b", "feature2")
    r.commit("agent writes e", {"src/e.py": body(3, "e")},
             author=("copilot-swe-agent[bot]", "198982749+Copilot@users.noreply.github.com"))
    r.commit("human finishes e", {"src/e.py": body(5, "e")})
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--squash", "feature2")
    sq = r.commit("Add e (#12)\n\n* agent writes e\n* human finishes e\n\n"
                  "Co-authored-by: copilot-swe-agent[bot] <198982749+Copilot@users.noreply.github.com>\n")

    r.git("checkout", "-q", "-b", "feature3")
    h1 = r.commit("aider: add f", {"src/f.py": body(2, "f")}, author=("Dev Human (aider)", "dev@lab.example"))
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--ff-only", "feature3")

    res = code_share(r.path, branch="main")
    rows = {row.sha: row.counts for row in res.commits}
    assert res.population_commits == 5  # base, main moves on, the merge, the squash, h1; not f1, f2, nor feature2's
    assert f1 not in rows and f2 not in rows
    assert rows[m] == (2, 1, 4, 0)  # the merge's 7 lines, judged by f1's trailer and f2's note
    assert rows[sq] == (0, 0, 5, 0)  # counted once, by the squash commit's trailer
    assert rows[h1] == (0, 0, 2, 0)  # fast-forwarded: h1 itself is on the first-parent path
    assert counts(res) == (2, 1, 4 + 5 + 2, 3 + 2)
    assert res.merges == 1
    assert "merged-from:2" in dict((row.sha, row.evidence) for row in res.commits)[m]
    assert res.markers == {"co-author:noreply@anthropic.com": 1,
                           "co-author:198982749+copilot@users.noreply.github.com": 1,
                           "author-name:(aider)": 1, "subject:aider:": 1}


def test_rebase_carries_notes_and_the_window_uses_committer_dates(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    r.git("config", "notes.rewriteRef", "refs/notes/ai")
    r.commit("base", {"src/a.py": body(2, "a")})  # Jan 6
    r.git("checkout", "-q", "-b", "feature")
    f = r.commit("feature", {"src/r.py": body(3, "r")})
    r.note(f, gitai_note({"src/r.py": "1-3"}))
    r.git("checkout", "-q", "main")
    r.commit("main", {"src/m.py": body(2, "m")})
    r.git("checkout", "-q", "feature")
    feb1 = datetime(2025, 2, 1, tzinfo=UTC)
    r.git("rebase", "-q", "main", env={"GIT_COMMITTER_DATE": _iso(feb1)})
    rebased = r.head()
    assert rebased != f
    r.git("checkout", "-q", "main")
    r.git("merge", "-q", "--ff-only", "feature")
    # Authored in the window, committed after it: out of [Jan 15, Feb 15).
    r.commit("late", {"src/late.py": body(4, "late")}, author_date=datetime(2025, 1, 20, tzinfo=UTC),
             committer_date=datetime(2025, 3, 1, tzinfo=UTC))

    res = code_share(r.path, since="2025-01-15", until="2025-02-15")
    assert [row.sha for row in res.commits] == [rebased]
    assert counts(res) == (3, 0, 0, 0)  # the note followed the rebase (notes.rewriteRef)
    assert res.window_start == datetime(2025, 1, 15, tzinfo=UTC)
    assert res.window_end == datetime(2025, 2, 15, tzinfo=UTC)
    early = code_share(r.path, until="2025-01-15")
    assert counts(early) == (0, 0, 0, 4) and early.population_commits == 2
    everything = code_share(r.path)
    assert everything.population_commits == 4 and counts(everything) == (3, 0, 0, 8)


def test_a_human_editing_ai_lines_in_the_window(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c1 = r.commit("ai writes", {"src/x.py": body(6, "x")})
    r.note(c1, gitai_note({"src/x.py": "1-6"}))
    text = body(6, "x").splitlines()
    text[1] = "# edited by a human, who rewrote this line completely"
    r.commit("human edits line 2", {"src/x.py": "\n".join(text) + "\n"})
    res = code_share(r.path)
    # The window counts what each step added: 6 AI lines, then 1 unknown line (the edit).
    assert counts(res) == (6, 0, 0, 1)
    assert counts(code_share(r.path, notes_complete=True)) == (6, 1, 0, 0)


# --- notes completeness ----------------------------------------------------------------------------------


def test_notes_complete_declaration(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c1 = r.commit("noted", {"src/a.py": body(2, "a")})
    r.note(c1, gitai_note({"src/a.py": "1"}))
    c2 = r.commit("no note", {"src/b.py": body(3, "b")})
    r.commit(f"no note, ai trailer\n\n{CLAUDE}\n", {"src/c.py": body(2, "c")})
    assert counts(code_share(r.path)) == (1, 1, 2, 3)
    # The repository declares its notes complete from c2's commit time on.
    when = r.git("log", "-1", "--format=%cI", c2).strip()
    r.commit("declare", {".redline/code-share.yaml": f"version: 1\nnotes-complete-since: '{when}'\n"})
    res = code_share(r.path)
    # c2 and the declaring commit become human; the trailer still beats a declaration of absence.
    assert counts(res) == (1, 1 + 3 + 2, 2, 0)
    assert "declared in .redline/code-share.yaml" in res.notes_complete
    assert counts(code_share(r.path, notes_complete=False)) == (1, 1, 2, 3 + 2)
    assert code_share(r.path, notes_complete=False).notes_complete is None
    asserted = code_share(r.path, notes_complete=True)
    assert counts(asserted) == (1, 1 + 3 + 2, 2, 0) and asserted.notes_complete.startswith("asserted")
    # Declared only from later on: c2 is unknown again.
    r.commit("redeclare", {".redline/code-share.yaml": "notes-complete-since: 2030-01-01\n"})
    assert counts(code_share(r.path)) == (1, 1, 2, 3 + 2 + 1)


def test_bad_repository_declaration(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    r.commit("declare", {".redline/code-share.yaml": "notes-complete: yes\n"})
    with pytest.raises(MalformedEvidence, match="unknown field 'notes-complete'"):
        code_share(r.path)


# --- Agent Trace --------------------------------------------------------------------------------------


def _trace(revision: str, path: str, conversations: list[dict], vcs: str = "git") -> str:
    return json.dumps({"version": "0.1.0", "id": "550e8400-e29b-41d4-a716-446655440000",
                       "timestamp": "2026-01-23T14:30:00Z", "vcs": {"type": vcs, "revision": revision},
                       "tool": {"name": "cursor", "version": "2.4.0"},
                       "files": [{"path": path, "conversations": conversations}]})


def test_agent_trace_records_at_the_tip(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c0 = r.commit("base", {"README.md": "hello\n"})
    c1 = r.commit("t", {"src/t.py": body(6, "t")})
    convs = [{"contributor": {"type": "ai", "model_id": "anthropic/claude-opus-4-5-20251101"},
              "ranges": [{"start_line": 1, "end_line": 3, "content_hash": "murmur3:9f2e8a1b"}]},
             {"contributor": {"type": "human"}, "ranges": [{"start_line": 5, "end_line": 6}]},
             {"ranges": [{"start_line": 4, "end_line": 4}]}]
    records = [_trace(c1, "src/t.py", convs), _trace("kkmpptxz", "src/t.py", convs, vcs="jj")]
    r.commit("record traces", {".agent-trace/traces.jsonl": "\n".join(records) + "\n"})
    res = code_share(r.path)
    assert counts(res) == (3, 2, 0, 1 + 1)  # line 4 has no contributor: unknown; README: unknown
    assert res.sources == {"agent-trace": 3}
    assert res.agent_trace["records"] == 2 and res.agent_trace["records_without_git_revision"] == 1
    assert res.agent_trace["commits_matched"] == 1
    # The reference hook records the HEAD the edit was made on: the parent of the commit holding it.
    hook = tmp_path / "hook.jsonl"
    hook.write_text(_trace(c0, "src/t.py", convs) + "\n")
    assert counts(code_share(r.path, agent_trace=hook)) == (0, 0, 0, 7)
    assert counts(code_share(r.path, agent_trace=hook, agent_trace_revision="parent")) == (3, 2, 0, 2)


def test_malformed_agent_trace_is_an_error_naming_the_line(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c1 = r.commit("t", {"src/t.py": body(2, "t")})
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_trace(c1, "src/t.py", [{"ranges": [{"start_line": 3, "end_line": 1}]}]) + "\n")
    with pytest.raises(MalformedEvidence, match=r"bad.jsonl: line 1: .*end_line 1 is before start_line 3"):
        code_share(r.path, agent_trace=bad)


def test_malformed_note_is_an_error_naming_the_commit(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    c1 = r.commit("t", {"src/t.py": body(2, "t")})
    r.note(c1, "src/t.py\n  a1b2c3d4e5f60718 1-2\n")
    with pytest.raises(MalformedEvidence, match=f"git-ai note on commit {c1[:12]}.*no '---' line"):
        code_share(r.path)


# --- survival mode -----------------------------------------------------------------------------------


def test_survival_with_moved_code_and_human_edits(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    start = r.commit("start", {"src/old.py": body(5, "old")})
    c1 = r.commit("ai adds", {"src/feat.py": body(6, "feat"), "src/old.py": body(5, "old") + body(2, "tail")})
    r.note(c1, gitai_note({"src/feat.py": "1-6", "src/old.py": "6-7"}))
    lines = body(6, "feat").splitlines()
    lines[1] = "# a human rewrote this line of the AI's work entirely"
    del lines[5]
    c2 = r.commit("human edits", {"src/feat.py": "\n".join(lines) + "\n"})
    moved = lines[2:5]
    del lines[2:5]
    c3 = r.commit("human moves three functions", {
        "src/feat.py": "\n".join(lines) + "\n",
        "src/moved.py": "# moved here by a human\n\n" + "\n".join(moved) + "\n"})
    res = survival(r.path, f"{start}..{c3}")
    rows = {row.sha: row.counts for row in res.commits}
    assert rows[c1] == (2 + 1 + 3, 0, 0, 0)  # old.py's tail, feat.py line 1, the three moved lines
    assert rows[c2] == (0, 0, 0, 1)  # the human's edit
    assert rows[c3] == (0, 0, 0, 1)  # the header of moved.py (its blank line does not count)
    assert counts(res) == (6, 0, 0, 2)
    assert res.mode == "survival" and res.start == start and res.tip == c3
    assert counts(survival(r.path, f"{start}..{c3}", notes_complete=True)) == (6, 2, 0, 0)
    # Without move detection the moved lines would be the mover's; with it they stay the AI's.
    assert counts(survival(r.path, f"{c1}..{c3}")) == (0, 0, 0, 2)
    f = res.indicator_fields("lab-a")
    assert f["method"] == "git-blame-survival" and f["window"][0] <= f["window"][1]


def test_survival_errors(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    a = r.commit("a", {"x.py": body(2, "x")})
    b = r.commit("b", {"y.py": body(2, "y")})
    with pytest.raises(EmptyWindow, match="no commits between"):
        survival(r.path, f"{b}..{b}")
    with pytest.raises(Exception, match="START..END"):
        survival(r.path, "HEAD")
    with pytest.raises(Exception, match="not an ancestor"):
        survival(r.path, f"{b}..{a}")
    with pytest.raises(NotARepository, match="no commit 'nope'"):
        survival(r.path, f"nope..{b}")
    r.commit("only a lock file", {"Cargo.lock": "x\n"})
    with pytest.raises(EmptyWindow, match="no countable lines"):
        survival(r.path, f"{b}..HEAD")


# --- bad input -----------------------------------------------------------------------------------------


def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotARepository, match="not a git repository"):
        code_share(tmp_path / "plain")
    with pytest.raises(NotARepository, match="no such file or directory"):
        code_share(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotARepository, match="not a directory"):
        code_share(tmp_path / "file.txt")


def test_empty_repository_and_empty_windows(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    with pytest.raises(EmptyWindow, match="no commits yet"):
        code_share(r.path)
    r.commit("a", {"a.py": body(2, "a")})
    with pytest.raises(EmptyWindow, match="no commits on the first-parent history"):
        code_share(r.path, since="2030-01-01")
    with pytest.raises(EmptyWindow, match="'since' must be before 'until'"):
        code_share(r.path, since="2025-02-01", until="2025-01-01")
    with pytest.raises(NotARepository, match="no commit 'nope'"):
        code_share(r.path, branch="nope")
    with pytest.raises(MalformedEvidence, match="not an ISO 8601"):
        code_share(r.path, since="last tuesday")


def test_shallow_clone_missing_the_window(tmp_path: Path) -> None:
    r = Repo(tmp_path / "origin")
    for i in range(3):
        r.commit(f"c{i}", {f"f{i}.py": body(2, f"f{i}")}, committer_date=datetime(2025, 1, 1 + i, tzinfo=UTC))
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "2", f"file://{r.path}", str(clone)], check=True)
    with pytest.raises(HistoryMissing, match="shallow clone.*whole history"):
        code_share(clone)
    with pytest.raises(HistoryMissing, match="shallow clone.*2025-01-02"):
        code_share(clone, since="2025-01-02")
    assert counts(code_share(clone, since="2025-01-02T12:00:00")) == (0, 0, 0, 2)
    with pytest.raises(HistoryMissing, match="shallow"):
        code_share(clone, since="2024-12-01")
    # Survival needs START: the boundary commit is there, its parent is not.
    assert counts(survival(clone, "HEAD~1..HEAD")) == (0, 0, 0, 2)
    with pytest.raises(NotARepository, match="shallow clone"):
        survival(clone, "HEAD~2..HEAD")


def test_the_evidence_digest_is_reproducible(tmp_path: Path) -> None:
    r = Repo(tmp_path / "repo")
    r.commit("a", {"a.py": body(3, "a")})
    r.git("checkout", "-q", "-b", "side")
    r.commit(f"b\n\n{CLAUDE}\n", {"b.py": body(3, "b")})
    r.git("checkout", "-q", "main")
    r.commit("c", {"c.py": body(3, "c")})
    r.merge("side", "--no-ff")
    one = code_share(r.path, jobs=1)
    many = code_share(r.path, jobs=4)
    assert one.evidence_digest == many.evidence_digest
    assert one.evidence()["commits"] == many.evidence()["commits"]
    # A change to the notes changes the digest.
    r.note(r.head("HEAD~1"), gitai_note({"c.py": "1"}))
    assert code_share(r.path).evidence_digest != one.evidence_digest


def test_merge_attribution_by_diffs_agrees_with_git_blame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines a merge brings in are followed through the side branch's diffs; git blame must agree."""
    import redline.indicators.codeshare.merges as cs_merges

    r = Repo(tmp_path / "repo")
    base = body(10, "m").splitlines()
    r.commit("base", {"src/m.py": "\n".join(base) + "\n", "src/keep.py": body(3, "keep")})
    r.git("checkout", "-q", "-b", "side")
    v1 = body(3, "s1").splitlines() + base
    s1 = r.commit("s1 adds on top", {"src/m.py": "\n".join(v1) + "\n"})
    r.note(s1, gitai_note({"src/m.py": "1-3"}))
    v2 = list(v1)
    v2[1] = "# s2 rewrote the second line written by s1 with its own words"
    v2 += body(2, "s2tail").splitlines()
    r.commit(f"s2 edits and appends\n\n{CLAUDE}\n", {"src/m.py": "\n".join(v2) + "\n"})
    v3 = v2 + ["# s3, by hand, after the rename"]
    r.write({"src/m.py": None})
    r.commit("s3 renames and adds", {"src/n.py": "\n".join(v3) + "\n"})
    r.git("checkout", "-q", "main")
    mb = list(base)
    mb[7] = "# main changed line eight meanwhile, far from the side branch's edits"
    r.commit("main edits", {"src/m.py": "\n".join(mb) + "\n"})
    m1 = r.merge("side", "--no-ff")
    # A second merge whose side branch itself contains a merge: git blame decides.
    r.git("checkout", "-q", "-b", "side2")
    r.git("checkout", "-q", "-b", "side3")
    t1 = r.commit("t1", {"src/t.py": body(4, "t1")})
    r.note(t1, gitai_note({"src/t.py": "1-2"}))
    r.git("checkout", "-q", "side2")
    r.commit(f"u1\n\n{CLAUDE}\n", {"src/u.py": body(3, "u1")})
    r.merge("side3", "--no-ff")
    r.git("checkout", "-q", "main")
    r.commit("main again", {"src/keep.py": body(4, "keep")})
    m2 = r.merge("side2", "--no-ff")

    by_diffs = code_share(r.path)
    calls: list[str] = []
    real = cs_merges._track_linear
    monkeypatch.setattr(cs_merges, "_track_linear", lambda *a, **k: calls.append(a[0].sha) or None)
    by_blame = code_share(r.path)
    monkeypatch.setattr(cs_merges, "_track_linear", real)
    assert calls and set(calls) == {m1}  # only the linear side branch is followed by diffs
    assert by_diffs.evidence() == by_blame.evidence()
    rows = {row.sha: row for row in by_diffs.commits}
    # m1 brings s1's 3 lines (one rewritten by s2), s2's rewrite and tail, s3's line, and the rename's
    # unchanged lines, which are not added against main (rename detection).
    assert rows[m1].counts == (2, 0, 1 + 2, 1)
    assert "merged-from:3" in rows[m1].evidence
    assert rows[m2].counts == (2, 2, 3, 0)  # t1: 2 AI by its note, so its other 2 human; u1: 3 by its trailer
    assert "merged-from:3" in rows[m2].evidence  # u1, t1 and the inner merge


def test_segments_and_skewed_committer_dates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The history is diffed in segments by parallel git processes; the result does not depend on how it is cut.
    A commit whose committer clock was wrong sits inside the span but outside the window: it is not counted."""
    import redline.indicators.codeshare.window as cs_window

    r = Repo(tmp_path / "repo")
    r.commit("a", {"a.py": body(2, "a")}, committer_date=datetime(2025, 1, 10, tzinfo=UTC))
    r.commit("skewed", {"s.py": body(5, "s")}, committer_date=datetime(2025, 1, 5, tzinfo=UTC))
    r.git("checkout", "-q", "-b", "side")
    r.commit(f"side\n\n{CLAUDE}\n", {"b.py": body(3, "b")}, committer_date=datetime(2025, 1, 11, tzinfo=UTC))
    r.git("checkout", "-q", "main")
    r.commit("c", {"c.py": body(4, "c")}, committer_date=datetime(2025, 1, 12, tzinfo=UTC))
    r.git("merge", "-q", "--no-ff", "-m", "merge", "side", env={"GIT_COMMITTER_DATE": _iso(datetime(2025, 1, 13,
                                                                                                    tzinfo=UTC))})
    r.commit("d", {"d.py": body(1, "d")}, committer_date=datetime(2025, 1, 14, tzinfo=UTC))
    whole = code_share(r.path, since="2025-01-08", jobs=1)
    assert counts(whole) == (0, 0, 3, 2 + 4 + 1)  # not the skewed commit's 5 lines
    assert whole.population_commits == 4
    monkeypatch.setattr(cs_window, "_SEGMENT_MIN", 1)
    for jobs in (2, 3, 6):
        assert code_share(r.path, since="2025-01-08", jobs=jobs).evidence() == whole.evidence()
    assert counts(code_share(r.path, jobs=3)) == (0, 0, 3, 2 + 5 + 4 + 1)
