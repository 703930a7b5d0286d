"""Python handle on deploy/local/kafka.sh: a single-node KRaft broker for tests and the demo.

The script owns fetching jars, formatting storage and process control; this class picks the
ports (kept across restarts) and creates topics.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it for mypy

from consumer.localenv.ports import free_port
from consumer.localenv.script import ScriptedService, ServiceError

_TOPIC_TIMEOUT_S = 60.0


class BrokerError(ServiceError):
    """The local broker could not be fetched, started or stopped; the message has the log tail."""


class LocalBroker(ScriptedService):
    """A broker+controller JVM on 127.0.0.1 whose state lives in data_dir (kept across restarts)."""

    script_name = "kafka.sh"
    error = BrokerError
    start_slack = 60.0  # formatting storage runs before the ready wait

    def __init__(
        self, data_dir: Path, port: int | None = None, controller_port: int | None = None
    ) -> None:
        super().__init__(data_dir)
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        for _ in range(10):
            if self.controller_port != self.port:
                break
            self.controller_port = free_port()
        if self.controller_port == self.port:
            raise BrokerError(f"port and controller port are both {self.port}")
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.log_file = self.data_dir / "logs" / "broker.log"

    def start_args(self) -> list[str]:
        """The broker's listener and controller ports."""
        return ["--port", str(self.port), "--controller-port", str(self.controller_port)]


def create_topic(bootstrap: str, name: str, partitions: int = 6) -> None:
    """Create NAME (replication 1) and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        request_timeout=_TOPIC_TIMEOUT_S,
    )
    try:
        futures[name].result(timeout=_TOPIC_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    # The controller commits the topic before every broker's metadata cache has it; wait so
    # callers can produce at once without UNKNOWN_TOPIC_OR_PART noise.
    deadline = time.monotonic() + _TOPIC_TIMEOUT_S
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and topic.partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise BrokerError(f"topic {name} has no leader for every partition after {_TOPIC_TIMEOUT_S}s")
