"""``redline indicators``: measure indicators of recursive self-improvement and sign them.

``redline indicators code-share REPO`` measures the share of a repository's code
authored by AI (see ``docs/indicators.md``). Every indicator command can sign its
result (``--sign KEY``) and submit it to a log (``--submit LOGDIR``) or write the
envelope (``--out FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.table import Table

from redline.crypto.canonical import canonical_json

_sign_options = [
    click.option("--sign", "sign_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Sign the result as an indicator statement with this private key file."),
    click.option("--subject", default=None,
                 help="The statement's subject (default: the repository's name). An auditor measuring a "
                      "lab's repository names the lab's party here."),
    click.option("--submit", "submit_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                 help="With --sign: submit the statement to the log in this directory."),
    click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="With --sign: write the signed envelope (JSON) to this file."),
    click.option("--seq", type=click.IntRange(min=1), default=None,
                 help="The statement's sequence number (default with --submit: the party's next one; "
                      "required with --out alone)."),
    click.option("--receipt", "receipt_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="With --submit: write the offline receipt (C2SP tlog-proof) here."),
    click.option("--log-origin", default=None, expose_value=False,
                 callback=lambda ctx, param, value: ctx.meta.__setitem__("redline.log_origin", value),
                 help="With --out alone: the origin of the log the statement is for (with --submit: that log's)."),
]


def sign_options(fn):
    """Decorate a command with the shared --sign/--subject/--submit/--out/--seq/--receipt options."""
    for opt in reversed(_sign_options):
        fn = opt(fn)
    return fn


def check_sign_options(sign_key: Path | None, submit_dir: Path | None, out_file: Path | None, seq: int | None,
                       receipt_file: Path | None) -> None:
    """Refuse inconsistent signing options before any work is done."""
    if sign_key is None:
        for name, value in (("--submit", submit_dir), ("--out", out_file), ("--seq", seq),
                            ("--receipt", receipt_file)):
            if value is not None:
                raise click.UsageError(f"{name} needs --sign KEY")
        return
    if submit_dir is None and out_file is None:
        raise click.UsageError("--sign needs --submit LOGDIR or --out FILE (or both)")
    if submit_dir is None and seq is None:
        raise click.UsageError("--out without --submit needs --seq N (the party's next sequence number)")
    if submit_dir is None and not click.get_current_context().meta.get("redline.log_origin"):
        raise click.UsageError("--out without --submit needs --log-origin ORIGIN (the log the statement is for)")
    if receipt_file is not None and submit_dir is None:
        raise click.UsageError("--receipt needs --submit LOGDIR")


def emit(fields: dict, sign_key: Path, submit_dir: Path | None, out_file: Path | None, seq: int | None,
         receipt_file: Path | None) -> None:
    """Sign ``fields`` (as for ``indicator_envelope``) and submit and/or write the statement; report on stderr."""
    from redline.cli.inputs import signing_key
    from redline.indicators.signing import submit_or_write

    key = signing_key(sign_key)
    done = submit_or_write(key, logdir=submit_dir, out=out_file, seq=seq, receipt=receipt_file,
                           log=click.get_current_context().meta.get("redline.log_origin"), **fields)
    if done.index is not None:
        click.echo(f"accepted: entry {done.index}, indicator #{done.seq} from {key.name}", err=True)
    if done.out is not None:
        click.echo(f"signed indicator statement #{done.seq} written to {done.out}", err=True)
    if done.receipt is not None:
        click.echo(f"receipt written to {done.receipt}", err=True)


@click.group()
def indicators() -> None:
    """Indicators of recursive self-improvement: AI code share (and more), measured and signed."""


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@indicators.command("code-share")
@click.argument("repo", type=click.Path(path_type=Path))
@click.option("--branch", default="HEAD", show_default=True, help="The branch (or any revision) whose "
              "first-parent history is measured.")
@click.option("--since", default=None, help="Window start (inclusive), by committer date: ISO 8601 date or "
              "date-time, UTC unless an offset is given. Default: the beginning of history.")
@click.option("--until", default=None, help="Window end (exclusive), by committer date. Default: none.")
@click.option("--survival", "survival_range", metavar="START..END", default=None,
              help="Survival mode: the lines added after START that still exist at END (git blame -M -C -C).")
@click.option("--profile", type=click.Choice(["default", "aider"]), default="default", show_default=True,
              help="Counting profile. aider: the method of aider's scripts/blame.py (author or subject marks, aider's "
                   "file list, blank lines counted, git blame -M100 -C100 -C -C), to check against the figures aider "
                   "publishes; survival mode only. See docs/indicators.md.")
@click.option("--include", multiple=True, metavar="GLOB", help="Count only files matching a GLOB (repeatable); "
              "an include also overrides the default ignore list.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Do not count files matching GLOB (repeatable).")
@click.option("--no-default-ignore", is_flag=True, help="Count generated, vendored and lock files too "
              "(drop the rule file's ignore list).")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A rule file to use instead of the built-in ai-authorship-v3.")
@click.option("--notes-complete/--no-notes-complete", default=None,
              help="Assert (or deny) that every commit with AI-written lines carries a git-ai note, so a commit "
                   "without one is human. Default: the repository's own declaration in .redline/code-share.yaml.")
@click.option("--agent-trace", "agent_trace", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="An Agent Trace JSONL file (default: .agent-trace/traces.jsonl at the branch tip).")
@click.option("--agent-trace-revision", type=click.Choice(["commit", "parent"]), default="commit",
              show_default=True, help="What a trace record's vcs.revision names: the commit holding the lines "
              "(the spec) or the HEAD the edit was made on (the reference hook).")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Parallel git blame processes.")
@click.option("--json", "as_json", is_flag=True, help="Print the result summary as JSON.")
@click.option("--evidence", "evidence_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the full evidence document (canonical JSON; its SHA-256 is the evidence digest).")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of the code share over time.")
@sign_options
def code_share_cmd(repo: Path, branch: str, since: str | None, until: str | None, survival_range: str | None,
                   profile: str, include: tuple[str, ...], exclude: tuple[str, ...], no_default_ignore: bool,
                   rules_file: Path | None, notes_complete: bool | None, agent_trace: Path | None,
                   agent_trace_revision: str, jobs: int | None, as_json: bool, evidence_file: Path | None,
                   plot_file: Path | None, sign_key: Path | None, subject: str | None, submit_dir: Path | None,
                   out_file: Path | None, seq: int | None, receipt_file: Path | None) -> None:
    """Measure the share of REPO's code authored by AI.

    Window mode (default): the lines added by the first-parent commits of --branch
    committed in [--since, --until). Survival mode (--survival START..END): the lines
    added after START that still exist at END. Lines are judged by git-ai notes and
    Agent Trace records (line level), then by Co-authored-by trailers, bot identities
    and aider markers (commit level); lines with no evidence are reported as unknown.
    """
    from redline.indicators import codeshare as cs

    check_sign_options(sign_key, submit_dir, out_file, seq, receipt_file)
    if survival_range is not None and (since or until or branch != "HEAD"):
        raise click.UsageError("--survival START..END replaces --branch, --since and --until")
    if profile != "default" and survival_range is None:
        raise click.UsageError(f"--profile {profile} needs --survival START..END (it reproduces a blame-based method)")
    common = dict(include=include, exclude=exclude, default_ignore=not no_default_ignore, rules=rules_file,
                  notes_complete=notes_complete, agent_trace=agent_trace, agent_trace_revision=agent_trace_revision,
                  jobs=jobs)
    if survival_range is not None:
        result = cs.survival(repo, survival_range, profile=profile, **common)
    else:
        result = cs.code_share(repo, branch=branch, since=since, until=until, **common)

    if evidence_file is not None:
        evidence_file.write_bytes(canonical_json(result.evidence()))
    if plot_file is not None:
        cs.plot(result, plot_file)
    if as_json:
        click.echo(json.dumps({**result.summary(), "evidence_digest": result.evidence_digest}, indent=2))
    else:
        _render(result, Console())
    if evidence_file is not None:
        click.echo(f"evidence written to {evidence_file}", err=True)
    if plot_file is not None:
        click.echo(f"plot written to {plot_file}", err=True)
    if sign_key is not None:
        emit(result.indicator_fields(subject or result.repository), sign_key, submit_dir, out_file, seq,
             receipt_file)


def _render(result, console: Console) -> None:
    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    t = result.totals
    if result.mode == "survival":
        line(f"AI code share of {result.repository}: lines added after {result.start[:12]} that survive at "
             f"{result.branch} ({result.tip[:12]})")
    else:
        line(f"AI code share of {result.repository}: lines added to {result.branch} ({result.tip[:12]}) "
             f"committed {result.window_start:%Y-%m-%d %H:%M} .. {result.window_end:%Y-%m-%d %H:%M} UTC")
    line(f"{result.population_commits} commits ({result.merges} merges), {t.total} lines counted; "
         f"rules {result.rules.rule_version}, profile {result.profile.name}"
         + (f"; notes complete: {result.notes_complete}" if result.notes_complete else ""))
    line(f"  point estimate   {_pct(t.point)}   (lower bound {_pct(t.lower_bound)}, upper bound {_pct(t.upper_bound)})")
    line(f"  unknown          {_pct(t.unknown_share)}   (no evidence either way; never counted as human)")
    line(f"  coverage         {_pct(t.line_coverage)} of lines with line-level evidence, {_pct(t.coverage)} with any")
    table = Table(title="by file class", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="AI, human: by line-level evidence; AI commit: by commit-level evidence")
    for col in ("class", "lines", "AI", "human", "AI commit", "unknown", "point", "interval"):
        table.add_column(col, justify="right" if col != "class" else "left", no_wrap=True)
    for name, s in [*result.by_class.items(), ("all", t)]:
        if s.total == 0:
            continue
        table.add_row(name, str(s.total), str(s.ai_line), str(s.human_line), str(s.ai_commit), str(s.unknown),
                      _pct(s.point), f"{100 * s.lower_bound:.1f}-{_pct(s.upper_bound)}")
    console.print(table)
    if result.markers:
        line("commit-level markers (commits): " + ", ".join(f"{k} {v}" for k, v in sorted(result.markers.items())))
    if result.involvement:
        line("involvement only, not counted (commits): "
             + ", ".join(f"{k} {v}" for k, v in sorted(result.involvement.items())))
    line(f"evidence digest sha256:{result.evidence_digest}")


def _utc_option(value: str | None, what: str):
    from redline.errors import MalformedInput
    from redline.times import parse_iso_lenient

    if value is None:
        return None
    try:
        return parse_iso_lenient(value)
    except MalformedInput:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=what) from None


@indicators.command("horizon")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--minutes-key", default="human_minutes", show_default=True,
              help="Inspect sample metadata key holding the task's human length in minutes.")
@click.option("--family-key", default="task_family", show_default=True,
              help="Inspect sample metadata key naming the task family (default family: the Inspect task).")
@click.option("--human-minutes", "minutes_csv", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="A CSV task_id,human_minutes to use instead of sample metadata.")
@click.option("--scorer", default=None, help="The Inspect scorer whose score is success (needed when there are "
              "several).")
@click.option("--score-key", default=None, help="The key of a dict-valued Inspect score.")
@click.option("--score-field", type=click.Choice(["auto", "score_binarized", "score_cont"]), default="auto",
              show_default=True, help="Run tables: which score column (auto: score_binarized if present).")
@click.option("--errors", type=click.Choice(["exclude", "fail"]), default="exclude", show_default=True,
              help="Errored samples: leave them out of the fit, or count them as failures.")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable).")
@click.option("--release-dates", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A CSV model,date: also fit the doubling time of the 50% horizon.")
@click.option("--sota-only", is_flag=True, help="Fit the doubling time over the models that were state of the "
              "art at their release only (as METR's trend).")
@click.option("--bootstrap", "n_bootstrap", type=click.IntRange(0, 100_000), default=1000, show_default=True,
              help="Hierarchical bootstrap draws for the 95% intervals (0: no intervals).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=42, show_default=True,
              help="Seed of the bootstrap (draw i uses seed + i).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG of success against task length with the fitted curves.")
@click.option("--window-start", default=None, help="With --sign: the indicator window's start (ISO 8601; "
              "default: the first run in the logs).")
@click.option("--window-end", default=None, help="With --sign: the indicator window's end (ISO 8601; "
              "default: the last run in the logs).")
@sign_options
def horizon_cmd(logs: tuple[Path, ...], minutes_key: str, family_key: str, minutes_csv: Path | None,
                scorer: str | None, score_key: str | None, score_field: str, errors: str, models: tuple[str, ...],
                release_dates: Path | None, sota_only: bool, n_bootstrap: int, seed: int, as_json: bool,
                plot_file: Path | None, window_start: str | None, window_end: str | None, sign_key: Path | None,
                subject: str | None, submit_dir: Path | None, out_file: Path | None, seq: int | None,
                receipt_file: Path | None) -> None:
    """METR-style 50% and 80% time horizons of the models in LOGS.

    LOGS are Inspect AI logs (.eval, .json), METR run tables (.jsonl) or directories
    of them. Per model: a weighted logistic regression of success on log2(human
    minutes) (METR 2025) with hierarchical-bootstrap 95% intervals; with
    --release-dates, the doubling time of the 50% horizon. With --sign, each model's
    50% horizon (hours) becomes a signed time-horizon-50 indicator whose subject is
    the model.
    """
    import sys

    from redline.errors import MalformedInput
    from redline.indicators import horizon as hz
    from redline.indicators.evallogs import read_runs

    check_sign_options(sign_key, submit_dir, out_file, seq, receipt_file)
    ws, we = _utc_option(window_start, "--window-start"), _utc_option(window_end, "--window-end")
    runset = read_runs(list(logs), minutes_key=minutes_key, family_key=family_key, minutes_csv=minutes_csv,
                       scorer=scorer, score_key=score_key, score_field=score_field, errors=errors)
    dates = hz.read_release_dates(release_dates) if release_dates is not None else None

    bar = None
    if not as_json and n_bootstrap and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(TextColumn("bootstrap"), BarColumn(), MofNCompleteColumn(), console=Console(stderr=True),
                       transient=True)
        task = bar.add_task("bootstrap", total=n_bootstrap)
        bar.start()
    try:
        report = hz.analyse(runset, n_bootstrap=n_bootstrap, seed=seed, release_dates=dates, sota_only=sota_only,
                            models=list(models) or None,
                            progress=None if bar is None else (lambda done, _: bar.update(task, completed=done)))
    finally:
        if bar is not None:
            bar.stop()

    if plot_file is not None:
        chosen = {m.model for m in report.models}
        hz.plot(report, [r for r in runset.runs if r.model in chosen], plot_file)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        _render_horizons(report, Console())
    if plot_file is not None:
        click.echo(f"plot written to {plot_file}", err=True)
    if sign_key is None:
        return
    targets = [m for m in report.models if m.finite]
    for m in report.models:
        if not m.finite:
            click.echo(f"not signed: {m.model}: no finite 50% horizon ({m.horizon_text()})", err=True)
    if not targets:
        raise MalformedInput("no model has a finite 50% horizon: nothing to sign")
    if len(targets) > 1 and (out_file is not None or receipt_file is not None or seq is not None
                             or subject is not None):
        raise click.UsageError("--out, --receipt, --seq and --subject name one statement; choose one of "
                               f"{', '.join(m.model for m in targets)} with --model")
    for m in targets:
        fields = hz.indicator_fields(report, m.model, window_start=ws, window_end=we)
        if subject is not None:
            fields["subject"] = subject
        emit(fields, sign_key, submit_dir, out_file, seq, receipt_file)


def _render_horizons(report, console: Console) -> None:
    table = Table(title=f"50% and 80% time horizons [95% CI] (METR 2025 logistic fit, {report.n_bootstrap} "
                        f"bootstrap draws, seed {report.seed})")
    for col in ("model", "runs", "completed", "errored", "limit-hit", "slope", "50% horizon", "80% horizon",
                "warning"):
        table.add_column(col, overflow="fold",
                         justify="right" if col in ("runs", "completed", "errored", "limit-hit", "slope") else "left")
    for m in report.models:
        flags = []
        if m.status != "ok":
            flags.append("no finite horizon")
        if m.slope is not None and m.slope >= 0:
            flags.append("slope not negative")
        if m.status == "ok" and report.n_bootstrap and m.n_bootstrap_used < report.n_bootstrap:
            flags.append(f"{report.n_bootstrap - m.n_bootstrap_used}/{report.n_bootstrap} draws skipped")
        if any("converge" in w for w in m.warnings):
            flags.append("fit not converged")
        table.add_row(
            m.model, str(m.n_runs), "n/a" if m.completion_rate is None else _pct(m.completion_rate),
            str(m.n_errored), str(m.n_limit_hit), "n/a" if m.slope is None else f"{m.slope:.3f}",
            f"{m.horizon_text('p50')} {m.interval_text('p50')}".strip(),
            f"{m.horizon_text('p80')} {m.interval_text('p80')}".strip(),
            "; ".join(flags))
    console.print(table)
    for m in report.models:
        for w in m.warnings:
            console.print(f"{m.model}: {w}", highlight=False)
    d = report.doubling
    if d is not None:
        if d.days is not None:
            ci = f" [{d.low_days:.0f}, {d.high_days:.0f}]" if d.low_days is not None else ""
            console.print(f"Doubling time of the 50% horizon: {d.days:.0f} days{ci} ({d.months:.1f} months), "
                          f"over {len(d.models)} models{' (SOTA only)' if d.sota_only else ''}; R² "
                          f"{d.r_squared:.2f}", highlight=False)
        for w in d.warnings:
            console.print(f"  note: {w}", highlight=False)
    for n in report.notes:
        console.print(f"note: {n}", highlight=False)
    console.print(f"evidence digest sha256:{report.evidence_digest}", highlight=False)
