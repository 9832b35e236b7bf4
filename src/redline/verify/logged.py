"""A declared run as the log holds it: its statements, re-verified, and the seeds its sample is drawn from.

:func:`logged_run` replays a log into its state, finds the run, re-verifies the signature of each of its
statements with the keys its party has held (so a key rotation after a declaration leaves it valid) and the
inclusion of the verified declaration in the log's signed checkpoint, and derives the **seed ranges**: each
declaration (``RunProgress`` or ``RunFinish``) that commits to steps no earlier one did fixes the seed of those
new steps, the SHA-256 of the first signed checkpoint after it. Declaring the same steps again does not
re-roll their seed, so a lab cannot submit declarations until the sample misses what it faked; and every
range's seed comes from a checkpoint signed after the lab committed to that range's roots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redline.errors import InvalidStatement, MalformedInput
from redline.statements.runs import RunFinish, RunProgress, RunStart
from redline.statements.verification import Check
from redline.verify.sampling import SeedRange, checkpoint_after, seed_from_checkpoint

if TYPE_CHECKING:
    from redline.engine.state import State
    from redline.log.service import Log


@dataclass
class LoggedRun:
    """A run read from the log: its RunStart, every declaration in log order, the one verified, and its seeds."""

    party: str
    run_id: str
    start: RunStart | None
    declarations: list[tuple[int, RunProgress | RunFinish]]  # (log index, statement), in log order
    index: int  # the verified declaration's log index: the run's RunFinish, else its latest RunProgress
    ranges: list[SeedRange] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def declaration(self) -> RunProgress | RunFinish:
        """The declaration verified."""
        return next(p for i, p in self.declarations if i == self.index)

    @property
    def earlier(self) -> list[tuple[int, RunProgress | RunFinish]]:
        """The declarations before the verified one (each must commit to a prefix of the same transcript)."""
        return [(i, p) for i, p in self.declarations if i < self.index]


def _step(pred: RunProgress | RunFinish) -> int:
    return pred.step if isinstance(pred, RunProgress) else pred.commitments.step_count


def seed_ranges(log: Log, declarations: list[tuple[int, RunProgress | RunFinish]], upto: int) -> list[SeedRange]:
    """The seed of each range of new steps, fixed by the first declaration (at or before ``upto``) committing
    to them."""
    ranges: list[SeedRange] = []
    covered = 0
    for index, pred in declarations:
        if index > upto:
            break
        step = _step(pred)
        if step <= covered:
            continue  # these steps were declared before: their seed is already fixed
        size, note = checkpoint_after(log, index)
        ranges.append(SeedRange(covered + 1, step, seed_from_checkpoint(note), index, size))
        covered = step
    return ranges


def logged_run(log: Log, run_id: str, run_party: str | None = None, state: State | None = None) -> LoggedRun:
    """The run ``run_party/run_id`` as ``log`` holds it (``run_party`` may be omitted when one party has it);
    ``state``, when given, is the log's state (``redline.statecache.load_state``), else it is replayed here.

    Raises ``InvalidStatement`` when no such run, or no declaration to verify against, is on the log;
    ``MalformedInput`` when several parties declared ``run_id`` and none was named.
    """
    from redline.crypto.dsse import Envelope
    from redline.crypto.keys import VerifierKey
    from redline.engine import Entry, replay
    from redline.engine.state import State as _State
    from redline.log.receipt import verify_receipt
    from redline.statements import open_envelope

    if state is None:
        state = replay((Entry(i, t, e) for i, t, e in log.entries()), _State(origin=log.origin))
    elif state.next_index != log.size or state.origin != log.origin:
        raise InvalidStatement(f"the state given is of {state.next_index} entries of {state.origin!r}, not of the log")
    runs = [r for r in state.runs.values() if r.run_id == run_id and (run_party is None or r.party == run_party)]
    if not runs:
        raise InvalidStatement(f"field 'run_id': no run {run_id!r}" + (f" declared by {run_party!r}" if run_party
                                                                      else "") + " on the log")
    if len(runs) > 1:
        raise MalformedInput(f"several parties declared a run {run_id!r}: name the one to verify")
    run = runs[0]
    party = state.parties[run.party]
    start: RunStart | None = None
    declarations: list[tuple[int, RunProgress | RunFinish]] = []
    signers: dict[int, Any] = {}
    for i in run.indexes:
        _, entry = log.entry(i)
        held = party.key_at(i)  # the key the party held when it made the statement (rotations leave it valid)
        if held is None:
            raise InvalidStatement(f"entry {i}: {run.party} held no key then")
        pred, key = open_envelope(Envelope.from_json(entry), [VerifierKey.from_string(held)])
        if pred.party != run.party or getattr(pred, "run_id", None) != run_id:
            continue
        if isinstance(pred, RunStart):
            start = pred
        elif isinstance(pred, (RunFinish, RunProgress)):
            declarations.append((i, pred))
            signers[i] = key
    if not declarations:
        raise InvalidStatement(f"run {run.party}/{run_id} has no RunProgress or RunFinish on the log: "
                               "there are no committed roots to verify against")
    finish = [i for i, p in declarations if isinstance(p, RunFinish)]
    index = finish[0] if finish else declarations[-1][0]
    decl = next(p for i, p in declarations if i == index)
    size, _ = checkpoint_after(log, index)
    _, entry = log.entry(index)
    cp, _ = verify_receipt(log.receipt(index, size), entry, log.verifier)
    checks = [Check(name="declaration", passed=True,
                    detail=f"{decl.KIND} #{decl.seq} of {run.party} at log entry {index}: signature verified "
                           f"against {signers[index].to_string()[:40]}…, included in the log's signed checkpoint "
                           f"of size {cp.size} (proof re-verified)")]
    return LoggedRun(run.party, run_id, start, declarations, index, seed_ranges(log, declarations, index), checks)


__all__ = ["LoggedRun", "logged_run", "seed_ranges"]
