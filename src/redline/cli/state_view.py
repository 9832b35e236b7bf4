"""The human ``redline state``: the replayed state as Rich tables, every time in ISO 8601 UTC.

Everything shown comes from :mod:`redline.engine.view` (pure), so the tables and
``redline state --json`` say the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from redline.engine.state import State
from redline.engine.view import deadlines, pause_view, release_status
from redline.times import iso

_STATUS = {"normal": "[green]normal[/]", "paused": "[bold red]PAUSED[/]", "resumed": "[yellow]resumed[/]"}


def _table(title: str, *columns: str) -> Table:
    """A table whose cells wrap, and fold words too long for their column (digests), never cutting them."""
    t = Table(title=escape(title))
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


def _row(t: Table, *cells: Any) -> None:
    """Add a row of plain text (never read as Rich markup: party names and details are the parties' own words)."""
    t.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c)) for c in cells))


def _entry(index: int | None) -> str:
    return "" if index is None else f"entry {index}"


def _policy_name(st: State, digest: str, *, full: bool = False) -> str:
    p = st.policies.get(digest)
    shown = digest if full else digest[:12]
    return f"{p['policy_id']} v{p['version']} ({shown})" if p else shown


def status_line(st: State, where: str | Path | None = None) -> str:
    """The header: the log, its size and its status (markup)."""
    if st.coordinator is None:
        place = escape(f" in {where}") if where is not None else ""
        return (f"log{place} is empty (no genesis yet: run 'redline party genesis"
                + (escape(f" {where}") if where is not None else "") + " --key COORDINATOR.key')")
    head = f"log {escape(str(st.origin))}: {st.next_index} entries, status {_STATUS[st.status]}"
    pv = pause_view(st)
    if pv is None:
        return head
    started = f"entry {pv['started_index']} ({pv['started_at']})"
    trigger = f"triggered by {escape(pv['trigger_line'])} at entry {pv['trigger_index']}"
    if pv["status"] == "active":
        return f"{head} since {started}, {trigger}"
    return f"{head} (pause {pv['pause_id']} from {started}, {trigger}, ended at entry {pv['ended_index']} " \
           f"({pv['ended_at']}))"


#: Rows a long table shows by default (the latest ones); ``redline state --all`` shows every row.
DEFAULT_ROWS = 20


def render_state(st: State, console: Console, *, where: str | Path | None = None,
                 limit: int | None = DEFAULT_ROWS) -> None:
    """Print the state as Rich tables (``where``: the log directory, named when the log is empty). Tables that
    grow with the log (deadlines, crossings, violations, findings, reviews, releases, base models, rejected
    entries) show their latest ``limit`` rows and say how many there are (``None``: every row)."""
    console.print(status_line(st, where))
    if st.coordinator is None:
        return
    _policies(st, console)
    _commitments(st, console)
    _pause(st, console)
    _deadlines(st, console, limit)
    _crossings(st, console, limit)
    _violations(st, console, limit)
    _findings(st, console, limit)
    _reviews(st, console, limit)
    _releases(st, console, limit)
    _bases(st, console, limit)
    _rejected(st, console, limit)


_T = TypeVar("_T")


def _latest(t: Table, items: Sequence[_T], limit: int | None, what: str) -> Sequence[_T]:
    """The last ``limit`` of ``items`` (all when None), with a caption on ``t`` saying how many are left out."""
    if limit is None or len(items) <= limit:
        return items
    t.caption = f"the latest {limit:,} of {len(items):,} {what}; --all shows every row, --json everything"
    return items[len(items) - limit:]


def _policies(st: State, console: Console) -> None:
    t = _table("policies", "policy", "version", "digest", "status", "effective from", "in force since",
               "superseded at", "published at")
    for digest, p in sorted(st.policies.items(), key=lambda kv: kv[1]["index"]):
        eff = p.get("effective_from_ms")
        _row(t, p["policy_id"], p["version"], digest, p.get("status", ""), iso(eff) if eff is not None else "",
             _entry(p.get("in_force_index")), _entry(p.get("superseded_index")), _entry(p["index"]))
    console.print(t)


def _commitments(st: State, console: Console) -> None:
    t = _table("commitments", "party", "policy", "pauses", "quorum", "expires", "entry")
    for party, by_policy in sorted(st.commitments.items()):
        for digest, c in sorted(by_policy.items()):
            _row(t, party, _policy_name(st, digest), ", ".join(c.pauses), f"{c.quorum_kind} {c.threshold:g}",
                 iso(c.expires_ms), c.index)
    console.print(t)


def _pause(st: State, console: Console) -> None:
    pv = pause_view(st)
    if pv is None:
        return
    t = _table(f"pause {pv['pause_id']} ({'in force' if pv['status'] == 'active' else 'ended'})", "", "")
    t.show_header = False
    _row(t, "started", f"entry {pv['started_index']} ({pv['started_at']})")
    subject = f" ({pv['trigger_subject']}, by {pv['trigger_party']})" if pv["trigger_subject"] else ""
    _row(t, "triggered by", f"{pv['trigger_line']} at entry {pv['trigger_index']}{subject}")
    if len(pv["triggers"]) > 1:
        _row(t, "pause lines crossed", ", ".join(f"entry {i}" for i in pv["triggers"]))
    if pv["policy"]:
        _row(t, "policy", f"{pv['policy_id']} v{pv['policy_version']} {pv['policy']}")
    _row(t, "ended", f"entry {pv['ended_index']} ({pv['ended_at']})" if pv["ended_index"] is not None else "not yet")
    console.print(t)
    t = _table(f"bound by pause {pv['pause_id']}", "party", "joined at", "held to", "acknowledged")
    for p in pv["parties"]:
        _row(t, p["party"], _entry(p["joined_index"]), ", ".join(p["scopes"]),
             _entry(p["acknowledged_index"]) or "no")
    console.print(t)
    if pv["proposals"]:
        t = _table(f"resume proposals (pause {pv['pause_id']})", "proposal", "by", "entry", "approvals")
        for prop in pv["proposals"]:
            _row(t, prop["proposal_id"], prop["by"], prop["index"],
                 ", ".join(f"{p} (entry {i})" for p, i in prop["approvals"].items()) or "none")
        console.print(t)


def _deadlines(st: State, console: Console, limit: int | None = None) -> None:
    t = _table("deadlines (open obligations)", "kind", "party", "for", "due", "set at")
    for d in _latest(t, deadlines(st, open_only=True), limit, "open obligations"):
        _row(t, d["kind"], d["party"], d["ref"], d["due_at"], _entry(d["origin_index"]))
    console.print(t)


def _crossings(st: State, console: Console, limit: int | None = None) -> None:
    t = _table("danger lines crossed", "line", "policy", "subject", "party", "value", "line at", "evidence",
               "consequence", "entry", "time")
    for c in _latest(t, st.crossings, limit, "crossings"):
        _row(t, c.line, _policy_name(st, c.policy) if c.policy else "", c.subject, c.party, f"{c.value:.3g}",
             f"{c.threshold:.3g}", c.evidence, c.consequence + (f" ({c.note})" if c.note else ""), c.index,
             iso(c.time_ms))
    console.print(t)


def _violations(st: State, console: Console, limit: int | None = None) -> None:
    t = _table("violations", "party", "kind", "detail", "evidence (entries)", "time")
    for v in _latest(t, st.violations, limit, "violations"):
        _row(t, v.party, v.kind, v.detail, ", ".join(map(str, v.evidence)), iso(v.time_ms))
    console.print(t)


def _findings(st: State, console: Console, limit: int | None = None) -> None:
    """Compute that providers (or the labs themselves) attested and no declared run explains, with the arithmetic."""
    if not st.findings:
        return
    t = _table("unexplained compute (findings)", "customer", "period", "arithmetic", "evidence (entries)")
    for f in _latest(t, list(st.findings.values()), limit, "findings"):
        _row(t, f["customer"], f"{iso(f['period_start_ms'])}..{iso(f['period_end_ms'])}", f["arithmetic"],
             ", ".join(map(str, f["evidence"])))
    console.print(t)


def _reviews(st: State, console: Console, limit: int | None = None) -> None:
    t = _table("reviews", "review", "model", "weights", "window ends", "findings", "decision", "may release now")
    keys = _latest(t, sorted(st.reviews), limit, "reviews")
    for r in release_status(st, keys):
        may = Text("yes", style="green") if r["may_release"] else Text(
            "no: " + "; ".join(f"{o['kind']} ({o['reason']})" for o in r["obstacles"]), style="red")
        decision = r["decision"] or "pending"
        if r["decision_index"] is not None:
            decision += f" (entry {r['decision_index']})"
        _row(t, r["review"], r["model"], (r["weights"] or "")[:12], r["window_end_at"], r["findings"], decision, may)
    console.print(t)


def _releases(st: State, console: Console, limit: int | None = None) -> None:
    if not st.releases:
        return
    t = _table("releases", "entry", "party", "model", "weights", "run")
    for r in _latest(t, st.releases, limit, "releases"):
        _row(t, r["index"], r["party"], r["model"], (r.get("digest") or "")[:12], r.get("run") or "")
    console.print(t)


def _bases(st: State, console: Console, limit: int | None = None) -> None:
    if not st.bases:
        return
    t = _table("registered base models", "model", "weights", "training FLOP", "source", "by", "entry")
    for digest, b in _latest(t, list(st.bases.items()), limit, "base models"):
        _row(t, b["model_name"], digest[:12], f"{b['training_flop']:.3g}", b["source"], b["party"], b["index"])
    console.print(t)


def _rejected(st: State, console: Console, limit: int | None = None) -> None:
    if not st.rejected:
        return
    t = _table("rejected entries", "entry", "error", "message")
    for r in _latest(t, st.rejected, limit, "rejected entries"):
        _row(t, r.index, r.error, r.message)
    console.print(t)


__all__ = ["render_state", "status_line"]
