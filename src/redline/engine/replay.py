"""Replay: the log, entry by entry, into the state of the world (pure and deterministic).

``apply(state, entry)`` admits or rejects one entry and derives its consequences;
``replay(entries)`` folds it over a log. Time is the log's: each entry carries the
integration time bound into its leaf, and every deadline (acknowledge a pause,
report compute usage, notify, a review window) is judged against the logged
time of the entries that follow. ``admit`` is the check the registry runs before
an entry is appended, so the log and the engine accept exactly the same things.
An entry that fails on replay is recorded as rejected; replay never crashes on
bad input. What each statement kind may say and does is its rule in
``redline.engine.rules``; what the rules share is ``redline.engine.effects``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from redline.crypto.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from redline.crypto.keys import VerifierKey
from redline.engine.effects import advance_time, parameters
from redline.engine.rules import EMPTY_ROOT, ROLES_ALLOWED, ROOT_FIELDS, RULES
from redline.engine.state import Party, Rejection, State
from redline.errors import (
    EntryTooLarge,
    InvalidStatement,
    MalformedInput,
    NotAuthorized,
    RedlineError,
    RevokedKey,
    SequenceError,
    UnknownParty,
)
from redline.statements import Genesis, Predicate, open_predicate, parse_payload
from redline.times import DAY_MS, MINUTE_MS, format_utc, iso, ms_of

#: Largest log entry the engine looks at (the log itself refuses larger ones).
MAX_ENTRY_BYTES = 65_527


@dataclass(frozen=True)
class Entry:
    """One log entry as the engine sees it: index, logged time (ms) and bytes."""

    index: int
    time_ms: int
    data: bytes


class Prepared(NamedTuple):
    """The stateless part of admitting one entry's bytes, done ahead (``redline.engine.parallel.prepare``).

    ``keyids`` are the key IDs of the envelope's signatures, in order (``Envelope.from_json(data)`` parses);
    ``verified`` holds the fingerprints of keys whose signature (the envelope's first with that keyid)
    verifies over the envelope's PAE; ``predicate``, when set, is what ``open_predicate`` yields once a
    signature verifies; ``envelope``, when set, is ``Envelope.from_json(data)`` (else ``admit`` parses the
    bytes again in the rare case it needs the envelope itself); ``payload_type`` and ``payload``, when set,
    are the envelope's (``admit`` then parses the statement itself, as ``open_predicate`` would, once the
    signature it decides on is known to verify). All are pure functions of the bytes (and the key), so
    ``admit`` may take them as given: everything that depends on the state (which key is current for whom,
    roles, sequence numbers, semantics) is still decided by ``admit`` exactly as without them. (A named tuple:
    the parallel replay makes one per entry, at a third of a frozen dataclass's cost.)
    """

    keyids: tuple[str, ...]
    verified: frozenset[str] = frozenset()
    predicate: Predicate | None = None
    envelope: Envelope | None = None
    payload_type: str | None = None
    payload: bytes | None = None


class _Verified:
    """Stands in for a key in ``Envelope.verify`` when its signature is known to verify (``Prepared.verified``)."""

    __slots__ = ("key", "fingerprint", "name")

    def __init__(self, key: VerifierKey) -> None:
        self.key, self.fingerprint, self.name = key, key.fingerprint, key.name

    def verify(self, message: bytes, signature: bytes) -> None:
        """Already verified ahead of time."""


# --- admission: signature, parsing, role, sequence --------------------------------


def admit(state: State, data: bytes, pre: Prepared | None = None, *,
          at_ms: int | None = None) -> tuple[Predicate, Party | None, VerifierKey]:
    """Check an entry against the state without changing it.

    The statement's times are judged against the entry's integration time: during replay that is the state's
    time; before an append (the registry) ``at_ms`` is the time the log is about to give, and the lower bounds
    are judged a minute later, so that nothing the registry accepts is refused once logged a moment later.

    Returns the predicate, the speaking party (None for the genesis statement)
    and the key that signed it, or raises the specific error: ``MalformedInput`` (``EntryTooLarge``),
    ``BadSignature``, ``UnknownParty``, ``RevokedKey``, ``InvalidStatement``,
    ``NotAuthorized``, ``SequenceError``, ``InvalidPolicy``. ``pre``, if given, must be the ``Prepared``
    of these same bytes: it saves the stateless work and changes no outcome.
    """
    if len(data) > MAX_ENTRY_BYTES:
        raise EntryTooLarge(f"entry is {len(data)} bytes, over the limit of {MAX_ENTRY_BYTES}", size=len(data),
                            limit=MAX_ENTRY_BYTES)
    if pre is None:
        parsed = Envelope.from_json(data)
        env: Envelope | None = parsed
        keyids: Iterable[str] = [s.keyid for s in parsed.signatures]
    else:
        env, keyids = pre.envelope, pre.keyids
    if state.next_index == 0 and not state.parties:
        return _admit_genesis(env if env is not None else Envelope.from_json(data), state.origin)
    if pre is not None and pre.predicate is not None and len(pre.keyids) == 1:
        # the usual entry: one signature, by a current key, known to verify, its statement parsed already
        kid = pre.keyids[0]
        name = state.keys.get(kid)
        if name is not None and kid in pre.verified and state.parties[name].key.fingerprint == kid:
            return _admit_checked(state, pre.predicate, state.parties[name].key, at_ms)
    signer_keys = [state.parties[state.keys[k]].key for k in keyids if k in state.keys]
    if not signer_keys:
        for k in keyids:
            if k in state.retired_keys:
                raise RevokedKey(f"statement is signed by a retired key of party {state.retired_keys[k]!r}",
                                 party=state.retired_keys[k])
        raise UnknownParty("statement is not signed by the key of any admitted party")
    if pre is None:
        assert env is not None
        pred, key = open_predicate(env, signer_keys)
    else:
        by_id = {k.fingerprint: k for k in signer_keys}
        # Envelope.verify decides on the first signature by a known key: known to verify, it is the signer.
        first = next(k for k in keyids if k in by_id)
        if first in pre.verified and pre.predicate is not None:
            pred, key = pre.predicate, by_id[first]  # every check open_predicate makes after the signature passed
        elif first in pre.verified and (pre.payload is not None or env is not None):
            # the signature open_predicate decides on verifies: the checks it makes after it, at the same depth
            key = by_id[first]
            if pre.payload is not None:
                pred = _open_verified(pre.payload_type, pre.payload)
            else:
                assert env is not None
                pred = _open_verified(env.payload_type, env.payload)
        else:
            keys: list[Any] = [_Verified(k) if k.fingerprint in pre.verified else k for k in signer_keys]
            env = env if env is not None else Envelope.from_json(data)
            if pre.predicate is None:
                pred, signer = open_predicate(env, keys)
            else:
                signer = env.verify(keys)
                pred = pre.predicate
            key = signer.key if isinstance(signer, _Verified) else signer
    return _admit_checked(state, pred, key, at_ms)


def _admit_checked(state: State, pred: Predicate, key: VerifierKey, at_ms: int | None
                   ) -> tuple[Predicate, Party | None, VerifierKey]:
    """The rest of ``admit`` once ``key``, a current key, is known to have signed ``pred``: the speaking party's
    standing, role, sequence number, log and times, and the rule's own check."""
    party = state.parties[state.keys[key.fingerprint]]
    if party.revoked:
        raise RevokedKey(f"party {party.name!r} has no valid key", party=party.name, role=party.role)
    if pred.party != party.name:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: signed by {party.name!r} but speaks for {pred.party!r}; "
                            "a party speaks only for itself", party=party.name, role=party.role)
    if isinstance(pred, Genesis):
        raise NotAuthorized("a genesis statement may only be the log's first entry", party=party.name,
                            role=party.role)
    if pred.log != state.origin:
        raise InvalidStatement(f"field 'log': the statement is for log {pred.log!r}, this log is {state.origin!r}"
                               + ("" if pred.log is not None else " (sign it for this log: its origin goes in 'log')"))
    rule = RULES[type(pred)]
    allowed = rule.roles
    if party.role not in allowed:
        raise NotAuthorized(f"{pred.PREDICATE_TYPE}: party {party.name!r} has role {party.role!r}; "
                            f"only {', '.join(sorted(allowed))} may make this statement", party=party.name,
                            role=party.role)
    if pred.seq != party.last_seq + 1:
        what = "replays" if pred.seq <= party.last_seq else "skips"
        raise SequenceError(f"{pred.PREDICATE_TYPE}: sequence number {pred.seq} from {party.name!r} {what} "
                            f"(expected {party.last_seq + 1})", party=party.name, expected=party.last_seq + 1,
                            got=pred.seq)
    state.judged_at_ms = state.last_time_ms if at_ms is None else at_ms
    state.judged_margin_ms = 0 if at_ms is None else MINUTE_MS
    rule.check(state, pred, party)
    _check_times(state, pred, state.judged_at_ms, behind_margin_ms=state.judged_margin_ms)
    return pred, party, key


def _open_verified(payload_type: str | None, payload: bytes) -> Predicate:
    """What ``open_predicate`` does once the signature it decides on is known to verify (the same errors).

    Called from ``admit`` where ``open_predicate`` would be, so the statement is parsed at the same
    stack depth (how deeply nested a document parses depends on it).
    """
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise MalformedInput(f"DSSE payloadType is {payload_type!r}, expected {IN_TOTO_PAYLOAD_TYPE!r}")
    return parse_payload(payload)


def _admit_genesis(env: Envelope, origin: str | None) -> tuple[Predicate, None, VerifierKey]:
    statement_payload = env.payload
    # The genesis statement is self-signed: the key it names must sign it.
    from redline.crypto.canonical import parse_json

    obj = parse_json(statement_payload, what="in-toto statement")
    pred_obj = obj.get("predicate") if isinstance(obj, dict) else None
    key_str = pred_obj.get("coordinator_key") if isinstance(pred_obj, dict) else None
    if not isinstance(key_str, str):
        raise InvalidStatement("the log's first entry must be a genesis statement naming the coordinator key")
    key = VerifierKey.from_string(key_str)
    pred, signer = open_predicate(env, [key])
    if not isinstance(pred, Genesis):
        raise InvalidStatement(f"the log's first entry must be a genesis statement, not {pred.PREDICATE_TYPE}")
    if pred.party != pred.coordinator or key.name != pred.coordinator:
        raise NotAuthorized("the genesis statement must be made by the coordinator it names", party=pred.party)
    if pred.seq != 1:
        raise SequenceError(f"genesis sequence number must be 1, got {pred.seq}", party=pred.party, expected=1,
                            got=pred.seq)
    if pred.log != pred.origin:
        raise InvalidStatement(f"field 'log': the genesis of log {pred.origin!r} names log {pred.log!r}")
    if origin is not None and pred.origin != origin:
        raise InvalidStatement(f"field 'origin': the genesis is for log {pred.origin!r}, this log is {origin!r}")
    return pred, None, signer


#: Statement times that say when something happened: neither ahead of the log's clock nor too far behind it.
#: (Reporting periods and indicator windows are spans the engine judges by logged time; a policy's
#: ``effective_from`` may lie ahead; a commitment's ``expires_at`` must.)
_EVENT_TIMES = frozenset({"started_at", "as_of", "finished_at", "released_at", "evaluated_at"})


def _check_times(state: State, pred: Predicate, now: int, *, behind_margin_ms: int = 0) -> None:
    """Every time a statement gives is bounded by the log's integration time ``now`` (the policy's skew and
    backdating limits; an expiry must lie ahead)."""
    names = _JUDGED_TIME_FIELDS.get(type(pred))
    if names is None:
        names = _JUDGED_TIME_FIELDS[type(pred)] = tuple(
            n for n in _time_fields(type(pred)) if n == "expires_at" or n in _EVENT_TIMES)
    if not names:  # the statement's times (if any) are spans the rules judge
        return
    params = parameters(state)
    ahead = int(params.max_clock_skew_minutes * MINUTE_MS)
    behind = int(params.max_backdating_days * DAY_MS)
    for name in names:
        value = getattr(pred, name)
        if not isinstance(value, datetime):
            continue
        ms = ms_of(value)
        if name == "expires_at":
            if ms <= now:
                raise InvalidStatement(f"field 'expires_at': {format_utc(value)} is not after the log's time "
                                       f"{iso(now)}: the commitment would have expired already")
        elif name in _EVENT_TIMES and ms > now + ahead:
            raise InvalidStatement(f"field '{name}': {format_utc(value)} is ahead of the log's time {iso(now)} by more "
                                   f"than {params.max_clock_skew_minutes:g} minutes")
        if name in _EVENT_TIMES and ms < now + behind_margin_ms - behind:
            raise InvalidStatement(f"field '{name}': {format_utc(value)} is more than "
                                   f"{params.max_backdating_days:g} days before the log's time {iso(now)}")


_TIME_FIELDS: dict[type, tuple[str, ...]] = {}
#: The time fields ``_check_times`` judges (an expiry, the times of events), by class.
_JUDGED_TIME_FIELDS: dict[type, tuple[str, ...]] = {}


def _time_fields(cls: type[Predicate]) -> tuple[str, ...]:
    """The fields of ``cls`` that may hold a time (by annotation), worked out once per class."""
    fields = _TIME_FIELDS.get(cls)
    if fields is None:
        fields = tuple(n for n, f in cls.model_fields.items() if "datetime" in str(f.annotation).lower())
        _TIME_FIELDS[cls] = fields
    return fields


# --- apply ----------------------------------------------------------------------


def apply(state: State, entry: Entry, pre: Prepared | None = None) -> State:
    """Apply one log entry to ``state`` (in place) and return it (``pre``: see ``admit``)."""
    if entry.index != state.next_index:
        raise MalformedInput(f"entry {entry.index} applied out of order (expected {state.next_index})")
    now = max(entry.time_ms, state.last_time_ms)
    advance_time(state, entry.index, now)
    try:
        pred, party, key = admit(state, entry.data, pre)
    except RedlineError as exc:
        state.rejected.append(Rejection(entry.index, type(exc).__name__, str(exc)))
        state.next_index += 1
        return state
    except Exception as exc:  # replay records every failure; it never crashes on a bad entry
        state.rejected.append(Rejection(entry.index, type(exc).__name__, f"unexpected error: {exc}"))
        state.next_index += 1
        return state
    if party is not None:
        party.last_seq = pred.seq
    RULES[type(pred)].effect(state, pred, party, key, entry.index, now)
    state.next_index += 1
    return state


def replay(entries: Iterable[Entry], state: State | None = None) -> State:
    """Fold ``apply`` over entries (from a fresh state unless one is given)."""
    state = State() if state is None else state
    for e in entries:
        apply(state, e)
    return state




__all__ = ["EMPTY_ROOT", "MAX_ENTRY_BYTES", "ROLES_ALLOWED", "ROOT_FIELDS", "Entry", "Prepared", "admit", "apply",
           "replay"]
