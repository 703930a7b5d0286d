"""Retry policy: which statuses, how long, and Retry-After as a floor."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumer.sink.retry import Backoff, is_retryable_status, parse_retry_after


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (429, True),
        (408, True),
        (500, True),
        (503, True),
        (599, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (407, True),
        (409, False),
        (422, False),
    ],
)
def test_retryable_statuses(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("-3", now) == 0.0


def test_backoff_is_capped_jittered_and_floored() -> None:
    backoff = Backoff(base=0.1, cap=2.0)
    delays = [backoff.delay(attempt) for attempt in range(20) for _ in range(20)]
    assert all(0.0 <= d <= 2.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not fixed steps
    assert all(backoff.delay(30, retry_after=5.0) >= 5.0 for _ in range(50))
