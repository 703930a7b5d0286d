"""When to retry a FullStory request and how long to wait: capped exponential backoff with full
jitter, with the server's `Retry-After` (seconds or an HTTP-date) as a floor."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({407, 408, 429})


def is_retryable_status(status: int) -> bool:
    """429, 408 and every 5xx are worth another try; other 4xx never succeed on retry. 407
    comes from a proxy whose credentials stopped working: the records wait for the fix rather
    than go to the dead-letter topic for what FullStory never saw."""
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header, or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt)), floored by
    Retry-After so the server's wish is always honoured."""

    base: float = 0.2
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 30)))
        jittered = random.uniform(0.0, ceiling)
        return max(jittered, retry_after or 0.0)
