"""The training-transcript format: its records, manifest, run spec, Merkle commitments, and how they are
read and written. This module is the one place that knows the bytes of a transcript.

A transcript commits to three lists, each as an RFC 6962 Merkle tree built with
the log's own code (``redline.log.merkle``): the *steps* (one record per
optimizer step: loss, tokens, optimizer hyperparameters, RNG-state digests),
the *data* (per step: the batch's position in the data order and the digest of
its exact bytes) and the *checkpoints* (per checkpoint: step, size, file
digests, model digest). Leaf ``i`` of each tree is ``spec_digest || record_i``:
the 32-byte SHA-256 of the run spec (``run.json``, which names the party and the
run) followed by the RFC 8785 canonical JSON of record ``i``, so the roots are
bound to one run of one party. The trees are independent, so a change to one
batch, one step record or one checkpoint changes exactly one root. A prefix of
a transcript has roots that are prefixes of the full trees, so a progress
declaration and the final one are linked by RFC 6962 consistency proofs.

Writing (:class:`TranscriptWriter`) is shared by the recorder and the attack
suite; reading (:func:`load_manifest`, :func:`read_spec`, :func:`read_records`)
by the loader.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, TypeVar

from pydantic import Field, ValidationError, model_validator

from redline.crypto.canonical import MAX_SAFE_INTEGER, canonical_json, parse_json
from redline.errors import MalformedInput
from redline.log.merkle import leaf_hash, root_of
from redline.statements.base import Count, Model, Sha256Hex, Timestamp, validation_message
from redline.statements.runs import (
    FACTORY_GROUPS,
    SPEC_FORMAT,
    DataSourceRef,
    Declaration,
    Environment,
    FactoryRef,
    Init,
    RunSpec,
    TranscriptCommitments,
)

FORMAT = "redline-transcript/v2"
SPEC_FILE = "run.json"
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
    """The transcript's table of contents and its commitments (``manifest.json``, RFC 8785 canonical).

    ``spec`` is the run spec written as ``run.json`` when recording started (``RunStart`` carries it whole);
    the rest is known only at the end. ``RunFinish.manifest_digest`` is the SHA-256 of these bytes.
    """

    format: Literal["redline-transcript/v2"]
    spec: RunSpec
    started_at: Timestamp
    finished_at: Timestamp
    tokens: Count
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
        every = self.spec.checkpoint_every
        for a, b in zip(steps, steps[1:]):
            if b - a > every:  # the run spec declares the longest segment: a verifier's cost per draw is bounded
                raise ValueError(f"field 'checkpoints': the segment from step {a} to {b} is {b - a} steps, longer "
                                 f"than the declared checkpoint_every {every}")
        if steps[-1] != self.commitments.step_count:
            raise ValueError(f"field 'checkpoints' must end at the last step {self.commitments.step_count}, "
                             f"not {steps[-1]}")
        for c in self.checkpoints:
            if set(c.digest) != set(self.spec.digest_algorithms):
                raise ValueError(f"checkpoint at step {c.step} does not carry exactly the digests "
                                 f"{self.spec.digest_algorithms}")
        return self

    # the spec's parts, read through the manifest
    @property
    def declaration(self) -> Declaration:
        """The declared factories (``spec.declaration``)."""
        return self.spec.declaration

    @property
    def environment(self) -> Environment:
        """Where the run was recorded (``spec.environment``)."""
        return self.spec.environment

    @property
    def parameter_count(self) -> int:
        """The model's parameter count (``spec.parameter_count``)."""
        return self.spec.parameter_count

    @property
    def checkpoint_every(self) -> int:
        """The checkpoint interval (``spec.checkpoint_every``)."""
        return self.spec.checkpoint_every

    @property
    def digest_algorithms(self) -> list[str]:
        """The checkpoint digest algorithms (``spec.digest_algorithms``)."""
        return list(self.spec.digest_algorithms)

    @property
    def spec_digest(self) -> str:
        """Hex SHA-256 of the run spec: the domain separator of every leaf."""
        return self.spec.digest()

    def digest(self) -> str:
        """Hex SHA-256 of the manifest's canonical bytes (``RunFinish.manifest_digest``)."""
        return hashlib.sha256(record_bytes(self)).hexdigest()


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


def binding(spec: RunSpec | str) -> bytes:
    """The 32 bytes every leaf of a run's trees starts with: the SHA-256 of its run spec."""
    return bytes.fromhex(spec if isinstance(spec, str) else spec.digest())


def record_leaf(bound: bytes, line: bytes) -> bytes:
    """The RFC 6962 leaf hash of one record of the run bound by ``bound``: ``SHA-256(0x00 || bound || line)``."""
    return leaf_hash(bound + line)


def leaf_hashes(bound: bytes, lines: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes of canonical record bytes, bound to one run."""
    return [leaf_hash(bound + line) for line in lines]


def commitments(bound: bytes, step_lines: Sequence[bytes], data_lines: Sequence[bytes],
                checkpoint_lines: Sequence[bytes]) -> TranscriptCommitments:
    """The three roots (and the step count) of a transcript's canonical record bytes, bound to one run."""
    return TranscriptCommitments(steps_root=root_of(leaf_hashes(bound, step_lines)).hex(),
                                 data_root=root_of(leaf_hashes(bound, data_lines)).hex(),
                                 checkpoints_root=root_of(leaf_hashes(bound, checkpoint_lines)).hex(),
                                 step_count=len(step_lines))


def declaration_entries(decl: Declaration) -> dict[str, FactoryRef]:
    """The declared factories by field name (absent parts left out)."""
    return {f: getattr(decl, f) for f in FACTORY_GROUPS if getattr(decl, f) is not None}


# --- reading ----------------------------------------------------------------------------

#: Largest manifest redline reads (a checkpoint entry is about 300 bytes).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
#: Largest run spec (``RunStart`` carries it inside a log entry of at most 64 KiB).
MAX_SPEC_BYTES = 60 * 1024
#: Largest record line.
MAX_LINE_BYTES = 1024 * 1024

_R = TypeVar("_R", StepRecord, DataRecord)


def _parse_line(line: bytes, cls: type[_R], what: str) -> _R:
    parse_json(line, what=what, limit=MAX_LINE_BYTES)  # strict: no duplicate keys, no NaN
    try:
        record = cls.model_validate_json(line)
    except ValidationError as exc:
        raise MalformedInput(f"{what}: " + validation_message(cls.__name__, exc)) from None
    if record_bytes(record) != line:
        raise MalformedInput(f"{what}: record is not in RFC 8785 canonical form with every field written")
    return record


def read_records(path: Path, count: int | None = None,
                 cls: type[_R] = StepRecord) -> list[_R]:  # type: ignore[assignment]
    """Parse the first ``count`` records (all if ``None``) of a ``.jsonl`` file; each numbered from step 1."""
    out: list[_R] = []
    with open(path, "rb") as f:
        for i, line in enumerate(f):
            if count is not None and i >= count:
                break
            if not line.endswith(b"\n"):
                raise MalformedInput(f"{path}: line {i + 1} is cut short (truncated file)")
            rec = _parse_line(line[:-1], cls, f"{path}: line {i + 1}")
            if rec.step != i + 1:
                raise MalformedInput(f"{path}: line {i + 1} records step {rec.step}, expected step {i + 1}")
            out.append(rec)
    return out


_M = TypeVar("_M", Manifest, RunSpec)


def _read_canonical(path: Path, cls: type[_M], what: str, limit: int) -> _M:
    if not path.is_file():
        raise MalformedInput(f"{path}: missing ({what})")
    if path.stat().st_size > limit:
        raise MalformedInput(f"{path}: over the {limit}-byte limit of a {what}")
    raw = path.read_bytes()
    obj = parse_json(raw, what=str(path), limit=limit)
    try:
        value = cls.model_validate_json(raw)
    except ValidationError as exc:
        raise MalformedInput(f"{path}: " + validation_message(what, exc)) from None
    if canonical_json(obj) != raw or record_bytes(value) != raw:
        raise MalformedInput(f"{path}: not in RFC 8785 canonical form")
    return value


def load_manifest(path: Path) -> Manifest:
    """Parse ``manifest.json`` strictly (canonical JSON, the schema above)."""
    return _read_canonical(path, Manifest, "manifest (not a transcript, or one whose recorder was never closed)",
                           MAX_MANIFEST_BYTES)


def read_spec(path: Path) -> RunSpec:
    """Parse a run spec (``run.json``) strictly (canonical JSON, the ``RunSpec`` schema)."""
    return _read_canonical(path, RunSpec, "run spec", MAX_SPEC_BYTES)


# --- writing ----------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    from redline.transcript.store import fsync_dir

    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


class TranscriptWriter:
    """Writes one transcript directory, the same way for the recorder and for anyone else.

    Opening it refuses a non-empty directory, creates ``blobs/`` and writes ``run.json`` (the spec, whose
    digest binds every leaf); :meth:`append` adds one step's two canonical record lines and their leaves;
    :meth:`put_checkpoint` stores a checkpoint in the content-addressed blob store and returns its manifest
    entry; :meth:`finish` cuts the record files back to the last checkpoint, and writes ``manifest.json``
    atomically with the file digests and the three roots.
    """

    def __init__(self, out: str | Path, spec: RunSpec, *, durable: bool = True) -> None:
        from redline.transcript.store import BlobStore

        self.path = Path(out)
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            import errno

            raise FileExistsError(errno.EEXIST, "transcript directory exists and is not empty", str(self.path))
        (self.path / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.bound = binding(spec)
        self.durable = durable
        self.store = BlobStore(self.path / BLOBS_DIR)
        write_atomic(self.path / SPEC_FILE, record_bytes(spec), durable=durable)
        self.steps_file: BinaryIO = open(self.path / STEPS_FILE, "wb")
        self.data_file: BinaryIO = open(self.path / DATA_FILE, "wb")
        self.step_leaves: list[bytes] = []
        self.data_leaves: list[bytes] = []
        self.sizes: list[tuple[int, int]] = [(0, 0)]  # file sizes after step i (i = 0: before any)

    def append(self, step_line: bytes, data_line: bytes) -> None:
        """Append one step's canonical step and data records (no trailing newline) and keep their leaves."""
        self.steps_file.write(step_line + b"\n")
        self.data_file.write(data_line + b"\n")
        self.step_leaves.append(leaf_hash(self.bound + step_line))
        self.data_leaves.append(leaf_hash(self.bound + data_line))
        a, b = self.sizes[-1]
        self.sizes.append((a + len(step_line) + 1, b + len(data_line) + 1))

    def put_checkpoint(self, step: int, data: dict[str, Any], metadata: dict[str, str]) -> CheckpointEntry:
        """Store a checkpoint (``data``: name -> ``TensorData``) as safetensors; its manifest entry."""
        from redline.transcript import stfile
        from redline.transcript.digest import tensors_digest

        if metadata.get("redline.step") != str(step):
            raise ValueError(f"checkpoint for step {step} is labelled {metadata.get('redline.step')}")
        model_digest = tensors_digest((name[6:], t.dtype, t.shape, t.data) for name, t in data.items()
                                      if name.startswith("model."))
        algorithms = tuple(self.spec.digest_algorithms)

        def write(f: BinaryIO, hasher: Any) -> int:
            return stfile.write(f, data, metadata, hasher)

        digests, size = self.store.put(write, algorithms, durable=self.durable)
        return CheckpointEntry(step=step, size=size, digest={a: digests[a] for a in algorithms},
                               model_digest=model_digest)

    def close_files(self) -> None:
        """Flush (and with ``durable`` fsync) and close the record files."""
        for f in (self.steps_file, self.data_file):
            if not f.closed:
                f.flush()
                if self.durable:
                    os.fsync(f.fileno())
                f.close()

    def finish(self, entries: Sequence[CheckpointEntry], *, tokens: Sequence[int], flop: FlopCount | None,
               started_at: datetime, finished_at: datetime, sizes: tuple[int, int] | None = None,
               leaves: tuple[Sequence[bytes], Sequence[bytes]] | None = None) -> Manifest:
        """Close the record files, cut them to the last checkpoint and write the manifest; returns it.

        ``tokens`` are the steps' token counts; ``sizes`` and ``leaves`` default to what :meth:`append` kept
        (a caller that wrote the record files itself passes the sizes at the last checkpoint and its leaves).
        """
        from redline.transcript.digest import hash_file

        self.close_files()
        last = entries[-1].step
        steps_size, data_size = sizes if sizes is not None else self.sizes[last]
        step_leaves, data_leaves = leaves if leaves is not None else (self.step_leaves, self.data_leaves)
        for name, size in ((STEPS_FILE, steps_size), (DATA_FILE, data_size)):
            os.truncate(self.path / name, size)
        files = {name: FileDigest(sha256=hash_file(self.path / name)["sha256"],
                                  size=(self.path / name).stat().st_size) for name in (STEPS_FILE, DATA_FILE)}
        roots = TranscriptCommitments(
            steps_root=root_of(list(step_leaves[:last])).hex(), data_root=root_of(list(data_leaves[:last])).hex(),
            checkpoints_root=root_of([leaf_hash(self.bound + record_bytes(e)) for e in entries]).hex(),
            step_count=last)
        manifest = Manifest(format=FORMAT, spec=self.spec, started_at=started_at, finished_at=finished_at,
                            tokens=sum(tokens[:last]), flop=flop if last >= 1 else None, files=files,
                            checkpoints=list(entries), commitments=roots)
        write_atomic(self.path / MANIFEST_FILE, record_bytes(manifest), durable=self.durable)
        return manifest


__all__ = ["BLOBS_DIR", "CheckpointEntry", "DATA_FILE", "DataRecord", "DataSourceRef", "Declaration",
           "Environment", "FORMAT", "FactoryRef", "FileDigest", "FlopCount", "Init", "MANIFEST_FILE", "Manifest",
           "RngDigests", "RunSpec", "SPEC_FILE", "SPEC_FORMAT", "STEPS_FILE", "StepRecord", "TranscriptWriter",
           "binding", "canonical_record", "commitments", "declaration_entries", "leaf_hashes", "load_manifest",
           "read_records", "read_spec", "record_bytes", "record_leaf", "write_atomic"]
