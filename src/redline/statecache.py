"""The state of a log at the speed of the log: sealed state snapshots beside it, and replay of what came after.

Replaying a log of a million entries takes minutes; most questions (``redline state``,
``submit``, ``serve``, ``verify run --log``) come after only a few new entries. So after
a replay the state is saved as a *snapshot* in ``LOGDIR/snapshots/``, keyed by the
tree size and root it was computed at, and the next reader loads the latest snapshot
and replays only the entries after it.

A snapshot is a cache, never the truth. It is used only when all of these hold;
otherwise the state is replayed from the log (and a note says why):

* its seal verifies under this user's cache key (``redline.log.localcache``): it was
  written by this user's redline and not edited, cut short or swapped since;
* it was made for this log (origin and key), by this very code (the package's source
  digest: other code may derive another state) and this Python (``marshal``);
* its size is within the log's, and its root is the root of the log's first ``size``
  entries: a consistency proof from the store between the snapshot's root and the
  root of the latest signed checkpoint verifies;
* it carries the digest of its state (``State.digest()``, what any full replay of
  the log's first ``size`` entries gives); with ``check_snapshot`` (``redline state
  --check-snapshot``) the state it decodes to is digested again and must have that
  digest, so that even a snapshot codec that gave back another state is caught
  (a digest costs about 0.4 s per 100,000 entries, so it is not redone by default:
  the seal already binds the bytes to this code);
* every entry after it that is replayed is authenticated (``Log.verified_entries``): the
  stored tree at the snapshot's size is proven part of the signed tree, every stored hash
  of the entries after it is re-derived from their leaves, and the result must be the
  signed checkpoint's root. The state is returned only after that check; a store edited
  under the snapshot is refused (``InconsistentLog``), never replayed into a state.

``--no-cache`` (``use_cache=False``) replays every entry, authenticated the same way
from the empty tree. Snapshots are written through a temporary file and renamed, so a
crash leaves the old one or the new one; the two newest are kept. A log read over HTTP
is a ``Source`` too (``redline.cli.remote_state``): its consistency proofs and entries
come from its tiles, and its snapshots live in the user's cache directory.

A snapshot file is ``<8-byte length><sealed part><blobs>``: the sealed part
(``localcache.seal``) holds the header (the bindings above, and each blob's length,
SHA-256 and whether it is read late) and the codec's body; the blobs follow. The
blobs the state needs at once (the transcript roots) are checked before it is used;
the timeline's is checked when the timeline is first read (the file stays open, so a
newer snapshot pruning it changes nothing). Should it then fail its check (edited or
cut short after the snapshot was opened, or rotted on disk), the snapshot file is
removed, and the log's first ``size`` entries are replayed again, authenticated like any
others, for their timeline; the state they give must have the digest the snapshot
carries, so the timeline recovered is exactly the one the snapshot held (else the error
stands: never a wrong state). The log is read again through ``reopen`` when the caller
gave one (its own handle may be closed by then), else through the source used to load.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from redline.engine import Entry, State, replay
from redline.engine import snapshot as codec
from redline.engine.parallel import MIN_PARALLEL_ENTRIES, replay_parallel
from redline.engine.state import Event
from redline.errors import BadSignature, InconsistentLog, MalformedInput, RedlineError, StaleCache
from redline.log import localcache, merkle
from redline.log.checkpoint import open_checkpoint
from redline.log.service import Log

KIND = "state-snapshot"
SNAPSHOT_DIR = "snapshots"
#: Snapshots kept per log (the newest ones).
KEEP = 2
#: Largest snapshot read back (bytes).
MAX_SNAPSHOT_BYTES = 4 << 30
#: A new snapshot is written when at least this many entries were replayed past the newest usable one...
SAVE_MIN_ENTRIES = 10_000
#: ...or this share of the log, whichever is more (so a snapshot's cost stays small beside the replay it saves).
SAVE_SHARE = 0.05

Note = Callable[[str], None]
#: How to read a log again after its caller closed it: a context giving a ``Source`` of the same log.
Reopen = Callable[[], AbstractContextManager["Source"]]
#: A state digest as a snapshot's header carries it.
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass
class Loaded:
    """How a state was obtained: from which snapshot (size, None for none), how many entries were replayed, and
    why a snapshot was not used (None when one was, or none was looked for)."""

    state: State
    snapshot_size: int | None
    replayed: int
    reason: str | None = None
    saved: Path | None = None
    #: The state digest the snapshot used carries (the state after its ``snapshot_size`` entries).
    snapshot_digest: str | None = None


def snapshot_dir(logdir: Path) -> Path:
    """Where LOGDIR's snapshots live."""
    return logdir / SNAPSHOT_DIR


def _name(size: int) -> str:
    return f"state-{size:012d}.sealed"


def _sizes(directory: Path) -> list[int]:
    out = []
    try:
        names = [p.name for p in directory.iterdir()]
    except OSError:
        return []
    for name in names:
        if name.startswith("state-") and name.endswith(".sealed") and name[6:-7].isdigit():
            out.append(int(name[6:-7]))
    return sorted(out, reverse=True)


@dataclass
class Source:
    """A log as the cache sees it: who it is, its signed head, how to prove an older root is a prefix of that head,
    and its entries from an index on, each authenticated against the head."""

    origin: str
    public_key: str
    size: int
    root: bytes
    #: Raise unless the tree of (size, root) given is a prefix of this head's tree.
    consistent: Callable[[int, bytes], None]
    entries: Callable[[int], Iterator[Entry]]

    def expect(self) -> dict[str, object]:
        """What a snapshot's sealed header must say to be of this log and this code."""
        return {"origin": self.origin, "public_key": self.public_key, "code": localcache.code_digest(),
                "python": codec.python_tag(), "format": codec.FORMAT}


def log_source(log: Log) -> Source:
    """A local log, opened with verification, as a ``Source``."""
    size, root = _signed_head(log)

    def consistent(s: int, r: bytes) -> None:
        merkle.verify_consistency(s, size, r, root, log.prove_consistency(s, size) if 0 < s < size else [])

    return Source(log.origin, log.verifier.to_string(), size, root, consistent,
                  lambda start: authenticated_entries(log, start))


def load_state(log: Log, logdir: Path | None, *, use_cache: bool = True, save: bool = True,
               note: Note | None = None, workers: int = 2, check_snapshot: bool = False,
               reopen: Callable[[], Log] | None = None) -> Loaded:
    """The state of ``log``: from its latest usable snapshot in ``logdir``/snapshots plus the entries after it,
    or replayed from the start. Every entry replayed is authenticated against the log's latest signed checkpoint.

    ``note`` hears why a snapshot was not used (none is not worth a note); ``save`` writes a new snapshot when
    enough entries were replayed past the last one (see ``SAVE_MIN_ENTRIES``); ``check_snapshot`` digests the
    snapshot's state again and uses it only when that is the digest it carries; ``reopen`` opens this log again
    (verified), for a caller that closes ``log`` before it is done with the state (see the module doc).
    """
    directory = snapshot_dir(logdir) if logdir is not None else None

    @contextlib.contextmanager
    def reopened() -> Iterator[Source]:
        assert reopen is not None
        again = reopen()
        try:
            yield log_source(again)
        finally:
            again.store.close()

    return load_source(log_source(log), directory, use_cache=use_cache, save=save, note=note, workers=workers,
                       check_snapshot=check_snapshot, reopen=reopened if reopen is not None else None)


def load_source(source: Source, directory: Path | None, *, use_cache: bool = True, save: bool = True,
                note: Note | None = None, workers: int = 2, base: State | None = None,
                check_snapshot: bool = False, reopen: Reopen | None = None) -> Loaded:
    """The state of ``source`` from its latest usable snapshot in ``directory`` plus the entries after it; or, given
    ``base`` (a state of this log the caller holds, e.g. a monitor's from its last round), from ``base`` on.
    A new snapshot is saved when enough entries were replayed past the newest one. ``reopen`` reads the log again
    should the snapshot's timeline fail its check when read later (by default ``source`` is read again)."""
    size = source.size
    state, start, reason, carried = None, 0, None, None
    newest: int | None = None  # the newest usable snapshot's size (0: none), once the snapshots were looked at
    if base is not None:
        if base.next_index > size or base.origin != source.origin:
            raise InconsistentLog(f"the state held is of {base.next_index} entries of {base.origin!r}, the log "
                                  f"{size} of {source.origin!r}", index=min(base.next_index, size))
        state, start = base, base.next_index
    elif use_cache and directory is not None:
        recovery = _Recovery(source, reopen, note, workers)
        state, start, reason, carried = _latest(source, directory, check_snapshot, recovery)
        newest = start
        if reason is not None and note is not None:
            note(f"state snapshot not used ({reason}); replaying the log from the start")
        elif check_snapshot and carried is not None and note is not None:
            note(f"state snapshot of {start} entries used: its state digested again to the {carried[:16]}… it "
                 "carries")
    from_snapshot = base is None and state is not None and start > 0
    initial = state if state is not None else State(origin=source.origin)
    state = _replay(source.entries(start), initial, size - start, workers)
    loaded = Loaded(state, start if from_snapshot else None, size - start, reason,
                    snapshot_digest=carried if from_snapshot else None)
    # Snapshots that could not be used count for nothing: after an upgrade (every snapshot made by other code) or
    # an edit, the replay just done is saved at once, not only once the log has grown past them.
    if save and directory is not None and _worth_saving(directory, start, size, newest):
        loaded.saved = save_snapshot(source, directory, state)
    return loaded


def save_if_worth(log: Log, logdir: Path, state: State) -> Path | None:
    """Save ``state`` (the state of all of ``log``, e.g. a long-lived registry's when it stops) as a snapshot when
    enough entries came after the newest one (see ``SAVE_MIN_ENTRIES``); the path written, or None."""
    directory = snapshot_dir(logdir)
    source = log_source(log)
    if state.next_index != source.size or not _worth_saving(directory, 0, source.size):
        return None
    return save_snapshot(source, directory, state)


def snapshot_now(log: Log, logdir: Path, *, note: Note | None = None, workers: int = 2) -> tuple[Loaded, Path | None]:
    """Save a snapshot of ``log``'s whole state in LOGDIR/snapshots now (``redline log snapshot``): the state from the
    newest usable snapshot plus the entries after it, written unless that snapshot already is of every entry.
    The path written (None: nothing was new); an error when it cannot be written (``OSError``) or encoded."""
    directory = snapshot_dir(logdir)
    loaded = load_state(log, logdir, save=False, note=note, workers=workers)
    if loaded.snapshot_size == log.size or log.size == 0:
        return loaded, None
    return loaded, save_snapshot(log_source(log), directory, loaded.state, strict=True)


def _worth_saving(directory: Path, start: int, size: int, newest: int | None = None, *,
                  need: int | None = None) -> bool:
    """Whether a state of ``size`` entries, ``start`` of them from a snapshot or a state held, is worth saving: the
    log has grown enough past the newest snapshot (``newest``: the size of the newest usable one, 0 for none;
    None: the newest file in ``directory``, usable or not): ``need`` entries, by default the larger of
    ``SAVE_MIN_ENTRIES`` and ``SAVE_SHARE`` of the log."""
    latest = max(_sizes(directory), default=0) if newest is None else newest
    need = need if need is not None else max(SAVE_MIN_ENTRIES, int(size * SAVE_SHARE))
    return size > latest and size - max(start, latest) >= need


def due(logdir: Path, size: int, every: int | None = None) -> bool:
    """Whether a log of ``size`` entries in LOGDIR is due a new snapshot: ``every`` entries (default: the larger
    of ``SAVE_MIN_ENTRIES`` and ``SAVE_SHARE`` of the log) came after the newest snapshot file."""
    return _worth_saving(snapshot_dir(logdir), 0, size, need=every)


def _signed_head(log: Log) -> tuple[int, bytes]:
    """The size and root of the log's checkpoint at the size it was opened (or last refreshed) at, verified with the
    log's key (and matching the store). Not the store's latest: another writer may have appended since, and this
    reader's state is of the size it opened (entries after it are another reader's business)."""
    note = log.checkpoint(log.size)
    try:
        cp, _ = open_checkpoint(note, log.verifier)
    except (BadSignature, MalformedInput) as exc:
        raise InconsistentLog(f"the log's latest checkpoint does not verify: {exc}") from exc
    if cp.size != log.size:
        raise InconsistentLog(f"the log holds {log.size} entries but its latest checkpoint says {cp.size}",
                              index=min(cp.size, log.size))
    return cp.size, cp.root


def _latest(source: Source, directory: Path, check: bool = False, recovery: _Recovery | None = None
            ) -> tuple[State | None, int, str | None, str | None]:
    """The newest usable snapshot's state, size, None and the state digest it carries, or (None, 0, why not, None) —
    why is None when there is none."""
    reasons = []
    for s in _sizes(directory):
        if s > source.size:
            reasons.append(f"{_name(s)} is for {s} entries, the log holds {source.size}")
            continue
        try:
            state, carried = _open(source, directory / _name(s), s, check, recovery)
            return state, s, None, carried
        except (StaleCache, MalformedInput, InconsistentLog) as exc:
            reasons.append(f"{_name(s)}: {exc}")
    return None, 0, "; ".join(reasons) or None, None


def _open(source: Source, path: Path, s: int, check: bool = False, recovery: _Recovery | None = None
          ) -> tuple[State, str]:
    # Read the sealed part and the blobs the state needs now; the file stays open for those it needs later (the
    # timeline's), which are checked against the seal when read: an unlinked snapshot (a newer one pruned it)
    # stays readable through this handle, and an edited one fails its digest (``StaleCache``).
    f = localcache.open_regular(path, MAX_SNAPSHOT_BYTES)
    if f is None:
        raise StaleCache("it disappeared while read")
    size = os.fstat(f.fileno()).st_size
    sealed_length = int.from_bytes(os.pread(f.fileno(), 8, 0), "big")
    if size < 8 or not 0 < sealed_length <= size - 8:
        f.close()
        raise StaleCache("not a sealed state snapshot")
    try:
        header, body = localcache.unseal(KIND, os.pread(f.fileno(), sealed_length, 8), localcache.cache_key(),
                                         expect={**source.expect(), "size": s})
        blobs = _blob_loaders(header, f, 8 + sealed_length, size)
    except BaseException:
        f.close()
        raise
    try:
        snap_root = bytes.fromhex(str(header.get("root")))
    except ValueError:
        f.close()
        raise StaleCache("its header has no root") from None
    carried = header.get("state_digest")
    if not isinstance(carried, str) or not _DIGEST.fullmatch(carried):
        f.close()
        raise StaleCache("its header carries no state digest")
    try:
        if s == source.size:
            if snap_root != source.root:
                raise InconsistentLog("its root is not the root of the log's latest checkpoint")
        elif s > 0:
            source.consistent(s, snap_root)
    except Exception as exc:  # an InvalidProof or a bad hash: this snapshot is not of this log's history
        raise StaleCache(f"its root is not consistent with the log's signed checkpoint ({exc})") from None
    # Decoding makes millions of objects that live as long as the state. Collecting while they are made would
    # only rescan them, and so would every full collection afterwards (a fifth of a second each at a million
    # entries, several per thousand entries replayed): collect what is garbage now, decode with the collector
    # off, then move everything alive to the permanent generation (``gc.freeze``), which collections skip.
    # The cost: should this state become garbage later, its memory is not reclaimed by the cycle collector.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        state = codec.decode(body, blobs, recover_timeline=recovery.timeline(path, f, s, carried)
                             if recovery is not None else None)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    if state.next_index != s or state.origin != source.origin:
        raise StaleCache(f"it holds the state after {state.next_index} entries of {state.origin!r}")
    if check:
        got = state.digest()
        if got != carried:
            raise StaleCache(f"its state has digest {got[:16]}…, not the {carried[:16]}… it carries (the snapshot "
                             "gave back another state than the one saved)")
    return state, carried


def _blob_loaders(header: dict[str, Any], f: BinaryIO, start: int, size: int) -> list[Callable[[], bytes]]:
    """Loaders of the blobs after the sealed part (from byte ``start`` of the open file ``f``), each checked against
    the digest the seal covers: those the header marks ``late`` when they are loaded, the others here, so that a
    snapshot whose needed parts were edited is not used at all."""
    listed = header.get("blobs")
    if not isinstance(listed, list) or not all(isinstance(b, list) and len(b) == 3 and isinstance(b[0], int)
                                               and b[0] >= 0 and isinstance(b[1], str) and isinstance(b[2], bool)
                                               for b in listed):
        raise StaleCache("its header does not list its blobs")
    if start + sum(b[0] for b in listed) != size:
        raise StaleCache("its blobs are not the size its header says (cut short, or added to)")
    loaders: list[Callable[[], bytes]] = []
    offset = start
    for length, digest, late in listed:
        load = _BlobLoader(f, offset, length, digest)
        loaders.append(load if late else _loaded(load()))
        offset += length
    return loaders


class _BlobLoader:
    """Reads one blob of an open snapshot file and checks it against its sealed digest."""

    def __init__(self, f: BinaryIO, offset: int, length: int, digest: str) -> None:
        self.f, self.offset, self.length, self.digest = f, offset, length, digest

    def __call__(self) -> bytes:
        data = os.pread(self.f.fileno(), self.length, self.offset)
        if len(data) != self.length or hashlib.sha256(data).hexdigest() != self.digest:
            raise StaleCache(f"the state snapshot's blob at byte {self.offset} does not match its seal (the file "
                             "was edited or cut short)")
        return data


def _loaded(data: bytes) -> Callable[[], bytes]:
    return lambda: data


@dataclass
class _Recovery:
    """How to get back a snapshot's timeline when its blob fails its check as it is read (see the module doc)."""

    source: Source
    reopen: Reopen | None
    note: Note | None
    workers: int

    def timeline(self, path: Path, f: BinaryIO, size: int, carried: str) -> Callable[[Exception], list[Event]]:
        """The recovery of the timeline of the snapshot ``path`` (open as ``f``) of ``size`` entries, whose state
        has the digest ``carried``."""

        def recover(exc: Exception) -> list[Event]:
            _discard(path, f)
            if self.note is not None:
                self.note(f"the timeline of state snapshot {path.name} cannot be read ({exc}); the snapshot was "
                          f"removed, and the log's first {size} entries are replayed for it")
            try:
                with self.reopen() if self.reopen is not None else contextlib.nullcontext(self.source) as source:
                    state = _replay_prefix(source, size, self.workers)
            except RedlineError:  # what the log says of itself (e.g. a store that fails its proofs) is the finding
                raise
            except Exception as again:  # the log cannot be read again: the original error stands, with why
                raise StaleCache(f"{exc}; replaying the log for the timeline failed too ({again}); run again "
                                 "with --no-cache") from again
            if state.digest() != carried:
                raise StaleCache(f"{exc}; the log's first {size} entries no longer give the state the snapshot was "
                                 "made from, so its timeline cannot be recovered; run again with --no-cache")
            return list(state.timeline)

        return recover


def _replay_prefix(source: Source, size: int, workers: int) -> State:
    """The state of the first ``size`` entries of ``source``, every entry of it read and authenticated."""

    def prefix(entries: Iterator[Entry]) -> Iterator[Entry]:
        for entry in entries:  # those after the prefix are read (and so authenticated, as the whole is) unused
            if entry.index < size:
                yield entry

    return _replay(prefix(source.entries(0)), State(origin=source.origin), size, workers)


def _replay(entries: Iterator[Entry], initial: State, count: int, workers: int) -> State:
    """``initial`` with ``entries`` (about ``count`` of them) applied: in parallel when there are enough."""
    if count >= MIN_PARALLEL_ENTRIES and workers > 1:
        return replay_parallel(entries, initial, workers=workers)
    return replay(entries, initial)


def _discard(path: Path, f: BinaryIO) -> None:
    """Remove the snapshot file ``path`` if it still is the file open as ``f`` (not a newer one of that name)."""
    try:
        now, held = os.stat(path), os.fstat(f.fileno())
        if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            path.unlink()
    except OSError:
        pass


def authenticated_entries(log: Log, start: int) -> Iterator[Entry]:
    """Entries ``start ..`` of ``log`` as the engine takes them, each checked against the log's signed root
    (``Log.verified_entries``: the stored frontier at ``start`` proven part of the signed tree, every hash
    re-derived, the root compared at the end). Exhaust it before trusting what was built from it."""
    for index, time_ms, data in log.verified_entries(start):
        yield Entry(index, time_ms, data)


def save_snapshot(source: Source, directory: Path, state: State, *, strict: bool = False) -> Path | None:
    """Seal and write ``state`` (the state of all of ``source``) as a snapshot in ``directory``; keep the newest
    ``KEEP``. None when it could not be written (a read-only directory is not an error), unless ``strict``: then
    what stopped it is raised."""
    if state.next_index != source.size:
        if strict:
            raise InconsistentLog(f"the state holds {state.next_index} entries, the log {source.size}")
        return None
    try:
        encoded = codec.encode(state)
    except (MalformedInput, StaleCache):  # a state holding what a snapshot cannot keep, or an edited snapshot's
        if strict:
            raise
        return None
    header = {**source.expect(), "size": source.size, "root": source.root.hex(), "state_digest": state.digest(),
              "blobs": [[len(b), hashlib.sha256(b).hexdigest(), i in encoded.late]
                        for i, b in enumerate(encoded.blobs)],
              "made_ms": time.time_ns() // 1_000_000}
    path = directory / _name(source.size)
    try:
        sealed = localcache.seal(KIND, header, encoded.body, localcache.cache_key())
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        localcache.write_atomic(path, [len(sealed).to_bytes(8, "big"), sealed, *encoded.blobs])
    except OSError:
        if strict:
            raise
        return None
    for old in _sizes(directory)[KEEP:]:
        try:
            (directory / _name(old)).unlink()
        except OSError:
            pass
    return path


__all__ = ["KIND", "Loaded", "Source", "authenticated_entries", "due", "load_source", "load_state", "log_source",
           "save_if_worth", "save_snapshot", "snapshot_dir", "snapshot_now"]
