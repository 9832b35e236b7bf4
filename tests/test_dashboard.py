"""The public dashboard without a browser: every page renders server-side from a demo-like log, readable with
JavaScript off (the banner, the lines, every fact linked to its entry), escaped, with a self-only CSP; the
vendored chart library matches its pin; the view is cached per log size."""

from __future__ import annotations

import hashlib
import json
import re
import runpy
from pathlib import Path

import pytest
from dashboard_kit import story, trigger
from fastapi.testclient import TestClient

from redline.server import create_app
from redline.server.dashboard import CSP, STATIC, fmt, parse_note
from redline.statements import Admission

ROOT = Path(__file__).resolve().parent.parent
PAGES = ("/", "/parties", "/runs", "/reviews", "/violations", "/log")


@pytest.fixture(scope="module")
def paused(tmp_path_factory: pytest.TempPathFactory):
    world = story(tmp_path_factory.mktemp("dash"))
    with TestClient(create_app(world.registry)) as client:
        yield world, client


def links(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'href="/entry/(\d+)"', html)}


def test_every_page_renders_with_a_self_only_csp(paused) -> None:
    world, client = paused
    for path in PAGES:
        r = client.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "'unsafe-eval'" not in CSP
        assert "<script>" not in r.text and " on" + "click=" not in r.text  # no inline script or handler
        assert links(r.text) and max(links(r.text)) < world.log.size, path


def test_overview_reads_without_javascript(paused) -> None:
    world, client = paused
    html = client.get("/").text
    pause = world.state.active_pause
    assert 'data-status="paused"' in html and "PAUSED since" in html
    assert f'href="/entry/{pause.started_index}"' in html
    for lab in pause.bound:
        assert f"<strong>{lab}</strong>" in html
    # each line of the policy in force against its current value, with the crossing's entry
    assert "pause-line" in html and "3e+25 FLOP" in html and "&gt; 1e+25 FLOP" in html
    assert "time-horizon" in html and "2.5 hours" in html and "&gt;= 8 hours" in html
    assert "3 of 3 labs committed, 100% of the labs' compute" in html and "Quorum <strong>met</strong>" in html
    data = json.loads(re.search(r'<script type="application/json" id="compute-data">(.*?)</script>', html).group(1))
    assert data["series"] == ["lab-a", "lab-b", "lab-c"] and len(data["y"]) == 3
    assert data["y"][0][-1] == 3e25  # lab-a's run over the pause line
    assert world.log.checkpoint().decode().split("\n")[2] in html  # the published checkpoint's root
    assert f"{world.log.size} entries, published (cosigned) checkpoint at size {world.log.size}" in html


def test_lists_link_each_fact_to_its_entry(paused) -> None:
    world, client = paused
    st = world.state
    runs = client.get("/runs").text
    assert "lab-c/rc1" in runs and "pass" in runs and "fail" in runs
    report = next(v.evidence[-1] for v in st.violations if v.kind == "failed-verification")
    assert f'href="/entry/{report}">report, entry {report}</a>' in runs
    violations = client.get("/violations").text
    for v in st.violations:
        assert v.kind in violations and set(v.evidence) <= links(violations)
    reviews = client.get("/reviews").text
    review = st.reviews["lab-c/sub-c1"]
    assert f'href="/entry/{review.decision_index}">clear</a>' in reviews and "left" in reviews
    assert ">no</span>" in reviews and "pause" in reviews  # held to releases by the pause: not now
    parties = client.get("/parties").text
    count = sum(v.party == "lab-b" for v in st.violations)
    assert count and f'href="/violations">{count}</a>' in parties.replace('class="bad" ', '')
    log = client.get("/log").text
    assert "the log" in log and f"size {world.log.size}" in log


def test_entry_page_receipt_and_bytes(paused) -> None:
    world, client = paused
    index = world.state.active_pause.trigger_index
    html = client.get(f"/entry/{index}").text
    assert "run-start" in html and "lab-a" in html and "&#34;declared_flop&#34;" in html
    assert 'id="verify-button"' in html and f"redline log verify --receipt {index}.tlog-proof" in html
    assert world.log.verifier.to_string() in html
    receipt = client.get(f"/entry/{index}/receipt")
    assert receipt.status_code == 200 and receipt.headers["content-disposition"].endswith(f'"{index}.tlog-proof"')
    assert receipt.text == client.get(f"/api/entries/{index}").json()["receipt"]
    assert client.get(f"/entry/{index}/entry").content == world.log.leaf(index)[8:]
    assert client.get(f"/entry/{world.log.size}").status_code == 404
    assert client.get(f"/entry/{world.log.size}/receipt").status_code == 404
    assert client.get("/entry/-1").status_code == 422


def test_offline_command_verifies_the_downloaded_receipt(paused, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from redline.cli.main import cli
    world, client = paused
    (tmp_path / "r").write_bytes(client.get("/entry/3/receipt").content)
    (tmp_path / "e").write_bytes(client.get("/entry/3/entry").content)
    out = CliRunner().invoke(cli, ["log", "verify", "--receipt", str(tmp_path / "r"), "--entry", str(tmp_path / "e"),
                                   "--log-key", world.log.verifier.to_string()])
    assert out.exit_code == 0, out.output


def test_party_words_are_escaped(tmp_path: Path) -> None:
    world = story(tmp_path, pause=False)
    from scenario_kit import key
    world.keys["evil"] = key("evil")
    world.sub("coordinator", Admission, admitted="evil", verifier_key=world.keys["evil"].verifier().to_string(),
              role="lab", display_name='<img src=x onerror="alert(1)">', jurisdiction="EU")
    with TestClient(create_app(world.registry)) as client:
        html = client.get("/parties").text
        assert '<img src=x' not in html and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
        assert "&lt;img" in client.get(f"/entry/{world.log.size - 1}").text


def test_banner_follows_the_log_and_the_view_is_cached_per_size(tmp_path: Path) -> None:
    world = story(tmp_path, pause=False)
    app = create_app(world.registry)
    with TestClient(app) as client:
        assert 'data-status="normal"' in client.get("/").text
        dash = app.state.dashboard
        assert dash.view() is dash.view()  # nothing moved: the same view
        r = client.post("/submit", content=trigger(world))
        assert r.status_code == 200, r.text
        html = client.get("/").text
        assert 'data-status="paused"' in html and "PAUSED since" in html


def test_helpers() -> None:
    assert fmt(None) == "—" and fmt(3e25) == "3e+25" and fmt(1000.0) == "1,000" and fmt(2.5) == "2.5"
    note = parse_note("o\n5\nAAAA\n\n\u2014 o abc\n\u2014 w1 def\n")
    assert (note["origin"], note["size"], note["root"]) == ("o", "5", "AAAA")
    assert [s["name"] for s in note["signatures"]] == ["o", "w1"]


def test_vendored_assets_match_their_pins() -> None:
    """The committed uPlot (and the tests' axe-core) are byte for byte what the build step recorded for the pinned
    npm versions."""
    pins = runpy.run_path(str(ROOT / "scripts" / "dashboard_assets.py"))["PINS"]
    for package, version, dest, files in pins:
        manifest = json.loads((dest / "MANIFEST.json").read_text())
        assert manifest[package]["version"] == version
        assert manifest[package]["integrity"].startswith("sha512-")
        for name in files.values():
            data = (dest / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == manifest[package]["files"][name], name
        assert any("LICENSE" in name for name in files.values())
    assert b"(v1.6.32)" in (STATIC / "vendor" / "uPlot.iife.min.js").read_bytes()[:80]
    assert (STATIC / "vendor" / "uPlot.iife.min.js").parent == ROOT / "src/redline/server/static/vendor"
