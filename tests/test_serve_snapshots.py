"""Snapshots while a server runs: ``redline log snapshot`` and the background ``Snapshotter`` of ``redline serve``.

A server that crashes (killed, out of memory, the machine lost) used to have saved its state only when it last
stopped cleanly, so its next start replayed everything since: about 80 s at a million entries. Now a separate
process saves a snapshot whenever enough entries came after the newest one, and the server's restart replays
only what came after that. The process shares nothing with the server but the files, so it can neither block
the server's appends nor hand it a state: a snapshot it writes is checked like any other when loaded.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_engine_parallel as hand_made  # noqa: E402
from test_state_snapshot import _reference, _same, _used, _write, loggable_entries  # noqa: E402

from redline import statecache  # noqa: E402
from redline.cli.main import cli  # noqa: E402
from redline.cli.serve import Snapshotter  # noqa: E402
from redline.engine import Entry  # noqa: E402


@pytest.fixture(scope="module")
def loggable() -> list[Entry]:
    return loggable_entries(list(hand_made._scenario().entries))


def _snapshots(logdir: Path) -> list[str]:
    return sorted(p.name for p in (logdir / "snapshots").glob("state-*.sealed"))


def test_log_snapshot_saves_the_state_now_and_only_when_there_is_something_new(tmp_path: Path,
                                                                               loggable: list[Entry]) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable[:30])
    runner = CliRunner()
    first = runner.invoke(cli, ["log", "snapshot", str(logdir)])
    assert first.exit_code == 0, first.output
    assert "all 30 entries replayed" in first.stderr and _snapshots(logdir) == ["state-000000000030.sealed"]
    again = runner.invoke(cli, ["log", "snapshot", str(logdir)])
    assert again.exit_code == 0 and "already holds all 30 entries" in again.stderr
    _write(logdir, loggable[30:])
    later = runner.invoke(cli, ["log", "snapshot", str(logdir), "--workers", "1"])
    assert later.exit_code == 0, later.output
    assert f"{len(loggable) - 30} entries replayed after the snapshot of 30" in later.stderr
    assert _snapshots(logdir) == ["state-000000000030.sealed", f"state-{len(loggable):012d}.sealed"]
    got = _used(logdir)
    assert got.snapshot_size == len(loggable) and got.replayed == 0
    _same(got.state, _reference(loggable, logdir))


def test_log_snapshot_says_what_stops_it(tmp_path: Path, loggable: list[Entry]) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["log", "snapshot", str(tmp_path / "nothing")])
    assert missing.exit_code == 4 and "no log" in missing.stderr.lower()
    logdir = tmp_path / "log"
    _write(logdir, loggable[:10])
    (logdir / "snapshots").write_text("not a directory")
    blocked = runner.invoke(cli, ["log", "snapshot", str(logdir)])
    assert blocked.exit_code == 74 and "snapshots" in blocked.stderr, blocked.output
    assert "--low-priority" in runner.invoke(cli, ["log", "snapshot", "--help"]).output


def _wait_for(condition, what: str, seconds: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_snapshotter_saves_in_the_background_once_enough_entries_came(tmp_path: Path,
                                                                          loggable: list[Entry]) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable[:20])
    assert CliRunner().invoke(cli, ["log", "snapshot", str(logdir)]).exit_code == 0  # what serve's start leaves
    size = [20]
    saver = Snapshotter(logdir, lambda: size[0], interval=0.05, every=15)
    saver.start()
    try:
        time.sleep(0.5)
        assert saver.started == 0  # none new since the snapshot at 20: due only at 15 new
        assert _snapshots(logdir) == ["state-000000000020.sealed"]
        _write(logdir, loggable[20:])
        size[0] = len(loggable)
        _wait_for(lambda: f"state-{len(loggable):012d}.sealed" in _snapshots(logdir), "the snapshot")
        _wait_for(lambda: not saver.busy, "the helper to exit")
        assert saver.started == 1 and saver.failures == []
    finally:
        saver.stop()
    assert not saver._thread.is_alive()
    got = _used(logdir)
    assert got.snapshot_size == len(loggable) and got.replayed == 0
    _same(got.state, _reference(loggable, logdir))


def test_the_snapshotter_interrupts_a_helper_still_running_when_it_stops(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    script = tmp_path / "slow.py"
    script.write_text("import time, pathlib, sys\n"
                      "pathlib.Path(sys.argv[1]).write_text('started')\n"
                      "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
                      "    pathlib.Path(sys.argv[1]).write_text('interrupted')\n    raise\n")
    mark = tmp_path / "mark"
    saver = Snapshotter(logdir, lambda: 10, interval=0.05, every=1,
                        command=[sys.executable, str(script), str(mark)])
    saver.start()
    _wait_for(lambda: mark.exists() and mark.read_text() == "started", "the helper to start")
    began = time.monotonic()
    saver.stop(timeout=20)
    assert time.monotonic() - began < 20
    assert mark.read_text() == "interrupted"  # SIGINT: its own cleanup ran (the atomic write removes its temp file)
    assert saver.started == 1 and saver.failures and saver.failures[0] != 0


def test_a_helper_that_fails_leaves_the_server_alone_and_is_tried_again(tmp_path: Path) -> None:
    logdir = tmp_path / "log"
    logdir.mkdir()
    saver = Snapshotter(logdir, lambda: 10, interval=0.02, every=1,
                        command=[sys.executable, "-c", "raise SystemExit(3)"])
    saver.start()
    try:
        _wait_for(lambda: len(saver.failures) >= 2, "two failed helpers")
    finally:
        saver.stop()
    assert saver.failures[:2] == [3, 3]  # (stop may interrupt a third: -SIGINT)
    missing = Snapshotter(logdir, lambda: 10, interval=0.02, every=1, command=[str(tmp_path / "no-such-program")])
    missing.start()
    time.sleep(0.2)
    missing.stop()
    assert missing.started == 0 and not missing._thread.is_alive()


def test_serve_runs_the_snapshotter_while_it_serves_and_stops_it(tmp_path: Path, loggable: list[Entry],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    logdir = tmp_path / "log"
    _write(logdir, loggable[:10])
    seen: list[bool] = []

    def run(app: object, **kw: object) -> None:
        seen.append(any(t.name == "redline-snapshots" and t.is_alive() for t in threading.enumerate()))

    monkeypatch.setattr(uvicorn, "run", run)
    ok = CliRunner().invoke(cli, ["serve", str(logdir), "--port", "0", "--snapshot-check", "5",
                                  "--snapshot-every", "100"])
    assert ok.exit_code == 0, ok.output
    assert seen == [True]
    assert not any(t.name == "redline-snapshots" for t in threading.enumerate())
    off = CliRunner().invoke(cli, ["serve", str(logdir), "--port", "0", "--snapshot-check", "0"])
    assert off.exit_code == 0 and seen == [True, False], off.output
    out = CliRunner().invoke(cli, ["serve", "--help"]).output
    assert "--snapshot-check" in out and "--snapshot-every" in out


def test_python_dash_m_redline_is_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "redline", "--version"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0 and done.stdout.startswith("redline")


def test_due_counts_from_the_newest_snapshot_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logdir = tmp_path / "log"
    (logdir / "snapshots").mkdir(parents=True)
    assert not statecache.due(logdir, 0)
    assert statecache.due(logdir, 10_000) and not statecache.due(logdir, 9_999)
    (logdir / "snapshots" / "state-000000100000.sealed").write_bytes(b"")
    assert not statecache.due(logdir, 100_000 + 9_999) and statecache.due(logdir, 110_000)
    assert statecache.due(logdir, 100_005, every=5) and not statecache.due(logdir, 100_004, every=5)
    (logdir / "snapshots" / "state-000001000000.sealed").write_bytes(b"")
    assert not statecache.due(logdir, 1_050_000)  # 50,000 new: under 5% of the log (52,500)
    assert statecache.due(logdir, 1_060_000)  # 60,000 new: over 5% (53,000)


def test_the_helper_never_runs_a_redline_planted_in_the_working_directory(tmp_path: Path, loggable: list[Entry],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # `cd LOGDIR && redline serve .`: whoever can write into the server's working directory must not get code run
    # as the operator (with the cache key that seals snapshots), as `python -m redline` would give them.
    logdir = tmp_path / "log"
    _write(logdir, loggable[:20])
    mark = tmp_path / "planted-ran"
    for package in (logdir / "redline", tmp_path / "redline"):
        package.mkdir()
        (package / "__init__.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
        (package / "__main__.py").write_text(f"open({str(mark)!r}, 'w').write('ran')\n")
    monkeypatch.chdir(logdir)
    saver = Snapshotter(Path("."), lambda: 20, interval=0.05, every=1)
    saver.start()
    try:
        _wait_for(lambda: _snapshots(logdir) == ["state-000000000020.sealed"], "the snapshot")
    finally:
        saver.stop()
    assert not mark.exists()


def test_a_snapshot_and_a_state_are_of_the_size_opened_while_another_process_appends(
        tmp_path: Path, loggable: list[Entry]) -> None:
    # A busy server appends while `redline log snapshot` (or `redline state`) works: the reader's state and
    # snapshot are of the size it opened, not an error because the store's latest checkpoint moved on.
    from redline.cli.logdir import open_log

    logdir = tmp_path / "log"
    _write(logdir, loggable[:30])
    reader = open_log(logdir, verify=True)
    try:
        _write(logdir, loggable[30:40])  # another process appends after the reader opened the log
        loaded, path = statecache.snapshot_now(reader, logdir, workers=1)
        assert loaded.state.next_index == 30 and path is not None and path.name == "state-000000000030.sealed"
        _write(logdir, loggable[40:45])
        again = statecache.load_state(reader, logdir, workers=1, save=False)
        assert again.snapshot_size == 30 and again.state.next_index == 30
    finally:
        reader.store.close()
    got = _used(logdir)  # a later reader: the snapshot at 30, then the 15 entries after it
    assert got.snapshot_size == 30 and got.replayed == 15
    _same(got.state, _reference(loggable[:45], logdir))
