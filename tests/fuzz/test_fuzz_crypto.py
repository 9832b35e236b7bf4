"""Fuzz the crypto parsers: strict JSON, verifier and private keys, signed notes, DSSE envelopes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from redline.crypto.canonical import canonical_json, parse_json
from redline.crypto.dsse import Envelope, make_statement, sign_envelope, sign_statement
from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from redline.crypto.note import Note, open_note, parse_note, sign_note
from redline.errors import RedlineError

from .common import ODD_VALUES, fuzz_settings, json_bytes, mutated, mutated_text, ok, outcome

KEY = SigningKey("example.com/log", bytes(range(32)))
OTHER = SigningKey("witness.example", bytes(range(1, 33)))
VKEYS = [KEY.verifier(), OTHER.verifier(), OTHER.verifier(ALG_COSIGNATURE_V1)]

_JSON_SEEDS: list[Any] = [
    {"a": [1, 2.5, -0.0, None, True, "x\u2028\U0001f600"], "b": {"c": "d"}, "\ue000": 1e21},
    [1e-7, 2**53 - 1, -(2**53) + 1, "", {}], "text", 0,
    make_statement([("s", {"sha256": "ab" * 32})], "https://example/p", {"k": [1, 2, {"z": None}]}),
]

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)


# --- parse_json and canonical_json ---------------------------------------------------------------

@fuzz_settings(300)
@given(st.one_of(json_bytes(_JSON_SEEDS), mutated([canonical_json(v) for v in _JSON_SEEDS]), st.binary(max_size=64)))
@example(b"[" * 100_000)
@example(b'{"a":' + b"9" * 5000 + b"}")
@example(b'{"a":1,"a":2}')
@example(b'"\\ud800"')
@example(b"1e400")
def test_parse_json_is_strict_and_canonical_json_round_trips(data: bytes) -> None:
    """Parsed or refused; a parsed document either canonicalises and parses back to itself, or refuses politely."""
    result = outcome(parse_json, data)
    if not ok(result):
        return
    value = result[1]
    as_text = outcome(parse_json, data.decode("utf-8"))
    assert as_text == result  # bytes and the same text parse alike
    canon = outcome(canonical_json, value)
    if ok(canon):
        again = parse_json(canon[1])
        assert again == value
        assert canonical_json(again) == canon[1]


@fuzz_settings(300)
@given(_values)
def test_canonical_json_of_any_value_parses_back(value: Any) -> None:
    """parse_json(canonical_json(x)) == x for every JSON value whose canonical form exists."""
    canon = outcome(canonical_json, value)
    if ok(canon):
        assert parse_json(canon[1]) == value


# --- keys ----------------------------------------------------------------------------------------

_VKEY_SEEDS = [k.to_string() for k in VKEYS]
_PRIV_SEEDS = [KEY.to_string(), OTHER.to_string()]


@fuzz_settings(300)
@given(st.one_of(mutated_text(_VKEY_SEEDS + _PRIV_SEEDS), st.text(max_size=80)))
@example("a+00000000+" + "A" * 44)
@example("\ud800+00000000+AQ==")
def test_key_strings_parse_or_are_refused(text: str) -> None:
    """Verifier and private key strings: parsed keys write back to exactly the text read (less a final newline)."""
    for cls in (VerifierKey, SigningKey):
        result = outcome(cls.from_string, text)
        if ok(result):
            assert result[1].to_string() == text.strip("\n")
            assert cls.from_string(result[1].to_string()) == result[1]


# --- signed notes --------------------------------------------------------------------------------

_NOTES = [
    sign_note("example.com/log\n42\n" + "A" * 43 + "=\n", KEY),
    sign_note("example.com/log\n0\nextension \u00e9\n", KEY, OTHER),
    sign_note("text\n", OTHER),
]


@fuzz_settings(300)
@given(st.one_of(mutated(_NOTES), st.binary(max_size=64)))
def test_notes_parse_or_are_refused(data: bytes) -> None:
    """parse_note and open_note: a parsed note re-encodes to the bytes read."""
    result = outcome(parse_note, data)
    if ok(result):
        note: Note = result[1]
        assert note.encode() == data
        opened = outcome(open_note, data, VKEYS)
        if ok(opened):
            assert opened[1][0] == note


# --- DSSE envelopes ------------------------------------------------------------------------------

_STATEMENT = make_statement([("s", {"sha256": "ab" * 32})], "https://example/p", {"k": "v"})
_ENVELOPES = [
    sign_statement(_STATEMENT, KEY).to_json(),
    sign_envelope(b"\x00\xffpayload", OTHER, "text/plain; charset=\u00e9").to_json(),
    Envelope(b"", "t", tuple(sign_envelope(b"", k).signatures[0] for k in (KEY, OTHER))).to_json(),
]


def _strict_envelope(data: bytes) -> Envelope:
    return Envelope.from_dict(parse_json(data, what="DSSE envelope"))


@fuzz_settings(300)
@given(st.one_of(mutated(_ENVELOPES), json_bytes([json.loads(e) for e in _ENVELOPES])))
@example(_ENVELOPES[0].replace(b'"sig":"', b'"sig":"AA', 1))
def test_envelope_fast_path_agrees_with_the_strict_parser(data: bytes) -> None:
    """Envelope.from_json: parsed or refused, exactly as parse_json + from_dict decide; canonical input round-trips."""
    result = outcome(Envelope.from_json, data)
    strict = outcome(_strict_envelope, data) if len(data) <= 64 * 1024 else result
    assert ok(result) == ok(strict), (result, strict)
    if ok(result):
        env: Envelope = result[1]
        assert env == strict[1]
        written = outcome(env.to_json)
        if ok(written):
            assert Envelope.from_json(written[1]) == env
            if written[1] == data:
                assert env.to_json() == data


@fuzz_settings(100)
@given(st.sampled_from(ODD_VALUES) | st.binary(max_size=40))
def test_envelope_from_dict_refuses_non_objects(obj: Any) -> None:
    """from_dict on any JSON value: an envelope or a RedlineError."""
    try:
        Envelope.from_dict(obj)
    except RedlineError:
        pass
