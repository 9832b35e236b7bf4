"""The plot: success against task length with the fitted curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from redline.errors import MalformedInput
from redline.indicators.evallogs import Run
from redline.indicators.horizon.report import HorizonReport


def plot(report: HorizonReport, runs: Sequence[Run], path: Path | str) -> None:
    """A PNG of success against task length (log scale) per model, with the fitted curves and 50% horizons."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    try:
        scored = [r for r in runs if r.score is not None]
        if not scored:
            raise MalformedInput("nothing to plot: no scored runs")
        lo = min(r.human_minutes for r in scored)
        hi = max(r.human_minutes for r in scored)
        grid = np.logspace(np.log10(lo / 2), np.log10(hi * 2), 200)
        colours = plt.get_cmap("tab10")
        for i, m in enumerate(report.models):
            colour = colours(i % 10)
            per_task: dict[str, list[float]] = {}
            minutes: dict[str, float] = {}
            for r in scored:
                if r.model == m.model:
                    per_task.setdefault(r.task_id, []).append(float(r.score))  # type: ignore[arg-type]
                    minutes[r.task_id] = r.human_minutes
            if not per_task:
                continue
            xs = np.array([minutes[t] for t in per_task])
            ys = np.array([np.mean(v) for v in per_task.values()])
            sizes = np.array([12 + 6 * len(v) for v in per_task.values()])
            label = f"{m.model}: p50 {m.horizon_text()}"
            ax.scatter(xs, ys, s=sizes, color=colour, alpha=0.45, edgecolors="none")
            if m.slope is not None and m.intercept is not None:
                z = m.intercept + m.slope * np.log2(grid)
                ax.plot(grid, 1 / (1 + np.exp(-z)), color=colour, lw=2, label=label)
                if m.finite and m.p50_minutes is not None and lo / 2 <= m.p50_minutes <= hi * 2:
                    ax.axvline(m.p50_minutes, color=colour, ls=":", lw=1)
            else:
                ax.plot([], [], color=colour, lw=2, label=label)
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("task length for a human (minutes, log scale)")
        ax.set_ylabel("success (per task: mean over runs)")
        ax.set_title("Success against human task length, with METR-style logistic fits")
        ax.grid(alpha=0.2)
        ax.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        fig.savefig(str(path), format="png")
    finally:
        plt.close(fig)
