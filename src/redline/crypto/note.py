"""C2SP signed notes (c2sp.org/signed-note), byte-compatible with Go's ``sumdb/note``.

A note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``— <key name> <base64(key ID || signature)>``. Parsing is all-or-nothing and
strict: the text and signatures split at the last blank line, no control
characters but newline, a bounded size and signature count. Verification ignores
signatures from unknown keys and fails if a known key's signature is bad.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redline.crypto.encoding import b64decode, b64encode
from redline.crypto.keys import ALG_COSIGNATURE_V1, SigningKey, VerifierKey, validate_key_name
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
    for i, ch in enumerate(text):
        o = ord(ch)
        if (o < 0x20 and ch != "\n") or o == 0x7F or 0xD800 <= o <= 0xDFFF:
            raise MalformedInput(f"{what} contains control character U+{o:04X} at offset {i}")


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
    """Parse note bytes strictly, without checking any signature."""
    if len(data) > MAX_NOTE_BYTES:
        raise InputTooLarge(f"note is {len(data)} bytes, over the limit of {MAX_NOTE_BYTES}")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"note is not valid UTF-8 (byte {exc.start})") from exc
    _check_text(whole, "note")
    split = whole.rfind("\n\n")
    if split < 0:
        raise MalformedInput("note has no blank line before its signatures")
    text, sig_block = whole[: split + 1], whole[split + 2 :]
    _validate_text(text)
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
        try:
            validate_key_name(name)
        except MalformedKey as exc:
            raise MalformedInput(f"note signature line {n}: {exc}") from exc
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
