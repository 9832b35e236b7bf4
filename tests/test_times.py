"""redline.times: every time conversion, one way (round trips, the bounds of a datetime, naive times refused)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redline.errors import MalformedInput
from redline.times import (
    DAY_MS,
    EPOCH,
    HOUR_MS,
    MAX_MS,
    MIN_MS,
    MINUTE_MS,
    SECOND_MS,
    format_utc,
    from_ms,
    from_seconds,
    iso,
    iso_millis,
    iso_seconds,
    ms_of,
    parse_iso,
    parse_iso_lenient,
    require_aware,
    to_utc,
)

T = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
T_MS = 1_800_000_000_000


def test_constants() -> None:
    assert (SECOND_MS, MINUTE_MS, HOUR_MS, DAY_MS) == (1_000, 60_000, 3_600_000, 86_400_000)
    assert EPOCH == datetime(1970, 1, 1, tzinfo=UTC) and ms_of(EPOCH) == 0
    assert from_ms(MIN_MS) == datetime(1, 1, 1, tzinfo=UTC)
    assert from_ms(MAX_MS) == datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)


def test_known_answers() -> None:
    assert ms_of(T) == T_MS and from_ms(T_MS) == T
    assert iso(T_MS) == "2027-01-15T08:00:00Z"
    assert iso(T_MS + 250) == "2027-01-15T08:00:00.250Z"
    assert iso(T_MS + 7) == "2027-01-15T08:00:00.007Z"
    assert iso_millis(T_MS) == "2027-01-15T08:00:00.000Z"
    assert iso_millis(T_MS + 7) == "2027-01-15T08:00:00.007Z"
    assert iso_seconds(T_MS // 1000) == "2027-01-15T08:00:00Z"
    assert format_utc(T) == "2027-01-15T08:00:00Z"
    assert format_utc(T + timedelta(microseconds=250_000)) == "2027-01-15T08:00:00.250000Z"
    assert iso(0) == "1970-01-01T00:00:00Z"


# --- round trips ------------------------------------------------------------------------------------------------

whole_seconds_ms = st.integers(MIN_MS // 1000, MAX_MS // 1000).map(lambda s: s * 1000)


@settings(max_examples=300, deadline=None)
@given(ms=st.integers(MIN_MS, MAX_MS))
def test_from_ms_is_exact_and_iso_agrees(ms: int) -> None:
    dt = from_ms(ms)
    assert dt.tzinfo is UTC
    assert (dt - EPOCH) // timedelta(milliseconds=1) == ms
    assert parse_iso(iso_millis(ms)) == dt  # the always-milliseconds text reads back exactly
    if dt.year >= 1000:  # iso writes the year with strftime: fewer than four digits before 1000
        assert parse_iso(iso(ms)) == dt


@settings(max_examples=300, deadline=None)
@given(ms=whole_seconds_ms)
def test_whole_seconds_round_trip_through_ms_of(ms: int) -> None:
    assert ms_of(from_ms(ms)) == ms
    assert ms_of(parse_iso(format_utc(from_ms(ms)))) == ms


@settings(max_examples=300, deadline=None)
@given(dt=st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999),
                       timezones=st.just(UTC)))
def test_format_utc_round_trips_to_the_microsecond(dt: datetime) -> None:
    assert parse_iso(format_utc(dt)) == dt
    assert parse_iso_lenient(format_utc(dt)) == dt


@settings(max_examples=300, deadline=None)
@given(dt=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_ms_of_is_at_most_a_millisecond_below_the_exact_value(dt: datetime) -> None:
    exact = (dt - EPOCH) // timedelta(milliseconds=1)
    assert ms_of(dt) in (exact, exact - 1)


def test_ms_of_keeps_the_engines_float_arithmetic() -> None:
    """``ms_of`` is ``int(dt.timestamp() * 1000)`` on purpose (replay depends on it): some millisecond-precise
    times come out one millisecond early, and a fractional time before 1970 is truncated toward the epoch."""
    early = from_ms(67_608_161_945)  # 1972-02-22T12:02:41.945Z: 67608161.945 * 1000 falls just short
    assert early == datetime(1972, 2, 22, 12, 2, 41, 945_000, tzinfo=UTC)
    assert ms_of(early) == int(early.timestamp() * 1000) == 67_608_161_944
    assert ms_of(from_ms(-8_190)) == -8_189
    assert ms_of(from_ms(-1_500)) == -1_500


def test_other_time_zones_are_converted() -> None:
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2027, 1, 15, 10, 0, tzinfo=plus2)
    assert ms_of(local) == T_MS
    assert to_utc(local) == T and to_utc(local).tzinfo is UTC
    assert format_utc(local) == "2027-01-15T08:00:00Z"
    assert parse_iso("2027-01-15T10:00:00+02:00") == T


# --- the bounds of a datetime: before 1970, far future ----------------------------------------------------------


def test_before_1970() -> None:
    assert iso(-1) == "1969-12-31T23:59:59.999Z"
    assert iso(-DAY_MS) == "1969-12-31T00:00:00Z"
    assert from_ms(-1) == datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert ms_of(datetime(1969, 12, 31, tzinfo=UTC)) == -DAY_MS
    assert iso_seconds(-1) == "1969-12-31T23:59:59Z"


def test_the_years_1_and_9999() -> None:
    assert iso(MIN_MS) == "1-01-01T00:00:00Z"  # strftime: a year before 1000 is not padded (kept: replay texts)
    assert iso(MAX_MS) == "9999-12-31T23:59:59.999Z"
    assert iso_millis(MIN_MS) == "0001-01-01T00:00:00.000Z"
    assert iso(MAX_MS + 1) == "after 9999-12-31T23:59:59Z"
    assert iso(MIN_MS - 1) == "before 0001-01-01T00:00:00Z"
    assert iso(2**63) == "after 9999-12-31T23:59:59Z"
    assert iso(-(2**63)) == "before 0001-01-01T00:00:00Z"
    for ms in (MAX_MS + 1, MIN_MS - 1, 2**64):
        with pytest.raises(MalformedInput, match="outside the years 1..9999"):
            from_ms(ms)
        with pytest.raises(MalformedInput):
            iso_millis(ms)
    assert ms_of(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)) == MAX_MS - 999
    assert ms_of(datetime(1, 1, 1, tzinfo=UTC)) == MIN_MS
    with pytest.raises((OverflowError, OSError, ValueError)):
        from_seconds(1e20)


def test_leap_days() -> None:
    assert iso(ms_of(datetime(2028, 2, 29, 12, tzinfo=UTC))) == "2028-02-29T12:00:00Z"
    assert parse_iso("2000-02-29T00:00:00Z") == datetime(2000, 2, 29, tzinfo=UTC)  # divisible by 400: a leap year
    assert from_ms(ms_of(datetime(2024, 2, 29, tzinfo=UTC)) + DAY_MS) == datetime(2024, 3, 1, tzinfo=UTC)
    for text in ("2027-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2100-02-29T00:00:00Z"):  # not leap years
        with pytest.raises(MalformedInput, match="not a valid time"):
            parse_iso(text)
        with pytest.raises(MalformedInput):
            parse_iso_lenient(text)


# --- naive datetimes are refused ----------------------------------------------------------------------------------


@pytest.mark.parametrize("convert", [ms_of, format_utc, to_utc, require_aware])
def test_naive_datetimes_are_refused(convert) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MalformedInput, match="no time zone"):
        convert(datetime(2027, 1, 15, 8, 0))


def test_a_tzinfo_without_an_offset_is_naive() -> None:
    from datetime import tzinfo

    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

    with pytest.raises(MalformedInput, match="no time zone"):
        ms_of(datetime(2027, 1, 15, tzinfo=NoOffset()))


# --- parsing: Z and +00:00, strict and lenient ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["2027-01-15T08:00:00Z", "2027-01-15T08:00:00+00:00", "2027-01-15T08:00:00-00:00",
                                  "2027-01-15T09:30:00+01:30", "2027-01-15T08:00:00.000Z",
                                  "2027-01-15T08:00:00.000000+00:00"])
def test_z_and_offsets_read_the_same(text: str) -> None:
    assert parse_iso(text) == T
    assert parse_iso(text).tzinfo is UTC
    assert parse_iso_lenient(text) == T


def test_written_with_z_never_plus_zero() -> None:
    for text in (iso(T_MS), iso_millis(T_MS), iso_seconds(T_MS // 1000), format_utc(T),
                 format_utc(datetime(2027, 1, 15, 8, tzinfo=timezone(timedelta(0))))):
        assert text.endswith("Z") and "+00:00" not in text


@pytest.mark.parametrize("text", [
    "2027-01-15T08:00:00",  # no offset
    "2027-01-15",  # a date
    "2027-01-15 08:00:00Z",  # a space for the T
    "2027-01-15t08:00:00z",  # lower case
    "2027-01-15T08:00Z",  # no seconds
    "2027-01-15T08:00:00.1234567Z",  # more than microseconds
    "2027-01-15T08:00:60Z",  # a leap second
    "2027-13-01T00:00:00Z",
    "2027-01-15T24:00:00Z",
    "2027-01-15T08:00:00+0000",  # basic-format offset
    "2027-01-15T08:00:00+24:00",
    "20270115T080000Z",
    "+2027-01-15T08:00:00Z",
    "2027-01-15T08:00:00ZZ",
    "２０２７-01-15T08:00:00Z",  # full-width digits
    "",
    "2027-01-15T08:00:00Z\n",
])
def test_strict_parse_refuses(text: str) -> None:
    with pytest.raises(MalformedInput, match="not an RFC 3339 time|not a valid time"):
        parse_iso(text, what="field 'x'")


def test_strict_parse_names_what() -> None:
    with pytest.raises(MalformedInput, match="^field 'started_at' 'soon' is not an RFC 3339 time"):
        parse_iso("soon", what="field 'started_at'")


def test_lenient_parse_takes_what_python_reads_naive_as_utc() -> None:
    assert parse_iso_lenient("2027-01-15") == datetime(2027, 1, 15, tzinfo=UTC)
    assert parse_iso_lenient("2027-01-15T08:00:00") == T
    assert parse_iso_lenient("2027-01-15 08:00") == T
    assert parse_iso_lenient("2027-01-15T10:00:00+02:00") == T
    with pytest.raises(MalformedInput, match="is not an ISO 8601 time"):
        parse_iso_lenient("next tuesday")
    with pytest.raises(MalformedInput):  # in range as written, before the year 1 in UTC
        parse_iso_lenient("0001-01-01T00:00:00+01:00")
