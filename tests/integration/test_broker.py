"""The local broker is a real Kafka: messages round-trip through a group and survive restarts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from consumer.localenv import LocalBroker, create_topic

pytestmark = pytest.mark.integration

Message = tuple[bytes, bytes]


def _produce(bootstrap: str, topic: str, messages: list[Message]) -> None:
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "messages still queued after flush"
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int, deadline_s: float = 60.0) -> list[Message]:
    """Read COUNT messages with a fresh consumer group (bounded by a deadline, not a speed test)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    got: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + deadline_s
        while len(got) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            key, value = msg.key(), msg.value()
            assert key is not None and value is not None
            got.append((key, value))
        if got:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


def _messages(n: int) -> list[Message]:
    return [(f"key-{i}".encode(), f"value-{i}-{uuid.uuid4().hex}".encode()) for i in range(n)]


def test_round_trip_through_consumer_group(kafka_broker: LocalBroker, topic_name: str) -> None:
    sent = _messages(100)
    _produce(kafka_broker.bootstrap_servers, topic_name, sent)

    got = _consume(kafka_broker.bootstrap_servers, topic_name, len(sent))

    assert sorted(got) == sorted(sent)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker only this test uses, so restarting it leaves the session broker alone."""
    broker = LocalBroker(tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_data_survives_restart(own_broker: LocalBroker, kill: bool) -> None:
    topic = f"restart-{uuid.uuid4().hex[:10]}"
    create_topic(own_broker.bootstrap_servers, topic)
    sent = _messages(50)
    _produce(own_broker.bootstrap_servers, topic, sent)
    old_pid, cluster_id = own_broker.pid, (own_broker.data_dir / "cluster.id").read_text()

    own_broker.stop(kill=kill)
    own_broker.start()

    assert own_broker.pid != old_pid
    assert (own_broker.data_dir / "cluster.id").read_text() == cluster_id
    got = _consume(own_broker.bootstrap_servers, topic, len(sent))
    assert sorted(got) == sorted(sent)
