"""DSSE envelopes (github.com/secure-systems-lab/dsse v1) carrying in-toto Statement v1.

The signature covers the pre-authentication encoding
``"DSSEv1" SP len(type) SP type SP len(body) SP body``. Statements are serialised
with RFC 8785 canonical JSON, so one statement has one payload and one digest.

Reading is in two strengths. ``Envelope.from_json`` is strict: exactly the three
fields, ``keyid`` and ``sig`` in every signature, canonical standard base64; it reads
what redline logs. ``Envelope.from_json_lenient`` reads whatever the DSSE spec allows
(``keyid`` missing or empty, unknown fields, URL-safe or unpadded base64); the registry
uses it for submissions and logs ``to_json()`` of the result, never the bytes received.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pybase64

from redline.crypto.canonical import canonical_json, parse_json
from redline.crypto.encoding import b64decode, b64encode, hexdecode
from redline.crypto.keys import SigningKey, VerifierKey
from redline.errors import BadSignature, InputTooLarge, MalformedInput, UnknownKey

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: Largest envelope accepted; log entries are bounded below this anyway.
MAX_ENVELOPE_BYTES = 64 * 1024
MAX_SIGNATURES = 16


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class EnvelopeSignature:
    """One DSSE signature: the signer's key ID and the raw signature."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: payload bytes, payload type and signatures."""

    payload: bytes
    payload_type: str
    signatures: tuple[EnvelopeSignature, ...]

    def to_dict(self) -> dict[str, Any]:
        """The envelope's JSON object."""
        return {
            "payload": b64encode(self.payload),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": s.keyid, "sig": b64encode(s.sig)} for s in self.signatures],
        }

    def to_json(self) -> bytes:
        """Canonical JSON bytes of the envelope: what goes into the log."""
        return canonical_json(self.to_dict())

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the canonical envelope bytes."""
        return hashlib.sha256(self.to_json()).hexdigest()

    @classmethod
    def from_json(cls, data: bytes) -> Envelope:
        """Parse envelope JSON strictly (exact fields, canonical base64, bounded size)."""
        if len(data) > MAX_ENVELOPE_BYTES:
            raise InputTooLarge(f"envelope is {len(data)} bytes, over the limit of {MAX_ENVELOPE_BYTES}",
                                size=len(data), limit=MAX_ENVELOPE_BYTES)
        env = _from_canonical_json(data)
        if env is not None:
            return env
        obj = parse_json(data, what="DSSE envelope")
        return cls.from_dict(obj)

    @classmethod
    def from_json_lenient(cls, data: bytes) -> Envelope:
        """Parse envelope JSON as the DSSE spec allows it (bounded size); ``to_json()`` gives redline's form.

        Accepted beyond ``from_json``: ``keyid`` missing (read as ``""``) or empty, unknown
        fields at the top level and in signatures (ignored, as the spec asks of consumers),
        standard or URL-safe base64 with or without padding. The payload bytes are exactly
        those encoded; only their encoding changes when the envelope is written again.
        """
        if len(data) > MAX_ENVELOPE_BYTES:
            raise InputTooLarge(f"envelope is {len(data)} bytes, over the limit of {MAX_ENVELOPE_BYTES}",
                                size=len(data), limit=MAX_ENVELOPE_BYTES)
        env = _from_canonical_json(data)
        if env is not None:
            return env
        return cls.from_dict(parse_json(data, what="DSSE envelope"), lenient=True)

    @classmethod
    def from_dict(cls, obj: Any, *, lenient: bool = False) -> Envelope:
        """Build an envelope from its parsed JSON object: strictly, or as ``from_json_lenient`` reads."""
        if not isinstance(obj, dict):
            raise MalformedInput("DSSE envelope must be a JSON object")
        extra = set(obj) - {"payload", "payloadType", "signatures"}
        if extra and not lenient:
            raise MalformedInput(f"DSSE envelope has unknown field(s): {', '.join(sorted(extra))}")
        for name, typ in (("payload", str), ("payloadType", str), ("signatures", list)):
            if not isinstance(obj.get(name), typ):
                raise MalformedInput(f"DSSE envelope field '{name}' is missing or not a {typ.__name__}")
        decode = _b64decode_lenient if lenient else b64decode
        payload = decode(obj["payload"], what="DSSE envelope field 'payload'")
        sigs_in = obj["signatures"]
        if not sigs_in:
            raise MalformedInput("DSSE envelope has no signatures")
        if len(sigs_in) > MAX_SIGNATURES:
            raise InputTooLarge(f"DSSE envelope has {len(sigs_in)} signatures, over {MAX_SIGNATURES}",
                                size=len(sigs_in), limit=MAX_SIGNATURES)
        sigs = []
        for i, s in enumerate(sigs_in):
            if lenient:
                if not isinstance(s, dict) or "sig" not in s:
                    raise MalformedInput(f"DSSE signature {i} must be an object with a 'sig' field")
                keyid = s.get("keyid", "")
            else:
                if not isinstance(s, dict) or set(s) != {"keyid", "sig"}:
                    raise MalformedInput(f"DSSE signature {i} must have exactly the fields 'keyid' and 'sig'")
                keyid = s["keyid"]
            if not isinstance(keyid, str) or not isinstance(s["sig"], str):
                raise MalformedInput(f"DSSE signature {i} fields must be strings")
            sigs.append(EnvelopeSignature(keyid, decode(s["sig"], what=f"DSSE signature {i} 'sig'")))
        return cls(payload, obj["payloadType"], tuple(sigs))

    def verify(self, keys: Iterable[VerifierKey]) -> VerifierKey:
        """Return the first known key whose signature verifies; a bad known signature is an error."""
        by_id = {k.fingerprint: k for k in keys}
        message = pae(self.payload_type, self.payload)
        for i, s in enumerate(self.signatures):
            key = by_id.get(s.keyid)
            if key is None:
                continue
            try:
                key.verify(message, s.sig)
            except BadSignature as exc:
                raise BadSignature(f"DSSE signature {i} by key {key.name!r} does not verify", key_name=key.name,
                                   key_id=key.fingerprint) from exc
            return key
        raise UnknownKey("DSSE envelope has no signature from a known key "
                         f"(key IDs: {', '.join(s.keyid[:16] for s in self.signatures)})")


_URL_SAFE = str.maketrans("-_", "+/")


def _b64decode_lenient(text: str, *, what: str) -> bytes:
    """Decode standard or URL-safe base64 (RFC 4648 §4 or §5), padded or not, as DSSE allows.

    One alphabet per text, padding absent or exactly right, zero padding bits, no whitespace:
    each byte string still has just four accepted spellings, and all mean the same bytes.
    """
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise MalformedInput(f"{what} mixes the standard and the URL-safe base64 alphabets")
        text = text.translate(_URL_SAFE)
    unpadded = text.rstrip("=")
    pad = -len(unpadded) % 4
    if pad == 3 or len(text) - len(unpadded) not in (0, pad):
        raise MalformedInput(f"{what} is not valid base64 (wrong length or padding)")
    return b64decode(unpadded + "=" * pad, what=what)


def _b64(raw: bytes) -> bytes | None:
    """``b64decode`` of canonical base64 bytes (what every accepted text is), else None.

    Decoded with ``pybase64`` (SIMD: about three times the stdlib's speed on a statement's payload),
    then encoded again: only the one canonical text of the bytes it gives is accepted, so whatever
    slack a decoder allows, the result is exactly the strict decoder's.
    """
    try:
        data = pybase64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return None
    return data if pybase64.b64encode(data) == raw else None


def _text(raw: bytes) -> str | None:
    """The JSON string whose canonical body is ``raw`` (no quote, backslash or control byte), else None."""
    if _NEEDS_ESCAPE.search(raw):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


_NEEDS_ESCAPE = re.compile(rb'["\\\x00-\x1f]')


def _from_canonical_json(data: bytes) -> Envelope | None:
    """The envelope, when ``data`` is exactly as ``to_json`` writes a valid envelope; else None.

    That form is ``{"payload":"…","payloadType":"…","signatures":[{"keyid":"…","sig":"…"},…]}``
    with canonical base64 and strings that need no escape: RFC 8785 output, so the strict
    parser reads the same object from it (no duplicate keys, nothing to unescape), and it
    passes every check of ``from_dict``. Anything else is left to ``parse_json`` and
    ``from_dict``, which decide and name the problem.
    """
    if not data.startswith(b'{"payload":"') or not data.endswith(b'"}]}'):
        return None
    end = data.find(b'","payloadType":"', 12)
    if end < 0:
        return None
    payload = _b64(data[12:end])
    start = end + 17
    end = data.find(b'","signatures":[{"keyid":"', start)
    if payload is None or end < 0:
        return None
    payload_type = _text(data[start:end])
    if payload_type is None:
        return None
    sigs = []
    for part in data[end + 26:-4].split(b'"},{"keyid":"'):
        keyid, sep, sig_b64 = part.partition(b'","sig":"')
        text = _text(keyid)
        sig = _b64(sig_b64) if sep else None
        if text is None or sig is None:
            return None
        sigs.append(EnvelopeSignature(text, sig))
    if len(sigs) > MAX_SIGNATURES:
        return None
    return Envelope(payload, payload_type, tuple(sigs))


def sign_envelope(payload: bytes, key: SigningKey, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Envelope:
    """Sign ``payload`` in a DSSE envelope with ``key``."""
    sig = key.sign(pae(payload_type, payload))
    return Envelope(payload, payload_type, (EnvelopeSignature(key.verifier().fingerprint, sig),))


def make_statement(subjects: Iterable[tuple[str, Mapping[str, str]]], predicate_type: str,
                   predicate: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 as a plain JSON object."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": dict(digest)} for name, digest in subjects],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def sign_statement(statement: Mapping[str, Any], key: SigningKey) -> Envelope:
    """Validate an in-toto statement, canonicalise it and sign it in an envelope."""
    validate_statement(statement)
    return sign_envelope(canonical_json(statement), key)


_DIGEST_LENGTHS = {"sha256": 32, "sha512": 64, "blake3": 32}


#: The fields of an in-toto Statement v1; the spec asks consumers to ignore any others.
STATEMENT_FIELDS = frozenset({"_type", "subject", "predicateType", "predicate"})


def validate_statement(obj: Any, *, unknown_fields: bool = False) -> dict[str, Any]:
    """Check the in-toto Statement v1 shape; return the object.

    Unknown top-level fields are refused unless ``unknown_fields`` (reading a signed statement: the spec
    asks consumers to ignore them); what redline signs has exactly the four fields.
    """
    if not isinstance(obj, dict):
        raise MalformedInput("in-toto statement must be a JSON object")
    extra = set(obj) - STATEMENT_FIELDS
    if extra and not unknown_fields:
        raise MalformedInput(f"in-toto statement has unknown field(s): {', '.join(sorted(extra))}")
    if obj.get("_type") != STATEMENT_TYPE:
        raise MalformedInput(f"in-toto statement field '_type' must be {STATEMENT_TYPE!r}")
    if not isinstance(obj.get("predicateType"), str) or not obj["predicateType"]:
        raise MalformedInput("in-toto statement field 'predicateType' must be a non-empty string")
    if not isinstance(obj.get("predicate"), dict):
        raise MalformedInput("in-toto statement field 'predicate' must be an object")
    subjects = obj.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise MalformedInput("in-toto statement field 'subject' must be a non-empty list")
    for i, s in enumerate(subjects):
        if not isinstance(s, dict) or set(s) - {"name", "digest"} or not isinstance(s.get("digest"), dict):
            raise MalformedInput(f"in-toto statement subject {i} must have 'name' and 'digest'")
        if not isinstance(s.get("name", ""), str):
            raise MalformedInput(f"in-toto statement subject {i} 'name' must be a string")
        if not s["digest"]:
            raise MalformedInput(f"in-toto statement subject {i} has an empty digest")
        for alg, val in s["digest"].items():
            if not isinstance(val, str):
                raise MalformedInput(f"in-toto statement subject {i} digest {alg} must be a string")
            if alg in _DIGEST_LENGTHS:
                hexdecode(val, what=f"in-toto statement subject {i} digest {alg}", length=_DIGEST_LENGTHS[alg])
    return obj


def open_statement(envelope: Envelope, keys: Iterable[VerifierKey]) -> tuple[dict[str, Any], VerifierKey]:
    """Verify an envelope and parse its in-toto statement; return it (unknown fields and all) and the signer.

    The payload must be the RFC 8785 form of the statement, unknown top-level fields included.
    """
    signer = envelope.verify(keys)
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedInput(f"DSSE payloadType is {envelope.payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    statement = validate_statement(parse_json(envelope.payload, what="in-toto statement"), unknown_fields=True)
    if canonical_json(statement) != envelope.payload:
        raise MalformedInput("in-toto statement payload is not in RFC 8785 canonical form")
    return statement, signer


# --- verification ahead of time (the helper processes of ``redline.engine.parallel``) --------


def verified_keyids(env: Envelope, keys: Mapping[str, VerifierKey]) -> list[str]:
    """The key IDs, in order, whose first signature in ``env`` verifies with the key of that ID in ``keys``.

    The first signature with a key ID is the one ``Envelope.verify`` decides on for that key;
    IDs that ``keys`` lacks are passed over (and their signatures not checked).
    """
    sigs = env.signatures
    if len(sigs) == 1:  # the usual case
        key = keys.get(sigs[0].keyid)
        if key is None:
            return []
        try:
            key.verify(pae(env.payload_type, env.payload), sigs[0].sig)
        except BadSignature:
            return []
        return [sigs[0].keyid]
    verified: list[str] = []
    seen: set[str] = set()
    message = None
    for s in sigs:
        if s.keyid in seen:
            continue
        seen.add(s.keyid)
        key = keys.get(s.keyid)
        if key is None:
            continue
        if message is None:
            message = pae(env.payload_type, env.payload)
        try:
            key.verify(message, s.sig)
        except BadSignature:
            continue
        verified.append(s.keyid)
    return verified

