"""`budget estimate` without Kafka: the window, the projection arithmetic, the report built from
decoded events, its JSON shape and its text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from consumer.errors import UserError
from consumer.estimate import (
    Tally,
    Window,
    cycle_for,
    document,
    parse_window,
    per_cycle,
    render,
    report,
    runs_out_at,
)
from consumer.policy import EventsRules, cycle_at
from consumer.transform import DestinationSettings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def settings(**data: Any) -> DestinationSettings:
    parsed, unknown = DestinationSettings.from_mapping({"api_key": "k", **data})
    assert not unknown
    return parsed


# -- the window --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "start"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("24h", NOW - timedelta(hours=24)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2026-11-20T00:00:00Z", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20T01:00:00+01:00", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),  # no zone: UTC
    ],
)
def test_since_is_a_duration_back_from_now_or_an_instant(since: str, start: datetime) -> None:
    assert parse_window(since, None, NOW) == Window(start, NOW)


def test_until_ends_the_window_and_a_duration_still_counts_from_now() -> None:
    window = parse_window("7d", "2026-11-27T12:00:00Z", NOW)
    assert window == Window(NOW - timedelta(days=7), NOW - timedelta(days=1))
    assert window.seconds == 6 * 86400


@pytest.mark.parametrize(
    ("since", "until", "needle"),
    [
        ("last week", None, "--since must be an ISO-8601 instant"),
        ("7x", None, "or a duration (7d, 24h, 90m)"),
        ("-1d", None, "--since"),
        ("1d", "tomorrow", "--until must be an ISO-8601 instant"),
        ("2026-11-29T00:00:00Z", None, "--since 2026-11-29T00:00:00Z is in the future"),
        ("1d", "2026-11-28T13:00:00Z", "--until 2026-11-28T13:00:00Z is in the future"),
        ("2026-11-20T00:00:00Z", "2026-11-19T00:00:00Z", "must be before --until"),
        ("2026-11-20T00:00:00Z", "2026-11-20T00:00:00Z", "must be before --until"),
        ("0m", None, "must be before --until"),
    ],
)
def test_a_bad_window_is_a_user_error(since: str, until: str | None, needle: str) -> None:
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_window(since, until, NOW)


# -- the projection ----------------------------------------------------------------------------


def test_a_window_is_scaled_to_the_cycle_length() -> None:
    march = cycle_at("monthly", datetime(2000, 1, 1, tzinfo=UTC), NOW.replace(month=3))
    assert per_cycle(700, 7 * 86400, march) == 3100  # 31 days
    day = cycle_at("daily", datetime(2000, 1, 1, tzinfo=UTC), NOW)
    assert per_cycle(1000, 2 * 86400, day) == 500
    assert per_cycle(1, 3 * 86400, day) == 0  # rounded
    assert per_cycle(0, 60, day) == 0


def test_the_cycle_is_the_budgets_else_monthly_from_the_default_start() -> None:
    assert cycle_for(settings(), NOW) == cycle_at("monthly", datetime(2000, 1, 1, tzinfo=UTC), NOW)
    daily = settings(budget={"events_per_cycle": 5, "cycle": "daily"})
    assert cycle_for(daily, NOW).end - cycle_for(daily, NOW).start == timedelta(days=1)


def test_a_budget_runs_out_at_the_windows_rate_from_the_cycle_start() -> None:
    cycle = cycle_at("daily", datetime(2000, 1, 1, tzinfo=UTC), NOW)  # 2026-11-28, 24 h
    # 100 events an hour: 1,000 last 10 hours
    assert runs_out_at(1000, 100, 3600, cycle) == cycle.start + timedelta(hours=10)
    assert runs_out_at(2400, 100, 3600, cycle) is None  # exactly the cycle: it lasts
    assert runs_out_at(2399, 100, 3600, cycle) == cycle.end - timedelta(seconds=36)
    assert runs_out_at(0, 1, 3600, cycle) == cycle.start  # 0 sends users only
    assert runs_out_at(10, 0, 3600, cycle) is None


# -- the report --------------------------------------------------------------------------------

WINDOW = Window(NOW - timedelta(days=2), NOW)
POLICY = {
    "track_named_pages": True,
    "track_groups": True,
    "events": {
        "include": ["Order *", "Viewed *", "Debug *"],
        "exclude": ["Debug *"],
        "sample": {"Viewed * Page": 0.5},
    },
    "budget": {"events_per_cycle": 100, "cycle": "daily"},
}
RULES = EventsRules(["Order *", "Viewed *", "Debug *"], ["Debug *"], [("Viewed * Page", 0.5)])


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {"type": "identify", "userId": f"u{i}", "traits": {"plan": "pro", "a": {"b": i}}}
        for i in range(3)
    ]
    events += [
        {"type": "track", "userId": f"u{i}", "event": "Order Completed", "properties": {"n": i}}
        for i in range(50)
    ]
    events += [{"type": "track", "userId": "u1", "event": "Debug Ping"} for _ in range(7)]
    events += [{"type": "track", "anonymousId": "a1", "event": "Secret"} for _ in range(2)]
    events += [{"type": "page", "userId": f"v{i}", "name": "Pricing"} for i in range(40)]
    events += [
        {"type": "group", "userId": "u1", "groupId": "g1"},
        {"type": "track", "event": "No One"},  # missing_identity
        {"type": "alias", "userId": "u1"},  # alias_unsupported
        {"type": "delete", "userId": "u2"},
    ]
    return [{"messageId": f"m{i}", **e} for i, e in enumerate(events)]


def _tally(data: dict[str, Any]) -> Tally:
    tally = Tally(settings(**data))
    for event in _events():
        tally.add(event)
    tally.add_undecodable()
    return tally


def test_the_report_counts_each_rule_and_decides_each_name() -> None:
    views_sent = sum(RULES.decide("Viewed Pricing Page", f"v{i}") is None for i in range(40))
    assert 0 < views_sent < 40
    doc = report("web", ("events",), _tally(POLICY), WINDOW)
    sent = 50 + views_sent
    assert doc["records"] == len(_events()) + 1
    assert (doc["undecodable"], doc["invalid"]) == (1, {"missing_identity": 1})
    assert doc["skipped"] == {"alias_unsupported": 1}
    assert (doc["users"], doc["deletes"]) == (4, 1)  # 3 identifies and a group
    assert doc["server_events"] == {
        "mapped": 99,
        "after_include": 97,
        "after_exclude": 90,
        "after_sample": sent,
    }
    assert doc["removed"] == {
        "event_not_included": 2,
        "event_excluded": 7,
        "sampled_out": 40 - views_sent,
    }
    assert doc["sent"] == sent
    assert doc["per_cycle"] == {"server_events": round(sent / 2), "users": 2}
    assert doc["cycle"] == {
        "cycle": "daily",
        "start": "2026-11-28T00:00:00Z",
        "end": "2026-11-29T00:00:00Z",
    }
    assert doc["top_events"] == [
        {"name": "Order Completed", "count": 50, "share": 50 / 99, "rule": "sent", "sent": 50},
        {
            "name": "Viewed Pricing Page",
            "count": 40,
            "share": 40 / 99,
            "rule": "sampled",
            "sent": views_sent,
            "rate": 0.5,
        },
        {"name": "Debug Ping", "count": 7, "share": 7 / 99, "rule": "event_excluded", "sent": 0},
        {"name": "Secret", "count": 2, "share": 2 / 99, "rule": "event_not_included", "sent": 0},
    ]
    # users: plan, a.b (identify), groupId (group); sent events: n, and the views' name, pageName
    assert doc["properties"] == {"user": 3, "event": 3, "limit": 500}
    assert doc["budget"] == {  # about 36 a day against 100
        "events_per_cycle": 100,
        "share": round(sent / 2) / 100,
        "lasts": True,
        "runs_out_at": None,
    }


def test_the_transforms_own_outcome_matches_map_then_events() -> None:
    """The report applies `events` after the mapping; the transform does it inside."""
    from consumer.transform import Requests, transform

    tally = _tally(POLICY)
    sent = sum(n for (_, verdict), n in tally.verdicts.items() if verdict == "sent")
    policy = settings(**POLICY)
    requests = [transform(e, policy) for e in _events()]
    events = [
        r
        for outcome in requests
        if isinstance(outcome, Requests)
        for r in outcome.requests
        if r.path == "/v2/events"
    ]
    assert len(events) == sent


def test_without_events_or_budget_everything_mapped_is_sent_and_there_is_no_verdict() -> None:
    doc = report(
        "web", ("events",), _tally({"track_named_pages": True, "track_groups": True}), WINDOW
    )
    assert doc["server_events"]["after_sample"] == doc["server_events"]["mapped"] == 99
    assert set(doc["removed"].values()) == {0}
    assert {e["rule"] for e in doc["top_events"]} == {"sent"}
    assert doc["budget"] is None
    assert doc["cycle"]["cycle"] == "monthly"
    assert doc["cycle"]["start"] == "2026-11-01T00:00:00Z"


def test_the_top_list_is_the_twenty_most_frequent_names() -> None:
    tally = Tally(settings())
    for i in range(25):
        for j in range(i + 1):
            tally.add(
                {"type": "track", "userId": "u", "event": f"E{i:02}", "messageId": f"{i}-{j}"}
            )
    top = report("web", ("t",), tally, WINDOW)["top_events"]
    assert [e["name"] for e in top] == [f"E{i:02}" for i in range(24, 4, -1)]


def test_an_empty_window_reports_zeros() -> None:
    doc = report("web", ("t",), Tally(settings(**POLICY)), WINDOW)
    assert (doc["records"], doc["users"], doc["sent"], doc["top_events"]) == (0, 0, 0, [])
    assert doc["budget"] == {
        "events_per_cycle": 100,
        "share": 0.0,
        "lasts": True,
        "runs_out_at": None,
    }
    assert "server events mapped" in render(document(WINDOW, [doc]))


def test_the_json_document_shape() -> None:
    doc = document(WINDOW, [report("web", ("events",), _tally(POLICY), WINDOW)])
    again = orjson.loads(orjson.dumps(doc))
    assert again["window"] == {
        "since": "2026-11-26T12:00:00Z",
        "until": "2026-11-28T12:00:00Z",
        "seconds": 172800.0,
    }
    [dest] = again["destinations"]
    assert list(dest) == [
        "name",
        "topics",
        "records",
        "undecodable",
        "invalid",
        "skipped",
        "users",
        "deletes",
        "server_events",
        "removed",
        "sent",
        "cycle",
        "per_cycle",
        "top_events",
        "properties",
        "budget",
    ]
    assert set(dest["budget"]) == {"events_per_cycle", "share", "lasts", "runs_out_at"}


def test_the_text_names_every_rule_and_the_budget_verdict() -> None:
    text = render(document(WINDOW, [report("web", ("events",), _tally(POLICY), WINDOW)]))
    assert text.startswith("window 2026-11-26T12:00:00Z to 2026-11-28T12:00:00Z\n")
    for needle in (
        "destination web (topics: events)",
        "records read",
        "users (user requests)",
        "after include",
        "(-2 event_not_included)",
        "(-7 event_excluded)",
        "sampled_out)",
        "per daily cycle (2026-11-28T00:00:00Z to 2026-11-29T00:00:00Z)",
        "budget 100 per cycle: ",
        "distinct properties: 3 user, 3 event (FullStory allows 500)",
        "sampled at rate 0.5",
        "event_excluded",
    ):
        assert needle in text, needle
    tight = {**POLICY, "budget": {"events_per_cycle": 10, "cycle": "daily"}}
    text = render(document(WINDOW, [report("web", ("events",), _tally(tight), WINDOW)]))
    assert "budget 10 per cycle: runs out at 2026-11-28T" in text
