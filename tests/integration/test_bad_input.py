"""The whole malformed corpus on a real topic, interleaved with good events, through the running
consumer with a real registry: each bad record lands in the DLQ, intact, with its reason."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from harness import expected_keys, read_topic, wait_for
from toolcheck import require_registry_java

from consumer.codec.encode import Encoder, event_key
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH
from consumer.codec.schema_registry import RegistryClient
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.registry import LocalRegistry
from consumer.produce import produce_raw
from consumer.transform import DestinationSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_decode_corpus import MANIFEST, corpus_value

pytestmark = pytest.mark.integration

MAX_BYTES = str(16 * 1024 * 1024)


@pytest.fixture(scope="module")
def registry() -> Iterator[LocalRegistry]:
    require_registry_java()
    with LocalRegistry() as reg:
        yield reg


def _big_topics(bootstrap: str, *names: str) -> None:
    """Topics that take the 5 MiB record (the broker's default limit is about 1 MB)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(n, 3, 1, config={"max.message.bytes": MAX_BYTES}) for n in names]
    for future in admin.create_topics(topics, request_timeout=60).values():
        future.result(timeout=60)
    wait_for(
        lambda: all(admin.list_topics(n, timeout=10).topics[n].partitions for n in names),
        60,
        "topic metadata",
    )


def test_every_bad_record_is_dead_lettered_with_its_reason(
    kafka_broker: LocalBroker,
    registry: LocalRegistry,
    emulator: EmulatorProcess,
    consumers: Any,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"bad-input-{uuid.uuid4().hex[:10]}"
    _big_topics(bootstrap, topic, f"{topic}.dlq")
    client = RegistryClient(registry.url)
    ids = {"segment": client.register(f"{topic}-value", SEGMENT_SCHEMA_PATH.read_text())}
    for name, schema in MANIFEST["schemas"].items():
        ids[name] = client.register(f"{topic}-{name}-value", orjson.dumps(schema).decode())
    client.close()

    encoder = Encoder("confluent", ids["segment"])
    good: list[dict[str, Any]] = []
    values: list[tuple[bytes | None, bytes | None]] = []
    bad: dict[bytes, dict[str, Any]] = {}
    delivered_bad: list[bytes] = []
    for n, entry in enumerate(MANIFEST["records"]):
        event = {"type": "track", "messageId": f"g-{n}", "userId": f"u-{n}", "event": "Tick"}
        good.append(event)
        values.append((event_key(event), encoder.encode(event)))
        key = f"bad-{n}".encode()
        values.append((key, corpus_value(entry, ids)))
        if entry["expect"] == "delivered":
            delivered_bad.append(key)
        else:
            bad[key] = entry
    produce_raw(bootstrap, topic, values, config={"message.max.bytes": MAX_BYTES})

    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(good, settings)
    member = consumers(
        bootstrap,
        topic,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--framing", "confluent", "--schema-registry-url", registry.url),
    ).start()
    delivered = lambda: {r["idempotency_key"] for r in emulator.deliveries()}  # noqa: E731
    wait_for(lambda: delivered() >= expected, 120, "every good event", member.log)
    dead = read_topic(bootstrap, f"{topic}.dlq", expect=len(bad), timeout=60)
    # Valid-but-odd records (an empty messageId, 5 MiB) are delivered, not dead-lettered.
    total = len(expected) + len(delivered_bad)
    wait_for(lambda: len(delivered()) >= total, 60, "the odd but valid records", member.log)
    assert member.proc is not None and member.proc.poll() is None, member.log()
    assert member.stop() == 0, member.log()

    assert sorted(m.key() for m in dead) == sorted(bad), "each bad record exactly once"
    for msg in dead:
        entry = bad[msg.key()]
        assert msg.value() == corpus_value(entry, ids), entry["file"]
        headers = dict(msg.headers() or [])
        message = headers["__connect.errors.exception.message"].decode()
        assert message.startswith(f"{entry['expect']}: "), (entry["file"], message)
    assert len(delivered()) == total
