"""``redline compute``: estimates of training compute, and the public model landscape against danger lines.

- ``screen CSV``: which models in Epoch AI's notable models CSV cross which lines of a policy;
- ``six-nd-check CSV``: how close 6·N·D comes to Epoch's operation-counting estimates;
- ``estimate``: 6·N·D, chips × hours × peak × utilization, and a counted figure, cross-checked.

Results derived from Epoch's data carry its credit (CC BY 4.0).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from redline.errors import InvalidPolicy

_csv_arg = click.argument("csv_path", metavar="CSV",
                          type=click.Path(exists=True, dir_okay=False, path_type=Path))


def _console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=180)


def _e(x: float | None, *, prefix: str = "") -> str:
    return "—" if x is None else f"{prefix}{x:.3g}"


def _policy(name_or_path: str) -> Any:
    from redline.policy import PACKS, resolve_policy

    if name_or_path not in PACKS and not Path(name_or_path).is_file():
        raise InvalidPolicy(f"--policy {name_or_path!r} is neither a policy pack ({', '.join(PACKS)}) "
                            "nor a policy file")
    if name_or_path not in PACKS:
        from redline.cli.inputs import check_regular
        from redline.policy.model import MAX_POLICY_BYTES

        check_regular(name_or_path, MAX_POLICY_BYTES, f"policy file {name_or_path}")
    return resolve_policy(name_or_path)


def _csv(path: Path) -> Path:
    """PATH, once it is known to be a regular file within the CSV bound (``/dev/zero`` would never end)."""
    from redline.cli.inputs import check_regular
    from redline.compute.epoch import MAX_CSV_BYTES

    check_regular(path, MAX_CSV_BYTES)
    return path


@click.group()
def compute() -> None:
    """Training compute: estimates, cross-checks, and screening real models against danger lines.

    Compute is counted the EU AI Act way: cumulative over a model's lineage, all
    operations alike, an estimate good to ±30%. See docs/compute.md.
    """


# --- screen ---------------------------------------------------------------------------------


@compute.command()
@_csv_arg
@click.option("--policy", "policy_name", default="eu-ai-act", show_default=True,
              help="A policy pack name or a policy file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--crossing-only", is_flag=True, help="List only the models that cross at least one line.")
def screen(csv_path: Path, policy_name: str, as_json: bool, crossing_only: bool) -> None:
    """Screen the models in Epoch AI's notable models CSV against a policy's lines.

    Only lines on training_compute (scopes run and model-lineage) and on
    modification_compute_fraction can be judged from this data; every other line
    is listed as skipped, with the reason. A fine-tune's lineage compute is the
    larger of Epoch's training compute and its base models' compute (looked up in
    the same file) plus its finetune compute; '≥' marks a figure whose lineage is
    incomplete in the data. Models without any compute figure are counted, not listed.
    """
    from redline.compute.epoch import CREDIT, read_epoch_csv
    from redline.compute.epoch import screen as do_screen

    policy = _policy(policy_name)
    result = do_screen(read_epoch_csv(_csv(csv_path)), policy)
    if as_json:
        click.echo(json.dumps(result.to_json(crossing_only=crossing_only), indent=2, ensure_ascii=False))
        return
    console = _console()
    rows = [r for r in result.rows if r.crossed] if crossing_only else list(result.rows)
    table = Table(title=f"{csv_path.name} against policy {policy.id} "
                        f"({len(rows)} of {len(result.rows)} models with a compute figure)")
    for col in ("Model", "Organization", "Date", "Compute (FLOP)", "Base model / cumulative (FLOP)", "Lines crossed"):
        table.add_column(col, justify="right" if col.startswith("Compute") else "left", overflow="fold")
    for r in rows:
        m = r.model
        lineage = ""
        if m.base_model:
            mark = "" if r.lineage.complete else "≥"
            lineage = f"{_e(r.lineage.value, prefix=mark)} ({r.lineage.note})"
        table.add_row(Text(m.name), Text(m.organization), Text(m.date or "—"), _e(m.compute), Text(lineage),
                      Text(", ".join(r.crossed) or "—"))
    console.print(table)
    lines = Table(title="Lines screened", show_lines=False)
    for col in ("Line", "Metric (scope)", "Rule", "Models crossing"):
        lines.add_column(col)
    for ln in result.screened_lines:
        lines.add_row(Text(ln.id), Text(f"{ln.metric} ({ln.scope})"), Text(f"{ln.comparator} {ln.value:.4g} {ln.unit}"),
                      str(len(result.crossing(ln.id))))
    console.print(lines)
    if result.skipped_lines:
        console.print("Lines skipped (not answerable from this data):")
        for ln, why in result.skipped_lines:
            console.print(Text(f"  {ln.id} ({ln.metric}, scope {ln.scope}): {why}"))
    console.print(Text(f"{result.without_compute} models have no compute figure and were not screened. "
                       "Lines are judged on compute alone; other conditions of a line (e.g. modality) are not "
                       "checked."))
    if result.problems:
        console.print(Text(f"{len(result.problems)} cells did not parse and were treated as missing, e.g. "
                           f"{result.problems[0]}"))
    console.print(Text(f"Source: {CREDIT}."))


# --- six-nd-check -------------------------------------------------------------------------


@compute.command("six-nd-check")
@_csv_arg
@click.option("--top", default=15, show_default=True, type=click.IntRange(0, 1000),
              help="How many outliers to list.")
@click.option("--exact-method", is_flag=True,
              help="Only rows estimated by operation counting alone (not combined with another method).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def six_nd_check(csv_path: Path, top: int, exact_method: bool, as_json: bool) -> None:
    """Compare 6·N·D with Epoch's operation-counting estimates of training compute.

    Rows qualify when their estimation method includes operation counting and they
    give parameters N, a dataset size and training compute. D = dataset size ×
    Epochs when Epochs is given (one pass otherwise). The ratio is 6·N·D / Epoch's
    figure; the outliers are the rows with the largest |log ratio|, with hints read
    from the row (fine-tune, MoE, non-token datasets, missing epochs, pre-2017 model).
    """
    from redline.compute.epoch import CREDIT, read_epoch_csv
    from redline.compute.epoch import six_nd_check as check

    report = check(read_epoch_csv(_csv(csv_path)), exact_method=exact_method)
    if as_json:
        click.echo(json.dumps(report.to_json(top=top), indent=2, ensure_ascii=False))
        return
    console = _console()
    stats = Table(title="6·N·D / Epoch's figure (D = dataset size × epochs when given)")
    for col in ("Rows", "Count", "Median", "IQR (25th–75th)", "10th–90th", "Within ±30%"):
        stats.add_column(col, justify="left" if col == "Rows" else "right")
    for label, s in (("all", report.overall), *report.groups.items()):
        if s is None:
            stats.add_row(label, "0", "—", "—", "—", "—")
            continue
        stats.add_row(label, str(s.count), f"{s.median:.3g}", f"{s.q1:.3g}–{s.q3:.3g}", f"{s.p10:.3g}–{s.p90:.3g}",
                      f"{s.within_30} ({100 * s.within_30 / s.count:.0f}%)")
    console.print(stats)
    excluded = ", ".join(f"{k}: {v}" for k, v in report.excluded.items() if v)
    console.print(Text(f"{report.considered} rows estimated by operation counting; "
                       f"{len(report.rows)} compared; excluded: {excluded or 'none'}."))
    if top:
        out = Table(title=f"The {min(top, len(report.rows))} largest outliers")
        for col in ("Model", "Domain", "N", "D (× epochs)", "6·N·D", "Epoch", "Ratio", "Likely why"):
            numeric = col in ("N", "6·N·D", "Epoch", "Ratio")
            out.add_column(col, overflow="fold", justify="right" if numeric else "left")
        for r in report.outliers(top):
            m = r.model
            d = f"{m.dataset_size:.3g}" + (f" × {r.epochs_used:g}" if r.epochs_used else "")
            out.add_row(Text(m.name), Text(m.domain), _e(m.parameters), d, _e(r.six_nd), _e(m.compute),
                        f"{r.ratio:.3g}", Text("; ".join(r.hints) or "—"))
        console.print(out)
    console.print(Text(f"Source: {CREDIT}."))


# --- estimate ----------------------------------------------------------------------------------


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise click.BadParameter(f"must be a finite number > 0, got {value}")
    return value


@compute.command()
@click.option("--params", type=float, callback=_positive, help="Parameters N (all, embeddings included).")
@click.option("--tokens", type=float, callback=_positive, help="Training tokens D (dataset × epochs).")
@click.option("--chip", help="Chip model from the catalog, e.g. 'H100 SXM' (see docs/compute.md).")
@click.option("--count", type=click.IntRange(min=1), help="Number of chips.")
@click.option("--hours", type=float, callback=_positive, help="Wall-clock training hours.")
@click.option("--utilization", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Share of dense BF16 peak sustained (default 0.4, an assumption).")
@click.option("--counted", type=float, callback=_positive, help="FLOP counted by operation counting, to cross-check.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def estimate(params: float | None, tokens: float | None, chip: str | None, count: int | None, hours: float | None,
             utilization: float | None, counted: float | None, as_json: bool) -> None:
    """Estimate a run's training compute and cross-check the estimates (±30%).

    Give --params and --tokens for 6·N·D; --chip, --count and --hours (and
    optionally --utilization) for chips × hours × peak × utilization; --counted for
    a figure from operation counting. Every pair of estimates given is compared; a
    pair whose larger value exceeds the smaller by more than 30% is a disagreement.
    """
    from redline.compute.estimates import DEFAULT_UTILIZATION, hardware_estimate, six_nd
    from redline.compute.eu import cross_check

    if (params is None) != (tokens is None):
        raise click.UsageError("6·N·D needs both --params and --tokens")
    hw_opts = {"--chip": chip, "--count": count, "--hours": hours}
    if any(v is not None for v in hw_opts.values()) or utilization is not None:
        missing = [k for k, v in hw_opts.items() if v is None]
        if missing:
            raise click.UsageError(f"the hardware estimate needs {', '.join(missing)} too")
    if params is None and chip is None and counted is None:
        raise click.UsageError("give --params and --tokens, or --chip, --count and --hours, or --counted")
    snd = six_nd(params, tokens) if params is not None and tokens is not None else None
    hw = None
    if chip is not None and count is not None and hours is not None:
        hw = hardware_estimate(chip, count, hours, DEFAULT_UTILIZATION if utilization is None else utilization)
    check = cross_check(counted=counted, six_nd=snd, hardware=hw.flop if hw else None)
    if as_json:
        doc: dict[str, Any] = {"six_nd": snd, "counted": counted, "hardware": hw.to_json() if hw else None,
                               "utilization_assumed": hw is not None and utilization is None,
                               "cross_check": check.to_json()}
        click.echo(json.dumps(doc, indent=2))
        return
    if counted is not None:
        click.echo(f"counted:  {counted:.4g} FLOP")
    if snd is not None:
        click.echo(f"6·N·D:    {snd:.4g} FLOP  (6 × {params:.4g} params × {tokens:.4g} tokens)")
    if hw is not None:
        assumed = " (assumed)" if utilization is None else ""
        click.echo(f"hardware: {hw.flop:.4g} FLOP  ({hw.count} × {hw.chip.chip} at {hw.chip.bf16_dense_tflops:g} "
                   f"TFLOP/s dense BF16 × {hw.hours:g} h × utilization {hw.utilization:g}{assumed})")
        click.echo(f"          {hw.h100e:.4g} H100e, {hw.h100e_hours:.4g} H100e-hours")
    if check.compared < 2:
        click.echo("cross-check: only one estimate given, nothing to compare")
        return
    for (a, b), ratio in check.ratios.items():
        flag = "DISAGREE" if (a, b) in check.disagreeing else "agree"
        click.echo(f"{a}/{b}: {ratio:.3f}  {flag} (±{check.tolerance:.0%})")
    click.echo(f"estimates disagree: {'yes' if check.disagree else 'no'}")


__all__ = ["compute"]
