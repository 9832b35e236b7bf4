"""Read what the specs allow, write one canonical form (issue #16).

DSSE envelopes are submitted in every shape the DSSE spec allows (``keyid`` missing
or empty, unknown fields, URL-safe or unpadded base64) and in-toto statements with
unknown top-level fields; each goes through a real registry, is accepted, and the log
then holds redline's canonical envelope (not the bytes submitted), which a replay
reads strictly and to the registry's state. What must stay refused stays refused.
Signed notes are read as c2sp.org/signed-note and Go's ``note.Open`` read them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenario_kit import Clock, World, forge_envelope, inventory_fields, key, make_world

from redline.crypto.canonical import canonical_json
from redline.crypto.dsse import Envelope, EnvelopeSignature, pae, sign_envelope
from redline.crypto.keys import SigningKey
from redline.crypto.note import EM_DASH, open_note, parse_note, sign_note
from redline.engine import admit, replay
from redline.errors import (
    InvalidStatement,
    MalformedInput,
    NotAuthorized,
    RedlineError,
    UnknownParty,
)
from redline.log.checkpoint import open_checkpoint
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.registry import Registry, Submitted, canonical_envelope
from redline.statements import ComputeInventory, Genesis, sign_predicate, to_statement


@pytest.fixture()
def world(tmp_path: Path) -> World:
    """Two labs admitted."""
    return make_world(tmp_path, [("lab-a", "lab"), ("lab-b", "lab")])


def _canonical(world: World, party: str = "lab-a") -> tuple[Envelope, dict[str, Any]]:
    """The canonical signed envelope of ``party``'s next inventory, and its JSON object (to reshape)."""
    env = sign_predicate(world.pred(party, ComputeInventory, **inventory_fields(100)), world.keys[party])
    return env, json.loads(env.to_json())


def _b64url(data: bytes, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if pad else text.rstrip("=")


def _sig(env: Envelope, i: int = 0) -> bytes:
    return env.signatures[i].sig


_RESHAPES: dict[str, Callable[[Envelope, dict[str, Any]], dict[str, Any]]] = {
    "keyid missing": lambda e, o: {**o, "signatures": [{"sig": o["signatures"][0]["sig"]}]},
    "keyid empty": lambda e, o: {**o, "signatures": [{"keyid": "", "sig": o["signatures"][0]["sig"]}]},
    "keyid foreign": lambda e, o: {**o, "signatures": [{"keyid": "SHA256:cosign-style",
                                                         "sig": o["signatures"][0]["sig"]}]},
    "unknown top-level field": lambda e, o: {**o, "comment": {"by": "someone"}},
    "unknown signature field": lambda e, o: {**o, "signatures": [{**o["signatures"][0], "cert": "-----BEGIN..."}]},
    "url-safe base64": lambda e, o: {**o, "payload": _b64url(e.payload), "signatures": [
        {"keyid": o["signatures"][0]["keyid"], "sig": _b64url(_sig(e))}]},
    "unpadded base64": lambda e, o: {**o, "payload": base64.b64encode(e.payload).decode().rstrip("="),
                                     "signatures": [{"sig": base64.b64encode(_sig(e)).decode().rstrip("=")}]},
    "url-safe unpadded, keyid missing, whitespace": lambda e, o: {"signatures": [{"sig": _b64url(_sig(e), False)}],
                                                                  "payloadType": o["payloadType"],
                                                                  "payload": _b64url(e.payload, False)},
}


def _forge(statement: dict[str, Any], signer: SigningKey) -> bytes:
    """Sign any statement object, unknown fields and all (``forge_envelope`` signs only what redline writes)."""
    return sign_envelope(canonical_json(statement), signer).to_json()


def _pretty(obj: dict[str, Any], name: str) -> bytes:
    return json.dumps(obj, indent=2 if "whitespace" in name else None).encode()


def _accepted(world: World, submitted: bytes, canonical: Envelope) -> Submitted:
    """Submit; the log must hold ``canonical.to_json()`` (not what was submitted), and a replay must agree."""
    done = world.registry.submit(submitted)
    logged = world.log.entries(done.index)
    _, _, data = next(iter(logged))
    assert data == canonical.to_json() == done.envelope
    assert data != submitted
    assert Envelope.from_json(data) == canonical  # replay's strict reader takes the logged bytes
    assert replay(world.entries()).digest() == world.state.digest()
    return done


@pytest.mark.parametrize("name", list(_RESHAPES))
def test_spec_valid_envelope_is_accepted_and_logged_canonically(world: World, name: str) -> None:
    env, obj = _canonical(world)
    submitted = _pretty(_RESHAPES[name](env, obj), name)
    if name in ("keyid empty", "keyid foreign"):  # strict JSON, but the engine finds no signer by keyid
        with pytest.raises(UnknownParty):
            admit(world.state, submitted)
    else:
        with pytest.raises(MalformedInput):
            Envelope.from_json(submitted)  # what replay reads: strict
    done = _accepted(world, submitted, env)
    assert done.predicate.party == "lab-a" and world.state.parties["lab-a"].last_seq == 1


def test_batch_submission_logs_canonical_bytes(world: World) -> None:
    env1, obj1 = _canonical(world)
    env2 = sign_predicate(world.pred("lab-a", ComputeInventory, seq=2, **inventory_fields(7)), world.keys["lab-a"])
    obj2 = json.loads(env2.to_json())
    batch = [_pretty(_RESHAPES["keyid missing"](env1, obj1), ""),
             _pretty(_RESHAPES["url-safe base64"](env2, obj2), "")]
    results = world.registry.submit_many(batch)
    assert all(isinstance(r, Submitted) for r in results), results
    logged = [e for _, _, e in world.log.entries(results[0].index)]  # type: ignore[union-attr]
    assert logged == [env1.to_json(), env2.to_json()]
    assert replay(world.entries()).digest() == world.state.digest()


def test_genesis_without_keyid(tmp_path: Path) -> None:
    origin = "lenient.example/log"
    log = Log.create(SqliteStore(tmp_path / "g.db", create=True), key(origin), clock=Clock())
    coordinator = key("coordinator")
    pred = Genesis(party="coordinator", seq=1, log=origin, origin=origin, coordinator="coordinator",
                   coordinator_key=coordinator.verifier().to_string())
    env = sign_predicate(pred, coordinator)
    obj = json.loads(env.to_json())
    reg = Registry(log)
    reg.submit(json.dumps({**obj, "signatures": [{"sig": obj["signatures"][0]["sig"]}]}).encode())
    assert [e for _, _, e in log.entries()] == [env.to_json()]
    assert replay(_entries(log)).digest() == reg.state.digest()


def _entries(log: Log) -> list:
    from redline.engine import Entry
    return [Entry(i, t, e) for i, t, e in log.entries()]


def test_two_signatures_one_by_the_party(world: World) -> None:
    env, obj = _canonical(world)
    stranger = key("stranger")
    other = stranger.sign(pae(env.payload_type, env.payload))
    b64 = base64.b64encode
    submitted = json.dumps({**obj, "signatures": [{"sig": b64(other).decode()}, {"sig": b64(_sig(env)).decode()}]})
    want = Envelope(env.payload, env.payload_type,
                    (EnvelopeSignature("", other), EnvelopeSignature(env.signatures[0].keyid, _sig(env))))
    _accepted(world, submitted.encode(), want)


def test_statement_with_unknown_fields_is_accepted(world: World) -> None:
    statement = to_statement(world.pred("lab-a", ComputeInventory, **inventory_fields(100)))
    statement["zz_note"] = {"tool": "other-signer", "v": 2}  # in-toto: consumers ignore unknown fields
    statement["a_first"] = "sorts before _type"
    submitted = _forge(statement, world.keys["lab-a"])
    env = Envelope.from_json(submitted)
    assert env.payload == canonical_json(statement)
    done = world.registry.submit(submitted)
    _, _, logged = next(iter(world.log.entries(done.index)))
    assert logged == submitted == done.envelope  # already canonical: logged as it came, payload untouched
    assert replay(world.entries()).digest() == world.state.digest()
    # with its keyid missing too: the payload is still the bytes signed
    statement2 = {**to_statement(world.pred("lab-a", ComputeInventory, **inventory_fields(5))), "extra": [1]}
    env2 = Envelope.from_json(_forge(statement2, world.keys["lab-a"]))
    obj2 = json.loads(env2.to_json())
    _accepted(world, _pretty(_RESHAPES["keyid missing"](env2, obj2), ""), env2)


# --- still refused ------------------------------------------------------------------------------


def refused(world: World, envelope: bytes, error: type[RedlineError], pattern: str) -> None:
    before = world.snapshot()
    with pytest.raises(RedlineError) as info:
        world.registry.submit(envelope)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert re.search(pattern, str(info.value)), str(info.value)
    assert world.snapshot() == before
    results = world.registry.submit_many([envelope])
    assert type(results[0]) is error and world.snapshot() == before


def test_wrong_key_with_keyid_missing(world: World) -> None:
    env, obj = _canonical(world)
    forged = sign_envelope(env.payload, world.keys["lab-b"])  # lab-b signs lab-a's statement
    submitted = json.dumps({**obj, "signatures": [{"sig": base64.b64encode(_sig(forged)).decode()}]}).encode()
    refused(world, submitted, UnknownParty, r"no signature verifies under the current key of 'lab-a'")
    # A key nobody admitted, keyid empty: the same.
    rogue = sign_envelope(env.payload, SigningKey("lab-a", bytes(range(32))))
    submitted = json.dumps({**obj, "signatures": [{"keyid": "", "sig": base64.b64encode(_sig(rogue)).decode()}]})
    refused(world, submitted.encode(), UnknownParty, r"no keyid names one \(key IDs: ''\)")


def test_two_signatures_neither_by_the_party(world: World) -> None:
    env, obj = _canonical(world)
    message = pae(env.payload_type, env.payload)
    sigs = [{"sig": base64.b64encode(k.sign(message)).decode()} for k in (key("x"), key("y"))]
    refused(world, json.dumps({**obj, "signatures": sigs}).encode(), UnknownParty, r"the party it names")


def test_signed_by_another_party_with_its_keyid(world: World) -> None:
    # keyid names lab-b, which signed: strict rules apply, lab-b cannot speak for lab-a
    env, _ = _canonical(world)
    forged = sign_envelope(env.payload, world.keys["lab-b"])
    refused(world, forged.to_json(), NotAuthorized, r"signed by 'lab-b' but speaks for 'lab-a'")


def test_keyid_missing_and_party_unknown(world: World) -> None:
    statement = to_statement(world.pred("lab-a", ComputeInventory, **inventory_fields(1)))
    statement["predicate"]["party"] = "nobody"
    obj = json.loads(forge_envelope(statement, key("nobody")))
    del obj["signatures"][0]["keyid"]
    refused(world, json.dumps(obj).encode(), UnknownParty, r"not signed by the key of any admitted party")


def test_statement_payload_not_canonical(world: World) -> None:
    statement = {**to_statement(world.pred("lab-a", ComputeInventory, **inventory_fields(1))), "extra": 1}
    payload = json.dumps(statement, indent=1).encode()  # signed, but not RFC 8785
    env = sign_envelope(payload, world.keys["lab-a"])
    obj = json.loads(env.to_json())
    del obj["signatures"][0]["keyid"]
    refused(world, json.dumps(obj).encode(), MalformedInput, r"not in RFC 8785 canonical form")


def test_unknown_predicate_field_refused(world: World) -> None:
    statement = to_statement(world.pred("lab-a", ComputeInventory, **inventory_fields(1)))
    statement["predicate"]["nickname"] = "x"
    obj = json.loads(forge_envelope(statement, world.keys["lab-a"]))
    obj["signatures"][0]["keyid"] = ""
    refused(world, json.dumps(obj).encode(), InvalidStatement, r"field 'nickname': unknown field")


@pytest.mark.parametrize("payload,sig,pattern", [
    ("-_+/", None, "mixes the standard and the URL-safe"),
    ("AAAA====", None, "wrong length or padding"),
    ("AB==", None, "not canonical base64"),
    (None, "A", "wrong length or padding"),
])
def test_malformed_base64_refused(world: World, payload: str | None, sig: str | None, pattern: str) -> None:
    _, obj = _canonical(world)
    if payload is not None:
        obj["payload"] = payload
    if sig is not None:
        obj["signatures"][0]["sig"] = sig
    refused(world, json.dumps(obj).encode(), MalformedInput, pattern)


def test_missing_sig_refused(world: World) -> None:
    _, obj = _canonical(world)
    obj["signatures"] = [{"keyid": obj["signatures"][0]["keyid"]}]
    refused(world, json.dumps(obj).encode(), MalformedInput, r"signature 0 must be an object with a 'sig'")


def test_one_submission_one_logged_form(world: World) -> None:
    """Every spelling of one statement canonicalises to the same bytes (as long as it verifies)."""
    env, obj = _canonical(world)
    forms = {canonical_envelope(world.state, _pretty(f(env, obj), n)).to_json() for n, f in _RESHAPES.items()}
    assert forms == {env.to_json()}


# --- signed notes: what c2sp.org/signed-note and Go's note.Open accept -------------------------

#: golang.org/x/mod/sumdb/note note_test.go: the test signer and the note Go's Sign writes with it.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def _go_note(text: str, k: SigningKey) -> bytes:
    """What Go's ``note.Sign`` writes for ``text`` (it checks only the final newline): Ed25519 over the text."""
    raw = k.key_id + k.sign(text.encode())
    return (text + "\n" + f"{EM_DASH} {k.name} {base64.b64encode(raw).decode()}\n").encode()


def test_go_known_answer() -> None:
    k = SigningKey.from_string(GO_SKEY)
    assert k.verifier().to_string() == GO_VKEY
    assert sign_note(GO_TEXT, k) == _go_note(GO_TEXT, k) == (GO_TEXT + "\n" + GO_SIG).encode()


@pytest.mark.parametrize("text", [
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n",  # C2SP's example
    "a\n\n\nb\n",
    "\n",
    "origin\n\n",
    "del\x7fete\n",
    "line with U+0080..U+009F: \x85\x9f\n",
    "sig-looking\n\n— PeterNeumann AAAA\n",
])
def test_note_texts_go_accepts_verify(text: str) -> None:
    k = SigningKey.from_string(GO_SKEY)
    data = _go_note(text, k)
    note, verified = open_note(data, [k.verifier()])
    assert note.text == text and verified == (k.verifier(),)
    assert note.encode() == data
    assert parse_note(data).text == text


@pytest.mark.parametrize("data", [
    b"\x01" + GO_TEXT.encode() + b"\n" + GO_SIG.encode(),
    b"\xff" + GO_TEXT.encode() + b"\n" + GO_SIG.encode(),
    b"\t" + GO_TEXT.encode() + b"\n" + GO_SIG.encode(),
    GO_TEXT.encode(),
    GO_TEXT.encode() + b"\n",
    GO_TEXT.encode() + b"\n" + GO_SIG.encode()[:-1],
    GO_TEXT.encode() + b"\n" + GO_SIG.replace("PeterNeumann", "Bad Name").encode(),
    GO_TEXT.encode() + b"\n" + GO_SIG.encode() + b"Unexpected line.\n",
    b"\xed\xa0\x80\n\n" + GO_SIG.encode(),  # an encoded surrogate: not UTF-8 (Go: RuneError)
])
def test_note_inputs_go_refuses_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        open_note(data, [SigningKey.from_string(GO_SKEY).verifier()])


def test_unknown_signer_names_go_accepts_are_ignored() -> None:
    # Go's isValidName: non-empty, no space, no '+'; U+007F and U+0080 are neither.
    k = SigningKey.from_string(GO_SKEY)
    odd = f"{EM_DASH} odd\x7fname\x80 {base64.b64encode(bytes(68)).decode()}\n".encode()
    note, verified = open_note(_go_note(GO_TEXT, k) + odd, [k.verifier()])
    assert verified == (k.verifier(),) and note.signatures[1].name == "odd\x7fname\x80"


def test_checkpoints_still_refuse_blank_lines() -> None:
    # The note layer accepts a blank line in the text; the checkpoint format has none.
    k = key("redline.example/log")
    text = "redline.example/log\n1\n" + base64.b64encode(bytes(32)).decode() + "\n\next\n"
    with pytest.raises(MalformedInput, match="extension line 1 is empty"):
        open_checkpoint(_go_note(text, k), k.verifier())


def test_redline_still_signs_strictly() -> None:
    k = SigningKey.from_string(GO_SKEY)
    for text in ("a\n\nb\n", "del\x7f\n", "\n"):
        with pytest.raises(MalformedInput):
            sign_note(text, k)


def test_redline_submit_says_when_it_logged_the_canonical_form(world: World, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the command line: the note says the log keeps the canonical bytes, and writes them beside the receipt,
    which verifies offline against them (not against the file submitted)."""
    from click.testing import CliRunner
    from scenario_kit import LOG_NAME

    from redline.cli.main import cli
    from redline.crypto.keys import save_signing_key

    save_signing_key(key(LOG_NAME), tmp_path / "log.key")
    real_open = Log.open
    monkeypatch.setattr(Log, "open", lambda store, **kw: real_open(store, **{**kw, "clock": world.clock}))
    env, obj = _canonical(world)
    submitted = _pretty(_RESHAPES["url-safe base64"](env, obj), "cli")
    (tmp_path / "env.json").write_bytes(submitted)
    receipt = tmp_path / "r.tlog-proof"
    result = CliRunner().invoke(cli, ["submit", str(tmp_path), str(tmp_path / "env.json"), "--receipt", str(receipt)])
    assert result.exit_code == 0, result.output
    assert "stored your envelope in redline's canonical form" in result.stderr
    logged = receipt.with_name(receipt.name + ".entry")
    assert logged.read_bytes() == env.to_json() != submitted
    ok = CliRunner().invoke(cli, ["log", "verify", "--receipt", str(receipt), "--entry", str(logged), "--log-key",
                                  key(LOG_NAME).verifier().to_string()])
    assert ok.exit_code == 0, ok.output
