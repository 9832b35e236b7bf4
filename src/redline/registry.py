"""The submission pipeline every face uses: verify → validate → authorize → append → receipt.

A ``Registry`` holds a log and the engine's state replayed from it. ``submit``
runs the engine's own admission check (signature against the admitted key,
strict parsing, role, sequence number, references) before anything is written,
so a rejected statement leaves the log untouched and the error says exactly
why; an accepted one is appended durably, applied to the state, and answered
with an offline receipt.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from redline.crypto.keys import SigningKey
from redline.engine import Entry, State, admit, apply, replay
from redline.errors import InconsistentLog, MalformedInput
from redline.log.receipt import Receipt
from redline.log.service import Log
from redline.statements import Genesis, Predicate, sign_predicate


@dataclass(frozen=True)
class Submitted:
    """An accepted statement: where it is in the log, when it was logged, and its receipt."""

    index: int
    time_ms: int
    predicate: Predicate
    receipt: Receipt


class Registry:
    """A log plus the state derived from it; the only way statements get in."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._lock = threading.Lock()
        # the state knows the log's origin from the start: a genesis or a statement for another log is refused
        self.state: State = replay((Entry(i, t, e) for i, t, e in log.entries()), State(origin=log.origin))

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
        with self._lock:
            pred, _, _ = admit(self.state, envelope, at_ms=max(self.log.clock(), self.state.last_time_ms))
            done = self.log.append([envelope])
            index, time_ms = done.first_index, done.times_ms[0]
            apply(self.state, Entry(index, time_ms, envelope))
            if self.state.rejected and self.state.rejected[-1].index == index:
                raise InconsistentLog(f"entry {index} was admitted but the engine rejected it on apply: "
                                      f"{self.state.rejected[-1].message}", index=index)
            return Submitted(index, time_ms, pred, self.log.receipt(index))

    def next_seq(self, party: str) -> int:
        """The sequence number the party's next statement must carry."""
        p = self.state.parties.get(party)
        return 1 if p is None else p.last_seq + 1


def utc_from_ms(ms: int) -> datetime:
    """A logged time as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
