"""``redline run``: turn a recorded training transcript into signed training-run declarations.

``redline run declare`` verifies a transcript (every file, every root), then
signs a ``RunProgress`` at a checkpoint and a ``RunFinish`` carrying the
transcript's commitments, the final model's digest and the run's FLOP; it
submits them to a log through the registry, or writes the signed envelopes as
JSON lines. The run must already have a ``RunStart`` on the log (see
``docs/transcripts.md``).
"""

from __future__ import annotations

from pathlib import Path

import click

from redline.crypto.keys import load_signing_key
from redline.errors import InvalidStatement
from redline.statements import sign_predicate
from redline.statements.runs import FlopEstimates, RunFinish, RunProgress

#: Counted and 6·N·D FLOP disagree when they differ by more than this share of the counted figure
#: (the EU AI Act guidelines ask estimates to be within ±30 %).
DISAGREEMENT = 0.3


@click.group()
def run() -> None:
    """Training runs: declare a recorded transcript's commitments, FLOP and final model."""


def _flop(transcript, upto: int) -> tuple[float | None, float]:
    """Counted FLOP (None if not recorded) and 6·N·D for steps 1..upto."""
    m = transcript.manifest
    tokens = sum(r.tokens for r in transcript.steps[:upto])
    six_nd = 6.0 * m.parameter_count * tokens
    counted = m.flop.per_step * upto if m.flop is not None else None
    return counted, six_nd


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
@click.option("--seq", type=click.IntRange(min=1), default=None,
              help="Sequence number of the first statement (with --submit: the party's next on the log).")
@click.option("--progress-step", type=click.IntRange(min=1), default=None,
              help="Checkpoint step the RunProgress commits to (default: the last checkpoint).")
def run_declare(transcript: Path, key_path: Path, run_id: str, model_name: str, logdir: Path | None,
                out: Path | None, seq: int | None, progress_step: int | None) -> None:
    """Sign a RunProgress and a RunFinish for the verified TRANSCRIPT.

    The RunProgress commits to the transcript up to a checkpoint (its roots are
    prefixes of the final ones); the RunFinish carries the three roots, the step
    count, the final model's digest and the total FLOP: counted by
    FlopCounterMode if the transcript recorded it, else 6·N·D (with a note).
    """
    from redline.transcript.transcript import load_transcript

    key = load_signing_key(key_path)
    t = load_transcript(transcript)
    m = t.manifest
    n = t.step_count
    if n == 0:
        raise InvalidStatement(f"{transcript}: the transcript records no steps; there is nothing to declare")
    ps = progress_step if progress_step is not None else m.checkpoints[-1].step
    if ps not in [c.step for c in m.checkpoints]:
        raise click.BadParameter(f"{ps} is not a checkpoint step ({', '.join(str(c.step) for c in m.checkpoints)})",
                                 param_hint="--progress-step")
    reg = None
    if logdir is not None:
        from redline.cli.registry import open_registry

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

    counted_p, six_nd_p = _flop(t, ps)
    counted, six_nd = _flop(t, n)
    if counted is None:
        click.echo(f"note: {transcript} has no counted FLOP; total_flop is 6·N·D = 6 × {m.parameter_count} "
                   f"parameters × {m.tokens} tokens = {six_nd:.4g}", err=True)
    total = counted if counted is not None else six_nd
    disagree = counted is not None and abs(six_nd - counted) > DISAGREEMENT * counted
    progress = RunProgress.build(party=key.name, seq=seq, run_id=run_id, step=ps,
                                 flop_so_far=counted_p if counted_p is not None else six_nd_p,
                                 commitments=t.commitments_at(ps), as_of=m.finished_at)
    finish = RunFinish.build(party=key.name, seq=seq + 1, run_id=run_id, total_flop=total,
                             flop_estimates=FlopEstimates(counted=counted, six_nd=six_nd),
                             estimates_disagree=disagree, final_model_digest={"sha256": t.final_model_digest()},
                             commitments=t.commitments, finished_at=m.finished_at)
    envelopes = [sign_predicate(p, key).to_json() for p in (progress, finish)]
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
