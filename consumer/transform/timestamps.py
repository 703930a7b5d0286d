"""Timestamps: the event time FullStory gets, and the date-time test that declares `date` types.

Two deliberately different parsers:
- `event_timestamp` reads Segment's own time fields and is lenient (what Segment's libraries and
  servers write, plus common ISO-8601 variants), because losing the event time is worse than
  accepting an odd but unambiguous form. Accepted: `YYYY-MM-DD`, optionally followed by `T`, `t`
  or a space and `HH:MM[:SS[(.|,)fraction]]`, optionally followed by `Z`/`z`, `±HH`, `±HHMM` or
  `±HH:MM`. No zone means UTC; a date alone means midnight UTC. An integer (not a bool) is epoch
  milliseconds. Floats and numeric strings are not timestamps.
- `is_datetime` decides whether a property string is declared `date`. It is strict: the spec's
  `YYYY-MM-DDTHH:MM[:SS[.fraction]]` with `Z` or a `±HH:MM` offset (RFC 3339's forms, which
  FullStory's parser certainly reads), and the values must name a real instant.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LENIENT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"(?:[Zz]|([+-])(\d{2})(?::?(\d{2}))?)?)?"
).fullmatch
_STRICT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:Z|[+-](\d{2}):(\d{2}))"
).fullmatch
# Segment's own form, YYYY-MM-DDTHH:MM:SS.mmmZ (24 characters), with every field in range.
_CANONICAL = re.compile(
    r"(?!0000)[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
).fullmatch
# The shortest strict form is 2024-01-02T03:04Z (17 characters).
MIN_DATETIME_LEN = 17
TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")


_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _valid(year: int, month: int, day: int, hour: int, minute: int, second: int) -> bool:
    """A real calendar instant (cheaper than building a datetime in the hot path)."""
    if not (year >= 1 and 1 <= month <= 12 and hour <= 23 and minute <= 59 and second <= 59):
        return False
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 1 <= day <= 29
    return 1 <= day <= _DAYS_IN_MONTH[month]


def _is_canonical(text: str) -> bool:
    """Segment's own form naming a real instant: its own normalised form and a valid date-time,
    so both parsers answer it without their full paths (the hot path)."""
    return (
        len(text) == 24
        and _CANONICAL(text) is not None
        and (text[8:10] < "29" or _valid(int(text[:4]), int(text[5:7]), int(text[8:10]), 0, 0, 0))
    )


def _format(moment: datetime, millis: str) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{millis}Z"
    )


def _parse_text(text: str) -> str | None:
    match = _LENIENT(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    hour, minute, second = hour or "00", minute or "00", second or "00"
    if not _valid(int(year), int(month), int(day), int(hour), int(minute), int(second)):
        return None
    millis = (fraction or "")[:3].ljust(3, "0")
    offset_minutes = 0
    if sign is not None:
        off_hours, off_mins = int(off_h), int(off_m or 0)
        if off_hours > 23 or off_mins > 59:
            return None
        offset_minutes = off_hours * 60 + off_mins
    if not offset_minutes:
        return f"{year}-{month}-{day}T{hour}:{minute}:{second}.{millis}Z"
    local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    shift = timedelta(minutes=offset_minutes)
    try:
        moment = local - shift if sign == "+" else local + shift
    except OverflowError:
        return None
    return _format(moment, millis)


def parse_timestamp(value: object) -> str | None:
    """One Segment time value as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, cut to ms), or None."""
    if type(value) is str:
        return value if _is_canonical(value) else _parse_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            moment = _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            return None
        return _format(moment, f"{moment.microsecond // 1000:03d}")
    return None


def event_timestamp(event: dict[str, object]) -> str | None:
    """The first parseable of `timestamp`, `originalTimestamp`, `receivedAt`."""
    for field in TIME_FIELDS:
        value = event.get(field)
        if value is not None:
            parsed = parse_timestamp(value)
            if parsed is not None:
                return parsed
    return None


def is_datetime(text: str) -> bool:
    """True when a property string is an RFC 3339 date-time naming a real instant."""
    if len(text) < MIN_DATETIME_LEN or text[10] != "T" or text[4] != "-":
        return False
    if _is_canonical(text):
        return True
    match = _STRICT(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    if not _valid(int(year), int(month), int(day), int(hour), int(minute), int(second or 0)):
        return False
    return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)
