"""Time horizons (METR 2025): weights, fit, bootstrap, doubling time, readers and bad input, on generated data.

The data come from known logistic curves: success probability
``1 / (1 + exp(-(b0 + b1 * log2(minutes))))`` with ``b0 = -b1 * log2(h50)``, so the
true 50% horizon is ``h50`` and the 80% horizon ``h50 * 2 ** (ln 4 / b1)``.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("sklearn")

from redline.crypto.keys import SigningKey  # noqa: E402
from redline.errors import MalformedInput  # noqa: E402
from redline.indicators.evallogs import Run, RunSet, evidence_digest, read_runs, score_to_float  # noqa: E402
from redline.indicators.horizon import (  # noqa: E402
    DEFAULT_BOOTSTRAP,
    DEFAULT_C,
    METHOD,
    _Data,
    _prepare,
    _Sampler,
    _sota,
    analyse,
    fit_logistic,
    horizon_minutes,
    indicator_fields,
    invsqrt_task_weights,
    plot,
    read_release_dates,
)
from redline.statements import Indicator, open_envelope  # noqa: E402

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def _tasks(n_families: int = 14, per_family: int = 4, seed: int = 7) -> dict[tuple[str, str], float]:
    """Task id → (family, minutes): lengths spread log-uniformly over 0.5 min .. 16 h."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in range(n_families):
        for t in range(per_family):
            out[(f"fam{f}", f"fam{f}/task{t}")] = float(2 ** rng.uniform(-1, 10))
    return out


def synth(model: str, h50: float, slope: float = -0.9, *, runs_per_task: int = 4, seed: int = 0,
          tasks: dict[tuple[str, str], float] | None = None) -> list[Run]:
    """Runs of ``model`` drawn from the logistic curve with 50% horizon ``h50`` minutes."""
    rng = np.random.default_rng(seed)
    b0 = -slope * math.log2(h50)
    out = []
    for (family, task), minutes in (tasks or _tasks()).items():
        p = 1 / (1 + math.exp(-(b0 + slope * math.log2(minutes))))
        for k in range(runs_per_task):
            start = T0 + timedelta(minutes=len(out))
            out.append(Run(model=model, task_id=task, task_family=family, run_id=f"{model}/{task}/{k}",
                           human_minutes=minutes, score=float(rng.random() < p), started_at=start,
                           completed_at=start + timedelta(seconds=30), source="synthetic"))
    return out


def true_p80(h50: float, slope: float) -> float:
    return h50 * 2 ** (math.log(4) / slope)


# --- METR's weighting and regression ---------------------------------------------------


def test_invsqrt_task_weights_match_metr() -> None:
    # t1 (family f1) has 2 runs, t2 (f1) 1 run, t3 (f2) 3 runs: 1/(runs * sqrt(tasks in family)), normalised
    tasks = ["t1", "t1", "t2", "t3", "t3", "t3"]
    fams = ["f1", "f1", "f1", "f2", "f2", "f2"]
    raw = np.array([1 / (2 * math.sqrt(2))] * 2 + [1 / math.sqrt(2)] + [1 / 3] * 3)
    assert math.isclose(raw.sum(), math.sqrt(2) + 1)  # METR's check: sum of sqrt(family sizes)
    w = invsqrt_task_weights(tasks, fams)
    assert np.allclose(w, raw / raw.sum())
    assert math.isclose(w.sum(), 1.0)
    # every family weighs sqrt(its size) before normalising; every task within a family equally
    assert math.isclose(w[:3].sum() / w[3:].sum(), math.sqrt(2))


def test_fit_is_sklearn_logistic_regression_with_c_10() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 9, 80)
    y = (rng.random(80) < 1 / (1 + np.exp(-(3 - 0.8 * x)))).astype(float)
    w = rng.uniform(0.5, 2, 80)
    w /= w.sum()
    slope, intercept, _ = fit_logistic(x, y, w)
    ref = LogisticRegression(C=10).fit(x.reshape(-1, 1), y.astype(int), sample_weight=w)
    assert DEFAULT_C == 10
    assert math.isclose(slope, ref.coef_[0][0], rel_tol=1e-9)
    assert math.isclose(intercept, ref.intercept_[0], rel_tol=1e-9)


def test_continuous_scores_split_into_weighted_zero_and_one_rows() -> None:
    x = np.array([0.0, 1, 2, 3, 4, 5])
    y = np.array([1, 0.75, 1, 0.25, 0, 0])
    w = np.full(6, 1 / 6)
    split = fit_logistic(x, y, w)
    # the same data written out as 0/1 rows weighted (1-y)w and yw
    xs = np.array([0.0, 1, 1, 2, 3, 3, 4, 5])
    ys = np.array([1.0, 0, 1, 1, 0, 1, 0, 0])
    ws = np.array([1, 0.25, 0.75, 1, 0.75, 0.25, 1, 1]) / 6
    whole = fit_logistic(xs, ys, ws)
    assert split is not None and whole is not None
    assert np.allclose(split[:2], whole[:2], rtol=1e-6)


def test_horizon_formula() -> None:
    slope, intercept = -0.8, 4.0
    assert math.isclose(horizon_minutes(slope, intercept, 0.5), 2 ** (-intercept / slope))
    p80 = horizon_minutes(slope, intercept, 0.8)
    assert math.isclose(1 / (1 + math.exp(-(intercept + slope * math.log2(p80)))), 0.8)
    assert horizon_minutes(0.0, 1.0, 0.5) == math.inf


# --- recovering known curves -------------------------------------------------------------


@pytest.fixture(scope="module")
def three_models():
    tasks = _tasks()
    truth = {"small": 4.0, "medium": 30.0, "large": 240.0}
    runs = [r for i, (m, h) in enumerate(truth.items()) for r in synth(m, h, seed=i, tasks=tasks)]
    dates = {"small": date(2023, 1, 1), "medium": date(2023, 1, 1) + timedelta(days=3 * 200 * 0.97),
             "large": date(2023, 1, 1) + timedelta(days=6 * 200 * 0.97)}
    return runs, truth, dates


@pytest.fixture(scope="module")
def three_report(three_models):
    runs, _, dates = three_models
    return analyse(runs, n_bootstrap=120, release_dates=dates)


def test_fit_recovers_the_true_horizons_within_their_intervals(three_models, three_report) -> None:
    _, truth, _ = three_models
    for name, h50 in truth.items():
        m = three_report.model(name)
        assert m.status == "ok" and m.slope is not None and m.slope < 0
        assert m.p50_low is not None and m.p50_high is not None
        assert m.p50_low <= h50 <= m.p50_high, (name, h50, m.p50_low, m.p50_high)
        assert m.p50_low <= m.p50_minutes <= m.p50_high
        assert 0.5 < m.p50_minutes / h50 < 2
        p80 = true_p80(h50, -0.9)
        assert 1 / 3 < m.p80_minutes / p80 < 3
        if p80 > 4:  # well inside the tasks' range (the L2 penalty pulls extrapolated 80% horizons)
            assert m.p80_low <= p80 <= m.p80_high, (name, p80, m.p80_low, m.p80_high)
        assert m.p80_minutes < m.p50_minutes
        assert m.n_bootstrap_used == 120 and not m.warnings


def test_doubling_time_is_recovered_within_its_interval(three_models, three_report) -> None:
    _, truth, dates = three_models
    # true doubling: log2(h) rises by log2(240/4) over the date span
    span = (dates["large"] - dates["small"]).days
    true_days = span / math.log2(truth["large"] / truth["small"])
    d = three_report.doubling
    assert d is not None and d.days is not None and d.low_days is not None
    assert d.low_days <= true_days <= d.high_days
    assert d.low_days <= d.days <= d.high_days
    assert d.models == ["large", "medium", "small"] and d.r_squared > 0.9
    assert math.isclose(d.months, d.days / (365.25 / 12))


def test_bootstrap_is_seeded_and_default_is_1000_draws(three_models) -> None:
    runs, _, _ = three_models
    a = analyse(runs, n_bootstrap=15, seed=3)
    b = analyse(runs, n_bootstrap=15, seed=3)
    c = analyse(runs, n_bootstrap=15, seed=4)
    assert [m.p50_low for m in a.models] == [m.p50_low for m in b.models]
    assert [m.p50_low for m in a.models] != [m.p50_low for m in c.models]
    assert DEFAULT_BOOTSTRAP == 1000
    none = analyse(runs, n_bootstrap=0)
    assert all(m.p50_low is None and m.p50_minutes is not None for m in none.models)


def test_hierarchical_sampler_resamples_families_then_tasks_then_runs() -> None:
    tasks = _tasks(n_families=5, per_family=3, seed=2)
    runs = synth("a", 10, tasks=tasks, runs_per_task=3) + synth("b", 20, tasks=tasks, runs_per_task=2, seed=1)
    d: _Data = _prepare(runs, ["a", "b"])
    sampler = _Sampler(d)
    for seed in range(5):
        idx = sampler.draw(np.random.default_rng(seed))
        # every drawn task brings all its (model) groups at their original sizes
        task_draws = np.bincount(d.task_idx[idx], minlength=d.n_tasks)
        per_task = np.bincount(d.task_idx, minlength=d.n_tasks)
        mult = task_draws // per_task
        assert np.array_equal(mult * per_task, task_draws)
        for m in (0, 1):
            rows = idx[d.model_idx[idx] == m]
            got = np.bincount(d.task_idx[rows], minlength=d.n_tasks)
            want = mult * np.bincount(d.task_idx[d.model_idx == m], minlength=d.n_tasks)
            assert np.array_equal(got, want)
        # tasks are drawn within their family: each drawn family contributes its size in tasks
        fam_tasks = np.bincount(d.family_of_task, weights=mult, minlength=d.n_families)
        fam_size = np.bincount(d.family_of_task, minlength=d.n_families)
        assert np.all(fam_tasks % fam_size == 0)
        assert fam_tasks.sum() == d.n_tasks  # as many tasks as the data have, families resampled
        # runs are resampled with replacement within (task, model): some repeat, all stay in their group
        assert len(set(idx.tolist())) < len(idx)


# --- what a fit cannot say ---------------------------------------------------------------


def test_all_failures_have_no_finite_horizon_and_do_not_crash() -> None:
    tasks = _tasks(n_families=4, per_family=3)
    good = synth("good", 20, tasks=tasks)
    bad = [Run(**{**r.__dict__, "model": "hopeless", "run_id": "x" + r.run_id, "score": 0.0}) for r in good]
    rep = analyse(good + bad, n_bootstrap=10)
    m = rep.model("hopeless")
    assert m.status == "all-failed" and m.p50_minutes is None and not m.finite
    assert m.horizon_text().startswith("< ") and "shortest task" in m.horizon_text()
    assert any("failed every task" in w for w in m.warnings)
    assert m.completion_rate == 0.0
    assert rep.model("good").finite
    with pytest.raises(MalformedInput, match="no finite 50% horizon"):
        indicator_fields(rep, "hopeless")
    doc = rep.to_json()
    assert json.loads(json.dumps(doc))["models"][1]["p50_minutes"] is None


def test_all_successes_are_beyond_the_longest_task() -> None:
    runs = [Run(**{**r.__dict__, "score": 1.0}) for r in synth("ace", 20)]
    m = analyse(runs, n_bootstrap=5).model("ace")
    assert m.status == "all-succeeded" and m.horizon_text().startswith("> ") and "longest task" in m.horizon_text()


def test_a_slope_that_is_not_negative_draws_a_warning() -> None:
    runs = synth("backwards", 20, slope=+0.9)
    m = analyse(runs, n_bootstrap=0).model("backwards")
    assert m.slope is not None and m.slope > 0
    assert any("not negative" in w for w in m.warnings)


def test_counts_of_errored_and_limit_hit_runs_and_the_completion_rate() -> None:
    runs = synth("m", 20, runs_per_task=2)
    runs[0] = Run(**{**runs[0].__dict__, "score": None, "errored": True})
    runs[1] = Run(**{**runs[1].__dict__, "score": 0.0, "limit": "token"})
    m = analyse(runs, n_bootstrap=0).model("m")
    scored = [r.score for r in runs if r.score is not None]
    assert m.n_errored == 1 and m.n_limit_hit == 1 and m.n_runs == len(runs) - 1
    assert math.isclose(m.completion_rate, sum(scored) / len(scored))
    only_errors = [Run(**{**r.__dict__, "score": None, "errored": True}) for r in runs]
    e = analyse(only_errors, n_bootstrap=3).model("m")
    assert e.status == "no-scored-runs" and e.n_errored == len(runs)


def test_unknown_model_and_empty_input_are_clear_errors() -> None:
    runs = synth("m", 20)
    with pytest.raises(MalformedInput, match="no runs for model"):
        analyse(runs, models=["other"])
    with pytest.raises(MalformedInput, match="no runs"):
        analyse([])


# --- the signed indicator -----------------------------------------------------------------


def test_indicator_fields_sign_and_verify(three_models) -> None:
    from redline.indicators.signing import indicator_envelope

    runs, _, _ = three_models
    rs = RunSet(runs=runs)
    from redline.indicators.evallogs import LogFile

    digests = [hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()]
    rs.files = [LogFile("b.eval", digests[1], "inspect-eval", 1), LogFile("a.eval", digests[0], "inspect-eval", 1)]
    rep = analyse(rs, n_bootstrap=20)
    fields = indicator_fields(rep, "medium")
    m = rep.model("medium")
    assert fields["name"] == "time-horizon-50" and fields["unit"] == "hours" and fields["method"] == METHOD
    assert math.isclose(fields["value"], m.p50_minutes / 60)
    assert fields["interval"][0] <= fields["value"] <= fields["interval"][1]
    assert fields["window"] == (m.window_start, m.window_end)
    want = hashlib.sha256("".join(d + "\n" for d in sorted(digests)).encode()).hexdigest()
    assert fields["evidence_digest"] == want == evidence_digest(reversed(digests))
    key = SigningKey.generate("lab-a")
    env = indicator_envelope(key, seq=1, **fields)
    pred, _ = open_envelope(env, [key.verifier()])
    assert isinstance(pred, Indicator) and pred.subject == "medium" and pred.evidence_digest == {"sha256": want}
    assert "bootstrap=family-task-run/20/seed=42" in pred.method_version


def test_indicator_needs_a_window_when_the_logs_carry_no_times() -> None:
    runs = [Run(**{**r.__dict__, "started_at": None, "completed_at": None}) for r in synth("m", 20)]
    rs = RunSet(runs=runs, files=[])
    rep = analyse(rs, n_bootstrap=0)
    rep.evidence_digest = "0" * 64
    with pytest.raises(MalformedInput, match="--window-start"):
        indicator_fields(rep, "m")
    fields = indicator_fields(rep, "m", window_start=T0, window_end=T0 + timedelta(days=1))
    assert fields["interval"] is None and fields["window"] == (T0, T0 + timedelta(days=1))


# --- readers and bad input -----------------------------------------------------------------


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(runs: list[Run], *, field: str = "score_binarized") -> list[dict]:
    return [{"task_id": r.task_id, "task_family": r.task_family, "run_id": r.run_id, "alias": r.model,
             field: r.score, "human_minutes": r.human_minutes, "started_at": r.started_at.isoformat(),
             "completed_at": int(r.completed_at.timestamp() * 1000)} for r in runs]


def test_metr_run_table_round_trip(tmp_path: Path) -> None:
    runs = synth("m", 20, runs_per_task=2)
    p = _write_jsonl(tmp_path / "runs.jsonl", _rows(runs))
    rs = read_runs([p])
    assert len(rs.runs) == len(runs) and rs.files[0].format == "metr-runs-jsonl"
    assert [(r.task_id, r.score, r.human_minutes) for r in rs.runs] == \
        [(r.task_id, r.score, r.human_minutes) for r in runs]
    assert rs.runs[0].completed_at == runs[0].completed_at.replace(microsecond=0) or \
        abs((rs.runs[0].completed_at - runs[0].completed_at).total_seconds()) < 0.01
    assert rs.files[0].sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    a = analyse(rs, n_bootstrap=0).model("m")
    b = analyse(runs, n_bootstrap=0).model("m")
    assert math.isclose(a.p50_minutes, b.p50_minutes)
    # the same file twice is read once; a directory is expanded
    twice = read_runs([p, tmp_path])
    assert len(twice.runs) == len(runs) and twice.notes


def test_run_table_continuous_scores_model_field_and_minutes_csv(tmp_path: Path) -> None:
    rows = [{"task_id": "a", "task_family": "f", "run_id": "1", "model": "m", "score_cont": 0.25},
            {"task_id": "b", "task_family": "f", "run_id": "2", "model": "m", "score_cont": 1},
            {"task_id": "c", "task_family": "g", "run_id": "3", "model": "m", "score_cont": None}]
    p = _write_jsonl(tmp_path / "r.jsonl", rows)
    with pytest.raises(MalformedInput, match="no 'human_minutes' for task 'a'"):
        read_runs([p])
    csvp = tmp_path / "minutes.csv"
    csvp.write_text("task_id,human_minutes\na,2\nb,8\nc,30\n")
    rs = read_runs([p], minutes_csv=csvp)
    assert [r.score for r in rs.runs] == [0.25, 1.0, None] and rs.runs[2].null_score and not rs.runs[2].errored
    assert [r.human_minutes for r in rs.runs] == [2, 8, 30]
    # A null score is no score, not an error: errors="fail" does not turn it into a failure.
    assert read_runs([p], minutes_csv=csvp, errors="fail").runs[2].score is None


def test_run_table_with_a_byte_order_mark_and_null_scores_reported(tmp_path: Path) -> None:
    rows = [{"task_id": f"t{i}", "task_family": "f", "run_id": str(i), "model": "m", "human_minutes": 2 ** i,
             "score_binarized": (None if i == 3 else int(i < 4))} for i in range(8)]
    p = tmp_path / "bom.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in rows).encode() + b"\n")
    rs = read_runs([p])
    assert len(rs.runs) == 8 and sum(r.null_score for r in rs.runs) == 1 and not any(r.errored for r in rs.runs)
    m = analyse(rs, n_bootstrap=0).models[0]
    assert m.n_null_score == 1 and m.n_errored == 0 and m.n_runs == 7
    assert any("null score" in w for w in m.warnings)
    assert m.to_json()["n_null_score"] == 1


@pytest.mark.parametrize("name,content,match", [
    ("random.json", '{"hello": "world", "n": [1, 2, 3]}', "not an Inspect AI evaluation log"),
    ("array.json", "[1, 2, 3]", "not an Inspect AI evaluation log"),
    ("fake.json", '{"version": 2, "eval": 5}', "not a readable Inspect AI evaluation log"),
    ("table.csv", "task_id,human_minutes\na,1\n", "not an evaluation log"),
    ("notzip.eval", "this is not a zip", "not an Inspect AI .eval log"),
    ("bad.jsonl", "{not json}\n", "not a JSON line"),
    ("other.jsonl", '{"x": 1}\n', "missing 'task_id'"),
    ("empty.jsonl", "", "no runs"),
    ("badscore.jsonl", '{"task_id": "a", "alias": "m", "score_cont": 3, "human_minutes": 1}\n', "outside"),
    ("badminutes.jsonl", '{"task_id": "a", "alias": "m", "score_cont": 1, "human_minutes": -1}\n', "positive"),
])
def test_bad_inputs_are_clear_errors(tmp_path: Path, name: str, content: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(MalformedInput, match=match) as info:
        read_runs([p])
    assert str(p) in str(info.value) or name.startswith("empty")


def test_a_zip_that_is_not_an_inspect_log(tmp_path: Path) -> None:
    import zipfile

    p = tmp_path / "other.eval"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("hello.txt", "not a log")
    with pytest.raises(MalformedInput, match="not a readable Inspect AI evaluation log") as info:
        read_runs([p])
    assert str(p) in str(info.value)


def test_empty_and_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(MalformedInput, match="no evaluation logs given"):
        read_runs([])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MalformedInput, match="no evaluation logs"):
        read_runs([tmp_path / "empty"])
    with pytest.raises(MalformedInput, match="no such file"):
        read_runs([tmp_path / "nowhere.eval"])


def test_inconsistent_task_lengths_across_logs_are_refused(tmp_path: Path) -> None:
    a = _write_jsonl(tmp_path / "a.jsonl", [{"task_id": "t", "alias": "m", "run_id": "1", "score_cont": 1,
                                             "human_minutes": 1}])
    b = _write_jsonl(tmp_path / "b.jsonl", [{"task_id": "t", "alias": "m", "run_id": "2", "score_cont": 1,
                                             "human_minutes": 5}])
    with pytest.raises(MalformedInput, match="human length"):
        read_runs([a, b])


def test_score_values() -> None:
    assert [score_to_float(v, "x") for v in ("C", "I", "P", "N", True, 0, 0.5, "yes", "false", "0.25")] == \
        [1, 0, 0.5, 0, 1, 0, 0.5, 1, 0, 0.25]
    assert score_to_float({"acc": "C", "f1": 0.3}, "x", key="f1") == 0.3
    for bad, match in (("maybe", "not a success value"), (2, "outside"), ({"a": 1}, "--score-key"), ([1], "not")):
        with pytest.raises(MalformedInput, match=match):
            score_to_float(bad, "x")


# --- release dates, SOTA, plot --------------------------------------------------------------


def test_release_dates_csv(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("model,date\na,2024-01-02\nb,2024-06-30T00:00:00Z\n")
    assert read_release_dates(p) == {"a": date(2024, 1, 2), "b": date(2024, 6, 30)}
    p.write_text("a,yesterday\n")
    with pytest.raises(MalformedInput, match="not a date"):
        read_release_dates(p)
    p.write_text("")
    with pytest.raises(MalformedInput, match="no release dates"):
        read_release_dates(p)


def test_sota_selection_and_missing_dates(three_models) -> None:
    d = date(2024, 1, 1)
    assert _sota([("a", d, 5), ("b", d + timedelta(1), 3), ("c", d + timedelta(2), 9)]) == ["a", "c"]
    runs, _, dates = three_models
    rep = analyse(runs, n_bootstrap=0, release_dates={"small": dates["small"], "large": dates["large"]},
                  sota_only=True)
    assert rep.doubling is not None and rep.doubling.models == ["large", "small"]
    assert any("medium: no release date" in w for w in rep.doubling.warnings)
    assert rep.doubling.low_days is None  # no bootstrap, no interval
    one = analyse(runs, n_bootstrap=0, release_dates={"small": dates["small"]})
    assert one.doubling is not None and one.doubling.days is None
    assert any("at least two models" in w for w in one.doubling.warnings)


def test_plot_writes_a_png(tmp_path: Path, three_models) -> None:
    runs, _, _ = three_models
    rep = analyse(runs, n_bootstrap=0)
    out = tmp_path / "h.png"
    plot(rep, runs, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_exact_solver_is_the_minimiser_lbfgs_approximates() -> None:
    from sklearn.linear_model import LogisticRegression

    from redline.indicators.horizon import fit_logistic_exact

    rng = np.random.default_rng(5)
    for _ in range(8):
        n = int(rng.integers(10, 300))
        x = rng.uniform(-1, 10, n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(rng.uniform(-2, -0.3) * (x - rng.uniform(0, 8)))))).astype(float)
        y[rng.random(n) < 0.1] = 0.5  # some continuous scores
        if len(set(y)) < 2:
            continue
        w = rng.uniform(0.1, 1, n)
        w /= w.sum()
        exact = fit_logistic_exact(x, y, w)
        default = fit_logistic(x, y, w)
        assert exact is not None and default is not None
        # the same objective: scikit-learn at a tight tolerance lands on the Newton solution
        xs, ys, ws = np.concatenate([x, x]), np.concatenate([np.zeros(n), np.ones(n)]), \
            np.concatenate([(1 - y) * w, y * w])
        tight = LogisticRegression(C=10, tol=1e-12, max_iter=10_000).fit(xs.reshape(-1, 1), ys.astype(int),
                                                                          sample_weight=ws)
        assert math.isclose(exact[0], tight.coef_[0][0], rel_tol=1e-5, abs_tol=1e-7)
        assert math.isclose(exact[1], tight.intercept_[0], rel_tol=1e-5, abs_tol=1e-7)
        # and the default lbfgs fit (METR's headline numbers) agrees within its tolerance
        if exact[0] < -0.1:
            assert abs(-exact[1] / exact[0] + default[1] / default[0]) < 0.01


# --- the command on a run table -------------------------------------------------------------


def test_cli_on_a_run_table_with_release_dates(tmp_path: Path, three_models) -> None:
    from click.testing import CliRunner

    from redline.cli.main import cli

    runs, _, dates = three_models
    table = _write_jsonl(tmp_path / "runs.jsonl", _rows(runs))
    dcsv = tmp_path / "dates.csv"
    dcsv.write_text("model,date\n" + "".join(f"{m},{d.isoformat()}\n" for m, d in dates.items()))

    def run(*args):
        return CliRunner().invoke(cli, ["indicators", "horizon", *map(str, args)], env={"COLUMNS": "200"})

    r = run(table, "--bootstrap", "20", "--release-dates", dcsv)
    assert r.exit_code == 0, r.output
    assert "Doubling time of the 50% horizon" in r.stdout and "over 3 models" in r.stdout
    r = run(table, "--bootstrap", "0", "--release-dates", dcsv, "--json", "--model", "small", "--model", "large")
    doc = json.loads(r.stdout)
    assert [m["model"] for m in doc["models"]] == ["large", "small"] and doc["doubling_time"]["days"] > 0
    key = tmp_path / "k"
    assert CliRunner().invoke(cli, ["key", "new", "lab-a", "-o", str(key)]).exit_code == 0
    r = run(table, "--bootstrap", "0", "--sign", key, "--out", tmp_path / "s.json", "--seq", "1",
            "--log-origin", "redline.example/log")
    assert r.exit_code == 2 and "choose one of" in r.stderr and "--model" in r.stderr
    r = run(table, "--bootstrap", "0", "--sign", key)
    assert r.exit_code == 2 and "--submit" in r.stderr
    r = run(table, "--bootstrap", "0", "--sign", key, "--out", tmp_path / "s.json", "--seq", "1", "--model", "small",
            "--log-origin", "redline.example/log")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.json").exists()


def test_bad_csv_and_nested_run_table_rows_are_malformed_input(tmp_path: Path) -> None:
    """A human-minutes CSV row with an extra column (AttributeError before) and a run-table line nested too deeply
    (RecursionError before) are MalformedInput naming the file and line."""
    from redline.indicators.evallogs import read_minutes_table, read_run_table

    csv_file = tmp_path / "minutes.csv"
    csv_file.write_text("task_id,human_minutes\nt1,3\nt2,4,extra\n")
    with pytest.raises(MalformedInput, match=r"minutes\.csv, line 3: 3 fields, the header names 2"):
        read_minutes_table(csv_file)
    table = tmp_path / "runs.jsonl"
    table.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(MalformedInput, match=r"runs\.jsonl, line 1"):
        read_run_table(table)
