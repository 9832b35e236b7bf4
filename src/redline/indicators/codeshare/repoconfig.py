"""The repository's own declaration (``.redline/code-share.yaml``) and time parsing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from redline.errors import (
    MalformedEvidence,
)


def _parse_time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise MalformedEvidence(f"{what}: {value!r} is not an ISO 8601 date or date-time") from None
    elif hasattr(value, "year") and hasattr(value, "month"):  # a YAML date
        dt = datetime(value.year, value.month, value.day)
    else:
        raise MalformedEvidence(f"{what}: expected a date or date-time, got {value!r}")
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def parse_time(value: str | datetime, what: str = "time") -> datetime:
    """An ISO 8601 date or date-time as an aware datetime (UTC when no offset is given)."""
    return _parse_time(value, what)


#: Largest ``.redline/code-share.yaml`` read (bytes): it holds two short fields.
MAX_CONFIG_BYTES = 64 * 1024


@dataclass(frozen=True)
class RepoConfig:
    """``.redline/code-share.yaml`` at the branch tip: the repository's declarations about its evidence."""

    notes_complete_since: datetime | None = None

    @classmethod
    def parse(cls, data: bytes, where: str) -> RepoConfig:
        if len(data) > MAX_CONFIG_BYTES:
            raise MalformedEvidence(f"{where}: {len(data)} bytes, over the limit of {MAX_CONFIG_BYTES}")
        try:
            doc = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise MalformedEvidence(f"{where}: not valid YAML: {exc}") from None
        except (ValueError, OverflowError) as exc:  # a scalar YAML recognises but cannot build (2027-13-45)
            raise MalformedEvidence(f"{where}: a value YAML cannot read: {exc}") from None
        except RecursionError:
            raise MalformedEvidence(f"{where}: nested too deeply") from None
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise MalformedEvidence(f"{where}: must be a YAML mapping")
        odd = [k for k in doc if not isinstance(k, str)]
        if odd:
            raise MalformedEvidence(f"{where}: field names must be strings, got {str(odd[0])[:60]!r}")
        unknown = set(doc) - {"version", "notes-complete-since"}
        if unknown:
            raise MalformedEvidence(f"{where}: unknown field {min(unknown)!r} (known: version, "
                                    "notes-complete-since)")
        if doc.get("version", 1) != 1:
            raise MalformedEvidence(f"{where}: version must be 1")
        since = doc.get("notes-complete-since")
        return cls(_parse_time(since, f"{where}: notes-complete-since") if since is not None else None)
