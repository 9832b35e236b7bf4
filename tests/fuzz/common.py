"""Shared pieces of the fuzz harnesses: the example budget, byte and JSON mutators, and the outcome check.

Every harness asserts one thing first: a parser of untrusted input either returns a value
or raises a :class:`~redline.errors.RedlineError`; any other exception fails the test.
``make test`` runs each harness for a few hundred derandomised examples; ``make fuzz``
(``REDLINE_FUZZ=1``) runs each for tens of thousands of fresh random ones
(``REDLINE_FUZZ_EXAMPLES`` overrides the count).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from redline.errors import RedlineError

FUZZING = os.environ.get("REDLINE_FUZZ", "") not in ("", "0")
FUZZ_EXAMPLES = int(os.environ.get("REDLINE_FUZZ_EXAMPLES", "20000"))


def fuzz_settings(examples: int = 200, *, fuzz_share: float = 1.0) -> settings:
    """``examples`` derandomised examples under ``make test``; under ``make fuzz`` ``FUZZ_EXAMPLES × fuzz_share``
    random ones (slow parsers take a share below 1)."""
    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
             HealthCheck.large_base_example]
    if FUZZING:
        return settings(max_examples=max(examples, int(FUZZ_EXAMPLES * fuzz_share)), deadline=None,
                        derandomize=False, suppress_health_check=quiet, print_blob=True)
    return settings(max_examples=examples, deadline=None, suppress_health_check=quiet)


def outcome(parse: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """``("ok", value)`` or ``("error", class name, message)``; any exception but a ``RedlineError`` propagates."""
    try:
        return ("ok", parse(*args, **kwargs))
    except RedlineError as exc:
        return ("error", type(exc).__name__, str(exc))


def ok(result: tuple[Any, ...]) -> bool:
    """Whether an :func:`outcome` is a parsed value."""
    return result[0] == "ok"


# --- byte-level mutation ---------------------------------------------------------------------

#: Tokens worth splicing into text formats: structure, numbers at the edges, odd Unicode, encodings.
TOKENS: tuple[bytes, ...] = (
    b"", b"\n", b"\n\n", b"\r\n", b" ", b"\t", b"\x00", b"\x7f", b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xa8",
    b"\xef\xbb\xbf", b"\xf0\x9f\x98\x80", "\u2014 ".encode(), b'"', b"\\", b"\\u0000", b"\\ud800", b"\\udfff",
    b"{", b"}", b"[", b"]", b",", b":", b"=", b"+", b"-", b"#", b"/", b".p/", b"x",
    b"0", b"00", b"-0", b"1e400", b"-1e400", b"1e-400", b"9007199254740993", b"18446744073709551616",
    b"9" * 40, b"9" * 5000, b"1." + b"0" * 400, b"NaN", b"Infinity", b"null", b"true", b"false",
    b'"a":1,', b'"a":1', b"[" * 2000, b"[" * 50_000, b"{\"a\":" * 2000, b"\xd9\xa1", b"AAAA", b"====", b"QUFBQQ==",
)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes], tokens: Sequence[bytes] = TOKENS, max_ops: int = 4) -> bytes:
    """One of ``seeds`` after 1..``max_ops`` random edits: bit flips, byte replacements, token insertions,
    deletions, truncations, duplicated ranges and splices with another seed."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_ops))):
        n = len(data)
        op = draw(st.sampled_from(["flip", "byte", "insert", "replace", "delete", "truncate", "dup", "splice"]))
        i = draw(st.integers(0, n))
        if op == "flip" and n:
            i = min(i, n - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and n:
            data[min(i, n - 1)] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.sampled_from(list(tokens)) | st.binary(max_size=8))
        elif op == "replace" and n:
            j = draw(st.integers(i, min(n, i + 16)))
            data[i:j] = draw(st.sampled_from(list(tokens)))
        elif op == "delete" and n:
            del data[i:draw(st.integers(i, min(n, i + 32)))]
        elif op == "truncate":
            del data[i:]
        elif op == "dup" and n:
            j = draw(st.integers(i, min(n, i + 64)))
            data[j:j] = data[i:j]
        elif op == "splice":
            other = draw(st.sampled_from(list(seeds)))
            data[i:] = other[draw(st.integers(0, len(other))):]
    return bytes(data)


def mutated_text(seeds: Sequence[str], tokens: Sequence[bytes] = TOKENS, max_ops: int = 4) -> st.SearchStrategy[str]:
    """:func:`mutated` of UTF-8 text seeds, decoded back to text (undecodable bytes become U+FFFD or lone
    surrogates, both of which a text parser must refuse or take)."""
    return st.builds(lambda b, how: b.decode("utf-8", "surrogateescape") if how else b.decode("utf-8", "replace"),
                     mutated([s.encode("utf-8") for s in seeds], tokens, max_ops), st.booleans())


# --- JSON-level mutation ----------------------------------------------------------------------

#: Values to put in place of any JSON value: wrong types, numbers at the edges, Unicode at the edges.
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**53 - 1, 2**53, 2**53 + 1, 2**63, -(2**63) - 1, 2**64, 10**30, 1.5, -0.0,
    1e308, 5e-324, 1e-7, "", "a", "\x00", "\u2028", "\U0001f600", "\ufeff", "x" * 5000, "0", "-1", "1e400", "NaN",
    [], {}, [None], {"": None}, [[[[[[]]]]]], "2027-01-15T08:00:00Z", "2027-01-15T08:00:00+01:00",
    "2027-13-45T08:00:00Z", "ab" * 32, "AB" * 32,
)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*path, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*path, i)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        if isinstance(value, dict):
            return {k: (_delete(v, rest) if k == head else v) for k, v in value.items()}
        return [(_delete(v, rest) if i == head else v) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != head}
    return [v for i, v in enumerate(value) if i != head]


@st.composite
def mutated_json(draw: st.DrawFn, seeds: Sequence[Any], max_ops: int = 3) -> Any:
    """A JSON value from ``seeds`` with 1..``max_ops`` structural edits: a value replaced by an odd one or by a
    copy of another, a key or list item deleted, a key added, a value wrapped in lists."""
    value = draw(st.sampled_from(list(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        paths = _paths(value)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["odd", "odd", "copy", "delete", "add", "wrap"]))
        if op == "odd":
            value = _replace(value, path, draw(st.sampled_from(ODD_VALUES)))
        elif op == "copy":
            other = draw(st.sampled_from(paths))
            sub = value
            for p in other:
                sub = sub[p]
            value = _replace(value, path, sub)
        elif op == "delete" and path:
            value = _delete(value, path)
        elif op == "add":
            target = value
            for p in path:
                target = target[p]
            if isinstance(target, dict):
                key = draw(st.sampled_from(["extra", "", "\u00e9", "__proto__"]) | st.text(max_size=5))
                value = _replace(value, path, {**target, key: draw(st.sampled_from(ODD_VALUES))})
            elif isinstance(target, list):
                value = _replace(value, path, [*target, draw(st.sampled_from(ODD_VALUES))])
        elif op == "wrap":
            sub = value
            for p in path:
                sub = sub[p]
            value = _replace(value, path, [sub])
    return value


def dumps(value: Any, *, canonical: bool = True) -> bytes:
    """``value`` as JSON bytes: RFC 8785 canonical where it can be, else the stdlib's compact form."""
    if canonical:
        from redline.crypto.canonical import canonical_json

        try:
            return canonical_json(value)
        except RedlineError:
            pass
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def json_bytes(draw: st.DrawFn, seeds: Sequence[Any]) -> bytes:
    """JSON documents near ``seeds``: structurally mutated, then sometimes byte-mutated as well."""
    doc = dumps(draw(mutated_json(seeds)), canonical=draw(st.booleans()))
    if draw(st.integers(0, 3)) == 0:
        doc = draw(mutated([doc], max_ops=2))
    return doc
