"""`events` rules through the real broker and the emulator: excluded names never reach FullStory,
and sampling keeps each user all in or all out, near the configured rate."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import lag, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration

USERS = 400
RATE = 0.3


def test_excluded_events_stay_home_and_sampling_is_per_user(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    events = [
        {
            "type": "track",
            "messageId": f"s-{i}",
            "userId": f"user-{i % USERS}",
            "event": "Debug Ping" if i % 4 == 0 else "Order Completed",
            "properties": {"n": i},
            "timestamp": "2026-11-28T10:00:00.000Z",
        }
        for i in range(USERS * 5)
    ]
    settings = tmp_path / "settings.json"
    settings.write_bytes(
        orjson.dumps({"events": {"exclude": ["Debug *"], "sample": {"Order *": RATE}}})
    )
    bootstrap = kafka_broker.bootstrap_servers
    group = f"g-{uuid.uuid4().hex[:8]}"
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    member = consumers(bootstrap, topic_name, group, emulator.url, settings=settings).start()
    wait_for(lambda: lag(bootstrap, group, topic_name) == 0, 120, "every record done", member.log)
    assert member.stop() == 0, member.log()

    stored = [r["body"] for r in emulator.deliveries() if r["path"] == "/v2/events"]
    assert all(body["name"] == "Order Completed" for body in stored)  # nothing excluded left
    sent_by_user: dict[str, int] = defaultdict(int)
    for body in stored:
        sent_by_user[body["user"]["uid"]] += 1
    orders_by_user: dict[str, int] = defaultdict(int)
    for event in events:
        if event["event"] == "Order Completed":
            orders_by_user[event["userId"]] += 1
    for uid, sent in sent_by_user.items():
        assert sent == orders_by_user[uid], uid  # a sampled-in user keeps every event
    share = len(sent_by_user) / USERS
    sigma = (RATE * (1 - RATE) / USERS) ** 0.5
    assert abs(share - RATE) < 4 * sigma, share  # binomial bounds, 4 sigma
