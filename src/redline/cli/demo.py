"""``redline demo``: a coordinated pause played through the real registry on the embedded SQLite log.

Three labs, a regulator, an auditor and the coordinator make signed statements;
the log takes them (its clock is simulated so that days pass in a second); the
engine replays the log into the state: commitments reach quorum, a declared run
crosses the pause line, the pause starts, one lab misses its acknowledgement
deadline, another trains on, a quorum resumes, and a model released before its
review clears is caught. Last, a receipt is verified offline with nothing but the
log's public key.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from redline.cli.registry import render_state
from redline.crypto.dsse import Envelope
from redline.crypto.keys import SigningKey
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import load_pack
from redline.registry import Registry, utc_from_ms
from redline.statements import (
    Admission,
    ChipCount,
    Cluster,
    Commitment,
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

HOUR_MS = 3_600_000


class _Scenario:
    def __init__(self, base: Path) -> None:
        self.clock_ms = time.time_ns() // 1_000_000
        log_key = SigningKey.generate("redline.example/demo-log")
        self.log_key = log_key
        self.log = Log.create(SqliteStore(base / "log.db", create=True), log_key, clock=lambda: self.clock_ms)
        self.keys = {"coordinator": SigningKey.generate("coordinator")}
        self.registry = Registry.genesis(self.log, self.keys["coordinator"])
        self.envelopes: dict[int, bytes] = {}

    def now(self) -> datetime:
        return utc_from_ms(self.clock_ms).replace(microsecond=0)

    def wait(self, hours: float) -> None:
        self.clock_ms += int(hours * HOUR_MS)

    def say(self, who: str, cls: type[Predicate], **fields) -> int:
        pred = cls.build(party=who, seq=self.registry.next_seq(who), **fields)
        data = sign_predicate(pred, self.keys[who]).to_json()
        done = self.registry.submit(data)
        self.envelopes[done.index] = data
        self.wait(0.25)
        return done.index


def _play(s: _Scenario) -> None:
    for name, role, jur in (("lab-a", "lab", "US-CA"), ("lab-b", "lab", "UK"), ("lab-c", "lab", "EU"),
                            ("aisi", "regulator", "UK"), ("audit-co", "auditor", "EU")):
        s.keys[name] = SigningKey.generate(name)
        s.say("coordinator", Admission, admitted=name, verifier_key=s.keys[name].verifier().to_string(), role=role,
              display_name=name.upper(), jurisdiction=jur)
    policy = load_pack("coordinated-pause")
    s.say("coordinator", PolicyPublication, policy_id=policy.id, version=str(policy.version),
          document=policy.document(), document_digest=policy.digest, effective_from=s.now())
    for lab, chips in (("lab-a", 20000), ("lab-b", 12000), ("lab-c", 8000)):
        s.say(lab, ComputeInventory, as_of=s.now(), clusters=[
            Cluster(cluster_id="main", site="datacenter", chips=[ChipCount(chip_model="H100 SXM", count=chips)])])
    for lab in ("lab-a", "lab-b", "lab-c"):
        s.say(lab, Commitment, policy_digest=policy.digest, pauses=["training", "releases"],
              quorum=CountQuorum(kind="count", threshold=3), expires_at=s.now() + timedelta(days=365))
    s.say("lab-b", RunStart, run_id="b-7", model_name="B-7", declared_flop=2e24, flop_method="6ND",
          hardware=[ChipCount(chip_model="H100 SXM", count=4000)], started_at=s.now())
    s.say("lab-a", RunStart, run_id="a-9", model_name="A-9", declared_flop=2.4e25, flop_method="6ND",
          hardware=[ChipCount(chip_model="H100 SXM", count=16000)], started_at=s.now())
    pause_id = s.registry.state.pauses[0].pause_id
    s.wait(5)
    s.say("lab-a", PauseAcknowledgement, pause_id=pause_id)
    s.say("lab-b", PauseAcknowledgement, pause_id=pause_id)
    s.wait(30)
    root = "0" * 64
    s.say("lab-b", RunProgress, run_id="b-7", step=9000, flop_so_far=3e23, as_of=s.now(),
          commitments=TranscriptCommitments(steps_root=root, data_root=root, checkpoints_root=root, step_count=9000))
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
    s.say("lab-b", Release, model_name="B-7", model_digest={"sha256": "ab" * 32}, released_at=s.now())


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo log here (must not already hold one) instead of a temporary folder.")
def demo(workdir: Path | None) -> None:
    """Play a coordinated pause through the registry on a fresh embedded log, and print it."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="redline-demo-") as tmp:
        base = workdir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        s = _Scenario(base)
        console.print(Panel.fit(f"log [bold]{s.log.origin}[/] in {base}\nlog key {s.log_key.verifier().to_string()}",
                                title="redline demo: a coordinated pause"))
        _play(s)
        st = s.registry.state
        timeline = Table(title="timeline (logged time)")
        for col in ("entry", "time (UTC)", "what"):
            timeline.add_column(col)
        styles = {"pause": "bold red", "violation": "red", "resume": "bold green", "crossing": "yellow"}
        for ev in st.timeline:
            timeline.add_row(str(ev.index), utc_from_ms(ev.time_ms).strftime("%Y-%m-%d %H:%M"), ev.text,
                             style=styles.get(ev.kind))
        console.print(timeline)
        render_state(st, console)
        console.print(Panel(s.log.checkpoint().decode(), title="signed checkpoint (C2SP tlog-checkpoint)"))

        index = st.pauses[0].trigger_index
        receipt = s.log.receipt(index).encode()
        console.print(Panel(receipt.decode(), title=f"receipt for entry {index}, the run that started the pause"))
        cp, t = verify_receipt(Receipt.parse(receipt), s.envelopes[index], s.log_key.verifier())
        pred, signer = open_envelope(Envelope.from_json(s.envelopes[index]), [s.keys["lab-a"].verifier()])
        console.print(f"[green]receipt verified offline[/]: entry {index} ({pred.KIND} by {signer.name}) is in "
                      f"{cp.origin} at size {cp.size}, logged {utc_from_ms(t).isoformat()}")
        console.print(f"state digest {st.digest()} — any replay of this log gives the same")
        s.log.store.close()
