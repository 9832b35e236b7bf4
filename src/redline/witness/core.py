"""A C2SP tlog-witness: the add-checkpoint logic over durable state, with no HTTP.

``Witness.add_checkpoint(body)`` does what c2sp.org/tlog-witness asks of
``POST <prefix>/add-checkpoint`` and returns the cosignature line, or raises
``WitnessRefused`` with the HTTP status the spec names (400 malformed or old size
larger than new, 403 no trusted log signature, 404 unknown origin, 409 old size not
the witness's size or same size with another root, 422 bad consistency proof).

State is one SQLite file (``witness.db`` in the state directory): per origin the
latest cosigned size, root and checkpoint. Checking the old size and recording the
new checkpoint happen in one ``BEGIN IMMEDIATE`` transaction under a process lock,
so two requests from the same old size cannot both advance, and a cosignature is
returned only after its checkpoint is committed. Refused requests that carry a
valid log signature are kept as evidence (a split view is a signed fork).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redline.crypto.keys import ALG_ED25519, SigningKey, VerifierKey
from redline.crypto.note import open_note, parse_note
from redline.errors import BadSignature, InvalidProof, MalformedInput, RedlineError, WitnessRefused
from redline.log import merkle
from redline.log.checkpoint import Checkpoint
from redline.log.witness import cosign, parse_add_checkpoint_request, witness_verifier

DB_NAME = "witness.db"
#: Refused-but-signed requests kept as evidence (oldest dropped first).
MAX_EVIDENCE = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    checkpoint BLOB NOT NULL,
    cosigned_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    received_s INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    body BLOB NOT NULL
);
"""


@dataclass(frozen=True)
class LogRecord:
    """What a witness remembers of one log: its latest cosigned checkpoint."""

    origin: str
    size: int
    root: bytes
    checkpoint: bytes
    cosigned_s: int


class WitnessState:
    """The witness's durable state in ``<directory>/witness.db`` (created if missing)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise MalformedInput(f"{self.path} is not a witness state database: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic, exclusive read-check-write (process lock and SQLite write lock)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def get(self, origin: str) -> LogRecord | None:
        """The record of ``origin``, if the witness ever cosigned for it."""
        with self._lock:
            row = self._db.execute("SELECT origin, size, root, checkpoint, cosigned_s FROM logs WHERE origin=?",
                                   (origin,)).fetchone()
        return LogRecord(row[0], row[1], bytes(row[2]), bytes(row[3]), row[4]) if row else None

    def records(self) -> list[LogRecord]:
        """Every log record, by origin."""
        with self._lock:
            rows = self._db.execute("SELECT origin, size, root, checkpoint, cosigned_s FROM logs ORDER BY origin")
            return [LogRecord(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4]) for r in rows]

    def put(self, rec: LogRecord) -> None:
        """Record ``rec`` (call inside ``transaction``)."""
        self._db.execute("INSERT INTO logs(origin, size, root, checkpoint, cosigned_s) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT(origin) DO UPDATE SET size=excluded.size, root=excluded.root, "
                         "checkpoint=excluded.checkpoint, cosigned_s=excluded.cosigned_s",
                         (rec.origin, rec.size, rec.root, rec.checkpoint, rec.cosigned_s))

    def add_evidence(self, origin: str, received_s: int, status: int, reason: str, body: bytes) -> None:
        """Keep a refused, log-signed request (bounded)."""
        with self.transaction():
            self._db.execute("INSERT INTO evidence(origin, received_s, status, reason, body) VALUES (?, ?, ?, ?, ?)",
                             (origin, received_s, status, reason, body))
            self._db.execute("DELETE FROM evidence WHERE id <= (SELECT MAX(id) FROM evidence) - ?", (MAX_EVIDENCE,))

    def evidence(self) -> list[tuple[str, int, int, str, bytes]]:
        """Refused signed requests: (origin, received time, status, reason, body), oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT origin, received_s, status, reason, body FROM evidence ORDER BY id")
            return [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _seconds() -> int:
    return int(time.time())


class Witness:
    """A witness cosigning checkpoints of the configured logs with ``key`` (cosignature/v1)."""

    def __init__(self, key: SigningKey, logs: Iterable[VerifierKey], state: WitnessState, *,
                 clock: Callable[[], int] = _seconds) -> None:
        self.key = key
        self.verifier = witness_verifier(key)
        self.state = state
        self.clock = clock
        self.logs: dict[str, list[VerifierKey]] = {}
        for k in logs:
            if k.alg != ALG_ED25519:
                raise MalformedInput(f"log key {k.name!r} has algorithm {k.alg:#04x}, not Ed25519 (0x01)")
            self.logs.setdefault(k.name, []).append(k)

    def add_checkpoint(self, body: bytes) -> bytes:
        """Handle one add-checkpoint body; return the cosignature line or raise ``WitnessRefused``."""
        try:
            old, proof, cp_bytes = parse_add_checkpoint_request(body)
            note = parse_note(cp_bytes)
            cp = Checkpoint.from_text(note.text)
        except MalformedInput as exc:
            raise WitnessRefused(f"malformed request: {exc}", status=400) from exc
        keys = self.logs.get(cp.origin)
        if keys is None:
            raise WitnessRefused(f"unknown log origin {cp.origin!r}", status=404)
        try:
            open_note(cp_bytes, keys)
        except BadSignature as exc:
            raise WitnessRefused(f"no valid signature by a trusted key of {cp.origin!r}: {exc}", status=403) from exc
        except MalformedInput as exc:
            raise WitnessRefused(f"malformed checkpoint: {exc}", status=400) from exc
        if old > cp.size:
            raise WitnessRefused(f"old size {old} is larger than the checkpoint size {cp.size}", status=400)
        evidence: WitnessRefused | None = None
        with self.state.transaction():
            rec = self.state.get(cp.origin)
            known = rec.size if rec else 0
            if old != known:
                raise WitnessRefused(f"old size {old} is not the witness's size {known}", status=409, size=known)
            try:
                self._check_consistency(rec, old, proof, cp)
            except WitnessRefused as exc:
                evidence = exc
            else:
                now = max(self.clock(), rec.cosigned_s if rec else 0)  # never earlier than a previous cosignature
                sig = cosign(note.text, self.key, now)
                self.state.put(LogRecord(cp.origin, cp.size, cp.root, cp_bytes, now))
        if evidence is not None:  # a log-signed checkpoint inconsistent with what the witness saw: keep it
            self._keep_evidence(cp.origin, evidence, body)
            raise evidence
        return sig.line().encode()

    @staticmethod
    def _check_consistency(rec: LogRecord | None, old: int, proof: list[bytes], cp: Checkpoint) -> None:
        if cp.size == 0 and cp.root != merkle.EMPTY_ROOT:
            raise WitnessRefused("a checkpoint of size 0 must carry the empty tree's root", status=422)
        if old == cp.size:
            if proof:
                raise WitnessRefused("sizes are equal but the consistency proof is not empty", status=422)
            if rec is not None and rec.root != cp.root:
                raise WitnessRefused(f"split view: the witness holds another root for size {cp.size}",
                                     status=409, size=rec.size)
            return
        if old == 0:
            return  # nothing to be consistent with (the parser refused a proof from size 0)
        assert rec is not None
        try:
            merkle.verify_consistency(old, cp.size, rec.root, cp.root, proof)
        except InvalidProof as exc:
            raise WitnessRefused(f"consistency proof from size {old} to {cp.size} does not verify: {exc}",
                                 status=422) from exc

    def _keep_evidence(self, origin: str, exc: WitnessRefused, body: bytes) -> None:
        try:
            self.state.add_evidence(origin, self.clock(), exc.status, str(exc), body)
        except (sqlite3.Error, RedlineError):
            pass  # evidence is best effort; the refusal stands


__all__ = ["DB_NAME", "LogRecord", "Witness", "WitnessState"]
