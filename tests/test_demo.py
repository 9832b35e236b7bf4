"""``redline demo``: the whole scenario on real tiny training runs, through the CLI, on the embedded SQLite log."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from redline.cli.main import cli  # noqa: E402
from redline.cli.registry import open_registry_readonly  # noqa: E402


@pytest.fixture(scope="module")
def played(tmp_path_factory):
    base = tmp_path_factory.mktemp("demo") / "log"
    result = CliRunner().invoke(cli, ["demo", "--dir", str(base)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return base, result.output


def test_demo_pause_starts(played):
    _, out = played
    assert re.search(r"PAUSE \d+ starts at entry \d+ \('pause-line' crossed by lab-a at entry \d+\)", out)
    assert "acknowledges pause" in out and "pause " in out and "ends: a majority of bound parties approved" in out


def test_demo_trains_and_declares_a_real_run(played):
    base, out = played
    assert "lab-a trains A-1-tiny" in out and "60/60" in out
    assert re.search(r"lab-a run a-1: step 60, [\d.e+]+ FLOP", out) and "lab-a run a-1 finished" in out
    assert (base / "transcripts" / "a-1" / "manifest.json").exists()


def test_demo_honest_run_passes(played):
    base, out = played
    assert "verification of lab-a/a-1: pass" in out
    assert re.search(r"audit-co verifies lab-a/a-1 \(its RunFinish, entry \d+\): pass", out)
    st = open_registry_readonly(base)
    assert st.runs["lab-a/a-1"].verified == "pass" and st.runs["lab-a/a-1"].verified_final
    # every binding was checked: the RunStart's spec and checkpoint 0, the code, the initialisation
    for check in ("identity", "start", "commitments", "code", "init"):
        assert re.search(rf"│ {check} +│ yes", out), check


def test_demo_spoof_fails_at_a_step(played):
    base, out = played
    assert "verification of lab-c/c-3: fail" in out
    m = re.search(r"audit-co verifies lab-c/c-3 \(its RunFinish, entry \d+\): fail \(first bad step (\d+)\)", out)
    assert m, out
    # skipped-steps fakes every segment from the middle one on (steps 31..60 of 60)
    assert 31 <= int(m.group(1)) <= 60
    st = open_registry_readonly(base)
    assert st.runs["lab-c/c-3"].verified == "fail"


def test_demo_lists_the_violations(played):
    base, out = played
    kinds = {"training-during-pause", "missed-acknowledgement", "release-before-clearance", "failed-verification",
             "release-unverified-weights", "unexplained-compute-during-pause", "undeclared-run", "unregistered-cluster"}
    for kind in kinds:
        assert re.search(rf"^\s*{kind} by lab-[abc]: ", out, re.M), kind
    st = open_registry_readonly(base)
    assert {v.kind for v in st.violations} == kinds
    assert {(v.party, v.kind) for v in st.violations} >= {("lab-c", "failed-verification"),
                                                           ("lab-c", "missed-acknowledgement"),
                                                           ("lab-c", "unexplained-compute-during-pause"),
                                                           ("lab-c", "undeclared-run"),
                                                           ("lab-b", "release-unverified-weights")}
    # released weights that no verified run produced are a violation; the verified weights of a-1 are not
    unverified = [v for v in st.violations if v.kind == "release-unverified-weights"]
    assert [v.party for v in unverified] == ["lab-b"] and "B-7" in unverified[0].detail
    released = {r["model"]: r for r in st.releases}
    assert released["A-1-tiny"]["digest"] == st.runs["lab-a/a-1"].final_digest
    assert "receipt verified offline" in out


def test_the_demo_auditor_cannot_miss_the_spoof():
    """The spoof fakes steps 31..60 of 60; the demo's sample must meet one of them whatever seed the log gives. With
    the default policy (its 5% budget allows no draws on runs this short, so the floor of 7 applies) it missed
    about one demo in 128, and the demo then showed the spoof passing."""
    import hashlib

    from redline.cli import demo
    from redline.verify.policy import VerificationPolicy
    from redline.verify.sampling import SeedRange, choose_step_sample, draws_needed

    ends = list(range(demo.TINY_CHECKPOINT_EVERY, demo.TINY_STEPS + 1, demo.TINY_CHECKPOINT_EVERY))
    faked = {i for i, end in enumerate(ends) if end > demo.TINY_STEPS // 2}

    def misses(policy: VerificationPolicy, max_draws: int | None) -> int:
        missed = 0
        for k in range(2000):
            seed = hashlib.sha256(f"checkpoint {k}".encode()).digest()
            sample = choose_step_sample([SeedRange(1, demo.TINY_STEPS, seed, 19)], ends,
                                        target_p_detect=policy.target_p_detect,
                                        assumed_fake_fraction=policy.assumed_fake_fraction, max_draws=max_draws)
            missed += not set(sample.uniform) & faked
        return missed

    policy = demo.auditor_policy()
    assert policy.budget is None  # no cap on the draws
    assert draws_needed(policy.target_p_detect, policy.assumed_fake_fraction) >= 30
    assert misses(policy, None) == 0
    assert misses(VerificationPolicy(), 0) > 0  # the default policy on these runs: the floor alone
