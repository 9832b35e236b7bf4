"""The bytes of a redline log leaf: the log's integration time bound to the entry.

``leaf = uint64 big-endian integration time in milliseconds since the Unix epoch || entry``.
The leaf, not the bare entry, is hashed into the tree and carried in tile entry
bundles, so every inclusion proof also proves when the log took the entry;
deadlines are judged by this time. A bundle entry holds at most 65,535 bytes, so
an entry is at most 65,527 bytes.
"""

from __future__ import annotations

from redline.errors import EntryTooLarge, MalformedInput

TIME_BYTES = 8
MAX_LEAF_BYTES = 0xFFFF
MAX_ENTRY_BYTES = MAX_LEAF_BYTES - TIME_BYTES


def encode_leaf(time_ms: int, entry: bytes) -> bytes:
    """The leaf bytes for ``entry`` integrated at ``time_ms``."""
    if len(entry) > MAX_ENTRY_BYTES:
        raise EntryTooLarge(f"entry is {len(entry)} bytes, over the limit of {MAX_ENTRY_BYTES} bytes",
                            size=len(entry), limit=MAX_ENTRY_BYTES)
    if not 0 <= time_ms < 1 << 64:
        raise MalformedInput(f"integration time {time_ms} does not fit in 64 bits")
    return time_ms.to_bytes(TIME_BYTES, "big") + entry


def decode_leaf(leaf: bytes) -> tuple[int, bytes]:
    """Split leaf bytes into (integration time in ms, entry)."""
    if len(leaf) < TIME_BYTES:
        raise MalformedInput(f"leaf is {len(leaf)} bytes, shorter than its {TIME_BYTES}-byte time")
    if len(leaf) > MAX_LEAF_BYTES:
        raise EntryTooLarge(f"leaf is {len(leaf)} bytes, over the limit of {MAX_LEAF_BYTES} bytes",
                            size=len(leaf), limit=MAX_LEAF_BYTES)
    return int.from_bytes(leaf[:TIME_BYTES], "big"), leaf[TIME_BYTES:]
