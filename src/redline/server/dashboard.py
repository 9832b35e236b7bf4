"""The public dashboard: server-rendered HTML pages of the state, every fact linked to its log entry.

``mount_dashboard(app, service)`` adds, to the app of :func:`redline.server.create_app`:

- ``/`` (overview: the pause banner, each danger line of each policy in force against its current value,
  commitments and the quorum per policy, compute per party over time, the published checkpoint and its
  cosignatures), ``/parties``, ``/runs``, ``/reviews``, ``/violations``, ``/log`` (checkpoints, witnesses);
- ``/entry/<index>``: one entry (its statement decoded, its signer, its integration time) with a button that
  verifies its inclusion proof against the published checkpoint in the browser (``static/verify.js``), and
  its receipt and entry bytes to download for ``redline log verify``;
- ``/static/...``: the stylesheet, the two small scripts and the vendored uPlot (``static/vendor``; see its
  ``MANIFEST.json``).

Every page reads without JavaScript (the chart's numbers are also in a table). Jinja2 autoescapes everything;
pages carry a ``Content-Security-Policy`` that allows only this origin (no inline script or style). The view
of the state a page shows is derived once per (log size, published size) and cached: pages of a large log
render from it in milliseconds.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query
from fastapi import Path as ApiPath
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from redline.engine.effects import bound_parties, h100e
from redline.engine.state import State
from redline.engine.view import deadlines, pause_view, release_status
from redline.policy.metrics import INDICATOR_METRICS
from redline.times import HOUR_MS, MINUTE_MS, SECOND_MS, iso

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: Rows per page of a long list.
PAGE_ROWS = 100
#: Parties drawn as their own series in the compute chart (the rest are summed as "others").
CHART_SERIES = 8
#: Points per series in the compute chart at most.
CHART_POINTS = 400
#: Checkpointed sizes the log page lists (the latest ones).
CHECKPOINTS_SHOWN = 50
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache"}
NAV = (("/", "Overview"), ("/parties", "Parties"), ("/runs", "Runs"), ("/reviews", "Reviews"),
       ("/violations", "Violations"), ("/log", "Log"))


def fmt(value: float | None) -> str:
    """A number as shown: three significant digits, "—" for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:.3g}"


def duration(ms: int) -> str:
    """A span of logged time in days and hours."""
    hours = ms // HOUR_MS
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h {(ms // MINUTE_MS) % 60} min"


def parse_note(text: str) -> dict[str, Any]:
    """A signed checkpoint's origin, size, root and signature lines (name, key hash) — for display only."""
    body, _, sigs = text.partition("\n\n")
    lines = body.split("\n")
    signatures = []
    for line in sigs.splitlines():
        if line.startswith("\u2014 "):
            name = line[2:].rpartition(" ")[0]
            signatures.append({"name": name, "line": line})
    return {"origin": lines[0] if lines else "", "size": lines[1] if len(lines) > 1 else "",
            "root": lines[2] if len(lines) > 2 else "", "signatures": signatures, "text": text}


# --- the view of the state ------------------------------------------------------------------------------


@dataclass
class View:
    """What the pages show, derived once from the state at one (log size, published size)."""

    size: int
    published_size: int
    origin: str
    log_key: str
    checkpoint: dict[str, Any]
    checkpoints: int
    last_checkpoints: list[int]
    status: str
    last_time: str
    banner: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    commitments: list[dict[str, Any]] = field(default_factory=list)
    quorums: list[dict[str, Any]] = field(default_factory=list)
    chart: dict[str, Any] = field(default_factory=dict)
    parties: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)
    deadlines: list[dict[str, Any]] = field(default_factory=list)


def _policy_name(st: State, digest: str) -> str:
    p = st.policies.get(digest)
    return f"{p['policy_id']} v{p['version']}" if p else digest[:12]


def _current(st: State, metric: str, scope: str) -> tuple[float | None, str | None]:
    """The largest current value of ``metric`` in ``scope`` over its subjects, and that subject."""
    cands: list[tuple[float, str]] = []
    if metric == "training_compute" and scope == "run":
        cands = [(r.compute, r.key) for r in st.runs.values()]
    elif metric == "training_compute" and scope == "model-lineage":
        for r in st.runs.values():
            base = st.runs.get(st.models.get(r.base_model, "")) if r.base_model else None
            extra = base.compute if base is not None and base is not r else (r.base_model_flop or 0.0)
            cands.append((r.compute + extra, r.model_name))
    elif metric == "cluster_h100e":
        cands = [(h, f"{p}/{c}") for p, cs in st.clusters.items() for c, h in cs.items()]
    elif metric == "party_h100e":
        cands = [(sum(cs.values()), p) for p, cs in st.clusters.items()]
    else:
        names = {n for n, m in INDICATOR_METRICS.items() if m == metric} | {metric.replace("_", "-")}
        for k, ind in st.indicators.items():
            name, _, subject = k.partition(":")
            if name in names and isinstance(ind.get("value"), (int, float)):
                cands.append((float(ind["value"]), subject))
    if not cands:
        return None, None
    value, subject = max(cands, key=lambda c: c[0])
    return value, subject


def _banner(st: State) -> dict[str, Any]:
    pv = pause_view(st)
    if st.status == "paused" and pv is not None:
        return {"kind": "paused", "pause": pv}
    waiting = [st.crossings[i] for i in st.pending_pause if i < len(st.crossings)]
    if waiting:
        return {"kind": "waiting", "crossings": [
            {"line": c.line, "subject": c.subject, "party": c.party, "index": c.index, "at": iso(c.time_ms),
             "policy": _policy_name(st, c.policy)} for c in waiting], "pause": pv}
    return {"kind": st.status, "pause": pv}


def _chart(st: State, times: dict[int, int]) -> dict[str, Any]:
    """Cumulative declared compute per party over logged time (each run counted at its first entry)."""
    events: list[tuple[int, str, float]] = []
    for r in st.runs.values():
        if r.indexes:
            t = times.get(r.indexes[0])
            if t is not None:
                events.append((t, r.party, r.compute))
    events.sort()
    totals: dict[str, float] = {}
    for _, p, c in events:
        totals[p] = totals.get(p, 0.0) + c
    top = [p for p, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:CHART_SERIES]]
    names = top + (["others"] if len(totals) > len(top) else [])
    if not events:
        return {"series": [], "x": [], "y": [], "totals": []}
    t0, t1 = events[0][0], events[-1][0]
    step = max(1, (t1 - t0) // CHART_POINTS + 1)
    x: list[int] = []
    y: list[list[float]] = [[] for _ in names]
    running = dict.fromkeys(names, 0.0)
    k = 0
    while k < len(events):
        bucket = t0 + (events[k][0] - t0) // step * step
        while k < len(events) and t0 + (events[k][0] - t0) // step * step == bucket:
            _, p, c = events[k]
            running[p if p in running else "others"] += c
            k += 1
        x.append(bucket // SECOND_MS)
        for s, name in zip(y, names):
            s.append(running[name])
    table = [{"party": n, "total": running[n]} for n in names]
    return {"series": names, "x": x, "y": y, "totals": table}


def build_view(st: State, *, size: int, published_size: int, origin: str, log_key: str, checkpoint: bytes,
               sizes: list[int]) -> View:
    """The pages' view of ``st`` (see :class:`View`)."""
    now = st.last_time_ms
    times = {ev.index: ev.time_ms for ev in st.timeline}
    view = View(size=size, published_size=published_size, origin=origin, log_key=log_key,
                checkpoint=parse_note(checkpoint.decode("utf-8", "replace")), checkpoints=len(sizes),
                last_checkpoints=sizes[-CHECKPOINTS_SHOWN:][::-1], status=st.status,
                last_time=iso(now) if now else "—", banner=_banner(st))
    crossed: dict[tuple[str, str], list[Any]] = {}
    for c in st.crossings:
        crossed.setdefault((c.policy, c.line), []).append(c)
    for digest in st.in_force:
        policy = st.policy_objects.get(digest)
        if policy is None:
            continue
        for line in policy.lines:
            value, subject = _current(st, line.metric, line.scope)
            hits = crossed.get((digest, line.id), [])
            view.lines.append({
                "policy": _policy_name(st, digest), "policy_index": st.policies[digest]["index"], "id": line.id,
                "title": line.title, "metric": line.metric, "scope": line.scope, "comparator": line.comparator,
                "threshold": line.value, "unit": line.unit, "value": value, "subject": subject,
                "over": value is not None and line.crossed_by(value), "consequence": line.consequence.kind,
                "crossings": len(hits), "first_index": hits[0].index if hits else None})
    lab_total = sum(h100e(st, p) for p, party in st.parties.items() if party.role == "lab")
    for party, by_policy in sorted(st.commitments.items()):
        for digest, c in sorted(by_policy.items()):
            view.commitments.append({
                "party": party, "policy": _policy_name(st, digest), "pauses": ", ".join(c.pauses),
                "quorum": f"{c.quorum_kind} {c.threshold:g}", "expires": iso(c.expires_ms),
                "live": c.expires_ms > now and not st.parties[party].revoked, "index": c.index})
    for digest in st.in_force:
        live = [cs[digest] for p, cs in st.commitments.items()
                if digest in cs and cs[digest].expires_ms > now and not st.parties[p].revoked]
        share = sum(h100e(st, c.party) for c in live) / lab_total if lab_total > 0 else 0.0
        bound = bound_parties(st, digest, now)
        view.quorums.append({"policy": _policy_name(st, digest), "count": len(live),
                             "labs": sum(1 for p in st.parties.values() if p.role == "lab" and not p.revoked),
                             "share": share, "percent": f"{100 * share:.0f}", "bound": bound,
                             "thresholds": sorted({f"{c.quorum_kind} {c.threshold:g}" for c in live})})
    view.chart = _chart(st, times)
    violations_by: dict[str, int] = {}
    for v in st.violations:
        violations_by[v.party] = violations_by.get(v.party, 0) + 1
    active = st.active_pause
    for name, p in sorted(st.parties.items()):
        view.parties.append({
            "name": name, "display_name": p.display_name, "role": p.role, "jurisdiction": p.jurisdiction,
            "admitted_index": p.admitted_index, "revoked": p.revoked, "last_seq": p.last_seq,
            "h100e": h100e(st, name) if name in st.clusters else None,
            "commitments": [_policy_name(st, d) for d in sorted(st.commitments.get(name, {}))],
            "bound": active is not None and name in active.bound,
            "acknowledged": active.acknowledged.get(name) if active is not None else None,
            "violations": violations_by.get(name, 0)})
    reports: dict[str, int] = {}
    for ev in st.timeline:
        if ev.kind == "verification" and " verifies " in ev.text:
            rest = ev.text.split(" verifies ", 1)[1]
            reports[rest.split(":", 1)[0].split(" (", 1)[0]] = ev.index
    for key, r in sorted(st.runs.items()):
        view.runs.append({
            "key": key, "party": r.party, "run_id": r.run_id, "model": r.model_name, "declared": r.declared_flop,
            "so_far": r.flop_so_far, "total": r.total_flop, "compute": r.compute, "last_step": r.last_step,
            "progress": min(1.0, r.flop_so_far / r.declared_flop) if r.declared_flop > 0 else None,
            "finished": r.finished, "verdict": r.verified, "report_index": reports.get(key),
            "verified_final": r.verified_final, "start_index": r.indexes[0] if r.indexes else None,
            "finish_index": r.finish_index})
    for r in release_status(st):
        left = r["window_end_ms"] - now
        view.reviews.append({**r, "left": duration(left) if left > 0 else None})
    for v in st.violations:
        view.violations.append({"party": v.party, "kind": v.kind, "detail": v.detail, "evidence": list(v.evidence),
                                "at": iso(v.time_ms)})
    view.deadlines = deadlines(st, open_only=True)
    return view


# --- the pages -------------------------------------------------------------------------------------------


class Dashboard:
    """The pages of one :class:`~redline.server.app.LogService`, with the view cached per log size."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                               trim_blocks=True, lstrip_blocks=True)
        self.env.filters["fmt"] = fmt
        self.env.globals["nav"] = NAV
        self._view: View | None = None
        self._view_lock = threading.Lock()

    def view(self) -> View:
        """The view at the log's current size (derived again only when the log or its publication moved)."""
        svc = self.service
        with self._view_lock:
            with svc.lock:
                size, published = svc.log.size, svc.published_size
                cached = self._view
                if cached is not None and (cached.size, cached.published_size) == (size, published):
                    return cached
                view = build_view(svc.registry.state, size=size, published_size=published, origin=svc.log.origin,
                                  log_key=svc.log.verifier.to_string(), checkpoint=svc.checkpoint(),
                                  sizes=list(svc.sizes))
            self._view = view
            return view

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A page: ``template`` rendered with the view and ``context``, with the CSP and other headers."""
        html = self.env.get_template(template).render(v=context.pop("view", None) or self.view(), **context)
        return HTMLResponse(html, status_code=status, headers=HTML_HEADERS)


def _paged(rows: list[dict[str, Any]], page: int) -> dict[str, Any]:
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    page = min(max(page, 1), pages)
    return {"rows": rows[(page - 1) * PAGE_ROWS: page * PAGE_ROWS], "page": page, "pages": pages,
            "total": len(rows)}


def mount_dashboard(app: FastAPI, service: Any) -> Dashboard:
    """Add the dashboard's pages and static files to ``app`` (serving ``service``); return the dashboard."""
    dash = Dashboard(service)
    app.state.dashboard = dash
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    page_q = Query(1, ge=1, le=1 << 31, description="Page number.")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview() -> HTMLResponse:
        v = dash.view()
        chart = json.dumps({"series": v.chart["series"], "x": v.chart["x"], "y": v.chart["y"]})
        return dash.render("overview.html", view=v, chart_json=chart, title="Overview")

    @app.get("/parties", response_class=HTMLResponse, include_in_schema=False)
    def parties(page: int = page_q) -> HTMLResponse:
        return dash.render("parties.html", p=_paged(dash.view().parties, page), title="Parties")

    @app.get("/runs", response_class=HTMLResponse, include_in_schema=False)
    def runs(page: int = page_q) -> HTMLResponse:
        return dash.render("runs.html", p=_paged(dash.view().runs, page), title="Runs")

    @app.get("/reviews", response_class=HTMLResponse, include_in_schema=False)
    def reviews(page: int = page_q) -> HTMLResponse:
        return dash.render("reviews.html", p=_paged(dash.view().reviews, page), title="Reviews")

    @app.get("/violations", response_class=HTMLResponse, include_in_schema=False)
    def violations(page: int = page_q) -> HTMLResponse:
        return dash.render("violations.html", p=_paged(dash.view().violations, page), title="Violations")

    @app.get("/log", response_class=HTMLResponse, include_in_schema=False)
    def log_page() -> HTMLResponse:
        return dash.render("log.html", title="Log")

    @app.get("/entry/{index}", response_class=HTMLResponse, include_in_schema=False)
    def entry(index: int = ApiPath(..., ge=0, le=(1 << 63) - 1)) -> HTMLResponse:
        e = service.entry_view(index)
        if e is None:
            return dash.render("missing.html", status=404, index=index, title=f"No entry {index}")
        st = service.registry.state
        pred = (e["statement"] or {}).get("predicate") if isinstance(e["statement"], dict) else None
        signer = pred.get("party") if isinstance(pred, dict) else None
        party = st.parties.get(signer) if isinstance(signer, str) else None
        rejected = next((r for r in st.rejected if r.index == index), None)
        return dash.render(
            "entry.html", e=e, title=f"Entry {index}", signer=signer, party=party,
            signer_key=party.key_at(index) if party is not None else None, rejected=rejected,
            kind=(e["statement"] or {}).get("predicateType", "") if e["statement"] else "",
            statement=json.dumps(e["statement"] if e["statement"] is not None else e["envelope"], indent=2,
                                 sort_keys=True, ensure_ascii=False),
            checkpoint=parse_note(e["receipt"].partition("\n\n")[2]))

    @app.get("/entry/{index}/receipt", include_in_schema=False)
    def entry_receipt(index: int = ApiPath(..., ge=0, le=(1 << 63) - 1)) -> Response:
        e = service.entry_view(index)
        if e is None:
            return Response("no such entry\n", status_code=404, media_type="text/plain")
        return Response(e["receipt"], media_type="text/plain; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="{index}.tlog-proof"'})

    @app.get("/entry/{index}/entry", include_in_schema=False)
    def entry_bytes(index: int = ApiPath(..., ge=0, le=(1 << 63) - 1)) -> Response:
        with service.lock:
            if index >= service.log.size:
                return Response("no such entry\n", status_code=404, media_type="text/plain")
            leaf = service.log.leaf(index)
        return Response(leaf[8:], media_type="application/octet-stream", headers={
            "Content-Disposition": f'attachment; filename="{index}.entry"'})

    return dash


__all__ = ["CSP", "Dashboard", "View", "build_view", "fmt", "mount_dashboard", "parse_note"]
