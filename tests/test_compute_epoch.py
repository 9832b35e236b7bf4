"""Epoch AI's notable models CSV (CC BY 4.0): parsing, screening against danger lines, 6·N·D, and the CLI."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from redline.cli.main import cli
from redline.compute.epoch import CREDIT, REQUIRED_COLUMNS, parse_epoch_csv, read_epoch_csv, screen, six_nd_check
from redline.errors import MalformedInput
from redline.policy import load_pack

EPOCH_CSV = Path(__file__).resolve().parent / "data" / "epoch" / "notable_ai_models.csv"  # see tests/data/README.md


@pytest.fixture(scope="module")
def epoch_csv() -> Path:
    if not EPOCH_CSV.is_file():
        raise RuntimeError(f"Epoch data not found at {EPOCH_CSV}: it is vendored in tests/data/epoch")
    return EPOCH_CSV


@pytest.fixture(scope="module")
def raw_rows(epoch_csv: Path) -> list[dict[str, str]]:
    with epoch_csv.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _compute(row: dict[str, str]) -> float | None:
    text = row["Training compute (FLOP)"].strip()
    return float(text) if text else None


# --- screening the real data ---------------------------------------------------------------


def test_screen_eu_ai_act_finds_the_models_over_1e25(epoch_csv: Path, raw_rows: list[dict[str, str]]) -> None:
    result = screen(read_epoch_csv(epoch_csv), load_pack("eu-ai-act"))
    crossing = {r.model.name: r for r in result.crossing("systemic-risk")}
    over = {row["Model"].strip() for row in raw_rows if (_compute(row) or 0) > 1e25}
    assert len(over) >= 10  # the snapshot has a score of them; read from the file, not pinned
    assert over <= set(crossing)
    # any other crossing is a fine-tune whose own figure is missing or lower, over the line through its base
    for name in set(crossing) - over:
        row = crossing[name]
        assert row.lineage.base_compute is not None and row.lineage.base_compute > 1e25, name
    # and nothing whose lineage figure is at or below the line
    for r in result.rows:
        assert ("systemic-risk" in r.crossed) == (r.lineage.value is not None and r.lineage.value > 1e25), r.model.name
    gpai = {r.model.name for r in result.crossing("gpai-indicator")}
    assert set(crossing) <= gpai
    assert all((r.lineage.value or 0) > 1e23 for r in result.crossing("gpai-indicator"))


def test_screen_lineage_and_one_third_rule_on_real_rows(epoch_csv: Path, raw_rows: list[dict[str, str]]) -> None:
    data = read_epoch_csv(epoch_csv)
    result = screen(data, load_pack("eu-ai-act"))
    by_name = {r.model.name: r for r in result.rows}
    table = {row["Model"].strip(): row for row in raw_rows}
    checked = 0
    for r in result.rows:  # every fine-tune whose single base and finetune compute the file gives
        raw = table[r.model.name]
        base = raw["Base model"].strip()
        ft = raw["Finetune compute (FLOP)"].strip()
        if not base or not ft or base not in by_name or not by_name[base].lineage.complete:
            continue
        expected = by_name[base].lineage.value + float(ft)
        assert r.lineage.value == pytest.approx(max(expected, _compute(raw) or 0.0)), r.model.name
        if by_name[base].lineage.value:
            fraction = float(ft) / by_name[base].lineage.value
            assert r.modification_fraction == pytest.approx(fraction)
            assert ("substantial-modification" in r.crossed) == (fraction > 1 / 3), r.model.name
        checked += 1
    assert checked >= 10


def test_screen_says_which_lines_it_cannot_judge(epoch_csv: Path) -> None:
    result = screen(read_epoch_csv(epoch_csv), load_pack("coordinated-pause"))
    assert [ln.id for ln in result.screened_lines] == ["pause-line", "pre-release-review"]
    skipped = {ln.id: why for ln, why in result.skipped_lines}
    assert set(skipped) == {"covered-cluster", "time-horizon"}
    assert "clusters" in skipped["covered-cluster"] and "time-horizon" in skipped["time-horizon"]
    # a run-scoped line judges a fine-tune by its own run's compute, not its lineage
    for r in result.crossing("pause-line"):
        assert r.run_compute is not None and r.run_compute > 1e25


def test_six_nd_check_on_real_data(epoch_csv: Path) -> None:
    report = six_nd_check(read_epoch_csv(epoch_csv))
    s = report.overall
    assert s is not None
    # measured on the April 2025 snapshot: 186 rows, median 0.998, IQR 0.109–1.0, p10 0.002, p90 1.68
    assert 150 <= s.count <= 250
    assert 0.8 <= s.median <= 1.2
    assert s.p10 < 0.1 < s.q1 < s.median <= s.q3 < s.p90 < 5
    lang = report.groups["language"]
    assert lang is not None and 0.9 <= lang.median <= 1.1 and lang.within_30 / lang.count > 0.5
    other = report.groups["other domains"]
    assert other is not None and other.median < 0.5  # D counts images and clips, not tokens
    top = report.outliers(10)
    assert all(abs(math.log(r.ratio)) >= abs(math.log(report.outliers(11)[-1].ratio))
               for r in top)
    moe = [r for r in report.rows if any(h.startswith("MoE") for h in r.hints) and r.ratio > 2]
    assert moe, "mixture-of-experts rows overshoot: N counts every expert"
    for r in report.rows:
        epochs = r.model.epochs or 1.0
        assert r.six_nd == pytest.approx(6 * r.model.parameters * r.model.dataset_size * epochs)
    assert six_nd_check(read_epoch_csv(epoch_csv), exact_method=True).overall.count < s.count


# --- parsing ---------------------------------------------------------------------------------


HEADER = ",".join(f'"{c}"' for c in REQUIRED_COLUMNS)


def _row(**cells: str) -> str:
    names = {"Model": "M", "Organization": "Org", "Publication date": "2024-01-01", "Domain": "Language"}
    values = {**names, **cells}
    return ",".join(f'"{values.get(c, "")}"' for c in REQUIRED_COLUMNS)


def test_parse_numbers_and_missing_values() -> None:
    text = "\n".join([HEADER, _row(**{"Training compute (FLOP)": "3.8e+25", "Parameters": " 405000000000.0 "}),
                      _row(Model="N", **{"Training compute (FLOP)": "", "Epochs": "lots"})]) + "\n"
    data = parse_epoch_csv(text)
    assert data.models[0].compute == 3.8e25 and data.models[0].parameters == 4.05e11
    assert data.models[1].compute is None and data.models[1].epochs is None
    assert len(data.problems) == 1 and "'lots'" in data.problems[0] and "Epochs" in data.problems[0]


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty file"),
    ("Model,Organization\nGPT,OpenAI\n", "missing column(s)"),
    ('{"not": "a csv"}\n', "missing column(s) 'Model'"),
    (HEADER + "\n", "no model rows"),
    (HEADER + '\n"unterminated\n', "not valid CSV"),
])
def test_parse_refuses_what_is_not_the_epoch_csv(text: str, needle: str) -> None:
    with pytest.raises(MalformedInput, match=re.escape(needle)):
        parse_epoch_csv(text)


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_screen_table_and_credit(epoch_csv: Path, raw_rows: list[dict[str, str]]) -> None:
    result = run("compute", "screen", epoch_csv, "--policy", "eu-ai-act", "--crossing-only")
    assert result.exit_code == 0, result.output
    assert "Epoch AI" in result.output and "CC BY 4.0" in result.output
    top = max(raw_rows, key=lambda r: _compute(r) or 0)["Model"].strip()
    assert top in result.output and "systemic-risk" in result.output
    small = min((r for r in raw_rows if _compute(r)), key=lambda r: _compute(r))["Model"].strip()
    assert small not in result.output  # crossing-only leaves it out


def test_cli_screen_json(epoch_csv: Path, raw_rows: list[dict[str, str]]) -> None:
    result = run("compute", "screen", epoch_csv, "--json", "--crossing-only", "--policy", "ca-sb53")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["source"] == CREDIT and doc["policy"]["id"] == "ca-sb53"
    names = {m["model"] for m in doc["models"]}
    assert names == {r["Model"].strip() for r in raw_rows if (_compute(r) or 0) > 1e26}
    assert all("frontier-model" in m["lines_crossed"] for m in doc["models"])
    assert doc["skipped_lines"] == []
    full = json.loads(run("compute", "screen", epoch_csv, "--json").output)
    assert full["models_screened"] == len(full["models"]) > len(doc["models"])
    assert full["models_screened"] + full["models_without_compute"] == len(raw_rows)


def test_cli_screen_with_a_policy_file(epoch_csv: Path, tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("""id: mine
version: 1
title: test
source: test
lines:
  - {id: big-run, title: big, metric: training_compute, unit: FLOP, comparator: ">", value: 1.0e+26, scope: run,
     consequence: {kind: flag}, source: test}
  - {id: cluster, title: c, metric: cluster_h100e, unit: H100e, comparator: ">", value: 16, scope: cluster,
     consequence: {kind: flag}, source: test}
""")
    result = run("compute", "screen", epoch_csv, "--policy", policy, "--json", "--crossing-only")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [s["id"] for s in doc["skipped_lines"]] == ["cluster"]
    assert doc["models"] and all(m["run_compute"] > 1e26 for m in doc["models"])


def test_cli_six_nd_check(epoch_csv: Path) -> None:
    result = run("compute", "six-nd-check", epoch_csv, "--top", "5")
    assert result.exit_code == 0, result.output
    assert "Median" in result.output and "outliers" in result.output and "CC BY 4.0" in result.output
    doc = json.loads(run("compute", "six-nd-check", epoch_csv, "--json").output)
    assert 0.8 <= doc["overall"]["median"] <= 1.2 and len(doc["outliers"]) == 15


def test_cli_estimate() -> None:
    result = run("compute", "estimate", "--params", "7e9", "--tokens", "2e12", "--chip", "H100 SXM", "--count", "1000",
                 "--hours", "24", "--counted", "8.5e22")
    assert result.exit_code == 0, result.output
    assert "8.4e+22" in result.output and "3.418e+22" in result.output and "(assumed)" in result.output
    assert "1000 H100e" in result.output and "estimates disagree: yes" in result.output
    doc = json.loads(run("compute", "estimate", "--params", "7e9", "--tokens", "2e12", "--counted", "9e22",
                         "--json").output)
    assert doc["six_nd"] == 8.4e22 and doc["cross_check"]["disagree"] is False
    assert "only one estimate" in run("compute", "estimate", "--counted", "1e20").output


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["estimate"], 2, "give --params"),
    (["estimate", "--params", "7e9"], 2, "--tokens"),
    (["estimate", "--chip", "H100 SXM", "--count", "8"], 2, "--hours"),
    (["estimate", "--params", "-1", "--tokens", "1"], 2, "> 0"),
    (["estimate", "--chip", "H1000", "--count", "8", "--hours", "1"], 65, "unknown chip 'H1000'"),
    (["estimate", "--chip", "A100", "--count", "8", "--hours", "1", "--utilization", "2"], 2, "utilization"),
    (["screen", "no-such-file.csv"], 2, "does not exist"),
])
def test_cli_bad_input(args: list[str], code: int, needle: str) -> None:
    result = run("compute", *args)
    assert result.exit_code == code, result.output
    assert needle in result.output and "Traceback" not in result.output


def test_cli_bad_csv_files(tmp_path: Path, epoch_csv: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Model,Organization,Parameters\nGPT-4,OpenAI,1\n")
    result = run("compute", "screen", wrong)
    assert result.exit_code == 65 and "missing column(s)" in result.stderr
    assert "'Training compute (FLOP)'" in result.stderr and "Traceback" not in result.output
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    for cmd in ("screen", "six-nd-check"):
        result = run("compute", cmd, binary)
        assert result.exit_code == 65, result.output
        assert "not" in result.stderr and "Traceback" not in result.output
    result = run("compute", "screen", epoch_csv, "--policy", "no-such-pack")
    assert result.exit_code == 65 and "neither a policy pack" in result.stderr


def test_every_compute_command_has_help() -> None:
    for cmd in ([], ["screen"], ["six-nd-check"], ["estimate"]):
        result = run("compute", *cmd, "--help")
        assert result.exit_code == 0 and len(result.output) > 200, cmd
