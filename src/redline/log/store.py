"""The storage interface behind a redline log.

A store keeps three append-only sequences — leaves, stored hashes (in the order
``redline.log.merkle`` defines), and signed checkpoints — plus a little metadata,
and appends to all three in one atomic, durable batch. It decides nothing: the
``Log`` service computes hashes and signs checkpoints; the store only keeps them.

A store may also offer ``describe() -> str``, naming which store it is (the SQLite
file's real path, the PostgreSQL URL without its password), which binds a log's
verification record to it (``redline.log.verified``); the log of a store without
one gets no record, and is verified in full whenever it is opened with
verification.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol


class LogStore(Protocol):
    """Durable storage for one log."""

    def get_meta(self, key: str) -> bytes | None:
        """A metadata value, or None."""

    def init(self, meta: dict[str, bytes], checkpoint: bytes) -> None:
        """Create an empty log with its metadata and its size-0 checkpoint; refuse if one exists."""

    def size(self) -> int:
        """Number of leaves."""

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        """Stored hashes by stored hash index, in the order asked."""

    def read_leaves(self, start: int, count: int) -> list[bytes]:
        """Leaves ``start .. start+count-1``."""

    def iter_leaves(self, start: int = 0, chunk: int = 4096) -> Iterator[tuple[int, bytes]]:
        """Every (index, leaf) from ``start`` in order, as stored."""

    def iter_hashes(self, start: int = 0, chunk: int = 16384) -> Iterator[tuple[int, bytes]]:
        """Every (stored index, hash) from ``start`` in order, as stored."""

    def checkpoint(self, size: int | None = None) -> bytes | None:
        """The signed checkpoint for ``size`` (latest when None), or None."""

    def checkpoint_sizes(self) -> list[int]:
        """Sizes of every checkpoint the log has signed, ascending."""

    def append(self, expected_size: int, leaves: Sequence[bytes], hashes: Sequence[bytes], checkpoint: bytes,
               new_size: int) -> None:
        """Atomically and durably add leaves, their stored hashes and the new checkpoint.

        Fails without writing anything if the store's size is not ``expected_size``.
        """

    def close(self) -> None:
        """Release the store."""
