"""Acceptance tests of training transcripts on the tiny GPT: commitments, checkpoints, replay, tampering.

One module-scoped run of a few hundred steps is recorded (checkpoints every 100
steps, SHA-256 and BLAKE3, counted FLOP); the live model and optimizer are
snapshotted at every checkpoint step so the stored checkpoints can be compared
with them bit for bit.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from redline.crypto.canonical import canonical_json, parse_json
from redline.errors import MalformedInput
from redline.log import merkle
from redline.transcript import load_transcript, replay_segment
from redline.transcript.digest import hash_file
from redline.transcript.format import CheckpointEntry, binding, commitments, record_bytes
from redline.transcript.tinygpt import TrainConfig, make_model, seed_everything, text_batches, train, train_step
from redline.transcript.torchstate import batch_digest, named_tensors_equal, raw_bytes

STEPS = 300
EVERY = 100
MODEL = {"seq_len": 32, "d_model": 32, "n_layer": 2, "n_head": 2}
CFG = TrainConfig(steps=STEPS, seed=7, batch_size=4, model=MODEL)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: faster and steadier under ``pytest -n``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Recorded:
    path: Path
    snapshots: dict[int, dict[str, torch.Tensor]]
    losses: list[float]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> Recorded:
    path = tmp_path_factory.mktemp("transcript") / "run"
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def on_step(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if step % EVERY == 0:
            snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            for i, s in optimizer.state_dict()["state"].items():
                for k, v in s.items():
                    snapshots[step][f"optimizer.{i}.{k}"] = v.detach().clone()

    result = train(CFG, path, checkpoint_every=EVERY, digests=("sha256", "blake3"), on_step=on_step)
    return Recorded(path, snapshots, result.losses)


def copy_of(recorded: Recorded, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(recorded.path, dst)
    return dst


# --- the transcript verifies and says what happened ----------------------------------------


def test_commitments_verify_and_match_the_records(recorded: Recorded) -> None:
    t = load_transcript(recorded.path)
    assert t.step_count == STEPS
    assert [c.step for c in t.checkpoints] == [0, 100, 200, 300]
    lines = (recorded.path / "steps.jsonl").read_bytes().splitlines()
    data = (recorded.path / "data.jsonl").read_bytes().splitlines()
    bound = binding(t.spec)
    assert bound == bytes.fromhex(t.spec_digest) and len(bound) == 32
    want = commitments(bound, lines, data, [record_bytes(c.entry) for c in t.checkpoints])
    assert t.commitments == want
    # every leaf is the run spec's digest followed by the record: the roots belong to this run alone
    assert t.commitments.steps_root == merkle.root_of([merkle.leaf_hash(bound + line) for line in lines]).hex()
    assert t.commitments.steps_root != merkle.root_of([merkle.leaf_hash(line) for line in lines]).hex()
    assert (recorded.path / "run.json").read_bytes() == record_bytes(t.spec)
    assert (t.spec.party, t.spec.run_id, t.spec.init.kind, t.spec.init.seed) == (CFG.party, CFG.run_id, "fresh",
                                                                                 CFG.seed)
    assert [r.loss for r in t.steps] == pytest.approx(recorded.losses, abs=0)
    assert [r.position for r in t.data] == list(range(STEPS))
    assert t.manifest.tokens == STEPS * CFG.batch_size * MODEL["seq_len"]
    assert all(set(c.entry.digest) == {"sha256", "blake3"} for c in t.checkpoints)
    assert load_transcript(recorded.path, algorithm="blake3").commitments == want


def test_each_batch_digest_is_the_digest_of_the_batch_fed(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    source = text_batches(CFG.seed, CFG.batch_size, MODEL["seq_len"])
    for step in (1, 2, 150, STEPS):
        record = t.data_record(step)
        assert record.batch["sha256"] == batch_digest(source.batch(record.position))


def test_counted_flop_per_step_is_flop_counter_modes_count(recorded: Recorded) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    m = load_transcript(recorded.path, verify_checkpoints=False).manifest
    assert m.flop is not None and m.flop.counted_step == 1
    seed_everything(0)
    model = make_model(**MODEL)
    optimizer = torch.optim.AdamW(model.parameters(), **CFG.optimizer_kwargs())
    with FlopCounterMode(display=False) as counter:
        loss = train_step(model, text_batches(CFG.seed, CFG.batch_size, MODEL["seq_len"]).batch(0))
        loss.backward()
        optimizer.step()
    assert m.flop.per_step == counter.get_total_flops() > 0
    # the matmuls of forward and backward: the same order as 6·N·D
    six_nd = 6 * m.parameter_count * CFG.batch_size * MODEL["seq_len"]
    assert 0.3 < m.flop.per_step / six_nd < 3


def test_checkpoints_load_with_safetensors_and_equal_the_live_tensors(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    for step, live in recorded.snapshots.items():
        stored = load_file(str(t.checkpoint(step).path))
        for name, tensor in live.items():
            key = name.replace("optimizer.", "optimizer.state.", 1) if name.startswith("optimizer.") else \
                f"model.{name}"
            got = stored[key]
            assert got.dtype == tensor.dtype and got.shape == tensor.shape, key
            assert bytes(raw_bytes(got)) == bytes(raw_bytes(tensor)), f"{key} differs at step {step}"
        ckpt = t.checkpoint(step).load()
        assert named_tensors_equal(ckpt.model_state, {k: v for k, v in live.items()
                                                      if not k.startswith("optimizer.")}) == []


def test_the_initial_checkpoint_is_the_seeded_model(recorded: Recorded) -> None:
    seed_everything(CFG.seed)
    model = make_model(**MODEL)
    ckpt = load_transcript(recorded.path, verify_checkpoints=False).checkpoint(0).load()
    assert named_tensors_equal(ckpt.model_state, model.state_dict()) == []
    assert ckpt.optimizer_state is not None and ckpt.optimizer_state["state"] == {}


def test_replay_reproduces_the_end_checkpoint_bit_for_bit(recorded: Recorded) -> None:
    t = load_transcript(recorded.path)
    before = torch.get_rng_state()
    result = replay_segment(t, 100, 200)
    assert torch.equal(torch.get_rng_state(), before), "replay must leave the caller's generators alone"
    assert result.differences(t.checkpoint(200).load()) == []
    assert result.mismatched_steps(t) == []
    assert [r["step"] for r in result.step_records] == list(range(101, 201))
    from redline.transcript.torchstate import state_digest

    assert state_digest(result.model_state) == t.checkpoint(200).entry.model_digest


def test_replay_to_a_step_between_checkpoints_matches_the_committed_records(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    result = replay_segment(t, 200, 210)
    assert result.mismatched_steps(t) == []
    assert result.end_step == 210


def _with_declaration(t, decl):  # noqa: ANN001, ANN202 - a manifest whose spec declares ``decl``
    return t.manifest.model_copy(update={"spec": t.spec.model_copy(update={"declaration": decl})})


def test_replay_refuses_a_data_source_that_gives_other_bytes(recorded: Recorded, tmp_path: Path) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    decl = t.manifest.declaration
    assert decl.data_source is not None
    other = decl.model_copy(update={"data_source": decl.data_source.model_copy(update={"seed": CFG.seed + 1})})
    forged = type(t)(t.path, _with_declaration(t, other), t.steps, t.data, t.checkpoints)
    with pytest.raises(MalformedInput, match=r"step 101: the data source's batch at position 100 has digest"):
        replay_segment(forged, 100, 200)


def test_replay_needs_a_declared_model_factory(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    decl = t.manifest.declaration.model_copy(update={"model_factory": None})
    forged = type(t)(t.path, _with_declaration(t, decl), t.steps, t.data, t.checkpoints)
    with pytest.raises(MalformedInput, match="declares no model factory"):
        replay_segment(forged, 0)


def test_segments_and_progress_roots_are_prefixes(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    segments = t.segments()
    assert [(s.start.step, s.end.step, len(s.steps)) for s in segments] == [(0, 100, 100), (100, 200, 100),
                                                                              (200, 300, 100)]
    assert segments[1].steps[0].step == 101 and segments[1].data[-1].step == 200
    at = t.commitments_at(200)
    assert at.step_count == 200
    leaves = [merkle.leaf_hash(binding(t.spec) + record_bytes(r)) for r in t.steps]
    reader = merkle.ListHashReader(leaves)
    proof = merkle.prove_consistency(200, STEPS, reader)
    merkle.verify_consistency(200, STEPS, bytes.fromhex(at.steps_root), bytes.fromhex(t.commitments.steps_root),
                              proof)
    assert t.commitments_at(STEPS) == t.commitments


# --- one changed byte changes exactly the matching root ---------------------------------------


def _roots(t, *, steps=None, data=None, checkpoints=None):
    return commitments(binding(t.spec), steps if steps is not None else [record_bytes(r) for r in t.steps],
                       data if data is not None else [record_bytes(r) for r in t.data],
                       checkpoints if checkpoints is not None else [record_bytes(c.entry) for c in t.checkpoints])


def _changed(a, b) -> set[str]:
    return {k for k in ("steps_root", "data_root", "checkpoints_root") if getattr(a, k) != getattr(b, k)}


def test_one_changed_byte_in_one_batch_changes_only_the_data_root(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    base = _roots(t)
    record = t.data_record(123)
    batch = text_batches(CFG.seed, CFG.batch_size, MODEL["seq_len"]).batch(record.position)
    batch["input_ids"].view(torch.uint8)[0] ^= 1  # one byte of the batch's raw bytes
    forged = record.model_copy(update={"batch": {"sha256": batch_digest(batch)}})
    data = [record_bytes(r) for r in t.data]
    data[122] = record_bytes(forged)
    assert _changed(base, _roots(t, data=data)) == {"data_root"}


def test_one_changed_byte_in_one_step_record_changes_only_the_steps_root(recorded: Recorded) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    base = _roots(t)
    lines = [record_bytes(r) for r in t.steps]
    i = lines[56].index(b'"loss":') + len(b'"loss":') + 2
    lines[56] = lines[56][:i] + bytes([lines[56][i] ^ 1]) + lines[56][i + 1:]
    assert _changed(base, _roots(t, steps=lines)) == {"steps_root"}


def test_one_changed_byte_in_one_checkpoint_changes_only_the_checkpoints_root(recorded: Recorded,
                                                                           tmp_path: Path) -> None:
    t = load_transcript(recorded.path, verify_checkpoints=False)
    base = _roots(t)
    blob = tmp_path / "ckpt.safetensors"
    raw = bytearray(t.checkpoint(100).path.read_bytes())
    raw[-1] ^= 1
    blob.write_bytes(bytes(raw))
    entry = t.checkpoint(100).entry
    forged = CheckpointEntry(step=entry.step, size=entry.size, digest=hash_file(blob, ("sha256", "blake3")),
                             model_digest=entry.model_digest)
    lines = [record_bytes(c.entry) for c in t.checkpoints]
    lines[1] = record_bytes(forged)
    assert _changed(base, _roots(t, checkpoints=lines)) == {"checkpoints_root"}


# --- a truncated or tampered transcript is refused, naming the bad file --------------------------


def _flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 1
    path.write_bytes(bytes(raw))


def _blob(root: Path, step: int) -> Path:
    entry = next(c for c in parse_json((root / "manifest.json").read_bytes(), limit=1 << 26)["checkpoints"]
                 if c["step"] == step)
    sha = entry["digest"]["sha256"]
    return root / "blobs" / "sha256" / sha[:2] / sha[2:]


def _edit_manifest(root: Path, edit: Callable[[dict], None]) -> None:
    obj = parse_json((root / "manifest.json").read_bytes(), limit=1 << 26)
    edit(obj)
    (root / "manifest.json").write_bytes(canonical_json(obj))


def _rewrite_steps_consistently(root: Path) -> None:
    """Change a loss and fix the file digest and size in the manifest, but not the root."""
    path = root / "steps.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[10] = lines[10].replace(b'"loss":', b'"loss":1', 1) if b'"loss":5' not in lines[10] else \
        lines[10].replace(b'"loss":5', b'"loss":4', 1)
    path.write_bytes(b"\n".join(lines))

    def edit(m: dict) -> None:
        m["files"]["steps.jsonl"] = {"sha256": hash_file(path)["sha256"], "size": path.stat().st_size}
    _edit_manifest(root, edit)


CASES: dict[str, tuple[Callable[[Path], None], Callable[[Path], str]]] = {
    "steps byte": (lambda r: _flip(r / "steps.jsonl", 100), lambda r: "steps.jsonl"),
    "steps truncated": (lambda r: (r / "steps.jsonl").write_bytes((r / "steps.jsonl").read_bytes()[:-40]),
                        lambda r: "steps.jsonl"),
    "steps rewritten, file digest fixed": (_rewrite_steps_consistently, lambda r: "steps.jsonl"),
    "data byte": (lambda r: _flip(r / "data.jsonl", 60), lambda r: "data.jsonl"),
    "data missing": (lambda r: (r / "data.jsonl").unlink(), lambda r: "data.jsonl"),
    "checkpoint byte": (lambda r: _flip(_blob(r, 200), -3), lambda r: str(_blob(r, 200))),
    "checkpoint header byte": (lambda r: _flip(_blob(r, 100), 20), lambda r: str(_blob(r, 100))),
    "checkpoint truncated": (lambda r: _blob(r, 300).write_bytes(_blob(r, 300).read_bytes()[:1000]),
                             lambda r: str(_blob(r, 300))),
    "checkpoint missing": (lambda r: _blob(r, 0).unlink(), lambda r: str(_blob(r, 0))),
    "manifest root": (lambda r: _edit_manifest(r, lambda m: m["commitments"].update(
        checkpoints_root="00" * 32)), lambda r: "manifest.json"),
    "manifest model digest": (lambda r: _edit_manifest(r, lambda m: m["checkpoints"][1].update(
        model_digest="11" * 32)), lambda r: "manifest.json"),
    "manifest truncated": (lambda r: (r / "manifest.json").write_bytes((r / "manifest.json").read_bytes()[:-100]),
                           lambda r: "manifest.json"),
    "manifest not canonical": (lambda r: (r / "manifest.json").write_bytes(
        (r / "manifest.json").read_bytes() + b" "), lambda r: "manifest.json"),
    "manifest unknown field": (lambda r: _edit_manifest(r, lambda m: m.update(extra=1)), lambda r: "manifest.json"),
    "manifest missing": (lambda r: (r / "manifest.json").unlink(), lambda r: "manifest.json"),
    "run spec edited": (lambda r: _edit_json(r / "run.json", lambda m: m.update(run_id="other")),
                        lambda r: "run.json"),
    "run spec missing": (lambda r: (r / "run.json").unlink(), lambda r: "run.json"),
    # relabelled to another party in both places: the leaves are bound to the old spec, so the roots break
    "spec relabelled everywhere": (lambda r: (_edit_json(r / "run.json", lambda m: m.update(party="lab-b")),
                                              _edit_manifest(r, lambda m: m["spec"].update(party="lab-b"))),
                                   lambda r: "steps.jsonl"),
}


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    obj = parse_json(path.read_bytes(), limit=1 << 26)
    edit(obj)
    path.write_bytes(canonical_json(obj))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_tampered_or_truncated_transcript_is_refused_naming_the_file(recorded: Recorded, tmp_path: Path,
                                                                      case: str) -> None:
    root = copy_of(recorded, tmp_path)
    damage, bad_file = CASES[case]
    name = bad_file(root)  # before the damage: a blob path is read from the intact manifest
    damage(root)
    with pytest.raises(MalformedInput) as err:
        load_transcript(root)
    assert name in str(err.value), str(err.value)


def test_a_checkpoint_swapped_for_another_is_refused(recorded: Recorded, tmp_path: Path) -> None:
    root = copy_of(recorded, tmp_path)
    a, b = _blob(root, 100), _blob(root, 200)
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)
    with pytest.raises(MalformedInput, match="sha256|bytes"):
        load_transcript(root)


@pytest.mark.parametrize("entry, names", [
    ({"dtype": [], "shape": [1], "data_offsets": [0, 4]}, "dtype"),
    ({"dtype": {"F32": 1}, "shape": [1], "data_offsets": [0, 4]}, "dtype"),
    ({"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}, "shape"),
    ({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}, "shape"),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0, 4.0]}, "data_offsets"),
])
def test_safetensors_header_with_a_bad_entry_is_malformed_input_naming_the_tensor(entry: dict, names: str) -> None:
    """A header entry of the wrong type (``"dtype": []`` crashed with TypeError) is MalformedInput naming the
    tensor and the field, as is a header nested too deeply for the JSON parser."""
    import json
    import struct

    from redline.transcript.stfile import parse_header

    head = json.dumps({"model.w": entry}).encode()
    with pytest.raises(MalformedInput, match=rf"tensor 'model\.w' .*{names}"):
        parse_header(struct.pack("<Q", len(head)) + head + b"\0" * 4, "ckpt")
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MalformedInput, match="ckpt"):
        parse_header(struct.pack("<Q", len(deep)) + deep, "ckpt")
