"""The ``aider`` counting profile against aider's own method, and survival mode against untrusted repositories.

Repositories here follow aider's conventions (aider/repo.py): the user's own changes are committed with
the committer "<user> (aider)"; changes aider wrote carry the author "<user> (aider)" (older ones the
subject prefix "aider: "; newer ones a Co-authored-by trailer instead). They have blank lines, moved,
copied and renamed code, a merge, a file changed and changed back, and files outside aider's list.
The profile must give, commit for commit, the counts of an independent per-file ``git blame`` loop
with aider's flags, written below as plainly as ``scripts/blame.py`` describes it.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from test_codeshare import Repo, body, isolated_git  # noqa: F401  (the fixture is autouse)

from redline.indicators.codeshare import code_share, survival

USER = ("Dev Human", "dev@lab.example")
VIA_AIDER = ("Dev Human (aider)", "dev@lab.example")
WEBSITE = {"aider/website/index.html", "aider/website/share/index.md", "aider/website/_includes/head_custom.html",
           "aider/website/_includes/home.css", "aider/website/docs/leaderboards/index.md"}
EXCLUDED = {"aider/website/install.ps1", "aider/website/install.sh"}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def aider_files(names: list[str]) -> list[str]:
    """aider's file selection, as its script states it: suffixes, two .yml directories, named pages, fixtures."""
    out = []
    for f in names:
        fixture = f.startswith("tests/fixtures/languages/") and "/test." in f
        keep = (f.endswith((".js", ".py", ".scm", ".sh", "Dockerfile", "Gemfile"))
                or (f.startswith(".github/workflows/") and f.endswith(".yml"))
                or (f.startswith("aider/resources/") and f.endswith(".yml"))
                or f in WEBSITE or fixture)
        if keep and not f.endswith("prompts.py") and not f.startswith("tests/fixtures/watch") and f not in EXCLUDED:
            out.append(f)
    return out


def aider_blame_loop(repo: Path, start: str, end: str) -> tuple[Counter[str], int, int]:
    """Lines per commit (full id), aider's lines and all lines, by one ``git blame`` per file of END's tree."""
    commits = _git(repo, "rev-list", f"{start}..{end}").split()
    author = {}
    for c in commits:
        name = _git(repo, "show", "-s", "--format=%an", c).strip()
        if _git(repo, "show", "-s", "--format=%s", c).strip().lower().startswith("aider:"):
            name += " (aider)"
        author[c[:9]] = (c, name)
    per_commit: Counter[str] = Counter()
    aider = total = 0
    for f in aider_files(_git(repo, "ls-tree", "-r", "--name-only", end).splitlines()):
        proc = subprocess.run(["git", "blame", "-M100", "-C100", "-C", "-C", "--abbrev=9", f"{start}..{end}", "--",
                               f], cwd=repo, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            continue
        for line in proc.stdout.splitlines():
            if line.startswith("^"):
                continue  # a boundary commit: written before START
            sha, name = author.get(line[:9], ("unknown", "Unknown"))
            per_commit[sha] += 1
            total += 1
            aider += "(aider)" in name.lower()
    return per_commit, aider, total


def build(tmp_path: Path) -> tuple[Repo, str, str]:
    r = Repo(tmp_path / "repo")
    helpers = body(12, "helper", blank_every=4)
    start = r.commit("v0.1.0", {"aider/coders/base.py": body(20, "base", blank_every=5), "aider/helpers.py": helpers,
                                "README.md": "# aider\n", "aider/prompts.py": body(3, "prompt")})
    r.git("tag", "v0.1.0")
    # aider writes code (author and committer marked); blank lines count.
    r.commit("add the editor", {"aider/editor.py": body(9, "editor", blank_every=3)}, author=VIA_AIDER,
             committer=VIA_AIDER)
    # The user's own change, committed through aider: only the committer is marked.
    r.commit("tune the base coder", {"aider/coders/base.py": body(20, "base", blank_every=5) + body(4, "tuned")},
             committer=VIA_AIDER)
    # An old-style commit: the subject marks aider, the author does not.
    r.commit("aider: add a workflow and a Dockerfile", {".github/workflows/ci.yml": "on: push\n\njobs: {}\n",
                                                        "docker/Dockerfile": "FROM python\n\nRUN true\n"})
    # A newer aider commit with its co-author trailer (aider's script does not read trailers).
    r.commit("add watch\n\nCo-authored-by: aider (gpt-4o) <aider@aider.chat>\n",
             {"aider/watch.py": body(5, "watch")}, committer=VIA_AIDER)
    # The user moves three long functions from editor.py to a new module and copies helpers.
    ed = body(9, "editor", blank_every=3).splitlines()
    moved = ed[0:2] + ed[3:5]
    r.commit("move editor functions", {"aider/editor.py": "\n".join(ed[5:]) + "\n",
                                       "aider/moved.py": "\n".join(moved) + "\n",
                                       "aider/copied.py": helpers}, committer=VIA_AIDER)
    # A side branch written by aider, merged by the user.
    r.git("checkout", "-q", "-b", "side")
    r.commit("side work", {"aider/side.py": body(6, "side", blank_every=2)}, author=("Dev Human (AIDER) bot",
                                                                                        USER[1]))
    r.git("checkout", "-q", "main")
    r.commit("main work", {"aider/helpers.py": helpers + body(2, "mainwork")})
    r.merge("side", "--no-ff", message="Merge branch 'side'")
    # A rename, a file changed and changed back, files aider's list leaves out.
    r.git("mv", "aider/watch.py", "aider/watcher.py")
    r.commit("rename watch", author=VIA_AIDER, committer=VIA_AIDER)
    r.commit("break prompts", {"aider/prompts.py": body(2, "prompt")}, author=VIA_AIDER)
    r.commit("restore prompts", {"aider/prompts.py": body(3, "prompt"), "data.json": "{}\n",
                                 "aider/website/index.html": "<html>\n\n</html>\n",
                                 "aider/website/install.sh": "echo hi\n", "tests/fixtures/watch/a.py": "x = 1\n",
                                 "tests/fixtures/languages/python/test.py": "def f():\n    pass\n"},
             author=VIA_AIDER)
    end = r.head()
    return r, start, end


def test_the_aider_profile_agrees_with_a_per_file_blame_loop(tmp_path: Path) -> None:
    r, start, end = build(tmp_path)
    per_commit, aider, total = aider_blame_loop(r.path, start, end)
    assert total > 0 and 0 < aider < total
    res = survival(r.path, f"{start}..{end}", profile="aider")
    rows = {row.sha: sum(row.counts) for row in res.commits}
    assert rows == dict(per_commit)  # commit for commit, the same lines
    assert res.totals.total == total
    assert res.totals.ai_commit == aider and res.totals.ai_line == 0  # commit-level evidence only
    assert res.point == pytest.approx(aider / total)
    assert res.profile.name == "aider" and res.rules.rule_version == "aider-blame-v1"
    assert res.summary()["profile"]["blame_flags"] == ["-M100", "-C100", "-C", "-C"]
    # The user's commits through aider carry the "(aider)" committer: recorded as involvement, never counted.
    assert res.involvement == {}  # the aider rules read nothing but the author and the subject
    default = survival(r.path, f"{start}..{end}")
    assert default.involvement.get("committer-name:(aider)", 0) >= 3
    assert "committer-name:(aider)" not in default.markers


def test_the_aider_profile_on_each_release_range(tmp_path: Path) -> None:
    r, start, end = build(tmp_path)
    for lo in [start, *_git(r.path, "rev-list", "--first-parent", "--reverse", f"{start}..{end}").split()[:-1]]:
        per_commit, aider, total = aider_blame_loop(r.path, lo, end)
        res = survival(r.path, f"{lo}..{end}", profile="aider")
        assert {row.sha: sum(row.counts) for row in res.commits} == dict(per_commit), lo
        assert (res.totals.ai_commit, res.totals.total) == (aider, total), lo


def test_the_default_profile_differs_where_documented(tmp_path: Path) -> None:
    r, start, end = build(tmp_path)
    res = survival(r.path, f"{start}..{end}")
    aider = survival(r.path, f"{start}..{end}", profile="aider")
    assert res.profile.name == "default" and res.rules.rule_version == "ai-authorship-v3"
    # The default counts the co-author trailer (watch.py's 5 lines, now watcher.py) and README-like files,
    # not blank lines; "(AIDER) bot" is no documented aider suffix.
    assert res.markers.get("co-author:aider@aider.chat") == 1
    assert res.totals.total != aider.totals.total


def test_survival_never_runs_the_repositorys_diff_drivers(tmp_path: Path) -> None:
    """Survival mode is handed untrusted repositories: their textconv filters and external diff drivers must not run."""
    r = Repo(tmp_path / "repo")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.sh"
    evil.write_text(f'#!/bin/sh\necho "$0 $*" >> "{marker}"\ncat "$1" 2>/dev/null\nexit 0\n')
    evil.chmod(0o755)
    start = r.commit("start", {"a.py": body(4, "a"), ".gitattributes": "*.py diff=evil\n"})
    r.git("config", "diff.evil.textconv", str(evil))
    r.git("config", "diff.evil.command", str(evil))
    r.commit("change", {"a.py": body(6, "a"), "b.py": body(3, "b")}, author=VIA_AIDER)
    r.git("checkout", "-q", "-b", "side")
    r.commit("side", {"c.py": body(2, "c")})
    r.git("checkout", "-q", "main")
    r.merge("side", "--no-ff")
    # The planted driver is live: plain git commands do run it.
    subprocess.run(["git", "blame", "HEAD~2..HEAD", "--", "a.py"], cwd=r.path, capture_output=True, check=True)
    assert marker.exists()
    marker.unlink()
    for profile in ("default", "aider"):
        res = survival(r.path, f"{start}..HEAD", profile=profile)
        assert res.totals.total > 0
    code_share(r.path)
    assert not marker.exists(), marker.read_text()


def test_profile_errors(tmp_path: Path) -> None:
    r, start, end = build(tmp_path)
    with pytest.raises(Exception, match="unknown counting profile 'nope'"):
        survival(r.path, f"{start}..{end}", profile="nope")


def test_the_profile_from_the_command_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from redline.cli.main import cli

    r, start, end = build(tmp_path)
    _, aider, total = aider_blame_loop(r.path, start, end)
    out = CliRunner().invoke(cli, ["indicators", "code-share", str(r.path), "--survival", f"{start}..{end}",
                                   "--profile", "aider", "--json"])
    assert out.exit_code == 0, out.output
    import json

    doc = json.loads(out.stdout)
    assert doc["profile"]["name"] == "aider" and doc["rules"]["version"] == "aider-blame-v1"
    assert (doc["totals"]["ai_commit"], doc["totals"]["lines"]) == (aider, total)
    bad = CliRunner().invoke(cli, ["indicators", "code-share", str(r.path), "--profile", "aider"])
    assert bad.exit_code == 2 and "--profile aider needs --survival" in bad.output


def _pack_reads(trace: Path) -> list[tuple[str, str]]:
    """(pack, object id) of every object read from a pack, from a ``GIT_TRACE_PACK_ACCESS`` log."""
    by_pack: dict[str, dict[int, str]] = {}
    reads = []
    for line in trace.read_text().splitlines():
        pack, offset = line.split()[-2:]
        if pack not in by_pack:
            idx = Path(pack).with_suffix(".idx").read_bytes()
            shown = subprocess.run(["git", "show-index"], input=idx, capture_output=True, check=True).stdout
            by_pack[pack] = {int(off): oid for off, oid, *_ in (x.split() for x in shown.decode().splitlines())}
        reads.append((pack, by_pack[pack][int(offset)]))
    return reads


@pytest.mark.parametrize("layout", ["gc", "bare-midx"])
def test_the_blame_object_cache_changes_nothing_and_serves_what_it_holds(tmp_path: Path, layout: str) -> None:
    """Survival blames from an uncompressed copy of the range's objects: the same counts as from the repository,
    every object the copy holds read from it (even after a read fell through to the repository's pack, and
    with a multi-pack index in the repository), and the copy removed afterwards."""
    from redline.indicators.codeshare.git import Git
    from redline.indicators.codeshare.objcache import blame_object_cache, range_objects

    r, start, end = build(tmp_path)
    r.git("gc", "-q")
    path = r.path
    if layout == "bare-midx":  # a bare clone whose HEAD is past END (git reads HEAD:.mailmap), with a midx
        r.commit("after the range", {"aider/late.py": body(3, "late")})
        path = tmp_path / "bare.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(r.path), str(path)], check=True)
        _git(path, "repack", "-a", "-d", "-q")
        _git(path, "multi-pack-index", "write")
    for profile in ("aider", "default"):
        cached = survival(path, f"{start}..{end}", profile=profile)
        plain = survival(path, f"{start}..{end}", profile=profile, object_cache=False)
        assert [(c.sha, c.counts) for c in cached.commits] == [(c.sha, c.counts) for c in plain.commits]
        assert cached.totals == plain.totals and cached.totals.total > 0
    git = Git(path)
    held = set(range_objects(git, start, end))
    files = [f for f in _git(path, "ls-tree", "-r", "--name-only", end).split() if f.endswith(".py")]
    with blame_object_cache(git, start, end) as cg:
        assert cg is not git
        cache = Path(cg.env["GIT_OBJECT_DIRECTORY"])
        assert (cache / "pack" / "multi-pack-index").exists()
        trace = tmp_path / f"pack-access-{layout}"
        traced = cg.with_env(GIT_TRACE_PACK_ACCESS=str(trace))
        for f in files:
            out = traced.out("blame", "--porcelain", "--no-textconv", "-M100", "-C100", "-C", "-C",
                             f"{start}..{end}", "--", f)
            assert out == git.out("blame", "--porcelain", "--no-textconv", "-M100", "-C100", "-C", "-C",
                                  f"{start}..{end}", "--", f)
        reads = _pack_reads(trace)
        from_cache = {oid for pack, oid in reads if pack.startswith(str(cache))}
        elsewhere = {oid for pack, oid in reads if not pack.startswith(str(cache))}
        assert len(from_cache) > 20
        assert not elsewhere & held  # what the cache holds is never read from the repository
    assert not cache.exists()
    with blame_object_cache(git, start, end, budget=0) as cg:  # over budget: the repository itself
        assert cg is git
