"""``redline witness``: run a C2SP tlog-witness that cosigns log checkpoints.

A witness holds an Ed25519 key (its cosignature/v1 verifier key has algorithm
byte 0x04), a list of logs it follows (their verifier keys; the key name is the
log's origin) and a state directory with ``witness.db``: per log, the latest
checkpoint it cosigned. It cosigns a checkpoint only if it is consistent with that.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from redline.cli.inputs import signing_key
from redline.crypto.encoding import b64encode
from redline.crypto.keys import load_verifier_key
from redline.errors import MalformedInput
from redline.log.witness import new_witness_key, witness_verifier
from redline.times import iso_seconds


@click.group()
def witness() -> None:
    """Run a witness: cosign checkpoints of logs, refusing any split view."""


@witness.group("key")
def witness_key() -> None:
    """Create witness keys."""


@witness_key.command("new")
@click.argument("name")
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Private key file to write (mode 0600); the witness verifier key goes to OUT.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key file (atomically).")
def witness_key_new(name: str, out: Path, force: bool) -> None:
    """Generate a witness key named NAME (e.g. witness.example/w1).

    Writes the private key to OUT with mode 0600 (never overwriting unless
    --force) and prints the cosignature/v1 verifier key (algorithm 0x04), the
    line clients put in their witness trust file.
    """
    _, vkey = new_witness_key(name, out, overwrite=force)
    click.echo(vkey.to_string())
    click.echo(f"wrote {out} (private, 0600) and {out}.pub", err=True)


@witness.command("serve")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="State directory (witness.db is created there); keep it: a witness that loses it must retire.")
@click.option("--log", "logs", multiple=True, required=True,
              help="Verifier key (string or file) of a log to witness; its name is the log's origin. Repeatable.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), required=True,
              help="The witness's private key file (from 'redline witness key new').")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--prefix", default="", help="Submission prefix: the endpoint is <prefix>/add-checkpoint.")
def witness_serve(state_dir: Path, logs: tuple[str, ...], key_path: Path, host: str, port: int, prefix: str) -> None:
    """Serve POST <prefix>/add-checkpoint (c2sp.org/tlog-witness) for the given logs.

    Needs the server extra (pip install 'redline[server]').
    """
    try:
        import uvicorn

        from redline.witness.server import create_app
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise click.ClickException(f"the witness server needs the server extra ({exc.name} is missing)") from exc
    from redline.witness.core import Witness, WitnessState

    key = signing_key(key_path)
    log_keys = [load_verifier_key(v) for v in logs]
    if prefix and not prefix.startswith("/"):
        raise MalformedInput(f"--prefix {prefix!r} must start with '/'")
    w = Witness(key, log_keys, WitnessState(state_dir))
    click.echo(f"witness {w.verifier.to_string()}", err=True)
    for k in log_keys:
        click.echo(f"  follows {k.name}", err=True)
    click.echo(f"listening on http://{host}:{port}{prefix.rstrip('/')}/add-checkpoint", err=True)
    uvicorn.run(create_app(w, prefix=prefix), host=host, port=port, log_level="info")


@witness.command("show")
@click.option("--state", "state_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True,
              help="The witness's state directory.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Also print the witness verifier key from this private key file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def witness_show(state_dir: Path, key_path: Path | None, as_json: bool) -> None:
    """Show the latest checkpoint the witness cosigned for each log, and refusals kept as evidence."""
    from redline.witness.core import DB_NAME, WitnessState

    if not (state_dir / DB_NAME).is_file():
        raise MalformedInput(f"no witness state at {state_dir / DB_NAME}")
    state = WitnessState(state_dir)
    try:
        recs, evidence = state.records(), state.evidence()
    finally:
        state.close()
    vkey = witness_verifier(signing_key(key_path)).to_string() if key_path else None
    if as_json:
        doc = {"logs": [{"origin": r.origin, "size": r.size, "root": b64encode(r.root),
                         "cosigned_at": iso_seconds(r.cosigned_s)} for r in recs],
               "evidence": [{"origin": o, "received_at": iso_seconds(t), "status": s, "reason": why}
                            for o, t, s, why, _ in evidence]}
        if vkey:
            doc["witness"] = vkey
        click.echo(json.dumps(doc, indent=2))
        return
    if vkey:
        click.echo(f"witness: {vkey}")
    if not recs:
        click.echo("no checkpoint cosigned yet")
    for r in recs:
        click.echo(f"{r.origin}  size {r.size}  root {b64encode(r.root)}  cosigned {iso_seconds(r.cosigned_s)}")
    if evidence:
        click.echo(f"{len(evidence)} refused signed checkpoint(s) kept as evidence:")
        for o, t, s, why, _ in evidence:
            click.echo(f"  {iso_seconds(t)}  {o}  {s}  {why}")
