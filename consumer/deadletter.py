"""The dead-letter producer: the original key, value and headers, plus Kafka Connect's
`__connect.errors.*` headers, so operators can use the tools they know and `dlq replay` can send
the record back unchanged. A record counts as done only once the DLQ write is acknowledged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from consumer.metrics import Metrics
from consumer.record import Record
from consumer.source import KafkaSettingsError

log = logging.getLogger(__name__)

# Kafka Connect's stage names, so existing DLQ tooling reads our headers as it reads Connect's.
STAGE_DECODE = "VALUE_CONVERTER"
STAGE_TRANSFORM = "TRANSFORMATION"
STAGE_SINK = "TASK_PUT"

_MAX_MESSAGE = 2000


def error_headers(
    record: Record,
    *,
    connector: str,
    task_id: str,
    stage: str,
    exception_class: str,
    message: str,
) -> list[tuple[str, str | bytes | None]]:
    """Connect's error context headers for one failed record."""
    pairs = {
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        "connector.name": connector,
        "task.id": task_id,
        "stage": stage,
        "class.name": "consumer.app.Pipeline",
        "exception.class.name": exception_class,
        "exception.message": message[:_MAX_MESSAGE],
    }
    return [(f"__connect.errors.{k}", v.encode()) for k, v in pairs.items()]


class DeadLetters(Protocol):
    """What the pipeline needs of the dead-letter topic; `DeadLetterQueue` is the real one."""

    def send(
        self,
        record: Record,
        *,
        stage: str,
        reason: str,
        exception_class: str,
        message: str,
        on_done: Callable[[Record], None],
    ) -> None:
        """Queue the record; `on_done(record)` runs (from `poll`) once the broker has it."""

    def poll(self) -> None:
        """Serve delivery reports."""

    def close(self, timeout: float) -> int:
        """Flush and release; returns how many writes were still not acknowledged."""


class DeadLetterQueue:
    """Writes failed records to `<topic><suffix>` (or one fixed topic) and reports when done."""

    def __init__(
        self,
        producer_config: dict[str, Any],
        metrics: Metrics,
        *,
        connector: str,
        task_id: str,
        topic: str | None = None,
        suffix: str = ".dlq",
    ) -> None:
        config = {
            "enable.idempotence": True,
            "linger.ms": 20,
            **producer_config,
            "logger": logging.getLogger("consumer.kafka.dlq"),
        }
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise KafkaSettingsError.of(exc) from None
        self._metrics = metrics
        self._connector = connector
        self._task_id = task_id
        self._topic = topic
        self._suffix = suffix
        self._retry: list[Callable[[], None]] = []

    def topic_for(self, source_topic: str) -> str:
        return self._topic or f"{source_topic}{self._suffix}"

    def send(
        self,
        record: Record,
        *,
        stage: str,
        reason: str,
        exception_class: str,
        message: str,
        on_done: Callable[[Record], None],
    ) -> None:
        """Queue the record for the DLQ; `on_done(record)` runs once the broker has it."""
        headers: list[tuple[str, str | bytes | None]] = list(record.headers or [])
        headers += error_headers(
            record,
            connector=self._connector,
            task_id=self._task_id,
            stage=stage,
            exception_class=exception_class,
            message=f"{reason}: {message}",
        )
        topic = self.topic_for(record.topic)

        def produce() -> None:
            self._producer.produce(
                topic, value=record.value, key=record.key, headers=headers, on_delivery=delivered
            )

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self._metrics.records_dead_lettered.labels(stage, reason).inc()
                on_done(record)
                return
            log.error(
                "dead-letter write failed; will retry",
                extra={
                    "topic": topic,
                    "source_topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "error": err.str(),
                },
            )
            self._retry.append(produce)

        produce()

    def poll(self) -> None:
        """Serve delivery reports (callbacks run here, on the caller's thread)."""
        self._producer.poll(0)
        if self._retry:
            pending, self._retry = self._retry, []
            for produce in pending:
                produce()

    def close(self, timeout: float) -> int:
        """Wait for outstanding DLQ writes and release the producer; returns how many writes
        were still not acknowledged (their records stay uncommitted)."""
        remaining: int = self._producer.flush(timeout)
        del self._producer  # librdkafka's handle goes with its last reference
        return remaining
