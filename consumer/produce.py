"""Put Segment events (JSON lines) or arbitrary bytes on a Kafka topic, for local runs and tests."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson
from confluent_kafka import KafkaError, Message, Producer

from consumer.codec.encode import Encoder, event_key
from consumer.codec.schema_files import SEGMENT_SCHEMA_PATH
from consumer.codec.schema_registry import (
    RegistryClient,
    RegistryError,
    RegistrySettings,
    RegistryUnavailable,
)
from consumer.errors import UserError

# Throughput defaults; anything in `config` wins.
_DEFAULTS = {
    "linger.ms": "20",
    "batch.size": "1000000",
    "compression.type": "lz4",
    "acks": "all",
}


class ProduceError(UserError):
    """`produce` cannot finish: a bad input line or option, a registry or delivery failure. The
    lines before a bad one are still delivered."""

    exit_code = 1


class _Sink:
    """A producer that remembers failed deliveries instead of dropping them silently."""

    def __init__(self, bootstrap_servers: str, config: dict[str, str] | None) -> None:
        self.producer = Producer(
            {**_DEFAULTS, **(config or {}), "bootstrap.servers": bootstrap_servers}
        )
        self.failed = 0
        self.first_error: str | None = None

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int = 0
    ) -> None:
        """Produce one message; `timestamp_ms` 0 lets the producer stamp it now."""
        while True:
            try:
                self.producer.produce(
                    topic,
                    value=value,
                    key=key,
                    timestamp=timestamp_ms,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self.producer.poll(0.1)
        self.producer.poll(0)

    def finish(self, timeout: float) -> None:
        """Wait for every delivery; raise if any message was not delivered."""
        left = self.producer.flush(timeout)
        if left:
            raise ProduceError(
                f"{left} messages still undelivered after {timeout:.0f} s; check "
                "--bootstrap-servers and that the topic exists"
            )
        if self.failed:
            raise ProduceError(f"{self.failed} messages failed delivery; first: {self.first_error}")


def json_lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, event) of each non-blank line."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ProduceError(f"{name} line {number}: not valid JSON: {exc}") from None
        if not isinstance(event, dict):
            raise ProduceError(f"{name} line {number}: not a JSON object")
        yield number, event


def register_segment_schema(
    registry: RegistrySettings | str, topic: str, subject: str | None = None
) -> int:
    """Register the repo's SegmentEvent schema under `<topic>-value` (TopicNameStrategy); its id.

    Idempotent: a schema the subject already has keeps its id.
    """
    try:
        client = RegistryClient(registry)
    except ValueError as exc:
        raise ProduceError(f"--register: {exc}") from None
    try:
        return client.register(subject or f"{topic}-value", SEGMENT_SCHEMA_PATH.read_text())
    except (RegistryError, RegistryUnavailable) as exc:
        raise ProduceError(f"cannot register the schema: {exc}; check --register") from None
    finally:
        client.close()


def produce_file(
    bootstrap_servers: str,
    topic: str,
    path: Path | str,
    framing: str = "raw",
    schema_id: int | None = None,
    config: dict[str, str] | None = None,
    flush_timeout: float = 60.0,
    register: RegistrySettings | str | None = None,
) -> int:
    """Produce each JSON line of `path` ("-" = stdin) as an Avro value keyed by user; the count.

    With `register` (a registry URL or settings) the schema is registered under `<topic>-value`
    first and the framing is Confluent with the id the registry returned.
    Every failure is a ProduceError; an invalid line's names it, and the lines before it are
    still delivered.
    """
    if framing not in ("raw", "confluent"):
        raise ProduceError(f"unknown framing {framing!r}; expected 'confluent' or 'raw'")
    if register is not None:
        if schema_id is not None:
            raise ProduceError("give either --register or --schema-id, not both")
        schema_id = register_segment_schema(register, topic)
        framing = "confluent"
    try:
        encoder = Encoder(cast(Literal["confluent", "raw"], framing), schema_id)
    except ValueError as exc:
        raise ProduceError(f"{exc}; give --schema-id or --register") from None
    stdin = str(path) == "-"
    name = "stdin" if stdin else str(path)
    count = 0
    with contextlib.ExitStack() as stack:
        try:  # before the producer exists, so a wrong path is the only message
            stream = sys.stdin.buffer if stdin else stack.enter_context(Path(path).open("rb"))
        except OSError as exc:
            raise ProduceError(f"cannot read {name} ({exc.strerror}); fix --file") from None
        sink = _Sink(bootstrap_servers, config)
        try:
            for number, event in json_lines(stream, name):
                try:
                    value = encoder.encode(event)
                except ValueError as exc:
                    raise ProduceError(f"{name} line {number}: {exc}") from None
                sink.send(topic, event_key(event), value)
                count += 1
        finally:
            sink.producer.flush(flush_timeout)  # deliver what was queued even on a bad line
    sink.finish(flush_timeout)
    return count


def produce_raw(
    bootstrap_servers: str,
    topic: str,
    values: Iterable[tuple[bytes | None, bytes | None]],
    config: dict[str, str] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce (key, value) pairs as they are (garbage and tombstones included); the count."""
    sink = _Sink(bootstrap_servers, config)
    count = 0
    for key, value in values:
        sink.send(topic, key, value)
        count += 1
    sink.finish(flush_timeout)
    return count


def produce_history(
    bootstrap_servers: str,
    topic: str,
    events: Iterable[tuple[dict[str, Any], int]],
    config: dict[str, str] | None = None,
    flush_timeout: float = 60.0,
) -> int:
    """Produce (event, Kafka timestamp in ms) pairs as raw Avro keyed by user: a topic's past, for
    a backfill or an estimate over a window. The count."""
    encoder = Encoder()
    sink = _Sink(bootstrap_servers, config)
    count = 0
    for event, timestamp_ms in events:
        sink.send(topic, event_key(event), encoder.encode(event), timestamp_ms)
        count += 1
    sink.finish(flush_timeout)
    return count
