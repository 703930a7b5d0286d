"""Budget cycles (policy-spec.md, `cycle` / `cycle_start`): which cycle an instant falls in.

`cycle_at(cycle, cycle_start, instant)` → `Cycle(start, end)`, both UTC, start ≤ instant < end
(an instant exactly at a start belongs to the new cycle). Cycles run both ways from
`cycle_start`: it is any instant at which a cycle started, so earlier instants have cycles too.
- monthly: each month on `cycle_start`'s day of the month (UTC), at its UTC time of day; a day the
  month lacks (29 to 31) means that month's last day, and the next month returns to the day itself
  (cycle_start Jan 31 → Feb 29 in 2000, Mar 31, Apr 30, ...).
- daily: every day at `cycle_start`'s UTC time of day.
UTC has no daylight saving, so every daily cycle is 24 hours long. Pure; standard library only.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MONTHLY = "monthly"
DAILY = "daily"
CYCLES = (MONTHLY, DAILY)
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Cycle:
    """One budget cycle: [start, end), in UTC."""

    start: datetime
    end: datetime

    @property
    def id(self) -> str:
        """A stable name for the cycle, the same on every member: its start in ISO-8601 UTC."""
        return self.start.isoformat().replace("+00:00", "Z")


def _utc(moment: datetime, what: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (with a time zone), got {moment}")
    return moment.astimezone(UTC)


def _month_start(anchor: datetime, year: int, month: int) -> datetime:
    """The monthly cycle start in (year, month): the anchor's day, or the month's last day."""
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def cycle_at(cycle: str, cycle_start: datetime, instant: datetime) -> Cycle:
    """The cycle (`"monthly"` or `"daily"`) that holds `instant`; both datetimes must be aware."""
    anchor = _utc(cycle_start, "cycle_start")
    now = _utc(instant, "instant")
    if cycle == DAILY:
        start = anchor + (now - anchor) // _DAY * _DAY
        return Cycle(start, start + _DAY)
    if cycle != MONTHLY:
        raise ValueError(f"cycle must be one of {', '.join(CYCLES)}, got {cycle!r}")
    year, month = now.year, now.month
    start = _month_start(anchor, year, month)
    if start > now:
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
        start = _month_start(anchor, year, month)
    return Cycle(start, _month_start(anchor, *_next_month(year, month)))
