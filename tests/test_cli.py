"""Tests for the ``redline`` command line: keys, the log's life cycle, offline verification and exit codes.

Commands run through ``click.testing.CliRunner`` on the real ``cli`` group, and a
few through the installed console script in a real subprocess.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from redline.cli.main import cli
from redline.crypto.keys import SigningKey, VerifierKey, load_signing_key
from redline.engine.view import iso
from redline.log import merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.leaf import MAX_ENTRY_BYTES, encode_leaf
from redline.log.receipt import Receipt
from redline.log.tiles import encode_entry_bundle, parse_entry_bundle

ORIGIN = "redline.test/cli-log"


def run(*args: str | Path, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def ok(*args: str | Path, input: bytes | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, f"redline {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result


def failed(code: int, *args: str | Path, match: str | list[str] = ()) -> Result:
    """Run a command that must fail with exit ``code`` and one ``error:`` line naming each of ``match``."""
    result = run(*args)
    assert result.exit_code == code, f"exited {result.exit_code}, not {code}:\n{result.output}"
    assert "Traceback" not in result.output
    for part in [match] if isinstance(match, str) else match:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"
    return result


def test_base_models_registered_and_shown_by_state(tmp_path: Path) -> None:
    """A base model registered through ``redline submit`` shows in ``redline state`` (table and JSON); a second
    registration of the same weights is refused and writes nothing."""
    d, coord = tmp_path / "log", tmp_path / "coordinator.key"
    ok("log", "init", d, "--origin", ORIGIN)
    ok("key", "new", "coordinator.example", "-o", coord)
    ok("party", "genesis", d, "--key", coord)
    digest = "5e" * 32
    fields = tmp_path / "base.json"
    fields.write_text(json.dumps({"model_name": "Open-9", "model_digest": digest, "training_flop": 7e24,
                                  "source": "published weights"}))
    assert "accepted: entry 1, base-model #2 from coordinator.example" in ok(
        "submit", d, fields, "--key", coord, "--kind", "base-model").stdout
    failed(65, "submit", d, fields, "--key", coord, "--kind", "base-model",
           match=f"field 'model_digest': {digest[:12]} is already registered as base model Open-9 at entry 1")
    shown = ok("state", d).stdout
    assert "registered base models" in shown and "Open-9" in shown and digest[:12] in shown
    as_json = json.loads(ok("state", d, "--json").stdout)
    assert as_json["bases"] == {digest: {"model_name": "Open-9", "training_flop": 7e24,
                                         "source": "published weights", "party": "coordinator.example",
                                         "index": 1}}
    assert as_json["next_index"] == 2


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    """An initialised log directory."""
    d = tmp_path / "log"
    ok("log", "init", d, "--origin", ORIGIN)
    return d


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    out = []
    for i, body in enumerate([b"first entry\n", b"second entry\n", b"\x00\x01 binary \xff", b"fourth"]):
        p = tmp_path / f"e{i}.bin"
        p.write_bytes(body)
        out.append(p)
    return out


# --- keys --------------------------------------------------------------------


def test_key_new_writes_a_private_key_and_its_verifier(tmp_path: Path) -> None:
    out = tmp_path / "keys" / "alice.key"
    result = ok("key", "new", "alice.test", "-o", out)
    vk = VerifierKey.from_string(result.stdout.strip())
    assert vk.name == "alice.test"
    assert mode(out) == 0o600
    assert out.read_text().startswith("PRIVATE+KEY+alice.test+")
    assert load_signing_key(out).verifier() == vk
    pub = out.with_name("alice.key.pub")
    assert VerifierKey.from_string(pub.read_text()) == vk
    assert f"wrote {out}" in result.stderr


def test_key_new_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "alice.key"
    ok("key", "new", "alice.test", "-o", out)
    before = out.read_bytes()
    failed(73, "key", "new", "alice.test", "-o", out, match=[str(out), "refusing to overwrite"])
    assert out.read_bytes() == before
    forced = ok("key", "new", "alice.test", "-o", out, "--force")
    assert out.read_bytes() != before
    assert mode(out) == 0o600
    assert load_signing_key(out).verifier().to_string() == forced.stdout.strip()
    assert out.with_name("alice.key.pub").read_text().strip() == forced.stdout.strip()

    # A stray .pub alone is also not overwritten.
    lone = tmp_path / "bob.key"
    lone.with_name("bob.key.pub").write_text("keep me\n")
    failed(73, "key", "new", "bob.test", "-o", lone, match="bob.key.pub")
    assert not lone.exists()
    assert lone.with_name("bob.key.pub").read_text() == "keep me\n"


def test_key_new_rejects_a_bad_name(tmp_path: Path) -> None:
    failed(66, "key", "new", "has+plus", "-o", tmp_path / "k", match="'+'")
    assert not (tmp_path / "k").exists()


def test_key_show(tmp_path: Path) -> None:
    out = tmp_path / "carol.key"
    vk = VerifierKey.from_string(ok("key", "new", "carol.test", "-o", out).stdout.strip())
    for source in (out, out.with_name("carol.key.pub"), vk.to_string()):
        shown = ok("key", "show", source).stdout
        assert f"verifier:    {vk.to_string()}\n" in shown
        assert "name:        carol.test\n" in shown
        assert f"key ID:      {vk.key_id.hex()}\n" in shown
        assert f"fingerprint: {vk.fingerprint}\n" in shown
        assert "PRIVATE" not in shown
    failed(66, "key", "show", "not-a-key", match="not-a-key")
    out.chmod(0o644)
    failed(66, "key", "show", out, match="0600")


# --- the log, end to end ---------------------------------------------------------


def test_log_init_creates_a_log_and_its_key(logdir: Path) -> None:
    assert mode(logdir / "log.key") == 0o600
    vk = VerifierKey.from_string((logdir / "log.key.pub").read_text())
    assert vk.name == ORIGIN
    cp, _ = open_checkpoint(ok("log", "checkpoint", logdir).stdout_bytes, vk)
    assert (cp.size, cp.root) == (0, merkle.EMPTY_ROOT)
    failed(73, "log", "init", logdir, "--origin", ORIGIN, match="already exists")


def test_log_init_with_an_existing_key(tmp_path: Path) -> None:
    kp = tmp_path / "mine.key"
    ok("key", "new", ORIGIN, "-o", kp)
    failed(65, "log", "init", tmp_path / "a", "--origin", "other.test/log", "--key", kp,
           match=["other.test/log", ORIGIN])
    assert not (tmp_path / "a").exists()
    result = ok("log", "init", tmp_path / "b", "--origin", ORIGIN, "--key", kp)
    assert result.stdout.strip() == load_signing_key(kp).verifier().to_string()
    assert not (tmp_path / "b" / "log.key").exists()
    failed(4, "log", "init", tmp_path / "b", "--origin", ORIGIN, "--key", kp, match="already exists")
    entry = tmp_path / "entry"
    entry.write_bytes(b"signed with --key")
    ok("log", "append", tmp_path / "b", "--key", kp, entry)
    failed(66, "log", "append", tmp_path / "b", entry, match="log.key")  # the default key file is not there
    ok("key", "new", ORIGIN, "-o", tmp_path / "impostor.key")
    failed(3, "log", "append", tmp_path / "b", entry, "--key", tmp_path / "impostor.key", match="not this log's key")
    assert "holds 1 entries" in ok("log", "verify", tmp_path / "b").stdout


def test_log_append_prove_receipt_verify(logdir: Path, files: list[Path], tmp_path: Path) -> None:
    vk = VerifierKey.from_string((logdir / "log.key.pub").read_text())
    receipts = tmp_path / "receipts"
    first = ok("log", "append", logdir, files[0], files[1], "--receipts", receipts)
    cp2, _ = open_checkpoint(first.stdout_bytes, vk)
    assert cp2.size == 2
    assert f"0\t{files[0]}" in first.stderr and f"1\t{files[1]}" in first.stderr
    second = ok("log", "append", logdir, files[2], files[3])
    cp4, _ = open_checkpoint(second.stdout_bytes, vk)
    assert cp4.size == 4
    assert f"3\t{files[3]}" in second.stderr

    assert ok("log", "checkpoint", logdir).stdout_bytes == second.stdout_bytes
    assert ok("log", "checkpoint", logdir, "--size", "2").stdout_bytes == first.stdout_bytes
    failed(4, "log", "checkpoint", logdir, "--size", "3", match="size 3")

    # Receipts written at append time, and on request later, verify offline.
    for i in (0, 1):
        r = Receipt.parse((receipts / f"{i}.tlog-proof").read_bytes())
        assert r.checkpoint == first.stdout_bytes
        out = ok("log", "verify", "--receipt", receipts / f"{i}.tlog-proof", "--entry", files[i],
                 "--log-key", logdir / "log.key.pub")
        assert f"OK: entry is in log {ORIGIN} at size 2" in out.stdout
    rfile = tmp_path / "r2.tlog-proof"
    ok("log", "receipt", logdir, "2", "-o", rfile)
    out = ok("log", "verify", "--receipt", rfile, "--entry", files[2], "--log-key", vk.to_string())
    integrated = iso(int.from_bytes(Receipt.parse(rfile.read_bytes()).extra, "big"))
    assert f"at size 4, integrated at {integrated}" in out.stdout
    old = ok("log", "receipt", logdir, "1", "--size", "2").stdout_bytes
    assert Receipt.parse(old).checkpoint == first.stdout_bytes

    # The wrong entry, a tampered receipt, the wrong key.
    failed(5, "log", "verify", "--receipt", rfile, "--entry", files[3], "--log-key", vk.to_string(),
           match="entry 2")
    bad = tmp_path / "bad.tlog-proof"
    bad.write_bytes(rfile.read_bytes().replace(b"index 2\n", b"index 3\n"))
    failed(5, "log", "verify", "--receipt", bad, "--entry", files[2], "--log-key", vk.to_string(), match="entry 3")
    bad.write_bytes(rfile.read_bytes().replace(b"index 2\n", b"index 02\n"))
    failed(65, "log", "verify", "--receipt", bad, "--entry", files[2], "--log-key", vk.to_string(), match="'02'")
    stranger = SigningKey.generate(ORIGIN).verifier().to_string()
    failed(3, "log", "verify", "--receipt", rfile, "--entry", files[2], "--log-key", stranger, match=ORIGIN)
    failed(2, "log", "verify", "--receipt", rfile, "--entry", files[2])
    failed(2, "log", "verify", logdir, "--receipt", rfile, "--entry", files[2], "--log-key", vk.to_string())

    # Inclusion and consistency proofs printed one base64 hash per line.
    r2 = Receipt.parse(rfile.read_bytes())
    leaf = encode_leaf(int.from_bytes(r2.extra, "big"), files[2].read_bytes())
    proof = [base64.b64decode(line) for line in ok("log", "prove", logdir, "--index", "2").stdout.split()]
    assert tuple(proof) == r2.proof
    merkle.verify_inclusion(2, 4, merkle.leaf_hash(leaf), proof, cp4.root)
    cons = [base64.b64decode(line) for line in ok("log", "prove", logdir, "--consistency", "2").stdout.split()]
    merkle.verify_consistency(2, 4, cp2.root, cp4.root, cons)
    cons3 = ok("log", "prove", logdir, "--consistency", "1", "--size", "3").stdout.split()
    assert len(cons3) >= 1
    failed(2, "log", "prove", logdir)
    failed(2, "log", "prove", logdir, "--index", "0", "--consistency", "1")
    failed(4, "log", "prove", logdir, "--index", "4", match="4")
    failed(4, "log", "receipt", logdir, "9", match="9")

    # The whole log verifies, and so does a checkpoint we hold from earlier.
    held = tmp_path / "held.checkpoint"
    held.write_bytes(first.stdout_bytes)
    out = ok("log", "verify", logdir, "--checkpoint", held, "--log-key", logdir / "log.key.pub")
    key_id = VerifierKey.from_string((logdir / "log.key.pub").read_text()).key_id.hex()
    assert out.stdout == (f"OK: log {ORIGIN} holds 4 entries; every hash and 3 checkpoints verify, signed by the "
                          f"trusted key {key_id}\n")
    failed(3, "log", "verify", logdir, "--log-key", stranger, match="not the trusted key")
    other = tmp_path / "other"
    ok("log", "init", other, "--origin", ORIGIN)
    ok("log", "append", other, files[3], files[2])
    foreign = tmp_path / "foreign.checkpoint"
    foreign.write_bytes(ok("log", "checkpoint", other).stdout_bytes)
    failed(3, "log", "verify", logdir, "--checkpoint", foreign, match=ORIGIN)


def test_log_verify_refuses_a_tampered_database(logdir: Path, files: list[Path]) -> None:
    ok("log", "append", logdir, *files)
    ok("log", "append", logdir, files[0])
    con = sqlite3.connect(logdir / "log.db")
    with con:  # leaf 2's last byte zeroed inside the entry bundle row that holds it
        (first, count, blob), = con.execute("SELECT first, count, leaves FROM leaf_chunks WHERE first <= 2 "
                                            "ORDER BY first DESC LIMIT 1").fetchall()
        leaves = parse_entry_bundle(bytes(blob), count)
        leaves[2 - first] = leaves[2 - first][:-1] + b"\x00"
        con.execute("UPDATE leaf_chunks SET leaves=? WHERE first=?", (encode_entry_bundle(leaves), first))
    con.close()
    result = failed(6, "log", "verify", logdir, match="entry 2")
    assert result.stdout == ""
    # Commands that do not verify the whole store still work; verify is what catches it.
    assert ok("log", "checkpoint", logdir).stdout_bytes


def test_log_verify_refuses_a_database_that_is_not_a_log(tmp_path: Path) -> None:
    d = tmp_path / "junk"
    d.mkdir()
    (d / "log.db").write_bytes(b"this is not SQLite" * 100)
    failed(6, "log", "verify", d, match="not a SQLite database")
    con = sqlite3.connect(d / "empty.db")
    con.execute("CREATE TABLE unrelated (x)")
    con.close()
    os.replace(d / "empty.db", d / "log.db")
    failed(6, "log", "verify", d, match="missing tables")


def test_log_append_of_an_oversize_file_names_its_size(logdir: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x42" * 70_000)
    result = run("log", "append", logdir, big)
    assert result.exit_code != 0
    assert "70000 bytes" in result.stderr and str(MAX_ENTRY_BYTES) in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""
    assert "holds 0 entries" in ok("log", "verify", logdir).stdout
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"\x42" * MAX_ENTRY_BYTES)
    ok("log", "append", logdir, exact)
    assert "holds 1 entries" in ok("log", "verify", logdir).stdout


def test_log_append_of_an_oversize_file_exits_65(logdir: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x42" * 70_000)
    failed(65, "log", "append", logdir, big, match="70000 bytes")


def test_missing_log_dir_gives_a_clear_message(tmp_path: Path, files: list[Path]) -> None:
    missing = tmp_path / "nowhere"
    for args in (["append", missing, files[0]], ["checkpoint", missing], ["prove", missing, "--index", "0"],
                 ["receipt", missing, "0"], ["verify", missing]):
        result = failed(4, "log", *args, match=f"no log in {missing}")
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
    assert "redline log init" in run("log", "append", missing, files[0]).stderr
    assert not missing.exists()
    failed(2, "log", "append", tmp_path)
    failed(2, "log", "verify")


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path + (name,))
        else:
            yield path + (name,), cmd


def test_every_command_and_group_has_help() -> None:
    seen = set()
    for path, cmd in _commands(cli):
        seen.add(" ".join(path))
        assert cmd.help, f"'redline {' '.join(path)}' has no help text"
        for flag in ("--help", "-h"):
            result = ok(*path, flag)
            assert result.stdout.startswith("Usage: ")
            assert cmd.help.split("\n")[0].strip() in " ".join(result.stdout.split())
        if path[:1] in (("key",), ("log",)):
            for param in cmd.params:
                if isinstance(param, click.Option) and param.name not in ("help", "version"):
                    assert param.help, f"option {param.opts} of 'redline {' '.join(path)}' has no help"
    assert {"", "key", "key new", "key show", "log", "log init", "log append", "log checkpoint", "log prove",
            "log receipt", "log verify", "demo"} <= seen


# --- a real process ----------------------------------------------------------------


def _redline() -> list[str]:
    script = Path(sys.executable).with_name("redline")
    return [str(script)] if script.exists() else [sys.executable, "-m", "redline.cli.main"]


def test_console_script_end_to_end(tmp_path: Path) -> None:
    d = tmp_path / "log"

    def sh(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*_redline(), *map(str, args)], input=stdin, capture_output=True, timeout=60)

    init = sh("log", "init", d, "--origin", ORIGIN)
    assert init.returncode == 0, init.stderr
    vk = VerifierKey.from_string(init.stdout.decode().strip())
    appended = sh("log", "append", d, "-", "--receipts", tmp_path / "r", stdin=b"from a pipe")
    assert appended.returncode == 0, appended.stderr
    assert open_checkpoint(appended.stdout, vk)[0].size == 1
    entry = tmp_path / "entry"
    entry.write_bytes(b"from a pipe")
    verified = sh("log", "verify", "--receipt", tmp_path / "r" / "0.tlog-proof", "--entry", entry,
                  "--log-key", vk.to_string())
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(b"OK: entry is in log " + ORIGIN.encode())
    entry.write_bytes(b"not what was logged")
    wrong = sh("log", "verify", "--receipt", tmp_path / "r" / "0.tlog-proof", "--entry", entry,
               "--log-key", vk.to_string())
    assert wrong.returncode == 5 and b"error: receipt for entry 0" in wrong.stderr
    gone = sh("log", "verify", tmp_path / "nowhere")
    assert gone.returncode == 4
    assert gone.stderr.startswith(b"error: no log in") and b"Traceback" not in gone.stderr
    version = sh("--version")
    assert version.returncode == 0 and version.stdout.startswith(b"redline, version ")
