"""The recorder: a tamper-evident transcript of a PyTorch training run, in a few lines of the training loop.

::

    with Recorder(out, model, optimizer, party="lab-a", run_id="r1", init=Init(kind="fresh", seed=0),
                  scheduler=sched, declaration=decl, checkpoint_every=100) as rec:
        for position, batch in enumerate(loader):
            ...                      # forward, backward, optimizer.step(), scheduler.step()
            rec.step(batch, loss, position=position)

Per step the training thread takes a snapshot — the batch's tensors, the loss,
the hyperparameters and the generator states — and the record writer hashes it,
formats the canonical step and data records, appends them to their files and
keeps their Merkle leaves: on a thread of its own (taking copies, so the training
thread never waits for it) when the model is on an accelerator, on the training
thread when the model is on the CPU. Every
``checkpoint_every`` steps the training thread copies the model, optimizer,
scheduler and generator states to CPU and hands the copies to a checkpoint writer
thread (bounded queue), which serialises them as safetensors, hashes and writes
them atomically into the content-addressed store. ``close()`` (or leaving the
``with`` block) writes the final checkpoint, waits for both threads, raises any
error they met, and writes the manifest with the three Merkle roots.
"""

from __future__ import annotations

import inspect
import os
import platform
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import torch

from redline import __version__
from redline.crypto.canonical import canonical_json
from redline.errors import MalformedInput
from redline.log.merkle import leaf_hash
from redline.transcript.digest import ALGORITHMS, tensors_digest
from redline.transcript.format import (
    SPEC_FORMAT,
    CheckpointEntry,
    Declaration,
    Environment,
    FactoryRef,
    FlopCount,
    Init,
    Manifest,
    RunSpec,
    TranscriptWriter,
    canonical_record,
)
from redline.transcript.torchstate import (
    CapturedState,
    RngSnapshot,
    RngState,
    RngTracker,
    batch_tensors,
    capture_state,
    count_tokens,
    dtype_code,
    iter_tensors,
    snapshot_groups,
    step_record,
)

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]


class _CheckpointWriter:
    """A daemon thread that serialises, hashes and stores checkpoints handed to it through a bounded queue."""

    def __init__(self, writer: TranscriptWriter, *, queue_size: int, nice: int, idle: bool = False) -> None:
        self.writer = writer
        self.nice = nice
        self.idle = idle
        self.entries: list[CheckpointEntry] = []
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, CapturedState] | None] = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="redline-checkpoint-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _lower_priority(self.nice, self.idle)
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.error is None:
                    self.entries.append(self._write(*item))
            except BaseException as exc:  # kept and raised on the training thread
                self.error = exc
            finally:
                self._queue.task_done()

    def _write(self, step: int, state: CapturedState) -> CheckpointEntry:
        return self.writer.put_checkpoint(step, state.tensor_data(), state.metadata)

    def raise_if_failed(self) -> None:
        """Raise the error the writer met (the original exception, with a note saying where), if any."""
        _raise_from_thread(self.error, "checkpoint writer")

    def submit(self, step: int, state: CapturedState) -> None:
        """Queue a checkpoint (blocks while the queue is full)."""
        self.raise_if_failed()
        if not self._thread.is_alive():
            raise MalformedInput("the checkpoint writer has stopped: the recorder was closed")
        self._queue.put((step, state))

    def flush(self) -> list[CheckpointEntry]:
        """Wait until every queued checkpoint is written; raise the writer's error if any."""
        self._queue.join()
        self.raise_if_failed()
        return list(self.entries)

    def stop(self) -> None:
        """Finish the queued work and end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _lower_priority(nice: int, idle: bool) -> None:
    """Lower the calling thread's scheduling priority (Linux: a thread is a task with its own).

    ``idle``: ``SCHED_IDLE``, run only on CPU time nothing else wants; else ``nice``. Best effort.
    """
    tid = threading.get_native_id()
    if idle:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
            return
        except (AttributeError, OSError):
            pass
    if nice:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except (AttributeError, OSError):
            pass


@dataclass
class _StepSnapshot:
    """What the training thread hands over for one step: copies that later training cannot change."""

    step: int
    position: int
    tokens: int
    batch: dict[str, torch.Tensor]
    loss: Any
    groups: list[dict[str, Any]]
    rng: RngSnapshot
    event: Any  # a CUDA event that completes when the device-to-host copies have landed, or None


class _RecordWriter:
    """Turns step snapshots into records: digests, canonical lines, file appends, Merkle leaves.

    Items are processed in order: ``_StepSnapshot`` appends a step, an ``int``
    marks the files' sizes at that checkpoint step, ``None`` ends the thread.
    With ``threaded`` they are processed by a thread of their own; otherwise on
    the caller's thread, in bursts of ``burst`` steps (and at every mark and
    flush): a burst runs with its code and data hot in the CPU's caches, where
    one record squeezed between two training steps costs several times more.
    """

    def __init__(self, steps_file: BinaryIO, data_file: BinaryIO, rng: RngTracker, *, bound: bytes,
                 threaded: bool, queue_size: int, burst: int = 32) -> None:
        self.steps_file = steps_file
        self.data_file = data_file
        self.bound = bound  # the run spec's digest: every leaf starts with it
        self.rng = rng
        self.step_leaves: list[bytes] = []
        self.data_leaves: list[bytes] = []
        self.marks: dict[int, tuple[int, int]] = {}
        self.error: BaseException | None = None
        self._sizes = [0, 0]
        self._burst = max(1, burst)
        self._pending: list[_StepSnapshot] = []
        self._queue: queue.Queue[_StepSnapshot | int | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._run, name="redline-record-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.error is None:
                    self._process(item)
            except BaseException as exc:  # kept and raised on the training thread
                self.error = exc
            finally:
                self._queue.task_done()

    def _process(self, item: _StepSnapshot | int) -> None:
        if isinstance(item, int):
            self.steps_file.flush()
            self.data_file.flush()
            self.marks[item] = (self._sizes[0], self._sizes[1])
        else:
            self._record(item)

    def _record(self, snap: _StepSnapshot) -> None:
        if snap.event is not None:
            snap.event.synchronize()
        batch = {"sha256": tensors_digest(iter_tensors(snap.batch))}
        record = step_record(snap.step, snap.loss, snap.tokens, snap.groups, self.rng.digest(snap.rng))
        for i, (f, leaves, line) in enumerate(
                ((self.steps_file, self.step_leaves, canonical_record(record)),
                 (self.data_file, self.data_leaves,
                  canonical_record({"step": snap.step, "position": snap.position, "batch": batch})))):
            f.write(line + b"\n")
            self._sizes[i] += len(line) + 1
            leaves.append(leaf_hash(self.bound + line))

    def raise_if_failed(self) -> None:
        """Raise the error the thread met (the original exception, with a note saying where), if any."""
        _raise_from_thread(self.error, "record writer")

    def submit(self, item: _StepSnapshot | int) -> None:
        """Process, or queue, a step or a checkpoint mark (blocks while the queue is full)."""
        self.raise_if_failed()
        if self._thread is None:
            if isinstance(item, _StepSnapshot):
                self._pending.append(item)
                if len(self._pending) >= self._burst:
                    self._drain()
            else:
                self._drain()
                self._process(item)
            return
        if not self._thread.is_alive():
            raise MalformedInput("the record writer has stopped: the recorder was closed")
        self._queue.put(item)

    def _drain(self) -> None:
        """Process the pending steps (unthreaded); an error is raised here, on the training thread."""
        pending, self._pending = self._pending, []
        for snap in pending:
            self._process(snap)

    def flush(self) -> None:
        """Wait until every queued or pending item is processed; raise the thread's error if any."""
        self._drain()
        self._queue.join()
        self.raise_if_failed()

    def stop(self) -> None:
        """Finish the queued work and end the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _raise_from_thread(error: BaseException | None, which: str) -> None:
    if error is not None:
        note = f"raised by redline's {which} thread"
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
        raise error


def _host_copy(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A copy of ``t`` on the host, and whether it is an asynchronous device-to-host copy still in flight."""
    t = t.detach()
    if t.device.type == "cpu":
        return t.clone(), False
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    host.copy_(t, non_blocking=True)
    return host, True


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def infer_optimizer(optimizer: torch.optim.Optimizer) -> FactoryRef | None:
    """The optimizer as its registered factory and constructor arguments, when its class is registered in
    ``redline.optimizers`` and one parameter group makes the defaults enough to rebuild it."""
    from redline.transcript.factories import pin, registration_of

    cls = type(optimizer)
    if len(optimizer.param_groups) != 1:
        return None
    name = registration_of("optimizer", cls)
    if name is None:
        return None
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: _jsonable(v) for k, v in optimizer.defaults.items() if k in accepted and k != "params"}
    try:
        canonical_json(kwargs)
    except MalformedInput:
        return None
    return pin("optimizer", name, **kwargs)


def _build_setting(name: str) -> str | None:
    """One ``NAME=value`` of torch's build settings (``torch.__config__.show()``), or None."""
    match = re.search(rf"\b{name}=([^,\s]+)", torch.__config__.show())
    return match.group(1) if match else None


def _onednn_version() -> str | None:
    match = re.search(r"MKL-DNN v([0-9][^ ]*)", torch.__config__.show())
    return match.group(1) if match else None


def current_environment(device: str | torch.device = "cpu") -> Environment:
    """The environment of this process for work on ``device`` (recorded by the recorder, compared by a
    verifier)."""
    dev = torch.device(device)
    name = None
    if dev.type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(dev)
    return Environment(python=platform.python_version(), torch=torch.__version__,
                       numpy=np.__version__ if np is not None else None, platform=platform.platform(),
                       device_type=dev.type, device_name=name, cuda=torch.version.cuda,
                       cpu_capability=torch.backends.cpu.get_cpu_capability(), blas=_build_setting("BLAS_INFO"),
                       onednn=_onednn_version(), deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
                       num_threads=torch.get_num_threads())


def _environment(model: torch.nn.Module) -> Environment:
    return current_environment(next((p.device for p in model.parameters()), torch.device("cpu")))


def _now() -> datetime:
    return datetime.now(UTC)


class Recorder:
    """Records a training run into a transcript directory (see the module docstring).

    ``party`` and ``run_id`` name the run (they go into the run spec, whose
    digest binds every Merkle leaf, so the transcript belongs to that run alone);
    ``init`` says where checkpoint 0 comes from (``Init(kind="fresh", seed=s)``:
    the model was built on the CPU right after ``torch.manual_seed(s)``,
    ``random.seed(s)`` and ``numpy.random.seed(s)``; ``Init(kind="base",
    base_model_digest=d)``: it holds a base model's weights), which a verifier
    rebuilds bit for bit.
    ``declaration`` says how a verifier rebuilds the run: registered, pinned
    factories (``redline.transcript.factories.pin``); an optimizer with one
    parameter group whose class is registered is declared from its class and
    defaults when the declaration leaves it out, and every part still missing is
    named in ``declaration.notes``. ``digests`` adds
    BLAKE3 to every checkpoint's SHA-256. ``count_flop`` counts the FLOP of the
    first step with ``torch.utils.flop_counter.FlopCounterMode`` (between
    ``start()`` and the first ``step()``). ``durable`` fsyncs every file.
    ``queue_size`` bounds the checkpoints waiting for the writer thread (a step
    that is due to checkpoint waits while the queue is full); ``writer_nice``
    lowers that thread's scheduling priority (Linux), so that on a busy CPU it
    yields to the training threads — on a machine oversubscribed by other
    processes it may then finish later, which only ``close()`` waits for;
    ``writer_idle`` puts it in ``SCHED_IDLE`` instead (Linux), where it runs only
    on CPU time nothing else wants.
    ``record_thread`` hashes and writes the per-step records on a thread of
    their own, leaving the training thread only a snapshot to take; by default
    it does so when the model is on an accelerator (whose training leaves CPU
    cores idle) and records on the training thread when the model is on the CPU
    (whose training keeps every core busy: another thread would only preempt one
    of them and stall the others at their next barrier).
    """

    def __init__(self, out: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, *,
                 party: str, run_id: str, init: Init,
                 scheduler: Any | None = None, declaration: Declaration | None = None, checkpoint_every: int = 100,
                 digests: Sequence[str] = ("sha256",), count_flop: bool = False, durable: bool = True,
                 queue_size: int = 1, writer_nice: int = 10, writer_idle: bool = False,
                 record_thread: bool | None = None) -> None:
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise MalformedInput(f"checkpoint_every must be a positive integer, not {checkpoint_every!r}")
        unknown = [d for d in digests if d not in ALGORITHMS]
        if unknown:
            raise MalformedInput(f"unknown digest algorithm {unknown[0]!r} (known: {', '.join(ALGORITHMS)})")
        self.path = Path(out)
        self.party = party
        self.run_id = run_id
        self.init = init
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.checkpoint_every = checkpoint_every
        self.algorithms = ("sha256", *(d for d in ALGORITHMS if d in digests and d != "sha256"))
        self.count_flop = count_flop
        self.durable = durable
        self.declaration = self._complete(declaration or Declaration())
        self.manifest: Manifest | None = None
        self.spec: RunSpec | None = None
        self._queue_size = queue_size
        self._writer_nice = writer_nice
        self._writer_idle = writer_idle
        self.record_thread = record_thread if record_thread is not None else \
            any(p.device.type != "cpu" for p in model.parameters())
        self._step = 0
        self._tokens: list[int] = []
        self._checkpointed: list[int] = []
        self._rng = RngTracker()
        self._flop_mode: Any = None
        self._flop: FlopCount | None = None
        self._files: TranscriptWriter | None = None
        self._started_at = _now()
        self._writer: _CheckpointWriter | None = None
        self._records: _RecordWriter | None = None

    def _complete(self, decl: Declaration) -> Declaration:
        notes = list(decl.notes)
        updates: dict[str, Any] = {}
        if decl.optimizer is None and self.optimizer is not None:
            inferred = infer_optimizer(self.optimizer)
            if inferred is not None:
                updates["optimizer"] = inferred
                notes.append(f"optimizer declared from {inferred.name}'s defaults")
        for field, present, what in (("model_factory", True, "model factory"),
                                     ("optimizer", self.optimizer is not None, "optimizer"),
                                     ("scheduler", self.scheduler is not None, "scheduler"),
                                     ("data_source", True, "data source"), ("train_step", True, "train step")):
            if present and getattr(decl, field) is None and field not in updates:
                notes.append(f"no {what} declared: replay cannot rebuild it")
        if notes != list(decl.notes) or updates:
            decl = Declaration.model_validate({**decl.model_dump(), **updates, "notes": notes})
        return decl

    # --- life cycle ------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        """Steps recorded so far."""
        return self._step

    def start(self) -> Recorder:
        """Write the run spec (``run.json``) and the checkpoint of step 0, and start counting FLOP if asked.

        ``run.json`` and checkpoint 0's model digest (:meth:`initial_model_digest`) are what the lab's
        ``RunStart`` commits to before the first step. Checkpoint 0 holds the random generators' states as they
        are now: draw nothing from them between ``start()`` and the first step, or the replay of the first
        segment will not match.
        """
        if self._files is not None:
            raise MalformedInput(f"{self.path}: the recorder was already started")
        self._started_at = _now()
        self.spec = RunSpec(format=SPEC_FORMAT, party=self.party, run_id=self.run_id, redline_version=__version__,
                            environment=_environment(self.model), declaration=self.declaration,
                            init=self.init, parameter_count=sum(p.numel() for p in self.model.parameters()),
                            checkpoint_every=self.checkpoint_every, digest_algorithms=list(self.algorithms))
        self._files = files = TranscriptWriter(self.path, self.spec, durable=self.durable)
        self._records = _RecordWriter(files.steps_file, files.data_file, self._rng, bound=files.bound,
                                      threaded=self.record_thread, queue_size=1024)
        self._writer = _CheckpointWriter(files, queue_size=self._queue_size, nice=self._writer_nice,
                                         idle=self._writer_idle)
        try:
            self._checkpoint(RngState.capture())
            first = self._writer.flush()[0]  # run.json and checkpoint 0 are on disk when start() returns
            if self.init.kind == "base" and first.model_digest != self.init.base_model_digest:
                raise MalformedInput(f"{self.path}: the model's weights have digest {first.model_digest}, not the "
                                     f"declared base model's {self.init.base_model_digest} (load the base's "
                                     "weights before start(), or declare the right base)")
        except BaseException:
            self._writer.stop()
            self._records.stop()
            files.close_files()
            raise
        if self.count_flop:
            from torch.utils.flop_counter import FlopCounterMode

            self._flop_mode = FlopCounterMode(display=False)
            self._flop_mode.__enter__()
        return self

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close(at_last_checkpoint=True)
        except Exception as inner:  # the training error matters more; say what happened to the transcript
            exc.add_note(f"redline: the transcript in {self.path} could not be closed: {inner}")

    def _stop_flop_counter(self) -> None:
        if self._flop_mode is not None:
            mode, self._flop_mode = self._flop_mode, None
            mode.__exit__(None, None, None)
            if self._step == 0:
                self._flop = FlopCount(method="torch.utils.flop_counter.FlopCounterMode", counted_step=1,
                                       per_step=float(mode.get_total_flops()))

    # --- per step --------------------------------------------------------------------

    def initial_model_digest(self) -> str:
        """Checkpoint 0's model digest (tensor serialisation v1): ``RunStart.init_model_digest``.

        Checkpoint 0 is written when :meth:`start` returns.
        """
        if self._writer is None:
            raise MalformedInput(f"{self.path}: initial_model_digest() needs a started recorder")
        return self._writer.entries[0].model_digest

    def step(self, batch: Any, loss: Any = None, *, position: int | None = None, tokens: int | None = None) -> int:
        """Record one finished optimizer step: the batch it consumed, its loss, its place in the data order.

        ``batch`` is a tensor, a sequence or a mapping of tensors (nested is fine);
        ``position`` defaults to the number of steps before this one; ``tokens``
        defaults to the elements of every ``input_ids`` tensor (else of the first
        integer tensor). A CUDA loss is read without synchronising the device.
        Returns the step's number (from 1).
        """
        if self._writer is None or self._records is None or self.manifest is not None:
            raise MalformedInput(f"{self.path}: step() needs a started, open recorder")
        self._stop_flop_counter()
        n = self._step + 1
        if position is None:
            position = n - 1
        if isinstance(position, bool) or not isinstance(position, int) or position < 0:
            raise MalformedInput(f"position must be a non-negative integer, not {position!r}")
        tensors = batch_tensors(batch)
        if tokens is None:
            tokens = count_tokens(tensors)
        copies, in_flight = {}, False
        for name, t in tensors.items():
            dtype_code(t, name)  # refuse what cannot be serialised now, not one step later
            copies[name], pending = _host_copy(t)  # recorded later (in a burst, or on the record thread)
            in_flight |= pending
        if isinstance(loss, torch.Tensor):
            loss, pending = _host_copy(loss)
            in_flight |= pending
        event = None
        if in_flight:  # no synchronisation: the record thread waits for the copies instead
            event = torch.cuda.Event()
            event.record()
        groups = snapshot_groups(self.optimizer) if self.optimizer is not None else []
        self._records.submit(_StepSnapshot(n, position, int(tokens), copies, loss, groups, self._rng.snapshot(),
                                           event))
        self._tokens.append(int(tokens))
        self._step = n
        if n % self.checkpoint_every == 0:
            self._checkpoint(RngState.capture())
        else:
            self._writer.raise_if_failed()
        return n

    def checkpoint(self) -> None:
        """Write a checkpoint of the current state now (once per step at most)."""
        if self._writer is None or self.manifest is not None:
            raise MalformedInput(f"{self.path}: checkpoint() needs a started, open recorder")
        if not self._checkpointed or self._checkpointed[-1] != self._step:
            self._checkpoint(RngState.capture())

    def _checkpoint(self, rng: RngState) -> None:
        assert self._writer is not None and self._records is not None
        state = capture_state(self._step, self.model, self.optimizer, self.scheduler, rng)
        self._records.submit(self._step)
        self._checkpointed.append(self._step)
        self._writer.submit(self._step, state)

    # --- closing ---------------------------------------------------------------------

    def close(self, *, at_last_checkpoint: bool = False) -> Manifest:
        """Finish the transcript and return its manifest.

        Normally a last checkpoint is written at the final step. With
        ``at_last_checkpoint`` (used when training raised) the transcript is cut
        back to the last checkpoint already taken, because the live state may be
        half-way through a step.
        """
        if self.manifest is not None:
            return self.manifest
        if self._writer is None or self._files is None:
            raise MalformedInput(f"{self.path}: close() before start()")
        self._stop_flop_counter()
        writer, records = self._writer, self._records
        assert records is not None
        try:
            records.flush()  # a step's record error surfaces before the last checkpoint can meet the same value
            if not at_last_checkpoint and self._checkpointed[-1] != self._step:
                self._checkpoint(RngState.capture())
            records.flush()
            entries = writer.flush()
        finally:
            records.stop()
            writer.stop()
            self._files.close_files()
        last = entries[-1].step
        manifest = self._files.finish(entries, tokens=self._tokens, flop=self._flop if last >= 1 else None,
                                      started_at=self._started_at, finished_at=_now(), sizes=records.marks[last],
                                      leaves=(records.step_leaves, records.data_leaves))
        self.manifest = manifest
        return manifest


__all__ = ["Recorder", "current_environment", "infer_optimizer"]
