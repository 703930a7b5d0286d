"""`budget estimate` over a middle window of five days of records: exact counts per rule, the
projection and the budget verdict, `--json`, and nothing joined or committed."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from consumer.codec.encode import Encoder, event_key
from consumer.localenv import LocalBroker
from consumer.policy import EventsRules

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
RULES = EventsRules(["Order *", "Viewed *", "Debug *"], ["Debug *"], [("Viewed * Page", 0.5)])


def _day(day: int) -> list[dict[str, Any]]:
    """One day's events: 4 identifies, 6 orders, 3 debug pings, 2 not included, 10 page views."""
    events: list[dict[str, Any]] = []

    def add(kind: str, i: int, **fields: Any) -> None:
        events.append({"type": kind, "messageId": f"d{day}-{kind}-{i}", **fields})

    for i in range(4):
        add("identify", i, userId=f"u{i}", traits={"plan": "pro", "company": {"size": i}})
    for i in range(6):
        add("track", i, userId=f"u{i}", event="Order Completed", properties={"total": i})
    for i in range(3):
        add("track", 10 + i, userId=f"u{i}", event="Debug Ping")
    for i in range(2):
        add("track", 20 + i, userId=f"u{i}", event="Secret Thing")
    for i in range(10):
        add("page", i, userId=f"v{day}-{i}", name="Pricing", properties={"path": "/pricing"})
    return events


def _produce(bootstrap: str, topic: str, base: datetime) -> dict[int, list[dict[str, Any]]]:
    """Each day's events at base + day + a few seconds each, with explicit Kafka timestamps."""
    encoder = Encoder()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    days = {day: _day(day) for day in range(5)}
    for day, events in days.items():
        for i, event in enumerate(events):
            stamp = base + day * DAY + timedelta(seconds=i)
            producer.produce(
                topic,
                value=encoder.encode(event),
                key=event_key(event),
                timestamp=int(stamp.timestamp() * 1000),
            )
    assert producer.flush(30) == 0
    return days


def _estimate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FULLSTORY_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli",
            "budget",
            "estimate",
            "--config",
            str(config),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def test_estimate_counts_a_middle_window_exactly_and_commits_nothing(
    kafka_broker: LocalBroker, topic_name: str, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 5 * DAY
    days = _produce(bootstrap, topic_name, base)
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "consumer.toml"
    config.write_text(
        f'bootstrap_servers = "{bootstrap}"\n'
        f'group_id = "{group}"\n'
        'api_key = "k"\n'
        f'topics = ["{topic_name}"]\n'
        "[fullstory]\n"
        "track_named_pages = true\n"
        "[fullstory.events]\n"
        'include = ["Order *", "Viewed *", "Debug *"]\n'
        'exclude = ["Debug *"]\n'
        "[fullstory.events.sample]\n"
        '"Viewed * Page" = 0.5\n'
        "[fullstory.budget]\n"
        "events_per_cycle = 5\n"
        'cycle = "daily"\n'
        f'cycle_start = "{_iso(base)}"\n'
    )
    since, until = base + DAY, base + 3 * DAY  # days 1 and 2 of 0..4
    window = [e for day in (1, 2) for e in days[day]]
    views = [e for e in window if e["type"] == "page"]
    views_sent = sum(RULES.decide("Viewed Pricing Page", e["userId"]) is None for e in views)
    sent = 12 + views_sent

    proc = _estimate(config, "--since", _iso(since), "--until", _iso(until), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no bar when not on a terminal
    doc = orjson.loads(proc.stdout)
    assert doc["window"] == {"since": _iso(since), "until": _iso(until), "seconds": 2 * 86400.0}
    [dest] = doc["destinations"]
    assert dest["records"] == len(window) == 50
    assert (dest["users"], dest["deletes"], dest["undecodable"]) == (8, 0, 0)
    assert dest["server_events"] == {
        "mapped": 42,
        "after_include": 38,
        "after_exclude": 32,
        "after_sample": sent,
    }
    assert dest["removed"] == {
        "event_not_included": 4,
        "event_excluded": 6,
        "sampled_out": 20 - views_sent,
    }
    assert dest["per_cycle"] == {"server_events": round(sent / 2), "users": 4}
    assert dest["budget"] == {  # the cycle holding `until`, from its start at the window's rate
        "events_per_cycle": 5,
        "share": round(sent / 2) / 5,
        "lasts": False,
        "runs_out_at": _iso(until + timedelta(seconds=5 * 2 * 86400 / sent)),
    }
    assert [(e["name"], e["count"], e["rule"], e["sent"]) for e in dest["top_events"]] == [
        ("Viewed Pricing Page", 20, "sampled", views_sent),
        ("Order Completed", 12, "sent", 12),
        ("Debug Ping", 6, "event_excluded", 0),
        ("Secret Thing", 4, "event_not_included", 0),
    ]
    # users: plan, company.size; sent events: total, and the views' path, name, pageName
    assert dest["properties"] == {"user": 2, "event": 4, "limit": 500}

    text = _estimate(config, "--since", _iso(since), "--until", _iso(until))
    assert text.returncode == 0, text.stderr
    assert "records read" in text.stdout and "Viewed Pricing Page" in text.stdout
    assert f"sampled at rate 0.5 ({views_sent:,} sent)" in text.stdout

    empty = _estimate(config, "--since", "30m", "--json")
    assert empty.returncode == 0, empty.stderr
    [nothing] = orjson.loads(empty.stdout)["destinations"]
    assert (nothing["records"], nothing["sent"], nothing["top_events"]) == (0, 0, [])

    admin = AdminClient({"bootstrap.servers": bootstrap})
    groups = [g.group_id for g in admin.list_consumer_groups().result(timeout=30).valid]
    assert not [g for g in groups if g == group or g.startswith("budget-estimate-")], groups
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = reader.committed([TopicPartition(topic_name, p) for p in range(6)], timeout=30)
    finally:
        reader.close()
    assert all(tp.offset < 0 for tp in committed)
