"""``redline party``, ``redline policy``, ``redline submit`` and ``redline state``: the registry from the shell.

Every statement goes through ``redline.registry.Registry``: verified, validated,
authorised and appended, or refused with the reason and the log left untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from redline.cli.inputs import MAX_FIELDS_BYTES, check_regular, read_bounded, signing_key
from redline.cli.logdir import open_log, open_registry, replayed_state
from redline.cli.state_view import DEFAULT_ROWS, render_state
from redline.crypto.canonical import parse_json
from redline.crypto.keys import load_verifier_key
from redline.engine.view import state_json
from redline.errors import InvalidStatement, MalformedInput
from redline.policy import PACKS, resolve_policy
from redline.registry import Registry, Submitted
from redline.statements import PREDICATE_KINDS, Admission, PolicyPublication, Predicate, sign_predicate
from redline.times import format_utc, iso

_dir_arg = click.argument("logdir", type=click.Path(file_okay=False, path_type=Path))
_signer_opt = click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
                           help="The signing party's private key file (its name is the party's name).")


#: Kept for the modules and tests that import the opener from here (it lives in ``redline.cli.logdir``).
open_registry_readonly = replayed_state


def _report(done: Submitted, receipt_out: Path | None, submitted: bytes | None = None) -> None:
    click.echo(f"accepted: entry {done.index}, {done.predicate.KIND} #{done.predicate.seq} from "
               f"{done.predicate.party}, logged {iso(done.time_ms)}")
    if receipt_out is not None:
        receipt_out.write_bytes(done.receipt.encode())
        click.echo(f"receipt written to {receipt_out}", err=True)
    if submitted is not None and done.envelope and done.envelope != submitted:
        # the log keeps one canonical form of each envelope: the receipt proves those bytes, not the file's
        note = f"note: the log stored your envelope in redline's canonical form ({len(done.envelope)} bytes)"
        if receipt_out is not None:
            logged = receipt_out.with_name(receipt_out.name + ".entry")
            logged.write_bytes(done.envelope)
            note += f"; the receipt proves those bytes, written to {logged}"
        click.echo(note, err=True)


def _sign_and_submit(reg: Registry, key_path: Path, kind: str, fields: dict, receipt_out: Path | None) -> Submitted:
    key = signing_key(key_path)
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
    from redline.log import MAX_ENTRY_BYTES

    data = read_bounded(file, MAX_FIELDS_BYTES if key_path is not None else MAX_ENTRY_BYTES, str(file.name))
    reg = open_registry(logdir)
    if key_path is None:
        if kind is not None:
            raise click.UsageError("--kind needs --key (a signed envelope names its own type)")
        _report(reg.submit(data), receipt_out, data)
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
    reg = Registry.genesis(open_log(logdir, signing=True, verify=True), signing_key(key_path))
    click.echo(f"genesis: {reg.state.coordinator} coordinates log {reg.state.origin}")


@party.command("admit")
@_dir_arg
@click.argument("verifier_key")
@click.option("--role", type=click.Choice(["lab", "auditor", "regulator", "witness", "coordinator", "provider"]),
              required=True,
              help="What the party may say: labs speak for themselves, auditors verify, regulators decide reviews, "
                   "providers attest their customers' compute, witnesses cosign, a coordinator admits and publishes.")
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
    state = replayed_state(logdir)
    table = Table(title=f"parties of {state.origin}")
    for col in ("party", "role", "display name", "jurisdiction", "key ID", "last seq", "admitted at"):
        table.add_column(col)
    for p in sorted(state.parties.values(), key=lambda p: p.admitted_index):
        table.add_row(p.name, p.role, p.display_name, p.jurisdiction, p.key.key_id.hex(), str(p.last_seq),
                      f"entry {p.admitted_index}" + (" (revoked)" if p.revoked else ""))
    Console().print(table)


# --- policy -------------------------------------------------------------------------


@click.group()
def policy() -> None:
    """Danger-line policies: list the built-in packs, show one, publish one."""


@policy.command("packs")
def policy_packs() -> None:
    """List the built-in policy packs with their full digests (what commitments name)."""
    console = Console()
    for name in PACKS:
        pol = resolve_policy(name)
        n = len(pol.lines)
        console.print(Text.assemble((name, "bold"), f" v{pol.version}, {n} line{'' if n == 1 else 's'}: {pol.title}"))
        console.print(Text(f"  digest {pol.digest}"), soft_wrap=True)


def _policy(pack_or_file: str):
    """A built-in pack, or the policy file PACK_OR_FILE once it is known to be a regular file within the bound."""
    from redline.policy.model import MAX_POLICY_BYTES

    if pack_or_file not in PACKS and Path(pack_or_file).exists():
        check_regular(pack_or_file, MAX_POLICY_BYTES, f"policy file {pack_or_file}")
    return resolve_policy(pack_or_file)


def _parameter_rows(values: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(name, value)`` for every policy parameter, nested ones as ``outer.inner``."""
    rows: list[tuple[str, str]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            rows += _parameter_rows(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            rows.append((prefix + name, ", ".join(map(str, value)) or "none"))
        elif isinstance(value, float):
            rows.append((prefix + name, f"{value:g}"))
        else:
            rows.append((prefix + name, str(value)))
    return rows


@policy.command("show")
@click.argument("pack_or_file")
@click.option("--json", "as_json", is_flag=True, help="Print the canonical policy document as JSON.")
def policy_show(pack_or_file: str, as_json: bool) -> None:
    """Show a policy: its full digest (what commitments name), every parameter, then its lines
    (PACK_OR_FILE: a pack name or a YAML file)."""
    pol = _policy(pack_or_file)
    if as_json:
        click.echo(json.dumps(pol.document(), indent=2, sort_keys=True))
        return
    console = Console()
    console.print(Text(f"{pol.title}: {pol.id} v{pol.version}", style="bold"))
    console.print(Text(f"digest {pol.digest}"), soft_wrap=True)
    console.print(Text(pol.source))
    params = Table(title="parameters")
    params.add_column("parameter")
    params.add_column("value", overflow="fold")
    for name, value in _parameter_rows(pol.parameters.model_dump(mode="json")):
        params.add_row(Text(name), Text(value))
    console.print(params)
    table = Table(title="lines")
    for col in ("line", "metric", "scope", "rule", "evidence", "consequence"):
        table.add_column(col, overflow="fold")
    for line in pol.lines:
        c = line.consequence
        extra = f" {c.window_days:g}d" if c.window_days is not None else \
            f" {c.deadline_days:g}d" if c.deadline_days is not None else ""
        table.add_row(*map(Text, (line.id, line.metric, line.scope, f"{line.comparator} {line.value:g} {line.unit}",
                                  line.evidence, c.kind + extra)))
    console.print(table)


@policy.command("publish")
@_dir_arg
@click.argument("pack_or_file")
@_signer_opt
@click.option("--supersedes", "supersedes", multiple=True, metavar="DIGEST",
              help="The full digest of a published policy this one replaces once it takes effect (repeat for "
                   "several; none: it joins the policies in force).")
@click.option("--effective-from", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ"]), default=None,
              help="When it takes effect, UTC, e.g. 2027-01-15T08:00:00Z (default: now).")
@click.option("--receipt", "receipt_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the offline receipt (C2SP tlog-proof) here.")
def policy_publish(logdir: Path, pack_or_file: str, key_path: Path, supersedes: tuple[str, ...],
                   effective_from: datetime | None, receipt_out: Path | None) -> None:
    """Publish a policy (pack name or YAML file) to the log; signed by the coordinator's KEY."""
    pol = _policy(pack_or_file)
    reg = open_registry(logdir)
    when = (effective_from or datetime.now(UTC)).replace(tzinfo=UTC, microsecond=0)
    _sign_and_submit(reg, key_path, PolicyPublication.KIND, {
        "policy_id": pol.id, "version": str(pol.version), "document": pol.document(), "document_digest": pol.digest,
        "effective_from": format_utc(when), "supersedes": list(supersedes)}, receipt_out)


# --- state --------------------------------------------------------------------------


@click.command()
@click.argument("logdir")
@click.option("--json", "as_json", is_flag=True,
              help="Print the whole state as JSON (every *_ms time with its *_at ISO 8601 twin, the pause view "
                   "and the release status); the digest of the canonical state goes to stderr.")
@click.option("--log-key", default=None,
              help="The log's verifier key (string or .pub file) you trust: required with a URL (never taken from the "
                   "server); with a directory, a log signed by any other key is refused.")
@click.option("--witness-policy", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="With a URL: the witness policy its checkpoint must meet.")
@click.option("--no-cache", is_flag=True,
              help="Replay every entry of the log instead of starting from the latest state snapshot in "
                   "LOGDIR/snapshots (a snapshot is only ever a cache: one that is stale, edited or made by other "
                   "code is never used).")
@click.option("--check-snapshot", is_flag=True,
              help="Digest the state the snapshot gives back again and use the snapshot only if that is the state "
                   "digest it carries (the digest of a full replay of its entries); about 0.4 s per 100,000 "
                   "entries more.")
@click.option("--all", "all_rows", is_flag=True,
              help="Show every row of the tables that grow with the log (by default the latest 20 of each).")
def state(logdir: str, as_json: bool, log_key: str | None, witness_policy: Path | None, no_cache: bool,
          check_snapshot: bool, all_rows: bool) -> None:
    """Replay the log in LOGDIR and show the state: policies, commitments, the pause, deadlines, crossings,
    violations, reviews (and whether each model may be released now), releases.

    LOGDIR may be the http(s):// URL of a log served as tiles: the state is then derived from the tiles alone,
    checked against --log-key. For a directory, --log-key pins the log's key; without it the key the store names
    is trusted, and a note says so.

    A directory's state starts from its latest state snapshot (LOGDIR/snapshots, sealed under your cache key)
    when that snapshot is of this log's history and was made by this redline; only the entries after it are
    replayed, each checked against the signed checkpoint. A new snapshot is saved after a long replay, with the
    digest of its state. --no-cache replays everything; --check-snapshot digests the snapshot's state again."""
    from redline.log.remote import is_url

    if is_url(logdir):
        if log_key is None:
            raise click.UsageError("a URL needs --log-key: the log's key must come from you, not from the server")
        from redline.cli.remote_state import remote_state

        where: str | Path = logdir
        st = remote_state(logdir, log_key, witness_policy, use_cache=not no_cache,
                          note=lambda text: click.echo(f"note: {text}", err=True), check_snapshot=check_snapshot)
    elif witness_policy is not None:
        raise click.UsageError("--witness-policy is for a log URL (a directory's checkpoints carry no cosignatures)")
    else:
        where = click.Path(file_okay=False, path_type=Path).convert(logdir, None, click.get_current_context())
        if log_key is None:
            click.echo("note: trusting the log key stored in the log itself; pass --log-key to pin it", err=True)
        st = replayed_state(where, trusted=load_verifier_key(log_key) if log_key else None, use_cache=not no_cache,
                            check_snapshot=check_snapshot)
    if as_json:
        click.echo(json.dumps(state_json(st), indent=2, sort_keys=True))
        click.echo(f"digest {st.digest()}", err=True)
        return
    render_state(st, Console(), where=where, limit=None if all_rows else DEFAULT_ROWS)


__all__ = ["open_registry", "open_registry_readonly", "party", "policy", "render_state", "state", "submit"]
