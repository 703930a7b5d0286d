"""Shared fixtures. The Kafka broker is real (deploy/local/kafka.sh) and started lazily."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator

import pytest

from consumer.localenv import LocalBroker, create_topic


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker for the whole session, on free loopback ports, in a throw-away data dir."""
    if shutil.which("java") is None:
        pytest.skip("java is not on PATH: cannot run the local Kafka broker")
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def topic_name(kafka_broker: LocalBroker, request: pytest.FixtureRequest) -> str:
    """A fresh 6-partition topic on the session broker, named after the test for debugging."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60]
    name = f"{stem}-{uuid.uuid4().hex[:10]}"
    create_topic(kafka_broker.bootstrap_servers, name)
    return name
