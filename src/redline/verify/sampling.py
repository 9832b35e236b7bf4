"""Unpredictable, reproducible sampling of the segments a verifier re-executes.

The seed is the SHA-256 of the first signed log checkpoint whose tree contains
the run's final declaration (``RunFinish``, or the last ``RunProgress``): the
lab had committed to its transcript roots before that checkpoint existed, so it
could not know which segments would be drawn. Anyone holding the log recomputes
the same seed and the same sample. What is hashed is the checkpoint's text and
the log's own signature line, verified and in canonical base64 (``seed_note``):
the note as the log signed it. Other signature lines (a witness's cosignature,
or any line someone who can write the store adds; readers ignore lines of keys
they do not know) and a re-encoding of the signature's base64 are left out, so
nobody without the log key can re-roll the seed.

From the seed, the sample is derived in counter mode with HMAC-SHA256:

    block(label, i) = HMAC-SHA256(key=seed, msg=b"redline-verify-sample/v1\\n" || label || u64be(i))

read as a stream of 64-bit big-endian words. Uniform integers below ``b`` are
drawn by rejection (a word ``w`` is used iff ``w < 2^64 - 2^64 mod b``, then
``w mod b``), and the uniform sample of ``n`` out of ``m`` segment indexes is a
partial Fisher–Yates shuffle of ``0..m-1`` driven by that stream (label
``b"uniform"``). The sample size ``n`` is the smallest for which a spoofer who
faked ``k = ceil(f·m)`` of the ``m`` segments is caught with probability at
least the target (hypergeometric: ``P = 1 - C(m-k, n) / C(m, n)``). On top of
the uniform draw, the segments with the largest parameter update (L2 distance
between their start and end model weights) are always replayed; they are extra
and do not enter the stated probability, which is therefore a lower bound.

A compute budget caps the sample: with ``max_segments`` given, the uniform draw
shrinks to ``max_segments`` minus the largest-update segments, but never below a
floor (the size that catches a spoofer who faked half the segments with
probability 0.99, seven segments on long runs). When the cap bites, the target is
not reached; the sample says so (``capped``) and its P(detect) table is the true,
lower one.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redline.crypto.keys import VerifierKey
from redline.crypto.note import NoteSignature
from redline.errors import MalformedInput

if TYPE_CHECKING:
    from redline.log.service import Log

SAMPLE_DOMAIN = b"redline-verify-sample/v1\n"
#: Fake fractions for which the report states P(detect).
REPORT_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5)
#: Whatever the budget, the uniform draw catches a spoofer who faked this share of the segments ...
FLOOR_FAKE_FRACTION = 0.5
#: ... with at least this probability.
FLOOR_P_DETECT = 0.99


def seed_from_checkpoint(note_bytes: bytes) -> bytes:
    """The sampling seed: SHA-256 of a signed log checkpoint note (its exact bytes)."""
    return hashlib.sha256(note_bytes).digest()


def seed_note(note_bytes: bytes, log_key: VerifierKey, size: int | None = None) -> bytes:
    """The bytes a seed is drawn from: the checkpoint note ``note_bytes`` as the log signed it — its text and the
    log key's signature line (canonical base64), no other line. ``BadSignature`` unless the log key signed it;
    ``MalformedInput`` unless it is a checkpoint of this log (of ``size`` entries, when given). For a note holding
    only the log's signature, as the log writes it, these are its exact bytes."""
    from redline.log.checkpoint import open_checkpoint

    cp, note = open_checkpoint(note_bytes, log_key)
    if size is not None and cp.size != size:
        raise MalformedInput(f"the checkpoint stored for size {size} is of size {cp.size}")
    own = next(s for s in note.signatures if (s.name, s.key_id) == (log_key.name, log_key.key_id))
    return (note.text + "\n" + NoteSignature(own.name, own.key_id, own.signature).line()).encode("utf-8")


def checkpoint_after(log: Log, index: int) -> tuple[int, bytes]:
    """The first signed checkpoint of ``log`` whose tree contains entry ``index``: ``(size, note bytes)``, the note
    as the log signed it (``seed_note``: verified with the log's key, other signature lines left out).

    Raises ``MalformedInput`` if the log has not yet signed one (wait for the next checkpoint).
    """
    sizes = sorted(s for s in log.checkpoint_sizes() if s > index)
    if not sizes:
        raise MalformedInput(f"the log has signed no checkpoint containing entry {index} yet: "
                             "the sample cannot be drawn before one exists")
    return sizes[0], seed_note(log.checkpoint(sizes[0]), log.verifier, sizes[0])


def seed_from_log(log: Log, declaration_index: int) -> tuple[bytes, int]:
    """``(seed, checkpoint size)``: the seed drawn from the first checkpoint after the declaration at that index."""
    size, note = checkpoint_after(log, declaration_index)
    return seed_from_checkpoint(note), size


def _words(seed: bytes, label: bytes) -> Iterator[int]:
    i = 0
    while True:
        block = hmac.new(seed, SAMPLE_DOMAIN + label + i.to_bytes(8, "big"), hashlib.sha256).digest()
        for j in range(0, 32, 8):
            yield int.from_bytes(block[j:j + 8], "big")
        i += 1


def _below(words: Iterator[int], bound: int) -> int:
    limit = (1 << 64) - ((1 << 64) % bound)
    for w in words:
        if w < limit:
            return w % bound
    raise AssertionError("unreachable")


def uniform_sample(seed: bytes, m: int, n: int, *, label: bytes = b"uniform") -> list[int]:
    """``n`` distinct indexes of ``0..m-1``, uniformly at random from ``seed`` (partial Fisher–Yates).

    Returned in draw order.
    """
    if not 0 <= n <= m:
        raise ValueError(f"cannot sample {n} of {m}")
    words = _words(seed, label)
    pool = list(range(m))
    for i in range(n):
        j = i + _below(words, m - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:n]


def p_detect(m: int, n: int, f: float) -> float:
    """P(at least one faked segment is sampled): ``k = ceil(f·m)`` faked of ``m``, ``n`` sampled uniformly."""
    if m <= 0:
        return 0.0
    k = min(m, math.ceil(f * m - 1e-12))
    if k <= 0 or n <= 0:
        return 0.0
    if n > m - k:
        return 1.0
    # C(m-k, n) / C(m, n) = prod_{i<n} (m-k-i)/(m-i), computed in floats to stay fast for large m
    miss = 1.0
    for i in range(n):
        miss *= (m - k - i) / (m - i)
    return 1.0 - miss


def sample_size(m: int, target: float, f: float) -> int:
    """The smallest ``n`` with ``p_detect(m, n, f) >= target`` (``m`` if the target cannot be reached)."""
    if m <= 0:
        return 0
    lo, hi = 0, m
    if p_detect(m, m, f) < target:
        return m
    while lo < hi:  # p_detect is monotone in n
        mid = (lo + hi) // 2
        if p_detect(m, mid, f) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Sample:
    """The segments to re-execute: indexes into ``Transcript.segments()``, sorted."""

    seed: bytes
    segment_count: int
    uniform: tuple[int, ...]
    largest: tuple[int, ...]
    target_p_detect: float
    assumed_fake_fraction: float
    p_detect: dict[float, float] = field(default_factory=dict)
    max_segments: int | None = None  # the compute budget's cap on segments replayed, if any
    capped: bool = False  # the cap kept the uniform draw below the size the target needs

    @property
    def indexes(self) -> list[int]:
        """Every sampled segment index, uniform and largest-update, sorted and distinct."""
        return sorted(set(self.uniform) | set(self.largest))

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (the seed in hex; P(detect) keyed by fraction)."""
        return {"seed": self.seed.hex(), "segment_count": self.segment_count, "uniform": list(self.uniform),
                "largest": list(self.largest), "target_p_detect": self.target_p_detect,
                "assumed_fake_fraction": self.assumed_fake_fraction,
                "p_detect": {str(f): p for f, p in self.p_detect.items()},
                "max_segments": self.max_segments, "capped": self.capped}


def choose_sample(seed: bytes, segment_count: int, *, target_p_detect: float = 0.95,
                  assumed_fake_fraction: float = 0.1, update_norms: Sequence[float] | None = None,
                  largest: int = 2, fractions: Sequence[float] = REPORT_FRACTIONS,
                  max_segments: int | None = None) -> Sample:
    """Draw the sample: ``sample_size`` uniform segments plus the ``largest`` ones by ``update_norms``.

    ``max_segments`` (the compute budget, in segments) caps uniform + largest-update segments, down to
    the floor described in the module docs; ``None`` means no cap.
    """
    if not 0 < target_p_detect <= 1 or not 0 < assumed_fake_fraction <= 1:
        raise ValueError("target_p_detect and assumed_fake_fraction must lie in (0, 1]")
    if max_segments is not None and max_segments < 0:
        raise ValueError(f"max_segments must be at least 0, not {max_segments}")
    top: tuple[int, ...] = ()
    if update_norms is not None and largest > 0:
        if len(update_norms) != segment_count:
            raise ValueError("update_norms must have one entry per segment")
        top = tuple(sorted(range(segment_count), key=lambda i: (-update_norms[i], i))[:largest])
    n = sample_size(segment_count, target_p_detect, assumed_fake_fraction)
    capped = False
    if max_segments is not None:
        floor = sample_size(segment_count, FLOOR_P_DETECT, FLOOR_FAKE_FRACTION)
        allowed = max(floor, max_segments - len(top))
        if allowed < n:
            n, capped = allowed, True
    uni = tuple(uniform_sample(seed, segment_count, n))
    table = {f: p_detect(segment_count, n, f) for f in sorted({*fractions, assumed_fake_fraction})}
    return Sample(seed, segment_count, uni, top, target_p_detect, assumed_fake_fraction, table,
                  max_segments=max_segments, capped=capped)


# --- sampling steps, not segments -------------------------------------------------------------------


@dataclass(frozen=True)
class SeedRange:
    """Steps ``first_step .. last_step`` of a run and the seed that draws them.

    A range is the steps a declaration committed to that no earlier declaration had: its seed is the SHA-256 of
    the first signed log checkpoint after that declaration (``declaration_index``; ``checkpoint_size`` is that
    checkpoint's tree size). A later declaration of the same steps does not re-roll them.
    """

    first_step: int
    last_step: int
    seed: bytes
    declaration_index: int | None = None
    checkpoint_size: int | None = None

    @property
    def steps(self) -> int:
        """Steps in the range."""
        return self.last_step - self.first_step + 1

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (the seed in hex)."""
        return {"first_step": self.first_step, "last_step": self.last_step, "seed": self.seed.hex(),
                "declaration_index": self.declaration_index, "checkpoint_size": self.checkpoint_size}


def draws_needed(target: float, f: float) -> int:
    """The smallest number of step draws ``n`` with ``1 - (1 - f)^n >= target``."""
    if not 0 < target < 1:
        return 0 if target <= 0 else math.inf  # type: ignore[return-value]
    if not 0 < f < 1:
        return 1
    return max(1, math.ceil(math.log1p(-target) / math.log1p(-f) - 1e-12))


def p_detect_steps(n: int, f: float) -> float:
    """P(a sample of ``n`` step draws meets a faked step) when a fraction ``f`` of the run's steps is faked.

    Each draw picks a step uniformly (segments proportionally to their steps), so it misses every faked step
    with probability ``1 - f`` however the faked steps are placed; a segment that holds a faked step does not
    replay, so ``1 - (1 - f)^n`` is a lower bound on detection.
    """
    if n <= 0 or f <= 0:
        return 0.0
    if f >= 1:
        return 1.0
    return 1.0 - (1.0 - f) ** n


def weighted_mean_segment(segment_steps: Sequence[int]) -> float:
    """Expected steps replayed per draw: segments are drawn proportionally to their steps, so Σ len² / Σ len."""
    total = sum(segment_steps)
    return sum(x * x for x in segment_steps) / total if total else 0.0


def budget_draws(segment_steps: Sequence[int], budget: float | None, *, reserved_steps: int = 0) -> int | None:
    """How many step draws fit in ``budget`` × the run's steps, ``reserved_steps`` kept for other replays.

    The cost of a draw is the step-weighted mean segment length (its expected replay); ``None`` for no budget.
    """
    if budget is None:
        return None
    if not 0 < budget <= 1:
        raise ValueError(f"budget must lie in (0, 1], not {budget}")
    mean = weighted_mean_segment(segment_steps)
    if mean <= 0:
        return 0
    return max(0, math.floor((budget * sum(segment_steps) - reserved_steps) / mean + 1e-9))


@dataclass(frozen=True)
class StepSample:
    """The segments to re-execute, drawn by steps: indexes into ``Transcript.segments()``."""

    ranges: tuple[SeedRange, ...]
    segment_count: int
    total_steps: int
    draws: int  # step draws planned (P(detect) is computed from it)
    drawn_steps: tuple[int, ...]  # the steps drawn, in draw order (range by range)
    uniform: tuple[int, ...]  # the segments holding the drawn steps, distinct, in draw order
    largest: tuple[int, ...]
    target_p_detect: float
    assumed_fake_fraction: float
    p_detect: dict[float, float] = field(default_factory=dict)
    max_draws: int | None = None
    capped: bool = False

    @property
    def indexes(self) -> list[int]:
        """Every sampled segment index, drawn and largest-update, sorted and distinct."""
        return sorted(set(self.uniform) | set(self.largest))

    @property
    def seed(self) -> bytes:
        """One digest of every range's seed and bounds (what the signed report carries as ``sample_seed``)."""
        h = hashlib.sha256(SAMPLE_DOMAIN + b"ranges")
        for r in self.ranges:
            h.update(r.first_step.to_bytes(8, "big") + r.last_step.to_bytes(8, "big") + r.seed)
        return h.digest()

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description."""
        return {"seed": self.seed.hex(), "ranges": [r.to_json() for r in self.ranges],
                "segment_count": self.segment_count, "total_steps": self.total_steps, "draws": self.draws,
                "drawn_steps": list(self.drawn_steps), "uniform": list(self.uniform), "largest": list(self.largest),
                "target_p_detect": self.target_p_detect, "assumed_fake_fraction": self.assumed_fake_fraction,
                "p_detect": {str(f): p for f, p in self.p_detect.items()}, "max_draws": self.max_draws,
                "capped": self.capped}


def choose_step_sample(ranges: Sequence[SeedRange], segment_ends: Sequence[int], *, target_p_detect: float = 0.95,
                       assumed_fake_fraction: float = 0.1, update_norms: Sequence[float] | None = None,
                       largest: int = 2, fractions: Sequence[float] = REPORT_FRACTIONS,
                       max_draws: int | None = None) -> StepSample:
    """Draw steps uniformly over the run, range by range, each range with its own seed, and replay the segments
    that hold them; plus the ``largest`` segments by ``update_norms``.

    ``segment_ends[i]`` is the last step of segment ``i`` (segments are ``(ends[i-1], ends[i]]``, the first from
    step 1). ``ranges`` must cover steps ``1..ends[-1]`` in order without gaps. The planned draws ``n`` are the
    fewest that reach ``target_p_detect`` against ``assumed_fake_fraction`` of the steps faked
    (:func:`draws_needed`), capped at ``max_draws`` but never below the floor that catches half the steps faked
    with probability 0.99. Range ``k`` of ``S_k`` of the ``S`` steps gets ``ceil(n·S_k/S)`` draws, so by the
    concavity of ``log(1 - x)`` the run-wide bound ``1 - (1 - f)^n`` holds however the faked steps are spread.
    """
    import bisect

    if not 0 < target_p_detect < 1 or not 0 < assumed_fake_fraction < 1:
        raise ValueError("target_p_detect and assumed_fake_fraction must lie in (0, 1)")
    ends = list(segment_ends)
    total = ends[-1] if ends else 0
    expect = 1
    for r in ranges:
        if r.first_step != expect or r.last_step < r.first_step:
            raise ValueError(f"seed ranges must cover the steps in order: a range starts at {r.first_step}, "
                             f"expected {expect}")
        expect = r.last_step + 1
    if expect != total + 1:
        raise ValueError(f"seed ranges cover steps 1..{expect - 1}, the transcript has {total}")
    top: tuple[int, ...] = ()
    if update_norms is not None and largest > 0:
        if len(update_norms) != len(ends):
            raise ValueError("update_norms must have one entry per segment")
        top = tuple(sorted(range(len(ends)), key=lambda i: (-update_norms[i], i))[:largest])
    n = draws_needed(target_p_detect, assumed_fake_fraction)
    capped = False
    if max_draws is not None:
        floor = draws_needed(FLOOR_P_DETECT, FLOOR_FAKE_FRACTION)
        allowed = max(floor, max_draws)
        if allowed < n:
            n, capped = allowed, True
    drawn: list[int] = []
    for r in ranges:
        k = math.ceil(n * r.steps / total - 1e-12)
        words = _words(r.seed, b"steps")
        drawn += [r.first_step + _below(words, r.steps) for _ in range(k)]
    segs: list[int] = []
    for step in drawn:
        i = bisect.bisect_left(ends, step)
        if i not in segs:
            segs.append(i)
    table = {f: p_detect_steps(n, f) for f in sorted({*fractions, assumed_fake_fraction})}
    return StepSample(tuple(ranges), len(ends), total, n, tuple(drawn), tuple(segs), top, target_p_detect,
                      assumed_fake_fraction, table, max_draws=max_draws, capped=capped)


__all__ = ["FLOOR_FAKE_FRACTION", "FLOOR_P_DETECT", "REPORT_FRACTIONS", "Sample", "SeedRange", "StepSample",
           "budget_draws", "checkpoint_after", "choose_sample", "choose_step_sample", "draws_needed", "p_detect",
           "p_detect_steps", "sample_size", "seed_from_checkpoint", "seed_from_log", "seed_note", "uniform_sample",
           "weighted_mean_segment"]
