"""``redline verify``: re-execute a sample of a declared run's transcript and sign a verification report.

``redline verify run RUN --transcript DIR --key AUDITOR_KEY`` checks the
transcript against its roots, the data against its batch digests, a sample of
segments by re-execution (bisecting the first failing one) and the FLOP against
the declaration. With ``--log LOGDIR`` the run's latest ``RunFinish`` /
``RunProgress`` is read from the log (its signature re-verified against the
party's key, its inclusion re-verified against the log's signed checkpoint), the
transcript must carry its roots, and the sample seed is the SHA-256 of the first
signed log checkpoint containing that declaration; without ``--log``, ``--seed``
gives the seed. The signed ``VerificationReport`` is submitted (``--submit``) or
written to ``--out`` (stdout by default).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from redline.cli.inputs import signing_key


@click.group()
def verify() -> None:
    """Verify declared training runs by re-executing an unpredictable sample of their transcripts."""


@verify.command("run")
@click.argument("run_id", metavar="RUN")
@click.option("--transcript", "transcript_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The run's transcript directory.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The auditor's private key file (its name is the auditor party).")
@click.option("--log", "logdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The log: the run's declaration and the sampling seed come from it.")
@click.option("--run-party", default=None, help="The lab that declared the run (default: the only one with RUN).")
@click.option("--seed", "seed_hex", default=None, help="Sampling seed in hex (required without --log).")
@click.option("--submit", is_flag=True, help="Submit the signed report to the log (needs --log and its log.key).")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path), default=None,
              help="Write the signed report envelope to FILE ('-': stdout, the default without --submit).")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON instead of a table.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Segments re-executed in parallel (local processes).")
@click.option("--target-p-detect", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.99,
              show_default=True, help="Probability of catching a run with --fake-fraction of its steps faked.")
@click.option("--fake-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1,
              show_default=True, help="Fraction of faked steps the sample size is chosen to catch.")
@click.option("--budget", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Largest share of the run's steps the sample may re-execute; the sample shrinks to fit (never "
                   "below the size that catches half the steps faked with P ≥ 0.99) and the report then gives "
                   "the lower P(detect). 1 lifts the cap.")
@click.option("--seq", type=click.IntRange(min=1), default=None,
              help="The report's sequence number (default: the auditor's next on --log, else 1).")
@click.option("--device", default="cpu", show_default=True, help="Where to re-execute segments.")
@click.option("--log-key", "log_key", default=None,
              help="With --log: the log's verifier key (string or .pub file) you trust; a log signed by any other "
                   "key is refused (without it the key the log names is trusted, with a note).")
@click.option("--log-origin", default=None,
              help="Without --log: the origin of the log the report is for (with --log: that log's).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Re-execute the sampled segments as Ray tasks (the ray extra): on the cluster at ADDRESS "
                   "(e.g. ray://head:10001, or auto), or on a local Ray instance (2 CPUs) when none is given. "
                   "The transcript must be at the same path on every node. Replaces --workers.")
def verify_run(run_id: str, transcript_dir: Path, key_path: Path, logdir: Path | None, run_party: str | None,
               seed_hex: str | None, submit: bool, out: Path | None, as_json: bool, workers: int,
               target_p_detect: float, fake_fraction: float, budget: float, seq: int | None, device: str,
               log_key: str | None, log_origin: str | None, ray_address: str | None = None) -> None:
    """Verify the declared run RUN from its transcript, and sign the report with the auditor's key."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from redline.verify import VerificationPolicy, verify_transcript
    from redline.verify.report import sign_report

    key = signing_key(key_path)
    err = Console(stderr=True)
    decl, checks, seed, start, index, earlier = None, [], None, None, None, []
    if submit and logdir is None:
        raise click.UsageError("--submit needs --log")
    if log_key is not None and logdir is None:
        raise click.UsageError("--log-key needs --log")
    if logdir is not None:
        if seed_hex is not None:
            raise click.UsageError("--seed is not allowed with --log: the seed comes from the log")
        from redline.cli.logdir import open_log
        from redline.crypto.keys import load_verifier_key
        from redline.verify.logged import logged_run

        if log_key is None:
            err.print("note: trusting the log key stored in the log itself; pass --log-key to pin it")
        from redline.statecache import load_state

        log = open_log(logdir, verify=True, trusted=load_verifier_key(log_key) if log_key else None)
        try:
            logged = logged_run(log, run_id, run_party,
                                load_state(log, logdir, note=lambda text: err.print(f"note: {text}")).state)
        finally:
            log.store.close()
        start, decl, index, seed, checks, earlier = (logged.start, logged.declaration, logged.index, logged.ranges,
                                                      logged.checks, logged.earlier)
        run_party = decl.party
        err.print(f"declaration: {decl.KIND} #{decl.seq} at log entry {index}; "
                  + "; ".join(f"steps {r.first_step}..{r.last_step} seeded by the log checkpoint of size "
                              f"{r.checkpoint_size} after entry {r.declaration_index} ({r.seed.hex()[:16]}…)"
                              for r in seed))
    else:
        if seed_hex is None:
            raise click.UsageError("--seed HEX is required without --log")
        if run_party is None:
            raise click.UsageError("--run-party is required without --log")
        try:
            seed = bytes.fromhex(seed_hex)
        except ValueError:
            raise click.BadParameter("not hex", param_hint="--seed") from None
        if not 1 <= len(seed) <= 64:
            raise click.BadParameter("1..64 bytes", param_hint="--seed")
    progress = Progress(TextColumn("re-executing segments"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, disable=as_json, transient=False)
    task = None

    def on_sample(sample: Any) -> None:
        nonlocal task
        task = progress.add_task("segments", total=len(sample.indexes))

    def on_segment(outcome: Any) -> None:
        if task is not None:
            progress.advance(task)

    with progress:
        policy = VerificationPolicy.of(target_p_detect=target_p_detect, assumed_fake_fraction=fake_fraction,
                                       budget=None if budget >= 1 else budget)
        runner = None
        if ray_address is not None:
            from redline.verify.ray_runner import RayRunner

            runner = RayRunner(ray_address or None)
        result = verify_transcript(transcript_dir, seed=seed, policy=policy, workers=workers, runner=runner,
                                   declaration=decl,
                                   device=device, extra_checks=checks, on_sample=on_sample, on_segment=on_segment,
                                   run_start=start, run=(run_party, run_id), declaration_index=index, earlier=earlier)
    reg = None
    if submit:
        from redline.cli.logdir import open_registry

        reg = open_registry(logdir)  # type: ignore[arg-type]
        seq = reg.next_seq(key.name)
    elif seq is None:
        if logdir is not None:
            from redline.cli.logdir import replayed_state

            p = replayed_state(logdir).parties.get(key.name)
            seq = 1 if p is None else p.last_seq + 1
        else:
            seq = 1
    if logdir is not None:
        from redline.cli.logdir import log_origin as origin_of

        log_origin = origin_of(logdir)
    env = sign_report(result, key, seq=seq, run_id=run_id, run_party=run_party,  # type: ignore[arg-type]
                      log=log_origin)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "envelope": json.loads(env.to_json())}, indent=2, sort_keys=True))
    else:
        table = Table(title=f"verification of {run_party}/{run_id}: {result.verdict.upper()}")
        for col in ("check", "passed", "detail"):
            table.add_column(col, overflow="fold")
        for c in result.checks:
            table.add_row(c.name, "yes" if c.passed else "[bold red]NO[/]", c.detail)
        Console().print(table)
        cf = result.compute_fraction
        click.echo(f"verification fraction: {result.verification_fraction:.1%} of steps re-executed "
                   f"({sum(o.steps for o in result.outcomes)} of {result.total_steps}; "
                   f"{result.segments_checked} segments)")
        click.echo(f"compute fraction: {result.compute_spent_flop:.4g} FLOP spent"
                   + (f" = {cf:.2%} of the run's {result.training_flop:.4g}" if cf is not None else ""))
        if result.p_detect is not None:
            click.echo(f"P(detect) if {fake_fraction:g} of the steps were faked: ≥ {result.p_detect:.4f}")
        if result.failing_step is not None:
            click.echo(f"first bad step: {result.failing_step} ({result.bisect.method})")  # type: ignore[union-attr]
    text = env.to_json() + b"\n"
    if out is not None and str(out) != "-":
        out.write_bytes(text)
        click.echo(f"wrote the signed verification report to {out}", err=True)
    elif reg is None and not as_json:
        click.echo(text.decode(), nl=False)
    if reg is not None:
        done = reg.submit(env.to_json())
        click.echo(f"accepted: entry {done.index}, verification-report #{seq} from {key.name} "
                   f"({result.verdict})", err=True)
    if result.verdict == "fail":
        raise SystemExit(1)
    if result.verdict == "inconclusive":
        raise SystemExit(8)


__all__ = ["verify"]
