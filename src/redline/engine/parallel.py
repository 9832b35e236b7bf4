"""Parallel replay: the stateless work on every entry in worker processes, the state in one sequential pass.

``replay_parallel(entries)`` gives exactly the state ``replay(entries)`` gives, for every
input, valid or garbage; it only moves work that depends on nothing but an entry's bytes
to a process pool:

1. A cheap sequential pre-scan collects *candidate* keys (fingerprint → key) from the
   payloads of genesis, admission and key-rotation statements, chunk by chunk ahead of
   the chunks sent to the workers (a key can only be current for an entry if the
   statement naming it came earlier). Nothing is trusted here: a candidate only says
   which signatures are worth verifying ahead of time, and a key the pre-scan misses
   only costs speed (``admit`` then verifies the signature itself).
2. The pool runs :func:`prepare` on chunks of entries: parse the envelope, verify the
   first signature of each candidate key ID with that key (Ed25519 over the DSSE PAE),
   and, when one verifies, parse and validate the in-toto statement and its predicate.
   Signature validity is a pure function of the envelope bytes and the key, and the
   statement checks are pure functions of the payload, so the results (a
   :class:`~redline.engine.replay.Prepared`) are the same wherever they are computed.
3. The sequential pass calls :func:`~redline.engine.replay.apply` with each entry's
   ``Prepared``; ``admit`` decides which key is current for which party, roles,
   sequence numbers and semantics exactly as without it, and skips only the Ed25519
   verification of a key whose signature is already known to verify and the parsing
   that is already done. An entry the workers could not prepare is admitted from scratch,
   and so are the first ``HEAD_ENTRIES`` entries, by this process while the workers start up.

The workers send back compact results (key IDs, the key IDs whose signature verified, the
predicate's type and canonical bytes), and this process validates the predicate again from
those bytes: cheaper than pickling models across, and nothing but plain data travels.

Recursion: how deeply nested a document Python can parse depends on the stack depth it is
parsed at, so the workers parse under a fixed recursion budget and their results are used
only when the sequential pass has more headroom than that; otherwise it replays
sequentially, exactly as ``replay`` would at that depth.

Workers are started with the ``spawn`` method (no ``fork`` of a possibly multi-threaded
caller) and live for one call.
"""

from __future__ import annotations

import binascii
import gc
import json
import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import islice
from types import FrameType
from typing import Any, TypeVar

from redline.crypto.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, pae
from redline.crypto.keys import VerifierKey
from redline.engine.replay import MAX_ENTRY_BYTES, Entry, Prepared, apply
from redline.engine.state import State
from redline.errors import BadSignature
from redline.statements import PREDICATE_TYPES, Predicate, parse_payload_canonical

__all__ = ["candidate_keys", "prepare", "replay_parallel"]

#: Entries per task sent to a worker: large enough to amortise the IPC, small enough to balance.
DEFAULT_CHUNK = 256
#: Entries the calling process admits itself, from scratch, while the workers start up.
HEAD_ENTRIES = 1024
#: Chunks in flight per worker (bounds the memory held by results not yet applied).
IN_FLIGHT_PER_WORKER = 4
#: Below this many entries the pool is not worth starting.
MIN_PARALLEL_ENTRIES = 2_000
#: Stack frames the workers may use below ``prepare`` when parsing (ordinary statements need a few dozen).
RECURSION_BUDGET = 200
#: Extra headroom the sequential pass must have beyond the workers' budget to use their results.
RECURSION_MARGIN = 50
#: Most candidate keys sent to the workers (a log naming more is pathological; the rest are verified inline).
MAX_CANDIDATES = 4096
#: Allocations between young-generation garbage collections in the sequential pass (Python's default is 700):
#: the replay allocates many short-lived objects while holding a large live heap (the log, the state).
GC_THRESHOLD0 = 100_000

_KEY_FIELDS = {
    b"urn:redline:genesis:v1": "coordinator_key",
    b"urn:redline:admission:v1": "verifier_key",
    b"urn:redline:key-rotation:v1": "new_verifier_key",
}


# --- 1. candidate keys ------------------------------------------------------------------


def _b64_forms(marker: bytes) -> tuple[bytes, ...]:
    """The base64 text ``marker`` turns into, at each of its 3 possible alignments in the encoded bytes.

    Only the characters that depend on the marker's bytes alone are kept: well-formed base64
    of bytes holding the marker holds one of these.
    """
    forms = []
    for align in range(3):
        text = binascii.b2a_base64(b"\0" * align + marker, newline=False)
        forms.append(text[(0, 2, 3)[align]:(align + len(marker)) // 3 * 4])
    return tuple(forms)


#: Every predicate naming a key has a field ending in ``_key`` (``coordinator_key``, ``verifier_key``,
#: ``new_verifier_key``); in canonical JSON a quote inside a string is escaped, so this is a field name.
_KEY_FIELD_FORMS = _b64_forms(b'_key":"')


def _payload_bytes(data: bytes) -> bytes | None:
    """The envelope's payload, decoded leniently, when it may name a key (a hint only: the engine parses it strictly)."""
    start = data.find(b'"payload":"')
    if start >= 0:
        start += 11
        end = data.find(b'"', start)
        b64 = data[start:end] if end >= 0 else b""
        # Most statements name no key: look for the field in the base64 text before decoding it all.
        if not any(form in b64 for form in _KEY_FIELD_FORMS):
            return None
    else:  # not written the canonical way: parse it properly
        try:
            obj = json.loads(data)
            b64 = obj["payload"].encode("ascii")
        except Exception:
            return None
    try:
        return binascii.a2b_base64(b64)
    except (binascii.Error, ValueError):
        return None


def _keys_in(payload: bytes) -> Iterator[VerifierKey]:
    for marker, field in _KEY_FIELDS.items():
        if marker not in payload:
            continue
        try:
            pred = json.loads(payload)["predicate"]
            yield VerifierKey.from_string(pred[field])
        except Exception:
            continue


def candidate_keys(datas: Iterable[bytes]) -> dict[str, VerifierKey]:
    """Fingerprint → key for every key named by a genesis, admission or key-rotation payload (untrusted)."""
    out: dict[str, VerifierKey] = {}
    for data in datas:
        if len(data) > MAX_ENTRY_BYTES:
            continue
        payload = _payload_bytes(data)
        if payload is None:
            continue
        for key in _keys_in(payload):
            out.setdefault(key.fingerprint, key)
    return out


# --- 2. the stateless work ----------------------------------------------------------


def prepare(data: bytes, candidates: Mapping[str, VerifierKey]) -> Prepared | None:
    """Everything about ``data`` that depends on nothing else, or None where ``admit`` must start from scratch.

    The signature verified for a candidate key ID is the envelope's first with that key ID:
    the one ``Envelope.verify`` checks for that key. The statement is parsed only when a
    signature verifies (otherwise ``admit`` fails at the signature, or has to verify itself).
    """
    env = _open(data)
    if env is None:
        return None
    verified, signer = _check_signatures(env, candidates)
    parsed = _parse(env, signer) if signer is not None else None
    return Prepared(tuple(s.keyid for s in env.signatures), frozenset(verified),
                    parsed[0] if parsed is not None else None, env)


def _open(data: bytes) -> Envelope | None:
    if len(data) > MAX_ENTRY_BYTES:
        return None
    try:
        return Envelope.from_json(data)
    except Exception:
        return None


def _check_signatures(env: Envelope, candidates: Mapping[str, VerifierKey]) -> tuple[list[str], VerifierKey | None]:
    """Key IDs whose (first) signature verifies with the candidate key, and the first such key."""
    verified: list[str] = []
    seen: set[str] = set()
    message = None
    signer: VerifierKey | None = None
    for s in env.signatures:
        if s.keyid in seen:
            continue
        seen.add(s.keyid)
        key = candidates.get(s.keyid)
        if key is None:
            continue
        if message is None:
            message = pae(env.payload_type, env.payload)
        try:
            key.verify(message, s.sig)
        except BadSignature:
            continue
        verified.append(s.keyid)
        signer = signer or key
    return verified, signer


def _parse(env: Envelope, signer: VerifierKey) -> tuple[Predicate, bytes] | None:
    """``open_predicate`` after the signature by ``signer`` verified, with the predicate's canonical bytes."""
    try:
        if env.payload_type != IN_TOTO_PAYLOAD_TYPE:
            return None
        return parse_payload_canonical(env.payload)
    except Exception:
        return None  # admit repeats the checks and raises exactly what replay would


#: What a worker sends back for one entry: None (admit starts from scratch) or the signatures' key IDs,
#: those verified, and the predicate's type and canonical bytes (None, None where it was not parsed).
_Packed = tuple[tuple[str, ...], tuple[str, ...], str | None, bytes | None]


def _unpack(item: _Packed | None) -> Prepared | None:
    """The ``Prepared`` a worker's compact result stands for: the predicate validated again from its canonical bytes."""
    if item is None:
        return None
    keyids, verified, ptype, raw = item
    predicate = None
    if ptype is not None and raw is not None:
        try:
            predicate = PREDICATE_TYPES[ptype].model_validate_json(raw)
        except Exception:
            predicate = None  # cannot happen (the worker validated these bytes); admit would do the work
    return Prepared(keyids, frozenset(verified), predicate)


def _depth() -> int:
    frame: FrameType | None = sys._getframe(1)
    n = 0
    while frame is not None:
        frame, n = frame.f_back, n + 1
    return n


_KEY_CACHE: dict[str, VerifierKey] = {}
_CANDIDATES: tuple[bytes, dict[str, VerifierKey]] = (b"", {})


def _encode_keys(strings: Sequence[str]) -> bytes:
    """Candidate verifier-key strings for the workers, one per line (they hold no whitespace)."""
    return "\n".join(strings).encode("utf-8")


def _decode_keys(blob: bytes) -> list[str]:
    return blob.decode("utf-8").split("\n") if blob else []


def _candidates_from(blob: bytes) -> dict[str, VerifierKey]:
    global _CANDIDATES
    if blob != _CANDIDATES[0]:
        out = {}
        for text in _decode_keys(blob):
            key = _KEY_CACHE.get(text)
            if key is None:
                key = _KEY_CACHE[text] = VerifierKey.from_string(text)
            out[key.fingerprint] = key
        _CANDIDATES = (blob, out)
    return _CANDIDATES[1]


def _prepare_chunk(datas: Sequence[bytes], blob: bytes) -> list[_Packed | None]:
    """Worker task: what ``prepare`` finds for each entry, under the recursion budget, sent back compactly.

    The work goes in passes over the chunk (envelopes, then signatures, then statements): the
    same results as ``prepare`` entry by entry, with each pass's code and data staying warm in
    the caches (interleaving Ed25519 with the parsing costs a fifth more time).
    """
    candidates = _candidates_from(blob)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_depth() + RECURSION_BUDGET)
    try:
        envs = [_guarded(_open, d) for d in datas]
        checks = [_guarded(_check_signatures, env, candidates) if env is not None else None for env in envs]
        out: list[_Packed | None] = []
        for env, check in zip(envs, checks):
            if env is None or check is None:
                out.append(None)
                continue
            verified, signer = check
            parsed = _guarded(_parse, env, signer) if signer is not None else None
            out.append((tuple(s.keyid for s in env.signatures), tuple(verified),
                        parsed[0].PREDICATE_TYPE if parsed is not None else None,
                        parsed[1] if parsed is not None else None))
        return out
    finally:
        sys.setrecursionlimit(old)


_R = TypeVar("_R")


def _guarded(fn: Callable[..., _R], *args: Any) -> _R | None:
    try:
        return fn(*args)
    except RecursionError:
        return None


def _init_worker() -> None:
    gc.freeze()  # the imported modules are permanent: collections need not scan them again and again


class _Reader:
    """Reads an entry iterator ahead; an exception it raises is kept until the entries before it are applied."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._it = iter(entries)
        self.error: Exception | None = None

    def take(self, n: int) -> list[Entry]:
        out: list[Entry] = []
        if self.error is None:
            try:
                out.extend(islice(self._it, n))
            except Exception as exc:  # re-raised by reraise(), where replay would have raised it
                self.error = exc
        return out

    def rest(self) -> Iterator[Entry]:
        return self._it if self.error is None else iter(())

    def reraise(self) -> None:
        if self.error is not None:
            raise self.error


def _prepared_chunks(reader: _Reader, first: list[Entry], workers: int,
                     chunk: int) -> Generator[tuple[list[Entry], list[Prepared | None]], None, None]:
    """Chunks of entries with their ``Prepared`` (None where a worker could not prepare one), in order.

    Candidate keys are collected chunk by chunk before the chunk is sent: a key can only be
    current for an entry if the statement that named it came earlier.
    """
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker)
    try:
        strings: list[str] = []
        fingerprints: set[str] = set()
        blob = _encode_keys(strings)
        pending: deque[tuple[list[Entry], Future[list[_Packed | None]] | None]] = deque()
        # The first entries are admitted here, from scratch, while the workers start up (spawning
        # and importing take a good fraction of a second); the workers begin after them.
        lead = first[:HEAD_ENTRIES]
        backlog = [first[i:i + chunk] for i in range(len(lead), len(first), chunk)]
        broken = False

        def learn(batch: list[Entry]) -> None:
            nonlocal blob
            grew = False
            for fp, key in candidate_keys(e.data for e in batch).items():
                if fp not in fingerprints and len(fingerprints) < MAX_CANDIDATES:
                    fingerprints.add(fp)
                    strings.append(key.to_string())
                    grew = True
            if grew:
                blob = _encode_keys(strings)

        def submit() -> None:
            nonlocal broken
            batch = backlog.pop(0) if backlog else reader.take(chunk)
            if not batch:
                return
            learn(batch)
            future = None
            if not broken:
                try:
                    future = pool.submit(_prepare_chunk, [e.data for e in batch], blob)
                except BrokenProcessPool:
                    broken = True
            pending.append((batch, future))

        learn(lead)
        for _ in range(max(2, workers * IN_FLIGHT_PER_WORKER)):
            submit()
        if lead:
            yield lead, [None] * len(lead)
        while pending:
            batch, future = pending.popleft()
            results: list[Prepared | None] = [None] * len(batch)
            if future is not None:
                try:
                    results = [_unpack(item) for item in future.result()]
                except Exception:  # a lost worker or a result that would not travel: admit does the work
                    pass
            submit()
            yield batch, results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- 3. the sequential pass ----------------------------------------------------------


def replay_parallel(entries: Iterable[Entry], state: State | None = None, *, workers: int = 2,
                    chunk: int = DEFAULT_CHUNK) -> State:
    """``replay(entries, state)`` with the stateless work on ``workers`` processes: the same state, faster.

    ``entries`` may be any iterable; it is read a few chunks ahead. A short log, one worker,
    or a call with little stack left replays sequentially. Like any code that starts
    processes, call it from under ``if __name__ == "__main__":`` in a script.
    """
    state = State() if state is None else state
    reader = _Reader(entries)
    first = reader.take(MIN_PARALLEL_ENTRIES)
    # Workers' results stand only where this pass has more stack headroom than they had. apply
    # runs one frame below this one, as under replay, so the sequential fallback is replay itself.
    headroom = sys.getrecursionlimit() - _depth()
    if workers < 2 or len(first) < MIN_PARALLEL_ENTRIES or headroom < RECURSION_BUDGET + RECURSION_MARGIN:
        for e in first:
            apply(state, e)
        reader.reraise()
        for e in reader.rest():
            apply(state, e)
        return state
    chunks = _prepared_chunks(reader, first, workers, max(1, chunk))
    try:
        with _fewer_collections():
            for batch, results in chunks:
                for e, pre in zip(batch, results):
                    apply(state, e, pre)
    finally:
        chunks.close()
    reader.reraise()
    return state


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often for a while (restoring the thresholds after): no effect on the result."""
    old = gc.get_threshold()
    gc.set_threshold(max(old[0], GC_THRESHOLD0), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
