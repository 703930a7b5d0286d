"""Schema evolution through the real registry (Apicurio), the real broker and the running consumer:
records written with four versions of SegmentEvent on one topic are all delivered."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import expected_keys, read_topic, wait_for, write_jsonl
from toolcheck import require_registry_java

from consumer.codec.encode import Encoder, event_key
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH, load_schema
from consumer.codec.schema_registry import RegistryClient
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.registry import LocalRegistry
from consumer.produce import produce_file, produce_raw
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "schemas"


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    require_registry_java()
    with LocalRegistry() as reg:
        yield reg


def _events(n: int, tag: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        user = f"user-{i % 13}"
        if i % 4 == 0:
            events.append(
                {"type": "identify", "messageId": f"{tag}-{i}", "userId": user, "traits": {"n": i}}
            )
        else:
            events.append(
                {
                    "type": "track",
                    "messageId": f"{tag}-{i}",
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"order": i, "revenue": i * 1.25},
                    "context": {"ip": "203.0.113.9"},
                    "timestamp": "2026-11-28T10:00:00.000Z",
                }
            )
    return events


def test_old_and_new_writer_versions_on_one_topic_all_delivered(
    kafka_broker: LocalBroker,
    topic_name: str,
    registry: LocalRegistry,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    client = RegistryClient(registry.url)
    subject = f"{topic_name}-value"
    # BACKWARD: the registry itself checks that each new version can read the previous one.
    client.set_compatibility(subject, "BACKWARD")
    versions = {
        name: load_schema(SCHEMAS / f"segment-event-{name}.avsc") if name != "v1" else None
        for name in ("v0", "v1", "v2", "v3")
    }
    ids = {}
    for name in versions:
        path = SEGMENT_SCHEMA_PATH if name == "v1" else SCHEMAS / f"segment-event-{name}.avsc"
        ids[name] = client.register(subject, path.read_text())
    client.close()
    assert len(set(ids.values())) == 4, ids

    bootstrap = kafka_broker.bootstrap_servers
    events = _events(400, "ev")
    values = []
    names = list(versions)
    for i, event in enumerate(events):
        name = names[i % 4]
        encoder = Encoder("confluent", ids[name], versions[name])
        values.append((event_key(event), encoder.encode(event)))
    produce_raw(bootstrap, topic_name, values)
    # And a producer that registers the repo's schema itself: same subject, same id as v1.
    more = _events(40, "reg")
    produce_file(
        bootstrap, topic_name, write_jsonl(tmp_path / "more.jsonl", more), register=registry.url
    )

    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(events + more, settings)
    assert len(expected) == 440
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--framing", "confluent", "--schema-registry-url", registry.url),
    ).start()
    delivered = lambda: {r["idempotency_key"] for r in emulator.deliveries()}  # noqa: E731
    wait_for(lambda: delivered() >= expected, 120, "every event of every version", member.log)
    assert read_topic(bootstrap, f"{topic_name}.dlq", expect=1, timeout=3) == []
    assert member.stop() == 0, member.log()
    assert delivered() == expected
    by_key = {r["idempotency_key"]: r for r in emulator.deliveries()}
    assert len(by_key) == 440
