"""``redline monitor``: follow a log served as tiles and catch it showing two histories or going back in time.

Each round fetches the checkpoint, checks it against the log key the monitor holds (and its witness policy), and
compares it with the checkpoint the monitor remembers for that origin: a smaller tree is a rollback, the same size
with another root or a larger tree that does not extend the remembered one (RFC 9162 consistency, proved from the
served tiles) is a split view. Either way both signed checkpoints are saved as a proof of misbehaviour and the
monitor stops with the error's own exit code. The memory advances only to checkpoints that passed every check.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from redline.crypto.encoding import b64encode
from redline.crypto.keys import VerifierKey
from redline.errors import InvalidProof, MalformedInput, RedlineError, Rollback, SplitView
from redline.log.checkpoint import open_checkpoint
from redline.log.remote import MAX_CHECKPOINT_BYTES, FetchError, RemoteLog, SignedCheckpoint, is_url

MEMORY_SUFFIX = ".checkpoint"


def _file_name(origin: str) -> str:
    """A file name for ``origin`` that no other origin maps to (percent-encoded)."""
    return quote(origin, safe="-._~")


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # checkpoints and proofs are public; the point is to show them
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointMemory:
    """CheckpointMemory is a directory holding the latest verified checkpoint of each log, as its signed note.

    ``<origin>.checkpoint`` (percent-encoded) is replaced atomically, mode 0644. A file that does not open as a
    checkpoint of that origin signed by the log key is refused, never silently replaced: it is the monitor's
    only memory of what the log said before.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path(self, origin: str) -> Path:
        """The file holding the remembered checkpoint of ``origin``."""
        return self.directory / (_file_name(origin) + MEMORY_SUFFIX)

    def load(self, log_key: VerifierKey) -> SignedCheckpoint | None:
        """The remembered checkpoint of ``log_key``'s log, checked against it; None when there is none yet."""
        path = self.path(log_key.name)
        try:
            if path.stat().st_size > MAX_CHECKPOINT_BYTES:
                raise MalformedInput(f"checkpoint memory {path} is over {MAX_CHECKPOINT_BYTES} bytes")
            note = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            cp, _ = open_checkpoint(note, log_key)
        except RedlineError as exc:
            raise type(exc)(f"checkpoint memory {path} is not a checkpoint of {log_key.name} signed by its key "
                            f"({exc}); refusing to replace it") from exc
        return SignedCheckpoint(cp, note)

    def save(self, signed: SignedCheckpoint) -> Path:
        """Remember ``signed`` as the latest checkpoint of its origin."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(signed.checkpoint.origin)
        _write_atomic(path, signed.note)
        return path

    def save_proof(self, kind: str, remembered: SignedCheckpoint, served: SignedCheckpoint, *, url: str,
                   log_key: VerifierKey, detail: str) -> Path:
        """Write a proof of misbehaviour: both signed checkpoints, the log key and what is wrong; its path."""
        old, new = remembered.checkpoint, served.checkpoint
        body = "".join([
            f"redline proof of misbehaviour: {kind}\n",
            f"origin: {old.origin}\n",
            f"log key: {log_key.to_string()}\n",
            f"url: {url}\n",
            f"remembered: size {old.size} root {b64encode(old.root)}\n",
            f"served: size {new.size} root {b64encode(new.root)}\n",
            f"{detail}\n",
            "Both checkpoints below are signed by the log key: check each against it.\n",
            "\n-----BEGIN REMEMBERED CHECKPOINT-----\n",
            remembered.note.decode("utf-8"),
            "-----END REMEMBERED CHECKPOINT-----\n",
            "-----BEGIN SERVED CHECKPOINT-----\n",
            served.note.decode("utf-8"),
            "-----END SERVED CHECKPOINT-----\n",
        ]).encode("utf-8")
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = f"proof-{_file_name(old.origin)}-{old.size}-{new.size}"
        for n in range(1, 1000):
            path = self.directory / (stem + ("" if n == 1 else f"-{n}") + ".txt")
            if not path.exists():
                _write_atomic(path, body)
                return path
            if path.read_bytes() == body:
                return path
        raise MalformedInput(f"too many proofs named {stem}-*.txt in {self.directory}")


@dataclass
class Round:
    """What one round of the monitor saw: ``status`` is first, unchanged, grew, rollback, split-view or error."""

    number: int
    status: str
    served: SignedCheckpoint | None = None
    remembered: SignedCheckpoint | None = None
    proof: Path | None = None
    error: RedlineError | None = None
    violations: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The round as a JSON object (one line of ``--json`` output)."""
        out: dict[str, Any] = {"round": self.number, "status": self.status}
        if self.served is not None:
            cp = self.served.checkpoint
            out.update(origin=cp.origin, size=cp.size, root=b64encode(cp.root),
                       cosignatures=dict(sorted(self.served.cosignatures.items())))
        if self.remembered is not None:
            out.update(previous_size=self.remembered.checkpoint.size,
                       previous_root=b64encode(self.remembered.checkpoint.root))
        if self.proof is not None:
            out["proof"] = str(self.proof)
        if self.error is not None:
            detail = self.error.to_dict()
            out.update(error=detail["error"], message=detail["message"], exit_code=self.error.exit_code)
            fields = self.error.fields()
            if fields:  # kept apart: the round's own "status" and "size" are other things than a FetchError's
                out["error_fields"] = fields
        if self.violations:
            out["new_violations"] = self.violations
        return out

    def line(self) -> str:
        """The round as one line for people."""
        head = f"round {self.number}: "
        if self.served is None:
            return head + f"error: {self.error}"
        cp = self.served.checkpoint
        where = f"{cp.origin} size {cp.size}"
        witnessed = f", cosigned by {', '.join(sorted(self.served.cosignatures))}" if self.served.cosignatures else ""
        old = self.remembered.checkpoint.size if self.remembered is not None else None
        text = {
            "first": f"{where} (first seen, root {b64encode(cp.root)}){witnessed}",
            "unchanged": f"{where} unchanged{witnessed}",
            "grew": f"{where}, grew from {old}, consistent{witnessed}",
            "rollback": f"ROLLBACK: {where}, smaller than the remembered size {old}; proof in {self.proof}",
            "split-view": f"SPLIT VIEW: {where} does not extend the remembered size {old}; proof in {self.proof}",
        }.get(self.status, f"{where}: error: {self.error}")
        return head + text


def check_round(remote: RemoteLog, memory: CheckpointMemory, number: int = 1) -> Round:
    """One round: fetch and verify the checkpoint, compare it with the memory, and advance the memory.

    When the log misbehaves the memory is left alone, the proof is written and the round's ``error`` is the
    ``Rollback`` or ``SplitView`` to raise. Any other failure (fetch, signature, tiles) raises.
    """
    served = remote.checkpoint()
    if remote.policy is not None and served.checkpoint.size:
        # cosignature times bound the log's clock: its last entry may not be integrated after the witnesses signed
        from redline.log.witness import check_times

        cp = served.checkpoint
        [(_, last_ms, _)] = list(remote.entries(cp, cp.size - 1))
        check_times(cp, served.cosignatures, last_ms, threshold=remote.policy.threshold)
    remembered = memory.load(remote.log_key)
    if remembered is None:
        memory.save(served)
        return Round(number, "first", served)
    old, new = remembered.checkpoint, served.checkpoint
    kind, detail = "", ""
    if new.size < old.size:
        kind, detail = "rollback", (f"The log serves a tree of size {new.size} after signing one of size {old.size}.")
    elif new.size == old.size:
        if new.root != old.root:
            kind, detail = "split-view", f"The log signed two different roots for the same tree size {new.size}."
    else:
        try:
            remote.consistency_proof(old, new)
        except InvalidProof as exc:
            kind, detail = "split-view", (f"The tree of size {new.size}, read from the log's tiles, does not extend "
                                          f"the tree of size {old.size}: {exc}.")
    if kind:
        proof = memory.save_proof(kind, remembered, served, url=remote.url, log_key=remote.log_key, detail=detail)
        cls = Rollback if kind == "rollback" else SplitView
        err = cls(f"{remote.url}: {kind.replace('-', ' ')} of {old.origin}: {detail} Proof saved to {proof}")
        return Round(number, kind, served, remembered, proof, err)
    if new.size == old.size:
        return Round(number, "unchanged", served, remembered)
    memory.save(served)
    return Round(number, "grew", served, remembered)


class _Replayer:
    """Replays the entries each round adds (checked against the tiles) and reports the violations they bring."""

    def __init__(self, remote: RemoteLog) -> None:
        self.remote = remote
        self.state: Any = None  # redline.engine.State, imported when first needed

    def advance(self, signed: SignedCheckpoint) -> list[dict[str, Any]]:
        """Replay what ``signed`` adds; the first round starts from this user's latest usable snapshot of the log
        (``redline.statecache``), and a new one is saved whenever enough entries came since."""
        from redline.cli.remote_state import replay_remote
        from redline.times import iso

        seen = 0 if self.state is None else len(self.state.violations)  # the first round reports every one
        self.state = replay_remote(self.remote, signed, base=self.state)
        return [{"party": v.party, "kind": v.kind, "detail": v.detail, "evidence": list(v.evidence),
                 "time_at": iso(v.time_ms)} for v in self.state.violations[seen:]]


def follow(remote: RemoteLog, memory: CheckpointMemory, *, rounds: int | None, interval_s: float,
           report: Callable[[Round], None], replay: bool = False, sleep: Callable[[float], None] = time.sleep
           ) -> Round | None:
    """Run ``rounds`` rounds (forever when None) ``interval_s`` apart, telling ``report`` each one.

    Misbehaviour (``Rollback``, ``SplitView``, raised after its round is reported) and any error other than a
    failed fetch stop the monitor; a failed fetch is reported and retried next round. The last round is returned.
    """
    replayer = _Replayer(remote) if replay else None
    last: Round | None = None
    number = 0
    while rounds is None or number < rounds:
        number += 1
        if number > 1:
            sleep(interval_s)
        try:
            last = check_round(remote, memory, number)
            if last.error is None and replayer is not None and last.served is not None:
                last.violations = replayer.advance(last.served)
        except RedlineError as exc:
            last = Round(number, "error", error=exc)
            if not isinstance(exc, FetchError):
                report(last)
                raise
        report(last)
        if isinstance(last.error, (Rollback, SplitView)):
            raise last.error
    return last


@click.command()
@click.argument("url")
@click.option("--log-key", required=True,
              help="The log's verifier key, string or .pub file (never taken from the server).")
@click.option("--witness-policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A witness policy (trust file) every checkpoint must meet.")
@click.option("--memory", "memory_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory of remembered checkpoints (one per log) and proofs of misbehaviour.")
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option("--interval", "interval_s", type=click.FloatRange(min=0), default=None,
              help="Seconds between rounds.")
@click.option("--max-rounds", type=click.IntRange(min=1), default=None,
              help="With --interval: stop after this many rounds (default: run until stopped).")
@click.option("--replay", "replay_entries", is_flag=True,
              help="Also replay the new entries of each round from the tiles and print the new violations.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per round on stdout.")
def monitor(url: str, log_key: str, witness_policy: Path | None, memory_dir: Path, once: bool,
            interval_s: float | None, max_rounds: int | None, replay_entries: bool, as_json: bool) -> None:
    """Follow the log served as tiles at URL, and catch it rolling back or showing a split view.

    Each round verifies the checkpoint (log key, witness policy) and its consistency with the checkpoint
    remembered in --memory, then remembers the new one. A rollback (exit 12) or split view (exit 11)
    saves both signed checkpoints to MEMORY/proof-<origin>-<old size>-<new size>.txt and stops the monitor.
    Failed fetches are reported and retried; the exit code is then that of the last round.
    """
    if not is_url(url):
        raise click.UsageError(f"{url!r} is not an http:// or https:// URL")
    if once == (interval_s is not None):
        raise click.UsageError("give either --once or --interval S")
    if once and max_rounds is not None:
        raise click.UsageError("--max-rounds goes with --interval, not --once")
    from redline.cli.remote_state import open_remote

    def report(r: Round) -> None:
        click.echo(json.dumps(r.to_json(), sort_keys=True) if as_json else r.line())
        if not as_json:
            for v in r.violations:
                click.echo(f"  new violation: {v['party']} {v['kind']}: {v['detail']} (entries "
                           f"{', '.join(map(str, v['evidence']))}, {v['time_at']})")

    with open_remote(url, log_key, witness_policy) as remote:
        last = follow(remote, CheckpointMemory(memory_dir), rounds=1 if once else max_rounds,
                      interval_s=interval_s or 0.0, report=report, replay=replay_entries)
    if last is not None and last.error is not None:
        click.echo(f"error: {last.error}", err=True)
        click.get_current_context().exit(last.error.exit_code)


__all__ = ["CheckpointMemory", "Round", "check_round", "follow", "monitor"]
