"""C2SP tlog-checkpoint v1: the signed statement of a log's size and root.

The note text is the log's origin, the tree size in decimal and the base64 root
hash, each on its own line, optionally followed by extension lines; it is signed
as a C2SP signed note by the log's Ed25519 key, whose name is the origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redline.crypto.encoding import b64decode, b64encode
from redline.crypto.keys import SigningKey, VerifierKey
from redline.crypto.note import Note, open_note, sign_note
from redline.errors import BadSignature, MalformedInput

MAX_SIZE = (1 << 63) - 1


@dataclass(frozen=True)
class Checkpoint:
    """A log's origin, tree size and root hash, with any extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The checkpoint's note text."""
        lines = [self.origin, str(self.size), b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    def sign(self, key: SigningKey) -> bytes:
        """The signed note bytes; the key's name must be the origin."""
        if key.name != self.origin:
            raise MalformedInput(f"log key name {key.name!r} is not the checkpoint origin {self.origin!r}")
        return sign_note(self.text(), key)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse checkpoint note text strictly."""
        if not text.endswith("\n"):
            raise MalformedInput("checkpoint text does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedInput(f"checkpoint has {len(lines)} lines, needs at least 3")
        origin, size_s, root_s, *ext = lines
        if not origin:
            raise MalformedInput("checkpoint origin line is empty")
        if not size_s.isdigit() or not size_s.isascii() or (size_s != "0" and size_s.startswith("0")):
            raise MalformedInput(f"checkpoint size {size_s[:40]!r} is not a decimal without leading zeros")
        if len(size_s) > 19 or int(size_s) > MAX_SIZE:  # digits first: int() refuses over 4300 of them
            raise MalformedInput(f"checkpoint size {size_s[:40]}{'…' if len(size_s) > 40 else ''} is over 2^63-1")
        size = int(size_s)
        root = b64decode(root_s, what="checkpoint root hash")
        if len(root) != 32:
            raise MalformedInput(f"checkpoint root hash is {len(root)} bytes, not 32")
        for i, line in enumerate(ext):
            if not line:
                raise MalformedInput(f"checkpoint extension line {i + 1} is empty")
        return cls(origin, size, root, tuple(ext))


def open_checkpoint(data: bytes, log_key: VerifierKey, *,
                    others: Iterable[VerifierKey] = ()) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint against the log's key and parse it.

    ``others`` (e.g. witness keys) are accepted as known keys, but the log's own
    signature is required.
    """
    note, verified = open_note(data, [log_key, *others])
    if log_key not in verified:
        raise BadSignature(f"checkpoint is not signed by the log key {log_key.name!r}")
    cp = Checkpoint.from_text(note.text)
    if cp.origin != log_key.name:
        raise MalformedInput(f"checkpoint origin {cp.origin!r} does not match the log key name {log_key.name!r}")
    return cp, note
