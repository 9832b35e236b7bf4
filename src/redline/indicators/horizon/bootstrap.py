"""The hierarchical bootstrap: the prepared data, the sampler and the draws."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from redline.indicators.evallogs import Run
from redline.indicators.horizon.fit import fit_logistic_exact, horizon_minutes, invsqrt_task_weights


@dataclass
class _Data:
    models: list[str]
    model_idx: np.ndarray
    task_idx: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    family_of_task: np.ndarray
    n_tasks: int
    n_families: int


def _prepare(runs: Sequence[Run], models: list[str]) -> _Data:
    scored = [r for r in runs if r.score is not None and r.model in set(models)]
    tasks = sorted({r.task_id for r in scored})
    fams = sorted({r.task_family for r in scored})
    t_index = {t: i for i, t in enumerate(tasks)}
    f_index = {f: i for i, f in enumerate(fams)}
    m_index = {m: i for i, m in enumerate(models)}
    family_of_task = np.zeros(len(tasks), dtype=np.int64)
    for r in scored:
        family_of_task[t_index[r.task_id]] = f_index[r.task_family]
    model_idx = np.array([m_index[r.model] for r in scored], dtype=np.int64)
    w = np.zeros(len(scored))
    for m, _name in enumerate(models):
        rows = np.flatnonzero(model_idx == m)
        if len(rows):
            w[rows] = invsqrt_task_weights([scored[i].task_id for i in rows], [scored[i].task_family for i in rows])
    return _Data(
        models=models, model_idx=model_idx,
        task_idx=np.array([t_index[r.task_id] for r in scored], dtype=np.int64),
        x=np.log2(np.array([r.human_minutes for r in scored], dtype=float)),
        y=np.array([r.score for r in scored], dtype=float), w=w,
        family_of_task=family_of_task, n_tasks=len(tasks), n_families=len(fams),
    )


class _Sampler:
    """Hierarchical resampling (families → tasks → runs within task and model), vectorised."""

    def __init__(self, d: _Data) -> None:
        # tasks grouped by family
        self.fam_tasks = np.argsort(d.family_of_task, kind="stable")
        self.fam_size = np.bincount(d.family_of_task, minlength=d.n_families)
        self.fam_start = np.concatenate([[0], np.cumsum(self.fam_size)[:-1]])
        # rows grouped by task, then model
        self.order = np.lexsort((d.model_idx, d.task_idx))
        self.task_len = np.bincount(d.task_idx, minlength=d.n_tasks)
        self.task_start = np.concatenate([[0], np.cumsum(self.task_len)[:-1]])
        key = d.task_idx[self.order] * (len(d.models) + 1) + d.model_idx[self.order]
        boundaries = np.flatnonzero(np.diff(key)) + 1
        starts = np.concatenate([[0], boundaries])
        sizes = np.diff(np.concatenate([starts, [len(key)]]))
        self.grp_start = np.repeat(starts, sizes)
        self.grp_size = np.repeat(sizes, sizes)
        self.n_families = d.n_families

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        fams = rng.choice(self.n_families, size=self.n_families, replace=True)
        slots = np.repeat(fams, self.fam_size[fams])
        pick = (rng.random(len(slots)) * self.fam_size[slots]).astype(np.int64)
        tasks = self.fam_tasks[self.fam_start[slots] + pick]
        lens = self.task_len[tasks]
        total = int(lens.sum())
        offsets = np.repeat(self.task_start[tasks] - (np.cumsum(lens) - lens), lens)
        pos = offsets + np.arange(total)
        new = self.grp_start[pos] + (rng.random(total) * self.grp_size[pos]).astype(np.int64)
        return self.order[new]


def _bootstrap(d: _Data, n: int, seed: int, c: float, progress: Callable[[int, int], None] | None,
               ) -> tuple[np.ndarray, np.ndarray]:
    sampler = _Sampler(d)
    p50 = np.full((n, len(d.models)), np.nan)
    p80 = np.full((n, len(d.models)), np.nan)
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        idx = sampler.draw(rng)
        mi = d.model_idx[idx]
        for m in range(len(d.models)):
            rows = idx[mi == m]
            if len(rows) == 0:
                continue
            fit = fit_logistic_exact(d.x[rows], d.y[rows], d.w[rows], c)
            if fit is None:
                continue
            slope, intercept = fit
            p50[i, m] = horizon_minutes(slope, intercept, 0.5)
            p80[i, m] = horizon_minutes(slope, intercept, 0.8)
        if progress is not None:
            progress(i + 1, n)
    return p50, p80
