"""The plot: code share over time."""

from __future__ import annotations

from pathlib import Path

from redline.errors import (
    CodeShareError,
)
from redline.indicators.codeshare.results import CodeShareResult, Shares
from redline.times import from_seconds


def plot(result: CodeShareResult, path: str | Path) -> Path:
    """Write a PNG of the code share over time (lower bound, point estimate, upper bound; lines per period)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CodeShareError("--plot needs matplotlib (pip install 'redline[evals]')") from None
    rows = result.commits
    span = rows[-1].time - rows[0].time if rows else 0
    day = 86400
    width = day if span <= 45 * day else 7 * day if span <= 400 * day else 30 * day
    buckets: dict[int, list[int]] = {}
    for r in rows:
        b = buckets.setdefault(r.time // width * width, [0, 0, 0, 0])
        for i in range(4):
            b[i] += r.counts[i]
    keys = sorted(buckets)
    import matplotlib.dates as mdates

    edges = [mdates.date2num(from_seconds(k)) for k in keys] + [mdates.date2num(from_seconds(keys[-1] + width))]
    sh = [Shares.of(buckets[k]) for k in keys]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax.stairs([s.upper_bound for s in sh], edges, baseline=[s.lower_bound for s in sh], fill=True, alpha=0.2,
              color="tab:red", label="interval (lower bound .. upper bound)")
    ax.stairs([s.point for s in sh], edges, baseline=None, color="tab:red", linewidth=1.8, label="point estimate")
    ax.stairs([s.lower_bound for s in sh], edges, baseline=None, color="tab:red", linestyle="--", linewidth=0.8,
              label="lower bound (line-level evidence)")
    ax.set_ylim(0, 1)
    ax.set_ylabel("AI share of surviving lines" if result.mode == "survival" else "AI share of added lines")
    unit = {day: "day", 7 * day: "week", 30 * day: "30 days"}[width]
    what = "surviving lines, by their commit" if result.mode == "survival" else "lines added"
    ax.set_title(f"AI code share of {result.repository} ({result.branch}), per {unit}: {what}\n"
                 f"overall {result.point:.1%} [{result.lower_bound:.1%}, {result.upper_bound:.1%}], "
                 f"unknown {result.unknown:.1%}; rules {result.rules.rule_version}", fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    bottoms = [0] * len(keys)
    for i, (label, color) in enumerate((("AI (line level)", "tab:red"), ("human (line level)", "tab:blue"),
                                        ("AI (commit level)", "salmon"), ("unknown", "lightgray"))):
        vals = [buckets[k][i] for k in keys]
        ax2.bar(edges[:-1], vals, width=width / day * 0.9, bottom=bottoms, color=color, label=label, align="edge")
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax2.xaxis_date()
    ax2.set_ylabel("lines")
    ax2.legend(loc="upper left", fontsize=8, ncol=4)
    ax2.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out
