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
# The shortest strict form is 2024-01-02T03:04Z (17 characters).
_MIN_STRICT_LEN = 17
TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt")


def _format(moment: datetime) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
        f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z"
    )


def _parse_text(text: str) -> str | None:
    match = _LENIENT(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            int((fraction or "")[:3].ljust(3, "0")) * 1000,
        )
        if sign is not None:
            off_hours, off_minutes = int(off_h), int(off_m or 0)
            if off_hours > 23 or off_minutes > 59:
                return None
            offset = timedelta(hours=off_hours, minutes=off_minutes)
            moment = moment - offset if sign == "+" else moment + offset
    except (ValueError, OverflowError):
        return None
    return _format(moment)


def parse_timestamp(value: object) -> str | None:
    """One Segment time value as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, cut to ms), or None."""
    if type(value) is str:
        return _parse_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return _format(_EPOCH + timedelta(milliseconds=value))
        except OverflowError:
            return None
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
    if len(text) < _MIN_STRICT_LEN or text[10] != "T" or text[4] != "-":
        return False
    match = _STRICT(text)
    if match is None:
        return False
    year, month, day, hour, minute, second, off_h, off_m = match.groups()
    try:
        datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        return False
    return off_h is None or (int(off_h) <= 23 and int(off_m) <= 59)
