"""Finding the first step of a failed segment whose output diverges.

What a transcript commits to per step is its *record*: the loss, the
hyperparameters after the step, the RNG digests (and the batch digest in the
data record, checked separately). The full state is committed only every
``checkpoint_every`` steps. So bisection works on two levels:

1. **Step records (always).** The verifier's replay of the segment from the
   committed start checkpoint produces its own record for every step. The first
   step ``j`` whose committed record differs (beyond ``Tolerance.loss_rtol`` for
   the loss, exactly for everything else) is the first bad step: its loss is
   computed from the state entering step ``j``, so the prover's state had already
   left the declared update rule by then, or the record itself is forged. If every
   record agrees but the committed end checkpoint does not, the end state is what
   was forged: the first bad step is the segment's last step (``end-checkpoint``).
   This costs no more replay than the segment check itself (one pass; the records
   come with it).

2. **Intermediate states (when the prover offers them).** A prover that kept
   denser checkpoints, or that regenerates them on request by replaying from its
   nearest stored one, answers :class:`StateOracle` queries ``state_at(step)``.
   The verifier then binary-searches the interval (start agrees, end disagrees):
   at each midpoint it replays from the committed start checkpoint to that step
   and compares with the prover's state under the tolerance, halving the interval:
   ``ceil(log2 k)`` rounds for a segment of ``k`` steps. The answer is the first
   step whose claimed output state is not the one the declared update rule gives.
   (A prover's intermediate states are not committed by the roots, so this level
   locates a divergence for diagnosis; the verdict rests on committed data.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from redline.verify.distance import Tolerance, compare_states

if TYPE_CHECKING:
    import torch

    from redline.transcript.transcript import Transcript

Method = Literal["step-records", "intermediate-states", "end-checkpoint", "none"]


class StateOracle(Protocol):
    """The prover's side of bisection: its full checkpoint tensors after ``step``, or None if it cannot say."""

    def state_at(self, step: int) -> Mapping[str, torch.Tensor] | None:
        """The prover's claimed state after ``step`` (the flat tensor map of a checkpoint)."""


class CheckpointOracle:
    """Serves the checkpoints a (possibly denser) transcript of the same run stores."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self._steps = {c.step for c in transcript.checkpoints}

    def state_at(self, step: int) -> Mapping[str, torch.Tensor] | None:
        """The stored checkpoint's tensors, or None where there is none."""
        return self.transcript.checkpoint(step).tensors() if step in self._steps else None


class FunctionOracle:
    """Wraps ``fn(step) -> tensors | None`` (e.g. a prover service regenerating states on request)."""

    def __init__(self, fn: Callable[[int], Mapping[str, torch.Tensor] | None]) -> None:
        self.fn = fn
        self.queries: list[int] = []

    def state_at(self, step: int) -> Mapping[str, torch.Tensor] | None:
        """Ask ``fn``."""
        self.queries.append(step)
        return self.fn(step)


@dataclass(frozen=True)
class BisectResult:
    """Where a failed segment first diverges."""

    start_step: int
    end_step: int
    first_bad_step: int | None
    method: Method
    rounds: int  # intermediate-state queries (0 for step records)
    replayed_steps: int  # steps the verifier replayed to find it
    detail: str

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"start_step": self.start_step, "end_step": self.end_step, "first_bad_step": self.first_bad_step,
                "method": self.method, "rounds": self.rounds, "replayed_steps": self.replayed_steps,
                "detail": self.detail}


def differing_fields(replayed: Mapping[str, Any], committed: Mapping[str, Any]) -> list[str]:
    """Top-level fields of a step record that differ."""
    from redline.crypto.canonical import canonical_json

    return [k for k in sorted(set(replayed) | set(committed))
            if canonical_json(replayed.get(k)) != canonical_json(committed.get(k))]


def _replay(transcript: Transcript, start: int, end: int, device: str) -> Any:
    from redline.verify.segments import _replay_with_threads

    return _replay_with_threads(transcript, start, end, device)


def bisect_segment(transcript: Transcript, start_step: int, end_step: int | None = None, *,
                   oracle: StateOracle | None = None, tolerance: Tolerance | None = None,
                   device: str = "cpu") -> BisectResult:
    """Find the first bad step of the segment from ``start_step`` (to the next checkpoint by default)."""
    from redline.verify.segments import record_mismatches

    tol = tolerance or Tolerance.exact()
    if end_step is None:
        end_step = transcript.segment(start_step).end.step
    k = end_step - start_step
    replayed = 0
    if oracle is not None and k > 1:
        lo, hi, rounds = start_step, end_step, 0
        while hi - lo > 1:
            mid = (lo + hi) // 2
            claimed = oracle.state_at(mid)
            rounds += 1
            if claimed is None:
                break
            mine = _replay(transcript, start_step, mid, device)
            replayed += mid - start_step
            d = compare_states(mine.state.tensors, claimed)
            if tol.accepts(d):
                lo = mid
            else:
                hi = mid
        else:
            return BisectResult(start_step, end_step, hi, "intermediate-states", rounds, replayed,
                                f"the prover's state after step {lo} is the declared rule's, after step {hi} it "
                                f"is not ({rounds} rounds for {k} steps, at most ceil(log2 k) = "
                                f"{math.ceil(math.log2(k))})")
    result = _replay(transcript, start_step, end_step, device)
    replayed += k
    bad = record_mismatches(transcript, result.step_records, tol.loss_rtol)
    if bad:
        step = bad[0]
        mine = next(r for r in result.step_records if r["step"] == step)
        fields = differing_fields(mine, transcript.step_record(step).model_dump(mode="json"))
        return BisectResult(start_step, end_step, step, "step-records", 0, replayed,
                            f"step {step}'s committed record differs from the replay in: {', '.join(fields)}")
    end = transcript.checkpoint(end_step).load()
    d = compare_states(result.state.tensors, end.tensors, result.state.metadata, end.metadata)
    if tol.accepts(d):
        return BisectResult(start_step, end_step, None, "none", 0, replayed, "the segment replays faithfully")
    return BisectResult(start_step, end_step, end_step, "end-checkpoint", 0, replayed,
                        f"every step record of steps {start_step + 1}..{end_step} matches the replay, but the "
                        f"committed checkpoint after step {end_step} does not (model L2 distance "
                        f"{d.model.l2:.3g}, L∞ {d.model.linf:.3g}; differing: {', '.join(d.differing[:5])})")


__all__ = ["BisectResult", "CheckpointOracle", "FunctionOracle", "StateOracle", "bisect_segment",
           "differing_fields"]
