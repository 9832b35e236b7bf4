"""Fuzz the indicator readers: METR run tables (JSONL), human-minutes CSVs, Inspect ``.eval`` logs, and the
code-share YAML files (rule files and ``.redline/code-share.yaml``)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from redline.indicators.codeshare.repoconfig import RepoConfig
from redline.indicators.codeshare.rules import parse_rules
from redline.indicators.evallogs import read_inspect_log, read_minutes_table, read_run_table

from .common import TOKENS, fuzz_settings, json_bytes, mutated, ok, outcome

_RUN_ROWS = [
    {"task_id": "t1", "task_family": "f", "run_id": "r1", "alias": "model-a", "score_binarized": 1,
     "human_minutes": 3.5, "started_at": "2025-01-01T00:00:00Z", "completed_at": 1735689700},
    {"task_id": 7, "model": "model-b", "score_cont": 0.25, "human_minutes": "12", "limit": "token",
     "started_at": 1735689600000, "completed_at": None},
    {"task_id": "t3", "alias": "model-a", "score_binarized": None, "human_minutes": 1},
]
RUN_TABLE = b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\n" for r in _RUN_ROWS)
MINUTES_CSV = b"task_id,human_minutes\nt1,3.5\n t2 , 12 \nfam/t3,0.25\n"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the mutated files."""
    return tmp_path_factory.mktemp("fuzz-indicators")


@fuzz_settings(250, fuzz_share=0.4)
@given(data=st.one_of(mutated([RUN_TABLE]), json_bytes(_RUN_ROWS).map(lambda b: b + b"\n"),
                      st.lists(json_bytes(_RUN_ROWS), min_size=1, max_size=3).map(b"\n".join)))
@example(data=b'{"task_id":"t","alias":"m","human_minutes":1,"score_cont":' + b"[" * 100_000 + b"}\n")
@example(data=b'{"task_id":"t","alias":"m","human_minutes":' + b"9" * 5000 + b',"score_cont":1}\n')
def test_run_table_reads_or_is_refused(scratch: Path, data: bytes) -> None:
    """read_run_table on mutated METR run tables: runs or a MalformedInput."""
    path = scratch / "runs.jsonl"
    path.write_bytes(data)
    result = outcome(read_run_table, path)
    if ok(result):
        for run in result[1]:
            assert run.score is None or 0.0 <= run.score <= 1.0
            assert run.human_minutes > 0


@fuzz_settings(250, fuzz_share=0.4)
@example(data=b"task_id,human_minutes\nt\r1,3.5\n")
@given(data=st.one_of(mutated([MINUTES_CSV], TOKENS + (b",", b'"', b'""', b"\r", b"\x00", b"task_id", b"nan"))))
def test_minutes_csv_reads_or_is_refused(scratch: Path, data: bytes) -> None:
    """read_minutes_table on mutated CSVs: a task → positive minutes map or a MalformedInput."""
    path = scratch / "minutes.csv"
    path.write_bytes(data)
    result = outcome(read_minutes_table, path)
    if ok(result):
        assert result[1] and all(m > 0 for m in result[1].values())


# --- code-share YAML -------------------------------------------------------------------------------

_RULES_DIR = Path(__import__("redline.indicators", fromlist=["rules"]).__file__).parent / "rules"
_RULES_YAML = [(_RULES_DIR / name).read_bytes() for name in ("ai-authorship-v2.yaml", "aider-blame-v1.yaml")]
_REPO_YAML = [b"version: 1\nnotes-complete-since: 2025-03-01\n", b"notes-complete-since: '2025-03-01T12:00:00+02:00'\n",
              b"version: 1\n"]
_YAML_TOKENS = TOKENS + (b": ", b"- ", b"&a ", b"*a", b"!!binary ", b"? ", b"2027-13-45", b"1" * 5000,
                         b"2001-12-14t21:59:43.10-99:00", b"'**'", b"[", b"\\")


@fuzz_settings(250, fuzz_share=0.4)
@given(mutated(_RULES_YAML, _YAML_TOKENS))
@example(b"id: 2027-13-45\n")
@example(b"id: " + b"1" * 5000 + b"\n")
def test_code_share_rules_parse_or_are_refused(data: bytes) -> None:
    """parse_rules on mutated rule files: Rules or a MalformedEvidence."""
    outcome(parse_rules, data, "rules.yaml")


@fuzz_settings(250, fuzz_share=0.4)
@given(mutated(_REPO_YAML, _YAML_TOKENS))
@example(b"version: 1\nnotes-complete-since: 2027-13-45\n")
@example(b"notes-complete-since: " + b"1" * 5000 + b"\n")
def test_code_share_repo_config_parses_or_is_refused(data: bytes) -> None:
    """RepoConfig.parse on mutated ``.redline/code-share.yaml``: a RepoConfig or a MalformedEvidence."""
    outcome(RepoConfig.parse, data, ".redline/code-share.yaml")


# --- Inspect .eval logs ----------------------------------------------------------------------------

_GENERATOR = textwrap.dedent('''
    import sys
    from inspect_ai import Task, eval, task
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    @task
    def tiny():
        return Task(dataset=[Sample(id=f"s{i}", input=f"TASK {i}", target="Default",
                                    metadata={"human_minutes": 2.0 ** i, "task_family": f"fam{i % 2}"})
                             for i in range(3)], solver=[generate()], scorer=includes())

    eval(tiny(), model="mockllm/model", log_dir=sys.argv[1], log_format="eval", display="none")
''')


@pytest.fixture(scope="module")
def eval_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of one tiny ``.eval`` log written by inspect_ai's mock model, offline."""
    pytest.importorskip("inspect_ai")
    root = tmp_path_factory.mktemp("fuzz-inspect")
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSPECT_", "OPENAI_", "ANTHROPIC_", "HF_"))}
    env.update({"HOME": str(home), "INSPECT_DISPLAY": "none", "INSPECT_LOG_DIR": str(root / "default"),
                "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"), "HF_HUB_OFFLINE": "1",
                "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    (root / "gen.py").write_text(_GENERATOR)
    made = subprocess.run([sys.executable, str(root / "gen.py"), str(root / "logs")], check=False, env=env,
                          cwd=root, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr[-3000:]
    (log,) = (root / "logs").glob("*.eval")
    return log.read_bytes()


def _rezip(original: bytes, member: str, content: bytes) -> bytes:
    """``original`` with one member's content replaced (the rest copied as they are)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(original)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, content if info.filename == member else src.read(info.filename))
    return out.getvalue()


@fuzz_settings(100, fuzz_share=0.02)
@given(data=st.data())
def test_inspect_eval_log_reads_or_is_refused(eval_log: bytes, scratch: Path, data: Any) -> None:
    """read_inspect_log on .eval archives with mutated bytes or mutated JSON members: runs or a MalformedInput."""
    with zipfile.ZipFile(io.BytesIO(eval_log)) as z:
        members = {n: z.read(n) for n in z.namelist() if n.endswith(".json")}
    if data.draw(st.integers(0, 3)) == 0:
        blob = data.draw(mutated([eval_log], max_ops=2))
    else:
        name = data.draw(st.sampled_from(sorted(members)))
        blob = _rezip(eval_log, name, data.draw(json_bytes([json.loads(members[name])])))
    path = scratch / "log.eval"
    path.write_bytes(blob)
    result = outcome(read_inspect_log, path)
    if ok(result):
        for run in result[1]:
            assert run.score is None or 0.0 <= run.score <= 1.0
