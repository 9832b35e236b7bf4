"""``redline run``: turn a recorded training transcript into signed training-run declarations.

``redline run start`` signs the ``RunStart`` of a transcript whose recording has
begun: the whole run spec (``run.json``) and checkpoint 0's model digest, before
the first step. ``redline run declare`` verifies a transcript (every file, every
root), then signs a ``RunProgress`` at a checkpoint and a ``RunFinish`` carrying
the spec digest, the transcript's commitments, the manifest's digest, the final
model's digest and the run's FLOP. Both submit to a log through the registry, or
write the signed envelopes as JSON lines (see ``docs/transcripts.md``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError

from redline.cli.inputs import signing_key
from redline.errors import InvalidStatement, MalformedInput
from redline.statements import sign_predicate
from redline.statements.base import validation_message
from redline.statements.compute import ChipCount
from redline.statements.runs import FlopEstimates, RunFinish, RunProgress, RunStart

#: Counted and 6·N·D FLOP disagree when they differ by more than this share of the counted figure
#: (the EU AI Act guidelines ask estimates to be within ±30 %).
DISAGREEMENT = 0.3


@click.group()
def run() -> None:
    """Training runs: declare a recorded transcript's commitments, FLOP and final model."""


def _counted(transcript) -> tuple[object | None, str]:
    """The transcript's FLOP counted as a verifier counts them (every batch shape, one step each), or None and
    why not (no torch, code not registered here, an operator the counter cannot count)."""
    try:
        from redline.verify.compute import compute_check

        found = compute_check(transcript, None, probe=False)
    except ImportError as exc:  # pragma: no cover - the torch extra is missing
        return None, str(exc)
    if found.counted_flop is None or found.refused_operators:
        return None, found.check.detail
    return found, ""


def _flop(transcript, counted, upto: int) -> tuple[float | None, float]:
    """Counted FLOP (None if they could not be counted) and 6·N·D for steps 1..upto."""
    m = transcript.manifest
    tokens = sum(r.tokens for r in transcript.steps[:upto])
    six_nd = 6.0 * m.parameter_count * tokens
    return (float(counted.flop_of_steps(0, upto)) if counted is not None else None), six_nd


def initial_model_digest(transcript: Path) -> str:
    """Checkpoint 0's model digest, from the manifest when the transcript is closed, else from its blob."""
    from redline.transcript.format import BLOBS_DIR, MANIFEST_FILE, load_manifest
    from redline.transcript.stfile import SafetensorsFile

    if (transcript / MANIFEST_FILE).exists():
        return load_manifest(transcript / MANIFEST_FILE).checkpoints[0].model_digest
    found = []
    for blob in sorted((transcript / BLOBS_DIR / "sha256").glob("*/*")):
        with SafetensorsFile(blob) as f:
            if f.header.metadata.get("redline.step") == "0":
                found.append(f.digest("model."))
    if len(set(found)) != 1:
        raise MalformedInput(f"{transcript}: {'no' if not found else 'more than one'} checkpoint of step 0 "
                             "(start the recorder before signing the RunStart)")
    return found[0]


def _hardware(items: tuple[str, ...]) -> list[ChipCount]:
    out = []
    for item in items:
        chip, _, count = item.rpartition("=")
        if not chip or not count.isdigit():
            raise click.BadParameter(f"{item!r} is not CHIP=COUNT", param_hint="--hardware")
        try:
            out.append(ChipCount.model_validate({"chip_model": chip, "count": int(count)}))
        except ValidationError as exc:
            raise click.BadParameter(f"{item!r}: {validation_message('chip', exc)}", param_hint="--hardware") \
                from None
    return out


@run.command("start")
@click.argument("transcript", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The lab's private key file (its name must be the party the run spec names).")
@click.option("--model-name", required=True, help="The model the run trains.")
@click.option("--declared-flop", type=click.FloatRange(min=0), required=True, help="The compute the run plans.")
@click.option("--flop-method", type=click.Choice(["counted", "6ND", "hardware"]), default="counted",
              show_default=True, help="How the planned compute was estimated.")
@click.option("--hardware", "hardware", multiple=True, metavar="CHIP=COUNT",
              help="Chips the run uses (repeat), e.g. --hardware 'H100 SXM=1024'.")
@click.option("--started-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%SZ"]), default=None,
              help="When the run starts, UTC (default: now).")
@click.option("--submit", "logdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Submit the RunStart to the log in LOGDIR through the registry.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the signed envelope as a JSON line to FILE ('-' is stdout, the default without --submit).")
@click.option("--log-origin", default=None,
              help="Without --submit: the origin of the log the statements are for (with --submit: that log's).")
@click.option("--seq", type=click.IntRange(min=1), default=None,
              help="Sequence number (with --submit: the party's next on the log).")
def run_start(transcript: Path, key_path: Path, model_name: str, declared_flop: float, flop_method: str,
              hardware: tuple[str, ...], started_at: datetime | None, logdir: Path | None, out: Path | None,
              log_origin: str | None, seq: int | None) -> None:
    """Sign the RunStart of TRANSCRIPT (a recorder that has started): its whole run spec and checkpoint 0.

    Sign it before the first training step: the RunStart commits to the registered factories, their
    arguments, the initialisation and checkpoint 0's model digest, which a verifier rebuilds bit for bit.
    """
    from redline.transcript.format import SPEC_FILE, read_spec

    key = signing_key(key_path)
    spec = read_spec(transcript / SPEC_FILE)
    if spec.party != key.name:
        raise InvalidStatement(f"field 'spec.party': {transcript} was recorded for party {spec.party!r}; the key "
                               f"{key_path} is {key.name!r}")
    reg = None
    if logdir is not None:
        from redline.cli.logdir import open_registry

        reg = open_registry(logdir)
        seq = reg.next_seq(key.name) if seq is None else seq
    elif seq is None:
        raise click.UsageError("--seq is needed without --submit: the party's next sequence number on the log")
    elif log_origin is None:
        raise click.UsageError("--log-origin is needed without --submit: the origin of the log the statements are for")
    origin = reg.log.origin if reg is not None else log_origin
    base = spec.init.base_model_digest
    pred = RunStart.build(party=key.name, seq=seq, run_id=spec.run_id, model_name=model_name,
                          base_model=None, base_model_flop=None, declared_flop=declared_flop,
                          flop_method=flop_method, hardware=_hardware(hardware),
                          started_at=(started_at or datetime.now(UTC)).replace(tzinfo=UTC, microsecond=0),
                          spec=spec, init_model_digest=base if base is not None else initial_model_digest(transcript))
    env = sign_predicate(pred, key, log=origin).to_json()
    if out is not None or reg is None:
        if out is None or str(out) == "-":
            click.echo(env + b"\n", nl=False)
        else:
            out.write_bytes(env + b"\n")
            click.echo(f"wrote {out}: run-start #{seq} of run {spec.run_id} (spec {spec.digest()[:16]}…)", err=True)
    if reg is not None:
        done = reg.submit(env)
        click.echo(f"accepted: entry {done.index}, run-start #{seq} from {key.name} (run {spec.run_id}, "
                   f"spec {spec.digest()[:16]}…)")


@run.command("declare")
@click.argument("transcript", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The lab's private key file (its name is the party's name).")
@click.option("--run-id", required=True, help="The run's ID, as its RunStart declared it.")
@click.option("--model-name", required=True,
              help="The model the run trains; with --submit it must be the RunStart's model_name.")
@click.option("--submit", "logdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Submit both statements to the log in LOGDIR through the registry.")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the signed envelopes as JSON lines to FILE ('-' is stdout, the default without --submit).")
@click.option("--log-origin", default=None,
              help="Without --submit: the origin of the log the statements are for (with --submit: that log's).")
@click.option("--seq", type=click.IntRange(min=1), default=None,
              help="Sequence number of the first statement (with --submit: the party's next on the log).")
@click.option("--progress-step", type=click.IntRange(min=1), default=None,
              help="Checkpoint step the RunProgress commits to (default: the last checkpoint).")
def run_declare(transcript: Path, key_path: Path, run_id: str, model_name: str, logdir: Path | None,
                out: Path | None, seq: int | None, progress_step: int | None, log_origin: str | None = None) -> None:
    """Sign a RunProgress and a RunFinish for the verified TRANSCRIPT.

    The RunProgress commits to the transcript up to a checkpoint (its roots are
    prefixes of the final ones); the RunFinish carries the three roots, the step


    """
    from redline.transcript.transcript import load_transcript

    key = signing_key(key_path)
    t = load_transcript(transcript)
    m = t.manifest
    n = t.step_count
    if (t.spec.party, t.spec.run_id) != (key.name, run_id):
        raise InvalidStatement(f"field 'run_id': {transcript} was recorded for run {t.spec.party}/{t.spec.run_id}, "
                               f"not {key.name}/{run_id} (a transcript belongs to the one run its spec names)")
    if n == 0:
        raise InvalidStatement(f"{transcript}: the transcript records no steps; there is nothing to declare")
    ps = progress_step if progress_step is not None else m.checkpoints[-1].step
    if ps not in [c.step for c in m.checkpoints]:
        raise click.BadParameter(f"{ps} is not a checkpoint step ({', '.join(str(c.step) for c in m.checkpoints)})",
                                 param_hint="--progress-step")
    reg = None
    if logdir is not None:
        from redline.cli.logdir import open_registry

        reg = open_registry(logdir)
        run_state = next((r for r in reg.state.runs.values() if r.party == key.name and r.run_id == run_id), None)
        if run_state is None:
            raise InvalidStatement(f"field 'run_id': no run {run_id!r} declared by {key.name!r} on the log in "
                                   f"{logdir}: submit its RunStart first (see docs/transcripts.md)")
        if run_state.model_name != model_name:
            raise InvalidStatement(f"field 'model_name': run {run_id!r} was declared for model "
                                   f"{run_state.model_name!r}, not {model_name!r}")
        if seq is None:
            seq = reg.next_seq(key.name)
    elif seq is None:
        raise click.UsageError("--seq is needed without --submit: the party's next sequence number on the log")
    elif log_origin is None:
        raise click.UsageError("--log-origin is needed without --submit: the origin of the log the statements are for")
    origin = reg.log.origin if reg is not None else log_origin

    findings, why = _counted(t)
    counted_p, six_nd_p = _flop(t, findings, ps)
    counted, six_nd = _flop(t, findings, n)
    if counted is None:
        click.echo(f"note: the FLOP of {transcript} could not be counted ({why[:300]}); total_flop is 6·N·D = "
                   f"6 × {m.parameter_count} parameters × {m.tokens} tokens = {six_nd:.4g}", err=True)
    total = counted if counted is not None else six_nd
    disagree = counted is not None and abs(six_nd - counted) > DISAGREEMENT * counted
    progress = RunProgress.build(party=key.name, seq=seq, run_id=run_id, step=ps,
                                 flop_so_far=counted_p if counted_p is not None else six_nd_p,
                                 commitments=t.commitments_at(ps), spec_digest=t.spec_digest, as_of=m.finished_at)
    finish = RunFinish.build(party=key.name, seq=seq + 1, run_id=run_id, total_flop=total,
                             flop_estimates=FlopEstimates(counted=counted, six_nd=six_nd),
                             estimates_disagree=disagree, final_model_digest={"sha256": t.final_model_digest()},
                             commitments=t.commitments, spec_digest=t.spec_digest,
                             manifest_digest=m.digest(), finished_at=m.finished_at)
    envelopes = [sign_predicate(p, key, log=origin).to_json() for p in (progress, finish)]
    if out is not None or reg is None:
        text = b"".join(e + b"\n" for e in envelopes)
        if out is None or str(out) == "-":
            click.echo(text, nl=False)
        else:
            out.write_bytes(text)
            click.echo(f"wrote {out}: run-progress #{seq} (step {ps}) and run-finish #{seq + 1} "
                       f"({total:.4g} FLOP, {n} steps)", err=True)
    if reg is not None:
        for pred, env in zip((progress, finish), envelopes):
            done = reg.submit(env)
            click.echo(f"accepted: entry {done.index}, {pred.KIND} #{pred.seq} from {pred.party} "
                       f"(run {run_id}, {'step ' + str(ps) if pred is progress else f'{total:.4g} FLOP'})")
