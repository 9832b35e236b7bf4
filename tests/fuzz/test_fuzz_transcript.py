"""Fuzz the transcript readers on mutated real files: manifest, run spec, record lines and safetensors headers;
and the recorder's fast canonical-JSON writer against ``canonical_json``."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from redline.crypto.canonical import canonical_json
from redline.transcript.format import (
    DATA_FILE,
    MANIFEST_FILE,
    SPEC_FILE,
    STEPS_FILE,
    DataRecord,
    StepRecord,
    canonical_record,
    load_manifest,
    read_records,
    read_spec,
    record_bytes,
)
from redline.transcript.stfile import parse_header

from .common import ODD_VALUES, fuzz_settings, json_bytes, mutated, ok, outcome

pytest.importorskip("torch")


@dataclass(frozen=True)
class Tiny:
    """The files of one tiny recorded transcript, read once."""

    manifest: bytes
    spec: bytes
    steps: bytes
    data: bytes
    checkpoint: bytes


def _record_tiny(root: Path) -> Tiny:
    import torch

    from redline.transcript.tinygpt import TrainConfig, train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig(steps=4, seed=3, batch_size=2, model={"seq_len": 8, "d_model": 8, "n_layer": 1, "n_head": 1})
        train(cfg, root / "run", checkpoint_every=2, digests=("sha256", "blake3"))
    finally:
        torch.set_num_threads(threads)
    run = root / "run"
    blob = min((p for p in (run / "blobs").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    return Tiny(*((run / name).read_bytes() for name in (MANIFEST_FILE, SPEC_FILE, STEPS_FILE, DATA_FILE)),
                blob.read_bytes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """One tiny transcript (4 steps, checkpoints every 2), recorded once per module."""
    return _record_tiny(tmp_path_factory.mktemp("fuzz-transcript"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the mutated files."""
    return tmp_path_factory.mktemp("fuzz-transcript-scratch")


def _json_or_bytes(data: Any, seed: bytes) -> Any:
    """Mutated bytes of ``seed``, or its JSON mutated structurally."""
    return data.draw(st.one_of(mutated([seed]), json_bytes([json.loads(seed)])))


@fuzz_settings(150, fuzz_share=0.2)
@given(data=st.data())
def test_manifest_and_spec_parse_or_are_refused(tiny: Tiny, scratch: Path, data: Any) -> None:
    """load_manifest and read_spec on mutated real files: a parsed one is written back byte for byte."""
    for name, seed, read in ((MANIFEST_FILE, tiny.manifest, load_manifest), (SPEC_FILE, tiny.spec, read_spec)):
        raw = _json_or_bytes(data, seed)
        path = scratch / name
        path.write_bytes(raw)
        result = outcome(read, path)
        if ok(result):
            assert record_bytes(result[1]) == raw


@fuzz_settings(150, fuzz_share=0.2)
@given(data=st.data())
def test_record_files_parse_or_are_refused(tiny: Tiny, scratch: Path, data: Any) -> None:
    """read_records on mutated steps.jsonl and data.jsonl: parsed records are written back byte for byte."""
    for name, seed, cls in ((STEPS_FILE, tiny.steps, StepRecord), (DATA_FILE, tiny.data, DataRecord)):
        lines = seed.split(b"\n")[:-1]
        which = data.draw(st.integers(0, len(lines) - 1))
        lines[which] = _json_or_bytes(data, lines[which])
        raw = b"".join(line + b"\n" for line in lines)
        if data.draw(st.booleans()):
            raw = data.draw(mutated([raw], max_ops=2))
        path = scratch / name
        path.write_bytes(raw)
        result = outcome(read_records, path, None, cls)
        if ok(result):
            assert b"".join(record_bytes(r) + b"\n" for r in result[1]) == raw


def _safetensors(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


@fuzz_settings(300, fuzz_share=0.5)
@given(data=st.data())
@example(data=None)
def test_safetensors_header_parses_or_is_refused(tiny: Tiny, data: Any) -> None:
    """parse_header on mutated real checkpoints and on mutated header JSON: a Header or a MalformedInput."""
    n = struct.unpack("<Q", tiny.checkpoint[:8])[0]
    header, body = tiny.checkpoint[8:8 + n], tiny.checkpoint[8 + n:]
    if data is None:  # the explicit examples: an unhashable dtype, deep nesting, a 5,000-digit integer
        for bad in (b'{"a":{"dtype":[],"shape":[],"data_offsets":[0,0]}}', b"[" * 100_000,
                    b'{"a":' + b"1" * 5000 + b"}"):
            assert not ok(outcome(parse_header, _safetensors(bad), "x"))
        return
    buf = data.draw(st.one_of(mutated([tiny.checkpoint], max_ops=3),
                              json_bytes([json.loads(header)]).map(lambda h: _safetensors(h, body))))
    result = outcome(parse_header, buf, "checkpoint")
    if ok(result):
        h = result[1]
        assert h.data_start + sum(t.end - t.begin for t in h.tensors.values()) == len(buf)


_records = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from(ODD_VALUES),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=20)


@fuzz_settings(300)
@given(_records)
@example({"\U0001f600": 1, "\ue000": 2})
@example({"a": [1e-7, 2**53, "\ud800"]})
def test_canonical_record_matches_canonical_json(value: Any) -> None:
    """The recorder's fast writer gives canonical_json's bytes, or refuses exactly when canonical_json does."""
    assert outcome(canonical_record, value) == outcome(canonical_json, value)
