"""How far a replayed state is from a committed checkpoint, and when that is close enough.

Where replay is deterministic (same device type, deterministic algorithms — on
CPU always) the verifier demands **bitwise** equality of every tensor and every
metadata entry of the checkpoint. Elsewhere it compares four metrics over all
floating-point model parameters (``model.*``) and, separately, over the
optimizer state (``optimizer.*``): L2 distance, L∞ distance, and cosine
distance (``1 - cos``) of the concatenated vectors; and the relative L2
(``L2 / ||committed||``). Non-floating tensors (step counters, generator states)
and metadata must match exactly in every mode. A :class:`Tolerance` is
calibrated from honest replays (:func:`calibrate`): the largest distance
observed between two honest replays of the same segment, times a safety
factor; it is stored in the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from redline.transcript.transcript import Transcript

METRICS = ("l2", "linf", "cosine", "rel_l2")


@dataclass(frozen=True)
class GroupDistance:
    """Distances over one group of tensors (model parameters, or optimizer state)."""

    l2: float = 0.0
    linf: float = 0.0
    cosine: float = 0.0
    rel_l2: float = 0.0

    def max(self, other: GroupDistance) -> GroupDistance:
        """Element-wise maximum."""
        return GroupDistance(*(max(a, b) for a, b in zip(astuple(self), astuple(other))))


def astuple(g: GroupDistance) -> tuple[float, ...]:
    return (g.l2, g.linf, g.cosine, g.rel_l2)


@dataclass(frozen=True)
class Distance:
    """How a replayed state differs from a committed one."""

    bitwise_equal: bool
    model: GroupDistance
    optimizer: GroupDistance
    exact_mismatches: tuple[str, ...] = ()  # non-float tensors / metadata keys / names present on one side only
    differing: tuple[str, ...] = ()  # every tensor name or metadata key differing by any bit (first 20)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"bitwise_equal": self.bitwise_equal, "model": asdict(self.model), "optimizer": asdict(self.optimizer),
                "exact_mismatches": list(self.exact_mismatches), "differing": list(self.differing)}


@dataclass(frozen=True)
class Tolerance:
    """Accept a replay iff it is bitwise equal, or (``bitwise=False``) every metric is within its bound."""

    bitwise: bool = True
    model: GroupDistance = GroupDistance()
    optimizer: GroupDistance = GroupDistance()
    safety_factor: float = 1.0
    calibrated_from: int = 0  # honest replays the bounds came from
    loss_rtol: float = 0.0  # relative tolerance on step losses (bisection), 0 when bitwise

    @classmethod
    def exact(cls) -> Tolerance:
        """Bitwise equality (deterministic replay)."""
        return cls()

    def accepts(self, d: Distance) -> bool:
        """Whether ``d`` is within this tolerance."""
        if d.bitwise_equal:
            return True
        if self.bitwise or d.exact_mismatches:
            return False
        return all(a <= b for a, b in zip(astuple(d.model), astuple(self.model))) and \
            all(a <= b for a, b in zip(astuple(d.optimizer), astuple(self.optimizer)))

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (stored in the report)."""
        return {"bitwise": self.bitwise, "model": asdict(self.model), "optimizer": asdict(self.optimizer),
                "safety_factor": self.safety_factor, "calibrated_from": self.calibrated_from,
                "loss_rtol": self.loss_rtol}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Tolerance:
        """Inverse of :meth:`to_json`."""
        return cls(bool(obj["bitwise"]), GroupDistance(**obj["model"]), GroupDistance(**obj["optimizer"]),
                   float(obj.get("safety_factor", 1.0)), int(obj.get("calibrated_from", 0)),
                   float(obj.get("loss_rtol", 0.0)))


def _group(replayed: Mapping[str, torch.Tensor], committed: Mapping[str, torch.Tensor],
           names: Sequence[str]) -> GroupDistance:
    import torch

    if not names:
        return GroupDistance()
    sq = dot = na = nb = 0.0
    linf = 0.0
    for name in names:
        a = replayed[name].detach().to(torch.float64).flatten()
        b = committed[name].detach().to(torch.float64).flatten()
        d = a - b
        sq += float(d.dot(d))
        if d.numel():
            linf = max(linf, float(d.abs().max()))
        dot += float(a.dot(b))
        na += float(a.dot(a))
        nb += float(b.dot(b))
    l2 = math.sqrt(sq)
    cos = dot / math.sqrt(na * nb) if na > 0 and nb > 0 else (1.0 if na == nb else 0.0)
    return GroupDistance(l2=l2, linf=linf, cosine=max(0.0, 1.0 - cos), rel_l2=l2 / math.sqrt(nb) if nb > 0 else l2)


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes (so that NaN payloads and -0.0 count as differences)."""
    import torch

    flat = t.detach().cpu().reshape(-1).contiguous()
    return flat.view(torch.uint8) if flat.numel() and flat.dtype != torch.bool else flat


def compare_states(replayed: Mapping[str, torch.Tensor], committed: Mapping[str, torch.Tensor],
                   replayed_meta: Mapping[str, str] | None = None,
                   committed_meta: Mapping[str, str] | None = None) -> Distance:
    """Distance between a replayed checkpoint (tensors, metadata) and the committed one."""
    import torch

    exact: list[str] = []
    differing: list[str] = []
    model_names: list[str] = []
    opt_names: list[str] = []
    for name in sorted(set(replayed) | set(committed)):
        a, b = replayed.get(name), committed.get(name)
        if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
            exact.append(name)
            differing.append(name)
            continue
        same = torch.equal(_bytes(a), _bytes(b))
        if same:
            if a.is_floating_point():
                (model_names if name.startswith("model.") else opt_names).append(name)
            continue
        differing.append(name)
        if a.is_floating_point() and (name.startswith("model.") or name.startswith("optimizer.")):
            (model_names if name.startswith("model.") else opt_names).append(name)
        else:
            exact.append(name)
    for key in sorted(set(replayed_meta or {}) | set(committed_meta or {})):
        if (replayed_meta or {}).get(key) != (committed_meta or {}).get(key):
            exact.append(f"metadata:{key}")
            differing.append(f"metadata:{key}")
    if not differing:
        return Distance(True, GroupDistance(), GroupDistance())
    return Distance(False, _group(replayed, committed, model_names), _group(replayed, committed, opt_names),
                    tuple(exact[:20]), tuple(differing[:20]))


def calibrate(transcript: Transcript, n_segments: int = 2, *, device: str = "cpu", safety_factor: float = 10.0,
              start_steps: Sequence[int] | None = None) -> Tolerance:
    """A tolerance from the verifier's own replays: each segment is replayed twice on ``device`` and the two
    replays are compared with each other, never with the lab's committed checkpoints (which a lab could forge
    to inflate the tolerance until anything passes).

    On CPU replay is bitwise: the two replays must be identical (``AssertionError`` otherwise) and the result is
    :meth:`Tolerance.exact`. On another device, two bitwise-equal replays give the exact tolerance too;
    otherwise each bound is the largest replay-to-replay distance times ``safety_factor``. The segments are
    those starting at ``start_steps`` (the verifier draws them from the seed, so the lab cannot know them),
    else the first ``n_segments``.
    """
    from redline.transcript.replay import replay_segment

    segs = transcript.segments()
    starts = list(start_steps) if start_steps is not None else [s.start.step for s in segs[:n_segments]]
    worst_m, worst_o = GroupDistance(), GroupDistance()
    all_bitwise = True
    cpu = str(device).startswith("cpu")
    for start in starts:
        seg = transcript.segment(start)
        r1 = replay_segment(transcript, start, seg.end.step, device=device)
        r2 = replay_segment(transcript, start, seg.end.step, device=device)
        twice = compare_states(r1.state.tensors, r2.state.tensors, r1.state.metadata, r2.state.metadata)
        if cpu and not twice.bitwise_equal:
            raise AssertionError(f"replay on CPU is not bitwise reproducible (segment from step {start}: "
                                 f"{', '.join(twice.differing)})")
        all_bitwise &= twice.bitwise_equal
        worst_m, worst_o = worst_m.max(twice.model), worst_o.max(twice.optimizer)
    if all_bitwise:
        return Tolerance(calibrated_from=2 * len(starts))
    scale = GroupDistance(*(x * safety_factor for x in astuple(worst_m)))
    oscale = GroupDistance(*(x * safety_factor for x in astuple(worst_o)))
    return Tolerance(False, scale, oscale, safety_factor, 2 * len(starts), loss_rtol=1e-3)


__all__ = ["Distance", "GroupDistance", "METRICS", "Tolerance", "calibrate", "compare_states"]
