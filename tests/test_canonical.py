"""RFC 8785 JSON canonicalization known answers and strict JSON parsing."""

from __future__ import annotations

import hashlib
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.crypto.canonical import MAX_JSON_BYTES, canonical_digest, canonical_json, parse_json
from redline.errors import InputTooLarge, MalformedInput, NonCanonicalJSON, RedlineError


def _double(hex64: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex64))[0]


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical text.
NUMBER_VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize("bits,text", NUMBER_VECTORS, ids=[b for b, _ in NUMBER_VECTORS])
def test_number_serialisation_vectors(bits: str, text: str) -> None:
    assert canonical_json(_double(bits)) == text.encode()


@pytest.mark.parametrize("value,text", [
    (1e21, "1e+21"),
    (1.0, "1"),
    (-0.0, "0"),
    (0, "0"),
    (4.50, "4.5"),
    (2e-3, "0.002"),
    (1e30, "1e+30"),
    (1e-7, "1e-7"),
    (123456789, "123456789"),
    (-17, "-17"),
    (2**53 - 1, "9007199254740991"),
])
def test_number_formatting(value, text: str) -> None:
    assert canonical_json(value) == text.encode()


def test_rfc8785_example_document() -> None:
    # RFC 8785 §3.2.2.3: "numbers", "string" and "literals" example.
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    want = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(value) == want.encode("utf-8")


def test_keys_sorted_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3 sorting example.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001F600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    out = canonical_json(value).decode("utf-8")
    keys = ["\\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"]
    positions = [out.index(f'"{k}":') for k in keys]
    assert positions == sorted(positions)
    # U+1F600 (UTF-16 D83D DE00) sorts before U+FB33 although its code point is larger.
    assert canonical_json({"\ufb33": 1, "\U0001F600": 2}) == '{"\U0001F600":2,"\ufb33":1}'.encode()


def test_nested_objects_sorted_and_compact() -> None:
    value = {"b": [1, {"z": None, "a": "x"}], "a": {"d": True, "c": False}}
    assert canonical_json(value) == b'{"a":{"c":false,"d":true},"b":[1,{"a":"x","z":null}]}'


def test_string_escapes() -> None:
    value = "\u0000\b\t\n\f\r\u001f\"\\/\u007f\u20ac\U0001F600\u2028"
    want = b'"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\x7f' + "\u20ac\U0001F600\u2028".encode() + b'"'
    assert canonical_json(value) == want


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), [1.0, float("nan")],
                                   {"a": float("inf")}])
def test_non_finite_rejected(value) -> None:
    with pytest.raises(NonCanonicalJSON, match="not representable"):
        canonical_json(value)


@pytest.mark.parametrize("value,match", [
    ("\ud800", "cannot be canonicalised"),
    ({"k\udfff": 1}, "not JSON-compatible"),
    ({1: "x"}, "keys must be strings"),
    (b"bytes", "unsupported type"),
    (2**60, "safe integer"),
    (object(), "unsupported type"),
])
def test_not_canonicalisable(value, match: str) -> None:
    with pytest.raises(NonCanonicalJSON, match=match):
        canonical_json(value)


def test_canonical_digest() -> None:
    a = {"b": 1, "a": [True, None]}
    b = {"a": [True, None], "b": 1}
    assert canonical_digest(a) == canonical_digest(b) == hashlib.sha256(b'{"a":[true,null],"b":1}').hexdigest()
    assert canonical_digest({"a": 1}) != canonical_digest({"a": 2})


# --- strict parsing ----------------------------------------------------------


def test_parse_json_accepts_plain_json() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert parse_json('{"\u20ac": -0}') == {"\u20ac": 0}


@pytest.mark.parametrize("doc", [b'{"a":1,"a":2}', b'{"x":{"c":1,"c":1}}', b'[{"k":1},{"k":1,"k":1}]'])
def test_parse_json_rejects_duplicate_keys(doc: bytes) -> None:
    with pytest.raises(MalformedInput, match="duplicate JSON object key"):
        parse_json(doc)


@pytest.mark.parametrize("doc", [b"NaN", b"[Infinity]", b'{"a":-Infinity}'])
def test_parse_json_rejects_non_finite_literals(doc: bytes) -> None:
    with pytest.raises(MalformedInput, match="non-finite"):
        parse_json(doc)


@pytest.mark.parametrize("doc", [b"1e400", b"[-1e999]", b'{"a":1.5e309}'])
def test_parse_json_rejects_numbers_that_overflow_to_infinity(doc: bytes) -> None:
    with pytest.raises(MalformedInput, match="overflows"):
        parse_json(doc)


def test_parse_json_size_limit() -> None:
    doc = b'"' + b"a" * (MAX_JSON_BYTES - 2) + b'"'
    assert len(doc) == MAX_JSON_BYTES
    assert len(parse_json(doc)) == MAX_JSON_BYTES - 2
    with pytest.raises(InputTooLarge, match=f"over the limit of {MAX_JSON_BYTES}"):
        parse_json(doc + b" ")
    with pytest.raises(InputTooLarge, match="my thing is 11 bytes"):
        parse_json(b"[1,2,3,4,5]", what="my thing", limit=10)
    # The limit counts UTF-8 bytes, not characters.
    with pytest.raises(InputTooLarge):
        parse_json('"\u20ac\u20ac\u20ac"', limit=10)


@pytest.mark.parametrize("doc", [b'"\xff"', b'{"a":"\xc3"}', b'"\xed\xa0\x80"', b"\xef\xbb\xbf{}"[1:]])
def test_parse_json_rejects_invalid_utf8(doc: bytes) -> None:
    with pytest.raises(MalformedInput, match="not valid UTF-8"):
        parse_json(doc, what="the body")


@pytest.mark.parametrize("doc", [b"", b"{", b"{'a':1}", b"[1,]", b"01", b"1 2", b"\xef\xbb\xbf{}"])
def test_parse_json_rejects_invalid_json(doc: bytes) -> None:
    with pytest.raises(MalformedInput, match="not valid JSON"):
        parse_json(doc)


@pytest.mark.parametrize("doc", [b"1" * 5000, b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000])
def test_parse_json_hostile_input_raises_redline_error(doc: bytes) -> None:
    # Huge integers and deep nesting make Python's json raise ValueError/RecursionError.
    with pytest.raises(MalformedInput):
        parse_json(doc)


@pytest.mark.parametrize("value", [1e20, 3.15e20, 2.0**53, -(2.0**60), 9.007199254740993e15, 1e21, 5e-324])
def test_large_doubles_round_trip(value: float) -> None:
    # Doubles from 2^53 up to 1e21 are written without exponent or point, like integers; RFC 8785
    # reads every number as a double, so they must parse back to a value with the same canonical form.
    data = canonical_json(value)
    back = parse_json(data)
    assert back == value
    assert canonical_json(back) == data


def test_parse_json_integers() -> None:
    assert parse_json(b"9007199254740991") == 9007199254740991
    assert isinstance(parse_json(b"-9007199254740991"), int)
    big = parse_json(b"100000000000000000000")
    assert isinstance(big, float) and big == 1e20
    # An integer that no double holds is read as the nearest double, so its canonical text differs.
    assert canonical_json(parse_json(b"9007199254740993")) == b"9007199254740992"
    with pytest.raises(MalformedInput, match="overflows"):
        parse_json(b"1" * 400)


def test_parse_json_str_with_lone_surrogate() -> None:
    # Bounded and parsed without a UnicodeEncodeError; canonicalising it is what fails.
    value = parse_json('"\ud800"')
    assert value == "\ud800"
    with pytest.raises(NonCanonicalJSON):
        canonical_json(value)


# --- round trip ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_round_trip(value) -> None:
    data = canonical_json(value)
    back = parse_json(data)
    assert canonical_json(back) == data
    outside_strings = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', data)  # no insignificant whitespace anywhere else
    assert not re.search(rb"\s", outside_strings), data
    data.decode("utf-8")  # canonical JSON is valid UTF-8


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_parse_json_never_raises_foreign_errors(data: bytes) -> None:
    try:
        parse_json(data)
    except RedlineError as exc:
        assert isinstance(exc, MalformedInput)


# --- agreement with the reference implementation -----------------------------------

any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    | st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**60, 1e-4, 1e-5, 1e-7, 1e16, 2.0**53, 1e21, 1e20, 5e-324]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["\U0001F600", "\ufb33", "a\U00010000"]), children,
                      max_size=4),
    max_leaves=16,
)


def _reference(value) -> bytes | None:
    import rfc8785

    try:
        return rfc8785.dumps(value)
    except Exception:
        return None


@settings(max_examples=500, deadline=None)
@given(any_json)
def test_canonical_json_agrees_with_rfc8785_reference(value) -> None:
    want = _reference(value)
    if want is None:
        with pytest.raises(NonCanonicalJSON):
            canonical_json(value)
    else:
        assert canonical_json(value) == want


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**60, [1, {"a": 2**64}]])
def test_integers_beyond_double_precision_rejected(value) -> None:
    # A JCS verifier reads numbers as doubles: 2**60 would come back as 1152921504606847000.
    with pytest.raises(NonCanonicalJSON, match="safe integer"):
        canonical_json(value)
