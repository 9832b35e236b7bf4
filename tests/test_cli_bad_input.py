"""The CLI bad-input matrix: every command that reads a file, given a bad one, fails cleanly and within memory.

Each file-reading slot of every ``redline`` command (enumerated from the click command tree; the table below
says how to invoke each) gets: a missing path, a directory, an empty file, garbage bytes, a file just over the
command's bound, ``/dev/zero``, an unreadable file, and, where a private key is taken, a wrong key. Every case
must exit with a documented code (README), print exactly one ``error:`` line on stderr (or click's usage error,
exit 2) and never a traceback. The ``/dev/zero`` and oversized cases run again in one child process whose peak
resident memory (``VmHWM``, else ``ru_maxrss``) after each case must stay within 256 MB.

The unreadable cases (a file of mode 000) run in one child process too, which must really be unable to read
such a file. As root (CI runs as root) that child runs under ``setpriv`` without ``CAP_DAC_OVERRIDE`` and
``CAP_DAC_READ_SEARCH``: still uid 0, owning every file of the test's world, but held to the permission bits
like anyone else, so mode 000 stops it. (Running it as ``nobody`` instead does not work here: the interpreter
lives under ``/root``, which ``nobody`` may not enter, and the world's key files are 0600 and root's.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from helpers.unprivileged import unprivileged as without_dac_override

from redline.cli.inputs import MAX_CHECKPOINT_BYTES, MAX_FIELDS_BYTES, MAX_KEY_BYTES
from redline.cli.main import cli
from redline.compute.epoch import MAX_CSV_BYTES as EPOCH_CSV_BYTES
from redline.indicators.codeshare.rules import MAX_RULES_BYTES
from redline.indicators.codeshare.sources import MAX_AGENT_TRACE_BYTES
from redline.indicators.evallogs import MAX_CSV_BYTES, MAX_RUN_TABLE
from redline.log.leaf import MAX_ENTRY_BYTES
from redline.log.receipt import MAX_RECEIPT_BYTES
from redline.log.witness import MAX_POLICY_BYTES as WITNESS_POLICY_BYTES
from redline.policy.model import MAX_POLICY_BYTES
from redline.transcript.format import MAX_SPEC_BYTES

#: The exit codes README.md documents.
DOCUMENTED = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 65, 66, 73, 74}
#: Peak resident memory allowed while refusing a bad input.
MAX_RSS = 256 * 1024 * 1024
ORIGIN = "redline.test/bad-input"
EPOCH_CSV = Path(__file__).parent / "data" / "epoch" / "notable_ai_models.csv"
BAD = "\0BAD\0"  # placeholder for the bad path in an argv template


@dataclass(frozen=True)
class Slot:
    """One file a command reads: how to invoke the command with ``BAD`` in its place, and the command's bound."""

    argv: Callable[[dict[str, str]], list[str]]
    limit: int
    key: bool = False  # a private key slot: also gets a wrong key
    suffix: str = ""  # the bad file's suffix (horizon picks the reader by it)
    #: Cases that are valid input here (an empty trace file has no records, any bytes are a log entry, any key
    #: may sign offline): they need only end with a documented code and no traceback.
    valid: frozenset[str] = frozenset()


def _sign_opts(c: dict[str, str]) -> list[str]:
    return ["--out", c["out"], "--seq", "1", "--log-origin", ORIGIN]


#: (command path, parameter) → how to feed it a bad file. Every parameter of the command tree that reads a file
#: is here or in ``NOT_READ`` (checked by ``test_every_file_reading_parameter_is_in_the_matrix``).
SLOTS: dict[tuple[str, str], Slot] = {
    ("compute screen", "csv_path"): Slot(lambda c: ["compute", "screen", BAD], EPOCH_CSV_BYTES),
    ("compute screen", "policy_name"): Slot(lambda c: ["compute", "screen", str(EPOCH_CSV), "--policy", BAD],
                                            MAX_POLICY_BYTES),
    ("compute six-nd-check", "csv_path"): Slot(lambda c: ["compute", "six-nd-check", BAD], EPOCH_CSV_BYTES),
    ("indicators code-share", "rules_file"): Slot(lambda c: ["indicators", "code-share", c["repo"], "--rules", BAD],
                                                  MAX_RULES_BYTES),
    ("indicators code-share", "agent_trace"): Slot(
        lambda c: ["indicators", "code-share", c["repo"], "--agent-trace", BAD], MAX_AGENT_TRACE_BYTES,
        valid=frozenset({"empty"})),
    ("indicators code-share", "sign_key"): Slot(
        lambda c: ["indicators", "code-share", c["repo"], "--sign", BAD, *_sign_opts(c)], MAX_KEY_BYTES, key=True,
        valid=frozenset({"wrong-key"})),
    ("indicators horizon", "logs"): Slot(lambda c: ["indicators", "horizon", BAD, "--bootstrap", "0"],
                                         MAX_RUN_TABLE, suffix=".jsonl"),
    ("indicators horizon", "minutes_csv"): Slot(
        lambda c: ["indicators", "horizon", c["runs"], "--bootstrap", "0", "--human-minutes", BAD], MAX_CSV_BYTES),
    ("indicators horizon", "release_dates"): Slot(
        lambda c: ["indicators", "horizon", c["runs"], "--bootstrap", "0", "--release-dates", BAD], MAX_CSV_BYTES),
    ("indicators horizon", "sign_key"): Slot(
        lambda c: ["indicators", "horizon", c["runs"], "--bootstrap", "0", "--sign", BAD, *_sign_opts(c)],
        MAX_KEY_BYTES, key=True, valid=frozenset({"wrong-key"})),
    ("key show", "path_or_key"): Slot(lambda c: ["key", "show", BAD], MAX_KEY_BYTES),
    ("log append", "files"): Slot(lambda c: ["log", "append", c["log"], BAD], MAX_ENTRY_BYTES,
                                  valid=frozenset({"empty", "garbage"})),
    ("log append", "key_path"): Slot(lambda c: ["log", "append", c["log"], c["entry"], "--key", BAD],
                                     MAX_KEY_BYTES, key=True),
    ("log init", "key_path"): Slot(lambda c: ["log", "init", c["fresh"], "--origin", ORIGIN, "--key", BAD],
                                   MAX_KEY_BYTES, key=True),
    ("log verify", "receipt_file"): Slot(
        lambda c: ["log", "verify", "--receipt", BAD, "--entry", c["entry"], "--log-key", c["logpub"]],
        MAX_RECEIPT_BYTES),
    ("log verify", "entry_file"): Slot(
        lambda c: ["log", "verify", "--receipt", c["receipt"], "--entry", BAD, "--log-key", c["logpub"]],
        MAX_ENTRY_BYTES),
    ("log verify", "checkpoint_file"): Slot(lambda c: ["log", "verify", c["log"], "--checkpoint", BAD],
                                            MAX_CHECKPOINT_BYTES),
    ("log verify", "log_key"): Slot(lambda c: ["log", "verify", c["log"], "--log-key", BAD], MAX_KEY_BYTES),
    ("monitor", "witness_policy"): Slot(
        lambda c: ["monitor", "http://127.0.0.1:9/", "--log-key", c["logpub"], "--witness-policy", BAD,
                   "--memory", c["memory"], "--once"], WITNESS_POLICY_BYTES),
    ("party admit", "verifier_key"): Slot(
        lambda c: ["party", "admit", c["log"], BAD, "--role", "lab", "--display-name", "L", "--jurisdiction", "EU",
                   "--key", c["key"]], MAX_KEY_BYTES),
    ("party admit", "key_path"): Slot(
        lambda c: ["party", "admit", c["log"], c["labpub"], "--role", "lab", "--display-name", "L",
                   "--jurisdiction", "EU", "--key", BAD], MAX_KEY_BYTES, key=True),
    ("party genesis", "key_path"): Slot(lambda c: ["party", "genesis", c["log"], "--key", BAD], MAX_KEY_BYTES,
                                        key=True),
    ("policy show", "pack_or_file"): Slot(lambda c: ["policy", "show", BAD], MAX_POLICY_BYTES),
    ("policy publish", "pack_or_file"): Slot(lambda c: ["policy", "publish", c["log"], BAD, "--key", c["key"]],
                                             MAX_POLICY_BYTES),
    ("policy publish", "key_path"): Slot(
        lambda c: ["policy", "publish", c["log"], "eu-ai-act", "--key", BAD], MAX_KEY_BYTES, key=True),
    ("run start", "transcript"): Slot(
        lambda c: ["run", "start", c["transcript"], "--key", c["lab"], "--model-name", "A", "--declared-flop", "1",
                   "--seq", "1", "--log-origin", ORIGIN], MAX_SPEC_BYTES),  # BAD is the transcript's run.json
    ("run start", "key_path"): Slot(
        lambda c: ["run", "start", c["transcript"], "--key", BAD, "--model-name", "A", "--declared-flop", "1",
                   "--seq", "1", "--log-origin", ORIGIN], MAX_KEY_BYTES, key=True),
    ("run declare", "key_path"): Slot(
        lambda c: ["run", "declare", c["transcript"], "--key", BAD, "--run-id", "r", "--model-name", "A",
                   "--seq", "1", "--log-origin", ORIGIN], MAX_KEY_BYTES, key=True),
    ("sign", "fields_file"): Slot(
        lambda c: ["sign", BAD, "--kind", "run-start", "--key", c["key"], "--seq", "1", "--log-origin", ORIGIN],
        MAX_FIELDS_BYTES),
    ("sign", "key_path"): Slot(
        lambda c: ["sign", c["entry"], "--kind", "run-start", "--key", BAD, "--seq", "1", "--log-origin", ORIGIN],
        MAX_KEY_BYTES, key=True),
    ("state", "witness_policy"): Slot(
        lambda c: ["state", "http://127.0.0.1:9/", "--log-key", c["logpub"], "--witness-policy", BAD],
        WITNESS_POLICY_BYTES),
    ("submit", "file"): Slot(lambda c: ["submit", c["log"], BAD], MAX_ENTRY_BYTES),
    ("submit", "key_path"): Slot(lambda c: ["submit", c["log"], c["entry"], "--key", BAD, "--kind", "run-start"],
                                 MAX_KEY_BYTES, key=True),
    ("verify run", "key_path"): Slot(
        lambda c: ["verify", "run", "r", "--transcript", c["transcript"], "--key", BAD, "--seed", "00",
                   "--run-party", "lab.example"], MAX_KEY_BYTES, key=True, valid=frozenset({"wrong-key"})),
    ("witness show", "key_path"): Slot(lambda c: ["witness", "show", "--state", c["wstate"], "--key", BAD],
                                       MAX_KEY_BYTES, key=True),
}

#: File-typed parameters left out of the matrix, and why.
NOT_READ: dict[tuple[str, str], str] = {
    **{(cmd, p): "an output file" for cmd, p in [
        ("indicators code-share", "evidence_file"), ("indicators code-share", "plot_file"),
        ("indicators code-share", "out_file"), ("indicators code-share", "receipt_file"),
        ("indicators horizon", "plot_file"), ("indicators horizon", "out_file"),
        ("indicators horizon", "receipt_file"), ("key new", "out"), ("log receipt", "out"),
        ("party admit", "receipt_out"), ("policy publish", "receipt_out"), ("run declare", "out"),
        ("run start", "out"), ("sign", "out"), ("submit", "receipt_out"), ("verify run", "out"),
        ("witness key new", "out")]},
    ("indicators code-share", "repo"): "a git repository, read through git",
    ("run declare", "transcript"): "a transcript directory: its files are checked by run start's run.json slot, "
                                   "tests/test_transcript*.py and the safetensors header tests",
    ("verify run", "transcript_dir"): "a transcript directory: a bad one fails the run (tests/test_verify*.py)",
    ("serve", "witness_policy"): "serve starts a server; its --witness-policy goes through the check state's does",
    ("witness serve", "key_path"): "witness serve starts a server; its --key goes through the check witness show's "
                                   "does",
}


def _commands(group: click.Group = cli, prefix: str = "") -> list[tuple[str, click.Command]]:
    out = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}".strip()
        out += _commands(cmd, path) if isinstance(cmd, click.Group) else [(path, cmd)]
    return out


def test_every_file_reading_parameter_is_in_the_matrix() -> None:
    """Each click.File, and each click.Path that may name a file, of every command is in SLOTS or NOT_READ."""
    missing = []
    for path, cmd in _commands():
        for p in cmd.params:
            reads = isinstance(p.type, click.File) or (isinstance(p.type, click.Path) and p.type.file_okay)
            if reads and (path, p.name) not in SLOTS and (path, p.name) not in NOT_READ:
                missing.append(f"{path} {p.name}")
    assert not missing, f"file parameters with no bad-input slot: {missing}"
    known = {path for path, _ in _commands()}
    assert {cmd for cmd, _ in SLOTS} <= known


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A log with a coordinator, a lab key, a receipt, a run table, a git repository and a transcript stub."""
    d = tmp_path_factory.mktemp("bad-input")
    runner = CliRunner()

    def ok(*args: str | Path) -> Result:
        r = runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r

    log = d / "log"
    ok("log", "init", log, "--origin", ORIGIN)
    ok("key", "new", "coordinator.example", "-o", d / "coord.key")
    ok("key", "new", "lab.example", "-o", d / "lab.key")
    ok("party", "genesis", log, "--key", d / "coord.key")
    ok("log", "receipt", log, "0", "-o", d / "0.tlog-proof")
    (d / "entry.json").write_text("{}")
    rows = [(1, 1), (2, 1), (4, 0), (8, 1), (16, 0), (32, 0), (3, 1), (24, 0)]
    (d / "runs.jsonl").write_text("".join(json.dumps({"task_id": f"t{i}", "alias": "m", "score_binarized": s,
                                                      "human_minutes": m}) + "\n" for i, (m, s) in enumerate(rows)))
    repo = d / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@example.com"}
    (repo / "a.py").write_text("print(1)\n")
    for args in (["init", "-q"], ["add", "a.py"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True)
    transcript = d / "transcript"
    transcript.mkdir()
    (d / "wstate").mkdir()
    return {"log": str(log), "key": str(d / "coord.key"), "lab": str(d / "lab.key"), "labpub": str(d / "lab.key.pub"),
            "logpub": str(log / "log.key.pub"), "receipt": str(d / "0.tlog-proof"), "entry": str(d / "entry.json"),
            "runs": str(d / "runs.jsonl"), "repo": str(repo), "transcript": str(transcript), "out": str(d / "out.json"),
            "memory": str(d / "memory"), "wstate": str(d / "wstate"), "fresh": str(d / "fresh-log"),
            "dir": str(d)}


CASES = ["missing", "directory", "empty", "garbage", "oversized", "dev-zero", "unreadable", "wrong-key"]


def _bad_path(case: str, slot: Slot, where: Path, world: dict[str, str]) -> str:
    """Make the bad input of ``case`` under ``where`` and return its path."""
    p = where / f"bad{slot.suffix}"
    if case == "missing":
        return str(p)
    if case == "directory":
        p.mkdir()
        return str(p)
    if case == "empty":
        p.write_bytes(b"")
    elif case == "garbage":
        p.write_bytes(bytes(range(256)) * 4 + b"\xff\xfe{[\x00")
    elif case == "oversized":
        with p.open("wb") as f:  # sparse: just over the bound, and nothing to read before the refusal
            f.truncate(slot.limit + 1)
    elif case == "dev-zero":
        return "/dev/zero"
    elif case == "unreadable":
        p.write_bytes(b"{}")
        p.chmod(0)
    elif case == "wrong-key":
        return world["lab"]  # a valid private key of a party with no say here (or the wrong name)
    if slot.key and case in ("empty", "garbage", "oversized"):
        p.chmod(0o600)  # past the mode check, so the content itself is judged
    return str(p)


def _argv(name: tuple[str, str], bad: str, world: dict[str, str], where: Path) -> list[str]:
    if name == ("run start", "transcript"):  # the bad file is the transcript's run.json
        t = where / "transcript"
        t.mkdir(exist_ok=True)
        if bad == "/dev/zero":
            (t / "run.json").symlink_to("/dev/zero")
        elif Path(bad).exists() or Path(bad).is_symlink():
            os.rename(bad, t / "run.json")
        world = {**world, "transcript": str(t)}
    argv = SLOTS[name].argv(world)
    return [bad if a == BAD else a for a in argv]


@dataclass(frozen=True)
class Outcome:
    """What one ``redline`` invocation did, in this process (a click ``Result``) or in a child (``_CHILD``)."""

    exit_code: int
    stdout: str
    stderr: str
    #: None when the invocation raised nothing but ``SystemExit``, else the exception's ``repr``.
    exception: str | None

    @classmethod
    def of(cls, result: Result) -> Outcome:
        exc = result.exception
        return cls(result.exit_code, result.output, result.stderr,
                   None if exc is None or isinstance(exc, SystemExit) else repr(exc))


def assert_clean(result: Result | Outcome, what: str) -> None:
    """A documented exit code, one ``error:`` line (or click's usage error), never a traceback."""
    r = result if isinstance(result, Outcome) else Outcome.of(result)
    err = r.stderr
    assert "Traceback" not in r.stdout + err, f"{what}: traceback:\n{err}"
    assert r.exception is None, f"{what}: raised {r.exception}\n{err}"
    assert r.exit_code in DOCUMENTED, f"{what}: exit {r.exit_code} is not documented:\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note:")]
    if r.exit_code == 2:
        assert any(ln.startswith("Error:") for ln in lines), f"{what}: not click's usage error:\n{err}"
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{what}: not one error line:\n{err}"


#: Every (slot, case) that applies: "wrong-key" only where a key is taken.
PAIRS = [(name, case) for name in sorted(SLOTS) for case in CASES if case != "wrong-key" or SLOTS[name].key]


@pytest.mark.parametrize(("name", "case"), PAIRS,
                         ids=[f"{n[0]}:{n[1]}-{c}".replace(" ", "-") for n, c in PAIRS])
def test_bad_input(name: tuple[str, str], case: str, world: dict[str, str], tmp_path: Path,
                   request: pytest.FixtureRequest) -> None:
    slot = SLOTS[name]
    if case == "unreadable":  # run in a child that mode 000 stops, root or not (see the module's docstring)
        outcome = request.getfixturevalue("unreadable_outcomes")[name]
    else:
        bad = _bad_path(case, slot, tmp_path, world)
        outcome = Outcome.of(CliRunner().invoke(cli, _argv(name, bad, world, tmp_path)))
    if case in slot.valid:
        assert outcome.exit_code in DOCUMENTED | {0} and "Traceback" not in outcome.stdout + outcome.stderr
        assert outcome.exception is None, outcome.exception
        return
    assert outcome.exit_code != 0, f"{name} {case}: succeeded:\n{outcome.stdout}"
    assert_clean(outcome, f"{' '.join(name)} / {case}")


#: Runs ``redline`` invocations in one process: argv[1] is JSON ``[[label, argv], ...]``; prints JSON
#: ``{"unreadable_probe": ..., "results": [[label, exit code, stdout, stderr, exception or None, peak RSS], ...]}``.
#: The probe says whether this process can read a file of mode 000 of its own ("denied", or "read").
_CHILD = textwrap.dedent("""
    import json, os, resource, sys, tempfile
    from click.testing import CliRunner
    from redline.cli.main import cli

    def peak_rss():
        # VmHWM: the peak resident set of this process's own memory (ru_maxrss may carry the forking parent's)
        try:
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
        except (OSError, StopIteration):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def probe():
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "probe")
            with open(path, "wb") as f:
                f.write(b"{}")
            os.chmod(path, 0)
            try:
                with open(path, "rb") as f:
                    f.read()
            except PermissionError:
                return "denied"
            return "read"

    out = []
    for label, argv in json.loads(sys.argv[1]):
        r = CliRunner().invoke(cli, argv)
        peak = peak_rss()
        exc = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)[:300]
        out.append([label, r.exit_code, r.output[-4000:], r.stderr[-4000:], exc, peak])
    print(json.dumps({"unreadable_probe": probe(), "results": out}))
""")

#: Capabilities that let root read a file whatever its mode: the unreadable cases' child runs without them.


def run_child(jobs: list[list], *, timeout: int, unprivileged: bool = False) -> dict:
    """Run ``_CHILD`` on ``jobs``; ``unprivileged``: as root, without the capabilities that bypass file modes."""
    argv = [sys.executable, "-c", _CHILD, json.dumps(jobs)]
    if unprivileged:
        argv = without_dac_override(argv)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def unreadable_outcomes(world: dict[str, str], tmp_path_factory: pytest.TempPathFactory
                        ) -> dict[tuple[str, str], Outcome]:
    """Every slot given a file of mode 000, in one child that such a file stops (checked), by slot."""
    base = tmp_path_factory.mktemp("unreadable")
    jobs, names = [], {}
    for name in sorted(SLOTS):
        where = base / "-".join(name).replace(" ", "_")
        where.mkdir()
        label = " ".join(name)
        names[label] = name
        jobs.append([label, _argv(name, _bad_path("unreadable", SLOTS[name], where, world), world, where)])
    got = run_child(jobs, timeout=300, unprivileged=True)
    assert got["unreadable_probe"] == "denied", \
        "the child can read a file of mode 000: the unreadable cases would test nothing"
    out = {}
    for label, code, stdout, stderr, exc, peak in got["results"]:
        assert peak <= MAX_RSS, f"{label} / unreadable: peak resident memory {peak / 2**20:.0f} MB"
        out[names[label]] = Outcome(code, stdout, stderr, exc)
    return out


def test_dev_zero_and_oversized_inputs_stay_within_memory(world: dict[str, str], tmp_path: Path) -> None:
    """Every slot's /dev/zero and just-oversized inputs, in one child: each is refused, and the child's peak
    resident memory after each stays within 256 MB."""
    jobs = []
    for name in sorted(SLOTS):
        for case in ("dev-zero", "oversized"):
            where = tmp_path / f"{'-'.join(name).replace(' ', '_')}-{case}"
            where.mkdir()
            jobs.append([f"{' '.join(name)} / {case}", _argv(name, _bad_path(case, SLOTS[name], where, world),
                                                              world, where)])
    peaks = []
    for label, code, _, err, exc, peak in run_child(jobs, timeout=300)["results"]:
        assert code in DOCUMENTED and code != 0, f"{label}: exit {code} ({exc}):\n{err}"
        assert "Traceback" not in err, f"{label}:\n{err}"
        assert peak <= MAX_RSS, f"{label}: peak resident memory {peak / 2**20:.0f} MB"
        peaks.append(peak)
    print(f"peak resident memory over {len(peaks)} /dev/zero and oversized cases: {max(peaks) / 2**20:.0f} MB")


def _zip_bomb(path: Path, size: int) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z, \
            z.open("header.json", "w", force_zip64=True) as f:
        chunk = b" " * (1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)


def test_eval_zip_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """An Inspect .eval archive promising far more than it holds is refused from its central directory, in a
    child whose peak memory stays within 256 MB."""
    from redline.indicators.evallogs import MAX_EVAL_MEMBER

    bomb = tmp_path / "bomb.eval"
    _zip_bomb(bomb, MAX_EVAL_MEMBER + (1 << 20))
    assert bomb.stat().st_size < 1 << 20
    jobs = [["bomb", ["indicators", "horizon", str(bomb), "--bootstrap", "0"]]]
    [[_, code, _, err, exc, peak]] = run_child(jobs, timeout=120)["results"]
    assert code == 65, f"exit {code} ({exc}): {err}"
    assert err.startswith("error: ") and "expands to" in err
    assert peak <= MAX_RSS


def test_eval_ratio_bound(tmp_path: Path) -> None:
    """A member under the size bound but compressed beyond the ratio bound is refused too."""
    from redline.errors import MalformedInput
    from redline.indicators.evallogs import check_eval_archive

    bomb = tmp_path / "ratio.eval"
    _zip_bomb(bomb, 64 << 20)
    with pytest.raises(MalformedInput, match="compression ratio"):
        check_eval_archive(bomb)
