"""Helpers for the verification tests: a tiny model and a forged checkpoint re-committed into a transcript."""

from __future__ import annotations

from pathlib import Path

from redline.log.merkle import leaf_hash, root_of
from redline.transcript import stfile
from redline.transcript.digest import tensors_digest
from redline.transcript.format import BLOBS_DIR, MANIFEST_FILE, binding, record_bytes
from redline.transcript.store import BlobStore
from redline.transcript.torchstate import CapturedState
from redline.transcript.transcript import load_transcript

MODEL = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


def tamper_checkpoint(path: Path, step: int, eps: float = 1e-3) -> None:
    """Replace the checkpoint after ``step`` by one whose weights are shifted by ``eps``, and re-commit.

    The blob, the manifest entry (size, digest, model digest) and the checkpoints root are rebuilt, so
    ``load_transcript`` accepts the result: a transcript whose state at ``step`` training did not produce.
    """
    t = load_transcript(path)
    ck = t.checkpoint(step).load()
    tensors = {k: (v + eps if k.startswith("model.") and v.is_floating_point() else v) for k, v in ck.tensors.items()}
    state = CapturedState(tensors, ck.metadata)
    data = state.tensor_data()
    model_digest = tensors_digest((n[6:], d.dtype, d.shape, d.data) for n, d in data.items() if n.startswith("model."))
    digests, size = BlobStore(Path(path) / BLOBS_DIR).put(lambda f, h: stfile.write(f, data, state.metadata, h),
                                                          ("sha256",))
    m = t.manifest
    new = {"size": size, "digest": {"sha256": digests["sha256"]}, "model_digest": model_digest}
    entries = [c.model_copy(update=new) if c.step == step else c for c in m.checkpoints]
    root = root_of([leaf_hash(binding(m.spec) + record_bytes(c)) for c in entries]).hex()
    m = m.model_copy(update={"checkpoints": entries,
                             "commitments": m.commitments.model_copy(update={"checkpoints_root": root})})
    (Path(path) / MANIFEST_FILE).write_bytes(record_bytes(m))
    load_transcript(path)  # the forgery is internally consistent
