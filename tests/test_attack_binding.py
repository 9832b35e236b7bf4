"""Binding attacks: the code a verifier runs, a run's start, its ownership and its end, attacked as a lab would,
each caught through the public API (``redline run start|declare``, the registry, ``verify_transcript`` with the
log's RunStart and declaration) in every one of 20 seeds — and the honest baseline through the same API passes.

Every run is tiny (the small tiny GPT, 20 steps, a checkpoint every 10) and every story has its own log.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from redline.testing.attacks import ATTACKS, BINDING_CASES, BindingRun  # noqa: E402

STEPS, EVERY = 20, 10
SEEDS = range(20)
#: The module the test puts on sys.path, named as the code-execution attack names its factory: importing it
#: records the import in a marker file beside it.
SENTINEL = "redline_test_sentinel"
SENTINEL_SOURCE = '''
from pathlib import Path

with open(Path(__file__).with_name("imported.txt"), "a") as f:
    f.write(__name__ + "\\n")


def run(*args, **kwargs):
    with open(Path(__file__).with_name("called.txt"), "a") as f:
        f.write(repr(args) + "\\n")
'''


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    """One torch thread: the runs are tiny, and two busy test workers oversubscribe two cores otherwise."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sentinel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path that records its own import (and any call of its ``run``) in files beside it."""
    d = tmp_path / "sentinel"
    d.mkdir()
    (d / f"{SENTINEL}.py").write_text(SENTINEL_SOURCE)
    monkeypatch.syspath_prepend(str(d))
    importlib.invalidate_caches()
    assert importlib.util.find_spec(SENTINEL) is not None  # importable: a verifier that imported it would run it
    assert SENTINEL not in sys.modules
    yield d
    sys.modules.pop(SENTINEL, None)


def _mount(tmp_path: Path, case: str, seed: int, **extra: Any) -> BindingRun:
    name, params = BINDING_CASES[case]
    s = ATTACKS[name].run(tmp_path, seed=seed, steps=STEPS, checkpoint_every=EVERY, **{**params, **extra})
    assert isinstance(s, BindingRun) and s.attack == name
    assert s.faked_segments == [] and s.declared.steps == STEPS  # nothing a replay could catch is faked
    assert s.stopped and s.details["faked"]
    return s


def _caught(s: BindingRun) -> None:
    assert s.caught, "\n".join(f"{'stopped' if ok else 'GOT THROUGH'}: {what}" for what, ok in s.stopped.items())


# --- the sentinel itself -------------------------------------------------------------------------------------


def test_the_sentinel_records_its_import(sentinel: Path) -> None:
    mod = importlib.import_module(SENTINEL)
    mod.run("echo", "pwned")
    assert (sentinel / "imported.txt").read_text() == f"{SENTINEL}\n"
    assert "pwned" in (sentinel / "called.txt").read_text()


# --- code execution ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_code_execution_unregistered_factory_is_never_run(tmp_path: Path, sentinel: Path, seed: int) -> None:
    s = _mount(tmp_path, "code-execution-unregistered", seed, module=SENTINEL)
    _caught(s)
    assert s.details["factory"]["name"] == SENTINEL and not s.details["fired"]
    assert not (sentinel / "imported.txt").exists() and not (sentinel / "called.txt").exists()
    assert SENTINEL not in sys.modules
    audit = s.audits["verify the run"]
    assert audit.verdict == "inconclusive"  # the verifier cannot decide, so it runs nothing
    code = audit.check("code")
    assert code.inconclusive and not code.passed and f"no factory {SENTINEL!r} is registered" in code.detail
    assert {c.name for c in audit.result.checks} >= {"declaration", "transcript", "identity", "start", "commitments"}
    assert not {c.name for c in audit.result.checks} & {"init", "data", "segments", "compute"}  # stopped at code
    assert all(c.passed for c in audit.result.checks if c.name != "code")
    # the log took the declaration and the inconclusive report: the run stays unverified (pending), not failed
    assert not any(a.refused for a in s.answers)
    run = _state(s).runs[f"lab-a/code-{seed}"]
    assert run.verified == "inconclusive" and not run.verified_final


def test_code_execution_with_the_attackers_own_payload_on_the_path(tmp_path: Path) -> None:
    """Without a sentinel from the caller the attack puts its own payload module on sys.path (as the bench runs it)."""
    from redline.testing.attacks.code_execution import PAYLOAD_MODULE

    s = _mount(tmp_path, "code-execution-unregistered", 0)
    _caught(s)
    payload = tmp_path / "code-execution" / "payload"
    assert (payload / f"{PAYLOAD_MODULE}.py").exists() and not (payload / f"{PAYLOAD_MODULE}.ran").exists()
    assert not s.details["fired"] and PAYLOAD_MODULE not in sys.modules and str(payload) not in sys.path
    assert s.audits["verify the run"].verdict == "inconclusive"


@pytest.mark.parametrize("seed", SEEDS)
def test_code_execution_module_path_is_refused_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        seed: int) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(os, "system", lambda *a, **k: calls.append(a) or 0)
    s = _mount(tmp_path, "code-execution-module-path", seed)
    _caught(s)
    assert calls == [] and not s.details["fired"] and s.details["target"] == "os:system"
    start, forged = s.answers
    assert start.refused and "model_factory.name" in start.error
    assert forged.refused and "InvalidStatement" in forged.error and "model_factory.name" in forged.error
    audit = s.audits["verify the transcript"]
    assert audit.verdict == "fail" and audit.failed_checks() == ["transcript"]
    assert "model_factory.name" in audit.check("transcript").detail
    assert len(audit.result.checks) == 1  # refused at load: nothing else looked at
    assert f"lab-a/code-{seed}" not in _state(s).runs  # nothing reached the log


def test_code_execution_module_path_naming_a_module_imports_nothing(tmp_path: Path, sentinel: Path) -> None:
    s = _mount(tmp_path, "code-execution-module-path", 0, target=f"{SENTINEL}:run")
    _caught(s)
    assert not (sentinel / "imported.txt").exists() and SENTINEL not in sys.modules
    assert s.audits["verify the transcript"].verdict == "fail"


# --- hidden pre-training -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_hidden_pretraining_is_caught_by_the_init_check(tmp_path: Path, seed: int) -> None:
    s = _mount(tmp_path, "hidden-pretraining", seed)
    _caught(s)
    assert s.cost > 10 and s.details["real_flop"] / s.details["declared_flop"] > 10
    assert s.details["checkpoint0"] != s.details["factory_output"]
    assert not any(a.refused for a in s.answers)  # the log cannot tell: the declarations are consistent
    audit = s.audits["verify the run"]
    assert audit.verdict == "fail" and audit.failed_checks() == ["init"]
    init = audit.check("init")
    assert not init.inconclusive and "seeded with" in init.detail and "did not start where it declares" in init.detail
    for name in ("start", "commitments", "code", "data", "segments", "compute"):  # every other binding holds
        assert audit.check(name).passed, name
    assert [v.kind for v in s.violations] == ["failed-verification"]


# --- transcript reuse ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_transcript_reuse_is_refused_and_fails_identity(tmp_path: Path, seed: int) -> None:
    s = _mount(tmp_path, "transcript-reuse", seed)
    _caught(s)
    assert s.cost == 0.0
    assert s.audits["lab A's run"].verdict == "pass"
    a_run = f"lab-a/a-{seed}"
    cli = s.answer("(i) lab-b: redline run start of lab A's transcript")
    assert cli.refused and "recorded for party 'lab-a'" in cli.error
    forged = s.answer("(i) lab-b: a RunStart carrying lab A's spec")
    assert forged.refused and f"is the spec of run {a_run}, not lab-b/" in forged.error
    for what in ("(ii) lab-b: a RunProgress carrying lab A's roots",
                 "(ii) lab-b: a RunFinish carrying lab A's roots and final weights"):
        answer = s.answer(what)
        assert answer.refused and f"roots already declared by run {a_run}" in answer.error, answer
    assert not s.answer("(iii) lab-b: redline run start of its relabelled copy").refused
    declare = s.answer("(iii) lab-b: redline run declare of its relabelled copy")
    assert declare.refused and f"already the final weights of run {a_run}" in declare.error
    assert s.details["copy_roots"] != s.details["victim_roots"]  # relabelled: its own roots ...
    assert s.details["copy_final_weights"] == s.details["victim_final_weights"]  # ... the same end
    state = _state(s)
    assert state.runs[a_run].verified_final and not state.runs[f"lab-b/b-{seed}"].finished
    as_b = s.audits["lab A's transcript verified as lab B's run"]
    assert as_b.verdict == "fail" and {"identity", "start", "commitments"} <= set(as_b.failed_checks())
    assert f"recorded for run {a_run}, not lab-b/b-{seed}" in as_b.check("identity").detail


def test_transcript_reuse_relabelled_copy_replays_as_the_honest_run_it_is(tmp_path: Path) -> None:
    """Re-execution cannot tell who ran an honest computation: B's relabelled copy verifies against B's accepted
    RunProgress. What stops B is the end: its RunFinish is refused (above), so the weights are never B's."""
    s = _mount(tmp_path, "transcript-reuse", 0, verify_copy=True)
    _caught(s)
    assert s.details["relabelled_copy_verdict"] == "pass"
    assert not _state(s).runs["lab-b/b-0"].verified_final


# --- releasing unverified weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_release_of_unverified_weights_raises_violations(tmp_path: Path, seed: int) -> None:
    s = _mount(tmp_path, "release-unverified-weights", seed)
    _caught(s)
    assert s.cost == 10.0 and s.details["longer_weights"] != s.details["verified_weights"]
    assert s.audits["lab A's run"].verdict == "pass"
    longer = s.answer(f"(a) lab-a: release lab-a-tiny-{seed} with weights trained 10x longer")
    renamed = s.answer(f"(b) lab-a: release the verified weights as lab-a-tiny-{seed}-renamed")
    assert not longer.refused and not renamed.refused  # a release is a fact; the engine judges it
    by_kind = {}
    for v in s.violations:
        by_kind.setdefault(v.kind, []).append(v)
    unverified = [v for v in by_kind.get("release-unverified-weights", []) if longer.indexes[0] in v.evidence]
    assert unverified and s.details["longer_weights"][:12] in unverified[0].detail
    without_review = [v for v in by_kind.get("release-without-review", []) if renamed.indexes[0] in v.evidence]
    assert without_review and len(without_review[0].evidence) >= 2  # the review requirement and the release
    assert f"run lab-a/a-{seed}" in without_review[0].detail  # the requirement followed the weights to their run
    assert not any(v.kind == "release-unverified-weights" and renamed.indexes[0] in v.evidence
                   for v in s.violations)  # the renamed weights are the verified ones


# --- the honest baseline through the same API ---------------------------------------------------------------


def test_honest_baseline_through_the_same_api_passes(tmp_path: Path) -> None:
    from redline.statements import ReviewDecision, ReviewSubmission
    from redline.testing.attacks._binding import honest_story
    from redline.testing.scenario import review_policy

    scenario, audit, manifest = honest_story(tmp_path, seed=0, steps=STEPS, checkpoint_every=EVERY,
                                             policy=review_policy())
    assert audit.verdict == "pass", [c for c in audit.result.checks if not c.passed]
    assert {c.name for c in audit.result.checks} >= {"declaration", "identity", "start", "commitments", "code",
                                                     "init", "data", "segments", "compute"}
    assert audit.report is not None and not audit.report.refused
    weights = manifest.checkpoints[-1].model_digest
    for answer in (scenario.say("submit for review", "lab-a", ReviewSubmission, submission_id="rev-1",
                                model_name="lab-a-tiny-0", model_digest={"sha256": weights}, run_id="honest-0"),
                   scenario.say("clear", "gov", ReviewDecision, submitter="lab-a", submission_id="rev-1",
                                decision="clear", reason="reviewed"),
                   scenario.release("lab-a", "lab-a-tiny-0", weights)):
        assert not answer.refused, answer
    state = scenario.state()
    assert state.runs["lab-a/honest-0"].verified_final
    assert state.violations == []


def _state(s: BindingRun) -> Any:
    from redline.cli.registry import open_registry

    reg = open_registry(Path(s.details["log"]))
    try:
        return reg.state
    finally:
        reg.log.store.close()
