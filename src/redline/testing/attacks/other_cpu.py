"""``other-cpu``: an honest run verified on a machine whose CPU kernels differ — a baseline, not an attack.

Lab A records an honest tiny-GPT run here and declares it (``redline run start|declare --submit``). An auditor
then verifies it with ``redline verify run --log --submit --json`` in a subprocess whose ATen CPU capability is
forced to ``default`` (``ATEN_CPU_CAPABILITY=default``): the machine differs from the recording one in the
run spec's ``cpu_capability``, so replays that differ in their last bits cannot be blamed on the lab. The
verdict must never be ``fail``: ``pass`` when nothing differed, else ``inconclusive`` with every undecided check
naming the CPU capability (exit status 8), and the engine raises no violation.

Not in ``ATTACKS`` (nothing is attacked): ``redline.testing.attacks.OTHER_CPU`` is the instance.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OtherCpuRun:
    """The outcome: the auditor's verdict on another CPU capability and what the engine made of it."""

    transcript_dir: Path
    recorded_capability: str  # ATen's CPU capability where the run was recorded (this process)
    verifier_capability: str  # what the auditor's subprocess ran with
    returncode: int
    verdict: str | None  # None when the command printed no JSON result
    undecided: list[dict[str, Any]] = field(default_factory=list)  # the inconclusive checks
    failed: list[str] = field(default_factory=list)  # checks failed on the evidence (must stay empty)
    run_verified: str | None = None  # the engine's view of the run after the report
    violations: list[Any] = field(default_factory=list)
    stderr: str = ""
    seconds: float = 0.0

    @property
    def never_failed(self) -> bool:
        """The honest run was not failed: exit 0 or 8, verdict pass or inconclusive, no violation."""
        return (self.returncode in (0, 8) and self.verdict in ("pass", "inconclusive") and not self.failed
                and not self.violations)


class OtherCpu:
    """The baseline: ``run`` records, declares and verifies one honest run under another CPU capability."""

    name = "other-cpu"
    description = "an honest run verified under ATEN_CPU_CAPABILITY=default in a subprocess (never fail)"

    def run(self, workdir: str | Path, *, seed: int = 0, steps: int = 20, checkpoint_every: int = 10,
            capability: str = "default", timeout: float = 300) -> OtherCpuRun:
        import torch

        from redline.testing.attacks._binding import lab_run
        from redline.testing.scenario import Scenario

        began = time.perf_counter()
        out = Path(workdir) / self.name
        out.mkdir(parents=True, exist_ok=False)
        scenario = Scenario(out)
        run_id = f"cpu-{seed}"
        transcript = out / "transcript"
        lab_run(transcript, seed, steps, checkpoint_every, party="lab-a", run_id=run_id)
        scenario.declare_run("lab-a", transcript, f"lab-a-cpu-{seed}")
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability}
        cmd = [str(Path(sys.executable).parent / "redline"), "verify", "run", run_id, "--transcript", str(transcript),
               "--key", str(scenario.key_file("audit")), "--log", str(scenario.dir), "--submit", "--workers", "1",
               "--json"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        try:
            doc = json.loads(done.stdout)
        except json.JSONDecodeError:
            doc = {}
        checks = doc.get("checks", [])
        state = scenario.state()
        run = next((r for r in state.runs.values() if r.run_id == run_id), None)
        return OtherCpuRun(transcript_dir=transcript, recorded_capability=torch.backends.cpu.get_cpu_capability(),
                           verifier_capability=capability, returncode=done.returncode, verdict=doc.get("verdict"),
                           undecided=[c for c in checks if c.get("inconclusive")],
                           failed=[c["name"] for c in checks if not c.get("passed") and not c.get("inconclusive")],
                           run_verified=None if run is None else run.verified,
                           violations=[v for v in state.violations if v.party == "lab-a"],
                           stderr=done.stderr[-2000:], seconds=time.perf_counter() - began)


__all__ = ["OtherCpu", "OtherCpuRun"]
