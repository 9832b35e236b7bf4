"""The dashboard in a real browser (Playwright driving Debian's Chromium, ``/usr/bin/chromium``).

On a demo-like log served by a real uvicorn on loopback: every page renders with no console error and no
failed request (and a screenshot of each is saved under the test's tmp dir, listed in the output); the chart is
drawn with the expected series; the banner goes from normal to PAUSED when the entry that starts the pause is
submitted while the page is open (then reloaded); an entry's inclusion proof verifies in the browser, and a
proof tampered on its way (Playwright's route API; no test hook in the app) is shown as failing; axe-core (the
vendored ``tests/vendor/axe.min.js``) finds no serious or critical accessibility violation on any page.

Chromium and Playwright come from ``make test`` (``scripts/system-deps.sh`` installs ``chromium``; the ``dev``
extra installs ``playwright``; ``playwright install`` is never run). Without them these tests skip on a
developer's machine, naming what is missing, and fail in CI (where ``CI`` is set).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_kit import story, trigger
from helpers.loopback import LoopbackServer

from redline.server import create_app

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
PAGES = ("/", "/parties", "/runs", "/reviews", "/violations", "/log")


def missing_browser(exists: Any = os.path.exists) -> list[str]:
    """What the browser tests lack here, each with what provides it."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package 'playwright' (pip install -e '.[dev]')")
    if not exists(CHROMIUM):
        missing.append(f"{CHROMIUM} (Debian package chromium: make system-deps)")
    return missing


def require_browser(missing: list[str], env: Mapping[str, str] = os.environ) -> None:
    """Fail in CI, skip elsewhere, when anything is missing."""
    if not missing:
        return
    what = "; ".join(missing)
    if env.get("CI"):
        pytest.fail(f"dashboard browser tests cannot run in CI: {what} missing", pytrace=False)
    pytest.skip(f"dashboard browser tests: {what} missing")


def test_browser_policy_fails_in_ci_and_skips_elsewhere() -> None:
    missing = missing_browser(exists=lambda _: False)
    assert any("chromium" in m for m in missing)
    with pytest.raises(pytest.fail.Exception, match="chromium"):
        require_browser(missing, {"CI": "true"})
    with pytest.raises(pytest.skip.Exception, match="chromium"):
        require_browser(missing, {})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser(missing_browser())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    world = story(tmp_path_factory.mktemp("dash-browser"))
    with LoopbackServer(create_app(world.registry)) as srv:
        yield world, srv.url


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


class Watch:
    """Console errors, page errors and failed requests (including HTTP errors) of one page."""

    def __init__(self, page: Any) -> None:
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)


def test_every_page_renders_cleanly_with_screenshots(browser, served, shots: Path) -> None:
    world, url = served
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch(page)
    saved = []
    for path in (*PAGES, f"/entry/{world.state.active_pause.trigger_index}"):
        page.goto(url + path, wait_until="load")
        page.wait_for_load_state("networkidle")
        assert page.locator("h1").count() == 1, path
        shot = shots / (("overview" if path == "/" else path.strip("/").replace("/", "-")) + ".png")
        page.screenshot(path=str(shot), full_page=True)
        saved.append(shot)
    page.close()
    assert watch.problems == []
    assert all(s.stat().st_size > 5000 for s in saved)
    print("screenshots:", *map(str, saved), sep="\n  ")


def test_the_chart_is_drawn_with_each_party(browser, served) -> None:
    _, url = served
    page = browser.new_page()
    watch = Watch(page)
    page.goto(url + "/")
    page.wait_for_selector("#compute-chart[data-drawn='1'] canvas")
    labels = page.eval_on_selector_all("#compute-chart .u-legend .u-series .u-label",
                                       "els => els.map(e => e.textContent)")
    assert labels[1:] == ["lab-a", "lab-b", "lab-c"]
    inked = page.eval_on_selector("#compute-chart canvas", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")
    assert inked > 1000
    # the series' last points are the totals in the table under the chart
    last = page.evaluate("window.redlineChart.data.map(s => s[s.length - 1])")
    assert last[1:] == [3e25, 5e24, 2.2e24]
    page.close()
    assert watch.problems == []


def test_banner_turns_paused_when_the_trigger_is_submitted(browser, tmp_path: Path, shots: Path) -> None:
    world = story(tmp_path, pause=False)
    with LoopbackServer(create_app(world.registry)) as srv:
        page = browser.new_page()
        watch = Watch(page)
        page.goto(srv.url + "/")
        banner = page.locator("#banner")
        assert banner.get_attribute("data-status") == "normal"
        page.screenshot(path=str(shots / "overview-before-pause.png"))
        r = httpx.post(srv.url + "/submit", content=trigger(world), timeout=20)
        assert r.status_code == 200, r.text
        page.reload()
        assert banner.get_attribute("data-status") == "paused"
        assert banner.locator("h2").inner_text().startswith("PAUSED since ")
        assert banner.locator(f"a[href='/entry/{r.headers['redline-index']}']").count() >= 1
        for lab in ("lab-a", "lab-b", "lab-c"):
            assert banner.locator(".bound strong", has_text=lab).count() == 1
        page.screenshot(path=str(shots / "overview-after-pause.png"))
        page.close()
    assert watch.problems == []


def test_an_entry_proof_verifies_in_the_browser_and_a_tampered_one_fails(browser, served) -> None:
    world, url = served
    index = world.state.active_pause.trigger_index
    page = browser.new_page()
    watch = Watch(page)
    page.goto(f"{url}/entry/{index}")
    page.click("#verify-button")
    page.wait_for_selector("#verify-result[data-done]")
    result = page.locator("#verify-result")
    assert result.get_attribute("class") == "ok", result.inner_text()
    assert "Verified" in result.inner_text() and "signed by the log's key" in result.inner_text()
    root = world.log.checkpoint().decode().split("\n")[2]
    assert root in result.inner_text()

    def tamper(route: Any) -> None:
        body = route.fetch().json()
        first = bytearray(base64.b64decode(body["inclusion_proof"][0]))
        first[0] ^= 1
        body["inclusion_proof"][0] = base64.b64encode(bytes(first)).decode()
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(f"**/api/entries/{index}", tamper)
    page.reload()
    page.click("#verify-button")
    page.wait_for_selector("#verify-result[data-done]")
    assert result.get_attribute("class") == "fail"
    assert result.inner_text().startswith("FAILED") and "does not match" in result.inner_text()
    page.close()
    assert watch.problems == []


def test_a_tampered_checkpoint_signature_fails(browser, served) -> None:
    _, url = served
    page = browser.new_page()

    def tamper(route: Any) -> None:
        body = route.fetch().json()
        head, _, cp = body["receipt"].partition("\n\n")
        lines = cp.split("\n")
        lines[3] = lines[3][:-6] + ("A" if lines[3][-6] != "A" else "B") + lines[3][-5:]  # a signature byte
        body["receipt"] = head + "\n\n" + "\n".join(lines)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route("**/api/entries/2", tamper)
    page.goto(f"{url}/entry/2")
    page.click("#verify-button")
    page.wait_for_selector("#verify-result[data-done]")
    text = page.locator("#verify-result").inner_text()
    assert page.locator("#verify-result").get_attribute("class") == "fail" and "does NOT verify" in text, text
    page.close()


def test_axe_finds_no_serious_accessibility_violation(browser, served) -> None:
    world, url = served
    context = browser.new_context(bypass_csp=True)  # to inject axe into the page; the app's CSP is tested above
    page = context.new_page()
    source = AXE.read_text()
    found = {}
    for path in (*PAGES, f"/entry/{world.state.active_pause.trigger_index}"):
        page.goto(url + path)
        page.add_script_tag(content=source)
        res = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                            ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))")
        bad = [v for v in res if v["impact"] in ("serious", "critical")]
        if bad:
            found[path] = bad
    context.close()
    assert found == {}
