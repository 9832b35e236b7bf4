"""C2SP signed notes (c2sp.org/signed-note), byte-compatible with Go's ``sumdb/note``.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``— <key name> <base64(key ID || signature)>``. Parsing accepts what the
spec and Go's ``note.Open`` accept: valid UTF-8 with no control character below
U+0020 but newline (U+007F is allowed), the text and signatures split at the last
blank line (so the text may hold blank lines), key names non-empty with no space
and no ``+``, a bounded size and signature count. Signing is stricter: redline
writes no blank line and no U+007F. Verification ignores signatures from unknown
keys and fails if a known key's signature is bad.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from redline.crypto.encoding import b64decode, b64encode
from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from redline.errors import BadSignature, InputTooLarge, MalformedInput, MalformedKey, UnknownKey

#: Largest note accepted, text and signatures together.
MAX_NOTE_BYTES = 1 << 20
#: Most signature lines accepted (the standard asks verifiers to take at least 16).
MAX_SIGNATURES = 100

EM_DASH = "\u2014"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, with its final newline."""
        return f"{EM_DASH} {self.name} {b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    """A parsed note: its text and every signature line, verified or not."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def encode(self) -> bytes:
        """The note's exact bytes."""
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode("utf-8")


def _check_text(text: str, what: str) -> None:
    """What redline writes: no control character but newline, no U+007F, no surrogate."""
    for i, ch in enumerate(text):
        o = ord(ch)
        if (o < 0x20 and ch != "\n") or o == 0x7F or 0xD800 <= o <= 0xDFFF:
            raise MalformedInput(f"{what} contains control character U+{o:04X} at offset {i}")


#: What a note may not contain (c2sp.org/signed-note: "MUST NOT contain any ASCII control characters (those below
#: U+0020) other than newline"; Go's note.Open: ``r < 0x20 && r != '\n'``). U+007F is allowed by both.
_NOTE_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")


def _check_note_chars(whole: str) -> None:
    found = _NOTE_CONTROL.search(whole)
    if found is not None:
        raise MalformedInput(f"note contains control character U+{ord(found.group()):04X} at offset {found.start()}")


def _valid_signer_name(name: str) -> bool:
    """Go's ``isValidName``: non-empty, no Unicode space (``unicode.IsSpace``), no ``+``.

    Python's ``str.isspace`` and Go's ``unicode.IsSpace`` agree on every character from U+0020 up, and the
    note holds no control character below it.
    """
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def sign_note(text: str, *keys: SigningKey) -> bytes:
    """Sign ``text`` (which must end in a newline) with each key; return the note bytes."""
    if not keys:
        raise MalformedKey("sign_note needs at least one key")
    _validate_text(text)
    msg = text.encode("utf-8")
    sigs = tuple(NoteSignature(k.name, k.key_id, k.sign(msg)) for k in keys)
    return Note(text, sigs).encode()


def add_signatures(note: bytes, *sigs: NoteSignature) -> bytes:
    """Append signature lines to an already-signed note (e.g. witness cosignatures)."""
    parsed = parse_note(note)
    return Note(parsed.text, parsed.signatures + tuple(sigs)).encode()


def validate_note_text(text: str) -> None:
    """Raise ``MalformedInput`` unless ``text`` is note text redline signs (ends in a newline, no blank line, no
    control character but newlines)."""
    _validate_text(text)


def _validate_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedInput("note text must end in a newline")
    if "\n\n" in text or text.startswith("\n"):
        raise MalformedInput("note text must not contain a blank line")
    _check_text(text, "note text")


def parse_note(data: bytes) -> Note:
    """Parse note bytes as c2sp.org/signed-note and Go's ``note.Open`` do, without checking any signature.

    The text is everything up to and including the newline before the LAST blank line (Go:
    ``bytes.LastIndex(msg, "\n\n")``), so it may itself hold blank lines; U+007F is allowed, other
    control characters but newline are not, the whole note is valid UTF-8 (Python's decoder, like Go's,
    refuses encoded surrogates and overlong forms). Signature lines must be canonical base64 (Go also
    takes non-zero padding bits, which no encoder writes).
    """
    if len(data) > MAX_NOTE_BYTES:
        raise InputTooLarge(f"note is {len(data)} bytes, over the limit of {MAX_NOTE_BYTES}")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"note is not valid UTF-8 (byte {exc.start})") from exc
    _check_note_chars(whole)
    split = whole.rfind("\n\n")
    if split < 0:
        raise MalformedInput("note has no blank line before its signatures")
    text, sig_block = whole[: split + 1], whole[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise MalformedInput("note signature block is empty or does not end in a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InputTooLarge(f"note has {len(lines)} signatures, over the limit of {MAX_SIGNATURES}")
    sigs = []
    for n, line in enumerate(lines, start=1):
        if not line.startswith(EM_DASH + " "):
            raise MalformedInput(f"note signature line {n} does not start with an em dash and a space")
        rest = line[2:]
        parts = rest.split(" ")
        if len(parts) != 2:
            raise MalformedInput(f"note signature line {n} is not '— <name> <signature>'")
        name, b64 = parts
        if not _valid_signer_name(name):
            problem = "key name is empty" if not name else f"key name {name!r} contains whitespace or '+'"
            raise MalformedInput(f"note signature line {n}: {problem}")
        raw = b64decode(b64, what=f"note signature line {n}")
        if len(raw) < 5:
            raise MalformedInput(f"note signature line {n} is too short to hold a key ID and signature")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def open_note(data: bytes, known: Iterable[VerifierKey]) -> tuple[Note, tuple[VerifierKey, ...]]:
    """Parse and verify a note: return it and the known keys whose signatures verified.

    Unknown keys are ignored; a bad signature from a known key, two signatures
    from one key, or no known signature at all are errors.
    """
    note = parse_note(data)
    by_id = {(k.name, k.key_id): k for k in known}
    msg = note.text.encode("utf-8")
    verified: list[VerifierKey] = []
    seen: set[tuple[str, bytes]] = set()
    for sig in note.signatures:
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            continue
        if (sig.name, sig.key_id) in seen:
            raise MalformedInput(f"note carries two signatures from key {sig.name!r}")
        seen.add((sig.name, sig.key_id))
        if key.alg == ALG_COSIGNATURE_V1:
            continue  # cosignatures sign a different message; the witness module checks them
        if len(sig.signature) != 64:
            raise BadSignature(f"signature by key {sig.name!r} has {len(sig.signature)} bytes, not 64")
        key.verify(msg, sig.signature)
        verified.append(key)
    if not verified:
        names = ", ".join(sorted({s.name for s in note.signatures}))
        raise UnknownKey(f"note has no signature from a known key (signed by: {names})")
    return note, tuple(verified)
