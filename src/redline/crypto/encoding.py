"""Strict base64 and hex decoding: one byte string has exactly one accepted encoding.

Python's decoders accept non-zero padding bits and other slack, so a one-bit change
in an encoded signature could decode to the same bytes; redline re-encodes and
compares, so every accepted text is canonical.
"""

from __future__ import annotations

import base64
import binascii

from redline.errors import MalformedInput


def b64encode(data: bytes) -> str:
    """Standard base64 (RFC 4648 §4) with padding."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str | bytes, *, what: str) -> bytes:
    """Decode canonical standard base64 or raise ``MalformedInput`` naming ``what``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedInput(f"{what} is not base64 (non-ASCII bytes)") from exc
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedInput(f"{what} is not valid base64: {exc}") from exc
    if base64.b64encode(data).decode("ascii") != text:
        raise MalformedInput(f"{what} is not canonical base64")
    return data


def hexdecode(text: str, *, what: str, length: int | None = None) -> bytes:
    """Decode lower-case hex, optionally of an exact byte length."""
    if text != text.lower():
        raise MalformedInput(f"{what} must be lower-case hex")
    try:
        data = bytes.fromhex(text)
    except ValueError as exc:
        raise MalformedInput(f"{what} is not valid hex: {exc}") from exc
    if data.hex() != text:
        raise MalformedInput(f"{what} is not canonical hex")
    if length is not None and len(data) != length:
        raise MalformedInput(f"{what} must be {length} bytes, got {len(data)}")
    return data
