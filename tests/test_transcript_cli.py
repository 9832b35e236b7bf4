"""``redline run start`` and ``redline run declare``: a transcript becomes a signed RunStart (its run spec and
checkpoint 0), RunProgress and RunFinish, written or submitted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from redline.cli.main import cli
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey, save_signing_key
from redline.engine import Entry, replay
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.statements import open_envelope
from redline.statements.runs import RunFinish, RunProgress, RunStart
from redline.transcript import Recorder, load_transcript
from redline.transcript.format import Init
from redline.transcript.tinygpt import TrainConfig, train

ORIGIN = "redline.test/run-log"
MODEL = {"seq_len": 16, "d_model": 16, "n_layer": 1, "n_head": 2}


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def ok(*args: str | Path) -> Result:
    result = run(*args)
    assert result.exit_code == 0, f"redline {' '.join(map(str, args))} exited {result.exit_code}:\n{result.output}"
    return result


@pytest.fixture(scope="module")
def transcript(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("run") / "t"
    train(TrainConfig(steps=30, seed=1, batch_size=2, model=MODEL, party="lab-a", run_id="r1"), path,
          checkpoint_every=10)
    torch.set_num_threads(before)
    return path


@pytest.fixture
def lab_key(tmp_path: Path) -> tuple[SigningKey, Path]:
    key = SigningKey.generate("lab-a")
    path = tmp_path / "lab-a.key"
    save_signing_key(key, path)
    return key, path


@pytest.fixture
def logdir(tmp_path: Path, lab_key: tuple[SigningKey, Path]) -> Iterator[Path]:
    """A log with a coordinator and the admitted lab ``lab-a``."""
    d = tmp_path / "log"
    ok("log", "init", d, "--origin", ORIGIN)
    coord = tmp_path / "coord.key"
    save_signing_key(SigningKey.generate("coordinator"), coord)
    ok("party", "genesis", d, "--key", coord)
    ok("party", "admit", d, lab_key[0].verifier().to_string(), "--role", "lab", "--display-name", "Lab A",
       "--jurisdiction", "EU", "--key", coord)
    yield d


def _run_start(logdir: Path, key_path: Path, transcript: Path, model: str = "tiny-1") -> None:
    ok("run", "start", transcript, "--key", key_path, "--model-name", model, "--declared-flop", "1e12",
       "--submit", logdir)


def _state(logdir: Path):
    log = Log.open(SqliteStore(logdir / "log.db"))
    return replay(Entry(i, t, e) for i, t, e in log.entries())


def test_declare_writes_signed_progress_and_finish(transcript: Path, lab_key: tuple[SigningKey, Path],
                                                   tmp_path: Path) -> None:
    key, key_path = lab_key
    out = tmp_path / "declarations.jsonl"
    ok("run", "declare", transcript, "--key", key_path, "--run-id", "r1", "--model-name", "tiny-1",
       "--seq", "4", "--out", out, "--log-origin", ORIGIN)
    lines = out.read_bytes().splitlines()
    assert len(lines) == 2
    (progress, _), (finish, _) = (open_envelope(Envelope.from_json(line), [key.verifier()]) for line in lines)
    assert isinstance(progress, RunProgress) and isinstance(finish, RunFinish)
    t = load_transcript(transcript)
    per_step = t.manifest.flop.per_step
    assert (progress.seq, finish.seq) == (4, 5)
    assert progress.step == 30 and progress.commitments == t.commitments_at(30) == t.commitments
    assert finish.commitments == t.commitments
    assert finish.commitments.step_count == 30
    assert finish.final_model_digest == {"sha256": t.checkpoints[-1].entry.model_digest}
    assert finish.total_flop == finish.flop_estimates.counted == per_step * 30
    assert finish.flop_estimates.six_nd == 6 * t.manifest.parameter_count * t.manifest.tokens
    assert finish.finished_at == t.manifest.finished_at
    assert progress.spec_digest == finish.spec_digest == t.spec_digest
    assert finish.manifest_digest == t.manifest.digest()


def test_start_signs_the_whole_run_spec_and_checkpoint_0(transcript: Path, lab_key: tuple[SigningKey, Path]) -> None:
    key, key_path = lab_key
    result = ok("run", "start", transcript, "--key", key_path, "--model-name", "tiny-1", "--declared-flop", "1e12",
                "--hardware", "H100 SXM=8", "--seq", "3", "--log-origin", ORIGIN)
    start, _ = open_envelope(Envelope.from_json(result.stdout_bytes.strip()), [key.verifier()])
    t = load_transcript(transcript)
    assert isinstance(start, RunStart) and start.seq == 3 and start.run_id == "r1"
    assert start.spec == t.spec and start.spec_digest == t.spec_digest
    assert start.init_model_digest == t.checkpoints[0].entry.model_digest
    assert [c.count for c in start.hardware] == [8]


def test_start_works_before_the_first_step(lab_key: tuple[SigningKey, Path], tmp_path: Path) -> None:
    key, key_path = lab_key
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    rec = Recorder(tmp_path / "t", model, torch.optim.SGD(model.parameters(), lr=0.1), party="lab-a",
                   run_id="early", init=Init(kind="fresh", seed=0)).start()
    try:
        result = ok("run", "start", tmp_path / "t", "--key", key_path, "--model-name", "m", "--declared-flop", "1",
                    "--seq", "1", "--log-origin", ORIGIN)  # no manifest yet: checkpoint 0 is read from its blob
        start, _ = open_envelope(Envelope.from_json(result.stdout_bytes.strip()), [key.verifier()])
        assert start.init_model_digest == rec.initial_model_digest()
    finally:
        rec.close()


def test_start_and_declare_refuse_a_transcript_of_another_run(transcript: Path, tmp_path: Path) -> None:
    other = tmp_path / "lab-b.key"
    save_signing_key(SigningKey.generate("lab-b"), other)
    result = run("run", "start", transcript, "--key", other, "--model-name", "m", "--declared-flop", "1",
                 "--seq", "1")
    assert result.exit_code == 65 and "recorded for party 'lab-a'" in result.stderr
    result = run("run", "declare", transcript, "--key", other, "--run-id", "r1", "--model-name", "m", "--seq", "1")
    assert result.exit_code == 65 and "recorded for run lab-a/r1, not lab-b/r1" in result.stderr


def test_declare_progress_at_an_earlier_checkpoint(transcript: Path, lab_key: tuple[SigningKey, Path]) -> None:
    key, key_path = lab_key
    result = ok("run", "declare", transcript, "--key", key_path, "--run-id", "r1", "--model-name", "tiny-1",
                "--seq", "1", "--progress-step", "20", "--log-origin", ORIGIN)
    progress, _ = open_envelope(Envelope.from_json(result.stdout_bytes.splitlines()[0]), [key.verifier()])
    t = load_transcript(transcript)
    assert progress.step == 20 and progress.commitments == t.commitments_at(20)
    assert progress.flop_so_far == t.manifest.flop.per_step * 20
    assert run("run", "declare", transcript, "--key", key_path, "--run-id", "r1", "--model-name", "tiny-1",
               "--seq", "1", "--progress-step", "15", "--log-origin", ORIGIN).exit_code == 2


def test_declare_needs_a_sequence_number_when_not_submitting(transcript: Path,
                                                             lab_key: tuple[SigningKey, Path]) -> None:
    result = run("run", "declare", transcript, "--key", lab_key[1], "--run-id", "r1", "--model-name", "m")
    assert result.exit_code == 2 and "--seq" in result.stderr


def test_declare_submits_through_the_registry_after_a_run_start(transcript: Path, logdir: Path,
                                                                lab_key: tuple[SigningKey, Path],
                                                                tmp_path: Path) -> None:
    _run_start(logdir, lab_key[1], transcript)
    result = ok("run", "declare", transcript, "--key", lab_key[1], "--run-id", "r1", "--model-name", "tiny-1",
                "--submit", logdir)
    assert "run-progress #2" in result.stdout and "run-finish #3" in result.stdout
    state = _state(logdir)
    run_state = next(r for r in state.runs.values() if r.run_id == "r1")
    t = load_transcript(transcript)
    assert run_state.finished and run_state.last_step == 30
    assert run_state.total_flop == t.manifest.flop.per_step * 30
    assert not state.rejected


def test_declare_refuses_to_submit_without_a_run_start(transcript: Path, logdir: Path,
                                                       lab_key: tuple[SigningKey, Path]) -> None:
    result = run("run", "declare", transcript, "--key", lab_key[1], "--run-id", "r1", "--model-name", "tiny-1",
                 "--submit", logdir)
    assert result.exit_code == 65
    assert "no run 'r1' declared by 'lab-a'" in result.stderr and "RunStart" in result.stderr
    assert _state(logdir).next_index == 2  # genesis and admission only


def test_declare_refuses_another_model_name(transcript: Path, logdir: Path, lab_key: tuple[SigningKey, Path],
                                            tmp_path: Path) -> None:
    _run_start(logdir, lab_key[1], transcript, model="tiny-1")
    result = run("run", "declare", transcript, "--key", lab_key[1], "--run-id", "r1", "--model-name", "other",
                 "--submit", logdir)
    assert result.exit_code == 65 and "declared for model 'tiny-1', not 'other'" in result.stderr


def test_declare_refuses_a_tampered_transcript_naming_the_file(transcript: Path, lab_key: tuple[SigningKey, Path],
                                                               tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(transcript, bad)
    raw = bytearray((bad / "data.jsonl").read_bytes())
    raw[30] ^= 1
    (bad / "data.jsonl").write_bytes(bytes(raw))
    result = run("run", "declare", bad, "--key", lab_key[1], "--run-id", "r1", "--model-name", "m", "--seq", "1")
    assert result.exit_code == 65 and "data.jsonl" in result.stderr


def test_declare_without_counted_flop_uses_6nd_and_says_so(lab_key: tuple[SigningKey, Path], tmp_path: Path) -> None:
    key, key_path = lab_key
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(tmp_path / "t", model, opt, party="lab-a", run_id="r2", init=Init(kind="fresh", seed=0),
                  checkpoint_every=2) as rec:
        for _i in range(4):
            x = torch.randn(5, 4)
            opt.zero_grad()
            loss = model(x).square().mean()
            loss.backward()
            opt.step()
            rec.step({"x": x}, loss, tokens=5)
    result = ok("run", "declare", tmp_path / "t", "--key", key_path, "--run-id", "r2", "--model-name", "m",
                "--seq", "1", "--log-origin", ORIGIN)
    assert "could not be counted" in result.stderr and "declares no data source" in result.stderr
    assert "6·N·D" in result.stderr
    finish, _ = open_envelope(Envelope.from_json(result.stdout_bytes.splitlines()[1]), [key.verifier()])
    assert finish.total_flop == finish.flop_estimates.six_nd == 6 * 15 * 20
    assert finish.flop_estimates.counted is None and finish.estimates_disagree is False


def test_written_envelopes_can_be_submitted_later(transcript: Path, logdir: Path, lab_key: tuple[SigningKey, Path],
                                                  tmp_path: Path) -> None:
    _run_start(logdir, lab_key[1], transcript)
    out = tmp_path / "declarations.jsonl"
    ok("run", "declare", transcript, "--key", lab_key[1], "--run-id", "r1", "--model-name", "tiny-1",
       "--seq", "2", "--out", out, "--log-origin", ORIGIN)
    for i, line in enumerate(out.read_bytes().splitlines()):
        f = tmp_path / f"envelope-{i}.json"
        f.write_bytes(line)
        ok("submit", logdir, f)
    run_state = next(r for r in _state(logdir).runs.values() if r.run_id == "r1")
    assert run_state.finished and run_state.last_step == 30
