"""Statements about training runs: declared at start, committed to as they progress, totalled at the end.

A run that is backed by a training transcript is bound at four points:

- its **spec** (``RunSpec``: party, run id, environment, the registered and pinned factories with their
  arguments, the initialisation, parameter count, checkpoint interval) is carried whole by ``RunStart``,
  signed before training, and by digest in ``RunProgress`` and ``RunFinish``;
- its **start**: ``RunStart.init_model_digest`` is checkpoint 0's model digest, which a verifier rebuilds
  from the registered model factory and the initialisation seed (or which must be a known base model's
  final weights for a fine-tune);
- its **steps**: the transcript's Merkle roots, domain-separated by the spec digest (so by party and run),
  in ``RunProgress`` and ``RunFinish``;
- its **end**: ``RunFinish.final_model_digest`` and ``manifest_digest`` (every byte of the manifest).

See ``docs/transcripts.md`` for exactly what each statement commits to.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from redline.crypto.canonical import canonical_digest
from redline.statements.base import (
    BoundedList,
    Count,
    Digest,
    Flop,
    Label,
    Model,
    Name,
    PartyName,
    Predicate,
    Sha256Hex,
    Timestamp,
    register,
    unique,
)
from redline.statements.compute import ChipCount

FlopMethod = Literal["counted", "6ND", "hardware"]
SPEC_FORMAT = "redline-run-spec/v1"

#: The entry-point group each factory of a declaration is registered in (Python package entry points).
FACTORY_GROUPS: dict[str, str] = {
    "model_factory": "redline.models",
    "optimizer": "redline.optimizers",
    "scheduler": "redline.schedulers",
    "data_source": "redline.datasets",
    "train_step": "redline.train_steps",
}

#: An entry-point name: lower-case letters, digits, '.', '_' and '-'; never a module path.
FactoryName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,127}$",
                                   description="a registered entry-point name (lower case, no ':')")]
#: A distribution (package) name as PyPI spells it.
DistributionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$",
                                        description="a Python distribution name")]
#: A distribution version (PEP 440 text).
Version = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$", description="a PEP 440 version")]
#: Steps: 1 ≤ n ≤ 2**53 - 1.
Step = Annotated[int, Field(ge=1, le=2**53 - 1)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
GradNorm = Annotated[float, Field(gt=0, le=1e30, allow_inf_nan=False)]


class TranscriptCommitments(Model):
    """Merkle roots of a run's training transcript: its steps, its data order and its checkpoints.

    Each leaf is ``spec_digest (32 bytes) || canonical record``, so the roots are bound to one run spec
    (one party, one run id) and two runs never declare the same roots.
    """

    steps_root: Sha256Hex
    data_root: Sha256Hex
    checkpoints_root: Sha256Hex
    step_count: Count


class FlopEstimates(Model):
    """A run's compute by each method that was applied: counted operations, 6·N·D, chip-hours × peak."""

    counted: Flop | None = None
    six_nd: Flop | None = None
    hardware: Flop | None = None


# --- the run spec: what a verifier needs to rebuild the run, fixed before training ---------


class FactoryRef(Model):
    """A factory registered under an entry-point group, pinned to the distribution that registers it.

    ``files_digest`` is the SHA-256 of the distribution's installed files (see
    ``redline.transcript.factories.distribution_digest``). ``kwargs`` are plain JSON data.
    """

    name: FactoryName
    distribution: DistributionName
    version: Version
    files_digest: Sha256Hex
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DataSourceRef(FactoryRef):
    """The data source: ``factory(seed=seed, **kwargs)`` returns an object whose ``batch(position)`` gives the
    batch at that position of the data order."""

    seed: Seed


class Declaration(Model):
    """How to rebuild a run for re-execution; a missing part is declared ``null`` and named in ``notes``.

    - ``model_factory(**kwargs)`` returns the model (group ``redline.models``);
    - ``optimizer(model, **kwargs)`` returns the optimizer (group ``redline.optimizers``);
    - ``scheduler(optimizer, **kwargs)`` returns the learning-rate scheduler (``redline.schedulers``);
    - ``data_source(seed=seed, **kwargs)`` gives the batches (``redline.datasets``);
    - ``train_step(model, batch, **kwargs)`` returns the loss (``redline.train_steps``).

    One step is then: ``zero_grad(set_to_none=True)``, ``loss = train_step(...)``,
    ``loss.backward()``, gradient clipping to ``max_grad_norm`` if set,
    ``optimizer.step()``, ``scheduler.step()``.
    """

    model_factory: FactoryRef | None = None
    optimizer: FactoryRef | None = None
    scheduler: FactoryRef | None = None
    data_source: DataSourceRef | None = None
    train_step: FactoryRef | None = None
    max_grad_norm: GradNorm | None = None
    notes: BoundedList[Label] = Field(default_factory=list)


class Environment(Model):
    """Where the run was recorded: library versions and builds, the device, determinism settings.

    ``cpu_capability`` is ATen's CPU kernel set (``torch.backends.cpu.get_cpu_capability()``: ``AVX512``,
    ``AVX2``, ``DEFAULT``, ...), ``blas`` and ``onednn`` the BLAS library and oneDNN version torch was built
    with, ``device_name`` the accelerator's model (None on the CPU): each of them changes floating-point
    results, so a replay is bitwise only where they match.
    """

    python: Label
    torch: Label
    numpy: Label | None
    platform: Label
    device_type: Label
    device_name: Label | None
    cuda: Label | None
    cpu_capability: Label | None
    blas: Label | None
    onednn: Label | None
    deterministic_algorithms: bool
    num_threads: Annotated[int, Field(ge=1, le=65536)]

    #: The fields on which bitwise replay depends (the others only describe the machine).
    REPLAY_FIELDS: ClassVar[tuple[str, ...]] = ("torch", "device_type", "device_name", "cuda", "cpu_capability",
                                                "blas", "onednn")

    def replay_differences(self, other: Environment) -> list[str]:
        """``field: recorded → here`` for each field on which bitwise replay depends and ``other`` differs."""
        return [f"{f} {getattr(self, f)!r} → {getattr(other, f)!r}" for f in self.REPLAY_FIELDS
                if getattr(self, f) != getattr(other, f)]


class Init(Model):
    """Where checkpoint 0 comes from.

    ``fresh``: on the CPU, ``torch.manual_seed(seed)``, ``random.seed(seed)``, ``numpy.random.seed(seed)``,
    then ``model_factory(**kwargs)``; a fresh optimizer and scheduler built from the declaration.
    ``base``: checkpoint 0's model weights are ``base_model_digest`` (tensor serialisation v1), the final
    weights of a run on the log or a registered base model; optimizer and scheduler fresh.
    """

    kind: Literal["fresh", "base"]
    seed: Seed | None = None
    base_model_digest: Sha256Hex | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Init:
        if self.kind == "fresh" and (self.seed is None or self.base_model_digest is not None):
            raise ValueError("a fresh initialisation names a 'seed' and no 'base_model_digest'")
        if self.kind == "base" and (self.base_model_digest is None or self.seed is not None):
            raise ValueError("a base initialisation names a 'base_model_digest' and no 'seed'")
        return self


class RunSpec(Model):
    """Everything about a run that is fixed before its first step; ``RunStart`` carries it whole.

    Nothing in it depends on the time, so the same training recorded for the same run gives the same roots.

    Written by the recorder as ``run.json`` when it starts; its digest (:meth:`digest`) domain-separates the
    transcript's Merkle roots and is carried by ``RunProgress`` and ``RunFinish``.
    """

    format: Literal["redline-run-spec/v1"]
    party: PartyName
    run_id: Name
    redline_version: Label
    environment: Environment
    declaration: Declaration
    init: Init
    parameter_count: Count
    checkpoint_every: Step
    digest_algorithms: Annotated[list[Literal["sha256", "blake3"]], Field(min_length=1, max_length=2)]

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        if self.digest_algorithms[0] != "sha256" or len(set(self.digest_algorithms)) != len(self.digest_algorithms):
            raise ValueError("field 'digest_algorithms' must start with 'sha256' and name each algorithm once")
        return self

    def digest(self) -> str:
        """Hex SHA-256 of the spec's RFC 8785 canonical JSON."""
        return canonical_digest(self.model_dump(mode="json"))


# --- the statements -------------------------------------------------------------------------


class _RunPredicate(Predicate):
    run_id: Name

    def run_subject_name(self) -> str:
        """The subject name every statement about this run carries: ``party/run/run_id``."""
        return f"{self.party}/run/{self.run_id}"

    def subjects(self) -> list[dict[str, Any]]:
        own = super().subjects()
        return [*own, {"name": self.run_subject_name(), "digest": dict(own[0]["digest"])}]

    @staticmethod
    def _commitment_subjects(run: str, c: TranscriptCommitments) -> list[dict[str, Any]]:
        return [{"name": f"{run}/steps", "digest": {"sha256": c.steps_root}},
                {"name": f"{run}/data", "digest": {"sha256": c.data_root}},
                {"name": f"{run}/checkpoints", "digest": {"sha256": c.checkpoints_root}}]


@register
class RunStart(_RunPredicate):
    """A lab declares a training run before it starts: what it trains, on what, how, and from which weights.

    ``spec`` (with ``init_model_digest``, checkpoint 0's model digest) binds the run to a transcript; a run
    declared without one can never be verified. ``base_model`` / ``base_model_flop`` name a base by name and
    declared compute for a run without a spec; with a spec, the base is ``spec.init.base_model_digest``.
    """

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-start:v2"
    KIND: ClassVar[str] = "run-start"

    model_name: Name
    base_model: Name | None = None
    base_model_flop: Flop | None = None
    declared_flop: Flop
    flop_method: FlopMethod
    hardware: BoundedList[ChipCount]
    started_at: Timestamp
    spec: RunSpec | None = None
    init_model_digest: Sha256Hex | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RunStart:
        if self.base_model_flop is not None and self.base_model is None:
            raise ValueError("field 'base_model_flop' is given without 'base_model'")
        if self.flop_method == "hardware" and not self.hardware:
            raise ValueError("field 'hardware' must list the chips when flop_method is 'hardware'")
        unique(self.hardware, lambda c: c.chip_model, "chip_model in hardware")
        if (self.spec is None) != (self.init_model_digest is None):
            raise ValueError("fields 'spec' and 'init_model_digest' are given together or not at all")
        if self.spec is not None:
            if self.spec.party != self.party or self.spec.run_id != self.run_id:
                raise ValueError(f"field 'spec' is the spec of run {self.spec.party}/{self.spec.run_id}, "
                                 f"not {self.party}/{self.run_id}")
            init = self.spec.init
            if init.kind == "base":
                if self.init_model_digest != init.base_model_digest:
                    raise ValueError("field 'init_model_digest' must be the base model's digest "
                                     "'spec.init.base_model_digest' for a run that starts from a base")
                if self.base_model_flop is not None:
                    raise ValueError("field 'base_model_flop' is not declared for a run with a spec: the base's "
                                     "compute comes from the log")
            elif self.base_model is not None:
                raise ValueError("field 'base_model' is given but 'spec.init' is a fresh initialisation")
        return self

    @property
    def spec_digest(self) -> str | None:
        """The spec's digest, or None for a run declared without one."""
        return None if self.spec is None else self.spec.digest()


@register
class RunProgress(_RunPredicate):
    """A lab commits to its run so far: the step reached, the compute spent, and the transcript's Merkle roots."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-progress:v2"
    KIND: ClassVar[str] = "run-progress"

    step: Count
    flop_so_far: Flop
    commitments: TranscriptCommitments
    spec_digest: Sha256Hex | None
    as_of: Timestamp

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), *self._commitment_subjects(self.run_subject_name(), self.commitments)]


@register
class RunFinish(_RunPredicate):
    """A lab closes a run: its total compute by each method, the final model's digest, the transcript roots and
    the digest of the transcript's whole manifest."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:training-run-finish:v2"
    KIND: ClassVar[str] = "run-finish"

    total_flop: Flop
    flop_estimates: FlopEstimates
    estimates_disagree: bool
    final_model_digest: Digest
    commitments: TranscriptCommitments
    spec_digest: Sha256Hex | None
    manifest_digest: Sha256Hex | None
    finished_at: Timestamp

    @model_validator(mode="after")
    def _consistent(self) -> RunFinish:
        if (self.spec_digest is None) != (self.manifest_digest is None):
            raise ValueError("fields 'spec_digest' and 'manifest_digest' are given together or not at all")
        return self

    def subjects(self) -> list[dict[str, Any]]:
        run = self.run_subject_name()
        return [*super().subjects(), *self._commitment_subjects(run, self.commitments),
                {"name": f"{run}/model", "digest": dict(self.final_model_digest)}]


@register
class BaseModelRegistration(Predicate):
    """The coordinator or a regulator registers a model trained outside the log (e.g. openly published weights)
    as a base that runs may start from: its weights digest and the compute that went into it."""

    PREDICATE_TYPE: ClassVar[str] = "urn:redline:base-model:v1"
    KIND: ClassVar[str] = "base-model"

    model_name: Name
    model_digest: Sha256Hex
    training_flop: Flop
    source: Label

    def subjects(self) -> list[dict[str, Any]]:
        return [*super().subjects(), {"name": f"model/{self.model_name}", "digest": {"sha256": self.model_digest}}]



__all__ = ["BaseModelRegistration", "DataSourceRef", "Declaration", "Environment", "FACTORY_GROUPS", "FactoryRef",
           "FlopEstimates", "FlopMethod", "Init", "RunFinish", "RunProgress", "RunSpec", "RunStart", "SPEC_FORMAT",
           "TranscriptCommitments"]
