"""The redline transparency log: batched, durable appends, signed checkpoints, proofs and receipts.

``Log`` ties the pure pieces together over a ``LogStore``: each batch of entries
gets one integration time per entry (the log's clock, never going backwards),
its leaves and stored hashes are computed here, one checkpoint is signed for the
whole batch, and the store commits all of it at once. Opening a log re-derives
every stored hash from the stored leaves and checks the result against the
signed checkpoints, so a store altered on disk is refused, naming the first bad
entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from redline.crypto.keys import SigningKey, VerifierKey
from redline.errors import (
    BadSignature,
    EntryTooLarge,
    InconsistentLog,
    IndexOutOfRange,
    MalformedInput,
)
from redline.log import merkle
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import MAX_ENTRY_BYTES, decode_leaf, encode_leaf
from redline.log.receipt import Receipt
from redline.log.store import LogStore

Clock = Callable[[], int]

#: Most entries integrated in one batch (one transaction, one checkpoint).
MAX_BATCH = 100_000
#: Stored hashes a log keeps in memory (about 100 bytes each): they never change once written.
HASH_CACHE_SIZE = 1 << 18


class StaleLog(InconsistentLog):
    """Another writer appended to the store since this ``Log`` last read it: nothing was written. The log is
    fine; call ``Log.refresh()`` (or append inside ``Log.writing()``) and try again."""


class _CachingReader:
    """A ``HashReader`` that remembers the stored hashes it has read (oldest out first when full).

    Stored hashes are immutable once committed (and checked when the log was
    opened), so a cache is always correct; proofs of one log share their upper
    levels, which therefore are mostly read from memory.
    """

    def __init__(self, store: LogStore, capacity: int = HASH_CACHE_SIZE) -> None:
        self.store = store
        self.capacity = capacity
        self._cache: dict[int, bytes] = {}

    def read_hashes(self, indexes: Sequence[int]) -> list[bytes]:
        cache = self._cache
        missing = [i for i in indexes if i not in cache]
        if not missing:
            return [cache[i] for i in indexes]
        fetched = dict(zip(missing, self.store.read_hashes(missing)))
        out = [fetched[i] if i in fetched else cache[i] for i in indexes]
        cache.update(fetched)
        excess = len(cache) - self.capacity
        if excess > 0:
            for key in list(itertools.islice(cache, excess)):
                del cache[key]
        return out


def system_clock_ms() -> int:
    """Milliseconds since the Unix epoch from the system clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Appended:
    """What an acknowledged batch returns: its first index, integration times and the checkpoint."""

    first_index: int
    times_ms: tuple[int, ...]
    checkpoint: bytes

    @property
    def indexes(self) -> range:
        """The indexes the batch's entries got."""
        return range(self.first_index, self.first_index + len(self.times_ms))


class Log:
    """One transparency log over a store; appends need the log's signing key."""

    def __init__(self, store: LogStore, verifier: VerifierKey, signer: SigningKey | None, clock: Clock) -> None:
        self.store = store
        self.verifier = verifier
        self.signer = signer
        self.clock = clock
        self._reader = _CachingReader(store)
        self._size = store.size()
        self._frontier = store.read_hashes(merkle.frontier_indexes(self._size))
        last = store.read_leaves(self._size - 1, 1)[0] if self._size else None
        self._last_time = decode_leaf(last)[0] if last is not None else 0
        self._checkpoints = len(store.checkpoint_sizes())

    # --- creation and opening -------------------------------------------

    @classmethod
    def create(cls, store: LogStore, key: SigningKey, *, clock: Clock = system_clock_ms) -> Log:
        """Start an empty log signed by ``key``, whose name is the log's origin."""
        empty = Checkpoint(key.name, 0, merkle.EMPTY_ROOT, (counter_line(0),)).sign(key)
        store.init({"origin": key.name.encode(), "public_key": key.public, "format": b"redline-log/v1"}, empty)
        return cls(store, key.verifier(), key, clock)

    @classmethod
    def open(cls, store: LogStore, *, key: SigningKey | None = None, trusted: VerifierKey | None = None,
             verify: bool = True, clock: Clock = system_clock_ms, progress: Callable[[int, int], None] | None = None
             ) -> Log:
        """Open an existing log, checking the stored tree against its checkpoints unless ``verify`` is False.

        ``trusted`` is the log key the caller expects (defaults to the key the store
        names); a signing ``key`` must match it.
        """
        origin = store.get_meta("origin")
        public = store.get_meta("public_key")
        if origin is None or public is None:
            raise InconsistentLog("store has no log metadata (origin, public_key)")
        stored_key = VerifierKey(origin.decode(), public)
        if trusted is not None and trusted != stored_key:
            raise BadSignature(f"log is signed by {stored_key.to_string()}, not the trusted key {trusted.to_string()}")
        if key is not None and key.verifier() != stored_key:
            raise BadSignature(f"signing key {key.name!r} is not this log's key")
        if verify:
            verify_store(store, stored_key, progress)
        return cls(store, stored_key, key, clock)

    # --- reading ----------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's origin (its key name)."""
        return self.verifier.name

    @property
    def size(self) -> int:
        """Number of entries."""
        return self._size

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of ``size`` entries (the whole log when None)."""
        size = self._size if size is None else self._check_size(size)
        if size == self._size:
            return merkle.root_from_frontier(self._frontier)
        return merkle.tree_hash(size, self._reader)

    def checkpoint(self, size: int | None = None) -> bytes:
        """The signed checkpoint for ``size`` (the latest when None)."""
        cp = self.store.checkpoint(size)
        if cp is None:
            raise IndexOutOfRange(f"the log signed no checkpoint at size {size}")
        return cp

    def checkpoint_sizes(self) -> list[int]:
        """Sizes at which the log has signed checkpoints."""
        return self.store.checkpoint_sizes()

    def leaf(self, index: int) -> bytes:
        """Leaf bytes (time and entry) at ``index``."""
        self._check_index(index)
        return self.store.read_leaves(index, 1)[0]

    def entry(self, index: int) -> tuple[int, bytes]:
        """(integration time in ms, entry bytes) at ``index``."""
        return decode_leaf(self.leaf(index))

    def entries(self, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Every (index, time in ms, entry) from ``start``."""
        for idx, leaf in self.store.iter_leaves(start):
            if idx >= self._size:
                return
            t, e = decode_leaf(leaf)
            yield idx, t, e

    def prove_inclusion(self, index: int, size: int | None = None) -> list[bytes]:
        """Audit path for entry ``index`` in the tree of ``size`` entries."""
        size = self._size if size is None else self._check_size(size)
        return merkle.prove_inclusion(index, size, self._reader)

    def prove_consistency(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Consistency proof between two sizes of this log."""
        new_size = self._size if new_size is None else self._check_size(new_size)
        return merkle.prove_consistency(old_size, new_size, self._reader)

    def receipt(self, index: int, size: int | None = None) -> Receipt:
        """An offline tlog-proof receipt for entry ``index`` against the checkpoint of ``size``."""
        size = self._size if size is None else size
        self._check_index(index, size)
        cp = self.checkpoint(size)
        time_ms, _ = self.entry(index)
        return Receipt(index, tuple(self.prove_inclusion(index, size)), cp, time_ms.to_bytes(8, "big"))

    # --- writing ----------------------------------------------------------

    def append(self, entries: Sequence[bytes], *, at_ms: int | None = None) -> Appended:
        """Integrate a batch of entries durably in one transaction with one new checkpoint.

        The batch's integration time is the log's clock, or ``at_ms`` when the caller fixed it beforehand (the
        registry judges a batch at the time it will be logged); never earlier than the last entry's.
        """
        if self.signer is None:
            raise BadSignature("the log was opened without its signing key; it cannot append")
        if not entries:
            raise MalformedInput("an append batch must hold at least one entry")
        if len(entries) > MAX_BATCH:
            raise MalformedInput(f"batch of {len(entries)} entries is over the limit of {MAX_BATCH}")
        if not all(map(isinstance, entries, itertools.repeat((bytes, bytearray)))) \
                or max(map(len, entries)) > MAX_ENTRY_BYTES:  # one pass in C; name the culprit below
            for i, e in enumerate(entries):
                if not isinstance(e, (bytes, bytearray)):
                    raise MalformedInput(f"entry {i} of the batch is not bytes")
                if len(e) > MAX_ENTRY_BYTES:
                    raise EntryTooLarge(f"entry {i} of the batch is {len(e)} bytes, over the limit of "
                                        f"{MAX_ENTRY_BYTES}")
        now = max(self.clock() if at_ms is None else at_ms, self._last_time)
        size = self._size
        frontier = list(self._frontier)
        leaves, hashes = [], []
        prefix = encode_leaf(now, b"")
        leaf_prefix = hashlib.sha256(b"\x00" + prefix)  # RFC 6962 leaf hash of prefix || entry, continued per entry
        sha256, node_prefix = hashlib.sha256, b"\x01"
        for e in entries:
            leaves.append(prefix + e)
            h = leaf_prefix.copy()
            h.update(e)
            node = h.digest()
            hashes.append(node)
            n = size
            while n & 1:  # merkle.hashes_for_append, inlined on this hot path
                node = sha256(node_prefix + frontier.pop() + node).digest()
                hashes.append(node)
                n >>= 1
            frontier.append(node)
            size += 1
        cp = Checkpoint(self.origin, size, merkle.root_from_frontier(frontier),
                        (counter_line(self._checkpoints),)).sign(self.signer)
        try:
            self.store.append(self._size, leaves, hashes, cp, size)
        except InconsistentLog as exc:
            if not isinstance(exc, StaleLog) and _store_size(self.store) > self._size:
                raise StaleLog(str(exc), exc.index) from exc  # another writer got there first
            raise
        first = self._size
        self._size, self._frontier, self._last_time = size, frontier, now
        self._checkpoints += 1
        return Appended(first, (now,) * len(entries), cp)

    # --- several writers -----------------------------------------------------

    def refresh(self) -> int:
        """Catch up with entries other writers appended to the store since this ``Log`` read it; the new size.

        The store's latest checkpoint must verify and match the frontier read back; a store that shrank is
        refused (``InconsistentLog``). Cheap when nothing changed (one size query).
        """
        size = self.store.size()
        if size == self._size:
            return size
        if size < self._size:
            raise InconsistentLog(f"the store holds {size} entries, fewer than the {self._size} this log "
                                  "already integrated", index=size)
        frontier = self.store.read_hashes(merkle.frontier_indexes(size))
        note = self.store.checkpoint()
        if note is None:
            raise InconsistentLog("the log has no checkpoint")
        try:
            cp, _ = open_checkpoint(note, self.verifier)
        except (BadSignature, MalformedInput) as exc:
            raise _bad_checkpoint(size, f"is the latest and does not verify: {exc}") from exc
        if cp.size != size or cp.root != merkle.root_from_frontier(frontier):
            raise InconsistentLog(f"the store holds {size} entries but its latest checkpoint (size {cp.size}) "
                                  "does not match them", index=min(size, cp.size))
        self._last_time = max(self._last_time, decode_leaf(self.store.read_leaves(size - 1, 1)[0])[0])
        self._size, self._frontier = size, frontier
        self._checkpoints = len(self.store.checkpoint_sizes())
        return size

    @contextlib.contextmanager
    def writing(self) -> Iterator[int]:
        """Be this log's only writer for the block, caught up with the store (yields the size): a store with
        ``exclusive()`` (PostgreSQL) holds its writer lock until the block's ``append`` commits; any other is
        just refreshed, and an append that loses a race raises ``StaleLog``."""
        exclusive = getattr(self.store, "exclusive", None)
        with exclusive() if exclusive is not None else contextlib.nullcontext():
            yield self.refresh()

    # --- checks -------------------------------------------------------------

    def _check_size(self, size: int) -> int:
        if not 0 <= size <= self._size:
            raise IndexOutOfRange(f"tree size {size} is beyond the log's size {self._size}")
        return size

    def _check_index(self, index: int, size: int | None = None) -> None:
        size = self._size if size is None else self._check_size(size)
        if not 0 <= index < size:
            raise IndexOutOfRange(f"entry index {index} is not in a log of size {size}")



def _store_size(store: LogStore) -> int:
    """The store's size, or -1 when it cannot be read."""
    try:
        return store.size()
    except Exception:  # noqa: BLE001 - unreadable: not known to be stale
        return -1


def verify_store(store: LogStore, verifier: VerifierKey, progress: Callable[[int, int], None] | None = None) -> None:
    """Re-derive every stored hash from the stored leaves and check every signed checkpoint.

    Raises ``InconsistentLog`` naming the first entry that disagrees.
    """
    sizes = store.checkpoint_sizes()
    if not sizes:
        raise InconsistentLog("the log has no checkpoint")
    latest = store.checkpoint(sizes[-1])
    assert latest is not None
    try:
        cp, _ = open_checkpoint(latest, verifier)
    except (BadSignature, MalformedInput) as exc:
        raise _bad_checkpoint(sizes[-1], f"is the latest and does not verify: {exc}") from exc
    size = store.size()
    short = None
    if cp.size != size:
        # Reported unless the entries show an earlier bad index (a leaf cut out of the middle shrinks the log too).
        short = InconsistentLog(f"the log holds {size} entries but its latest checkpoint says {cp.size}",
                                index=min(size, cp.size))
    try:
        roots = _check_entries(store, set(sizes), size, progress)
    except InconsistentLog as exc:
        if short is not None and (exc.index is None or exc.index > short.index):
            raise short from None
        raise
    if short is not None:
        raise short
    counted = False
    for position, s in enumerate(sizes):
        note = store.checkpoint(s)
        assert note is not None
        try:
            c, _ = open_checkpoint(note, verifier)
        except (BadSignature, MalformedInput) as exc:
            raise _bad_checkpoint(s, f"does not verify: {exc}") from exc
        if c.size != s or roots.get(s) != c.root:
            raise _bad_checkpoint(s, "does not match the stored entries")
        number = checkpoint_number(c)
        if number is None:
            if counted:
                raise _bad_checkpoint(s, "carries no checkpoint number although earlier ones do")
            continue  # a log written before checkpoints were numbered
        counted = True
        if number != position:
            what = "an earlier signed checkpoint is missing from the store" if number > position else \
                "its number repeats or goes back"
            raise _bad_checkpoint(s, f"is the log's checkpoint number {number} but the store holds it as number "
                                     f"{position}: {what}")
    if progress is not None:
        progress(size, size)


def _check_entries(store: LogStore, wanted: set[int], size: int, progress: Callable[[int, int], None] | None
                   ) -> dict[int, bytes]:
    """Re-derive every stored hash from the stored leaves; the roots at the ``wanted`` sizes."""
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    frontier: list[bytes] = []
    hashes = store.iter_hashes()
    last_time = 0
    n = 0
    for idx, leaf in store.iter_leaves():
        if idx != n:
            raise InconsistentLog(f"entry {n} is missing from the store", index=n)
        try:
            t, _ = decode_leaf(leaf)
        except (MalformedInput, EntryTooLarge) as exc:
            raise InconsistentLog(f"entry {n} is malformed: {exc}", index=n) from exc
        if t < last_time:
            raise InconsistentLog(f"entry {n} has an integration time earlier than entry {n - 1}", index=n)
        last_time = t
        for expected in merkle.hashes_for_append(merkle.leaf_hash(leaf), n, frontier):
            got = next(hashes, None)
            if got is None or got[1] != expected:
                raise InconsistentLog(f"entry {n}: stored hash {got[0] if got else '(missing)'} does not match "
                                      "the entry bytes (the store was altered)", index=n)
        n += 1
        if n in wanted:
            roots[n] = merkle.root_from_frontier(frontier)
        if progress is not None and n % 65536 == 0:
            progress(n, size)
    extra = next(hashes, None)
    if extra is not None:
        raise InconsistentLog(f"stored hash {extra[0]} is beyond the last entry: it would belong to entry {n} "
                              "or later", index=n)
    return roots


def _bad_checkpoint(size: int, problem: str) -> InconsistentLog:
    """The error for a stored checkpoint that fails, naming the last entry it covers (the batch that signed it)."""
    last = size - 1 if size else 0
    covers = f"entries 0..{last}" if size else "the empty tree"
    return InconsistentLog(f"checkpoint at size {size} (over {covers}) {problem}", index=last)


#: The extension line that numbers a log's checkpoints (0 for the empty tree's): signed with the checkpoint, so a
#: signed checkpoint deleted from the store leaves a gap that ``verify_store`` finds. C2SP tlog-checkpoint allows
#: extension lines after the root; clients that do not know this one ignore it.
COUNTER_PREFIX = "redline-checkpoint "


def counter_line(number: int) -> str:
    """The extension line numbering a checkpoint."""
    return f"{COUNTER_PREFIX}{number}"


def checkpoint_number(cp: Checkpoint) -> int | None:
    """The number a checkpoint's extension line gives it (None when it has none)."""
    for line in cp.extensions:
        if line.startswith(COUNTER_PREFIX):
            value = line[len(COUNTER_PREFIX):]
            if value.isdigit() and value.isascii() and (value == "0" or not value.startswith("0")):
                return int(value)
            raise MalformedInput(f"checkpoint extension line {line!r} is not a number without leading zeros")
    return None


def open_log_dir(path: str | Path) -> tuple[Path, Path]:
    """The database and key file paths of a log directory."""
    path = Path(path)
    return path / "log.db", path / "log.key"
