"""C2SP signed notes (c2sp.org/signed-note), byte-compatible with Go's ``sumdb/note``.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``— <key name> <base64(key ID || signature)>``. Reading accepts exactly what Go's
``note.Open`` (golang.org/x/mod/sumdb/note) accepts, and refuses what it refuses:

- valid UTF-8 with no control character below U+0020 but newline (U+007F is allowed);
- the text and signatures split at the last blank line (so the text may hold blank
  lines), the signature block ending in a newline;
- each line ``— `` then a key name (non-empty, no Unicode space, no ``+``), one space
  and standard base64 with padding of at least 5 bytes. Like Go's
  ``base64.StdEncoding``, the decoder takes non-zero bits in the last character's
  unused low bits (text no encoder writes, but Go reads); the line's text is kept,
  so ``Note.encode`` gives back the bytes read;
- at most 100 signature lines and, here, 1 MiB.

``open_note`` then goes through the lines in order, as Go does: a line from a key
the verifier does not know is ignored; the first line from a known key is verified
(a bad signature is ``BadSignature``, naming the key); any further line from the
same key is skipped unverified (Go: "drop repeated signatures by a single verifier");
a line naming a key that two different known keys share (name and key ID) is an
error (Go's "ambiguous key"). No verified signature is ``UnknownKey``. Signing is
stricter: redline writes no blank line and no U+007F.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from redline.crypto.encoding import b64encode
from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey
from redline.errors import (
    BadSignature,
    InputTooLarge,
    KeyMaterialError,
    MalformedInput,
    MalformedKey,
    UnknownKey,
)

#: Largest note accepted, text and signatures together.
MAX_NOTE_BYTES = 1 << 20
#: Most signature lines accepted (Go's note.Open refuses the 101st; the standard asks verifiers to take 16).
MAX_SIGNATURES = 100

EM_DASH = "\u2014"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID and the signature bytes after the ID.

    ``encoded`` is the line's base64 as read when it is not the canonical encoding of ``key_id + signature``
    (Go reads base64 with non-zero unused bits too); None otherwise, and for every signature redline makes.
    """

    name: str
    key_id: bytes
    signature: bytes
    encoded: str | None = field(default=None, repr=False)

    def line(self) -> str:
        """The signature line, with its final newline (as read, for a parsed one)."""
        b64 = self.encoded if self.encoded is not None else b64encode(self.key_id + self.signature)
        return f"{EM_DASH} {self.name} {b64}\n"


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


#: What Go's ``base64.StdEncoding.DecodeString`` reads, on a line that holds no CR or LF (which it would skip):
#: groups of four, the last perhaps padded with ``=`` or ``==``; the unused low bits of the last character before
#: the padding may be anything (Go's decoder is not ``Strict``).
_GO_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", re.ASCII)


def _go_b64decode(text: str, what: str) -> bytes:
    if not _GO_BASE64.fullmatch(text):
        raise MalformedInput(f"{what} is not valid base64 (standard alphabet, padded)")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:  # not reached: the pattern is stricter
        raise MalformedInput(f"{what} is not valid base64: {exc}") from exc


def _signature_block(data: bytes) -> tuple[str, list[str]]:
    """The note's text and its signature lines (without newlines), after every check ``note.Open`` makes on the
    note as a whole."""
    if len(data) > MAX_NOTE_BYTES:
        raise InputTooLarge(f"note is {len(data)} bytes, over the limit of {MAX_NOTE_BYTES}", size=len(data),
                            limit=MAX_NOTE_BYTES)
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
    return text, sig_block[:-1].split("\n")


def _signature_lines(lines: list[str]) -> Iterator[NoteSignature]:
    """Each line parsed, in order, as ``note.Open`` parses it; the line after the 100th is refused once parsed."""
    for n, line in enumerate(lines, start=1):
        if not line.startswith(EM_DASH + " "):
            raise MalformedInput(f"note signature line {n} does not start with an em dash and a space")
        parts = line[2:].split(" ")
        if len(parts) != 2:  # Go: the name ends at the first space, and base64 holds none
            raise MalformedInput(f"note signature line {n} is not '— <name> <signature>'")
        name, b64 = parts
        if not _valid_signer_name(name):
            problem = "key name is empty" if not name else f"key name {name!r} contains whitespace or '+'"
            raise MalformedInput(f"note signature line {n}: {problem}")
        raw = _go_b64decode(b64, f"note signature line {n}")
        if len(raw) < 5:
            raise MalformedInput(f"note signature line {n} is too short to hold a key ID and signature")
        if n > MAX_SIGNATURES:
            raise InputTooLarge(f"note has {len(lines)} signatures, over the limit of {MAX_SIGNATURES}",
                                size=len(lines), limit=MAX_SIGNATURES)
        yield NoteSignature(name, raw[:4], raw[4:], None if b64encode(raw) == b64 else b64)


def parse_note(data: bytes) -> Note:
    """Parse note bytes as c2sp.org/signed-note and Go's ``note.Open`` do, without checking any signature.

    The text is everything up to and including the newline before the LAST blank line (Go:
    ``bytes.LastIndex(msg, "\n\n")``), so it may itself hold blank lines; U+007F is allowed, other
    control characters but newline are not, the whole note is valid UTF-8 (Python's decoder, like Go's,
    refuses encoded surrogates and overlong forms). Signature lines are read as Go reads them (see the
    module's docstring), their base64 included.
    """
    text, lines = _signature_block(data)
    return Note(text, tuple(_signature_lines(lines)))


def open_note(data: bytes, known: Iterable[VerifierKey]) -> tuple[Note, tuple[VerifierKey, ...]]:
    """Parse and verify a note as Go's ``note.Open`` does: return it and the known keys whose signatures verified,
    in the order of their lines.

    Lines are taken in order: an unknown key's is ignored; a known key's first line is verified (``BadSignature``,
    naming the key, if it does not); a known key's later lines are skipped unverified; a line naming a key that
    two different known keys share is ``KeyMaterialError``. A note with no verified signature is ``UnknownKey``.
    Known cosignature/v1 keys are left to the witness module (their lines sign another message).
    """
    text, lines = _signature_block(data)
    by_id: dict[tuple[str, bytes], list[VerifierKey]] = {}
    for k in known:
        same = by_id.setdefault((k.name, k.key_id), [])
        if k not in same:  # the same key given twice is one key
            same.append(k)
    msg = text.encode("utf-8")
    verified: list[VerifierKey] = []
    seen: set[tuple[str, bytes]] = set()
    sigs: list[NoteSignature] = []
    for sig in _signature_lines(lines):
        sigs.append(sig)
        keys = by_id.get((sig.name, sig.key_id))
        if not keys:
            continue
        if len(keys) > 1:
            raise KeyMaterialError(f"ambiguous key {sig.name}+{sig.key_id.hex()}: {len(keys)} known keys have this "
                                   "name and key ID")
        if (sig.name, sig.key_id) in seen:
            continue  # Go: "drop repeated signatures by a single verifier", unverified
        seen.add((sig.name, sig.key_id))
        key = keys[0]
        if key.alg == ALG_COSIGNATURE_V1:
            continue  # cosignatures sign a different message; the witness module checks them
        if len(sig.signature) != 64:
            raise BadSignature(f"signature by key {sig.name!r} has {len(sig.signature)} bytes, not 64",
                               key_name=sig.name, key_id=sig.key_id.hex())
        try:
            key.verify(msg, sig.signature)
        except BadSignature as exc:
            raise BadSignature(str(exc), key_name=sig.name, key_id=sig.key_id.hex()) from exc.__cause__
        verified.append(key)
    note = Note(text, tuple(sigs))
    if not verified:
        names = ", ".join(sorted({s.name for s in note.signatures}))
        raise UnknownKey(f"note has no signature from a known key (signed by: {names})")
    return note, tuple(verified)
