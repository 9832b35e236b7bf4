"""The submission pipeline every face uses: verify → validate → authorize → append → receipt.

A ``Registry`` holds a log and the engine's state replayed from it. ``submit``
runs the engine's own admission check (signature against the admitted key,
strict parsing, role, sequence number, references) before anything is written,
so a rejected statement leaves the log untouched and the error says exactly
why; an accepted one is appended durably, applied to the state, and answered
with an offline receipt.

Submissions are read as leniently as DSSE allows (``Envelope.from_json_lenient``)
and logged in redline's one canonical form (:func:`canonical_envelope`): canonical
base64, no unknown fields, and the ``keyid`` of the party's signature filled in once
it verified. The engine, and every replay, sees only those canonical bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from redline.crypto.canonical import parse_json
from redline.crypto.dsse import MAX_ENVELOPE_BYTES, Envelope, EnvelopeSignature, pae
from redline.crypto.keys import SigningKey, VerifierKey
from redline.engine import Entry, State, admit, apply, replay
from redline.engine.replay import MAX_ENTRY_BYTES, Prepared
from redline.errors import BadSignature, EntryTooLarge, InconsistentLog, MalformedInput, RedlineError, UnknownParty
from redline.log.receipt import Receipt
from redline.log.service import Log, StaleLog
from redline.statements import Genesis, Predicate, sign_predicate


@dataclass(frozen=True)
class Submitted:
    """An accepted statement: where it is in the log, when it was logged, and its receipt."""

    index: int
    time_ms: int
    predicate: Predicate
    receipt: Receipt
    #: The bytes logged: the canonical envelope (what the receipt proves), which may differ from those submitted.
    envelope: bytes = b""


class Registry:
    """A log plus the state derived from it; the only way statements get in."""

    def __init__(self, log: Log, state: State | None = None) -> None:
        """The registry of ``log``; ``state``, when given, must be the state of exactly the log's entries (e.g. from
        ``redline.statecache.load_state``), else it is replayed from the log here."""
        self.log = log
        self._lock = threading.Lock()
        self._dirty = False  # the state may be ahead of the log (an append failed before it was replayed again)
        if state is not None and (state.next_index != log.size or state.origin != log.origin):
            raise InconsistentLog(f"the state given holds {state.next_index} entries of {state.origin!r}, the log "
                                  f"{log.size} of {log.origin!r}", index=min(state.next_index, log.size))
        # the state knows the log's origin from the start: a genesis or a statement for another log is refused
        self.state: State = state if state is not None else replay(
            (Entry(i, t, e) for i, t, e in log.entries()), State(origin=log.origin))

    def lock(self) -> threading.Lock:
        """The lock submissions take: hold it to read the log and the state as one while others may submit."""
        return self._lock

    @classmethod
    def genesis(cls, log: Log, coordinator: SigningKey, *, when: datetime | None = None) -> Registry:
        """Start an empty log with the genesis statement naming the coordinator's key."""
        if log.size != 0:
            raise MalformedInput(f"log {log.origin} already holds {log.size} entries; genesis must be first")
        reg = cls(log)
        pred = Genesis(party=coordinator.name, seq=1, log=log.origin, origin=log.origin, coordinator=coordinator.name,
                       coordinator_key=coordinator.verifier().to_string())
        reg.submit(sign_predicate(pred, coordinator).to_json())
        return reg

    def submit(self, envelope: bytes) -> Submitted:
        """Admit, append and apply one signed statement; raise the specific error and write nothing if refused."""
        with self._lock, self.log.writing():
            self._catch_up()
            envelope = canonical_envelope(self.state, envelope).to_json()
            pred, _, _ = admit(self.state, envelope, at_ms=max(self.log.clock(), self.state.last_time_ms))
            done = self.log.append([envelope])
            index, time_ms = done.first_index, done.times_ms[0]
            apply(self.state, Entry(index, time_ms, envelope))
            if self.state.rejected and self.state.rejected[-1].index == index:
                raise InconsistentLog(f"entry {index} was admitted but the engine rejected it on apply: "
                                      f"{self.state.rejected[-1].message}", index=index)
            return Submitted(index, time_ms, pred, self.log.receipt(index), envelope)

    def submit_many(self, envelopes: Sequence[bytes]) -> list[Submitted | RedlineError]:
        """Admit each signed statement in order, then append every admitted one in ONE batch (one transaction,
        one checkpoint); per envelope, its ``Submitted`` or the ``RedlineError`` that refused it.

        The batch's integration time ``t`` is fixed first (the log's clock, never behind the state). Each
        envelope is admitted against the state as the earlier ones of the batch left it, and applied at
        ``t`` with the index it is about to get, so a party may send statements ``n`` and ``n+1`` in one
        batch. The append integrates the batch at ``t`` (``Log.append(at_ms=t)``), so the leaves carry exactly the
        time the state was built with and a replay of the log gives the same state. Should the append fail, the
        state is replayed again from the log and every admitted envelope gets that error; nothing is written.
        """
        with self._lock:
            for attempt in range(STALE_RETRIES):
                try:
                    with self.log.writing():
                        self._catch_up()
                        return self._submit_many(envelopes, retry_stale=attempt + 1 < STALE_RETRIES)
                except _Stale:
                    continue
        raise AssertionError("unreachable")  # pragma: no cover

    def _catch_up(self) -> None:
        """Apply the entries other writers appended to the log (after ``Log.refresh``) to the state; replay it
        afresh when an earlier failed append left it unsure."""
        if self._dirty or self.state.next_index > self.log.size:
            self.state = replay((Entry(i, tm, e) for i, tm, e in self.log.entries()), State(origin=self.log.origin))
            self._dirty = False
        if self.state.next_index < self.log.size:
            for i, tm, e in self.log.entries(self.state.next_index):
                apply(self.state, Entry(i, tm, e))

    def _submit_many(self, envelopes: Sequence[bytes], retry_stale: bool) -> list[Submitted | RedlineError]:
        results: list[Submitted | RedlineError | None] = [None] * len(envelopes)
        start = self.log.size
        t = max(self.log.clock(), self.state.last_time_ms)
        admitted: list[tuple[int, bytes, Predicate]] = []
        for position, submitted in enumerate(envelopes):
            try:
                env: Envelope | None = canonical_envelope(self.state, submitted)
                envelope = env.to_json()
                if len(envelope) > MAX_ENTRY_BYTES:
                    env = None  # admit refuses it by its size
                pre = Prepared(tuple(sig.keyid for sig in env.signatures), envelope=env) if env else None
                pred, _, key = admit(self.state, envelope, pre, at_ms=t)
            except RedlineError as exc:
                results[position] = exc
                continue
            index = start + len(admitted)
            done = Prepared(pre.keyids if pre else (), frozenset({key.fingerprint}), pred, env) if pre else None
            apply(self.state, Entry(index, t, envelope), done)
            if self.state.rejected and self.state.rejected[-1].index == index:
                # admitted a moment before but refused at the logged time: logged as refused, as a replay would
                results[position] = InconsistentLog(f"entry {index} was admitted but the engine rejected it "
                                                    f"on apply: {self.state.rejected[-1].message}", index=index)
            admitted.append((position, envelope, pred))
        if not admitted:
            return results  # type: ignore[return-value]
        try:
            appended = self.log.append([e for _, e, _ in admitted], at_ms=t)
            if appended.first_index != start or set(appended.times_ms) != {t}:
                raise InconsistentLog(f"the log integrated the batch at index {appended.first_index}, times "
                                      f"{sorted(set(appended.times_ms))}, not at {start}, time {t}", index=start)
        except BaseException as exc:
            self._dirty = True  # the state holds the batch the log may not: replayed before the next one
            if isinstance(exc, StaleLog) and retry_stale:
                raise _Stale from exc
            self.state = replay((Entry(i, tm, e) for i, tm, e in self.log.entries()), State(origin=self.log.origin))
            self._dirty = False
            error = exc if isinstance(exc, RedlineError) else InconsistentLog(f"append failed: {exc!r}")
            for position, _, _ in admitted:
                results[position] = error
            if not isinstance(exc, Exception):
                raise
            return results  # type: ignore[return-value]
        size, checkpoint, extra = self.log.size, appended.checkpoint, t.to_bytes(8, "big")
        for k, (position, envelope, pred) in enumerate(admitted):
            if results[position] is None:
                index = start + k
                receipt = Receipt(index, tuple(self.log.prove_inclusion(index, size)), checkpoint, extra)
                results[position] = Submitted(index, t, pred, receipt, envelope)
        return results  # type: ignore[return-value]

    def next_seq(self, party: str) -> int:
        """The sequence number the party's next statement must carry."""
        p = self.state.parties.get(party)
        return 1 if p is None else p.last_seq + 1


def canonical_envelope(state: State, data: bytes) -> Envelope:
    """The envelope ``data`` holds, as the registry logs it: read leniently, keyid filled in when needed.

    ``data`` is read as DSSE allows (``Envelope.from_json_lenient``). When some signature's ``keyid`` names a
    key of an admitted party (or, for the log's first entry, the coordinator key the genesis names), the
    envelope is left as it is: the engine decides exactly as for canonical input. Otherwise the statement's
    own ``party`` is read from the payload, untrusted, and the first signature that verifies under that
    party's current key gets the key's fingerprint as its ``keyid``; every other signature keeps its own
    (``""`` when it had none). So the signature decides: a party the statement merely names never signs for
    it, and the payload bytes are never touched. The engine then checks everything again on the canonical
    bytes (``to_json()``). Raises ``UnknownParty`` (as the engine would, with the reason) when no keyid names
    a known key and no signature verifies under the named party's key; other undecidable cases (no party, an
    unknown party) are left to the engine's own error.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EntryTooLarge(f"entry is {len(data)} bytes, over the limit of {MAX_ENTRY_BYTES}")
    env = Envelope.from_json_lenient(data)
    known = state.keys
    if any(s.keyid in known for s in env.signatures):
        return env
    claimed = _claimed_key(state, env.payload)
    if claimed is None:
        return env
    name, key = claimed
    if any(s.keyid == key.fingerprint for s in env.signatures):
        return env  # (a genesis naming its key already; the engine checks it)
    if any(s.keyid in state.retired_keys for s in env.signatures):
        return env  # signed by a retired key: the engine says so
    message = pae(env.payload_type, env.payload)
    for i, s in enumerate(env.signatures):
        try:
            key.verify(message, s.sig)
        except BadSignature:
            continue
        sigs = (*env.signatures[:i], EnvelopeSignature(key.fingerprint, s.sig), *env.signatures[i + 1:])
        return Envelope(env.payload, env.payload_type, sigs)
    ids = ", ".join(repr(s.keyid[:16]) for s in env.signatures)
    raise UnknownParty(f"statement is not signed by the key of any admitted party: no keyid names one (key IDs: "
                       f"{ids}), and no signature verifies under the current key of {name!r}, the party it names")


def _claimed_key(state: State, payload: bytes) -> tuple[str, VerifierKey] | None:
    """The party the payload's predicate names and its current key (the coordinator key a genesis names, for
    the log's first entry); None when there is none. Nothing here is trusted: the signature decides."""
    try:
        obj = parse_json(payload, what="in-toto statement")
        pred = obj.get("predicate") if isinstance(obj, dict) else None
        if not isinstance(pred, dict):
            return None
        if state.next_index == 0 and not state.parties:
            key_str = pred.get("coordinator_key")
            if not isinstance(key_str, str):
                return None
            key = VerifierKey.from_string(key_str)
            return key.name, key
        name = pred.get("party")
        party = state.parties.get(name) if isinstance(name, str) else None
        if party is None or party.revoked or state.keys.get(party.key.fingerprint) != party.name:
            return None
        return party.name, party.key
    except RedlineError:
        return None


#: Times ``submit_many`` admits a batch again after another writer appended first (stores without a writer lock).
STALE_RETRIES = 5


class _Stale(Exception):
    """Another writer appended between admission and append: admit the batch again."""
