"""Re-executing sampled segments, independently and in parallel, behind a small runner interface.

A :class:`SegmentTask` names a transcript directory, a segment (start and end
checkpoint steps), the device and the tolerance; :func:`run_segment` replays it
from its committed start checkpoint with the committed batches and
hyperparameters (:func:`redline.transcript.replay_segment`) and compares the
result with the committed end checkpoint. Both are plain picklable values, so any
:class:`SegmentRunner` can execute them: :class:`LocalRunner` uses a
``ProcessPoolExecutor`` (spawn) on local cores; a cluster scheduler only needs to
implement ``run(tasks, on_done)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol

from redline.verify.distance import Distance, Tolerance


@dataclass(frozen=True)
class SegmentTask:
    """One segment to re-execute: steps ``start_step + 1 .. end_step`` of the transcript at ``transcript_dir``."""

    transcript_dir: str
    index: int  # place in Transcript.segments()
    start_step: int
    end_step: int
    tolerance: dict[str, Any] = field(default_factory=lambda: Tolerance.exact().to_json())
    device: str = "cpu"


@dataclass(frozen=True)
class SegmentOutcome:
    """What re-executing one segment showed."""

    index: int
    start_step: int
    end_step: int
    passed: bool
    distance: Distance | None
    mismatched_steps: tuple[int, ...] = ()  # steps whose replayed record differs from the committed one
    replayed_losses: tuple[float | None, ...] = ()
    seconds: float = 0.0
    error: str | None = None  # the replay could not run (bad batch, missing entry point, ...)
    #: The replay could not run here because the code it needs is not as pinned (``UntrustedCode``): this machine
    #: cannot decide the segment, which says nothing of the run.
    undecided: bool = False

    @property
    def steps(self) -> int:
        """Steps replayed."""
        return self.end_step - self.start_step

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"index": self.index, "start_step": self.start_step, "end_step": self.end_step,
                "passed": self.passed, "distance": self.distance.to_json() if self.distance else None,
                "mismatched_steps": list(self.mismatched_steps), "seconds": round(self.seconds, 4),
                "error": self.error, "undecided": self.undecided}


_CACHE: dict[str, Any] = {}


def _transcript(path: str) -> Any:
    from redline.transcript.transcript import load_transcript

    t = _CACHE.get(path)
    if t is None:
        # the coordinating process verified every file and root; a worker re-hashes the blobs it reads
        t = _CACHE[path] = load_transcript(path, verify_checkpoints=False)
    return t


def record_mismatches(transcript: Any, records: Sequence[dict[str, Any]], loss_rtol: float = 0.0) -> list[int]:
    """Steps whose replayed record differs from the committed one (losses within ``loss_rtol`` when non-zero)."""
    from redline.crypto.canonical import canonical_json

    out = []
    for r in records:
        committed = transcript.step_record(r["step"]).model_dump(mode="json")
        if canonical_json(r) == canonical_json(committed):
            continue
        if loss_rtol > 0:
            a, b = dict(r), dict(committed)
            la, lb = a.pop("loss"), b.pop("loss")
            if (canonical_json(a) == canonical_json(b) and isinstance(la, float) and isinstance(lb, float)
                    and abs(la - lb) <= loss_rtol * max(abs(lb), 1e-12)):
                continue
        out.append(r["step"])
    return out


def run_segment(task: SegmentTask) -> SegmentOutcome:
    """Replay one segment and compare it with its committed end checkpoint (runs in a worker process)."""
    from redline.errors import MalformedInput, UntrustedCode
    from redline.transcript.store import BlobStore
    from redline.verify.distance import compare_states

    began = time.perf_counter()
    tol = Tolerance.from_json(task.tolerance)
    try:
        t = _transcript(task.transcript_dir)
        for step in (task.start_step, task.end_step):
            ref = t.checkpoint(step)
            BlobStore(ref.path.parent.parent.parent).verify(dict(ref.entry.digest), ref.entry.size,
                                                            algorithm="sha256")
        result = _replay_with_threads(t, task.start_step, task.end_step, task.device)
        end = t.checkpoint(task.end_step).load()
        d = compare_states(result.state.tensors, end.tensors, result.state.metadata, end.metadata)
        mism = record_mismatches(t, result.step_records, tol.loss_rtol)
        losses = tuple(r["loss"] if isinstance(r["loss"], float) else None for r in result.step_records)
        passed = tol.accepts(d) and not mism
        return SegmentOutcome(task.index, task.start_step, task.end_step, passed, d, tuple(mism), losses,
                              time.perf_counter() - began)
    except UntrustedCode as exc:  # e.g. the installed code changed after the code check: undecided here
        return SegmentOutcome(task.index, task.start_step, task.end_step, False, None,
                              seconds=time.perf_counter() - began, error=str(exc), undecided=True)
    except MalformedInput as exc:
        return SegmentOutcome(task.index, task.start_step, task.end_step, False, None,
                              seconds=time.perf_counter() - began, error=str(exc))
    except Exception as exc:  # a forged checkpoint can break the replay itself (shapes, dtypes): that fails it too
        return SegmentOutcome(task.index, task.start_step, task.end_step, False, None,
                              seconds=time.perf_counter() - began,
                              error=f"the replay failed: {type(exc).__name__}: {exc}"[:2000])


class SegmentRunner(Protocol):
    """Executes segment tasks somewhere; ``on_done`` is called (in the caller's process) as each finishes."""

    def run(self, tasks: Sequence[SegmentTask],
            on_done: Callable[[SegmentOutcome], None] | None = None) -> list[SegmentOutcome]:
        """Run every task; return the outcomes in the order of ``tasks``."""


class LocalRunner:
    """Run segments on local cores: ``workers`` spawned processes, or in this process when ``workers <= 1``."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    def run(self, tasks: Sequence[SegmentTask],
            on_done: Callable[[SegmentOutcome], None] | None = None) -> list[SegmentOutcome]:
        """Run every task; return the outcomes in the order of ``tasks``."""
        out: dict[int, SegmentOutcome] = {}
        if self.workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                out[i] = run_segment(task)
                if on_done:
                    on_done(out[i])
        else:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                     mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(run_segment, task): i for i, task in enumerate(tasks)}
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    if on_done:
                        on_done(out[futures[fut]])
        return [out[i] for i in range(len(tasks))]


def _replay_with_threads(t: Any, start: int, end: int, device: str) -> Any:
    """Replay with the recorded intra-op thread count: CPU reductions are bitwise only at the same count."""
    import torch

    from redline.transcript.replay import replay_segment

    saved = torch.get_num_threads()
    want = t.manifest.environment.num_threads
    if str(device).startswith("cpu") and want and want != saved:
        torch.set_num_threads(want)
    try:
        return replay_segment(t, start, end, device=device)
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)


def tasks_for(transcript_dir: str, segments: Iterable[tuple[int, int, int]], tolerance: Tolerance,
              device: str = "cpu") -> list[SegmentTask]:
    """Tasks for ``(index, start_step, end_step)`` triples."""
    return [SegmentTask(str(transcript_dir), i, a, b, tolerance.to_json(), device) for i, a, b in segments]


__all__ = ["LocalRunner", "SegmentOutcome", "SegmentRunner", "SegmentTask", "record_mismatches", "run_segment",
           "tasks_for"]
