"""The records of a training transcript, their canonical bytes, and the three Merkle commitments.

A transcript commits to three lists, each as an RFC 6962 Merkle tree built with
the log's own code (``redline.log.merkle``): the *steps* (one record per
optimizer step: loss, tokens, optimizer hyperparameters, RNG-state digests),
the *data* (per step: the batch's position in the data order and the digest of
its exact bytes) and the *checkpoints* (per checkpoint: step, size, file
digests, model digest). Leaf ``i`` of each tree is the RFC 8785 canonical JSON
of record ``i``. The trees are independent, so a change to one batch, one step
record or one checkpoint changes exactly one root. A prefix of a transcript has
roots that are prefixes of the full trees, so a progress declaration and the
final one are linked by RFC 6962 consistency proofs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from redline.crypto.canonical import MAX_SAFE_INTEGER, canonical_json
from redline.errors import MalformedInput
from redline.log.merkle import leaf_hash, root_of
from redline.statements.base import Count, Model, Sha256Hex, Timestamp
from redline.statements.runs import TranscriptCommitments

FORMAT = "redline-transcript/v1"
MANIFEST_FILE = "manifest.json"
STEPS_FILE = "steps.jsonl"
DATA_FILE = "data.jsonl"
BLOBS_DIR = "blobs"

DigestAlgorithm = Literal["sha256", "blake3"]
#: ``module:qualified.name`` of an importable Python object.
EntryPointName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                                              r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
                                      max_length=256)]
Step = Annotated[int, Field(ge=1, le=2**53 - 1)]


# --- the declaration: everything a verifier needs to re-execute a segment ----------


class EntryPoint(Model):
    """A Python callable named ``module:qualname`` and the JSON keyword arguments it is called with."""

    entry_point: EntryPointName
    kwargs: dict[str, Any] = Field(default_factory=dict)


class DataSource(EntryPoint):
    """The data source: ``entry_point(seed=seed, **kwargs)`` returns an object whose ``batch(position)``
    gives the batch at that position of the data order."""

    seed: int


class Declaration(Model):
    """How to rebuild a run for re-execution; a missing part is declared ``null`` and named in ``notes``.

    - ``model_factory(**kwargs)`` returns the model (its weights come from the checkpoint);
    - ``optimizer``: an ``torch.optim.Optimizer`` subclass, called with ``(model.parameters(), **kwargs)``,
      or a factory called with ``(model, **kwargs)``;
    - ``scheduler(optimizer, **kwargs)`` returns the learning-rate scheduler;
    - ``data_source`` gives the batches;
    - ``train_step(model, batch, **kwargs)`` returns the loss.

    One step is then: ``zero_grad(set_to_none=True)``, ``loss = train_step(...)``,
    ``loss.backward()``, gradient clipping to ``max_grad_norm`` if set,
    ``optimizer.step()``, ``scheduler.step()``.
    """

    model_factory: EntryPoint | None = None
    optimizer: EntryPoint | None = None
    scheduler: EntryPoint | None = None
    data_source: DataSource | None = None
    train_step: EntryPoint | None = None
    max_grad_norm: float | None = None
    notes: list[str] = Field(default_factory=list)


def entry(name: str, /, **kwargs: Any) -> EntryPoint:
    """``EntryPoint`` shorthand: ``entry("pkg.mod:make_model", d_model=64)``."""
    return EntryPoint(entry_point=name, kwargs=kwargs)


# --- per-step records -----------------------------------------------------------------


class RngDigests(Model):
    """SHA-256 digests of the random-number generator states after the step (see ``docs/transcripts.md``)."""

    torch_cpu: Sha256Hex
    cuda: list[Sha256Hex] = Field(default_factory=list)
    python: Sha256Hex
    numpy: Sha256Hex | None = None


class StepRecord(Model):
    """One optimizer step: its number (from 1), loss, tokens, hyperparameters per group and RNG digests."""

    step: Step
    loss: float | Literal["nan", "inf", "-inf"] | None
    tokens: Count
    optimizer: list[dict[str, Any]]
    rng: RngDigests


class DataRecord(Model):
    """The batch of one step: its position in the data order and the digest of its tensors' exact bytes."""

    step: Step
    position: Count
    batch: dict[Literal["sha256"], Sha256Hex]


class CheckpointEntry(Model):
    """A checkpoint: the step after which it was taken, its file's size and digests, and its model's digest.

    ``digest`` always holds ``sha256`` (the blob's address) and may hold ``blake3``;
    ``model_digest`` is the tensor-serialisation SHA-256 of the model's state dict.
    """

    step: Count
    size: Count
    digest: dict[DigestAlgorithm, Sha256Hex]
    model_digest: Sha256Hex

    @model_validator(mode="after")
    def _has_sha256(self) -> CheckpointEntry:
        if "sha256" not in self.digest:
            raise ValueError("field 'digest' must hold a sha256 digest (the blob's address)")
        return self


# --- the manifest -------------------------------------------------------------------


class Environment(Model):
    """Where the run was recorded: library versions, device type, determinism settings."""

    python: str
    torch: str
    numpy: str | None
    platform: str
    device_type: str
    cuda: str | None
    deterministic_algorithms: bool
    num_threads: int


class FlopCount(Model):
    """FLOP counted by ``torch.utils.flop_counter.FlopCounterMode`` over one step (forward and backward)."""

    method: Literal["torch.utils.flop_counter.FlopCounterMode"]
    counted_step: Step
    per_step: Annotated[float, Field(ge=0, le=1e35, allow_inf_nan=False)]


class FileDigest(Model):
    """A file's SHA-256 and size."""

    sha256: Sha256Hex
    size: Count


class Manifest(Model):
    """The transcript's table of contents and its commitments (``manifest.json``, RFC 8785 canonical)."""

    format: Literal["redline-transcript/v1"]
    redline_version: str
    started_at: Timestamp
    finished_at: Timestamp
    environment: Environment
    declaration: Declaration
    parameter_count: Count
    tokens: Count
    checkpoint_every: Step
    digest_algorithms: list[DigestAlgorithm]
    flop: FlopCount | None
    files: dict[Literal["steps.jsonl", "data.jsonl"], FileDigest]
    checkpoints: list[CheckpointEntry]
    commitments: TranscriptCommitments

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if set(self.files) != {STEPS_FILE, DATA_FILE}:
            raise ValueError(f"field 'files' must list exactly {STEPS_FILE} and {DATA_FILE}")
        steps = [c.step for c in self.checkpoints]
        if not steps or steps[0] != 0:
            raise ValueError("field 'checkpoints' must start with the checkpoint at step 0")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError("field 'checkpoints' must be in strictly increasing step order")
        if steps[-1] != self.commitments.step_count:
            raise ValueError(f"field 'checkpoints' must end at the last step {self.commitments.step_count}, "
                             f"not {steps[-1]}")
        for c in self.checkpoints:
            if set(c.digest) != set(self.digest_algorithms):
                raise ValueError(f"checkpoint at step {c.step} does not carry exactly the digests "
                                 f"{self.digest_algorithms}")
        return self


# --- leaves and roots ------------------------------------------------------------------


def record_bytes(record: Model | dict[str, Any]) -> bytes:
    """The canonical JSON bytes of a record: its Merkle leaf and its line in a ``.jsonl`` file."""
    return canonical_json(record.model_dump(mode="json") if isinstance(record, Model) else record)


#: The stdlib's string encoder with ``ensure_ascii=False``: RFC 8785's escaping exactly.
_json_string = json.encoder.encode_basestring


class _Fallback(Exception):
    pass


@lru_cache(maxsize=4096)
def _float_text(value: float) -> str:
    return canonical_json(value).decode("ascii")


def _encode(value: Any, out: list[str]) -> None:
    t = type(value)
    if t is str:
        out.append(_json_string(value))
    elif value is None:
        out.append("null")
    elif t is bool:
        out.append("true" if value else "false")
    elif t is int:
        if abs(value) > MAX_SAFE_INTEGER:
            raise _Fallback
        out.append(str(value))
    elif t is float:
        out.append(_float_text(value))
    elif t is dict:
        if not all(type(k) is str and k.isascii() for k in value):
            raise _Fallback  # RFC 8785 orders keys by UTF-16 code units; for ASCII that is plain sorting
        out.append("{")
        for i, k in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_json_string(k))
            out.append(":")
            _encode(value[k], out)
        out.append("}")
    elif t is list or t is tuple:
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _encode(v, out)
        out.append("]")
    else:
        raise _Fallback


def canonical_record(value: Any) -> bytes:
    """``canonical_json(value)``, fast for the records the recorder writes on every training step.

    Floats are formatted one by one by ``canonical_json`` (and remembered), so a
    record holding a value like ``eps=1e-8`` does not send the whole record down
    the reference serialiser's slow path. Anything unusual goes to ``canonical_json``.
    """
    out: list[str] = []
    try:
        _encode(value, out)
        return "".join(out).encode("utf-8")
    except (_Fallback, UnicodeEncodeError, MalformedInput):
        return canonical_json(value)


def leaf_hashes(lines: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes of canonical record bytes."""
    return [leaf_hash(line) for line in lines]


def commitments(step_lines: Sequence[bytes], data_lines: Sequence[bytes],
                checkpoint_lines: Sequence[bytes]) -> TranscriptCommitments:
    """The three roots (and the step count) of a transcript's canonical record bytes."""
    return TranscriptCommitments(steps_root=root_of(leaf_hashes(step_lines)).hex(),
                                 data_root=root_of(leaf_hashes(data_lines)).hex(),
                                 checkpoints_root=root_of(leaf_hashes(checkpoint_lines)).hex(),
                                 step_count=len(step_lines))


__all__ = ["BLOBS_DIR", "CheckpointEntry", "DATA_FILE", "DataRecord", "DataSource", "Declaration", "EntryPoint",
           "Environment", "FORMAT", "FileDigest", "FlopCount", "MANIFEST_FILE", "Manifest", "RngDigests",
           "STEPS_FILE", "StepRecord", "canonical_record", "commitments", "entry", "leaf_hashes", "record_bytes"]
