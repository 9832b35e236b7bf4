"""Known attacks on training runs, for testing and calibrating the verifier and the engine (``redline[torch]``).

Attacks register themselves with the :func:`attack` decorator, in the style of Inspect's ``@scorer``: a
module-level registry that :data:`ATTACKS` (name → attack instance) exposes once every built-in attack
module is imported::

    from redline.testing.attacks import ATTACKS, attack

    spoof = ATTACKS["skipped-steps"].run(tmp, seed=0, steps=60, checkpoint_every=10, fraction=0.25)
    spoof.transcript_dir, spoof.faked_segments, spoof.cost, spoof.declared

    @attack
    class MyAttack(BaseAttack):          # from redline.testing.attacks._base
        name = "my-attack"
        description = "what it fakes"
        def forge(self, cfg, ckpts, content, **params): ...

Two families:

**Transcript forgeries** (:data:`CASES`, :data:`TAMPER_CASES`): each writes a spoofed transcript of the
tiny GPT (:mod:`redline.transcript.tinygpt`) into a work directory, through the recorder's own writer
(:class:`redline.transcript.format.TranscriptWriter`), and says what it faked. Their commitments are
computed honestly over the fake content (the attacker controls every byte it commits), so
``load_transcript`` accepts them — except for ``tamper``, which changes a file *after* the manifest and
roots were computed and must be refused on load. What gives the others away is re-execution: replaying a
faked segment from its committed start checkpoint does not reproduce its committed end checkpoint bit for
bit, while the honest segments of the same transcript do.

**Binding attacks** (:data:`BINDING_CASES`): attacks on what binds a run to its declarations — the code
a verifier runs, the run's start, its transcript's ownership, its end. Each plays a whole story on a
small real log (:class:`redline.testing.scenario.Scenario`) through the public API the parties use
(``redline run start|declare``, the statement builders, ``Registry.submit``, ``verify_transcript`` with
the log's ``RunStart`` and declaration) and returns a :class:`BindingRun`: every move the attacker made,
what the log or the verifier answered, and whether each move was stopped. None of them fakes a segment:
every segment they commit replays bit for bit, so re-execution alone never catches them.

**The adaptive lab** (:data:`ADAPTIVE_CASES`, :data:`ADAPTIVE_BINDING_CASES`): evasions aimed at the
verifier's step sample, its calibration and its compute check — a late fake of small smooth updates, with or
without a long warm-up segment (``late_smooth``); forged early ends to inflate a calibrated tolerance, with
final weights trained ten times longer (``calibration``); re-declaring the same steps to re-roll the sample
(``seed_grinding``, a story); and four compute under-declarations (``compute_evasion``, stories). Their
transcript forgeries are written like the others; their stories like the binding attacks'.

``HONEST`` (not in ``ATTACKS``) writes an honest run the same way: the baseline that must pass verification.
``OTHER_CPU`` (not in ``ATTACKS``) verifies an honest run under another ATen CPU capability in a subprocess:
the baseline that must never be failed.

Segments are numbered from 0 in checkpoint order: segment ``i`` runs from the ``i``-th checkpoint to the
next (``SpoofedRun.segment_starts[i]`` is its start step).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

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


@dataclass
class BindingRun(SpoofedRun):
    """A binding attack's story: the attacker's moves, the public API's answers, and which moves were stopped.

    ``answers`` are the log's (or the command line's) answers to every statement submitted, the honest
    party's included; ``audits`` the verifications made, by label; ``violations`` the violations the
    engine found against the attacker; ``stopped`` maps each attacking move to whether the public API
    stopped it (refused it, failed or withheld its verification, or raised a violation with evidence).
    ``cost`` is the attacker's real training compute over the compute it declared.
    """

    answers: list[Any] = field(default_factory=list)  # redline.testing.scenario.Answer
    audits: dict[str, Any] = field(default_factory=dict)  # label -> redline.testing.scenario.Audit
    violations: list[Any] = field(default_factory=list)  # redline.engine.state.Violation
    stopped: dict[str, bool] = field(default_factory=dict)

    @property
    def caught(self) -> bool:
        """Every attacking move was stopped."""
        return bool(self.stopped) and all(self.stopped.values())

    def answer(self, what: str) -> Any:
        """The answer to the attempt described as ``what`` (``KeyError`` if there was none)."""
        for a in self.answers:
            if a.what == what:
                return a
        raise KeyError(what)


class Attack(Protocol):
    """One attack family: ``run`` mounts it under ``workdir`` (``workdir / name``) and says what it faked."""

    name: str
    description: str

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 60, checkpoint_every: int = 10,
            **params: Any) -> SpoofedRun: ...


_A = TypeVar("_A", bound=Callable[[], Any])
#: Every registered attack by name, in registration order (``ATTACKS`` is this dict once the built-ins load).
_REGISTRY: dict[str, Attack] = {}
#: The modules of the built-in attacks, imported when ``ATTACKS`` is first read.
BUILTIN_MODULES = ("skipped", "data", "underdeclare", "forged", "tamper", "adversarial", "code_execution",
                   "hidden_pretraining", "reuse", "release", "late_smooth", "calibration", "seed_grinding",
                   "compute_evasion")


@overload
def attack(target: _A) -> _A: ...
@overload
def attack(target: None = None, *, name: str | None = None) -> Callable[[_A], _A]: ...


def attack(target: Any = None, *, name: str | None = None) -> Any:
    """Register an attack: decorate its class (or a function that returns one), with or without ``name=``.

    The class is instantiated once with no arguments; the instance is registered under its ``name``
    attribute (``name=`` sets it), which must be new, and must have a ``description`` and a ``run`` method.
    The decorated object is returned unchanged.
    """
    def register(obj: _A) -> _A:
        instance = obj()
        if name is not None:
            instance.name = name
        key = getattr(instance, "name", "")
        if not key or not getattr(instance, "description", "") or not callable(getattr(instance, "run", None)):
            raise TypeError(f"{obj!r} is not an attack: it needs a name, a description and a run method")
        old = _REGISTRY.get(key)
        if old is not None and (type(old).__module__, type(old).__qualname__) != \
                (type(instance).__module__, type(instance).__qualname__):
            raise ValueError(f"an attack named {key!r} is already registered ({type(old).__qualname__})")
        _REGISTRY[key] = instance
        return obj

    if target is not None:
        return register(target)
    return register


def registered() -> dict[str, Attack]:
    """Every registered attack by name (the built-ins imported first): the dict ``ATTACKS`` is."""
    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")
    return _REGISTRY


#: The transcript forgeries the test suite and ``bench/verify_cost.py`` run: case id -> (attack name, parameters).
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
#: Attacks on what binds a run (its code, start, ownership, end): each returns a :class:`BindingRun`.
BINDING_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "code-execution-unregistered": ("code-execution", {"variant": "unregistered"}),
    "code-execution-module-path": ("code-execution", {"variant": "module-path"}),
    "hidden-pretraining": ("hidden-pretraining", {"factor": 10}),
    "transcript-reuse": ("transcript-reuse", {}),
    "release-unverified-weights": ("release-unverified-weights", {"factor": 10}),
}
#: The adaptive lab's transcript forgeries (``tests/test_attacks_adaptive.py``, ``bench/verify_cost.py``): each
#: writes a transcript like :data:`CASES` (``long-warmup`` is refused on load, like :data:`TAMPER_CASES`), but
#: they are tuned to the step sample, so they need their own geometry (one-step segments, a long warm-up).
ADAPTIVE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "late-smooth-fake": ("late-smooth-fake", {"fake_fraction": 0.1}),
    "late-smooth-fake-warmup": ("late-smooth-fake", {"fake_fraction": 0.1, "warmup": 32}),
    "long-warmup": ("long-warmup", {"fake_fraction": 0.1}),
    "calibration-poisoning": ("calibration-poisoning", {"poisoned": 2, "factor": 10}),
}
#: The adaptive lab's attacks on what binds a run to its sample and its compute: stories on a log, like
#: :data:`BINDING_CASES` (``seed-grinding`` forges its own 100-segment run; the compute stories record their own).
ADAPTIVE_BINDING_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "seed-grinding": ("seed-grinding", {"segments": 100, "tries": 4}),
    "under-declared-flop-0.701": ("under-declared-flop", {"factor": 0.701}),
    "uncounted-matmuls": ("uncounted-matmuls", {}),
    "small-first-batches": ("small-first-batches", {}),
    "under-declared-tokens": ("under-declared-tokens", {"token_share": 0.25}),
}


def __getattr__(name: str) -> Any:
    if name == "HONEST":  # the no-attack baseline (not in ATTACKS)
        from redline.testing.attacks._base import Honest

        return Honest()
    if name == "OTHER_CPU":  # the honest baseline verified on another CPU capability (not in ATTACKS)
        from redline.testing.attacks.other_cpu import OtherCpu

        return OtherCpu()
    if name == "ATTACKS":  # lazily: the attacks need torch
        global ATTACKS
        ATTACKS = registered()
        return ATTACKS
    raise AttributeError(f"module 'redline.testing.attacks' has no attribute {name!r}")


__all__ = [
    "ADAPTIVE_BINDING_CASES",
    "ADAPTIVE_CASES",
    "ATTACKS",
    "BINDING_CASES",
    "BUILTIN_MODULES",
    "CASES",
    "HONEST",
    "OTHER_CPU",
    "TAMPER_CASES",
    "Attack",
    "BindingRun",
    "Declared",
    "SpoofedRun",
    "attack",
    "registered",
]
