"""``redline demo``: a short tour of the log on the embedded SQLite default.

Creates a log in a temporary folder, has two parties sign in-toto statements in
DSSE envelopes, appends them in one durable batch, prints the checkpoint and a
receipt, and verifies the receipt offline with nothing but the log's public key.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from redline.crypto.dsse import Envelope, make_statement, open_statement, sign_statement
from redline.crypto.keys import SigningKey
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log
from redline.log.sqlite import SqliteStore


@click.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo log here instead of a temporary folder.")
def demo(workdir: Path | None) -> None:
    """Play the demo scenario on a fresh embedded log and print what happens."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="redline-demo-") as tmp:
        base = workdir or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        log_key = SigningKey.generate("redline.example/demo-log")
        parties = {name: SigningKey.generate(name) for name in ("coordinator.example", "lab-a.example")}
        log = Log.create(SqliteStore(base / "log.db", create=True), log_key)
        console.print(Panel.fit(f"log [bold]{log.origin}[/] in {base}\nlog key {log_key.verifier().to_string()}",
                                title="redline demo"))

        statements = [
            ("coordinator.example", make_statement(
                [("policy/demo", {"sha256": hashlib.sha256(b"demo policy").hexdigest()})],
                "urn:redline:demo-note:v1", {"says": "the demo policy is published"})),
            ("lab-a.example", make_statement(
                [("run/lab-a/0001", {"sha256": hashlib.sha256(b"transcript root").hexdigest()})],
                "urn:redline:demo-note:v1", {"says": "lab A declares a training run of 3.1e21 FLOP"})),
        ]
        envelopes = [sign_statement(st, parties[who]) for who, st in statements]
        done = log.append([env.to_json() for env in envelopes])

        table = Table(title="appended in one durable batch")
        table.add_column("index", justify="right")
        table.add_column("signer")
        table.add_column("statement")
        table.add_column("integrated (ms)", justify="right")
        for idx, (who, st), t in zip(done.indexes, statements, done.times_ms):
            table.add_row(str(idx), who, st["predicate"]["says"], str(t))
        console.print(table)
        console.print(Panel(done.checkpoint.decode(), title="signed checkpoint (C2SP tlog-checkpoint)"))

        receipt = log.receipt(1)
        console.print(Panel(receipt.encode().decode(), title="receipt for entry 1 (C2SP tlog-proof)"))

        # Offline: only the receipt, the entry and the log's public key.
        entry = envelopes[1].to_json()
        cp, t = verify_receipt(Receipt.parse(receipt.encode()), entry, log_key.verifier())
        statement, signer = open_statement(Envelope.from_json(entry), [p.verifier() for p in parties.values()])
        console.print(f"[green]receipt verified offline[/]: entry 1 is in {cp.origin} at size {cp.size}, "
                      f"integrated at {t} ms, signed by {signer.name}")
        log.store.close()
