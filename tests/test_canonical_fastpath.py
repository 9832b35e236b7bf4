"""The fast canonical-JSON path must agree byte for byte with the rfc8785 reference."""

from __future__ import annotations

import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from redline.crypto.canonical import canonical_json
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
def test_fast_path_matches_reference(value):
    assert _ours(value) == _reference(value)


def test_known_answers():
    assert canonical_json({"b": 1.0, "a": [1e21, 1e-7, 0.5]}) == b'{"a":[1e+21,1e-7,0.5],"b":1}'
    assert canonical_json({"\U0001f600": 1, "\ue000": 2}) == '{"\U0001f600":1,"\ue000":2}'.encode()
