"""`fullstory-consumer dlq replay`: send dead-lettered records back through the pipeline once the
cause is fixed, by producing them (key, value and original headers unchanged) to the topic they
came from.

FullStory keeps the first final answer for an `Idempotency-Key` for 24 hours, including a 400: a
replayed record sent with its old key would get the old rejection back. So a replayed record carries
a `fullstory-consumer.replay: N` header and its requests get keys derived from the original key and
N. Replaying the same dead-letter record twice gives the same N (it is read from that record), so
a repeated replay is still answered from the idempotency store instead of duplicating.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from consumer.errors import UserError
from consumer.progress import progress_bar
from consumer.source import KafkaSettingsError
from consumer.transform import Request

REPLAY_HEADER = "fullstory-consumer.replay"
_ERROR_PREFIX = "__connect.errors."
_REPLAY_NAMESPACE = uuid.UUID("5b7c0f52-4f0e-4a55-9d7b-8c7f1e0f3a21")

Headers = Sequence[tuple[str, bytes | None]]


def replay_round(headers: Headers) -> int:
    """How many times this record was replayed from a dead-letter topic (0 = never)."""
    for name, value in headers:
        if name == REPLAY_HEADER and value:
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def rekey_for_replay(requests: tuple[Request, ...], headers: Headers) -> tuple[Request, ...]:
    """Fresh, still deterministic idempotency keys for a replayed record's requests."""
    n = replay_round(headers)
    if n == 0:
        return requests
    return tuple(
        replace(r, idempotency_key=str(uuid.uuid5(_REPLAY_NAMESPACE, f"{r.idempotency_key}:{n}")))
        for r in requests
    )


class ReplayError(UserError):
    """The replay cannot finish: no such dead-letter topic, or Kafka failed; run it again once
    fixed (records already replayed are replayed again with the same idempotency keys)."""

    exit_code = 1


@dataclass
class ReplaySummary:
    read: int = 0
    replayed: int = 0
    skipped: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)


def _reason(headers: dict[str, bytes | None]) -> str:
    message = (headers.get(f"{_ERROR_PREFIX}exception.message") or b"").decode(errors="replace")
    return message.split(":", 1)[0] or "unknown"


def replay_dlq(
    bootstrap_servers: str,
    dlq_topic: str,
    *,
    since_ms: int | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    kafka: dict[str, str] | None = None,
    out: IO[str] = sys.stderr,
) -> ReplaySummary:
    """Replay every record now in `dlq_topic` (from `since_ms`, optionally only one reason)."""
    common: dict[str, Any] = {"bootstrap.servers": bootstrap_servers, **(kafka or {})}
    try:
        reader = Consumer(
            {
                **common,
                "group.id": f"dlq-replay-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
    except KafkaException as exc:
        raise KafkaSettingsError.of(exc) from None
    summary = ReplaySummary()
    try:
        try:
            producer = Producer({**common, "enable.idempotence": True, "linger.ms": 20})
        except KafkaException as exc:
            raise KafkaSettingsError.of(exc) from None
        meta = reader.list_topics(dlq_topic, timeout=15)
        topic_meta = meta.topics.get(dlq_topic)
        if topic_meta is None or topic_meta.error is not None or not topic_meta.partitions:
            raise ReplayError(f"dead-letter topic {dlq_topic!r} does not exist; fix --topic")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for p in sorted(topic_meta.partitions):
            low, high = reader.get_watermark_offsets(TopicPartition(dlq_topic, p), timeout=15)
            if high > low:
                ends[p] = high
                starts.append(TopicPartition(dlq_topic, p, since_ms if since_ms else low))
        if since_ms is not None and starts:
            starts = reader.offsets_for_times(starts, timeout=15)
            for tp in starts:
                if tp.offset < 0:  # nothing at or after the time in this partition
                    ends.pop(tp.partition, None)
            starts = [tp for tp in starts if tp.partition in ends]
        total = sum(ends[tp.partition] - tp.offset for tp in starts)
        reader.assign(starts)
        remaining = dict(ends)
        for tp in starts:
            if tp.offset >= ends[tp.partition]:
                remaining.pop(tp.partition, None)
        deadline = time.monotonic() + 600
        with progress_bar(out) as bar:
            task = bar.add_task(dlq_topic, total=total)
            while remaining and time.monotonic() < deadline:
                for msg in reader.consume(500, 1.0):
                    if msg.error() is not None:
                        continue
                    part = msg.partition()
                    offset = msg.offset()
                    assert part is not None and offset is not None
                    if offset + 1 >= ends.get(part, 0):
                        remaining.pop(part, None)
                    if part not in ends or offset >= ends[part]:
                        continue
                    summary.read += 1
                    _replay_one(msg, producer, summary, reason, dry_run)
                    if summary.read % 100 == 0:
                        bar.update(task, completed=summary.read)
                        producer.poll(0)
            bar.update(task, completed=summary.read)
        if producer.flush(60) > 0:
            raise ReplayError("some replayed records were not acknowledged by Kafka; run again")
    except KafkaException as exc:
        raise ReplayError(
            f"Kafka error during replay: {exc}; check --bootstrap-servers and -X"
        ) from None
    finally:
        reader.close()
    return summary


def _replay_one(
    msg: Any, producer: Producer, summary: ReplaySummary, reason: str | None, dry_run: bool
) -> None:
    headers = list(msg.headers() or [])
    by_name = dict(headers)
    source = by_name.get(f"{_ERROR_PREFIX}topic")
    why = _reason(by_name)
    if not source or (reason is not None and why != reason):
        summary.skipped += 1
        return
    kept = [(k, v) for k, v in headers if not k.startswith(_ERROR_PREFIX) and k != REPLAY_HEADER]
    kept.append((REPLAY_HEADER, str(replay_round(headers) + 1).encode()))
    topic = source.decode()
    if not dry_run:
        producer.produce(topic, value=msg.value(), key=msg.key(), headers=kept)
    summary.replayed += 1
    summary.by_topic[topic] += 1
    summary.by_reason[why] += 1
