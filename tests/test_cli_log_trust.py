"""Local trust roots for a log directory: what an operator with write access to ``log.db`` can no longer hide.

Each attack from issue #12 is played on a real log through the command line: a log re-signed under another key
of the same origin, an older copy put back (rollback), a signed checkpoint deleted from the store, an entry
removed before an append, and tiles republished from an older copy. Each is refused with its error and exit code;
the honest paths still work, and the commands that show one entry and list the checkpointed sizes are there.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from redline.cli.main import cli
from redline.crypto.keys import SigningKey, save_signing_key
from redline.log.service import Log
from redline.log.sqlite import SqliteStore

ORIGIN = "redline.example/trust"


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def entry(i: int) -> bytes:
    return f'{{"entry":{i}}}'.encode()


def make_log(logdir: Path, key: SigningKey, batches: list[int]) -> Log:
    """A log in ``logdir`` (with its key file) grown in batches of the given sizes."""
    logdir.mkdir(parents=True, exist_ok=True)
    save_signing_key(key, logdir / "log.key")
    log = Log.create(SqliteStore(logdir / "log.db", create=True), key)
    n = 0
    for b in batches:
        log.append([entry(i) for i in range(n, n + b)])
        n += b
    return log


@pytest.fixture()
def key() -> SigningKey:
    return SigningKey("redline.example/trust", bytes(range(32)))


def test_a_log_re_signed_under_another_key_is_refused_with_the_trusted_key(tmp_path: Path, key: SigningKey) -> None:
    honest = make_log(tmp_path / "honest", key, [3, 2])
    pinned = key.verifier().to_string()
    ok = run("log", "verify", tmp_path / "honest", "--log-key", pinned)
    assert ok.exit_code == 0 and "signed by the trusted key" in ok.output
    # The operator drops an entry and re-signs everything with a new key of the same origin name.
    forged_key = SigningKey.generate(ORIGIN)
    make_log(tmp_path / "forged", forged_key, [2, 2])
    refused = run("log", "verify", tmp_path / "forged", "--log-key", pinned)
    assert refused.exit_code == 3, refused.output
    assert "not the trusted key" in refused.output
    # Without a pinned key the check still passes, but it says what it trusted.
    unpinned = run("log", "verify", tmp_path / "forged")
    assert unpinned.exit_code == 0 and "not checked" in unpinned.output and "--log-key" in unpinned.output
    assert honest.size == 5


def test_an_older_copy_is_caught_against_a_checkpoint_you_hold(tmp_path: Path, key: SigningKey) -> None:
    make_log(tmp_path / "old", key, [3])
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    log = Log.open(SqliteStore(tmp_path / "new" / "log.db"), key=key)
    log.append([entry(3), entry(4)])
    held = tmp_path / "held.checkpoint"
    held.write_bytes(log.checkpoint())
    assert run("log", "verify", tmp_path / "new", "--checkpoint", held).exit_code == 0
    rolled_back = run("log", "verify", tmp_path / "old", "--log-key", key.verifier().to_string(),
                      "--checkpoint", held)
    assert rolled_back.exit_code == 65 and "beyond the log's size 3" in rolled_back.output


def test_a_deleted_checkpoint_is_refused(tmp_path: Path, key: SigningKey) -> None:
    make_log(tmp_path / "log", key, [2, 2, 2])
    with sqlite3.connect(tmp_path / "log" / "log.db") as db:
        db.execute("DELETE FROM checkpoints WHERE size=4")
    refused = run("log", "verify", tmp_path / "log", "--log-key", key.verifier().to_string())
    assert refused.exit_code == 6, refused.output
    assert "an earlier signed checkpoint is missing from the store" in refused.output


def test_append_refuses_a_store_that_does_not_verify(tmp_path: Path, key: SigningKey) -> None:
    make_log(tmp_path / "log", key, [4])
    with sqlite3.connect(tmp_path / "log" / "log.db") as db:  # an entry removed behind the log's back
        db.execute("UPDATE leaf_chunks SET count=count-1")
    new = tmp_path / "new-entry"
    new.write_bytes(b"new entry")
    refused = run("log", "append", tmp_path / "log", new)
    assert refused.exit_code == 6, refused.output
    with sqlite3.connect(tmp_path / "log" / "log.db") as db:
        assert db.execute("SELECT max(size) FROM checkpoints").fetchone()[0] == 4  # nothing signed over it


def test_tiles_refuse_to_roll_back_a_published_checkpoint(tmp_path: Path, key: SigningKey) -> None:
    make_log(tmp_path / "old", key, [3])
    shutil.copytree(tmp_path / "old", tmp_path / "new")
    Log.open(SqliteStore(tmp_path / "new" / "log.db"), key=key).append([entry(3)])
    out = tmp_path / "tiles"
    assert run("log", "tiles", tmp_path / "new", out).exit_code == 0
    published = (out / "checkpoint").read_bytes()
    refused = run("log", "tiles", tmp_path / "old", out)
    assert refused.exit_code == 6 and "roll the log back" in refused.output
    assert (out / "checkpoint").read_bytes() == published
    # a log of the same origin under another key cannot publish over it either
    make_log(tmp_path / "other", SigningKey.generate(ORIGIN), [5])
    other = run("log", "tiles", tmp_path / "other", out)
    assert other.exit_code == 6 and "did not sign" in other.output
    assert run("log", "tiles", tmp_path / "new", out).exit_code == 0  # republishing the same log is fine


def test_entry_and_checkpoint_listing(tmp_path: Path, key: SigningKey) -> None:
    log = make_log(tmp_path / "log", key, [2, 3])
    shown = run("log", "entry", tmp_path / "log", 3)
    assert shown.exit_code == 0
    assert '{"entry":3}' in shown.output and "integrated at " in shown.output and "Z (" in shown.output
    raw = run("log", "entry", tmp_path / "log", 3, "--leaf")
    assert raw.stdout_bytes == log.leaf(3)
    listed = run("log", "checkpoints", tmp_path / "log")
    assert [line.split("\t")[:2] for line in listed.output.splitlines()] == [["0", "0"], ["2", "1"], ["5", "2"]]
    missing = run("log", "entry", tmp_path / "log", 9)
    assert missing.exit_code != 0 and "9" in missing.output


# --- bad input: one clean line and a documented exit code, never a traceback ----------------------------------


def test_a_zeroed_page_in_the_store_is_a_corrupt_store(tmp_path: Path, key: SigningKey) -> None:
    make_log(tmp_path / "log", key, [200] * 5)
    db = tmp_path / "log" / "log.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(db.read_bytes())
    middle = pages // 2
    data[middle * page:(middle + 1) * page] = bytes(page)
    db.write_bytes(bytes(data))
    for args in (("log", "verify", tmp_path / "log"), ("state", tmp_path / "log")):
        result = run(*args)
        assert result.exit_code == 6, (args, result.output, result.exception)
        assert "corrupt" in result.output or "altered" in result.output or "does not match" in result.output
        assert "Traceback" not in result.output


def test_numbers_beyond_any_log_are_refused_cleanly(tmp_path: Path, key: SigningKey) -> None:
    log = make_log(tmp_path / "log", key, [3])
    too_big = "9" * 20
    result = run("log", "checkpoint", tmp_path / "log", "--size", too_big)
    assert result.exit_code == 2 and "Traceback" not in result.output
    receipt = log.receipt(1).encode().replace(b"index 1\n", b"index " + b"9" * 5000 + b"\n")
    (tmp_path / "r").write_bytes(receipt)
    (tmp_path / "e").write_bytes(entry(1))
    result = run("log", "verify", "--receipt", tmp_path / "r", "--entry", tmp_path / "e", "--log-key",
                 key.verifier().to_string())
    assert result.exit_code == 65 and "beyond any log's size" in result.output
