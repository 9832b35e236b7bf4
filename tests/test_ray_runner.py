"""Re-executing sampled segments on Ray (``redline verify run --ray``): a recorded tiny run verified through a
local Ray instance (2 CPUs, loopback, no dashboard) gives the same report digest as the local runner, and a
forged checkpoint fails there too. Skips without the ``ray`` extra."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
torch = pytest.importorskip("torch")

from click.testing import CliRunner
from verify_helpers import MODEL, tamper_checkpoint

from redline.cli.main import cli
from redline.crypto.keys import SigningKey, save_signing_key
from redline.transcript.tinygpt import TrainConfig, train
from redline.verify import VerificationPolicy, verify_transcript
from redline.verify.ray_runner import RayRunner
from redline.verify.segments import LocalRunner

SEED = hashlib.sha256(b"ray test seed").digest()
POLICY = VerificationPolicy(target_p_detect=0.5, largest=1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recorded tiny run: 40 steps, a checkpoint every 10."""
    path = tmp_path_factory.mktemp("ray") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(TrainConfig(steps=40, seed=3, batch_size=2, model=MODEL, party="lab-a", run_id="r1"), path,
              checkpoint_every=10)
    finally:
        torch.set_num_threads(before)
    return path


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance for the module (2 CPUs, loopback only, no dashboard)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        yield
    finally:
        ray.shutdown()


def _digest(result) -> str:  # type: ignore[no-untyped-def]
    return result.to_predicate(party="auditor-a", seq=1, run_id="r1", run_party="lab-a").digest


def test_ray_gives_the_local_runners_report(recorded: Path, local_ray: None) -> None:
    local = verify_transcript(recorded, seed=SEED, policy=POLICY, runner=LocalRunner(1))
    seen: list[int] = []
    on_ray = verify_transcript(recorded, seed=SEED, policy=POLICY, runner=RayRunner(),
                               on_segment=lambda o: seen.append(o.index))
    assert local.verdict == on_ray.verdict == "pass"
    assert len(on_ray.outcomes) >= 2 and sorted(seen) == sorted(o.index for o in on_ray.outcomes)
    assert [o.to_json() | {"seconds": 0} for o in on_ray.outcomes] == \
        [o.to_json() | {"seconds": 0} for o in local.outcomes]
    assert _digest(on_ray) == _digest(local)
    assert ray.is_initialized()  # a runner that did not start Ray leaves it running


def test_ray_fails_a_forged_checkpoint_like_the_local_runner(recorded: Path, tmp_path: Path,
                                                            local_ray: None) -> None:
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(recorded, forged)
    tamper_checkpoint(forged, 20, 1e-3)
    full = VerificationPolicy(budget=None)
    local = verify_transcript(forged, seed=SEED, policy=full, runner=LocalRunner(1))
    on_ray = verify_transcript(forged, seed=SEED, policy=full, runner=RayRunner())
    assert local.verdict == on_ray.verdict == "fail"
    assert _digest(on_ray) == _digest(local) and on_ray.failing_step == local.failing_step


def test_verify_run_cli_with_ray(recorded: Path, tmp_path: Path, local_ray: None) -> None:
    key = tmp_path / "audit.key"
    save_signing_key(SigningKey.generate("audit-a"), key)
    args = ["verify", "run", "r1", "--transcript", str(recorded), "--key", str(key), "--run-party", "lab-a",
            "--seed", SEED.hex(), "--json", "--target-p-detect", "0.5"]
    on_ray = CliRunner().invoke(cli, [*args, "--ray"])
    local = CliRunner().invoke(cli, [*args, "--workers", "1"])
    assert on_ray.exit_code == local.exit_code == 0, on_ray.output
    a, b = json.loads(on_ray.stdout), json.loads(local.stdout)
    assert a["verdict"] == b["verdict"] == "pass"
    assert a["sample"] == b["sample"] and [c["passed"] for c in a["checks"]] == [c["passed"] for c in b["checks"]]
    assert "--ray [ADDRESS]" in CliRunner().invoke(cli, ["verify", "run", "--help"]).output
