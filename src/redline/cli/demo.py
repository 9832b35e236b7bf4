"""``redline demo``: a coordinated pause played through the real registry on the embedded SQLite log.

Three labs, a regulator, an auditor and the coordinator make signed statements;
the log takes them (its clock is simulated so that days pass in a second); the
engine replays the log into the state: commitments reach quorum, lab-a really
trains a tiny GPT with the transcript recorder (its RunStart commits to the run
spec and checkpoint 0 before the first step) and declares it, lab-c declares a
run backed by a spoofed transcript (the ``skipped-steps`` attack), a declared run
crosses the pause line, the pause starts, one lab misses its acknowledgement
deadline, another trains on, the auditor re-executes a log-seeded sample of both
transcripts, sized so that the spoof cannot slip through (on these 60-step runs it
reaches every segment): the honest one passes; the spoof fails at its bisected step,
which the engine records as a violation. A quorum resumes, a model released before
its review clears, whose weights no verified run produced, is caught, and the
verified weights of the honest run are released without a violation. Last, a
receipt is verified offline with nothing but the log's public key.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from redline.cli.logdir import create_log
from redline.cli.state_view import render_state
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey, save_signing_key
from redline.log.receipt import Receipt, verify_receipt
from redline.policy import load_pack
from redline.registry import Registry
from redline.statements import (
    Admission,
    AttestedUsage,
    ChipCount,
    Cluster,
    Commitment,
    ComputeAttestation,
    ComputeInventory,
    ComputeUsageReport,
    CountQuorum,
    PauseAcknowledgement,
    PolicyPublication,
    Predicate,
    Release,
    ResumeApproval,
    ResumeProposal,
    ReviewSubmission,
    RunProgress,
    RunStart,
    TranscriptCommitments,
    open_envelope,
    sign_predicate,
)
from redline.times import DAY_MS, HOUR_MS, from_ms, iso

if TYPE_CHECKING:
    from redline.verify.policy import VerificationPolicy

#: The real tiny runs: steps, checkpoint interval (six segments each).
TINY_STEPS = 60
TINY_CHECKPOINT_EVERY = 10
#: How the demo's auditor sizes its log-seeded sample: enough step draws that a run with half its steps faked
#: (lab-c's spoof fakes steps 31..60) escapes with probability 2**-30 at most. With the default policy (the floor
#: of 7 draws on runs this short) the spoof passed about one demo in 128.
DEMO_TARGET_P_DETECT = 1 - 2**-30
DEMO_ASSUMED_FAKE_FRACTION = 0.5


def auditor_policy() -> VerificationPolicy:
    """The demo auditor's ``VerificationPolicy``: no compute budget (the runs are tiny), and draws enough for
    ``DEMO_TARGET_P_DETECT`` against ``DEMO_ASSUMED_FAKE_FRACTION`` of the steps faked."""
    from redline.verify.policy import VerificationPolicy

    return VerificationPolicy.of(target_p_detect=DEMO_TARGET_P_DETECT,
                                 assumed_fake_fraction=DEMO_ASSUMED_FAKE_FRACTION, budget=None)


class _Scenario:
    def __init__(self, base: Path, console: Console) -> None:
        self.base = base
        self.console = console
        self.clock_ms = time.time_ns() // 1_000_000
        log_key = SigningKey.generate("redline.example/demo-log")
        self.log_key = log_key
        self.log = create_log(base, log_key, clock=lambda: self.clock_ms)
        self.keys = {"coordinator": SigningKey.generate("coordinator")}
        self.registry = Registry.genesis(self.log, self.keys["coordinator"])
        self.envelopes: dict[int, bytes] = {}
        self.verifications: list[tuple[str, str, Any]] = []  # (run party, run id, VerificationResult)

    def now(self) -> datetime:
        return from_ms(self.clock_ms).replace(microsecond=0)

    def wait(self, hours: float) -> None:
        self.clock_ms += int(hours * HOUR_MS)

    def submit(self, data: bytes) -> int:
        done = self.registry.submit(data)
        self.envelopes[done.index] = data
        self.wait(0.25)
        return done.index

    def say(self, who: str, cls: type[Predicate], **fields) -> int:
        pred = cls.build(party=who, seq=self.registry.next_seq(who), **fields)
        return self.submit(sign_predicate(pred, self.keys[who], log=self.log.origin).to_json())

    def key_file(self, who: str) -> Path:
        path = self.base / "keys" / f"{who}.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            save_signing_key(self.keys[who], path)
        return path


def _progress(console: Console, what: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _declare(s: _Scenario, lab: str, run_id: str, model_name: str, transcript: Path) -> int:
    """Sign and submit the RunProgress and RunFinish exactly as ``redline run declare`` makes them.

    Returns the log index of the RunFinish (the run's final declaration).
    """
    from redline.cli.run import run_declare

    out = s.base / "declarations" / f"{run_id}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_declare.callback(transcript=transcript, key_path=s.key_file(lab), run_id=run_id, model_name=model_name,
                         logdir=None, out=out, seq=s.registry.next_seq(lab), progress_step=None,
                         log_origin=s.log.origin)
    index = -1
    for line in out.read_bytes().splitlines():
        index = s.submit(line)
    return index


def _start_tiny(s: _Scenario, lab: str, run_id: str, model_name: str, cfg: Any, spec: Any,
                init_model_digest: str) -> int:
    """The lab's RunStart for a tiny run, planned at 6·N·D, committing to its run spec and checkpoint 0; returns N."""
    params = spec.parameter_count
    tokens = cfg.steps * cfg.batch_size * cfg.model_kwargs()["seq_len"]
    s.say(lab, RunStart, run_id=run_id, model_name=model_name, declared_flop=6.0 * params * tokens,
          flop_method="6ND", hardware=[ChipCount(chip_model="H100 SXM", count=1)], started_at=s.now(), spec=spec,
          init_model_digest=init_model_digest)
    return params


def _train_honest(s: _Scenario, run_id: str, model_name: str) -> tuple[Path, int]:
    """lab-a declares a run, trains a tiny GPT with the transcript recorder, and declares its commitments."""
    import torch

    from redline.transcript.tinygpt import TrainConfig, train

    cfg = TrainConfig(steps=TINY_STEPS, seed=7, party="lab-a", run_id=run_id)
    out = s.base / "transcripts" / run_id
    progress = _progress(s.console, f"lab-a trains {model_name}")
    params = 0

    def start(recorder: Any) -> None:  # before the first step: the RunStart commits to the spec and checkpoint 0
        nonlocal params
        params = _start_tiny(s, "lab-a", run_id, model_name, cfg, recorder.spec, recorder.initial_model_digest())

    with progress:
        task = progress.add_task("train", total=cfg.steps)
        result = train(cfg, out, checkpoint_every=TINY_CHECKPOINT_EVERY, count_flop=True, on_start=start,
                       on_step=lambda step, model, opt: progress.update(task, completed=step))
    m = result.manifest
    assert m is not None
    s.console.print(f"  tiny GPT, {params:,} parameters, recorded: {cfg.steps} steps in {result.seconds:.1f} s on "
                    f"{torch.get_num_threads()} thread, loss "
                    f"{result.losses[0]:.3f} → {result.losses[-1]:.3f}; {len(m.checkpoints)} checkpoints; "
                    f"steps root {m.commitments.steps_root[:16]}…")
    s.wait(6)
    return out, _declare(s, "lab-a", run_id, model_name, out)


def _spoof(s: _Scenario, run_id: str, model_name: str) -> tuple[Path, int]:
    """lab-c backs a declared run with a transcript forged by the ``skipped-steps`` attack."""
    from redline.testing.attacks import ATTACKS
    from redline.testing.attacks._forge import make_config
    from redline.transcript import load_transcript

    attack = ATTACKS["skipped-steps"]
    seed = 11
    with s.console.status(f"lab-c writes a transcript for {model_name} with the '{attack.name}' attack"):
        spoof = attack.run(s.base / "transcripts" / run_id, seed=seed, steps=TINY_STEPS,
                           checkpoint_every=TINY_CHECKPOINT_EVERY, fraction=0.25,
                           config={"party": "lab-c", "run_id": run_id})
    t = load_transcript(spoof.transcript_dir, verify_checkpoints=False)
    _start_tiny(s, "lab-c", run_id, model_name, make_config(seed, TINY_STEPS), t.spec,
                t.checkpoints[0].entry.model_digest)
    s.console.print(f"  lab-c {attack.description}: segments {spoof.faked_segments} faked (steps "
                    f"{spoof.faked_starts()[0] + 1}..{TINY_STEPS}), at {spoof.cost:.0%} of the honest compute")
    s.wait(6)
    return spoof.transcript_dir, _declare(s, "lab-c", run_id, model_name, spoof.transcript_dir)


def _verify(s: _Scenario, run_party: str, run_id: str, transcript: Path, index: int) -> Any:
    """audit-co verifies a declared run from its transcript with a log-seeded sample, signs and submits."""
    from redline.verify import sign_report, verify_transcript
    from redline.verify.logged import logged_run

    logged = logged_run(s.log, run_id, run_party)
    decl, decl_index = logged.declaration, logged.index
    assert decl_index == index
    ranges = logged.ranges
    s.console.print(f"audit-co verifies {run_party}/{run_id}: {decl.KIND} #{decl.seq} at entry {index}; seeds = "
                    + ", ".join(f"steps {r.first_step}..{r.last_step}: SHA-256 of the log checkpoint of size "
                                f"{r.checkpoint_size} ({r.seed.hex()[:16]}…)" for r in ranges))
    progress = _progress(s.console, f"re-executing segments of {run_party}/{run_id}")
    task = None

    def on_sample(sample: Any) -> None:
        nonlocal task
        task = progress.add_task("segments", total=len(sample.indexes))

    def on_segment(outcome: Any) -> None:
        if task is not None:
            progress.advance(task)

    with progress:
        result = verify_transcript(transcript, seed=ranges, declaration=decl, extra_checks=logged.checks,
                                   policy=auditor_policy(), workers=1, on_sample=on_sample, on_segment=on_segment,
                                   run_start=logged.start,
                                   run=(run_party, run_id), declaration_index=decl_index, earlier=logged.earlier)
    style = "green" if result.passed else "bold red"
    table = Table(title=f"verification of {run_party}/{run_id}: [{style}]{result.verdict}[/]")
    for col in ("check", "passed", "detail"):
        table.add_column(col, overflow="fold")
    for c in result.checks:
        table.add_row(c.name, "yes" if c.passed else "[bold red]NO[/]", c.detail)
    s.console.print(table)
    line = (f"  verdict [{style}]{result.verdict}[/]: {result.segments_checked} segments re-executed, "
            f"{result.verification_fraction:.0%} of steps, P(detect) ≥ {result.p_detect:.3f}")
    if result.failing_step is not None:
        line += f"; [bold red]first bad step {result.failing_step}[/] ({result.bisect.method})"
    s.console.print(line)
    env = sign_report(result, s.keys["audit-co"], seq=s.registry.next_seq("audit-co"), run_id=run_id,
                      run_party=run_party, log=s.log.origin)
    s.submit(env.to_json())
    s.verifications.append((run_party, run_id, result))
    return result


def _play(s: _Scenario, real_runs: bool) -> None:
    for name, role, jur in (("lab-a", "lab", "US-CA"), ("lab-b", "lab", "UK"), ("lab-c", "lab", "EU"),
                            ("aisi", "regulator", "UK"), ("audit-co", "auditor", "EU"),
                            ("cloud-x", "provider", "US-VA")):
        s.keys[name] = SigningKey.generate(name)
        s.say("coordinator", Admission, admitted=name, verifier_key=s.keys[name].verifier().to_string(), role=role,
              display_name=name.upper(), jurisdiction=jur)
    policy = load_pack("coordinated-pause")
    s.say("coordinator", PolicyPublication, policy_id=policy.id, version=str(policy.version),
          document=policy.document(), document_digest=policy.digest, effective_from=s.now(), supersedes=[])
    for lab, chips in (("lab-a", 20000), ("lab-b", 12000), ("lab-c", 8000)):
        s.say(lab, ComputeInventory, as_of=s.now(), clusters=[
            Cluster(cluster_id="main", site="datacenter", chips=[ChipCount(chip_model="H100 SXM", count=chips)])])
    for lab in ("lab-a", "lab-b", "lab-c"):
        s.say(lab, Commitment, policy_digest=policy.digest, pauses=["training", "releases"],
              quorum=CountQuorum(kind="count", threshold=3), expires_at=s.now() + timedelta(days=365))
    honest = spoofed = None
    if real_runs:
        honest = _train_honest(s, "a-1", "A-1-tiny")
        spoofed = _spoof(s, "c-3", "C-3-tiny")
    s.say("lab-b", RunStart, run_id="b-7", model_name="B-7", declared_flop=2e24, flop_method="6ND",
          hardware=[ChipCount(chip_model="H100 SXM", count=4000)], started_at=s.now())
    s.say("lab-a", RunStart, run_id="a-9", model_name="A-9", declared_flop=2.4e25, flop_method="6ND",
          hardware=[ChipCount(chip_model="H100 SXM", count=16000)], started_at=s.now())
    pause = s.registry.state.pauses[0]
    s.console.print(f"[bold red]pause {pause.pause_id} starts[/] at entry {pause.started_index} "
                    f"({iso(pause.started_ms)}): entry {pause.trigger_index} crosses the pause line; it binds "
                    f"{', '.join(pause.bound)}")
    pause_id = pause.pause_id
    s.wait(5)
    s.say("lab-a", PauseAcknowledgement, pause_id=pause_id)
    s.say("lab-b", PauseAcknowledgement, pause_id=pause_id)
    s.wait(30)
    root = "0" * 64
    s.say("lab-b", RunProgress, run_id="b-7", step=9000, flop_so_far=3e23, as_of=s.now(), spec_digest=None,
          commitments=TranscriptCommitments(steps_root=root, data_root=root, checkpoints_root=root, step_count=9000))
    if honest is not None and spoofed is not None:
        s.wait(4)
        _verify(s, "lab-a", "a-1", *honest)
        s.wait(4)
        _verify(s, "lab-c", "c-3", *spoofed)
    s.wait(48)
    start = s.now() - timedelta(days=3)
    for lab in ("lab-a", "lab-b"):
        s.say(lab, ComputeUsageReport, period_start=start, period_end=s.now(), runs=[], unaccounted_chip_hours=0.0)
    s.say("lab-a", ResumeProposal, proposal_id="resume-1", reason="safety case for A-9 accepted by all parties")
    s.say("lab-a", ResumeApproval, proposal_id="resume-1")
    s.say("lab-c", ResumeApproval, proposal_id="resume-1")
    s.say("lab-b", ReviewSubmission, submission_id="rev-b7", model_name="B-7",
          model_digest={"sha256": "ab" * 32}, run_id="b-7")
    s.wait(24 * 3)
    # releases are checked by weights digest: B-7's weights come from no verified run (and its review is open)
    s.say("lab-b", Release, model_name="B-7", model_digest={"sha256": "ab" * 32}, released_at=s.now())
    if honest is not None:  # the verified weights of lab-a's tiny run may be released: they are what was verified
        final = next(r for r in s.registry.state.runs.values() if r.run_id == "a-1")
        s.say("lab-a", Release, model_name="A-1-tiny", model_digest={"sha256": final.final_digest},
              released_at=s.now())
    _hidden_training(s, pause)


def _hidden_training(s: _Scenario, pause) -> None:  # type: ignore[no-untyped-def]
    """lab-c trained on rented chips during the pause and declared nothing; its cloud provider's attestation of the
    week catches it (unexplained compute beyond the paused limit, and a tagged run nobody declared)."""
    period = 7 * DAY_MS
    start = pause.started_ms - pause.started_ms % period  # the attestation week the pause began in
    s.clock_ms = max(s.clock_ms, start + period + HOUR_MS)
    s.say("cloud-x", ComputeAttestation, customer="lab-c", period_start=from_ms(start),
          period_end=from_ms(start + period),
          usage=[AttestedUsage(cluster_id="rented-7", chip_model="H100 SXM", chip_count=4096,
                               chip_hours=4096 * 168 * 0.8)], run_ids=["c-hidden"], final=True)


def _runs_table(st) -> Table:
    t = Table(title="training runs")
    for col in ("party", "run", "model", "last step", "FLOP", "finished", "final weights", "verified", "entries"):
        t.add_column(col)
    verdicts = {"pass": "[green]pass[/]", "fail": "[bold red]fail[/]"}
    for r in st.runs.values():
        weights = (r.final_digest[:12] + "…" + (" [green](verified)[/]" if r.verified_final else "")
                   if r.final_digest else "")
        t.add_row(r.party, r.run_id, r.model_name, str(r.last_step) if r.last_step else "", f"{r.compute:.3g}",
                  "yes" if r.finished else "", weights, verdicts.get(r.verified or "", r.verified or ""),
                  ", ".join(map(str, r.indexes)))
    return t


def _torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo log here (must not already hold one) instead of a temporary folder.")
def demo(workdir: Path | None) -> None:
    """Play a coordinated pause through the registry on a fresh embedded log, and print it."""
    console = Console()
    began = time.perf_counter()
    real_runs = _torch_available()
    with tempfile.TemporaryDirectory(prefix="redline-demo-") as tmp:
        base = workdir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        s = _Scenario(base, console)
        console.print(Panel.fit(f"log [bold]{s.log.origin}[/] in {base}\nlog key {s.log_key.verifier().to_string()}",
                                title="redline demo: a coordinated pause"))
        if not real_runs:
            console.print("[yellow]torch is not installed[/] (pip install 'redline[torch]'): the real training "
                          "and verification are left out")
        threads = None
        if real_runs:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # the tiny runs are recorded, and replayed bitwise, on one thread
        try:
            _play(s, real_runs)
        finally:
            if threads is not None:
                import torch

                torch.set_num_threads(threads)
        st = s.registry.state
        timeline = Table(title="timeline (logged time)")
        for col in ("entry", "time (UTC)", "what"):
            timeline.add_column(col)
        styles = {"pause": "bold red", "violation": "red", "resume": "bold green", "crossing": "yellow"}
        for ev in st.timeline:
            style = styles.get(ev.kind)
            if ev.kind == "verification":
                style = "green" if ev.text.endswith(": pass") else "bold red"
            timeline.add_row(str(ev.index), iso(ev.time_ms), Text(ev.text), style=style)
        console.print(timeline)
        render_state(st, console, where=base)
        console.print(_runs_table(st))
        console.print(f"[bold]{len(st.violations)} violations[/]:")
        for v in st.violations:
            console.print(f"  [red]{v.kind}[/] by {v.party}: {v.detail} (entries {', '.join(map(str, v.evidence))})")
        console.print(Panel(s.log.checkpoint().decode(), title="signed checkpoint (C2SP tlog-checkpoint)"))

        index = st.pauses[0].trigger_index
        receipt = s.log.receipt(index).encode()
        console.print(Panel(receipt.decode(), title=f"receipt for entry {index}, the run that started the pause"))
        cp, t = verify_receipt(Receipt.parse(receipt), s.envelopes[index], s.log_key.verifier())
        pred, signer = open_envelope(Envelope.from_json(s.envelopes[index]), [s.keys["lab-a"].verifier()])
        console.print(f"[green]receipt verified offline[/]: entry {index} ({pred.KIND} by {signer.name}) is in "
                      f"{cp.origin} at size {cp.size}, logged {iso(t)}")
        console.print(f"state digest {st.digest()} — any replay of this log gives the same")
        console.print(f"demo played in {time.perf_counter() - began:.1f} s")
        s.log.store.close()
        if workdir is not None:  # kept: serve it, with the public dashboard (its key lets the server append)
            if not (base / "log.key").exists():
                save_signing_key(s.log_key, base / "log.key")
            console.print(f"dashboard of this log: [bold]redline serve {escape(str(base))}[/], then open "
                          "http://127.0.0.1:8080/")
        else:
            console.print("to browse this log in the dashboard, keep it: [bold]redline demo --dir DIR[/], then "
                          "[bold]redline serve DIR[/] and open http://127.0.0.1:8080/")
