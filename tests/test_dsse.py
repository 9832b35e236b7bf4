"""DSSE envelopes over in-toto Statement v1: PAE, strict parsing, signing and statement validation."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.crypto.canonical import canonical_json
from redline.crypto.dsse import (
    IN_TOTO_PAYLOAD_TYPE,
    MAX_ENVELOPE_BYTES,
    MAX_SIGNATURES,
    STATEMENT_TYPE,
    Envelope,
    EnvelopeSignature,
    make_statement,
    open_statement,
    pae,
    sign_envelope,
    sign_statement,
    validate_statement,
)
from redline.crypto.keys import SigningKey
from redline.errors import BadSignature, InputTooLarge, MalformedInput, RedlineError, UnknownKey

SHA = hashlib.sha256(b"model weights").hexdigest()


def key(name: str, n: int) -> SigningKey:
    return SigningKey(name, bytes([n]) * 32)


ALICE, BOB = key("alice", 1), key("bob", 2)


def statement(**overrides) -> dict:
    st_ = make_statement([("model.safetensors", {"sha256": SHA})], "urn:redline:training-run:v1",
                         {"flops": 3.8e25, "chips": {"H100": 1024}, "note": "caf\u00e9"})
    st_.update(overrides)
    return st_


def envelope_dict(**overrides) -> dict:
    env = sign_statement(statement(), ALICE).to_dict()
    env.update(overrides)
    return env


def from_obj(obj) -> Envelope:
    return Envelope.from_json(json.dumps(obj).encode())


# --- PAE -------------------------------------------------------------------------


def test_pae_known_answer() -> None:
    want = b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    assert pae("http://example.com/HelloWorld", b"hello world") == want


@pytest.mark.parametrize("ptype,body,want", [
    ("", b"", b"DSSEv1 0  0 "),
    (IN_TOTO_PAYLOAD_TYPE, b"{}", b"DSSEv1 28 application/vnd.in-toto+json 2 {}"),
    ("t\u00e9", b"\x00\xff", b"DSSEv1 3 t\xc3\xa9 2 \x00\xff"),  # lengths count bytes, not characters
    ("a", b"b" * 1000, b"DSSEv1 1 a 1000 " + b"b" * 1000),
])
def test_pae_lengths_are_byte_counts(ptype: str, body: bytes, want: bytes) -> None:
    assert pae(ptype, body) == want


def test_signature_covers_pae() -> None:
    env = sign_envelope(b"hello world", ALICE, "http://example.com/HelloWorld")
    ALICE.verifier().verify(b"DSSEv1 29 http://example.com/HelloWorld 11 hello world", env.signatures[0].sig)
    with pytest.raises(BadSignature):
        ALICE.verifier().verify(b"hello world", env.signatures[0].sig)


# --- round trip ----------------------------------------------------------------------


def test_sign_and_open_statement_round_trip() -> None:
    st_ = statement()
    env = sign_statement(st_, ALICE)
    assert env.payload == canonical_json(st_)
    assert env.payload_type == IN_TOTO_PAYLOAD_TYPE
    assert env.signatures[0].keyid == ALICE.verifier().fingerprint == hashlib.sha256(ALICE.public).hexdigest()
    data = env.to_json()
    assert data == canonical_json(json.loads(data))
    assert env.digest == hashlib.sha256(data).hexdigest()
    parsed = Envelope.from_json(data)
    assert parsed == env
    got, signer = open_statement(parsed, [BOB.verifier(), ALICE.verifier()])
    assert got == st_ and signer == ALICE.verifier()


def test_statement_with_large_integral_doubles_round_trips() -> None:
    # Doubles in [2^53, 1e21) serialise like integers ("100000000000000000000"): FLOP counts are such numbers.
    st_ = statement(predicate={"flops": 1e20, "tokens": 1.5e16, "small": 6e23})
    env = sign_statement(st_, ALICE)
    assert b'"flops":100000000000000000000' in env.payload
    got, _ = open_statement(Envelope.from_json(env.to_json()), [ALICE.verifier()])
    assert got == st_


def test_make_statement_shape() -> None:
    st_ = make_statement([("a", {"sha256": SHA}), ("b", {"blake3": "00" * 32})], "urn:x", {"k": 1})
    assert st_ == {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "a", "digest": {"sha256": SHA}}, {"name": "b", "digest": {"blake3": "00" * 32}}],
        "predicateType": "urn:x",
        "predicate": {"k": 1},
    }
    assert validate_statement(st_) is st_


def test_envelope_wire_format() -> None:
    env = sign_envelope(b"payload", ALICE, "text/plain")
    obj = json.loads(env.to_json())
    assert obj == {
        "payload": base64.b64encode(b"payload").decode(),
        "payloadType": "text/plain",
        "signatures": [{"keyid": ALICE.verifier().fingerprint,
                        "sig": base64.b64encode(env.signatures[0].sig).decode()}],
    }


def test_verify_picks_first_known_signer_and_ignores_unknown() -> None:
    env = sign_statement(statement(), ALICE)
    stranger = key("stranger", 9)
    other = sign_envelope(env.payload, stranger)
    both = Envelope(env.payload, env.payload_type, other.signatures + env.signatures)
    assert both.verify([ALICE.verifier()]) == ALICE.verifier()
    assert both.verify([ALICE.verifier(), stranger.verifier()]) == stranger.verifier()


def test_unknown_signer() -> None:
    env = sign_statement(statement(), ALICE)
    with pytest.raises(UnknownKey, match="no signature from a known key"):
        env.verify([BOB.verifier()])
    with pytest.raises(UnknownKey):
        open_statement(env, [])


def test_bad_signature_from_known_key() -> None:
    env = sign_statement(statement(), ALICE)
    forged = Envelope(env.payload + b" ", env.payload_type, env.signatures)
    with pytest.raises(BadSignature, match="DSSE signature 0 by key 'alice' does not verify"):
        forged.verify([ALICE.verifier()])
    swapped = Envelope(env.payload, "application/json", env.signatures)
    with pytest.raises(BadSignature):
        swapped.verify([ALICE.verifier()])
    # A signature by another key under alice's key ID.
    wrong = Envelope(env.payload, env.payload_type,
                     (EnvelopeSignature(ALICE.verifier().fingerprint, BOB.sign(pae(env.payload_type, env.payload))),))
    with pytest.raises(BadSignature):
        open_statement(wrong, [ALICE.verifier(), BOB.verifier()])


# --- strict envelope parsing ------------------------------------------------------------


def test_unknown_fields_rejected() -> None:
    with pytest.raises(MalformedInput, match="unknown field\\(s\\): extra"):
        from_obj(envelope_dict(extra=1))
    env = envelope_dict()
    env["signatures"][0]["cert"] = "x"
    with pytest.raises(MalformedInput, match="exactly the fields 'keyid' and 'sig'"):
        from_obj(env)


@pytest.mark.parametrize("field", ["payload", "payloadType", "signatures"])
def test_missing_fields_rejected(field: str) -> None:
    env = envelope_dict()
    del env[field]
    with pytest.raises(MalformedInput, match=f"field '{field}' is missing"):
        from_obj(env)


@pytest.mark.parametrize("field,value", [("payload", 5), ("payloadType", None), ("signatures", {})])
def test_wrong_field_types_rejected(field: str, value) -> None:
    with pytest.raises(MalformedInput, match=f"'{field}'"):
        from_obj(envelope_dict(**{field: value}))


@pytest.mark.parametrize("sig", [{"keyid": "x"}, {"sig": "AAAA"}, {"keyid": 1, "sig": "AAAA"}, "AAAA", None])
def test_bad_signature_entries_rejected(sig) -> None:
    with pytest.raises(MalformedInput, match="DSSE signature 0"):
        from_obj(envelope_dict(signatures=[sig]))


def test_signature_count_bounds() -> None:
    with pytest.raises(MalformedInput, match="no signatures"):
        from_obj(envelope_dict(signatures=[]))
    sig = envelope_dict()["signatures"][0]
    assert from_obj(envelope_dict(signatures=[sig] * MAX_SIGNATURES)).verify([ALICE.verifier()]) == ALICE.verifier()
    with pytest.raises(InputTooLarge, match=f"{MAX_SIGNATURES + 1} signatures"):
        from_obj(envelope_dict(signatures=[sig] * (MAX_SIGNATURES + 1)))


def test_non_canonical_base64_rejected() -> None:
    env = envelope_dict()
    payload = env["payload"]
    padded_len = len(base64.b64decode(payload)) % 3
    unpadded = payload.rstrip("=")
    if padded_len:
        with pytest.raises(MalformedInput, match="DSSE envelope field 'payload'"):
            from_obj(envelope_dict(payload=unpadded))
    # Non-zero padding bits: Python's decoder would accept "aGl=" as "hi".
    assert base64.b64decode("aGl=") == base64.b64decode("aGk=") == b"hi"
    with pytest.raises(MalformedInput, match="not canonical base64"):
        from_obj(envelope_dict(payload="aGl="))
    with pytest.raises(MalformedInput, match="not valid base64"):
        from_obj(envelope_dict(payload="aGk"))
    with pytest.raises(MalformedInput, match="not valid base64"):
        from_obj(envelope_dict(payload="aG k="))
    with pytest.raises(MalformedInput, match="not valid base64"):
        from_obj(envelope_dict(payload="aGk=\n"))
    sig = env["signatures"][0]
    with pytest.raises(MalformedInput, match="DSSE signature 0 'sig'"):
        from_obj(envelope_dict(signatures=[{"keyid": sig["keyid"], "sig": sig["sig"].replace("=", "")}]))
    urlsafe = base64.urlsafe_b64encode(b"\xfb\xff").decode()  # "-_8="
    with pytest.raises(MalformedInput, match="not valid base64"):
        from_obj(envelope_dict(payload=urlsafe))


@pytest.mark.parametrize("data,match", [
    (b"[]", "must be a JSON object"),
    (b"{", "not valid JSON"),
    (b'{"payload":"","payload":""}', "duplicate"),
    (b"\xff", "not valid UTF-8"),
])
def test_envelope_json_errors(data: bytes, match: str) -> None:
    with pytest.raises(MalformedInput, match=match):
        Envelope.from_json(data)


def test_envelope_size_limit() -> None:
    big = sign_envelope(b"x" * (MAX_ENVELOPE_BYTES), ALICE).to_json()
    with pytest.raises(InputTooLarge, match=f"over the limit of {MAX_ENVELOPE_BYTES}"):
        Envelope.from_json(big)


# --- statement checks in open_statement -------------------------------------------------


def test_wrong_payload_type_rejected() -> None:
    env = sign_envelope(canonical_json(statement()), ALICE, "application/json")
    assert env.verify([ALICE.verifier()]) == ALICE.verifier()
    with pytest.raises(MalformedInput, match="payloadType is 'application/json'"):
        open_statement(env, [ALICE.verifier()])


def test_non_canonical_json_payload_rejected() -> None:
    st_ = statement()
    for payload in (json.dumps(st_).encode(), json.dumps(st_, sort_keys=True).encode(),
                    canonical_json(st_) + b"\n", canonical_json(st_).replace(b":", b": ", 1)):
        env = sign_envelope(payload, ALICE)
        with pytest.raises(MalformedInput, match="not in RFC 8785 canonical form"):
            open_statement(env, [ALICE.verifier()])


@pytest.mark.parametrize("payload,match", [
    (b"not json", "not valid JSON"),
    (b'{"a":1,"a":1}', "duplicate"),
    (b"[1]", "must be a JSON object"),
    (b"\xff", "not valid UTF-8"),
])
def test_payload_not_a_statement(payload: bytes, match: str) -> None:
    with pytest.raises(MalformedInput, match=match):
        open_statement(sign_envelope(payload, ALICE), [ALICE.verifier()])


def test_statement_signed_then_checked_in_order() -> None:
    # The signature is checked before the payload is parsed: an unknown signer wins over bad JSON.
    with pytest.raises(UnknownKey):
        open_statement(sign_envelope(b"not json", ALICE), [BOB.verifier()])


# --- in-toto statement validation ----------------------------------------------------------


def _with_subject(**subject) -> dict:
    return statement(subject=[subject])


@pytest.mark.parametrize("st_,match", [
    (statement(_type="https://in-toto.io/Statement/v0.1"), "'_type'"),
    ({k: v for k, v in statement().items() if k != "_type"}, "'_type'"),
    (statement(subject=[]), "'subject' must be a non-empty list"),
    (statement(subject={"name": "a"}), "'subject' must be a non-empty list"),
    ({k: v for k, v in statement().items() if k != "subject"}, "'subject'"),
    (statement(predicateType=""), "'predicateType'"),
    (statement(predicateType=5), "'predicateType'"),
    (statement(predicate=[]), "'predicate' must be an object"),
    ({k: v for k, v in statement().items() if k != "predicate"}, "'predicate'"),
    (_with_subject(name="a"), "subject 0 must have 'name' and 'digest'"),
    (_with_subject(name="a", digest={"sha256": SHA}, uri="x"), "subject 0 must have"),
    (_with_subject(name=5, digest={"sha256": SHA}), "subject 0 'name' must be a string"),
    (_with_subject(name="a", digest={}), "subject 0 has an empty digest"),
    (_with_subject(name="a", digest={"sha256": SHA.upper()}), "digest sha256 must be lower-case hex"),
    (_with_subject(name="a", digest={"sha256": SHA[:-2]}), "digest sha256 must be 32 bytes, got 31"),
    (_with_subject(name="a", digest={"sha256": SHA + "00"}), "must be 32 bytes, got 33"),
    (_with_subject(name="a", digest={"sha256": "zz" * 32}), "digest sha256 is not valid hex"),
    (_with_subject(name="a", digest={"sha256": SHA[:-1]}), "digest sha256 is not valid hex"),
    (_with_subject(name="a", digest={"sha512": SHA}), "digest sha512 must be 64 bytes"),
    (_with_subject(name="a", digest={"blake3": "00" * 31}), "digest blake3 must be 32 bytes"),
    (_with_subject(name="a", digest={"sha256": 5}), "digest sha256 must be a string"),
    (_with_subject(name="a", digest={"gitCommit": 5}), "digest gitCommit must be a string"),
    ([statement()], "must be a JSON object"),
])
def test_statement_validation(st_, match: str) -> None:
    with pytest.raises(MalformedInput, match=match):
        validate_statement(st_)
    with pytest.raises(MalformedInput, match=match):
        sign_statement(st_, ALICE)
    # The same statement signed without validation is refused when opened.
    try:
        payload = canonical_json(st_)
    except RedlineError:
        return
    with pytest.raises(MalformedInput, match=match):
        open_statement(sign_envelope(payload, ALICE), [ALICE.verifier()])


def test_unknown_statement_fields_refused_when_signing_ignored_when_reading() -> None:
    # in-toto: consumers must ignore unknown fields; redline itself signs exactly the four.
    st_ = statement(extra=1)
    with pytest.raises(MalformedInput, match="unknown field\\(s\\): extra"):
        validate_statement(st_)
    with pytest.raises(MalformedInput, match="unknown field\\(s\\): extra"):
        sign_statement(st_, ALICE)
    got, signer = open_statement(sign_envelope(canonical_json(st_), ALICE), [ALICE.verifier()])
    assert got == st_ and signer == ALICE.verifier()
    # ... as long as the payload is the canonical form of the whole object, unknown fields included.
    with pytest.raises(MalformedInput, match="not in RFC 8785 canonical form"):
        open_statement(sign_envelope(canonical_json(st_) + b" ", ALICE), [ALICE.verifier()])


def test_second_subject_is_checked() -> None:
    st_ = statement()
    st_["subject"].append({"name": "b", "digest": {"sha256": "00"}})
    with pytest.raises(MalformedInput, match="subject 1 digest sha256 must be 32 bytes"):
        validate_statement(st_)


def test_other_digest_algorithms_accepted() -> None:
    st_ = _with_subject(name="a", digest={"sha256": SHA, "sha512": "ab" * 64, "gitCommit": "abc123"})
    assert validate_statement(copy.deepcopy(st_)) == st_


# --- one-bit changes of envelope bytes ----------------------------------------------------


def _assert_envelope_rejected(data: bytes) -> None:
    try:
        env = Envelope.from_json(data)
        open_statement(env, [ALICE.verifier()])
    except RedlineError as exc:
        assert isinstance(exc, (MalformedInput, BadSignature)), type(exc)
        return
    pytest.fail(f"tampered envelope accepted: {data!r}")


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def test_every_one_bit_change_of_an_envelope_is_rejected() -> None:
    data = sign_statement(statement(), ALICE).to_json()
    assert open_statement(Envelope.from_json(data), [ALICE.verifier()])[0] == statement()
    for bit in range(len(data) * 8):
        _assert_envelope_rejected(_flip(data, bit))


subject_names = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
predicates = st.dictionaries(st.text(max_size=8), st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10)
                             | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.none(),
                             max_size=4)


@settings(max_examples=150, deadline=None)
@given(name=subject_names, digest=st.binary(min_size=32, max_size=32), predicate=predicates, data=st.data())
def test_one_bit_change_of_random_envelope_is_rejected(name: str, digest: bytes, predicate: dict, data) -> None:
    st_ = make_statement([(name, {"sha256": digest.hex()})], "urn:redline:test:v1", predicate)
    env = sign_statement(st_, ALICE).to_json()
    got, signer = open_statement(Envelope.from_json(env), [ALICE.verifier()])
    assert got == st_ and signer == ALICE.verifier()
    bit = data.draw(st.integers(0, len(env) * 8 - 1), label="bit")
    _assert_envelope_rejected(_flip(env, bit))


from redline.crypto.dsse import _from_canonical_json  # noqa: E402


def _strict_envelope(data: bytes) -> tuple[Any, ...]:
    """What the strict parser (no canonical-form shortcut) makes of ``data``."""
    from redline.crypto.canonical import parse_json

    try:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise InputTooLarge("too large")
        return ("ok", Envelope.from_dict(parse_json(data, what="DSSE envelope")))
    except MalformedInput as exc:
        return (type(exc).__name__, str(exc))


def _envelope_outcome(data: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", Envelope.from_json(data))
    except MalformedInput as exc:
        return (type(exc).__name__, str(exc))


_ENVELOPE_BYTES = [b'"', b"\\", b"\x00", b"\x1f", b"\x7f", b"A", b"=", b" ", b"}", b",", b"]", b"\xff", b"\xc3",
                   b"\xe2\x80\xa8", b"\\u0041", b'"}', b'","sig":"', b'"},{"keyid":"', b""]


def test_canonical_envelope_shortcut_agrees_with_the_strict_parser() -> None:
    """Every one-byte replacement, insertion and deletion of a (two-signature) envelope: the same outcome."""
    env = sign_statement(statement(), ALICE)
    two = Envelope(env.payload, "application/vnd.in-toto+json; x=\u00e9\U0001f600",
                   (*env.signatures, EnvelopeSignature("k\u00e9y\x7f", b"\x01\x02\x03")))
    for data in (env.to_json(), two.to_json()):
        assert _from_canonical_json(data) is not None  # the shortcut is taken
        assert _envelope_outcome(data) == _strict_envelope(data) and _envelope_outcome(data)[0] == "ok"
        positions = sorted({*range(0, len(data), 7), *range(len(data) - 40, len(data)), *range(0, 40)})
        for i in positions:
            for b in _ENVELOPE_BYTES:
                for mutated in (data[:i] + b + data[i + 1:], data[:i] + b + data[i:]):
                    assert _envelope_outcome(mutated) == _strict_envelope(mutated), mutated


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=40), ptype=st.text(max_size=12), keyids=st.lists(st.text(max_size=6), min_size=1,
                                                                                  max_size=3),
       sigs=st.lists(st.binary(max_size=5), min_size=3, max_size=3))
def test_canonical_envelope_shortcut_on_random_envelopes(payload: bytes, ptype: str, keyids: list[str],
                                                          sigs: list[bytes]) -> None:
    env = Envelope(payload, ptype, tuple(EnvelopeSignature(k, s) for k, s in zip(keyids, sigs)))
    try:
        data = env.to_json()
    except MalformedInput:  # a lone surrogate cannot be written
        return
    assert _envelope_outcome(data) == _strict_envelope(data) == ("ok", env)
