"""``redline sign``: sign a statement offline, without a log, and write its DSSE envelope.

The fields are the ones ``redline submit --key --kind`` takes (``docs/statements.md``
has one example per kind); ``party`` comes from the key, ``seq`` and ``log`` from the
command line, because offline there is no log to ask. The envelope is exactly the
bytes ``redline submit LOGDIR ENVELOPE`` appends to the log.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import click

from redline.cli.inputs import MAX_FIELDS_BYTES, read_bounded, signing_key
from redline.cli.registry import _parse_predicate
from redline.crypto.canonical import parse_json
from redline.errors import InvalidStatement, KeyExists, MalformedInput
from redline.statements import PREDICATE_KINDS, Predicate, sign_predicate


def predicate_class(kind: str) -> type[Predicate]:
    """The predicate model of a statement kind (``run-start``, ...); ``InvalidStatement`` listing the kinds."""
    cls = PREDICATE_KINDS.get(kind)
    if cls is None:
        raise InvalidStatement(f"unknown statement kind {kind!r} (kinds: {', '.join(sorted(PREDICATE_KINDS))})")
    return cls


def _fill(fields: dict, name: str, value: object, source: str) -> None:
    """Put ``value`` in ``fields[name]``; a value FIELDS already gives must agree with it."""
    if name in fields and fields[name] != value:
        raise InvalidStatement(f"field '{name}': the fields file gives {fields[name]!r} but {source} gives "
                               f"{value!r} (leave '{name}' out of the fields file)")
    fields[name] = value


@click.command()
@click.argument("fields_file", metavar="FIELDS.json", type=click.File("rb"))
@click.option("--kind", required=True,
              help="The statement kind: " + ", ".join(sorted(PREDICATE_KINDS)) + " (docs/statements.md has an "
                   "example of each).")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The signing party's private key file; its name is the party the statement speaks for.")
@click.option("--seq", type=click.IntRange(min=1, max=2**53 - 1), required=True,
              help="The party's sequence number for this statement: one more than its last on the log "
                   "(offline there is no log to ask; 'redline party list LOG' shows each party's last seq).")
@click.option("--log-origin", required=True,
              help="The origin of the log the statement is for (its checkpoints' first line, e.g. "
                   "redline.example/log): every other log refuses the statement.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the envelope to this file (never over an existing one); default or '-': stdout.")
def sign(fields_file: BinaryIO, kind: str, key_path: Path, seq: int, log_origin: str, out: Path | None) -> None:
    """Sign a statement offline: FIELDS.json's predicate fields as a DSSE envelope.

    FIELDS.json ('-' for stdin) is a JSON object of the kind's predicate fields,
    as 'redline submit LOGDIR FILE --key KEY --kind KIND' takes them
    (docs/statements.md). 'party' is the key's name, 'seq' is --seq and 'log' is
    --log-origin. The statement is validated as 'redline submit' does before it is
    signed; a bad field is named. The envelope (canonical JSON, no trailing newline)
    is what 'redline submit LOGDIR ENVELOPE' takes as it is. Nothing here reads a
    log: whether the party may make the statement, and whether --seq is its next,
    is decided when it is submitted.
    """
    name = getattr(fields_file, "name", "FIELDS.json")
    try:
        fields = parse_json(read_bounded(fields_file, MAX_FIELDS_BYTES, str(name)), what=str(name))
    except MalformedInput as exc:
        if str(name) in str(exc):
            raise
        raise type(exc)(f"{name}: {exc}") from None
    if not isinstance(fields, dict):
        raise MalformedInput(f"{name}: predicate fields must be a JSON object")
    cls = predicate_class(kind)
    key = signing_key(key_path)
    _fill(fields, "party", key.name, f"the key {key_path}")
    _fill(fields, "seq", seq, "--seq")
    _fill(fields, "log", log_origin, "--log-origin")
    pred = _parse_predicate(cls, fields)
    envelope = sign_predicate(pred, key, log=log_origin).to_json()
    what = f"{kind} #{seq} from {key.name} for log {log_origin}"
    if out is None or str(out) == "-":
        click.echo(envelope, nl=False)
        click.echo(f"signed {what}", err=True)
        return
    if out.exists() or out.is_symlink():
        raise KeyExists(f"{out} already exists; refusing to overwrite it")
    from redline.transcript.format import write_atomic

    write_atomic(out, envelope)
    click.echo(f"signed {what}: wrote {out}", err=True)
