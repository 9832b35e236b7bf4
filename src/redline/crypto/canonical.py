"""RFC 8785 JSON Canonicalization Scheme (JCS) for everything redline hashes or signs.

The reference serialisation is the ``rfc8785`` package's; values redline signs take a fast
path (``orjson``, else the stdlib's C encoder) on a copy prepared so that it writes exactly
what the reference writes. This module adds the strict parsing side (duplicate keys,
non-finite numbers and oversized input are refused) and the SHA-256 digest of a value's
canonical form.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Generator, Iterable
from typing import Any

import orjson
import rfc8785

from redline.errors import InputTooLarge, MalformedInput, NonCanonicalJSON

#: Upper bound on JSON documents redline parses from untrusted sources.
MAX_JSON_BYTES = 1 << 20
#: Largest integer magnitude an IEEE 754 double holds exactly (RFC 8785 numbers are doubles).
MAX_SAFE_INTEGER = 2**53 - 1
#: Integers from this magnitude on do not fit 64 bits (``orjson`` writes them through ``_Digits``).
_INT64 = 2**63


_FAST = json.JSONEncoder(ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))


def _make_encode() -> Callable[[Any], str]:
    """``_FAST.encode`` for the trees ``_prepare`` makes, without building a C encoder on every call."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C accelerator
        return _FAST.encode
    # No circular-reference markers: the trees encoded here are made fresh (a cycle never gets this far).
    encoder = make(None, _FAST.default, json.encoder.encode_basestring, None, ":", ",", True, False, False)

    def encode(value: Any) -> str:
        return "".join(encoder(value, 0))

    return encode


_encode = _make_encode()


class _NeedsSlowPath(Exception):
    """The value holds something only the reference serialiser formats correctly."""


class _Digits(int):
    """An integer beyond 64 bits (an integral double from 2**63 up to 1e21, as ECMAScript writes it), which
    ``orjson`` writes through :func:`_fragment`; the stdlib encoder writes any ``int`` the same way."""

    __slots__ = ()


class _Small(float):
    """A double of magnitude below 1e-4 (not zero), which ``orjson`` writes as ECMAScript does through
    :func:`_fragment` (Python's ``repr`` turns to an exponent sooner, and writes it with a leading zero); the stdlib
    encoder cannot, so a tree holding one takes the reference serialiser where ``orjson`` refuses it."""

    __slots__ = ()


def _small_text(value: float) -> str:
    """ECMAScript's Number-to-String of a finite double of magnitude below 1e-4 (ECMA-262 §6.1.6.1.20).

    The digits are ``repr``'s (both are the shortest that read back as the double, the closest when several
    are); only where the point goes and how the exponent is written differ.
    """
    mantissa, _, exponent = repr(value).partition("e")
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    n = int(exponent) + 1  # the value is 0.digits × 10**n
    if n > -6:
        return f"{sign}0.{'0' * -n}{digits}"
    return f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}e-{-(n - 1)}"


def _fragment(value: Any) -> orjson.Fragment:
    """What ``orjson`` writes for the subclasses ``_prepare`` makes: their ECMAScript text, as it is."""
    if type(value) is _Digits:
        return orjson.Fragment(int.__repr__(value).encode("ascii"))
    if type(value) is _Small:
        return orjson.Fragment(_small_text(float(value)).encode("ascii"))
    raise TypeError(f"{type(value).__name__} is not written by the fast path")


def _holds_small(value: Any) -> bool:
    """Whether a prepared tree holds a ``_Small`` (without recursion: the tree may be nested deeply)."""
    todo = [value]
    while todo:
        v = todo.pop()
        t = type(v)
        if t is _Small:
            return True
        if t is dict:
            todo.extend(v.values())
        elif t is list:
            todo.extend(v)
    return False


#: Keys sorted (by UTF-8 bytes: code-point order, which is UTF-16 order for the keys ``_prepare`` lets
#: through), compact; exact types only (the subclasses ``_prepare`` makes, ``_Digits`` and ``_Small``, go to
#: ``_fragment``).
_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _encode_bytes(value: Any) -> bytes:
    """The UTF-8 JSON text of a tree ``_prepare`` made: ``orjson``, which writes such trees exactly as the stdlib
    encoder does (same escapes, same float digits, keys in the same order), about four times as fast, and
    small doubles as ECMAScript does; where ``orjson`` refuses (nesting beyond its 255 levels, a lone
    surrogate), the stdlib encoder (which then raises ``UnicodeEncodeError`` for the surrogate), or
    ``_NeedsSlowPath`` for a tree holding a small double, which only the reference writes then."""
    try:
        return orjson.dumps(value, default=_fragment, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        if _holds_small(value):
            raise _NeedsSlowPath from None
        return _encode(value).encode("utf-8")


def _prepare(value: Any) -> Any:
    """A copy of ``value`` that the stdlib encoder serialises exactly as RFC 8785 does.

    The stdlib's C encoder matches RFC 8785 for strings (it escapes the same
    characters the same way with ``ensure_ascii=False``), integers and dict
    ordering — except for keys outside the Basic Multilingual Plane, which RFC
    8785 orders by UTF-16 code units. Floats differ only where Python's ``repr``
    and ECMAScript's Number-to-String disagree: integral values below 1e21 (``1.0`` vs
    ``1``, ``1e+20`` vs ``100000000000000000000``), which become the ints ECMAScript
    prints, and magnitudes below 1e-4 (``1e-05`` vs ``0.00001``, ``1e-07`` vs ``1e-7``),
    which ``orjson`` writes as ECMAScript does (``_Small``).
    """
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise _NeedsSlowPath  # the reference refuses it: a double cannot hold it exactly
        return value
    if t is float:
        return _float(value)
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NeedsSlowPath
            if not k.isascii() and any(ord(ch) > 0xFFFF for ch in k):
                raise _NeedsSlowPath
            # Strings, null and booleans (most values) are written as they are: no call for them.
            tv = type(v)
            out[k] = v if tv is str or v is None or tv is bool else _prepare(v)
        return out
    if t is list or t is tuple:
        return [v if type(v) is str else _prepare(v) for v in value]
    raise _NeedsSlowPath


def _float(value: float) -> float | int:
    """A finite float as the stdlib encoder must see it to write what ECMAScript writes (see ``_prepare``)."""
    if not math.isfinite(value):
        raise _NeedsSlowPath
    if value.is_integer():
        magnitude = abs(value)
        if magnitude < 1e16:  # below 2^54 every integer is a double, so the digits are exact
            return int(value)
        if magnitude < 1e21:  # ECMAScript writes the shortest digits padded with zeros, no exponent
            mantissa, _, exponent = repr(magnitude).partition("e")
            digits = mantissa.replace(".", "")
            padded = int(digits + "0" * (int(exponent) + 1 - len(digits)))
            padded = padded if value > 0 else -padded
            return padded if -_INT64 <= padded < _INT64 else _Digits(padded)
        return value
    if abs(value) < 1e-4:
        return _Small(value)
    return value


def _prepare_owned(value: dict[Any, Any] | list[Any]) -> None:
    """``_prepare`` in place, on a tree the caller owns: what ``_prepare`` would copy, changed where it stands."""
    if type(value) is dict:
        for k in value:
            if type(k) is not str or (not k.isascii() and any(ord(ch) > 0xFFFF for ch in k)):
                raise _NeedsSlowPath
        items: Iterable[tuple[Any, Any]] = value.items()
    else:
        items = enumerate(value)
    for k, v in items:
        t = type(v)
        if t is str or v is None or t is bool:
            continue
        if t is int:
            if v > MAX_SAFE_INTEGER or v < -MAX_SAFE_INTEGER:
                raise _NeedsSlowPath
        elif t is float:
            value[k] = _float(v)
        elif t is dict or t is list:
            _prepare_owned(v)
        else:
            raise _NeedsSlowPath


def canonical_json_owned(value: dict[str, Any]) -> bytes | None:
    """``canonical_json(value)`` for a fresh tree that the caller owns and gives up (it is changed in place).

    None where the fast path cannot tell (``canonical_json`` asks the reference serialiser then):
    the same bytes as ``canonical_json`` whenever it gives bytes, without copying the tree.
    """
    try:
        _prepare_owned(value)
        return _encode_bytes(value)
    except (_NeedsSlowPath, UnicodeEncodeError, ValueError, RecursionError):
        return None


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of a JSON-compatible value.

    A fast path (``orjson``, or the stdlib's C encoder, on a prepared copy) covers the
    values redline signs; anything it cannot format identically goes to the ``rfc8785``
    reference implementation (property tests check that they agree).
    """
    try:
        return _encode_bytes(_prepare(value))
    except _NeedsSlowPath:
        pass
    except (UnicodeEncodeError, ValueError, RecursionError):
        pass
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise NonCanonicalJSON(f"value cannot be canonicalised: {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise NonCanonicalJSON(f"value is not JSON-compatible: {exc}") from exc


def canonical_digest(value: Any) -> str:
    """Lower-case hex SHA-256 of the value's canonical JSON."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def canonical_digest_spread(value: Any, spread: int = 1) -> str:
    """``canonical_digest(value)``, hashing the canonical JSON piece by piece: the containers of the top ``spread``
    levels are written member by member (a generator stands for a list), each member below them with
    ``canonical_json``. RFC 8785 text is compositional (no whitespace; each object's keys in UTF-16 order), so
    the bytes hashed are exactly ``canonical_json(value)``'s, without ever holding them, or a copy of the whole
    tree, at once: what a large state needs."""
    h = hashlib.sha256()
    _write_spread(h.update, value, spread)
    return h.hexdigest()


def _write_spread(write: Callable[[bytes], Any], value: Any, spread: int) -> None:
    if spread > 0 and type(value) is dict:
        for k in value:
            if type(k) is not str:
                raise NonCanonicalJSON(f"value is not JSON-compatible: object key {k!r} is not a string")
        write(b"{")
        for i, k in enumerate(sorted(value, key=_utf16)):
            write((b"," if i else b"") + canonical_json(k) + b":")
            _write_spread(write, value[k], spread - 1)
        write(b"}")
    elif spread > 0 and (type(value) is list or type(value) is tuple or isinstance(value, Generator)):
        write(b"[")
        for i, item in enumerate(value):
            if i:
                write(b",")
            _write_spread(write, item, spread - 1)
        write(b"]")
    else:
        write(canonical_json(value))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key in out:
            raise MalformedInput(f"duplicate JSON object key {key!r}")
        out[key] = val
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedInput(f"non-finite JSON number {name} is not allowed")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise MalformedInput(f"JSON number {text[:40]} overflows a double")
    return value


def _parse_int(text: str) -> int | float:
    # Beyond 2^53 an integer is read as the double it denotes, as RFC 8785 reads every number:
    # the canonical form of the double 1e20 is "100000000000000000000", which must parse back.
    if len(text) <= 17:
        value = int(text)
        if abs(value) <= MAX_SAFE_INTEGER:
            return value
    return _parse_float(text)


def parse_json(data: bytes | str, *, what: str = "JSON document", limit: int = MAX_JSON_BYTES) -> Any:
    """Parse untrusted JSON strictly: bounded size, no duplicate keys, no NaN/Infinity.

    Integers beyond ±(2^53 − 1) come back as floats (the doubles RFC 8785 reads them as),
    so whatever parses can be put back in canonical form.
    """
    size = len(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    if size > limit:
        raise InputTooLarge(f"{what} is {size} bytes, over the limit of {limit}", size=size, limit=limit)
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant,
                          parse_float=_parse_float, parse_int=_parse_int)
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"{what} is not valid UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"{what} is not valid JSON: {exc}") from exc
    except (ValueError, RecursionError) as exc:  # e.g. integers over Python's digit limit, deep nesting
        raise MalformedInput(f"{what} cannot be parsed: {exc}") from exc
