"""``redline sign``: a statement signed offline, with no log, as the envelope ``redline submit`` takes.

These need no log and no engine: the envelope is checked by opening it with the
signer's verifier key. The round trip through a real log is in
``tests/test_statements_docs.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from redline.cli.main import cli
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey, save_signing_key
from redline.statements import PREDICATE_KINDS, PauseAcknowledgement, ResumeProposal, open_envelope

ORIGIN = "redline.example/log"


def run(*args: str | Path, input: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def failed(code: int, *args: str | Path, match: str | list[str] = (), input: bytes | None = None) -> Result:
    """Run a command that must exit ``code`` with an ``error:`` line naming each of ``match``."""
    result = run(*args, input=input)
    assert result.exit_code == code, f"exited {result.exit_code}, not {code}:\n{result.output}"
    assert "Traceback" not in result.output
    for part in [match] if isinstance(match, str) else match:
        assert part in result.stderr, f"{part!r} not in {result.stderr!r}"
    return result


@pytest.fixture
def lab(tmp_path: Path) -> tuple[SigningKey, Path]:
    """The key of party ``lab-a`` and its private key file."""
    k = SigningKey("lab-a", bytes(range(32)))
    path = tmp_path / "lab-a.key"
    save_signing_key(k, path)
    return k, path


def fields_file(tmp_path: Path, fields: dict, name: str = "fields.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(fields))
    return path


def sign_args(fields: Path, key: Path, *, kind: str = "resume-proposal", seq: int = 4, out: Path | None = None
              ) -> list[str | Path]:
    args: list[str | Path] = ["sign", fields, "--kind", kind, "--key", key, "--seq", str(seq), "--log-origin", ORIGIN]
    return args + (["-o", out] if out is not None else [])


PROPOSAL = {"proposal_id": "resume-1", "reason": "Safeguards audited."}


def test_sign_writes_an_envelope_of_the_fields_for_the_key_seq_and_log(tmp_path: Path, lab) -> None:
    k, kp = lab
    out = tmp_path / "env.json"
    result = run(*sign_args(fields_file(tmp_path, PROPOSAL), kp, out=out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stderr and result.stdout == ""
    data = out.read_bytes()
    env = Envelope.from_json(data)
    assert env.to_json() == data  # exactly the canonical bytes a log stores, no trailing newline
    pred, signer = open_envelope(env, [k.verifier()])
    assert isinstance(pred, ResumeProposal) and signer.name == "lab-a"
    assert (pred.party, pred.seq, pred.log, pred.proposal_id, pred.reason) == \
        ("lab-a", 4, ORIGIN, "resume-1", "Safeguards audited.")
    assert not list(tmp_path.glob("*.tmp"))


def test_sign_to_stdout_and_from_stdin(tmp_path: Path, lab) -> None:
    k, kp = lab
    result = run("sign", "-", "--kind", "pause-ack", "--key", kp, "--seq", "9", "--log-origin", ORIGIN,
                 input=b'{"pause_id": "19"}')
    assert result.exit_code == 0, result.output
    pred, _ = open_envelope(Envelope.from_json(result.stdout_bytes), [k.verifier()])
    assert isinstance(pred, PauseAcknowledgement) and (pred.seq, pred.pause_id) == (9, "19")
    assert "signed pause-ack #9 from lab-a" in result.stderr


def test_sign_accepts_party_seq_and_log_that_agree_and_refuses_ones_that_do_not(tmp_path: Path, lab) -> None:
    _, kp = lab
    same = fields_file(tmp_path, {**PROPOSAL, "party": "lab-a", "seq": 4, "log": ORIGIN}, "same.json")
    assert run(*sign_args(same, kp)).exit_code == 0
    for name, value, source in (("party", "lab-b", "the key"), ("seq", 5, "--seq"), ("log", "other.example/log",
                                                                                     "--log-origin")):
        f = fields_file(tmp_path, {**PROPOSAL, name: value}, f"{name}.json")
        failed(65, *sign_args(f, kp), match=[f"field '{name}'", source])


def test_sign_refuses_an_unknown_kind_listing_the_kinds(tmp_path: Path, lab) -> None:
    _, kp = lab
    result = failed(65, *sign_args(fields_file(tmp_path, PROPOSAL), kp, kind="resume"),
                    match=["unknown statement kind 'resume'", "resume-proposal"])
    assert all(kind in result.stderr for kind in PREDICATE_KINDS)


def test_sign_names_a_bad_field(tmp_path: Path, lab) -> None:
    _, kp = lab
    out = tmp_path / "env.json"
    failed(65, *sign_args(fields_file(tmp_path, {**PROPOSAL, "reason": ""}), kp, out=out), match="field 'reason'")
    failed(65, *sign_args(fields_file(tmp_path, {"proposal_id": "r"}), kp, out=out),
           match=["field 'reason'", "missing"])
    failed(65, *sign_args(fields_file(tmp_path, {**PROPOSAL, "colour": "red"}), kp, out=out),
           match=["field 'colour'", "unknown field"])
    failed(65, *sign_args(fields_file(tmp_path, {"chip_model": "H100"}), kp, kind="compute-inventory", out=out),
           match="field 'as_of'")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"proposal_id": "r", "proposal_id": "s"}')
    failed(65, *sign_args(bad_json, kp, out=out), match="bad.json")
    failed(65, *sign_args(fields_file(tmp_path, ["not", "an", "object"]), kp, out=out), match="JSON object")
    assert not out.exists()


def test_sign_refuses_to_overwrite(tmp_path: Path, lab) -> None:
    _, kp = lab
    out = tmp_path / "env.json"
    out.write_bytes(b"precious")
    failed(73, *sign_args(fields_file(tmp_path, PROPOSAL), kp, out=out), match=[str(out), "refusing to overwrite"])
    assert out.read_bytes() == b"precious"


def test_sign_needs_seq_and_log_origin(tmp_path: Path, lab) -> None:
    _, kp = lab
    f = fields_file(tmp_path, PROPOSAL)
    assert run("sign", f, "--kind", "resume-proposal", "--key", kp, "--log-origin", ORIGIN).exit_code == 2
    assert run("sign", f, "--kind", "resume-proposal", "--key", kp, "--seq", "1").exit_code == 2
    assert run("sign", f, "--kind", "resume-proposal", "--key", kp, "--seq", "0", "--log-origin", ORIGIN
               ).exit_code == 2
    failed(65, *sign_args(f, kp)[:-1], "", match="field 'log'")


def test_sign_help_names_every_kind_and_every_option() -> None:
    result = run("sign", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for kind in PREDICATE_KINDS:
        assert kind in "".join(text.split()), kind  # help may wrap a kind at its hyphen
    for option in ("--kind", "--key", "--seq", "--log-origin", "--out"):
        assert option in text
    assert "offline" in text
