"""Time horizons from real Inspect AI logs, written by ``inspect_ai`` itself with its mock model, offline.

A subprocess runs a tiny ``@task`` under ``mockllm`` in both log formats (``.eval``
and ``.json``): 12 samples whose metadata carry human minutes and a family, 4
epochs each, success drawn from a known logistic curve; one sample that errors and
one that hits the token limit; and a second, hopeless model that fails everything.
Then the reader, the analysis and ``redline indicators horizon`` are run on them.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")
pytest.importorskip("sklearn")

from click.testing import CliRunner  # noqa: E402

from redline.cli.main import cli  # noqa: E402
from redline.crypto.dsse import Envelope  # noqa: E402
from redline.crypto.keys import load_signing_key  # noqa: E402
from redline.errors import MalformedInput  # noqa: E402
from redline.indicators.evallogs import read_runs  # noqa: E402
from redline.indicators.horizon import analyse  # noqa: E402
from redline.statements import Indicator, open_envelope  # noqa: E402

H50 = 16.0  # the true 50% horizon (minutes) of mockllm/model in the generated logs

GENERATOR = textwrap.dedent('''
    import math, random, sys
    from inspect_ai import Task, eval, task
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ModelOutput, ModelUsage
    from inspect_ai.scorer import includes
    from inspect_ai.solver import generate

    out_dir, h50 = sys.argv[1], float(sys.argv[2])
    calls = {}

    def outputs(input, tools, tool_choice, config):
        text = input[-1].text
        if text.startswith("ERROR"):
            raise RuntimeError("the sandbox fell over")
        n = calls[text] = calls.get(text, 0) + 1
        minutes = float(text.split()[1])
        p = 0.0 if "hopeless" in text else 1 / (1 + math.exp(1.2 * (math.log2(minutes) - math.log2(h50))))
        ok = random.Random(f"{text}/{n}").random() < p
        out = ModelOutput.from_content(model="mockllm", content="DONE" if ok else "gave up")
        big = text.startswith("LIMIT")  # usage over the token limit: the sample ends on its limit
        out.usage = ModelUsage(input_tokens=10, output_tokens=9000 if big else 5, total_tokens=9010 if big else 15)
        return out

    @task
    def tiny(tag: str = ""):
        samples = [Sample(id=f"s{i}", input=f"TASK {2 ** (i * 0.75):.4f} {tag}", target="DONE",
                          metadata={"human_minutes": round(2 ** (i * 0.75), 4), "task_family": f"fam{i % 4}"})
                   for i in range(12)]
        samples.append(Sample(id="err", input="ERROR 3", target="DONE",
                              metadata={"human_minutes": 3.0, "task_family": "fam0"}))
        samples.append(Sample(id="lim", input=f"LIMIT 5 {tag}", target="DONE",
                              metadata={"human_minutes": 5.0, "task_family": "fam1"}))
        return Task(dataset=samples, solver=[generate()], scorer=includes(), token_limit=1000)

    for fmt in ("eval", "json"):
        eval(tiny(), model="mockllm/model", model_args={"custom_outputs": outputs}, epochs=4,
             log_dir=f"{out_dir}/{fmt}", log_format=fmt, display="none", fail_on_error=False)
        calls.clear()
    eval(tiny(tag="hopeless"), model="mockllm/hopeless", model_args={"custom_outputs": outputs}, epochs=2,
         log_dir=f"{out_dir}/hopeless", log_format="eval", display="none", fail_on_error=False)
''')


def _offline_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INSPECT_", "OPENAI_", "ANTHROPIC_", "HF_")) and "PROXY" not in k.upper()}
    env.update({
        "INSPECT_DISPLAY": "none", "INSPECT_LOG_DIR": str(home / "default-logs"),
        "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache"),
        "HF_HUB_OFFLINE": "1", "NO_PROXY": "*", "no_proxy": "*",
        # anything that still tried the network would fail fast here
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    })
    return env


@pytest.fixture(scope="session")
def inspect_logs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated logs, made once per test run (pytest-xdist workers share them under a file lock)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if hasattr(request.config, "workerinput") else base) / "horizon-inspect-logs"
    root.mkdir(exist_ok=True)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            script = root / "make_logs.py"
            script.write_text(GENERATOR)
            home = root / "home"
            home.mkdir(exist_ok=True)
            made = subprocess.run([sys.executable, str(script), str(root / "logs"), str(H50)],
                                  env=_offline_env(home), cwd=root, capture_output=True, text=True, timeout=180)
            assert made.returncode == 0, made.stderr[-3000:]
            (root / "done").touch()
    return root / "logs"


def _one(d: Path) -> Path:
    (f,) = [p for p in d.iterdir() if p.suffix in (".eval", ".json") and p.name != "logs.json"]
    return f


def test_both_formats_read_the_same_runs(inspect_logs: Path) -> None:
    ev, js = read_runs([inspect_logs / "eval"]), read_runs([inspect_logs / "json"])
    assert ev.files[0].format == "inspect-eval" and js.files[0].format == "inspect-json"
    assert _one(inspect_logs / "eval").read_bytes()[:4] == b"PK\x03\x04"  # a zip inspect_ai wrote

    def key(rs):
        return sorted((r.model, r.task_id, r.task_family, r.human_minutes, r.score, r.errored, r.limit)
                      for r in rs.runs)

    assert key(ev) == key(js)
    assert len(ev.runs) == 14 * 4
    assert {r.model for r in ev.runs} == {"mockllm/model"}
    errored = [r for r in ev.runs if r.errored]
    limited = [r for r in ev.runs if r.limit]
    assert len(errored) == 4 and all(r.score is None and r.task_id == "tiny/err" for r in errored)
    assert len(limited) == 4 and all(r.limit == "token" and r.score == 0.0 for r in limited)
    assert all(r.started_at is not None and r.completed_at is not None for r in ev.runs)


def test_analysis_of_inspect_logs(inspect_logs: Path) -> None:
    rs = read_runs([inspect_logs / "eval", inspect_logs / "hopeless"])
    rep = analyse(rs, n_bootstrap=60)
    m = rep.model("mockllm/model")
    assert m.status == "ok" and m.n_errored == 4 and m.n_limit_hit == 4 and m.n_runs == 13 * 4
    assert m.slope is not None and m.slope < 0
    assert m.p50_low <= H50 <= m.p50_high
    assert m.shortest_minutes <= m.p50_minutes <= m.longest_minutes
    assert m.window_start <= m.window_end
    hopeless = rep.model("mockllm/hopeless")
    assert hopeless.status == "all-failed" and hopeless.horizon_text().startswith("<")
    # the json copy of the same evaluation fits the same curve
    same = analyse(read_runs([inspect_logs / "json"]), n_bootstrap=0).model("mockllm/model")
    assert abs(same.p50_minutes - m.p50_minutes) < 1e-9
    assert len(rs.files) == 2 and len(rep.evidence_digest) == 64


def test_missing_minutes_key_and_minutes_csv(inspect_logs: Path, tmp_path: Path) -> None:
    with pytest.raises(MalformedInput, match="no metadata key 'effort'.*--minutes-key"):
        read_runs([inspect_logs / "eval"], minutes_key="effort")
    csv = tmp_path / "m.csv"
    rows = [f"tiny/s{i},{2 ** (i * 0.75) * 2:.4f}" for i in range(12)] + ["err,6", "lim,10"]
    csv.write_text("task_id,human_minutes\n" + "\n".join(rows) + "\n")
    rs = read_runs([inspect_logs / "eval"], minutes_csv=csv)
    assert {r.human_minutes for r in rs.runs if r.task_id == "tiny/lim"} == {10.0}
    csv.write_text("task_id,human_minutes\ntiny/s0,1\n")
    with pytest.raises(MalformedInput, match="not in the human-minutes CSV"):
        read_runs([inspect_logs / "eval"], minutes_csv=csv)
    with pytest.raises(MalformedInput, match="no score from scorer 'judge'"):
        read_runs([inspect_logs / "eval"], scorer="judge")


# --- the command ------------------------------------------------------------------------------


def run(*args: str | Path):  # noqa: ANN201
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "200"})


def test_cli_table_json_and_plot(inspect_logs: Path, tmp_path: Path) -> None:
    r = run("indicators", "horizon", inspect_logs / "eval", inspect_logs / "hopeless", "--bootstrap", "20")
    assert r.exit_code == 0, r.output
    for text in ("mockllm/model", "mockllm/hopeless", "50% horizon", "80% horizon", "limit-hit", "errored",
                 "shortest task"):
        assert text in r.stdout
    png = tmp_path / "h.png"
    r = run("indicators", "horizon", inspect_logs / "json", "--bootstrap", "10", "--json", "--plot", png)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["method"] == "metr-logistic-2025" and doc["regularization_C"] == 10
    (m,) = doc["models"]
    assert m["model"] == "mockllm/model" and m["n_errored"] == 4 and m["n_limit_hit"] == 4
    assert m["p50_low"] <= m["p50_minutes"] <= m["p50_high"]
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("make,match,code", [
    (lambda d: (d / "x.json").write_text('{"a": 1}') and d / "x.json", "not an Inspect AI evaluation log", 65),
    (lambda d: (d / "x.csv").write_text("task_id,human_minutes\na,1\n") and d / "x.csv", "not an evaluation log", 65),
    (lambda d: (d / "e").mkdir() or d / "e", "no evaluation logs", 65),
])
def test_cli_bad_input_is_one_clear_line(tmp_path: Path, make, match: str, code: int) -> None:
    r = run("indicators", "horizon", make(tmp_path))
    assert r.exit_code == code
    assert r.stderr.startswith("error: ") and match in r.stderr and "Traceback" not in r.output


def test_cli_missing_key_and_no_logs(inspect_logs: Path) -> None:
    r = run("indicators", "horizon", inspect_logs / "eval", "--minutes-key", "effort")
    assert r.exit_code == 65 and "no metadata key 'effort'" in r.stderr
    r = run("indicators", "horizon")
    assert r.exit_code == 2 and "Missing argument" in r.stderr


def _registry(tmp_path: Path) -> tuple[Path, Path]:
    d, coord, lab = tmp_path / "log", tmp_path / "coord.key", tmp_path / "lab.key"
    for args in (("log", "init", d, "--origin", "redline.test/log"), ("key", "new", "coord", "-o", coord),
                 ("party", "genesis", d, "--key", coord), ("key", "new", "lab-a", "-o", lab),
                 ("party", "admit", d, f"{lab}.pub", "--role", "lab", "--display-name", "Lab A",
                  "--jurisdiction", "EU", "--key", coord)):
        r = run(*args)
        assert r.exit_code == 0, (args, r.output)
    return d, lab


def test_cli_sign_submit_and_out(inspect_logs: Path, tmp_path: Path) -> None:
    d, lab = _registry(tmp_path)
    r = run("indicators", "horizon", inspect_logs / "eval", inspect_logs / "hopeless", "--bootstrap", "20",
            "--sign", lab, "--submit", d)
    assert r.exit_code == 0, r.output
    assert "accepted: entry" in r.stderr and "not signed: mockllm/hopeless" in r.stderr
    state = json.loads(run("state", d, "--json").stdout)
    (entry,) = [v for k, v in state["indicators"].items() if k == "time-horizon-50:mockllm/model"]
    assert entry["by"] == "lab-a" and entry["value"] > 0
    out = tmp_path / "stmt.json"
    r = run("indicators", "horizon", inspect_logs / "eval", "--bootstrap", "20", "--sign", lab, "--out", out,
            "--seq", "9", "--log-origin", "redline.example/log")
    assert r.exit_code == 0, r.output
    key = load_signing_key(lab)
    pred, _ = open_envelope(Envelope.from_json(out.read_bytes()), [key.verifier()])
    assert isinstance(pred, Indicator) and pred.name == "time-horizon-50" and pred.unit == "hours"
    assert pred.subject == "mockllm/model" and pred.seq == 9 and pred.method == "metr-logistic-2025"
    assert pred.interval_low <= pred.value <= pred.interval_high
    assert abs(pred.value * 60 - analyse(read_runs([inspect_logs / "eval"]), n_bootstrap=0)
               .model("mockllm/model").p50_minutes) < 1e-9
    digest = read_runs([inspect_logs / "eval"]).evidence_digest()
    assert pred.evidence_digest == {"sha256": digest}
    # one statement per --out: several finite models need --model
    both = run("indicators", "horizon", inspect_logs / "eval", "--bootstrap", "0", "--sign", lab, "--out", out,
               "--seq", "10", "--model", "nobody", "--log-origin", "redline.example/log")
    assert both.exit_code == 65 and "no runs for model(s) 'nobody'" in both.stderr
    none = run("indicators", "horizon", inspect_logs / "hopeless", "--bootstrap", "0", "--sign", lab,
               "--out", out, "--seq", "10", "--log-origin", "redline.example/log")
    assert none.exit_code == 65 and "nothing to sign" in none.stderr
