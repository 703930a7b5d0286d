"""Budget cycles: monthly on the start's day (the month's last day when it has fewer), daily at the
start's time, in UTC; an instant exactly at a start belongs to the new cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from consumer.policy import Cycle, cycle_at


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def starts(cycle: str, cycle_start: datetime, first: datetime, count: int) -> list[datetime]:
    """`count` consecutive cycle starts from the cycle holding `first`, walking via the ends."""
    found = []
    moment = first
    for _ in range(count):
        current = cycle_at(cycle, cycle_start, moment)
        assert current.start <= moment < current.end
        found.append(current.start)
        moment = current.end
    return found


def test_the_31st_means_the_last_day_of_shorter_months_in_a_leap_year() -> None:
    assert starts("monthly", utc(2000, 1, 31, 10), utc(2000, 1, 31, 10), 6) == [
        utc(2000, 1, 31, 10),
        utc(2000, 2, 29, 10),
        utc(2000, 3, 31, 10),
        utc(2000, 4, 30, 10),
        utc(2000, 5, 31, 10),
        utc(2000, 6, 30, 10),
    ]


@pytest.mark.parametrize(
    ("day", "february"),
    [(28, 28), (29, 28), (30, 28), (31, 28)],
)
def test_days_28_to_31_in_a_common_year(day: int, february: int) -> None:
    got = starts("monthly", utc(2021, 1, day, 0, 0), utc(2023, 1, day), 3)
    assert got == [utc(2023, 1, day), utc(2023, 2, february), utc(2023, 3, day)]


@pytest.mark.parametrize(("day", "february"), [(28, 28), (29, 29), (30, 29), (31, 29)])
def test_days_28_to_31_in_leap_years(day: int, february: int) -> None:
    assert cycle_at("monthly", utc(2023, 5, day), utc(2024, 2, 29, 23, 59)).start == utc(
        2024, 2, february
    )


def test_century_years_follow_the_gregorian_rule() -> None:
    assert cycle_at("monthly", utc(2000, 1, 31), utc(2100, 3, 1)).start == utc(2100, 2, 28)
    assert cycle_at("monthly", utc(2000, 1, 31), utc(2000, 3, 1)).start == utc(2000, 2, 29)


def test_exact_boundaries() -> None:
    start = utc(2024, 3, 15, 9, 30)
    at = cycle_at("monthly", start, utc(2024, 4, 15, 9, 30))
    assert at == Cycle(utc(2024, 4, 15, 9, 30), utc(2024, 5, 15, 9, 30))
    just_before = cycle_at("monthly", start, utc(2024, 4, 15, 9, 30) - timedelta(microseconds=1))
    assert just_before == Cycle(utc(2024, 3, 15, 9, 30), utc(2024, 4, 15, 9, 30))
    daily = cycle_at("daily", start, utc(2024, 4, 2, 9, 30))
    assert daily == Cycle(utc(2024, 4, 2, 9, 30), utc(2024, 4, 3, 9, 30))
    before = cycle_at("daily", start, utc(2024, 4, 2, 9, 29, 59, 999999))
    assert before == Cycle(utc(2024, 4, 1, 9, 30), utc(2024, 4, 2, 9, 30))


def test_time_of_day_decides_within_the_start_day() -> None:
    start = utc(2024, 1, 10, 12)
    assert cycle_at("monthly", start, utc(2024, 6, 10, 11, 59)).start == utc(2024, 5, 10, 12)
    assert cycle_at("monthly", start, utc(2024, 6, 10, 12)).start == utc(2024, 6, 10, 12)


def test_year_boundaries() -> None:
    start = utc(2000, 1, 15)
    assert cycle_at("monthly", start, utc(2024, 1, 3)) == Cycle(utc(2023, 12, 15), utc(2024, 1, 15))
    assert cycle_at("monthly", start, utc(2023, 12, 20)) == Cycle(
        utc(2023, 12, 15), utc(2024, 1, 15)
    )


def test_instants_before_cycle_start_have_cycles_too() -> None:
    assert cycle_at("monthly", utc(2024, 3, 31, 10), utc(2024, 2, 10)) == Cycle(
        utc(2024, 1, 31, 10), utc(2024, 2, 29, 10)
    )
    assert cycle_at("daily", utc(2024, 3, 31, 10), utc(2024, 3, 1, 9)) == Cycle(
        utc(2024, 2, 29, 10), utc(2024, 3, 1, 10)
    )


def test_daily_cycles_are_24_hours_in_utc_across_dst_changes() -> None:
    start = utc(2024, 1, 1, 2, 30)
    # Europe's 2024 spring-forward was 31 March, fall-back 27 October: UTC does not care.
    for day in (datetime(2024, 3, 31, tzinfo=UTC), datetime(2024, 10, 27, tzinfo=UTC)):
        current = cycle_at("daily", start, day + timedelta(hours=12))
        assert current == Cycle(day + timedelta(hours=2, minutes=30), current.end)
        assert current.end - current.start == timedelta(days=1)


def test_offsets_are_converted_to_utc_first() -> None:
    # 00:30 on the 1st at +01:00 is 23:30 UTC on the last day of the previous month
    start = datetime(2024, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert cycle_at("monthly", start, utc(2024, 5, 1)) == Cycle(
        utc(2024, 4, 29, 23, 30), utc(2024, 5, 29, 23, 30)
    )
    local = timezone(timedelta(hours=2))
    after = datetime(2024, 5, 30, 1, 30, tzinfo=local)  # 23:30 UTC: the start exactly
    assert cycle_at("monthly", start, after).start == utc(2024, 5, 29, 23, 30)
    before = datetime(2024, 5, 30, 1, 29, tzinfo=local)
    assert cycle_at("monthly", start, before).start == utc(2024, 4, 29, 23, 30)
    assert cycle_at("daily", start, utc(2024, 5, 1)).start.tzinfo is UTC


def test_cycle_id_is_the_start_in_iso_utc() -> None:
    current = cycle_at("monthly", utc(2000, 1, 31, 10), utc(2000, 2, 29, 10, 0, 1))
    assert current.id == "2000-02-29T10:00:00Z"
    assert cycle_at("monthly", utc(2000, 1, 31, 10), utc(2000, 3, 1)).id == current.id


def test_naive_datetimes_and_unknown_cycles_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cycle_at("daily", utc(2000, 1, 1), datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        cycle_at("daily", datetime(2000, 1, 1), utc(2024, 1, 1))
    with pytest.raises(ValueError, match="monthly, daily"):
        cycle_at("weekly", utc(2000, 1, 1), utc(2024, 1, 1))
