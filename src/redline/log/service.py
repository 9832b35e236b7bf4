"""The redline transparency log: batched, durable appends, signed checkpoints, proofs and receipts.

``Log`` ties the pure pieces together over a ``LogStore``: each batch of entries
gets one integration time per entry (the log's clock, never going backwards),
its leaves and stored hashes are computed here, one checkpoint is signed for the
whole batch, and the store commits all of it at once.

Opening a log checks it, in one of two ways. A *full* verification
(:func:`verify_store`, ``redline log verify``) re-derives every stored hash from
the stored leaves and checks every signed checkpoint against the result, so a
store altered on disk is refused, naming the first bad entry. It costs time in
proportion to the log, so it returns what it established (:class:`Verified`: the
size, the stored frontier and so the root, the checkpoints counted) for the
caller to keep — sealed, as a verification record (``redline.log.verified``) —
and a later open *since* it (:func:`verify_since`) checks only what changed: the
latest signed checkpoint, that the stored hashes at the recorded size still give
the recorded tree (O(log n) reads), every stored hash of the entries appended
since and every checkpoint signed since. A store holding fewer entries than
recorded was rolled back and is refused (:class:`RolledBack`).

Entries below a recorded size were checked when the record was made, not at this
open: the store could have been edited since. Appends stay safe (they extend the
checked frontier, and a signed root never covers such an edit), and reads are
checked as they happen: :meth:`Log.entries` and :meth:`Log.leaf` check whatever
this ``Log`` did not re-derive itself against the verified root
(:meth:`Log.verified_entries`, :meth:`Log.verified_leaf`).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from redline.crypto.keys import SigningKey, VerifierKey
from redline.errors import (
    BadSignature,
    EntryTooLarge,
    InconsistentLog,
    IndexOutOfRange,
    InvalidProof,
    MalformedInput,
    RedlineError,
    RolledBack,
    StaleLog,
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


@dataclass(frozen=True)
class Verified:
    """What a verification of a log's store established, for a later open to continue from (``verify_since``).

    Every stored hash of the first ``size`` entries was re-derived from the stored leaves (by this verification
    or the ones it continued), giving the tree whose complete subtrees have the stored hashes ``frontier``
    (largest first; their fold is ``root``); the store's ``checkpoints`` checkpoints at sizes up to ``size``
    all verified under the log's key and match that tree, numbered from some point on when ``numbered`` (a
    later one must then carry the next number); entry ``size - 1`` was integrated at ``last_time_ms`` (0 when
    the log is empty). Kept sealed between runs by ``redline.log.verified``.
    """

    size: int
    frontier: tuple[bytes, ...]
    checkpoints: int
    numbered: bool
    last_time_ms: int

    @property
    def root(self) -> bytes:
        """The root hash of the tree of ``size`` entries."""
        return merkle.root_from_frontier(self.frontier)


class _CachingReader:
    """A ``HashReader`` that remembers the stored hashes it has read (oldest out first when full).

    Stored hashes are immutable once committed, so a cache holds what the store
    held when read (what was checked, a read checks; what was not, a read does not
    make trusted); proofs of one log share their upper levels, which therefore are
    mostly read from memory.
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

    def __init__(self, store: LogStore, verifier: VerifierKey, signer: SigningKey | None, clock: Clock, *,
                 verified: Verified | None = None, checked_from: int = 0) -> None:
        """A log over ``store`` as it stands (``verified`` None: nothing checked), or as a verification left it:
        ``verified`` is what it established, whose entries from ``checked_from`` on it re-derived itself."""
        self.store = store
        self.verifier = verifier
        self.signer = signer
        self.clock = clock
        self._reader = _CachingReader(store)
        self._verified = verified
        if verified is None:
            self._size = store.size()
            self._frontier = store.read_hashes(merkle.frontier_indexes(self._size))
            last = store.read_leaves(self._size - 1, 1)[0] if self._size else None
            self._last_time = decode_leaf(last)[0] if last is not None else 0
            self._checkpoints = len(store.checkpoint_sizes())
            self._checked: range | None = None
        else:
            self._size, self._frontier = verified.size, list(verified.frontier)
            self._last_time, self._checkpoints = verified.last_time_ms, verified.checkpoints
            self._checked = range(checked_from, verified.size)
        self._root_trusted = verified is not None  # the root of self._frontier is a verified checkpoint's

    # --- creation and opening -------------------------------------------

    @classmethod
    def create(cls, store: LogStore, key: SigningKey, *, clock: Clock = system_clock_ms) -> Log:
        """Start an empty log signed by ``key``, whose name is the log's origin."""
        empty = Checkpoint(key.name, 0, merkle.EMPTY_ROOT, (counter_line(0),)).sign(key)
        store.init({"origin": key.name.encode(), "public_key": key.public, "format": b"redline-log/v1"}, empty)
        return cls(store, key.verifier(), key, clock, verified=Verified(0, (), 1, True, 0))

    @classmethod
    def open(cls, store: LogStore, *, key: SigningKey | None = None, trusted: VerifierKey | None = None,
             verify: bool = True, since: Verified | None = None, clock: Clock = system_clock_ms,
             progress: Callable[[int, int], None] | None = None) -> Log:
        """Open an existing log, checking the stored tree against its checkpoints unless ``verify`` is False.

        With ``verify`` the check is full (``verify_store``: every stored hash re-derived, every checkpoint
        verified), or, given ``since`` — what an earlier verification of *this same store* established, kept
        where whoever edits the store cannot forge it (a sealed verification record, ``redline.log.verified``)
        — only what changed since (``verify_since``; ``RolledBack`` when the store shrank below it). Either way
        ``Log.verified`` then says what is now established, to be kept for the next open. ``progress`` is told
        how many entries were re-derived, out of how many. ``trusted`` is the log key the caller expects
        (defaults to the key the store names); a signing ``key`` must match it.
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
        if not verify:
            return cls(store, stored_key, key, clock)
        if since is None:
            return cls(store, stored_key, key, clock, verified=verify_store(store, stored_key, progress))
        return cls(store, stored_key, key, clock, verified=verify_since(store, stored_key, since, progress),
                   checked_from=since.size)

    # --- reading ----------------------------------------------------------

    @property
    def origin(self) -> str:
        """The log's origin (its key name)."""
        return self.verifier.name

    @property
    def size(self) -> int:
        """Number of entries."""
        return self._size

    @property
    def verified(self) -> Verified | None:
        """What this log's verification established (None when it was opened without one), moved on by this
        log's own appends: keep it (``redline.log.verified``) and pass it as ``since`` to open cheaply next time."""
        return self._verified

    @property
    def checked(self) -> range | None:
        """The entries whose stored hashes this ``Log`` re-derived or wrote itself (all of them after a full
        verification, those since the record after a cheap one); None when it was opened without verification.
        Reads of other entries are checked against the verified root as they happen."""
        return self._checked

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree of ``size`` entries (the whole log when None).

        After a cheap open, the root of a size below the entries this log re-derived is checked with a
        consistency proof (from stored hashes) against the verified root; ``InconsistentLog`` when it fails.
        """
        size = self._size if size is None else self._check_size(size)
        if size == self._size:
            return merkle.root_from_frontier(self._frontier)
        got = merkle.tree_hash(size, self._reader)
        checked = self._checked
        if checked is not None and size and not checked.start <= size <= checked.stop:
            try:
                merkle.verify_consistency(size, self._size, got, self._trusted_root(),
                                          merkle.prove_consistency(size, self._size, self._reader))
            except InvalidProof as exc:
                raise InconsistentLog(f"the stored tree of the first {size} entries is not part of the log's "
                                      f"verified tree (the store was altered): {exc}", index=size - 1) from None
        return got

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
        """Leaf bytes (time and entry) at ``index``; when the log was opened with verification and did not
        re-derive this entry itself, checked as ``verified_leaf`` does."""
        self._check_index(index)
        leaf = self.store.read_leaves(index, 1)[0]
        if self._checked is not None and index not in self._checked:
            self._check_leaf(index, leaf)
        return leaf

    def verified_leaf(self, index: int) -> bytes:
        """Leaf bytes at ``index``, shown to be in the tree of the log's signed root: its leaf hash and an
        inclusion proof from the stored hashes must reach the root that the log's checkpoint at its size signs
        (checked once, when the log was opened without verification). ``InconsistentLog`` naming the entry
        otherwise. O(log n) stored hashes read."""
        self._check_index(index)
        leaf = self.store.read_leaves(index, 1)[0]
        self._check_leaf(index, leaf)
        return leaf

    def entry(self, index: int) -> tuple[int, bytes]:
        """(integration time in ms, entry bytes) at ``index`` (checked as ``leaf`` is)."""
        return decode_leaf(self.leaf(index))

    def entries(self, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Every (index, time in ms, entry) from ``start`` to the log's size.

        Read as stored when this ``Log`` re-derived all of them itself (after a full verification it did) or
        was opened without verification (then nothing is checked); otherwise this is ``verified_entries(start)``,
        with its rule: exhaust the iterator before trusting what was built from it.
        """
        checked = self._checked
        if checked is None or (checked.start <= start and self._size <= checked.stop):
            return self._stored_entries(start, self._size)
        return self.verified_entries(start)

    def _stored_entries(self, start: int, size: int) -> Iterator[tuple[int, int, bytes]]:
        for idx, leaf in self.store.iter_leaves(start):
            if idx >= size:
                return
            t, e = decode_leaf(leaf)
            yield idx, t, e

    def verified_entries(self, start: int = 0) -> Iterator[tuple[int, int, bytes]]:
        """Every (index, time in ms, entry) from ``start`` to the log's size, checked against its verified root.

        The stored frontier at ``start`` is first shown to be part of the verified tree (a consistency proof
        from stored hashes, checked before anything is yielded); from it every stored hash of the entries from
        ``start`` on is re-derived from the stored leaves and compared, and integration times must not go
        backwards: the first entry that disagrees raises ``InconsistentLog`` naming it. An entry edited
        together with every stored hash above it agrees with itself and is caught only at the end, when the
        derived root is compared with the verified root (the error then names the entry ``log verify`` would).
        So **exhaust the iterator before trusting anything built from what it yielded**: an entry is known good
        only once the iteration ended without an error. Costs what re-deriving ``size - start`` entries costs.
        """
        size = self._size
        if not 0 <= start <= size:
            raise IndexOutOfRange(f"entry index {start} is not in a log of size {size}")
        root = self._trusted_root()
        if start == size:
            return iter(())
        try:
            frontier = self.store.read_hashes(merkle.frontier_indexes(start))
            if start:
                merkle.verify_consistency(start, size, merkle.root_from_frontier(frontier), root,
                                          merkle.prove_consistency(start, size, self.store))
        except (InvalidProof, IndexOutOfRange) as exc:
            raise self._locate(InconsistentLog(f"the stored tree of the first {start} entries is not part of the "
                                               f"log's verified tree (the store was altered): {exc}",
                                               index=start - 1)) from None
        last_time = decode_leaf(self.leaf(start - 1))[0] if start else 0
        return self._verified_entries(start, size, root, frontier, last_time)

    def _verified_entries(self, start: int, size: int, root: bytes, frontier: list[bytes], last_time: int
                          ) -> Iterator[tuple[int, int, bytes]]:
        hashes = self.store.iter_hashes(merkle.stored_hash_count(start))
        yield from _rederive(self.store.iter_leaves(start), hashes, start, size, frontier, last_time)
        if merkle.root_from_frontier(frontier) != root:
            raise self._locate(InconsistentLog(f"entries {start}..{size - 1} do not give the log's verified root "
                                               "(the store was altered)", index=size - 1))
        checked = self._checked
        if checked is not None and start <= checked.stop and checked.start <= size:
            self._checked = range(min(start, checked.start), max(size, checked.stop))

    def _trusted_root(self) -> bytes:
        """The root of the log's size, checked once against the log's signed checkpoint at that size."""
        root = merkle.root_from_frontier(self._frontier)
        if not self._root_trusted:
            note = self.store.checkpoint(self._size)
            if note is None:
                raise InconsistentLog(f"the log signed no checkpoint at its size {self._size}", index=self._size)
            try:
                cp, _ = open_checkpoint(note, self.verifier)
            except (BadSignature, MalformedInput) as exc:
                raise _bad_checkpoint(self._size, f"does not verify: {exc}") from exc
            if cp.size != self._size or cp.root != root:
                raise _bad_checkpoint(self._size, "does not match the stored entries")
            self._root_trusted = True
        return root

    def _check_leaf(self, index: int, leaf: bytes) -> None:
        """``InconsistentLog`` unless ``leaf`` is at ``index`` under the log's trusted root."""
        root = self._trusted_root()
        h = merkle.leaf_hash(leaf)
        try:
            merkle.verify_inclusion(index, self._size, h, merkle.prove_inclusion(index, self._size, self._reader),
                                    root)
        except (InvalidProof, IndexOutOfRange):
            try:
                stored = self.store.read_hashes([merkle.stored_hash_index(0, index)])[0]
            except IndexOutOfRange:
                stored = b""
            why = "its stored leaf hash does not match its bytes" if stored != h else \
                "it is not in the tree the log's signed checkpoint covers"
            raise InconsistentLog(f"entry {index}: {why} (the store was altered)", index=index) from None

    def _locate(self, error: InconsistentLog) -> InconsistentLog:
        """The error a full verification gives (naming the first bad entry as ``log verify`` would), else
        ``error``: only for a check that already failed, as it re-derives the whole store."""
        try:
            verify_store(self.store, self.verifier)
        except InconsistentLog as exc:
            return exc
        except RedlineError:
            pass
        return error

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
        if self._checked is not None and self._checked.stop == first:
            self._checked = range(self._checked.start, size)  # computed here, from the checked frontier
        if self._verified is not None and self._verified.size == first:
            self._verified = Verified(size, tuple(frontier), self._checkpoints, True, now)
        return Appended(first, (now,) * len(entries), cp)

    # --- several writers -----------------------------------------------------

    def refresh(self) -> int:
        """Catch up with entries other writers appended to the store since this ``Log`` read it; the new size.

        The store's latest checkpoint must verify and match the frontier read back; a store that shrank is
        refused (``InconsistentLog``). Cheap when nothing changed (one size query). The new entries are not
        re-derived here: ``entries`` and ``leaf`` check them against the new root when they are read.
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
        self._size, self._frontier, self._root_trusted = size, frontier, True
        last = self.leaf(size - 1)  # checked against the root just verified, unless opened without verification
        self._last_time = max(self._last_time, decode_leaf(last)[0])
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


def verify_store(store: LogStore, verifier: VerifierKey, progress: Callable[[int, int], None] | None = None
                 ) -> Verified:
    """Re-derive every stored hash from the stored leaves and check every signed checkpoint: what it established.

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
    roots, (frontier, last_time) = _check_entries_at(store, cp.size, set(sizes), size, progress)
    numbered = _check_checkpoints(store, verifier, sizes, 0, False, roots)
    if progress is not None:
        progress(size, size)
    return Verified(size, frontier, len(sizes), numbered, last_time)


def verify_since(store: LogStore, verifier: VerifierKey, since: Verified,
                 progress: Callable[[int, int], None] | None = None) -> Verified:
    """Check what changed in ``store`` since the verification that established ``since``; what is now established.

    ``since`` must come from a verification of this same store under this key, kept where whoever edits the
    store cannot forge it. Checked: the store holds at least ``since.size`` entries (else ``RolledBack``); the
    latest checkpoint verifies and is at the store's size; the stored hashes at the frontier of ``since.size``
    are the recorded ones (O(log n) reads; else the store was altered below that size); as many checkpoints
    are stored up to that size as were verified; every stored hash of the entries after it is re-derived from
    the leaves, their integration times never go backwards, and every checkpoint signed after it verifies,
    matches the tree at its size and carries the next number. ``InconsistentLog`` names the first bad entry, as
    ``verify_store`` does. Entries below ``since.size`` are not read: readers check them as they read
    (``Log.verified_entries``, ``Log.verified_leaf``).
    """
    sizes, size = _sizes_and_size(store)
    n = since.size
    if size < n:
        raise RolledBack(f"the store holds {size} entries, fewer than the {n} an earlier verification of it saw: "
                         "it was rolled back, or restored from an older copy (refused; a full verification accepts "
                         "it again)", index=size)
    latest = store.checkpoint(sizes[-1])
    if latest is None:
        raise _bad_checkpoint(sizes[-1], "is missing from the store")
    try:
        cp, _ = open_checkpoint(latest, verifier)
    except (BadSignature, MalformedInput) as exc:
        raise _bad_checkpoint(sizes[-1], f"is the latest and does not verify: {exc}") from exc
    wanted = merkle.frontier_indexes(n)
    try:
        frontier = store.read_hashes(wanted)
    except IndexOutOfRange:
        frontier = []
    for k, (stored, recorded) in enumerate(itertools.zip_longest(frontier, since.frontier)):
        if stored != recorded:
            level, index = merkle.level_and_index(wanted[k])
            first, last = index << level, ((index + 1) << level) - 1
            raise InconsistentLog(f"the stored hash over entries {first}..{last} is not the one verified at size {n}: "
                                  "the store was altered below its verified size", index=last)
    below = bisect.bisect_right(sizes, n)
    if below != since.checkpoints:
        what = "deleted from" if below < since.checkpoints else "added to"
        error = InconsistentLog(f"the store holds {below} checkpoints at sizes up to {n}, not the {since.checkpoints} "
                                f"verified: a signed checkpoint was {what} the store", index=n - 1 if n else 0)
        _check_checkpoints(store, verifier, sizes[:below], 0, False, None)  # names the checkpoint, if it can
        raise error
    tail = sizes[below:]
    roots, (end_frontier, last_time) = _check_entries_at(store, cp.size, set(tail), size, progress, start=n,
                                                         frontier=since.frontier, last_time=since.last_time_ms)
    if tail:
        numbered = _check_checkpoints(store, verifier, tail, below, since.numbered, roots)
    else:  # the latest checkpoint is the one at the verified size
        number = checkpoint_number(cp)
        if cp.root != since.root:
            raise _bad_checkpoint(n, "does not match the stored entries")
        if (number is not None) != since.numbered or (number is not None and number != below - 1):
            raise _bad_checkpoint(n, f"carries the number {number}, not the {below - 1} verified")
        numbered = since.numbered
    if progress is not None:
        progress(size, size)
    return Verified(size, end_frontier, len(sizes), numbered, last_time)


def _sizes_and_size(store: LogStore) -> tuple[list[int], int]:
    """The store's checkpoint sizes and size, read again while a writer appending between the two reads shows
    a size beyond the latest checkpoint (an append commits its leaves and checkpoint together)."""
    for _ in range(3):
        sizes = store.checkpoint_sizes()
        if not sizes:
            raise InconsistentLog("the log has no checkpoint")
        size = store.size()
        if size <= sizes[-1]:
            break
    return sizes, size


def _check_checkpoints(store: LogStore, verifier: VerifierKey, sizes: Sequence[int], first: int, numbered: bool,
                       roots: Mapping[int, bytes] | None) -> bool:
    """Verify the stored checkpoints at ``sizes``, the first at ``position`` in the store: signed by the log key,
    matching ``roots`` (unless None) and numbered in order from ``first``, their position in the store
    (``numbered``: the checkpoints before were). Whether the last of them is numbered."""
    for position, s in enumerate(sizes, first):
        note = store.checkpoint(s)
        if note is None:
            raise _bad_checkpoint(s, "is missing from the store")
        try:
            c, _ = open_checkpoint(note, verifier)
        except (BadSignature, MalformedInput) as exc:
            raise _bad_checkpoint(s, f"does not verify: {exc}") from exc
        if c.size != s or (roots is not None and roots.get(s) != c.root):
            raise _bad_checkpoint(s, "does not match the stored entries")
        number = checkpoint_number(c)
        if number is None:
            if numbered:
                raise _bad_checkpoint(s, "carries no checkpoint number although earlier ones do")
            continue  # a log written before checkpoints were numbered
        numbered = True
        if number != position:
            what = "an earlier signed checkpoint is missing from the store" if number > position else \
                "its number repeats or goes back"
            raise _bad_checkpoint(s, f"is the log's checkpoint number {number} but the store holds it as number "
                                     f"{position}: {what}")
    return numbered


def _check_entries_at(store: LogStore, checkpoint_size: int, wanted: set[int], size: int,
                      progress: Callable[[int, int], None] | None, *, start: int = 0,
                      frontier: Sequence[bytes] = (), last_time: int = 0
                      ) -> tuple[dict[int, bytes], tuple[tuple[bytes, ...], int]]:
    """``_check_entries`` for a store whose latest checkpoint is at ``checkpoint_size``: a store of another size is
    reported as such, unless the entries show an earlier bad index (a leaf cut out of the middle shrinks the log
    too)."""
    short = None
    if checkpoint_size != size:
        short = InconsistentLog(f"the log holds {size} entries but its latest checkpoint says {checkpoint_size}",
                                index=min(size, checkpoint_size))
    try:
        checked = _check_entries(store, wanted, size, progress, start=start, frontier=frontier, last_time=last_time)
    except InconsistentLog as exc:
        if short is not None and (exc.index is None or exc.index > min(size, checkpoint_size)):
            raise short from None
        raise
    if short is not None:
        raise short
    return checked


def _check_entries(store: LogStore, wanted: set[int], size: int, progress: Callable[[int, int], None] | None, *,
                   start: int = 0, frontier: Sequence[bytes] = (), last_time: int = 0
                   ) -> tuple[dict[int, bytes], tuple[tuple[bytes, ...], int]]:
    """Re-derive every stored hash from the stored leaves from ``start`` on (``frontier`` and ``last_time``: the
    stored frontier at ``start`` and the time of entry ``start - 1``, both already verified): the roots at the
    ``wanted`` sizes, and the frontier and last integration time at ``size``."""
    front = list(frontier)
    roots: dict[int, bytes] = {start: merkle.root_from_frontier(front)}
    at_size = (tuple(front), last_time) if size == start else None
    hashes = store.iter_hashes(merkle.stored_hash_count(start))
    n = start
    for idx, t, _ in _rederive(store.iter_leaves(start), hashes, start, None, front, last_time):
        n = idx + 1
        if n in wanted:
            roots[n] = merkle.root_from_frontier(front)
        if n == size:
            at_size = (tuple(front), t)
        if progress is not None and n % 65536 == 0:
            progress(n, size)
    extra = next(hashes, None)
    if extra is not None:
        raise InconsistentLog(f"stored hash {extra[0]} is beyond the last entry: it would belong to entry {n} "
                              "or later", index=n)
    if at_size is None:
        raise InconsistentLog(f"entry {n} is missing from the store", index=n)
    return roots, at_size


def _rederive(leaves: Iterator[tuple[int, bytes]], hashes: Iterator[tuple[int, bytes]], start: int,
              stop: int | None, frontier: list[bytes], last_time: int) -> Iterator[tuple[int, int, bytes]]:
    """Each (index, time, entry) of ``leaves`` from ``start`` (to ``stop``, or to the end), once the stored hashes
    its append wrote (from ``hashes``) are re-derived from it and ``frontier`` (the tree before it, updated in
    place) and match, and its integration time is not before the one before it (``last_time`` at first).
    ``InconsistentLog`` naming the first entry that is missing, malformed or does not match."""
    n = start
    if n == stop:
        return
    sha256, leaf_hash, node = hashlib.sha256, merkle.leaf_hash, b"\x01"
    for idx, leaf in leaves:
        if idx != n:
            raise InconsistentLog(f"entry {n} is missing from the store", index=n)
        try:
            t, e = decode_leaf(leaf)
        except (MalformedInput, EntryTooLarge) as exc:
            raise InconsistentLog(f"entry {n} is malformed: {exc}", index=n) from exc
        if t < last_time:
            raise InconsistentLog(f"entry {n} has an integration time earlier than entry {n - 1}", index=n)
        last_time = t
        h = leaf_hash(leaf)
        k = n
        while True:  # merkle.hashes_for_append, inlined on this hot path
            got = next(hashes, None)
            if got is None or got[1] != h:
                raise InconsistentLog(f"entry {n}: stored hash {got[0] if got else '(missing)'} does not match "
                                      "the entry bytes (the store was altered)", index=n)
            if not k & 1:
                break
            h = sha256(node + frontier.pop() + h).digest()
            k >>= 1
        frontier.append(h)
        yield n, t, e
        n += 1
        if n == stop:
            return
    if stop is not None and n < stop:
        raise InconsistentLog(f"entry {n} is missing from the store", index=n)


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
