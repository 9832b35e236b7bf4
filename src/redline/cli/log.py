"""``redline log``: run a transparency log on the embedded SQLite store.

A log directory holds ``log.db`` (the store) and, unless another key file is
named, ``log.key`` (the log's private key, mode 0600) and ``log.key.pub``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from redline.cli.inputs import MAX_CHECKPOINT_BYTES, read_bounded, signing_key
from redline.cli.logdir import create_log, has_log, log_paths, not_found, open_log, save_verification
from redline.crypto.encoding import b64encode
from redline.crypto.keys import SigningKey, load_verifier_key, save_signing_key
from redline.errors import InconsistentLog, MalformedInput, RedlineError
from redline.log import MAX_ENTRY_BYTES, merkle
from redline.log.checkpoint import Checkpoint, open_checkpoint
from redline.log.leaf import decode_leaf
from redline.log.receipt import Receipt, verify_receipt
from redline.log.service import Log
from redline.times import iso

_dir_arg = click.argument("logdir", type=click.Path(file_okay=False, path_type=Path))
#: An index or a tree size: a log holds at most 2^63 - 1 entries (checkpoints say so), so larger numbers are refused
#: as usage errors before they reach the store.
_SIZE = click.IntRange(0, (1 << 63) - 1)
_key_opt = click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="The log's private key file (default: LOGDIR/log.key).")


@click.group()
def log() -> None:
    """Create, append to, prove and verify a transparency log."""


@log.command("init")
@_dir_arg
@click.option("--origin", required=True, help="The log's origin, e.g. redline.example/log (also its key name).")
@_key_opt
def log_init(logdir: Path, origin: str, key_path: Path | None) -> None:
    """Create an empty log in LOGDIR and sign its size-0 checkpoint.

    Generates the log key at LOGDIR/log.key unless --key names an existing key
    whose name is the origin.
    """
    _, kp = log_paths(logdir, key_path)
    if key_path is not None:
        key = signing_key(kp)
        if key.name != origin:
            raise MalformedInput(f"key {kp} is named {key.name!r}, not the origin {origin!r}")
    else:
        key = SigningKey.generate(origin)
        save_signing_key(key, kp)
    create_log(logdir, key)
    click.echo(key.verifier().to_string())
    click.echo(f"created log {origin} in {logdir}", err=True)


@log.command("append")
@_dir_arg
@click.argument("files", nargs=-1, type=click.File("rb"))
@_key_opt
@click.option("--receipts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write a .tlog-proof receipt for each entry into this directory.")
def log_append(logdir: Path, files: tuple, key_path: Path | None, receipts: Path | None) -> None:
    """Append each FILE (or standard input, with '-') as one entry, all in one batch.

    Prints the index of each entry, then the new signed checkpoint. The batch is
    durable when this command returns.
    """
    if not files:
        raise click.UsageError("name at least one FILE (or '-' for standard input)")
    entries = [read_bounded(f, MAX_ENTRY_BYTES, getattr(f, "name", "-")) for f in files]
    lg = open_log(logdir, key_path=key_path, signing=True, verify=True)  # never sign over a store that fails
    done = lg.append(entries)
    save_verification(logdir, lg)  # the batch was derived here: the next open need not re-derive it
    for f, idx in zip(files, done.indexes):
        click.echo(f"{idx}\t{getattr(f, 'name', '-')}", err=True)
        if receipts is not None:
            receipts.mkdir(parents=True, exist_ok=True)
            (receipts / f"{idx}.tlog-proof").write_bytes(lg.receipt(idx).encode())
    sys.stdout.buffer.write(done.checkpoint)


@log.command("checkpoint")
@_dir_arg
@click.option("--size", type=_SIZE, default=None,
              help="The checkpoint signed at this size (default: latest).")
def log_checkpoint(logdir: Path, size: int | None) -> None:
    """Print the log's signed checkpoint (C2SP tlog-checkpoint)."""
    sys.stdout.buffer.write(open_log(logdir).checkpoint(size))


@log.command("checkpoints")
@_dir_arg
def log_checkpoints(logdir: Path) -> None:
    """List every tree size the log signed a checkpoint at, with its number and root (one per line)."""
    from redline.log.service import checkpoint_number

    lg = open_log(logdir)
    for size in lg.checkpoint_sizes():
        cp, _ = open_checkpoint(lg.checkpoint(size), lg.verifier)
        number = checkpoint_number(cp)
        click.echo(f"{size}\t{'-' if number is None else number}\t{b64encode(cp.root)}")


@log.command("entry")
@_dir_arg
@click.argument("index", type=_SIZE)
@click.option("--leaf", "raw", is_flag=True, help="Write the raw leaf bytes (8-byte time || entry) to standard "
              "output instead of the description.")
def log_entry(logdir: Path, index: int, raw: bool) -> None:
    """Show the entry at INDEX: its integration time, leaf hash, size and bytes (the envelope, as JSON when it is).

    The entry is shown only once its inclusion in the tree the log's latest signed checkpoint covers is checked
    (from the stored hashes): an entry edited in the store is refused, naming it.
    """
    lg = open_log(logdir)
    leaf = lg.verified_leaf(index)
    if raw:
        sys.stdout.buffer.write(leaf)
        return
    t, entry = decode_leaf(leaf)
    click.echo(f"entry {index} of log {lg.origin} (size {lg.size})")
    click.echo(f"integrated at {iso(t)} ({t} ms)")
    click.echo(f"leaf hash {b64encode(merkle.leaf_hash(leaf))}; {len(entry)} bytes")
    try:
        text = entry.decode("utf-8")
    except UnicodeDecodeError:
        click.echo(f"bytes (base64): {b64encode(entry)}")
    else:
        click.echo(text if text.isprintable() else f"bytes (base64): {b64encode(entry)}")


@log.command("prove")
@_dir_arg
@click.option("--index", type=_SIZE, default=None, help="Prove inclusion of the entry at this index.")
@click.option("--consistency", "old_size", type=_SIZE, default=None, help="Prove consistency from this older size.")
@click.option("--size", type=_SIZE, default=None, help="Tree size to prove against (default: the log's size).")
def log_prove(logdir: Path, index: int | None, old_size: int | None, size: int | None) -> None:
    """Print an inclusion or consistency proof, one base64 hash per line.

    Exactly one of --index and --consistency.
    """
    if (index is None) == (old_size is None):
        raise click.UsageError("give exactly one of --index and --consistency")
    lg = open_log(logdir)
    proof = lg.prove_inclusion(index, size) if index is not None else lg.prove_consistency(old_size, size)
    for h in proof:
        click.echo(b64encode(h))


@log.command("receipt")
@_dir_arg
@click.argument("index", type=_SIZE)
@click.option("--size", type=_SIZE, default=None, help="Prove against the checkpoint at this size (default: latest).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the receipt here instead of standard output.")
def log_receipt(logdir: Path, index: int, size: int | None, out: Path | None) -> None:
    """Write an offline receipt (C2SP tlog-proof) for the entry at INDEX."""
    data = open_log(logdir).receipt(index, size).encode()
    if out is None:
        sys.stdout.buffer.write(data)
    else:
        out.write_bytes(data)


@log.command("verify")
@click.argument("logdir", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--receipt", "receipt_file", type=click.File("rb"), default=None,
              help="Verify this receipt offline instead of a log directory.")
@click.option("--entry", "entry_file", type=click.File("rb"), default=None, help="The entry the receipt is for.")
@click.option("--log-key", default=None, help="The log's verifier key (string or file) to trust.")
@click.option("--checkpoint", "checkpoint_file", type=click.File("rb"), default=None,
              help="With LOGDIR: also check that this earlier checkpoint is consistent with the log.")
def log_verify(logdir: Path | None, receipt_file, entry_file, log_key: str | None, checkpoint_file) -> None:
    """Verify a whole log directory, or a receipt offline.

    With LOGDIR: re-derive every hash from the stored entries and check every
    signed checkpoint — always the whole log, whatever the verification record
    says (and, with --checkpoint, that a checkpoint you hold is consistent with
    the log) — then write your verification record of LOGDIR (sealed under your
    cache key and kept beside it, outside the log directory, so that whoever can
    write LOGDIR cannot remove it), from which the other commands open the log cheaply:
    they check only the latest checkpoint, the recorded tree and what was
    appended since, and refuse a store rolled back below it. A store restored
    from an older copy on purpose is accepted again by this command. With
    --receipt, --entry and --log-key: check that the entry is in the log, with
    no log at hand.
    """
    if receipt_file is not None:
        if logdir is not None or entry_file is None or log_key is None:
            raise click.UsageError("--receipt needs --entry and --log-key, and no LOGDIR")
        from redline.log.receipt import MAX_RECEIPT_BYTES

        receipt = read_bounded(receipt_file, MAX_RECEIPT_BYTES, f"receipt {receipt_file.name}")
        entry = read_bounded(entry_file, MAX_ENTRY_BYTES, f"entry {entry_file.name}")
        cp, t = verify_receipt(Receipt.parse(receipt), entry, load_verifier_key(log_key))
        click.echo(f"OK: entry is in log {cp.origin} at size {cp.size}, integrated at {iso(t)}")
        return
    if logdir is None:
        raise click.UsageError("give LOGDIR, or --receipt with --entry and --log-key")
    if not has_log(logdir):
        raise not_found(logdir)  # before the progress bar, so the error is the only output
    trusted = load_verifier_key(log_key) if log_key else None
    if trusted is None:
        click.echo("note: trusting the log key stored in the log itself; pass --log-key (the key you got from the "
                   "log's operator out of band) so that a log re-signed under another key is refused", err=True)
    recorded = _recorded_size(logdir)
    with Progress(TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("verify", total=None)
        lg = open_log(logdir, verify="full", trusted=trusted,
                      progress=lambda n, total: bar.update(task, completed=n, total=total))
    if recorded is not None and recorded > lg.size:
        click.echo(f"note: the verification record said {recorded} entries were verified; the store holds "
                   f"{lg.size}: it was rolled back or restored from an older copy, which this full verification "
                   "accepts", err=True)
    if checkpoint_file is not None:
        cp, _ = open_checkpoint(read_bounded(checkpoint_file, MAX_CHECKPOINT_BYTES,
                                             f"checkpoint {checkpoint_file.name}"), lg.verifier)
        _check_consistent(lg, cp)
    click.echo(f"OK: log {lg.origin} holds {lg.size} entries; every hash and "
               f"{len(lg.checkpoint_sizes())} checkpoints verify, signed by "
               + (f"the trusted key {lg.verifier.key_id.hex()}" if trusted else
                  f"the key the log names ({lg.verifier.key_id.hex()}, not checked)"))


def _recorded_size(logdir: Path) -> int | None:
    """The size LOGDIR's verification record holds, whatever store it names (None without one)."""
    from redline.cli.logdir import open_store, recorded_size

    try:
        store = open_store(logdir)
    except RedlineError:
        return None  # the verification proper reports it
    try:
        return recorded_size(logdir, store)
    except RedlineError:
        return None
    finally:
        store.close()


def _refuse_rollback(published: Path, lg: Log) -> None:
    """A checkpoint already published in a tiles directory must be one the log's tree extends: publishing an older
    or a different tree over it would roll the public log back."""
    if not published.exists():
        return
    try:
        cp, _ = open_checkpoint(read_bounded(published, MAX_CHECKPOINT_BYTES), lg.verifier)
    except RedlineError as exc:
        raise InconsistentLog(f"{published} holds a checkpoint this log did not sign ({exc}): refusing to replace "
                              "it") from exc
    if cp.size > lg.size:
        raise InconsistentLog(f"{published} is at size {cp.size}, beyond this log's {lg.size}: publishing would roll "
                              "the log back (is this an older copy of the log?)")
    _check_consistent(lg, cp)


def _check_consistent(lg: Log, cp: Checkpoint) -> None:
    if cp.size > lg.size:
        raise MalformedInput(f"checkpoint size {cp.size} is beyond the log's size {lg.size}")
    if cp.size:
        merkle.verify_consistency(cp.size, lg.size, cp.root, lg.root(), lg.prove_consistency(cp.size))
    elif cp.root != merkle.EMPTY_ROOT:
        raise MalformedInput("size-0 checkpoint with a non-empty root")


@log.command("snapshot")
@_dir_arg
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes that verify the signatures of the entries replayed.")
@click.option("--low-priority", is_flag=True,
              help="Run at a lower CPU priority (nice 10), beside a server answering requests on the same machine.")
def log_snapshot(logdir: Path, workers: int, low_priority: bool) -> None:
    """Save a state snapshot of the log in LOGDIR now.

    The state is that of 'redline state': the newest usable snapshot in
    LOGDIR/snapshots plus the entries after it, each authenticated against the
    log's signed checkpoint. It is written, sealed under your cache key, as
    LOGDIR/snapshots/state-<size>.sealed (the two newest are kept), unless the
    newest snapshot already holds every entry. 'redline serve' runs this in the
    background (see its --snapshot-check), so that a restart after a crash
    replays only what came after; from cron it does the same for any log.
    """
    import os

    from redline.statecache import snapshot_now

    if low_priority and hasattr(os, "nice"):
        os.nice(10)
    lg = open_log(logdir, verify=True)
    try:
        loaded, path = snapshot_now(lg, logdir, workers=workers,
                                    note=lambda text: click.echo(f"note: {text}", err=True))
        size = lg.size
    finally:
        lg.store.close()
    source = (f"{loaded.replayed} entries replayed after the snapshot of {loaded.snapshot_size}"
              if loaded.snapshot_size is not None else f"all {loaded.replayed} entries replayed")
    if path is None:
        click.echo(f"no snapshot written: the newest one already holds all {size} entries" if size else
                   "no snapshot written: the log is empty", err=True)
    else:
        click.echo(f"saved {path} ({source})", err=True)


@log.command("tiles")
@_dir_arg
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
def log_tiles(logdir: Path, outdir: Path) -> None:
    """Write the log as C2SP tlog-tiles into OUTDIR, for any static file server.

    Writes OUTDIR/checkpoint, OUTDIR/tile/<L>/<N>[.p/<W>] and
    OUTDIR/tile/entries/<N>[.p/<W>] (entry bundles hold the leaves: the 8-byte
    integration time and the entry). Full tiles already there must be identical:
    a different one means the log rewrote its history, and is an error.
    """
    from redline.log.tiles import write_static

    lg = open_log(logdir, verify="full")  # publishing reads every tile anyway: never publish an altered store
    _refuse_rollback(outdir / "checkpoint", lg)
    written = write_static(outdir, size=lg.size, reader=lg.store, entries=lg.store.read_leaves,
                           checkpoint=lg.checkpoint(), sizes=lg.checkpoint_sizes())
    click.echo(f"wrote {len(written)} files for {lg.size} entries to {outdir}")


@log.command("migrate")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(file_okay=False, path_type=Path))
def log_migrate(src: Path, dst: Path) -> None:
    """Copy the log in SRC into DST, between SQLite and PostgreSQL, and verify the copy.

    DST is a log directory without a log: holding store.url (one line, postgresql://...) to copy into
    PostgreSQL, otherwise the copy goes into DST/log.db. SRC is verified first; each batch is copied with
    its signed checkpoint unchanged (no key is needed), the log key files are copied along, and the copy
    is verified: every hash re-derived, the same roots and the same signed checkpoints, byte for byte.
    """
    import shutil

    from redline.cli.logdir import KEY_FILE, open_store

    source = open_log(src, verify="full")  # every entry is copied: all of them are checked first
    target = open_store(dst, create=True)
    try:
        copied = _copy_log(source, target)
    finally:
        target.close()
    copy = open_log(dst, verify=True, trusted=source.verifier)
    sizes = source.checkpoint_sizes()
    if copy.checkpoint_sizes() != sizes or copy.size != source.size:
        raise InconsistentLog(f"the copy in {dst} holds checkpoints at {copy.checkpoint_sizes()[-3:]}, "
                              f"not {sizes[-3:]}")
    for size in sizes:
        if copy.checkpoint(size) != source.checkpoint(size) or copy.root(size) != source.root(size):
            raise InconsistentLog(f"the copy's checkpoint at size {size} differs from the source's", index=size)
    for name in (KEY_FILE, KEY_FILE + ".pub"):
        if (src / name).is_file() and not (dst / name).exists():
            shutil.copy2(src / name, dst / name)  # keeps the private key's mode 0600
    click.echo(f"copied log {source.origin}: {source.size} entries, {copied} checkpoints from {src} to {dst}; "
               "the copy verifies with the same roots and signed checkpoints")


def _copy_log(source: Log, target: Any) -> int:
    """Append ``source``'s batches to the empty store ``target``, each with its signed checkpoint; how many."""
    st = source.store
    sizes = source.checkpoint_sizes()
    meta = {k: v for k in ("origin", "public_key", "format") if (v := st.get_meta(k)) is not None}
    target.init(meta, source.checkpoint(0))
    hashes = st.iter_hashes()
    prev = 0
    for size in sizes[1:]:
        leaves = st.read_leaves(prev, size - prev)
        want = merkle.stored_hash_count(size) - merkle.stored_hash_count(prev)
        batch = [h for _, h in itertools.islice(hashes, want)]
        target.append(prev, leaves, batch, source.checkpoint(size), size)
        prev = size
    return len(sizes)
