"""`budget status` from a book: used and share, the cycle, and the projected exhaustion."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from consumer.budget_status import statuses
from consumer.config import Config, load_config
from consumer.policy.budget import Book, Claim

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
CYCLE = "2026-12-01T00:00:00Z"
HOUR_MS = 3600 * 1000


def config(tmp_path: Path, limit: int) -> Config:
    path = tmp_path / "s.json"
    path.write_bytes(
        orjson.dumps({"budget": {"events_per_cycle": limit, "cycle_start": "2026-01-01T00:00:00Z"}})
    )
    return load_config(
        {
            "bootstrap_servers": "b",
            "group_id": "g",
            "topics": ["t"],
            "api_key": "k",
            "settings": str(path),
        },
        env={},
    )


def book(*claims: tuple[int, int, int]) -> Book:
    """(log time in ms, first offset, events) claims of one event per record."""
    out = Book()
    for seq, (at, first, n) in enumerate(claims):
        records = tuple((first + i, 1) for i in range(n))
        out.apply(Claim("default", CYCLE, 1000, "t", 0, records, "m", seq), at)
    return out


def test_used_share_and_a_projection_at_the_last_hours_rate(tmp_path: Path) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    cfg = config(tmp_path, 1000)
    (status,) = statuses(
        cfg, book((now_ms - 5 * HOUR_MS, 0, 400), (now_ms - HOUR_MS // 2, 400, 100)), NOW
    )
    assert (status.used, status.limit, status.share) == (500, 1000, 0.5)
    assert (status.cycle_start, status.cycle_end) == (
        "2026-12-01T00:00:00Z",
        "2027-01-01T00:00:00Z",
    )
    assert status.events_last_hour == 100
    assert status.runs_out == "2026-12-10T17:00:00Z"  # 500 left at 100 an hour
    assert not status.exhausted
    assert "500 of 1,000 server events (50.0%)" in status.line()


def test_a_quiet_or_exhausted_budget_projects_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path, 1000)
    (quiet,) = statuses(cfg, book((0, 0, 10)), NOW)
    assert quiet.runs_out is None and "lasts the cycle" in quiet.line()
    (empty,) = statuses(cfg, Book(), NOW)
    assert (empty.used, empty.share) == (0, 0.0)
