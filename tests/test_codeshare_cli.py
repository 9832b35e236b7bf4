"""``redline indicators code-share``: output, evidence, plot, signing, submission to a log, and clear errors."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from test_codeshare import CLAUDE, Repo, body, gitai_note, isolated_git  # noqa: F401  (the fixture is autouse)

from redline.cli.main import cli
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey, load_signing_key
from redline.errors import InvalidStatement, NotAuthorized
from redline.indicators.signing import indicator_envelope, submit_or_write
from redline.statements import Indicator, open_envelope


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"redline {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result


def failed(code: int, *args: str | Path, match: str) -> Result:
    result = run(*args)
    assert result.exit_code == code, f"exited {result.exit_code}, not {code}:\n{result.output}"
    assert "Traceback" not in result.output
    assert match in result.stderr, f"{match!r} not in {result.stderr!r}"
    return result


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    """Mostly AI-written: 8 lines by Claude (trailer), 1 line noted AI, 2 human, 1 unknown, in 4 commits."""
    r = Repo(tmp_path / "repo")
    r.commit(f"one\n\n{CLAUDE}\n", {"src/a.py": body(5, "a")})
    r.commit(f"two\n\n{CLAUDE}\n", {"src/b.py": body(3, "b")})
    c = r.commit("three", {"tests/test_c.py": body(3, "c")})
    r.note(c, gitai_note({"tests/test_c.py": "2"}))
    r.commit("four", {"README.md": "by hand\n"})
    return r


def test_report_json_evidence_and_plot(repo: Repo, tmp_path: Path) -> None:
    out = ok("indicators", "code-share", repo.path)
    assert "point estimate   75.0%" in out.stdout and "lower bound 8.3%" in out.stdout
    assert "unknown          8.3%" in out.stdout and "ai-authorship-v3" in out.stdout
    evidence, png = tmp_path / "evidence.json", tmp_path / "share.png"
    res = ok("indicators", "code-share", repo.path, "--json", "--evidence", evidence, "--plot", png)
    summary = json.loads(res.stdout)
    assert summary["totals"]["lines"] == 12 and summary["totals"]["point"] == 0.75
    assert summary["totals"]["lower_bound"] == round(1 / 12, 6)
    assert summary["totals"]["upper_bound"] == round(10 / 12, 6)
    assert summary["by_class"]["tests"]["human_line"] == 2
    assert summary["evidence_digest"] == hashlib.sha256(evidence.read_bytes()).hexdigest()
    doc = json.loads(evidence.read_bytes())
    assert len(doc["commits"]) == 4 and doc["commit_columns"][0] == "sha"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_survival_from_the_command_line(repo: Repo) -> None:
    res = json.loads(ok("indicators", "code-share", repo.path, "--survival", "HEAD~2..HEAD", "--json").stdout)
    assert res["mode"] == "survival" and res["totals"]["lines"] == 4 and res["method"] == "git-blame-survival"
    failed(2, "indicators", "code-share", repo.path, "--survival", "HEAD~2..HEAD", "--since", "2025-01-01",
           match="--survival START..END replaces")


def test_sign_and_write_the_envelope(repo: Repo, tmp_path: Path) -> None:
    ok("key", "new", "lab-a", "-o", tmp_path / "lab.key")
    env_file, evidence = tmp_path / "stmt.json", tmp_path / "ev.json"
    ok("indicators", "code-share", repo.path, "--sign", tmp_path / "lab.key", "--out", env_file, "--seq", "3",
       "--log-origin", "redline.example/log", "--evidence", evidence, "--since", "2025-01-01", "--until",
       "2025-02-01")
    key = load_signing_key(tmp_path / "lab.key")
    pred, _ = open_envelope(Envelope.from_json(env_file.read_bytes()), [key.verifier()])
    assert isinstance(pred, Indicator)
    assert (pred.party, pred.seq, pred.name, pred.subject, pred.unit) == ("lab-a", 3, "ai-code-share", "repo",
                                                                         "fraction")
    assert pred.log == "redline.example/log"  # signed offline for the log it will be submitted to
    assert pred.value == 0.75 and pred.interval_low == 1 / 12 and pred.interval_high == 10 / 12
    assert pred.window_start == datetime(2025, 1, 1, tzinfo=UTC)
    assert pred.window_end == datetime(2025, 2, 1, tzinfo=UTC)
    assert (pred.method, pred.method_version, pred.rule_version) == ("git-first-parent-added-lines", "2",
                                                                     "ai-authorship-v3")
    assert pred.evidence_digest == {"sha256": hashlib.sha256(evidence.read_bytes()).hexdigest()}


def test_sign_and_submit_crosses_the_ai_rnd_line(repo: Repo, tmp_path: Path) -> None:
    log = tmp_path / "log"
    for name in ("coord", "lab-a"):
        ok("key", "new", name, "-o", tmp_path / f"{name}.key")
    ok("log", "init", log, "--origin", "redline.test/codeshare")
    ok("party", "genesis", log, "--key", tmp_path / "coord.key")
    ok("party", "admit", log, tmp_path / "lab-a.key.pub", "--role", "lab", "--display-name", "Lab A",
       "--jurisdiction", "US-CA", "--key", tmp_path / "coord.key")
    ok("policy", "publish", log, "ai-rnd", "--key", tmp_path / "coord.key")
    res = ok("indicators", "code-share", repo.path, "--sign", tmp_path / "lab-a.key", "--submit", log,
             "--receipt", tmp_path / "receipt")
    assert "accepted: entry 3, indicator #1 from lab-a" in res.stderr
    assert (tmp_path / "receipt").read_bytes()
    state = json.loads(ok("state", log, "--json").stdout)
    assert state["indicators"]["ai-code-share:repo"]["value"] == 0.75
    # 75% is under the 80% line: no crossing yet. Another repository, all AI, crosses it.
    assert not any(c["line"] == "ai-code-share" for c in state["crossings"])
    r2 = Repo(tmp_path / "repo2")
    r2.commit(f"all ai\n\n{CLAUDE}\n", {"src/x.py": body(5, "x")})
    ok("indicators", "code-share", r2.path, "--sign", tmp_path / "lab-a.key", "--submit", log)
    state = json.loads(ok("state", log, "--json").stdout)
    crossing = [c for c in state["crossings"] if c["line"] == "ai-code-share"]
    assert crossing and crossing[0]["party"] == "lab-a" and crossing[0]["value"] == 1.0


def test_signing_usage_errors(repo: Repo, tmp_path: Path) -> None:
    ok("key", "new", "lab-a", "-o", tmp_path / "lab.key")
    failed(2, "indicators", "code-share", repo.path, "--submit", tmp_path / "log", match="--submit needs --sign")
    failed(2, "indicators", "code-share", repo.path, "--sign", tmp_path / "lab.key", match="--sign needs --submit")
    failed(2, "indicators", "code-share", repo.path, "--sign", tmp_path / "lab.key", "--out", tmp_path / "x.json",
           match="--out without --submit needs --seq")
    failed(2, "indicators", "code-share", repo.path, "--sign", tmp_path / "lab.key", "--out", tmp_path / "x.json",
           "--seq", "1", match="--out without --submit needs --log-origin")
    failed(4, "indicators", "code-share", repo.path, "--sign", tmp_path / "lab.key", "--submit", tmp_path / "nolog",
           match="no log in")


def test_bad_input_is_one_clear_line(repo: Repo, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    failed(1, "indicators", "code-share", tmp_path / "plain", match="error: ")
    failed(1, "indicators", "code-share", tmp_path / "plain", match="not a git repository")
    failed(1, "indicators", "code-share", tmp_path / "nowhere", match="no such file or directory")
    failed(1, "indicators", "code-share", repo.path, "--since", "2031-01-01", match="no commits on the first-parent")
    failed(1, "indicators", "code-share", repo.path, "--branch", "nope", match="no commit 'nope'")
    failed(1, "indicators", "code-share", repo.path, "--include", "nothing/**", match="no countable added lines")
    shallow = tmp_path / "shallow"
    import subprocess

    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{repo.path}", str(shallow)], check=True)
    failed(1, "indicators", "code-share", shallow, match="shallow clone")
    repo.note(repo.head("HEAD~1"), "not a note\n")
    failed(65, "indicators", "code-share", repo.path, match="no '---' line")
    bad_rules = tmp_path / "rules.yaml"
    bad_rules.write_text("id: x\n")
    failed(65, "indicators", "code-share", repo.path, "--rules", bad_rules, match="rules.yaml: field 'version'")


def test_the_signing_helper(tmp_path: Path) -> None:
    key = SigningKey.generate("lab-a")
    fields = dict(name="ai-code-share", subject="lab-a", value=0.5, unit="fraction", interval=(0.25, 0.75),
                  window=(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)),
                  method="m", method_version="1", rule_version="r-v1", evidence_digest="ab" * 32)
    env = indicator_envelope(key, seq=1, **fields)
    pred, _ = open_envelope(env, [key.verifier()])
    assert pred.evidence_digest == {"sha256": "ab" * 32} and pred.interval_high == 0.75
    with pytest.raises(InvalidStatement, match="interval_low"):
        indicator_envelope(key, seq=1, **(fields | {"interval": (0.6, 0.7)}))
    with pytest.raises(InvalidStatement, match="needs its sequence number"):
        submit_or_write(key, out=tmp_path / "x.json", **fields)
    with pytest.raises(InvalidStatement, match="somewhere to go"):
        submit_or_write(key, seq=1, **fields)
    done = submit_or_write(key, out=tmp_path / "x.json", seq=2, **fields)
    assert done.index is None and Envelope.from_json((tmp_path / "x.json").read_bytes()) == done.envelope
    with pytest.raises(NotAuthorized):
        from redline.statements import sign_predicate

        sign_predicate(open_envelope(env, [key.verifier()])[0], SigningKey.generate("lab-b"))


def test_evidence_options_from_the_command_line(repo: Repo, tmp_path: Path) -> None:
    base = json.loads(ok("indicators", "code-share", repo.path, "--json").stdout)["totals"]
    assert base["unknown"] == 1
    complete = json.loads(ok("indicators", "code-share", repo.path, "--json", "--notes-complete").stdout)
    assert complete["totals"]["unknown"] == 0 and complete["totals"]["human_line"] == 3
    assert complete["repository"]["notes_complete"].startswith("asserted")
    trace = tmp_path / "t.jsonl"
    trace.write_text(json.dumps({
        "version": "0.1.0", "id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2026-01-23T14:30:00Z",
        "vcs": {"type": "git", "revision": repo.head()},
        "files": [{"path": "README.md", "conversations": [{"contributor": {"type": "ai"},
                                                            "ranges": [{"start_line": 1, "end_line": 1}]}]}]}) + "\n")
    traced = json.loads(ok("indicators", "code-share", repo.path, "--json", "--agent-trace", trace).stdout)
    assert traced["totals"]["unknown"] == 0 and traced["ai_lines_by_source"]["agent-trace"] == 1
    only_tests = json.loads(ok("indicators", "code-share", repo.path, "--json", "--include", "tests/**").stdout)
    assert only_tests["totals"]["lines"] == 3
    assert "--survival START..END" in ok("indicators", "code-share", "--help").stdout
