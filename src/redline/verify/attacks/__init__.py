"""Known attacks on training transcripts, for testing and calibrating the verifier (``redline[torch]``).

Each attack writes a spoofed transcript of the tiny GPT (:mod:`redline.transcript.tinygpt`)
into a work directory and says what it faked::

    from redline.verify.attacks import ATTACKS

    spoof = ATTACKS["skipped-steps"].run(tmp, seed=0, steps=60, checkpoint_every=10, fraction=0.25)
    spoof.transcript_dir, spoof.faked_segments, spoof.cost, spoof.declared

The commitments of a spoofed transcript are computed honestly over the fake
content (the attacker controls every byte it commits), so ``load_transcript``
accepts it — except for ``tamper``, which changes a file *after* the manifest
and roots were computed and must be refused on load. What gives the others away
is re-execution: replaying a faked segment from its committed start checkpoint
does not reproduce its committed end checkpoint bit for bit, while the honest
segments of the same transcript do.

``HONEST`` (not in ``ATTACKS``) writes an honest run the same way: the baseline
that must pass verification.

Segments are numbered from 0 in checkpoint order: segment ``i`` runs from the
``i``-th checkpoint to the next (``SpoofedRun.segment_starts[i]`` is its start step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from redline.statements.runs import TranscriptCommitments


@dataclass(frozen=True)
class Declared:
    """What the spoofed transcript declares."""

    steps: int
    flop: float | None  # counted FLOP per step × steps, as a declaration would state it
    model: Mapping[str, Any]  # the declared model factory's arguments (its shape)
    parameter_count: int
    tokens: int


@dataclass
class SpoofedRun:
    """A spoofed transcript and the ground truth about it."""

    attack: str
    transcript_dir: Path
    declared: Declared
    faked_segments: list[int]  # indexes of segments that are not honest
    segment_starts: list[int]  # start step of every segment, by index
    cost: float  # the attacker's compute as a fraction of honest training of the declared run
    commitments_before: TranscriptCommitments | None = None  # tampering: the roots before the change
    tampered_file: Path | None = None  # tampering: the file changed after commitment
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def honest_segments(self) -> list[int]:
        """Segments that an honest replay reproduces."""
        return [i for i in range(len(self.segment_starts)) if i not in self.faked_segments]

    def faked_starts(self) -> list[int]:
        """Start steps of the faked segments."""
        return [self.segment_starts[i] for i in self.faked_segments]


class Attack(Protocol):
    """One attack family: ``run`` writes a spoofed transcript under ``workdir`` (``workdir / name``)."""

    name: str
    description: str

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 60, checkpoint_every: int = 10,
            **params: Any) -> SpoofedRun: ...


#: The attack cases the test suite and ``bench/verify_cost.py`` run: case id -> (attack name, parameters).
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "skipped-steps": ("skipped-steps", {"fraction": 0.25}),
    "data-substitution": ("data-substitution", {}),
    "data-substitution-actual": ("data-substitution", {"commit": "actual"}),
    "data-reordering": ("data-reordering", {}),
    "data-reordering-actual": ("data-reordering", {"commit": "actual", "order": "shuffle"}),
    "under-declared-steps": ("compute-under-declaration", {"mode": "steps", "factor": 2}),
    "under-declared-width": ("compute-under-declaration", {"mode": "width"}),
    "forged-final-weights": ("forged-final-weights", {}),
    "splice": ("splice", {"at": 1}),
    "adversarial-eps-0": ("adversarial-tolerance", {"epsilon": 0.0}),
    "adversarial-eps-1e-3": ("adversarial-tolerance", {"epsilon": 1e-3}),
    "adversarial-eps-1": ("adversarial-tolerance", {"epsilon": 1.0}),
}
#: Tampering after commitment, one case per file kind (refused on load rather than caught by replay).
TAMPER_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    f"tamper-{target}": ("tamper", {"target": target}) for target in ("checkpoint", "steps", "data")}


def _registry() -> dict[str, Attack]:
    from redline.verify.attacks.adversarial import AdversarialCheckpoints
    from redline.verify.attacks.data import DataReordering, DataSubstitution
    from redline.verify.attacks.forged import ForgedFinalWeights, Splice
    from redline.verify.attacks.skipped import SkippedSteps
    from redline.verify.attacks.tamper import TamperAfterCommitment
    from redline.verify.attacks.underdeclare import ComputeUnderDeclaration

    attacks: list[Attack] = [SkippedSteps(), DataSubstitution(), DataReordering(), ComputeUnderDeclaration(),
                             ForgedFinalWeights(), Splice(), TamperAfterCommitment(), AdversarialCheckpoints()]
    return {a.name: a for a in attacks}


def __getattr__(name: str) -> Any:
    if name == "HONEST":  # the no-attack baseline (not in ATTACKS)
        from redline.verify.attacks._base import Honest

        return Honest()
    if name == "ATTACKS":  # lazily: the attacks need torch
        global ATTACKS
        ATTACKS = _registry()
        return ATTACKS
    raise AttributeError(f"module 'redline.verify.attacks' has no attribute {name!r}")


__all__ = ["ATTACKS", "Attack", "CASES", "Declared", "HONEST", "SpoofedRun", "TAMPER_CASES"]
