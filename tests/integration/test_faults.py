"""Fault tests: whatever happens to the consumer, the broker or FullStory, every event is stored by
FullStory once (replays answered from the idempotency store do not count) or dead-lettered with a
reason, and none twice. Each runs in both delivery modes."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import (
    assert_exactly_once,
    expected_identities,
    many_events,
    owned_partitions,
    read_topic,
    stored_writes,
    wait_for,
    write_jsonl,
)

from consumer.localenv import LocalBroker, create_topic
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

MODES = ("realtime", "batch")
# Short batch linger and polling keep the batch-mode tests quick.
MODE_ARGS = {
    "realtime": ("--delivery", "realtime"),
    "batch": ("--delivery", "batch", "-X", "fetch.wait.max.ms=100"),
}
ENV_BATCH = {
    "FULLSTORY_CONSUMER_BATCH_LINGER": "0.2",
    "FULLSTORY_CONSUMER_BATCH_POLL_INTERVAL": "0.1",
    "FULLSTORY_CONSUMER_BATCH_MAX_ITEMS": "500",
}


def _stream(
    bootstrap: str,
    topic: str,
    tmp_path: Path,
    n: int,
    prefix: str,
    chunk: int = 100,
    pause: float = 0.25,
) -> tuple[set[bytes], threading.Thread]:
    """Start producing n events in bursts; returns the writes FullStory must store, and the
    producing thread. Events keep arriving while the faults happen, so batch boundaries depend
    on timing (linger) and each fault meets traffic."""
    events = many_events(n, prefix=prefix)
    settings, _ = DestinationSettings.from_mapping({})
    producer = threading.Thread(
        target=_trickle, args=(bootstrap, topic, events, tmp_path, chunk, pause), daemon=True
    )
    producer.start()
    return expected_identities(events, settings), producer


def _delivered(emulator: EmulatorProcess) -> int:
    return len(set(stored_writes(emulator.deliveries())))


def _member(
    consumers: Any, bootstrap: str, topic: str, group: str, url: str, mode: str, *extra: str
) -> Any:
    return consumers(
        bootstrap,
        topic,
        group,
        url,
        args=(*MODE_ARGS[mode], *extra),
        env=ENV_BATCH if mode == "batch" else None,
    )


def _trickle(
    bootstrap: str,
    topic: str,
    events: list[dict[str, Any]],
    tmp_path: Path,
    chunk: int = 100,
    pause: float = 0.25,
) -> None:
    """Produce the events in small bursts, `pause` seconds apart."""
    for start in range(0, len(events), chunk):
        path = tmp_path / f"chunk-{start}.jsonl"
        produce_file(bootstrap, topic, write_jsonl(path, events[start : start + chunk]))
        time.sleep(pause)


def _batch_creates(emulator: EmulatorProcess) -> int:
    return sum(1 for r in emulator.deliveries() if r["path"].endswith("/batch"))


@pytest.mark.parametrize("mode", MODES)
def test_repeated_sigkill(
    mode: str,
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    # Batch boundaries depend on timing here: only the committed segment plan lets a new
    # member form the very same import jobs.
    expected, producer = _stream(bootstrap, topic_name, tmp_path, 5000, f"kill-{mode}")
    group = f"g-{uuid.uuid4().hex[:8]}"
    extra: tuple[str, ...] = ()
    if mode == "realtime":
        # At most 8 in flight at 10 ms (<= 800/s): a member that starts late, once the stream
        # is all produced, still takes seconds to catch up, so the kills land mid-stream
        # (with the adaptive limit it caught up 3,000 records between two 0.25 s polls).
        emulator.faults(latency_ms=10)
        extra = ("--concurrency", "8")
        progress, steps = (lambda: _delivered(emulator)), (700, 1800, 3000)
    else:
        # Kill while import jobs are PROCESSING: created, not yet finished, not committed.
        emulator.faults(batch_processing_ms=1500)
        progress, steps = (lambda: _batch_creates(emulator)), (3, 10, 16)
    for threshold in steps:
        member = _member(
            consumers, bootstrap, topic_name, group, emulator.url, mode, *extra
        ).start()
        wait_for(lambda t=threshold: progress() >= t, 120, f"progress {threshold}", member.log)
        member.kill()
    assert _delivered(emulator) < len(expected), "the kills came too late to test anything"
    member = _member(consumers, bootstrap, topic_name, group, emulator.url, mode).start()
    producer.join(timeout=120)
    wait_for(lambda: _delivered(emulator) >= len(expected), 180, "all deliveries", member.log)
    assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)
    if mode == "batch":  # the re-formed segments were answered from the idempotency store
        assert any(r["path"].endswith("/batch") and r["replay"] for r in emulator.requests())


@pytest.mark.parametrize("mode", MODES)
def test_members_join_and_leave_mid_stream(
    mode: str,
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    expected, producer = _stream(bootstrap, topic_name, tmp_path, 6000, f"rebalance-{mode}")
    emulator.faults(latency_ms=50, batch_processing_ms=1500)
    group = f"g-{uuid.uuid4().hex[:8]}"
    first = _member(consumers, bootstrap, topic_name, group, emulator.url, mode).start()
    second = _member(consumers, bootstrap, topic_name, group, emulator.url, mode).start()
    wait_for(lambda: _delivered(emulator) >= 1000, 120, "1000 deliveries", first.log)
    third = _member(consumers, bootstrap, topic_name, group, emulator.url, mode).start()
    wait_for(lambda: bool(owned_partitions(third)), 60, "the third member's share", third.log)
    wait_for(lambda: _delivered(emulator) >= 2500, 120, "2500 deliveries", third.log)
    members = [first, second, third]
    leaver = next(m for m in members if owned_partitions(m))
    assert leaver.stop() == 0, leaver.log()  # leaves: its partitions move to the others
    assert _delivered(emulator) < len(expected), "the leave came too late to test anything"
    assert "partitions revoked" in leaver.log()
    stayers = [m for m in members if m is not leaver]
    producer.join(timeout=120)
    wait_for(lambda: _delivered(emulator) >= len(expected), 180, "all deliveries", stayers[0].log)
    for member in stayers:
        assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)


@pytest.mark.parametrize("mode", MODES)
def test_fullstory_throttles_fails_disappears_and_crawls(
    mode: str,
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    # 3000 events over about 55 s: every phase below meets traffic.
    expected, producer = _stream(bootstrap, topic_name, tmp_path, 3000, f"storm-{mode}", 55, 1.0)
    emulator.faults(rate_limit=40, burst=5)  # 429 with Retry-After
    member = _member(
        consumers, bootstrap, topic_name, f"g-{uuid.uuid4().hex[:8]}", emulator.url, mode
    ).start()
    time.sleep(8)
    emulator.faults(rate_limit=None, error_rate=0.5)  # 5xx bursts
    time.sleep(5)
    emulator.faults(error_rate=0.0, outage_seconds=30, outage_mode="refuse")
    time.sleep(30)
    emulator.faults(latency_ms=200)  # slow responses
    time.sleep(5)
    emulator.faults(latency_ms=0)
    producer.join(timeout=120)
    wait_for(lambda: _delivered(emulator) >= len(expected), 180, "all deliveries", member.log)
    assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)
    statuses = {r["status"] for r in emulator.requests(include_rejected=True)}
    assert {429, 500, 0} <= statuses, statuses  # each fault really happened
    assert read_topic(bootstrap, f"{topic_name}.dlq", expect=1, timeout=5) == []


@pytest.mark.parametrize("mode", MODES)
def test_broker_restart_mid_stream(
    mode: str, tmp_path: Path, emulator: EmulatorProcess, consumers: Any
) -> None:
    broker = LocalBroker(tmp_path / "kafka")
    broker.start()
    try:
        bootstrap = broker.bootstrap_servers
        create_topic(bootstrap, "events")
        expected, producer = _stream(bootstrap, "events", tmp_path, 4000, f"restart-{mode}")
        emulator.faults(latency_ms=3, batch_processing_ms=300)
        member = _member(
            consumers, bootstrap, "events", f"g-{uuid.uuid4().hex[:8]}", emulator.url, mode
        ).start()
        wait_for(lambda: _delivered(emulator) >= 800, 120, "800 deliveries", member.log)
        broker.stop()
        time.sleep(5)
        broker.start()
        producer.join(timeout=120)
        wait_for(lambda: _delivered(emulator) >= len(expected), 180, "all deliveries", member.log)
        assert member.stop() == 0, member.log()
        assert_exactly_once(emulator.deliveries(), expected)
    finally:
        broker.stop()
