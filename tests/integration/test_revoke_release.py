"""A realtime member that loses partitions to a joining member hands back their queued records
unsent instead of working through its whole queue first: the revoke finishes within a short
drain budget even against a slow FullStory, and no request is sent twice (no replays)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import (
    assert_exactly_once,
    expected_identities,
    gauge,
    many_events,
    owned_partitions,
    stored_writes,
    wait_for,
    write_jsonl,
)

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

EVENTS = 3000
# 32 in flight at 300 ms: ~107 requests/s, so the first member holds ~2,500 queued records when the
# second joins; working through them would take ~20 s, far beyond this drain budget. Finishing
# only up to the highest started offset takes ~1-3 s, more on a loaded CI.
ENV = {"FULLSTORY_CONSUMER_DRAIN_TIMEOUT": "8"}


def _revokes(log: str) -> list[dict[str, Any]]:
    entries = (orjson.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [entry for entry in entries if entry.get("msg") == "partitions revoked"]


def test_a_revoke_hands_back_queued_records_and_nothing_is_sent_twice(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    # One user per event: every record can go to any sender, as with real traffic.
    events = [
        {**event, "userId": f"release-user-{i}"}
        for i, event in enumerate(many_events(EVENTS, prefix="release"))
    ]
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_identities(events, settings)
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    emulator.faults(latency_ms=300)
    group = f"g-{uuid.uuid4().hex[:8]}"
    port = free_port()
    args = ("--delivery", "realtime")
    first = consumers(
        bootstrap,
        topic_name,
        group,
        emulator.url,
        args=(*args, "--metrics-port", str(port)),
        env=ENV,
    ).start()
    wait_for(
        lambda: (gauge(port, "fullstory_consumer_in_flight_records") or 0) >= 2000,
        60,
        "the first member to queue most of the topic",
        first.log,
    )
    second = consumers(bootstrap, topic_name, group, emulator.url, args=args, env=ENV).start()
    wait_for(lambda: bool(owned_partitions(second)), 60, "the second member's share", second.log)
    (revoke,) = _revokes(first.log())
    assert revoke["drained"] is True, revoke  # within 8 s, with ~2,500 records queued
    assert revoke["released"] > 0, revoke

    wait_for(
        lambda: len(set(stored_writes(emulator.deliveries()))) >= len(expected),
        120,
        "every delivery",
        second.log,
    )
    for member in (first, second):
        assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)
    replays = [r for r in emulator.requests() if r["replay"]]
    assert not replays, f"{len(replays)} requests were sent twice, e.g. {replays[0]}"
