"""Training transcripts for PyTorch: a recorder, a content-addressed checkpoint store, Merkle commitments, replay.

A transcript is a directory (format in ``docs/transcripts.md``): ``run.json`` (the run spec,
written when recording starts), ``manifest.json`` (canonical JSON: the spec,
checkpoints, FLOP, the three roots),
``steps.jsonl`` and ``data.jsonl`` (one canonical record per step) and
``blobs/sha256/..`` (checkpoints as safetensors). Names are imported lazily:
``load_transcript`` and the records need no torch; the recorder and replay do
(the ``redline[torch]`` extra).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Recorder": "redline.transcript.recorder",
    "load_transcript": "redline.transcript.transcript",
    "Transcript": "redline.transcript.transcript",
    "Segment": "redline.transcript.transcript",
    "CheckpointRef": "redline.transcript.transcript",
    "replay_segment": "redline.transcript.replay",
    "ReplayResult": "redline.transcript.replay",
    "Declaration": "redline.transcript.format",
    "FactoryRef": "redline.transcript.format",
    "DataSourceRef": "redline.transcript.format",
    "Init": "redline.transcript.format",
    "RunSpec": "redline.transcript.format",
    "TranscriptWriter": "redline.transcript.format",
    "Manifest": "redline.transcript.format",
    "StepRecord": "redline.transcript.format",
    "DataRecord": "redline.transcript.format",
    "CheckpointEntry": "redline.transcript.format",
    "pin": "redline.transcript.factories",
    "initial_state": "redline.transcript.replay",
    "batch_digest": "redline.transcript.torchstate",
    "load_checkpoint": "redline.transcript.torchstate",
    "hash_file": "redline.transcript.digest",
    "tensors_digest": "redline.transcript.digest",
    "BlobStore": "redline.transcript.store",
    "RecorderCallback": "redline.transcript.hf",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'redline.transcript' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return __all__
