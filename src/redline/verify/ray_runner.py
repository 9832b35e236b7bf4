"""Re-execute sampled segments as Ray tasks: a :class:`~redline.verify.segments.SegmentRunner` for a cluster.

Needs the ``ray`` extra. Each :class:`~redline.verify.segments.SegmentTask` becomes one Ray task running
:func:`~redline.verify.segments.run_segment`, the very function the local runner runs, so the outcomes
(and the signed report built from them) are the same as :class:`~redline.verify.segments.LocalRunner`'s.
The transcript directory must be readable at the same path on every node (a shared filesystem); each
worker re-hashes the blobs it reads, so a node that sees other bytes fails its segment rather than passing it.

``RayRunner(address)`` joins the cluster at ``address`` (``ray://head:10001`` or ``auto``); with no address
it starts a local Ray instance: ``num_cpus`` CPUs (2 by default), no dashboard, bound to loopback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redline.errors import MalformedInput
from redline.verify.segments import SegmentOutcome, SegmentTask, run_segment


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise MalformedInput(f"--ray needs the ray extra (pip install 'redline[ray]'): {exc}") from exc
    return ray


class RayRunner:
    """Run segments as Ray tasks on the cluster at ``address``, or on a local instance when None."""

    def __init__(self, address: str | None = None, *, num_cpus: int = 2, cpus_per_task: float = 1,
                 shutdown: bool | None = None) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_task = cpus_per_task
        self.shutdown = shutdown  # shut Ray down after run() (default: when this runner started it)

    def _init(self, ray: Any) -> bool:
        """Connect (or start) Ray; whether this call started it."""
        if ray.is_initialized():
            return False
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
        if self.address:
            ray.init(address=self.address, **kw)
        else:
            ray.init(num_cpus=self.num_cpus, _node_ip_address="127.0.0.1", **kw)
        return True

    def run(self, tasks: Sequence[SegmentTask],
            on_done: Callable[[SegmentOutcome], None] | None = None) -> list[SegmentOutcome]:
        """Run every task as a Ray task; ``on_done`` is called here as each finishes; outcomes in task order."""
        if not tasks:
            return []
        ray = _ray()
        started = self._init(ray)
        try:
            remote = ray.remote(num_cpus=self.cpus_per_task, max_retries=1)(run_segment)
            refs = {remote.remote(task): i for i, task in enumerate(tasks)}
            out: dict[int, SegmentOutcome] = {}
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    out[refs[ref]] = ray.get(ref)
                    if on_done:
                        on_done(out[refs[ref]])
            return [out[i] for i in range(len(tasks))]
        finally:
            if self.shutdown or (self.shutdown is None and started):
                ray.shutdown()


__all__ = ["RayRunner"]
