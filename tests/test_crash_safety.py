"""Crash safety of the SQLite log: a writer killed with SIGKILL loses nothing it acknowledged.

A child process (``tests/helpers/crash_writer.py``) appends deterministic batches
and reports each acknowledged size and checkpoint; the parent kills it at random
moments, 25 times, and after each kill reopens the log with full verification:
every acknowledged entry is there byte for byte, no partial batch is, and the tree
is consistent with every checkpoint ever handed out.
"""

from __future__ import annotations

import base64
import importlib.util
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from redline.crypto.keys import SigningKey, VerifierKey, save_signing_key
from redline.errors import InconsistentLog, LogExists
from redline.log import merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.service import Log
from redline.log.sqlite import SqliteStore

HELPER = Path(__file__).resolve().parent / "helpers" / "crash_writer.py"
ORIGIN = "redline.test/crash-log"
ROUNDS = 25

_spec = importlib.util.spec_from_file_location("crash_writer", HELPER)
assert _spec is not None and _spec.loader is not None
crash_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crash_writer)
entry_bytes = crash_writer.entry_bytes


class Writer:
    """A running crash_writer child and the complete lines it has written so far."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(HELPER), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines: list[bytes] = []
        self.first = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith(b"\n"):  # a line cut short by the kill was never acknowledged
                self.lines.append(line)
                self.first.set()

    def finish(self, kill: bool) -> tuple[int, bytes]:
        """Kill (or wait for) the child; its exit status and standard error."""
        if kill:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()
        return self.proc.returncode, err

    def acks(self) -> list[tuple[int, bytes]]:
        out = []
        for line in self.lines:
            size, cp = line.split()
            out.append((int(size), base64.b64decode(cp, validate=True)))
        return out


def check_log(db: Path, vk: VerifierKey, acked: dict[int, bytes], last_acked: int) -> int:
    """Reopen and verify the log against everything acknowledged; return its size."""
    store = SqliteStore(db)
    try:
        lg = Log.open(store, trusted=vk, verify=True)
        # Every acknowledged entry survives ...
        assert lg.size >= last_acked
        # ... and no partial batch: the store ends exactly at its latest signed checkpoint.
        latest, _ = open_checkpoint(lg.checkpoint(), vk)
        assert latest.size == lg.size == lg.checkpoint_sizes()[-1]
        assert latest.root == lg.root()
        n = 0
        last_time = 0
        for idx, t, entry in lg.entries():
            assert idx == n
            assert entry == entry_bytes(idx), f"entry {idx} differs from what was appended"
            assert t >= last_time
            last_time = t
            n += 1
        assert n == lg.size
        # The tree is consistent with every checkpoint ever handed out.
        for size, note in acked.items():
            cp, _ = open_checkpoint(note, vk)
            assert cp.size == size
            assert lg.checkpoint(size) == note
            if size:
                merkle.verify_consistency(size, lg.size, cp.root, latest.root, lg.prove_consistency(size))
            else:
                assert cp.root == merkle.EMPTY_ROOT
        return lg.size
    finally:
        store.close()


@pytest.fixture
def log_key(tmp_path: Path) -> tuple[SigningKey, Path]:
    key = SigningKey.generate(ORIGIN)
    path = tmp_path / "log.key"
    save_signing_key(key, path)
    return key, path


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path, log_key) -> None:
    key, key_file = log_key
    vk = key.verifier()
    db = tmp_path / "log.db"
    rng = random.Random(0x5EED)
    acked: dict[int, bytes] = {}
    last_acked = 0
    checks = 0
    kills_mid_append = 0
    found: int | None = None  # the size the last check found, which the next writer must find too
    deadline = time.monotonic() + 60
    for round_ in range(ROUNDS):
        assert time.monotonic() < deadline, f"only {round_} rounds in 60 s"
        w = Writer(str(db), str(key_file), str(round_))
        if rng.random() < 0.2:
            # Sometimes kill during start-up, opening or creating the log.
            time.sleep(rng.uniform(0.0, 0.15))
        elif not w.first.wait(timeout=20):
            pytest.fail(f"the writer did not start:\n{w.finish(kill=True)[1].decode()}")
        else:
            time.sleep(rng.uniform(0.005, 0.2))
        code, err = w.finish(kill=True)
        assert code == -signal.SIGKILL, f"writer exited with {code} before the kill:\n{err.decode()}"
        acks = w.acks()
        if acks and found is not None:
            assert acks[0][0] == found, "the restarted writer did not find the log the last check found"
        for size, note in acks:
            assert size >= last_acked, "an acknowledged size went backwards"
            assert acked.setdefault(size, note) == note, f"two different checkpoints acknowledged at size {size}"
            last_acked = size
        kills_mid_append += len(acks) > 1
        if not acked:
            continue  # killed before the log first existed: nothing was promised yet
        found = check_log(db, vk, acked, last_acked)
        checks += 1
    assert checks >= ROUNDS - 3
    assert kills_mid_append >= ROUNDS // 2
    assert last_acked > 0 and len(acked) > ROUNDS
    # One more writer picks the log up where the last one was killed.
    w = Writer(str(db), str(key_file), "final")
    assert w.first.wait(timeout=20)
    time.sleep(0.05)
    code, err = w.finish(kill=True)
    assert code == -signal.SIGKILL, err.decode()
    final = w.acks()
    assert final[0][0] == found
    acked.update(final)
    check_log(db, vk, acked, final[-1][0])


@pytest.mark.parametrize("point", ["create", "init-commit"])
def test_crash_while_creating_leaves_a_log_that_can_be_created(tmp_path: Path, log_key, point: str) -> None:
    key, key_file = log_key
    db = tmp_path / "log.db"
    code, err = Writer("--die-at", point, str(db), str(key_file)).finish(kill=False)
    assert code == -signal.SIGKILL, err.decode()
    assert db.exists()
    with pytest.raises(InconsistentLog, match="metadata|missing tables"):
        Log.open(SqliteStore(db))
    # Creating again succeeds: the crashed creation promised nothing.
    lg = crash_writer.open_or_create(db, key_file)
    assert (lg.size, lg.checkpoint_sizes()) == (0, [0])
    lg.append([entry_bytes(0)])
    lg.store.close()
    with pytest.raises(LogExists):
        SqliteStore(db, create=True)
    again = Log.open(SqliteStore(db), trusted=key.verifier())
    assert (again.size, again.entry(0)[1]) == (1, entry_bytes(0))


def test_crash_just_before_commit_leaves_no_trace_of_the_batch(tmp_path: Path, log_key) -> None:
    key, key_file = log_key
    db = tmp_path / "log.db"
    w = Writer("--die-at", "append-commit", str(db), str(key_file))
    code, err = w.finish(kill=False)
    assert code == -signal.SIGKILL, err.decode()
    (size, note), = w.acks()
    assert size == 3
    assert check_log(db, key.verifier(), {size: note}, size) == 3
    lg = Log.open(SqliteStore(db), key=key)
    assert lg.checkpoint_sizes() == [0, 3]
    lg.append([entry_bytes(3)])
    assert lg.size == 4
