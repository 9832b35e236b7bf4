"""Unit tests of the recorder's parts: tensor serialisation, safetensors files, the blob store, generator
digests, canonical records, the background writer, and closing after a failure."""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from redline.crypto.canonical import canonical_json
from redline.errors import MalformedInput
from redline.transcript import Recorder, load_transcript, stfile
from redline.transcript.digest import MultiHasher, hash_file, hash_files, tensors_digest
from redline.transcript.format import Declaration, Init, canonical_record
from redline.transcript.store import BlobStore
from redline.transcript.torchstate import (
    CapturedState,
    RngState,
    RngTracker,
    batch_digest,
    capture_state,
    from_json,
    load_checkpoint,
    state_digest,
    to_json,
)

ROOT = Path(__file__).resolve().parent.parent
#: The run every recorder here records (the run spec names it).
RUN: dict = {"party": "lab", "run_id": "t", "init": Init(kind="fresh", seed=0)}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- the tensor serialisation is exactly the documented one ------------------------------------


def _documented(tensors: dict[str, tuple[str, list[int], bytes]]) -> str:
    """docs/transcripts.md, written out independently of the implementation."""
    u64 = lambda n: struct.pack("<Q", n)  # noqa: E731
    out = b"redline-tensors/v1\n" + u64(len(tensors))
    for name in sorted(tensors, key=lambda n: n.encode()):
        dtype, shape, data = tensors[name]
        out += u64(len(name.encode())) + name.encode() + u64(len(dtype)) + dtype.encode() + u64(len(shape))
        out += b"".join(u64(d) for d in shape) + u64(len(data)) + data
    return hashlib.sha256(out).hexdigest()


def test_batch_digest_is_the_documented_serialisation() -> None:
    ids = torch.tensor([[1, 2, 3], [4, 5, 258]], dtype=torch.int64)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    x = torch.tensor([0.5, -1.25], dtype=torch.bfloat16)
    want = _documented({
        "input_ids": ("I64", [2, 3], b"".join(struct.pack("<q", v) for v in [1, 2, 3, 4, 5, 258])),
        "attention_mask": ("BOOL", [2, 3], bytes([1, 0, 1, 1, 1, 0])),
        "x": ("BF16", [2], struct.pack("<f", 0.5)[2:] + struct.pack("<f", -1.25)[2:]),
    })
    assert batch_digest({"x": x, "input_ids": ids, "attention_mask": mask}) == want
    assert batch_digest({"attention_mask": mask, "x": x, "input_ids": ids}) == want


def test_batch_digest_sees_dtype_shape_name_and_every_byte_but_not_memory_layout() -> None:
    t = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    base = batch_digest({"a": t})
    assert batch_digest({"a": t.t().contiguous().t()}) == base  # same values, other strides
    assert batch_digest({"a": t.reshape(4, 3)}) != base
    assert batch_digest({"a": t.view(torch.float32)}) != base
    assert batch_digest({"b": t}) != base
    u = t.clone()
    u.view(torch.uint8)[-1] ^= 1
    assert batch_digest({"a": u}) != base
    assert batch_digest({"a": t.numpy()}) == base
    assert batch_digest(t) == batch_digest((t,)) == batch_digest({"0": t})
    assert batch_digest({"n": {"a": t}}) == batch_digest({"n.a": t})


def test_a_batch_that_is_not_tensors_is_refused_naming_the_item(tmp_path: Path) -> None:
    with pytest.raises(MalformedInput, match="'text' is a str"):
        batch_digest({"ids": torch.zeros(2), "text": "hello"})
    model, opt = _tiny()
    with Recorder(tmp_path / "t", model, opt, **RUN) as rec:
        with pytest.raises(MalformedInput, match="tensor 'z': dtype torch.complex128 cannot be serialised"):
            rec.step({"z": torch.zeros(2, dtype=torch.complex128)})
        assert rec.step_count == 0


def test_tensors_digest_refuses_a_length_that_does_not_match_the_shape() -> None:
    with pytest.raises(MalformedInput, match="'w': 7 bytes for shape"):
        tensors_digest([("w", "F32", (2,), b"\x00" * 7)])


# --- safetensors files -------------------------------------------------------------------------


def test_stfile_writes_files_that_safetensors_reads_back_exactly(tmp_path: Path) -> None:
    tensors = {"model.w": torch.randn(3, 5), "model.b": torch.zeros(3, dtype=torch.bfloat16),
               "model.flag": torch.tensor([True, False, True]), "opt.step": torch.tensor(7.0),
               "rng": torch.get_rng_state(), "empty": torch.zeros(0, 4)}
    data = {k: stfile.TensorData(*_td(k, v)) for k, v in tensors.items()}
    path = tmp_path / "x.safetensors"
    hasher = MultiHasher(["sha256"])
    with open(path, "wb") as f:
        size = stfile.write(f, data, {"k": "v"}, hasher)
    assert size == path.stat().st_size and hasher.hexdigests() == hash_file(path)
    back = load_file(str(path))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v), k
    with stfile.SafetensorsFile(path) as f:
        assert f.header.metadata == {"k": "v"}
        assert f.digest("model.") == state_digest({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        assert all(e.begin % 8 == 0 for e in f.header.tensors.values() if stfile.DTYPE_SIZES[e.dtype] == 8)


def _td(name: str, t: torch.Tensor) -> tuple[str, tuple[int, ...], memoryview]:
    from redline.transcript.torchstate import tensor_data

    d = tensor_data(t, name)
    return d.dtype, d.shape, d.data


def test_stfile_refuses_a_header_whose_offsets_do_not_tile_the_data(tmp_path: Path) -> None:
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],' \
             b'"data_offsets":[12,16]}}'
    blob = struct.pack("<Q", len(header)) + header + b"\x00" * 16
    with pytest.raises(MalformedInput, match="'b' starts at 12, expected 8"):
        stfile.parse_header(blob, "x")
    with pytest.raises(MalformedInput, match="x: safetensors header length"):
        stfile.parse_header(struct.pack("<Q", 1 << 40) + b"{}", "x")


# --- the blob store ------------------------------------------------------------------------------


def test_blob_store_addresses_by_sha256_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")
    digests, size = store.put_bytes(b"hello", ("sha256", "blake3"))
    sha = hashlib.sha256(b"hello").hexdigest()
    assert digests["sha256"] == sha and size == 5
    assert store.path(sha) == tmp_path / "blobs" / "sha256" / sha[:2] / sha[2:]
    assert store.path(sha).read_bytes() == b"hello"
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    assert store.verify(digests, 5) == store.path(sha)


def test_a_failed_blob_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs")

    def write(f, h):
        f.write(b"partial")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        store.put(write)
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []
    assert not (tmp_path / "blobs" / "sha256").exists()


def test_hash_file_agrees_with_hashlib_and_blake3(tmp_path: Path) -> None:
    import blake3

    data = bytes(range(256)) * 5000 + b"tail"
    p = tmp_path / "f"
    p.write_bytes(data)
    assert hash_file(p, ("sha256", "blake3")) == {"sha256": hashlib.sha256(data).hexdigest(),
                                                  "blake3": blake3.blake3(data).hexdigest()}
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert hash_file(empty, ("blake3",))["blake3"] == blake3.blake3(b"").hexdigest()
    assert hash_files([p, empty]) == [hashlib.sha256(data).hexdigest(), hashlib.sha256(b"").hexdigest()]


# --- generator states ----------------------------------------------------------------------------


def test_rng_tracker_always_agrees_with_the_full_states() -> None:
    tracker = RngTracker()
    for draw in [lambda: None, lambda: np.random.rand(3), lambda: np.random.randn(1), lambda: np.random.randn(1),
                 lambda: None, lambda: np.random.randn(1), lambda: random.random(), lambda: torch.rand(2),
                 lambda: np.random.seed(5), lambda: None]:
        draw()
        assert tracker.digests() == RngState.capture().digests()


def test_rng_state_restores_every_generator() -> None:
    state = RngState.capture()
    a = (torch.rand(3), random.random(), np.random.rand(2), np.random.randn())
    state.restore()
    b = (torch.rand(3), random.random(), np.random.rand(2), np.random.randn())
    assert torch.equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2]) and a[3] == b[3]


def test_to_json_round_trips_optimizer_and_scheduler_state() -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    value = {"state": opt.state_dict(), "odd": (float("inf"), 2**60, {1: "x"})}
    obj = to_json(value, "p", tensors)
    canonical_json(obj)
    back = from_json(obj, tensors)
    assert back["odd"] == (float("inf"), 2**60, {1: "x"})
    assert back["state"]["param_groups"] == opt.state_dict()["param_groups"]
    assert torch.equal(back["state"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    with pytest.raises(MalformedInput, match="p.f: a builtin_function_or_method cannot be recorded"):
        to_json({"f": len}, "p", tensors)


# --- canonical records ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_record_is_rfc8785(value: object) -> None:
    assert canonical_record(value) == canonical_json(value)


def test_canonical_record_refuses_what_rfc8785_refuses() -> None:
    with pytest.raises(MalformedInput):
        canonical_record({"loss": float("nan")})


# --- the recorder ---------------------------------------------------------------------------------


def _tiny() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _loop(rec: Recorder, model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int,
          fail_at: int | None = None) -> None:
    g = torch.Generator().manual_seed(1)
    for i in range(steps):
        x = torch.randn(5, 4, generator=g)
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        if i == fail_at:
            raise RuntimeError("out of memory, say")
        opt.step()
        rec.step({"x": x}, loss)


def test_a_plain_loop_records_in_a_few_lines(tmp_path: Path) -> None:
    model, opt = _tiny()
    with Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=4) as rec:
        _loop(rec, model, opt, 10)
    t = load_transcript(tmp_path / "t")
    assert [c.step for c in t.checkpoints] == [0, 4, 8, 10]
    assert t.manifest.flop is None
    assert t.manifest.declaration.optimizer is not None
    assert t.manifest.declaration.optimizer.name == "sgd"  # its class is registered by redline
    assert "no model factory declared: replay cannot rebuild it" in t.manifest.declaration.notes
    assert all(r.tokens == 0 for r in t.steps)
    ckpt = t.checkpoint(10).load()
    assert torch.equal(ckpt.model_state["3.weight"], model.state_dict()["3.weight"])
    assert ckpt.optimizer_state["param_groups"] == opt.state_dict()["param_groups"]


def test_an_error_in_training_cuts_the_transcript_back_to_the_last_checkpoint(tmp_path: Path) -> None:
    model, opt = _tiny()
    with pytest.raises(RuntimeError, match="out of memory"):
        with Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=4) as rec:
            _loop(rec, model, opt, 10, fail_at=6)
    t = load_transcript(tmp_path / "t")
    assert t.step_count == 4 and [c.step for c in t.checkpoints] == [0, 4]
    assert len((tmp_path / "t" / "steps.jsonl").read_bytes().splitlines()) == 4


def test_the_training_thread_does_not_wait_for_checkpoint_writing(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real_put = BlobStore.put

    def slow_put(self, write, algorithms=("sha256",), *, durable=True):
        release.wait(timeout=30)
        return real_put(self, write, algorithms, durable=durable)
    model, opt = _tiny()
    rec = Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=5, queue_size=1).start()
    # start() returns once checkpoint 0 is on disk (the RunStart commits to it); later ones are written behind
    monkeypatch.setattr(BlobStore, "put", slow_put)
    _loop(rec, model, opt, 8)  # training goes on while step 5's checkpoint is still being written
    assert rec.step_count == 8
    writer = rec._writer
    assert writer is not None and [e.step for e in writer.entries] == [0]
    release.set()
    manifest = rec.close()
    assert [c.step for c in manifest.checkpoints] == [0, 5, 8]


def test_a_writer_error_surfaces_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_put(self, write, algorithms=("sha256",), *, durable=True):
        raise OSError(28, "No space left on device")
    model, opt = _tiny()
    rec = Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=100).start()
    monkeypatch.setattr(BlobStore, "put", broken_put)
    with pytest.raises(OSError, match="No space left") as err:  # on a later step() or, at the latest, close()
        _loop(rec, model, opt, 3)
        rec.close()
    assert "raised by redline's checkpoint writer thread" in err.value.__notes__
    with pytest.raises(OSError, match="No space left"):
        rec.close()
    assert not (tmp_path / "t" / "manifest.json").exists()


def test_a_writer_error_at_start_surfaces_from_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_put(self, write, algorithms=("sha256",), *, durable=True):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(BlobStore, "put", broken_put)
    model, opt = _tiny()
    with pytest.raises(OSError, match="No space left") as err:
        Recorder(tmp_path / "t", model, opt, **RUN).start()
    assert "raised by redline's checkpoint writer thread" in err.value.__notes__
    assert not (tmp_path / "t" / "manifest.json").exists()


@pytest.mark.parametrize("threaded", [False, True])
def test_a_record_error_surfaces_naming_the_value(tmp_path: Path, threaded: bool) -> None:
    model, opt = _tiny()
    rec = Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=100, record_thread=threaded).start()
    opt.param_groups[0]["schedule"] = len  # not a value a record can hold, set after the first checkpoint
    with pytest.raises(MalformedInput, match="optimizer.param_groups.0.schedule: a builtin_function_or_method") as err:
        _loop(rec, model, opt, 3)
        rec.close()
    assert ("raised by redline's record writer thread" in getattr(err.value, "__notes__", ())) == threaded


def test_the_record_thread_changes_nothing_in_the_transcript(tmp_path: Path) -> None:
    roots = []
    for threaded in (False, True):
        model, opt = _tiny()
        # 75 steps, a checkpoint every 50: unthreaded records are made in bursts of 32 (steps 1-32, 33-50 at the
        # checkpoint, 51-75 at close), which must change nothing either
        with Recorder(tmp_path / f"t{threaded}", model, opt, **RUN, checkpoint_every=50, record_thread=threaded) as rec:
            assert rec.record_thread is threaded
            _loop(rec, model, opt, 75)
        roots.append(load_transcript(tmp_path / f"t{threaded}").commitments)
    assert roots[0] == roots[1]
    model, _ = _tiny()
    assert Recorder(tmp_path / "u", model, **RUN).record_thread is False  # a CPU model records on the training thread


@pytest.mark.parametrize("threaded", [False, True])
def test_reusing_a_batch_buffer_in_place_cannot_change_the_record(tmp_path: Path, threaded: bool) -> None:
    model, opt = _tiny()
    buffer = torch.zeros(5, 4)
    digests = []
    with Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=100, record_thread=threaded) as rec:
        for i in range(20):
            buffer.fill_(float(i))  # a loop that refills one input buffer in place
            digests.append(batch_digest({"x": buffer}))
            opt.zero_grad()
            loss = model(buffer).sum()
            loss.backward()
            opt.step()
            rec.step({"x": buffer}, loss)
    assert [r.batch["sha256"] for r in load_transcript(tmp_path / "t").data] == digests


def test_the_recorder_refuses_a_non_empty_directory_and_bad_settings(tmp_path: Path) -> None:
    model, opt = _tiny()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "other").write_text("x")
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "t", model, opt, **RUN).start()
    with pytest.raises(MalformedInput, match="checkpoint_every"):
        Recorder(tmp_path / "u", model, opt, **RUN, checkpoint_every=0)
    with pytest.raises(MalformedInput, match="unknown digest algorithm 'md5'"):
        Recorder(tmp_path / "u", model, opt, **RUN, digests=("md5",))


def test_capture_state_copies_so_later_training_cannot_change_a_queued_checkpoint() -> None:
    model, opt = _tiny()
    state: CapturedState = capture_state(0, model, opt, None, RngState.capture())
    before = state.tensors["model.0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(state.tensors["model.0.weight"], before)


def test_checkpoints_are_read_only_with_safetensors(tmp_path: Path) -> None:
    bogus = tmp_path / "evil.safetensors"
    bogus.write_bytes(b"\x80\x04\x95 not a safetensors file, perhaps a pickle")
    with pytest.raises(MalformedInput, match="evil.safetensors"):
        load_checkpoint(bogus)


def test_declarations_name_registered_factories_not_module_paths() -> None:
    from pydantic import ValidationError

    from redline.transcript.factories import pin

    d = Declaration(model_factory=pin("model_factory", "tinygpt", d_model=16))
    assert d.model_factory is not None and d.model_factory.kwargs == {"d_model": 16}
    assert d.model_factory.distribution == "redline" and len(d.model_factory.files_digest) == 64
    with pytest.raises(ValidationError):  # a module path is not a factory name
        Declaration.model_validate({"model_factory": {**d.model_factory.model_dump(), "name": "os:system"}})


# --- weight of imports ----------------------------------------------------------------------------


def test_import_redline_and_loading_a_transcript_need_no_torch(tmp_path: Path) -> None:
    model, opt = _tiny()
    with Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=2) as rec:
        _loop(rec, model, opt, 3)
    code = ("import sys; sys.modules['torch'] = None\n"
            "import redline, redline.transcript, redline.cli.main\n"
            "from redline.transcript import load_transcript\n"
            f"t = load_transcript({str(tmp_path / 't')!r})\n"
            "assert t.step_count == 3\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("idle", [False, True])
def test_the_checkpoint_writer_yields_to_training(tmp_path: Path, idle: bool) -> None:
    model, opt = _tiny()
    rec = Recorder(tmp_path / "t", model, opt, **RUN, checkpoint_every=2, writer_idle=idle).start()
    try:
        tid = rec._writer._thread.native_id
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the thread lowers its own priority as it starts
            policy, nice = os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)
            if policy == os.SCHED_IDLE or nice == 10:
                break
            time.sleep(0.01)
        assert (policy, nice) == ((os.SCHED_IDLE, 0) if idle else (os.SCHED_OTHER, 10))
        _loop(rec, model, opt, 4)
    finally:
        manifest = rec.close()
    assert [c.step for c in manifest.checkpoints] == [0, 2, 4]


def test_a_base_initialisation_must_hold_the_base_weights(tmp_path: Path) -> None:
    """A recorder declared to start from a base model refuses to start from other weights (an honest mistake
    caught before any training; a verifier would fail the run's init check)."""
    model, opt = _tiny()
    digest = state_digest(model.state_dict())
    ok = Recorder(tmp_path / "ok", model, opt, party="lab", run_id="ft",
                  init=Init(kind="base", base_model_digest=digest)).start()
    assert ok.initial_model_digest() == digest
    ok.close()
    with pytest.raises(MalformedInput, match="not the declared base model's"):
        Recorder(tmp_path / "bad", model, opt, party="lab", run_id="ft2",
                 init=Init(kind="base", base_model_digest="00" * 32)).start()
