"""A registry outage mid-stream: records wait (never dead-lettered), then all are delivered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from harness import expected_keys, read_topic, wait_for
from tcpproxy import TcpProxy
from toolcheck import require_registry_java

from consumer.codec.encode import Encoder, event_key
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH, load_schema
from consumer.codec.schema_registry import RegistryClient
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.registry import LocalRegistry
from consumer.produce import produce_raw
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

V2 = Path(__file__).resolve().parents[1] / "data" / "schemas" / "segment-event-v2.avsc"


@pytest.fixture
def registry() -> Iterator[LocalRegistry]:
    require_registry_java()
    reg = LocalRegistry()
    reg.start()
    try:
        yield reg
    finally:
        reg.close()


def _register(url: str, subject: str) -> tuple[int, int]:
    """Same registrations, same order: the same ids in a fresh (in-memory) registry."""
    client = RegistryClient(url)
    try:
        return (
            client.register(subject, SEGMENT_SCHEMA_PATH.read_text()),
            client.register(subject, V2.read_text()),
        )
    finally:
        client.close()


def _track(n: int, tag: str) -> dict[str, Any]:
    return {"type": "track", "messageId": f"{tag}-{n}", "userId": f"u-{n % 7}", "event": "Tick"}


def test_registry_down_mid_stream_delays_but_loses_nothing(
    kafka_broker: LocalBroker,
    topic_name: str,
    registry: LocalRegistry,
    emulator: EmulatorProcess,
    consumers: Any,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    v1_id, v2_id = _register(registry.url, f"{topic_name}-value")
    first = [_track(n, "a") for n in range(100)]
    enc1 = Encoder("confluent", v1_id)
    produce_raw(bootstrap, topic_name, [(event_key(e), enc1.encode(e)) for e in first])
    settings, _ = DestinationSettings.from_mapping({})
    # The consumer reaches the registry through a proxy the test can cut: the outage is a
    # network one, and the registry keeps its (in-memory) schemas.
    proxy = TcpProxy(urlsplit(registry.url).port or 80)
    proxy.up()
    proxied = registry.url.replace(f":{proxy.target_port}/", f":{proxy.port}/")
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--framing", "confluent", "--schema-registry-url", proxied),
    ).start()
    delivered = lambda: {r["idempotency_key"] for r in emulator.deliveries()}  # noqa: E731
    wait_for(lambda: delivered() >= expected_keys(first, settings), 90, "first batch", member.log)

    proxy.down()
    # Written with v2, whose id the consumer has not fetched yet: it must ask the (down) registry.
    second = [_track(n, "b") for n in range(100)]
    enc2 = Encoder("confluent", v2_id, load_schema(V2))
    produce_raw(bootstrap, topic_name, [(event_key(e), enc2.encode(e)) for e in second])
    time.sleep(5)  # the consumer meets the outage now
    assert not delivered() & expected_keys(second, settings)
    assert member.proc is not None and member.proc.poll() is None, member.log()

    proxy.up()
    everything = expected_keys(first + second, settings)
    wait_for(lambda: delivered() >= everything, 120, "second batch after the outage", member.log)
    assert member.stop() == 0, member.log()
    assert read_topic(bootstrap, f"{topic_name}.dlq", expect=1, timeout=3) == []
    assert delivered() == everything
