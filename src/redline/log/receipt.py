"""C2SP tlog-proof receipts: offline proof that an entry is in the log.

``c2sp.org/tlog-proof@v1``, an optional ``extra`` line, ``index <n>``, the
inclusion proof one base64 hash per line, a blank line, then the signed
(optionally cosigned) checkpoint verbatim. redline puts the entry's integration
time (8 bytes, big-endian milliseconds) in ``extra``: with the entry bytes it
rebuilds the leaf, so the receipt also proves *when* the log took the entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redline.crypto.encoding import b64decode, b64encode
from redline.crypto.keys import VerifierKey
from redline.errors import InputTooLarge, InvalidProof, MalformedInput
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import encode_leaf
from redline.log.merkle import leaf_hash, verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
MAX_RECEIPT_BYTES = 64 * 1024
MAX_PROOF_HASHES = 63


@dataclass(frozen=True)
class Receipt:
    """An index, its inclusion proof, optional extra data and the checkpoint it proves against."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def encode(self) -> bytes:
        """The receipt's text bytes."""
        lines = [HEADER]
        if self.extra is not None:
            lines.append(f"extra {b64encode(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(b64encode(h) for h in self.proof)
        return ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint

    @classmethod
    def parse(cls, data: bytes) -> Receipt:
        """Parse receipt bytes strictly."""
        if len(data) > MAX_RECEIPT_BYTES:
            raise InputTooLarge(f"receipt is {len(data)} bytes, over the limit of {MAX_RECEIPT_BYTES}",
                                size=len(data), limit=MAX_RECEIPT_BYTES)
        head, sep, checkpoint = data.partition(b"\n\n")
        if not sep or not checkpoint:
            raise MalformedInput("receipt has no blank line before its checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as exc:
            raise MalformedInput("receipt header is not ASCII") from exc
        if lines[0] != HEADER:
            raise MalformedInput(f"receipt does not start with {HEADER!r}")
        pos = 1
        extra = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = b64decode(lines[pos][6:], what="receipt extra data")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise MalformedInput("receipt has no 'index' line")
        idx_s = lines[pos][6:]
        if not idx_s.isdigit() or not idx_s.isascii() or (idx_s != "0" and idx_s.startswith("0")):
            raise MalformedInput(f"receipt index {idx_s[:40]!r} is not a decimal without leading zeros")
        if len(idx_s) > 19 or int(idx_s) >= 1 << 63:  # a tree of at most 2^63 - 1 leaves, as checkpoints allow
            raise MalformedInput(f"receipt index {idx_s[:40]}{'…' if len(idx_s) > 40 else ''} is beyond any log's size")
        proof_lines = lines[pos + 1 :]
        if len(proof_lines) > MAX_PROOF_HASHES:
            raise InputTooLarge(f"receipt has {len(proof_lines)} proof hashes, over {MAX_PROOF_HASHES}",
                                size=len(proof_lines), limit=MAX_PROOF_HASHES)
        proof = []
        for i, line in enumerate(proof_lines):
            h = b64decode(line, what=f"receipt proof line {i + 1}")
            if len(h) != 32:
                raise MalformedInput(f"receipt proof line {i + 1} is {len(h)} bytes, not 32")
            proof.append(h)
        return cls(int(idx_s), tuple(proof), checkpoint, extra)


def verify_receipt(receipt: Receipt, entry: bytes, log_key: VerifierKey,
                   *, witnesses: Iterable[VerifierKey] = ()) -> tuple[Checkpoint, int]:
    """Verify offline that ``entry`` is in the log; return the checkpoint and the integration time (ms)."""
    if receipt.extra is None or len(receipt.extra) != 8:
        raise MalformedInput("receipt extra data must be the 8-byte integration time")
    cp, _ = open_checkpoint(receipt.checkpoint, log_key, others=witnesses)
    time_ms = int.from_bytes(receipt.extra, "big")
    leaf = encode_leaf(time_ms, entry)
    try:
        verify_inclusion(receipt.index, cp.size, leaf_hash(leaf), receipt.proof, cp.root)
    except InvalidProof as exc:
        raise InvalidProof(f"receipt for entry {receipt.index}: {exc}") from exc
    return cp, time_ms
