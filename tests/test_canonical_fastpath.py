"""The fast canonical-JSON path must agree byte for byte with the rfc8785 reference."""

from __future__ import annotations

import orjson
import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redline.crypto import canonical
from redline.crypto.canonical import canonical_json, canonical_json_owned
from redline.errors import NonCanonicalJSON

_leaf = (st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
         | st.floats(allow_nan=False, allow_infinity=False) | st.text())
_values = st.recursive(_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(), c, max_size=4),
                       max_leaves=25)


def _reference(value):
    try:
        return rfc8785.dumps(value)
    except Exception:
        return None


def _ours(value):
    try:
        return canonical_json(value)
    except NonCanonicalJSON:
        return None


@settings(max_examples=1200, deadline=None)
@given(_values)
@example({"\U0001f600": 1, "\ue000": 2})  # UTF-16 ordering differs from code-point ordering
@example([1e-7, 1e-5, 1e16, 2.0**60, 1e21, 1.5e300, -0.0, 0.1, 1.0, 123.456])
@example({"a": "\x00\x1f\x7f\u2028\"\\"})
@example("\ud800")  # a lone surrogate cannot be encoded: both refuse
@example([1e19, -5e20, 2.0**63, -(2.0**63), 9.2e18, -9.3e18, 9.9e20])  # integral doubles beyond 64-bit integers
@example({"a": [{"b": [None, True, False, 0, -1, "é\x1f"]}], "A": 2.5e-4})
def test_fast_path_matches_reference(value):
    assert _ours(value) == _reference(value)


@settings(max_examples=1500, deadline=None)
@given(_values)
@example([1e19, -5e20, 2.0**63, 1e16, 1e21, 0.1, -0.0, True, False, None])
@example({"\x00\x1f\x7f\u2028\ud7ff\ue000\uffff": ["\x08\x0c\n\r\t\"\\/"]})
def test_orjson_writes_what_the_stdlib_encoder_writes(value):
    """The fast path writes a prepared tree with ``orjson``; the stdlib's encoder, the fast path before it and
    held to the reference above, must write the very same bytes wherever both write."""
    try:
        tree = canonical._prepare(value)
        want = canonical._encode(tree).encode("utf-8")
    except (canonical._NeedsSlowPath, UnicodeEncodeError, ValueError):
        return
    if canonical._holds_small(tree):  # written as ECMAScript writes it, where Python's repr differs
        assert canonical._encode_bytes(tree) == rfc8785.dumps(value)
    else:
        assert canonical._encode_bytes(tree) == want


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-1e-4, max_value=1e-4, allow_subnormal=True).filter(lambda x: x != 0 and abs(x) < 1e-4))
@example(1e-5)
@example(-9.999e-05)
@example(1e-6)
@example(9.99e-7)
@example(5e-324)
@example(-1.2345e-300)
def test_small_doubles_are_written_as_ecmascript_writes_them(value):
    assert canonical._small_text(value).encode() == rfc8785.dumps(value)
    assert canonical_json({"v": value, "w": [value]}) == rfc8785.dumps({"v": value, "w": [value]})


def test_a_small_double_beyond_orjson_takes_the_reference():
    value: object = 1e-5
    for _ in range(300):  # nesting orjson refuses, and the stdlib encoder would write repr's 1e-05
        value = [value]
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json_owned({"a": value}) is None


def test_integral_doubles_beyond_64_bits_are_written_by_orjson():
    tree = canonical._prepare({"flop": 5e20, "less": -1e19, "small": 3e18})
    assert type(tree["flop"]) is canonical._Digits and type(tree["small"]) is int
    assert orjson.dumps(tree, default=canonical._fragment, option=canonical._ORJSON_OPTIONS) == \
        b'{"flop":500000000000000000000,"less":-10000000000000000000,"small":3000000000000000000}'
    with pytest.raises(TypeError):  # nothing but those goes through the callback
        canonical._fragment(object())


@pytest.mark.parametrize("depth", [254, 256, 400])
def test_nesting_beyond_orjson_falls_back_to_the_stdlib_encoder(depth):
    value: object = "x"
    for _ in range(depth):
        value = [value]
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json_owned({"a": value}) == rfc8785.dumps({"a": value})


def test_known_answers():
    assert canonical_json({"b": 1.0, "a": [1e21, 1e-7, 0.5]}) == b'{"a":[1e+21,1e-7,0.5],"b":1}'
    assert canonical_json({"\U0001f600": 1, "\ue000": 2}) == '{"\U0001f600":1,"\ue000":2}'.encode()


@settings(max_examples=800, deadline=None)
@given(_values, st.integers(min_value=0, max_value=3))
@example({"\U0001f600": [1, {"b": 2, "a": 1e-7}], "\ue000": "x", "a": []}, 2)  # UTF-16 order at a spread level
@example({}, 1)
@example([], 2)
def test_spread_digest_is_the_digest_of_the_whole(value, spread):
    try:
        want = canonical.canonical_digest(value)
    except NonCanonicalJSON:
        with pytest.raises(NonCanonicalJSON):
            canonical.canonical_digest_spread(value, spread)
        return
    assert canonical.canonical_digest_spread(value, spread) == want
    if isinstance(value, list):  # a generator stands for a list
        assert canonical.canonical_digest_spread((v for v in value), max(spread, 1)) == want


def test_spread_digest_refuses_what_canonical_json_refuses():
    for value in ({1: "a"}, {"a": {2: "b"}}, {"a": [2**60]}, {"a": float("nan")}):
        with pytest.raises(NonCanonicalJSON):
            canonical.canonical_digest_spread(value, 2)
