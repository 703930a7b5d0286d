"""The spine end to end: real broker, the consumer as a process, the emulator over HTTP."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import (
    assert_exactly_once,
    expected_identities,
    expected_keys,
    gauge,
    lag,
    many_events,
    read_topic,
    wait_for,
    write_jsonl,
)

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file, produce_raw
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "schemas" / "sample-events.jsonl"


def _settings_file(tmp_path: Path, **extra: Any) -> tuple[Path, DestinationSettings]:
    data = {
        "trackNamedPages": True,
        "trackCategorizedPages": True,
        "trackAllPages": True,
        "track_groups": True,
        **extra,
    }
    path = tmp_path / "settings.json"
    path.write_bytes(orjson.dumps(data))
    settings, _ = DestinationSettings.from_mapping(data)
    return path, settings


def _events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _key_counts(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(r["idempotency_key"] for r in emulator.deliveries())


def test_every_call_type_arrives_exactly_once(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    settings_path, settings = _settings_file(tmp_path)
    events = _events(SAMPLES)
    assert {e["type"] for e in events} >= {
        "identify",
        "track",
        "page",
        "screen",
        "group",
        "alias",
        "delete",
    }
    expected = expected_keys(events, settings)
    bootstrap = kafka_broker.bootstrap_servers
    assert produce_file(bootstrap, topic_name, SAMPLES) == len(events)

    member = consumers(
        bootstrap, topic_name, f"g-{uuid.uuid4().hex[:8]}", emulator.url, settings=settings_path
    ).start()
    wait_for(
        lambda: set(_key_counts(emulator)) >= expected, 90, "every expected request", member.log
    )
    assert member.stop() == 0, member.log()

    counts = _key_counts(emulator)
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), counts
    assert lag(bootstrap, member.cmd[member.cmd.index("--group-id") + 1], topic_name) == 0
    methods = Counter((r["method"], r["path"].split("?")[0]) for r in emulator.deliveries())
    assert methods[("POST", "/v2/users")] >= 2
    assert methods[("POST", "/v2/events")] >= 2
    assert methods[("DELETE", "/v2/users")] == 1


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    events = many_events(4000)
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(events, settings)
    assert len(expected) == 4000
    bootstrap = kafka_broker.bootstrap_servers
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "events.jsonl", events))
    emulator.faults(latency_ms=5)
    group = f"g-{uuid.uuid4().hex[:8]}"

    for threshold in (800, 2000):
        # At most 8 in flight at 5 ms (<= 1,600/s): the kills land before the end.
        member = consumers(
            bootstrap, topic_name, group, emulator.url, args=("--concurrency", "8")
        ).start()
        wait_for(
            lambda t=threshold: len(_key_counts(emulator)) >= t,
            90,
            f"{threshold} deliveries",
            member.log,
        )
        member.kill()
    assert len(_key_counts(emulator)) < 4000, "the kills came too late to test anything"

    member = consumers(bootstrap, topic_name, group, emulator.url).start()
    wait_for(lambda: len(_key_counts(emulator)) >= 4000, 120, "all deliveries", member.log)
    assert member.stop() == 0, member.log()
    counts = _key_counts(emulator)
    assert set(counts) == expected
    duplicated = {k: n for k, n in counts.items() if n > 1}
    assert not duplicated
    replays = [r for r in emulator.requests() if r.get("replay")]
    assert replays, "a SIGKILL after deliveries must cause redeliveries (answered as replays)"
    assert lag(bootstrap, group, topic_name) == 0


def test_garbage_goes_to_the_dead_letter_topic_intact(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    garbage = [(b"k1", b"\x00\x01not avro at all"), (None, b"\xff" * 40), (b"k3", b"")]
    produce_raw(bootstrap, topic_name, garbage)
    events = many_events(50)
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "events.jsonl", events))
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(events, settings)

    member = consumers(bootstrap, topic_name, f"g-{uuid.uuid4().hex[:8]}", emulator.url).start()
    wait_for(lambda: set(_key_counts(emulator)) >= expected, 90, "the good events", member.log)
    dead = read_topic(bootstrap, f"{topic_name}.dlq", expect=len(garbage))
    assert member.stop() == 0, member.log()

    got = {(m.key(), m.value()) for m in dead}
    assert got == set(garbage)
    for msg in dead:
        headers = {k: v for k, v in msg.headers() or []}
        assert headers["__connect.errors.topic"] == topic_name.encode()
        assert headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
        assert headers["__connect.errors.exception.class.name"] == b"DecodeError"
        assert int(headers["__connect.errors.offset"]) >= 0
        assert headers["__connect.errors.exception.message"]
        assert b"it-key" not in b"".join(v or b"" for v in headers.values())
    assert lag(bootstrap, member.cmd[member.cmd.index("--group-id") + 1], topic_name) == 0


def test_stopping_in_batch_mode_sends_lingering_batches_and_commits_them(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    """Batches open when the service stops are sealed at once, not after their linger (here
    longer than the drain budget): stopping delivers and commits everything it holds."""
    events = many_events(300, prefix="linger")
    settings, _ = DestinationSettings.from_mapping({})
    bootstrap = kafka_broker.bootstrap_servers
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "events.jsonl", events))
    group = f"g-{uuid.uuid4().hex[:8]}"
    port = free_port()
    member = consumers(
        bootstrap,
        topic_name,
        group,
        emulator.url,
        args=("--delivery", "batch", "--metrics-port", str(port)),
        env={"FULLSTORY_CONSUMER_BATCH_LINGER": "300", "FULLSTORY_CONSUMER_DRAIN_TIMEOUT": "15"},
    ).start()

    wait_for(
        lambda: gauge(port, "fullstory_consumer_in_flight_records") == len(events),
        60,
        "every record read and held",
        member.log,
    )
    assert not emulator.deliveries(), "the linger should still be holding every batch"
    assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected_identities(events, settings))
    assert lag(bootstrap, group, topic_name) == 0
