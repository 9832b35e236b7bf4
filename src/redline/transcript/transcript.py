"""Loading a transcript: every file checked against the manifest, every root recomputed, nothing trusted.

:func:`load_transcript` parses ``manifest.json`` strictly (canonical JSON, the
schema in :mod:`redline.transcript.format`), checks the digests and sizes of
``steps.jsonl`` and ``data.jsonl``, checks that ``run.json`` is the manifest's
spec, parses every record, recomputes the steps,
data and checkpoints roots, and re-hashes every checkpoint blob (its size, its
recorded digests, its safetensors header, its model digest). Anything truncated,
altered, missing or malformed is refused with ``MalformedInput`` whose message
begins with the path of the bad file. Loading needs no torch; reading a
checkpoint's tensors does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redline.errors import MalformedInput
from redline.log.merkle import leaf_hash, root_of
from redline.statements.runs import RunSpec, TranscriptCommitments
from redline.transcript.digest import hash_file
from redline.transcript.format import (
    BLOBS_DIR,
    DATA_FILE,
    MANIFEST_FILE,
    SPEC_FILE,
    STEPS_FILE,
    CheckpointEntry,
    DataRecord,
    Manifest,
    StepRecord,
    binding,
    load_manifest,
    read_records,
    read_spec,
    record_bytes,
)
from redline.transcript.stfile import SafetensorsFile
from redline.transcript.store import BlobStore

if TYPE_CHECKING:
    from redline.transcript.torchstate import Checkpoint

@dataclass(frozen=True)
class CheckpointRef:
    """A checkpoint of a loaded transcript: its manifest entry and the path of its (verified) blob."""

    entry: CheckpointEntry
    path: Path

    @property
    def step(self) -> int:
        """The step after which the checkpoint was taken (0: before training)."""
        return self.entry.step

    def load(self) -> Checkpoint:
        """The checkpoint's tensors, state dicts and generator states, read with safetensors."""
        from redline.transcript.torchstate import load_checkpoint

        return load_checkpoint(self.path)

    def tensors(self) -> dict[str, Any]:
        """The checkpoint's flat map of named tensors, read with safetensors."""
        from safetensors.torch import load_file

        return load_file(str(self.path))

    def metadata(self) -> dict[str, str]:
        """The checkpoint's string metadata (no torch needed)."""
        with SafetensorsFile(self.path) as f:
            return dict(f.header.metadata)


@dataclass(frozen=True)
class Segment:
    """Steps ``start.step + 1 .. end.step`` between two consecutive checkpoints, with their records."""

    start: CheckpointRef
    end: CheckpointRef
    steps: tuple[StepRecord, ...]
    data: tuple[DataRecord, ...]


@dataclass(frozen=True)
class Transcript:
    """A verified transcript: manifest, step and data records, checkpoints."""

    path: Path
    manifest: Manifest
    steps: tuple[StepRecord, ...]
    data: tuple[DataRecord, ...]
    checkpoints: tuple[CheckpointRef, ...]

    @property
    def step_count(self) -> int:
        """Number of recorded steps."""
        return self.manifest.commitments.step_count

    @property
    def commitments(self) -> TranscriptCommitments:
        """The transcript's three roots and step count (recomputed on load)."""
        return self.manifest.commitments

    @property
    def spec(self) -> RunSpec:
        """The run spec (``run.json``, identical to the manifest's ``spec``)."""
        return self.manifest.spec

    @property
    def spec_digest(self) -> str:
        """Hex SHA-256 of the run spec: the domain separator of every leaf."""
        return self.manifest.spec_digest

    @cached_property
    def _leaves(self) -> tuple[list[bytes], list[bytes], list[bytes]]:
        bound = binding(self.spec_digest)
        return ([leaf_hash(bound + record_bytes(r)) for r in self.steps],
                [leaf_hash(bound + record_bytes(r)) for r in self.data],
                [leaf_hash(bound + record_bytes(c.entry)) for c in self.checkpoints])

    def commitments_at(self, step: int) -> TranscriptCommitments:
        """The roots of the transcript cut at ``step``: steps and data 1..step, checkpoints up to it.

        They are RFC 6962 prefixes of the full trees, so consistency proofs link them.
        """
        if not 0 <= step <= self.step_count:
            raise MalformedInput(f"{self.path}: no step {step} (the transcript has {self.step_count})")
        steps, data, ckpts = self._leaves
        n_ckpt = sum(1 for c in self.checkpoints if c.step <= step)
        return TranscriptCommitments(steps_root=root_of(steps[:step]).hex(), data_root=root_of(data[:step]).hex(),
                                     checkpoints_root=root_of(ckpts[:n_ckpt]).hex(), step_count=step)

    def checkpoint(self, step: int) -> CheckpointRef:
        """The checkpoint taken after ``step``."""
        for c in self.checkpoints:
            if c.step == step:
                return c
        raise MalformedInput(f"{self.path}: no checkpoint at step {step} "
                             f"(checkpoints: {', '.join(str(c.step) for c in self.checkpoints)})")

    def step_record(self, step: int) -> StepRecord:
        """The record of step ``step`` (from 1)."""
        if not 1 <= step <= self.step_count:
            raise MalformedInput(f"{self.path}: no step {step} (the transcript has {self.step_count})")
        return self.steps[step - 1]

    def data_record(self, step: int) -> DataRecord:
        """The data record (position and batch digest) of step ``step`` (from 1)."""
        if not 1 <= step <= self.step_count:
            raise MalformedInput(f"{self.path}: no step {step} (the transcript has {self.step_count})")
        return self.data[step - 1]

    def segments(self) -> list[Segment]:
        """Every segment between consecutive checkpoints, in order."""
        return [self._segment(a, b) for a, b in zip(self.checkpoints, self.checkpoints[1:])]

    def segment(self, start_step: int) -> Segment:
        """The segment that starts at the checkpoint of ``start_step``."""
        for a, b in zip(self.checkpoints, self.checkpoints[1:]):
            if a.step == start_step:
                return self._segment(a, b)
        raise MalformedInput(f"{self.path}: no segment starts at step {start_step}")

    def _segment(self, a: CheckpointRef, b: CheckpointRef) -> Segment:
        return Segment(a, b, self.steps[a.step:b.step], self.data[a.step:b.step])

    def final_model_digest(self) -> str:
        """Tensor-serialisation SHA-256 of the final model (from the last checkpoint)."""
        return self.checkpoints[-1].entry.model_digest

    def step_tokens(self) -> Iterator[int]:
        """Tokens of each step, in order."""
        return (r.tokens for r in self.steps)


def _check_file(path: Path, want_sha256: str, want_size: int) -> None:
    if not path.is_file():
        raise MalformedInput(f"{path}: missing")
    size = path.stat().st_size
    if size != want_size:
        raise MalformedInput(f"{path}: {size} bytes, the manifest says {want_size} (truncated or altered)")
    got = hash_file(path)["sha256"]
    if got != want_sha256:
        raise MalformedInput(f"{path}: sha256 is {got}, the manifest says {want_sha256} (altered)")


def _check_root(what: Path | str, name: str, got: bytes, want: str) -> None:
    if got.hex() != want:
        raise MalformedInput(f"{what}: recomputed {name} {got.hex()} differs from the manifest's {want}")


def load_transcript(path: str | Path, *, verify_checkpoints: bool = True, algorithm: str | None = None) -> Transcript:
    """Load and verify the transcript in directory ``path``.

    ``verify_checkpoints=False`` skips re-hashing the checkpoint blobs (their
    presence and sizes are still checked). ``algorithm`` picks one committed
    digest to re-hash blobs with (``"blake3"`` is faster where recorded);
    by default every recorded digest is recomputed.
    """
    root = Path(path)
    if not root.is_dir():
        raise MalformedInput(f"{root}: not a transcript directory")
    manifest = load_manifest(root / MANIFEST_FILE)
    spec = read_spec(root / SPEC_FILE)
    if spec != manifest.spec:
        diff = [k for k in type(spec).model_fields if getattr(spec, k) != getattr(manifest.spec, k)]
        raise MalformedInput(f"{root / SPEC_FILE}: differs from the manifest's spec in field(s) {', '.join(diff)}")
    bound = binding(manifest.spec_digest)
    n = manifest.commitments.step_count
    steps_path, data_path = root / STEPS_FILE, root / DATA_FILE
    for p, name in ((steps_path, STEPS_FILE), (data_path, DATA_FILE)):
        _check_file(p, manifest.files[name].sha256, manifest.files[name].size)  # type: ignore[index]
    steps = read_records(steps_path, None, StepRecord)
    data = read_records(data_path, None, DataRecord)
    for p, records in ((steps_path, steps), (data_path, data)):
        if len(records) != n:
            raise MalformedInput(f"{p}: {len(records)} records, the manifest commits to {n} steps")
    _check_root(steps_path, "steps root", root_of([leaf_hash(bound + record_bytes(r)) for r in steps]),
                manifest.commitments.steps_root)
    _check_root(data_path, "data root", root_of([leaf_hash(bound + record_bytes(r)) for r in data]),
                manifest.commitments.data_root)
    _check_root(root / MANIFEST_FILE, "checkpoints root",
                root_of([leaf_hash(bound + record_bytes(c)) for c in manifest.checkpoints]),
                manifest.commitments.checkpoints_root)
    if sum(r.tokens for r in steps) != manifest.tokens:
        raise MalformedInput(f"{root / MANIFEST_FILE}: field 'tokens' is not the sum of the steps' tokens")
    store = BlobStore(root / BLOBS_DIR)
    refs = []
    for entry in manifest.checkpoints:
        blob = store.path(entry.digest["sha256"])
        if verify_checkpoints:
            store.verify(dict(entry.digest), entry.size, algorithm=algorithm)
            with SafetensorsFile(blob) as f:
                if f.header.metadata.get("redline.step") != str(entry.step):
                    raise MalformedInput(f"{blob}: checkpoint says step {f.header.metadata.get('redline.step')}, "
                                         f"the manifest says {entry.step}")
                got = f.digest("model.")
            if got != entry.model_digest:
                raise MalformedInput(f"{blob}: model digest {got} differs from the manifest's {entry.model_digest}")
        elif not blob.is_file() or blob.stat().st_size != entry.size:
            raise MalformedInput(f"{blob}: checkpoint blob is missing or not {entry.size} bytes")
        refs.append(CheckpointRef(entry, blob))
    return Transcript(root, manifest, tuple(steps), tuple(data), tuple(refs))


__all__ = ["CheckpointRef", "Segment", "Transcript", "load_transcript", "read_records"]
