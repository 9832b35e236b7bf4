"""``redline party``, ``redline policy``, ``redline submit`` and ``redline state``: the registry from the shell.

Every statement goes through ``redline.registry.Registry``: verified, validated,
authorised and appended, or refused with the reason and the log left untouched.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from redline.crypto.canonical import parse_json
from redline.crypto.keys import load_signing_key, load_verifier_key
from redline.errors import InvalidStatement, LogNotFound, MalformedInput
from redline.log.service import Log
from redline.log.sqlite import SqliteStore
from redline.policy import PACKS, resolve_policy
from redline.registry import Registry, Submitted, utc_from_ms
from redline.statements import PREDICATE_KINDS, Admission, PolicyPublication, Predicate, sign_predicate

_dir_arg = click.argument("logdir", type=click.Path(file_okay=False, path_type=Path))
_signer_opt = click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
                           help="The signing party's private key file (its name is the party's name).")


def open_registry(logdir: Path) -> Registry:
    """The registry over the log in LOGDIR (appends use LOGDIR/log.key)."""
    db, kp = logdir / "log.db", logdir / "log.key"
    if not db.exists():
        raise LogNotFound(f"no log in {logdir} (run 'redline log init {logdir}' first)")
    return Registry(Log.open(SqliteStore(db), key=load_signing_key(kp)))


def _report(done: Submitted, receipt_out: Path | None) -> None:
    click.echo(f"accepted: entry {done.index}, {done.predicate.KIND} #{done.predicate.seq} from "
               f"{done.predicate.party}, logged {utc_from_ms(done.time_ms).isoformat()}")
    if receipt_out is not None:
        receipt_out.write_bytes(done.receipt.encode())
        click.echo(f"receipt written to {receipt_out}", err=True)


def _sign_and_submit(reg: Registry, key_path: Path, kind: str, fields: dict, receipt_out: Path | None) -> Submitted:
    key = load_signing_key(key_path)
    cls = PREDICATE_KINDS.get(kind)
    if cls is None:
        raise InvalidStatement(f"unknown statement kind {kind!r} (kinds: {', '.join(sorted(PREDICATE_KINDS))})")
    body = {"party": key.name, "seq": reg.next_seq(key.name), **fields}
    pred = _parse_predicate(cls, body)
    done = reg.submit(sign_predicate(pred, key, log=reg.log.origin).to_json())
    _report(done, receipt_out)
    return done


def _parse_predicate(cls: type[Predicate], body: dict) -> Predicate:
    """Validate hand-written fields (any ISO-8601 time form is fine here; signing canonicalises)."""
    return cls.from_json_obj(body)


# --- submit -----------------------------------------------------------------------


@click.command()
@_dir_arg
@click.argument("file", type=click.File("rb"))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sign FILE's predicate fields with this key (party and seq are filled in).")
@click.option("--kind", default=None, help="With --key: the statement kind, e.g. run-start (see 'redline policy').")
@click.option("--receipt", "receipt_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the offline receipt (C2SP tlog-proof) here.")
def submit(logdir: Path, file, key_path: Path | None, kind: str | None, receipt_out: Path | None) -> None:
    """Submit a statement to the log in LOGDIR.

    FILE is a signed DSSE envelope (JSON), or, with --key and --kind, a JSON
    object of predicate fields that redline signs for you. The statement is
    verified, validated and authorised before anything is written; a refusal
    names the reason and leaves the log untouched.
    """
    data = file.read()
    reg = open_registry(logdir)
    if key_path is None:
        if kind is not None:
            raise click.UsageError("--kind needs --key (a signed envelope names its own type)")
        _report(reg.submit(data), receipt_out)
        return
    if kind is None:
        raise click.UsageError("--key needs --kind")
    fields = parse_json(data, what=str(file.name))
    if not isinstance(fields, dict):
        raise MalformedInput(f"{file.name}: predicate fields must be a JSON object")
    _sign_and_submit(reg, key_path, kind, fields, receipt_out)


# --- party --------------------------------------------------------------------------


@click.group()
def party() -> None:
    """Start a registry (genesis), admit parties and list the roster."""


@party.command("genesis")
@_dir_arg
@_signer_opt
def party_genesis(logdir: Path, key_path: Path) -> None:
    """Write the genesis statement: KEY becomes the coordinator of the empty log in LOGDIR."""
    db, kp = logdir / "log.db", logdir / "log.key"
    if not db.exists():
        raise LogNotFound(f"no log in {logdir} (run 'redline log init {logdir}' first)")
    log = Log.open(SqliteStore(db), key=load_signing_key(kp))
    reg = Registry.genesis(log, load_signing_key(key_path))
    click.echo(f"genesis: {reg.state.coordinator} coordinates log {reg.state.origin}")


@party.command("admit")
@_dir_arg
@click.argument("verifier_key")
@click.option("--role", type=click.Choice(["lab", "auditor", "regulator", "witness", "coordinator"]), required=True,
              help="What the party may say: labs speak for themselves, auditors verify, regulators decide reviews.")
@click.option("--display-name", required=True, help="Human-readable name of the party.")
@click.option("--jurisdiction", required=True, help="Where the party is, e.g. EU, US-CA, UK.")
@_signer_opt
@click.option("--receipt", "receipt_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the offline receipt (C2SP tlog-proof) here.")
def party_admit(logdir: Path, verifier_key: str, role: str, display_name: str, jurisdiction: str, key_path: Path,
                receipt_out: Path | None) -> None:
    """Admit the party whose VERIFIER_KEY (string or .pub file) is given; signed by the coordinator's KEY."""
    reg = open_registry(logdir)
    vk = load_verifier_key(verifier_key)
    _sign_and_submit(reg, key_path, Admission.KIND, {
        "admitted": vk.name, "verifier_key": vk.to_string(), "role": role, "display_name": display_name,
        "jurisdiction": jurisdiction}, receipt_out)


@party.command("list")
@_dir_arg
def party_list(logdir: Path) -> None:
    """Show the admitted parties, their roles and keys."""
    state = open_registry_readonly(logdir)
    table = Table(title=f"parties of {state.origin}")
    for col in ("party", "role", "display name", "jurisdiction", "key ID", "last seq", "admitted at"):
        table.add_column(col)
    for p in sorted(state.parties.values(), key=lambda p: p.admitted_index):
        table.add_row(p.name, p.role, p.display_name, p.jurisdiction, p.key.key_id.hex(), str(p.last_seq),
                      f"entry {p.admitted_index}" + (" (revoked)" if p.revoked else ""))
    Console().print(table)


def open_registry_readonly(logdir: Path):
    """The replayed state of the log in LOGDIR, without its signing key."""
    from redline.engine import Entry, replay

    db = logdir / "log.db"
    if not db.exists():
        raise LogNotFound(f"no log in {logdir}")
    log = Log.open(SqliteStore(db))
    return replay(Entry(i, t, e) for i, t, e in log.entries())


# --- policy -------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Danger-line policies: list the built-in packs, show one, publish one."""


@policy.command("packs")
def policy_packs() -> None:
    """List the built-in policy packs."""
    table = Table(title="policy packs")
    for col in ("pack", "title", "lines", "digest"):
        table.add_column(col)
    for name in PACKS:
        pol = resolve_policy(name)
        table.add_row(name, pol.title, str(len(pol.lines)), pol.digest[:16])
    Console().print(table)


@policy.command("show")
@click.argument("pack_or_file")
@click.option("--json", "as_json", is_flag=True, help="Print the canonical policy document as JSON.")
def policy_show(pack_or_file: str, as_json: bool) -> None:
    """Show a policy's lines (PACK_OR_FILE: a pack name or a YAML file)."""
    pol = resolve_policy(pack_or_file)
    if as_json:
        click.echo(json.dumps(pol.document(), indent=2, sort_keys=True))
        return
    table = Table(title=f"{pol.title} (v{pol.version}, digest {pol.digest[:16]})", caption=pol.source)
    for col in ("line", "metric", "scope", "rule", "evidence", "consequence"):
        table.add_column(col)
    for line in pol.lines:
        c = line.consequence
        extra = f" {c.window_days:g}d" if c.window_days is not None else \
            f" {c.deadline_days:g}d" if c.deadline_days is not None else ""
        table.add_row(line.id, line.metric, line.scope, f"{line.comparator} {line.value:g} {line.unit}",
                      line.evidence, c.kind + extra)
    Console().print(table)


@policy.command("publish")
@_dir_arg
@click.argument("pack_or_file")
@_signer_opt
@click.option("--receipt", "receipt_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the offline receipt (C2SP tlog-proof) here.")
def policy_publish(logdir: Path, pack_or_file: str, key_path: Path, receipt_out: Path | None) -> None:
    """Publish a policy (pack name or YAML file) to the log; signed by the coordinator's KEY."""
    pol = resolve_policy(pack_or_file)
    reg = open_registry(logdir)
    _sign_and_submit(reg, key_path, PolicyPublication.KIND, {
        "policy_id": pol.id, "version": str(pol.version), "document": pol.document(), "document_digest": pol.digest,
        "effective_from": datetime.now(timezone.utc).replace(microsecond=0).isoformat()}, receipt_out)


# --- state --------------------------------------------------------------------------


@click.command()
@_dir_arg
@click.option("--json", "as_json", is_flag=True, help="Print the whole state as canonical JSON.")
def state(logdir: Path, as_json: bool) -> None:
    """Replay the log in LOGDIR and show the state: pause, commitments, crossings, violations, reviews."""
    st = open_registry_readonly(logdir)
    if as_json:
        click.echo(json.dumps(st.to_dict(), indent=2, sort_keys=True))
        click.echo(f"digest {st.digest()}", err=True)
        return
    render_state(st, Console())


def render_state(st, console: Console) -> None:
    """Print the state as Rich tables."""
    pause = st.active_pause
    status = {"normal": "[green]normal[/]", "paused": "[bold red]PAUSED[/]", "resumed": "[yellow]resumed[/]"}
    console.print(f"log {st.origin}: {st.next_index} entries, status {status[st.status]}"
                  + (f" since entry {pause.trigger_index} (binds {', '.join(pause.bound)})" if pause else ""))
    t = Table(title="commitments")
    for col in ("party", "policy", "pauses", "quorum", "expires", "entry"):
        t.add_column(col)
    for c in st.commitments.values():
        t.add_row(c.party, c.policy_digest[:12], ", ".join(c.pauses), f"{c.quorum_kind} {c.threshold:g}",
                  utc_from_ms(c.expires_ms).date().isoformat(), str(c.index))
    console.print(t)
    t = Table(title="danger lines crossed")
    for col in ("line", "subject", "party", "value", "line at", "evidence", "consequence", "entry"):
        t.add_column(col)
    for c in st.crossings:
        t.add_row(c.line, c.subject, c.party, f"{c.value:.3g}", f"{c.threshold:.3g}", c.evidence,
                  c.consequence + (f" ({c.note})" if c.note else ""), str(c.index))
    console.print(t)
    t = Table(title="violations")
    for col in ("party", "kind", "detail", "evidence (entries)"):
        t.add_column(col)
    for v in st.violations:
        t.add_row(v.party, v.kind, v.detail, ", ".join(map(str, v.evidence)))
    console.print(t)
    t = Table(title="reviews")
    for col in ("submission", "party", "model", "weights", "window ends", "findings", "decision"):
        t.add_column(col)
    for r in st.reviews.values():
        t.add_row(r.submission_id, r.party, r.model_name, (r.model_digest or "")[:12],
                  utc_from_ms(r.window_end_ms).isoformat(), str(len(r.findings)), r.decision or "pending")
    console.print(t)
    if st.bases:
        t = Table(title="registered base models")
        for col in ("model", "weights", "training FLOP", "source", "by", "entry"):
            t.add_column(col)
        for digest, b in st.bases.items():
            t.add_row(b["model_name"], digest[:12], f"{b['training_flop']:.3g}", b["source"], b["party"],
                      str(b["index"]))
        console.print(t)
    if st.rejected:
        t = Table(title="rejected entries")
        for col in ("entry", "error", "message"):
            t.add_column(col)
        for r in st.rejected:
            t.add_row(str(r.index), r.error, r.message)
        console.print(t)
