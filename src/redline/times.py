"""Time conversions, in one place (pure: no clock is read here).

redline keeps time in two forms. A *logged time* is an integer count of milliseconds since the Unix epoch, in
UTC: the log binds one into every leaf and the engine judges every deadline by them. A *time text* is ISO 8601
/ RFC 3339 in UTC, ending in ``Z``. Every conversion between the two, and from the ``datetime`` objects that
statements carry, goes through this module, so that each is made one way everywhere (the state digest, the
JSON views and the messages all depend on the exact bytes).

- ``ms_of(dt)``: a timezone-aware ``datetime`` as a logged time; ``from_ms(ms)``: the reverse, exact.
- ``iso(ms)``: the time text of a logged time, with ``.mmm`` only when the milliseconds are not zero (and a
  stated bound, not an exception, for a time outside the years 1..9999); ``iso_millis(ms)`` always with
  ``.mmm``; ``iso_seconds(s)`` for whole seconds.
- ``format_utc(dt)``: the time text of a ``datetime``, microseconds only when not zero (the form statements are
  written in).
- ``parse_iso(text)``: strict RFC 3339 (a ``T``, an offset or ``Z``, at most six fraction digits);
  ``parse_iso_lenient(text)``: what Python's ``datetime.fromisoformat`` reads, a time without an offset taken
  as UTC (for times people type and third-party files carry).

A naive ``datetime`` (no time zone) is refused wherever one is given: Python would read it as the machine's
local time, so two machines would disagree.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from redline.errors import MalformedInput

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

#: The Unix epoch, 1970-01-01T00:00:00Z.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The earliest and latest logged times a ``datetime`` can hold: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z.
MIN_MS = -62_135_596_800_000
MAX_MS = 253_402_300_799_999


def require_aware(dt: datetime, what: str = "time") -> datetime:
    """``dt`` itself, or ``MalformedInput`` when it has no time zone (``utcoffset()`` is None)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise MalformedInput(f"{what} {dt.isoformat()} has no time zone (a naive time would be read as local time)")
    return dt


def to_utc(dt: datetime) -> datetime:
    """A timezone-aware ``datetime`` converted to UTC (naive ones are refused)."""
    return require_aware(dt).astimezone(UTC)


# --- logged times (ms since the epoch) ------------------------------------------------------------


def ms_of(dt: datetime) -> int:
    """A timezone-aware time in milliseconds since the epoch, as the engine has always counted it.

    This is ``int(dt.timestamp() * 1000)``: the float timestamp, scaled and truncated toward zero. Whole-second
    times come out exact; for a time with a fractional second the float product can fall a hair short of the
    integer, so about 0.6% of millisecond-precise times come out one millisecond early (and a time before 1970
    with a fraction is truncated toward the epoch). Replay depends on it (statement times become logged times
    in the state), so it stays exactly this.
    """
    if dt.tzinfo is UTC:  # aware (every validated time is in UTC)
        return int(dt.timestamp() * 1000)
    return int(require_aware(dt).timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """A logged time as an aware UTC ``datetime``, exactly (``MalformedInput`` outside the years 1..9999)."""
    try:
        return EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise MalformedInput(f"time {ms} ms since the epoch is outside the years 1..9999") from None


def from_seconds(seconds: float) -> datetime:
    """Unix seconds (a float may carry a fraction) as an aware UTC ``datetime``, as ``datetime.fromtimestamp``
    reads them (rounded to the microsecond); raises ``OverflowError``, ``OSError`` or ``ValueError`` out of
    range, as it does."""
    return datetime.fromtimestamp(seconds, tz=UTC)


# --- time texts ------------------------------------------------------------------------------------


def iso(ms: int) -> str:
    """A logged time as ISO 8601 UTC: ``2027-01-15T08:00:00Z``, with ``.mmm`` when the milliseconds are not zero.

    Outside the years 1..9999 it says which bound the time is beyond (``after 9999-12-31T23:59:59Z``). The date
    is written by ``strftime``, so a year before 1000 has fewer than four digits.
    """
    try:
        t = EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return "after 9999-12-31T23:59:59Z" if ms > 0 else "before 0001-01-01T00:00:00Z"
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def iso_millis(ms: int) -> str:
    """A logged time as RFC 3339 UTC always with milliseconds: ``2027-01-15T08:00:00.000Z``."""
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(seconds: int) -> str:
    """Whole Unix seconds as ISO 8601 UTC: ``2027-01-15T08:00:00Z``."""
    return from_seconds(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_utc(dt: datetime) -> str:
    """A timezone-aware time as RFC 3339 in UTC with ``Z``, microseconds only when not zero:
    ``2027-01-15T08:00:00Z``, ``2027-01-15T08:00:00.250000Z``."""
    return to_utc(dt).replace(tzinfo=None).isoformat() + "Z"


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII)


def parse_iso(text: str, *, what: str = "time") -> datetime:
    """Strict RFC 3339: ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]`` then ``Z`` or ``±HH:MM``, as an aware UTC ``datetime``.

    Refused with ``MalformedInput`` naming ``what``: no offset, a space or lower-case ``t``/``z``, more than six
    fraction digits (a ``datetime`` holds microseconds), a leap second, a date or time that does not exist.
    """
    if not _RFC3339.fullmatch(text):
        raise MalformedInput(f"{what} {text[:64]!r} is not an RFC 3339 time (YYYY-MM-DDTHH:MM:SS[.ffffff] then Z "
                             "or +HH:MM)")
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise MalformedInput(f"{what} {text!r} is not a valid time: {exc}") from None


def parse_iso_lenient(text: str, *, what: str = "time") -> datetime:
    """What ``datetime.fromisoformat`` reads (a date alone, a space for ``T``, ...), a trailing ``Z`` as UTC and a
    time without an offset taken as UTC, as an aware UTC ``datetime``; ``MalformedInput`` naming ``what`` else."""
    try:
        t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise MalformedInput(f"{what} {text[:64]!r} is not an ISO 8601 time") from None


__all__ = ["DAY_MS", "EPOCH", "HOUR_MS", "MAX_MS", "MINUTE_MS", "MIN_MS", "SECOND_MS", "format_utc", "from_ms",
           "from_seconds", "iso", "iso_millis", "iso_seconds", "ms_of", "parse_iso", "parse_iso_lenient",
           "require_aware", "to_utc"]
