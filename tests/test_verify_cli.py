"""``redline verify run``: the seed from the log, the declaration re-checked, a signed report submitted."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from verify_helpers import MODEL, tamper_checkpoint

from redline.cli.main import cli
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey, load_signing_key, save_signing_key
from redline.engine import Entry, replay
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.statements import open_envelope
from redline.transcript.tinygpt import TrainConfig, train
from redline.verify import VerificationPolicy, seed_from_checkpoint

ORIGIN = "redline.test/verify-log"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"redline {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("run") / "t"
    train(TrainConfig(steps=40, seed=4, batch_size=2, model=MODEL, party="lab-a", run_id="r1"), path,
          checkpoint_every=10)
    torch.set_num_threads(before)
    return path


@pytest.fixture
def world(tmp_path: Path, transcript: Path) -> dict[str, Path]:
    """A log with a coordinator, lab ``lab-a`` (run r1 started and declared) and auditor ``audit-a``."""
    d = tmp_path / "log"
    keys = {}
    for name in ("coordinator", "lab-a", "audit-a"):
        keys[name] = tmp_path / f"{name}.key"
        save_signing_key(SigningKey.generate(name), keys[name])
    ok("log", "init", d, "--origin", ORIGIN)
    ok("party", "genesis", d, "--key", keys["coordinator"])
    for name, role in (("lab-a", "lab"), ("audit-a", "auditor")):
        ok("party", "admit", d, load_signing_key(keys[name]).verifier().to_string(), "--role", role,
           "--display-name", name, "--jurisdiction", "EU", "--key", keys["coordinator"])
    ok("run", "start", transcript, "--key", keys["lab-a"], "--model-name", "tiny-1", "--declared-flop", "1e12",
       "--submit", d)
    ok("run", "declare", transcript, "--key", keys["lab-a"], "--run-id", "r1", "--model-name", "tiny-1",
       "--submit", d)
    return {"log": d, **keys}


def _state(logdir: Path):
    log = Log.open(SqliteStore(logdir / "log.db"))
    return log, replay(Entry(i, t, e) for i, t, e in log.entries())


def test_verify_with_the_log_submits_a_passing_report(world: dict[str, Path], transcript: Path) -> None:
    result = ok("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log", world["log"],
                "--submit", "--workers", "1")
    assert "PASS" in result.output and "verification fraction" in result.output and "compute fraction" in result.output
    log, state = _state(world["log"])
    run_ = next(r for r in state.runs.values() if r.run_id == "r1")
    assert run_.verified == "pass"
    _, entry = log.entry(log.size - 1)
    pred, _ = open_envelope(Envelope.from_json(entry), [state.parties["audit-a"].key])
    # the seed is the SHA-256 of the first signed checkpoint containing the RunFinish
    finish_index = max(i for i in run_.indexes if i < log.size - 1)
    size = min(s for s in log.checkpoint_sizes() if s > finish_index)
    # one range of steps, 1..40, first committed to by the RunProgress (the RunFinish re-declares those steps
    # and cannot re-roll them): its seed is the SHA-256 of the first signed checkpoint after the RunProgress
    progress_index = min(i for i in run_.indexes[1:])
    progress_size = min(s for s in log.checkpoint_sizes() if s > progress_index)
    [r] = pred.seed_ranges
    assert (r.first_step, r.last_step, r.declaration_index, r.checkpoint_size) == (1, 40, progress_index,
                                                                                   progress_size)
    assert r.seed == seed_from_checkpoint(log.checkpoint(progress_size)).hex()
    assert size >= progress_size
    assert {c.name for c in pred.checks} >= {"declaration", "identity", "start", "commitments", "code", "init",
                                             "data", "segments", "compute"}
    assert pred.declaration_index == finish_index  # the report names the RunFinish it verified
    # 40 steps: the 5 % budget keeps the sample at its floor, 7 step draws (+ the 2 largest updates)
    assert 1 <= pred.segments_checked <= 4 and pred.p_detect == pytest.approx(1 - 0.9 ** 7)
    segments = next(c for c in pred.checks if c.name == "segments")
    assert "compute budget allows 0 step draws" in segments.detail and "7 steps drawn" in segments.detail
    assert pred.policy_digest == VerificationPolicy().digest()


def test_a_key_rotated_after_the_declaration_leaves_it_verifiable(tmp_path: Path, world: dict[str, Path],
                                                                   transcript: Path) -> None:
    old = load_signing_key(world["lab-a"]).verifier()
    new = SigningKey.generate("lab-a")
    rotation = tmp_path / "rotation.json"
    rotation.write_text(json.dumps({"new_verifier_key": new.verifier().to_string()}))
    ok("submit", world["log"], rotation, "--key", world["lab-a"], "--kind", "key-rotation")
    _, state = _state(world["log"])
    assert state.parties["lab-a"].key.fingerprint == new.verifier().fingerprint  # the declaration's key is retired
    result = ok("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log", world["log"],
                "--json", "--out", tmp_path / "report.json", "--workers", "1")
    report = json.loads(result.stdout)
    declaration = next(c for c in report["checks"] if c["name"] == "declaration")
    assert declaration["passed"] and old.to_string()[:40] in declaration["detail"]
    assert report["verdict"] == "pass"


def test_verify_json_without_the_log_needs_a_seed(tmp_path: Path, world: dict[str, Path], transcript: Path) -> None:
    assert run("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"]).exit_code == 2
    out = tmp_path / "report.json"
    result = ok("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--run-party", "lab-a",
                "--seed", hashlib.sha256(b"s").hexdigest(), "--json", "--out", out, "--workers", "1")
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "pass" and doc["sample"]["ranges"][0]["seed"] == hashlib.sha256(b"s").hexdigest()
    env = Envelope.from_json(out.read_bytes().strip())
    pred, _ = open_envelope(env, [_state(world["log"])[1].parties["audit-a"].key])
    assert pred.verdict == "pass" and pred.seq == 1


def test_an_auditor_without_the_pinned_code_gets_inconclusive_and_no_violation(
        world: dict[str, Path], transcript: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from redline.errors import UnregisteredFactory
    from redline.transcript import factories

    def unregistered(field, ref):  # noqa: ANN001, ANN202 - as on a machine without the lab's package
        raise UnregisteredFactory(f"no factory {ref.name!r} is registered here", field=field, name=ref.name,
                                  group="redline.models")
    monkeypatch.setattr(factories, "load", unregistered)
    result = run("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log", world["log"],
                 "--submit", "--workers", "1")
    assert result.exit_code == 8, result.output
    assert "INCONCLUSIVE" in result.output and "is registered here" in result.output
    _, state = _state(world["log"])
    run_ = next(r for r in state.runs.values() if r.run_id == "r1")
    assert run_.verified == "inconclusive" and not state.violations


def test_verify_a_forged_transcript_fails_with_the_step(tmp_path: Path, world: dict[str, Path],
                                                        transcript: Path) -> None:
    forged = tmp_path / "forged"
    shutil.copytree(transcript, forged)
    tamper_checkpoint(forged, 40, 1e-3)  # the last checkpoint: the commitments no longer match the RunFinish
    result = run("verify", "run", "r1", "--transcript", forged, "--key", world["audit-a"], "--log", world["log"],
                 "--submit", "--workers", "1", "--budget", "1")  # no cap: every segment, the forged last one too
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "first bad step: 40" in result.output
    _, state = _state(world["log"])
    assert next(r for r in state.runs.values() if r.run_id == "r1").verified == "fail"


def test_an_auditor_on_another_cpu_gets_inconclusive_never_fail(world: dict[str, Path], transcript: Path) -> None:
    """The same honest run re-executed with other CPU kernels (ATen's DEFAULT instead of this machine's AVX2 or
    AVX-512) differs in its last bits: the verifier cannot decide there, so the verdict is inconclusive, the
    exit status 8, and the engine raises no violation."""
    import os
    import subprocess
    import sys

    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("this machine already runs ATen's DEFAULT kernels: no other capability to compare with")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    result = subprocess.run([str(Path(sys.executable).parent / "redline"), "verify", "run", "r1", "--transcript",
                             str(transcript), "--key", str(world["audit-a"]), "--log", str(world["log"]), "--submit",
                             "--workers", "1", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 8), result.stderr  # never 1: an honest run is never failed
    doc = json.loads(result.stdout)
    assert doc["verdict"] == ("inconclusive" if result.returncode == 8 else "pass")
    if result.returncode == 8:
        undecided = [c for c in doc["checks"] if c["inconclusive"]]
        assert undecided and all("cpu_capability" in c["detail"] for c in undecided)
    _, state = _state(world["log"])
    assert next(r for r in state.runs.values() if r.run_id == "r1").verified == doc["verdict"]
    assert not state.violations


def test_verify_with_the_log_refuses_a_log_under_another_key(world: dict[str, Path], transcript: Path) -> None:
    from redline.crypto.keys import SigningKey

    origin = Log.open(SqliteStore(world["log"] / "log.db")).origin
    other = SigningKey.generate(origin).verifier().to_string()  # same origin name, another key: a re-keyed log
    refused = run("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log", world["log"],
                  "--log-key", other, "--workers", "1")
    assert refused.exit_code == 3 and "not the trusted key" in refused.output
    usage = run("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log-key", other,
                "--seed", "00")
    assert usage.exit_code == 2 and "--log-key needs --log" in usage.output


def _stored_note(logdir: Path, size: int) -> bytes:
    db = sqlite3.connect(logdir / "log.db")
    try:
        return bytes(db.execute("SELECT note FROM checkpoints WHERE size = ?", (size,)).fetchone()[0])
    finally:
        db.close()


def _store_note(logdir: Path, size: int, note: bytes) -> None:
    db = sqlite3.connect(logdir / "log.db")
    try:
        db.execute("UPDATE checkpoints SET note = ? WHERE size = ?", (note, size))
        db.commit()
    finally:
        db.close()


def _sampled(world: dict[str, Path], transcript: Path) -> tuple[list[str], str]:
    result = ok("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log", world["log"],
                "--json", "--workers", "1", "--budget", "1", "--target-p-detect", "0.5")
    got = json.loads(result.stdout)
    return [r["seed"] for r in got["sample"]["ranges"]], json.dumps(got["sample"], sort_keys=True)


def test_nobody_without_the_log_key_can_re_roll_the_seed(world: dict[str, Path], transcript: Path) -> None:
    # The seed comes from the first signed checkpoint after the declaration. Whoever can write the store (not
    # holding the log key) could add signature lines of a key nobody knows (readers skip them), or re-encode the
    # signature's base64, and so try seeds until the sample misses what the lab faked. Only the note as the log
    # signed it counts, and a note the log did not sign is refused.
    from redline.crypto.encoding import b64encode
    from redline.crypto.note import add_signatures, parse_note
    from redline.errors import BadSignature
    from redline.verify import seed_note

    seeds, sample = _sampled(world, transcript)
    log, state = _state(world["log"])
    run_ = next(r for r in state.runs.values() if r.run_id == "r1")
    size = min(s for s in log.checkpoint_sizes() if s > min(run_.indexes[1:]))
    honest = _stored_note(world["log"], size)
    assert seed_note(honest, log.verifier, size) == honest  # the log's own note: its exact bytes, as before
    assert seeds == [seed_from_checkpoint(honest).hex()]
    log.store.close()

    grinder = SigningKey.generate("grind.example")
    from redline.crypto.note import sign_note

    extra = parse_note(sign_note(parse_note(honest).text, grinder)).signatures
    tried = [add_signatures(honest, *extra)]  # a line of a key nobody knows, after the log's
    text, sig = parse_note(honest).text, parse_note(honest).signatures[0]
    raw = b64encode(sig.key_id + sig.signature)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert raw.endswith("=") and not raw.endswith("==")  # 68 bytes: the last character holds 2 unused bits, zero
    loose = raw[:-2] + alphabet[alphabet.index(raw[-2]) | 1] + "="  # one set: the same bytes to a lenient reader
    tried.append((text + "\n" + f"\u2014 {sig.name} {loose}\n").encode())
    for edited in tried:
        _store_note(world["log"], size, edited)
        assert _sampled(world, transcript) == (seeds, sample)
    forged = bytearray(honest)
    forged[0] ^= 1  # the checkpoint's text changed under the log's signature line (a letter of its origin)
    _store_note(world["log"], size, bytes(forged))
    refused = run("verify", "run", "r1", "--transcript", transcript, "--key", world["audit-a"], "--log",
                  world["log"], "--json", "--workers", "1")
    assert refused.exit_code != 0
    with pytest.raises(BadSignature):
        seed_note(bytes(forged), log.verifier)
