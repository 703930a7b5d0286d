"""A Kafka record as it moves through the pipeline, with the assignment generation it was read
under (so an ack for a partition that was revoked meanwhile can be recognised and ignored)."""

from __future__ import annotations

from dataclasses import dataclass

Partition = tuple[str, int]
"""A partition as the pipeline keys it: (topic, partition number). Not confluent_kafka's
TopicPartition, which also carries an offset and is used only at the Kafka boundary."""


@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] | None
    generation: int
    timestamp: float = 0.0  # Kafka record time, seconds
    received_at: object = None  # Segment's receivedAt as sent, for the freshness metric

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)

    @property
    def size(self) -> int:
        return len(self.value or b"") + len(self.key or b"")
