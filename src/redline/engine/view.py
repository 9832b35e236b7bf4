"""A readable view of the state: times as ISO 8601 UTC, the pause at a glance, and what may be released now.

Pure: derived from a :class:`~redline.engine.state.State` and nothing else, so a
face (the command line, a web page) shows the same thing from the same log.
``state_json`` is ``State.to_dict()`` with an ``*_at`` time string beside every
``*_ms`` integer, plus ``pause_view`` and ``release_status``; the canonical
digest stays that of ``to_dict()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redline.engine.effects import release_obstacles
from redline.engine.state import Obligation, Pause, State
from redline.times import iso

#: Obligations a pause puts on the parties it binds (their ``ref`` ends with ``pause <id>``).
PAUSE_OBLIGATIONS = ("acknowledgement", "usage-report")


_SKIP = object()


def _at(value: Any) -> Any:
    """The ``*_at`` sibling of a ``*_ms`` value: a time string, None for None, a mapping of them for a mapping of
    times (``joined_ms``); ``_SKIP`` for anything else."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return iso(value)
    if isinstance(value, dict) and all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        return {k: iso(v) for k, v in value.items()}
    return _SKIP


#: Keys whose value is a mapping keyed by data (party names, digests, run keys...), not a record: a party named
#: ``x_ms`` must not get an ``x_at`` twin. Their values are records again.
KEYED_MAPS = frozenset({
    "parties", "retired_keys", "policies", "runs", "models", "clusters", "indicators", "commitments", "reviews",
    "review_required", "bases", "acknowledged", "acknowledgements", "joined", "scopes", "proposals", "approvals"})


def with_times(obj: Any, *, keyed: bool = False) -> Any:
    """A copy of a JSON-able value with, beside every ``*_ms`` key of a record, its ``*_at`` sibling (unless one
    is there); ``keyed``: ``obj`` is a mapping keyed by data (see ``KEYED_MAPS``), whose keys are left alone."""
    if isinstance(obj, list):
        return [with_times(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: with_times(v, keyed=k in KEYED_MAPS and not keyed) for k, v in obj.items()}
    if keyed:
        return out
    for k, v in obj.items():
        if isinstance(k, str) and k.endswith("_ms") and k[:-3] + "_at" not in obj:
            at = _at(v)
            if at is not _SKIP:
                out[k[:-3] + "_at"] = at
    return out


def current_pause(state: State) -> Pause | None:
    """The pause in force, or if none the latest one, or None when there never was one."""
    return state.active_pause or (state.pauses[-1] if state.pauses else None)


def _deadline(ob: Obligation) -> dict[str, Any]:
    status = "violated" if ob.violated else "met" if ob.met_index is not None else "open"
    return {"kind": ob.kind, "party": ob.party, "ref": ob.ref, "due_ms": ob.due_ms, "origin_index": ob.origin_index,
            "met_index": ob.met_index, "violated": ob.violated, "status": status}


def deadlines(state: State, *, open_only: bool = False) -> list[dict[str, Any]]:
    """Every obligation (or only those neither met nor violated) as ``{kind, party, ref, due_ms, due_at,
    origin_index, met_index, violated, status}``, soonest due first."""
    obs = [_deadline(o) for o in state.obligations if not open_only or (o.met_index is None and not o.violated)]
    return with_times(sorted(obs, key=lambda d: (d["due_ms"], d["party"], d["ref"])))


def _pause_obligation(ob: Obligation, pause: Pause) -> bool:
    return ob.kind in PAUSE_OBLIGATIONS and ob.ref.endswith(f"pause {pause.pause_id}")


def pause_view(state: State) -> dict[str, Any] | None:
    """The active pause (or, if none, the latest): why and when it started, the policy governing it, whom it
    binds and to what, its deadlines, acknowledgements, resume proposals, and when it ended. None: no pause yet."""
    pause = current_pause(state)
    if pause is None:
        return None
    trigger = next((c for c in state.crossings if c.index == pause.trigger_index and c.line == pause.trigger_line),
                   None)
    pol = state.policies.get(pause.policy) if pause.policy else None
    parties = [{"party": p, "joined_index": pause.joined.get(p, pause.started_index),
                "scopes": list(pause.scopes.get(p, [])), "acknowledged_index": pause.acknowledged.get(p)}
               for p in pause.bound]
    proposals = [{"proposal_id": pid, "by": prop.get("by"), "index": prop.get("index"),
                  "approvals": dict(prop.get("approvals", {}))} for pid, prop in pause.proposals.items()]
    view = {
        "pause_id": pause.pause_id,
        "status": "active" if pause.ended_ms is None else "ended",
        "trigger_line": pause.trigger_line,
        "trigger_index": pause.trigger_index,
        "trigger_subject": trigger.subject if trigger is not None else None,
        "trigger_party": trigger.party if trigger is not None else None,
        "triggers": list(pause.triggers) or [pause.trigger_index],
        "started_index": pause.started_index,
        "started_ms": pause.started_ms,
        "policy": pause.policy or None,
        "policy_id": pol["policy_id"] if pol is not None else None,
        "policy_version": pol["version"] if pol is not None else None,
        "parties": parties,
        "acknowledgements": dict(pause.acknowledged),
        "deadlines": [_deadline(o) for o in state.obligations if _pause_obligation(o, pause)],
        "proposals": proposals,
        "ended_index": pause.ended_index,
        "ended_ms": pause.ended_ms,
    }
    return with_times(view)


def release_status(state: State, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """For every review (or those named by ``keys``): the model, its weights, window end, findings and decision,
    and whether its party may release those weights now (at the last logged time), with every reason it may
    not."""
    out = []
    chosen = sorted(state.reviews) if keys is None else sorted(k for k in keys if k in state.reviews)
    for key in chosen:
        r = state.reviews[key]
        obstacles = release_obstacles(state, r.party, r.model_name, r.model_digest, state.last_time_ms)
        out.append({
            "review": key, "submission_id": r.submission_id, "party": r.party, "model": r.model_name,
            "weights": r.model_digest, "submitted_index": r.submitted_index, "window_end_ms": r.window_end_ms,
            "findings": len(r.findings), "decision": r.decision, "decision_index": r.decision_index,
            "may_release": not obstacles, "obstacles": [{"kind": k, "reason": why} for k, why in obstacles],
        })
    return with_times(out)


def state_json(state: State) -> dict[str, Any]:
    """``state.to_dict()`` with an ``*_at`` ISO 8601 sibling beside every ``*_ms`` time, plus ``pause_view`` and
    ``release_status`` (as of the last logged time)."""
    # with_times copies every list and dict it is given, so the state's own may be handed to it
    return with_times({**state.to_dict(copy=False), "pause_view": pause_view(state),
                       "release_status": release_status(state)})


__all__ = ["KEYED_MAPS", "PAUSE_OBLIGATIONS", "current_pause", "deadlines", "iso", "pause_view", "release_status",
           "state_json", "with_times"]
