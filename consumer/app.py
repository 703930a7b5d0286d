"""The pipeline: source → decode → transform → sink, with offsets following acknowledgements.

Every record taken from Kafka ends in exactly one way — delivered, skipped, or dead-lettered — and
only then counts as done for its partition's watermark. The poll loop never waits for the sink:
when too much is in flight it pauses the partitions and keeps polling.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import cast

from confluent_kafka import KafkaError, Message

from consumer.config import Config, Destination
from consumer.deadletter import STAGE_DECODE, STAGE_SINK, STAGE_TRANSFORM, DeadLetterQueue
from consumer.decode import DecodeError, Decoder, DirectorySchemaResolver, RegistrySchemaResolver
from consumer.metrics import Metrics
from consumer.offsets import OffsetTracker
from consumer.record import Record
from consumer.sink.client import FullStoryClient, Rejected
from consumer.sink.realtime import Job, RealtimeSink
from consumer.source import KafkaSource, Offsets, Partitions, consumer_config
from consumer.transform import Invalid, Requests, Skipped, transform

log = logging.getLogger(__name__)


def _decoder(config: Config) -> Decoder:
    if config.framing == "raw":
        return Decoder("raw")
    if config.schema_registry_url:
        return Decoder("confluent", RegistrySchemaResolver(config.schema_registry_url))
    schema_dir = config.schema_dir or Path("schemas/registry")
    return Decoder("confluent", DirectorySchemaResolver(schema_dir))


class Pipeline:
    """One consumer-group member; `run` returns after a clean shutdown."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self._tracker = OffsetTracker()
        self._by_topic: dict[str, Destination] = config.destination_for()
        self._clients: dict[str, FullStoryClient] = {}
        self._decoder = _decoder(config)
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._paused = False
        self._fatal: BaseException | None = None
        self._stop = asyncio.Event()
        task_id = f"{socket.gethostname()}-{id(self):x}"
        self._dlq = DeadLetterQueue(
            {"bootstrap.servers": config.bootstrap_servers, **_producer_settings(config.kafka)},
            self.metrics,
            connector=config.group_id,
            task_id=task_id,
            topic=config.dlq_topic,
            suffix=config.dlq_suffix,
        )
        self._sink = RealtimeSink(config.concurrency, self._delivered, self._fail)
        self._source: KafkaSource | None = None

    def stop(self) -> None:
        """Ask for a graceful stop: drain, commit, leave the group."""
        self._stop.set()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("stopping: %s", exc)
        self._stop.set()

    async def _start_clients(self) -> None:
        for dest in self.config.destinations:
            settings = dest.settings
            if dest.unknown_settings:
                log.warning(
                    "unknown destination settings ignored",
                    extra={"destination": dest.name, "keys": list(dest.unknown_settings)},
                )
            if settings.record_only_this_iframe:
                log.warning(
                    "recordOnlyThisIFrame only affects FullStory's browser snippet; it has no "
                    "effect on server-side delivery",
                    extra={"destination": dest.name},
                )
            assert settings.api_key  # checked by load_config
            client = FullStoryClient(
                settings.resolved_api_host,
                settings.api_key,
                self.metrics,
                timeout=self.config.request_timeout,
                connections=self.config.concurrency,
            )
            self._clients[dest.name] = client
            org = await client.check_credentials(settings.org)
            log.info(
                "FullStory credentials accepted",
                extra={
                    "destination": dest.name,
                    "org": org,
                    "api_host": settings.resolved_api_host,
                },
            )

    async def run(self) -> None:
        """Consume until `stop()` (or a fatal error), then drain and leave the group."""
        loop = asyncio.get_running_loop()
        try:
            await self._start_clients()
            kafka = consumer_config(
                self.config.bootstrap_servers, self.config.group_id, self.config.kafka
            )
            self._source = KafkaSource(
                kafka,
                self.config.topics,
                loop,
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._lost,
                revoke_timeout=self.config.drain_timeout,
            )
            await self._source.check_reachable(timeout=15.0)
            self._sink.start()
            await self._source.subscribe()
            log.info(
                "consuming", extra={"topics": self.config.topics, "group_id": self.config.group_id}
            )
            await self._loop()
            await self._drain(self._tracker.owned(), self.config.drain_timeout)
            self._commit(self._tracker.owned())  # the poll thread is idle now
            await self._source.close()
        finally:
            await self._sink.close()
            remaining = self._dlq.close(10.0)
            if remaining:
                log.error(
                    "dead-letter writes not acknowledged at exit; those records stay uncommitted",
                    extra={"count": remaining},
                )
            for client in self._clients.values():
                await client.aclose()
        if self._fatal is not None:
            raise self._fatal

    async def _loop(self) -> None:
        source = self._source
        assert source is not None
        batch = self.config.poll_batch
        while not self._stop.is_set():
            messages = await source.consume(batch, 0.1)
            if messages:
                self._process(messages)
            self._dlq.poll()
            source.store(self._tracker.committable())
            self._backpressure()
            # Let the sink's lanes run between batches even when Kafka returns at once.
            await asyncio.sleep(0)

    def _process(self, messages: list[Message]) -> None:
        tracker = self._tracker
        metrics = self.metrics
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka consume error", extra={"error": err.str()})
                continue
            # A message without an error always has these; the client's hints say "| None".
            topic = cast(str, msg.topic())
            tp = (topic, cast(int, msg.partition()))
            generation = tracker.generation(tp)
            if generation is None:
                continue  # from a partition revoked since the fetch: its new owner reads it
            headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            record = Record(
                topic, tp[1], cast(int, msg.offset()), msg.key(), msg.value(), headers, generation
            )
            tracker.track(tp, record.offset)
            self._in_flight += 1
            self._in_flight_bytes += record.size
            metrics.records_consumed.labels(topic).inc()
            try:
                event = self._decoder.decode(record.value)
            except DecodeError as exc:
                self._dead_letter(record, STAGE_DECODE, exc.reason, "DecodeError", str(exc))
                continue
            metrics.records_decoded.labels(topic).inc()
            dest = self._by_topic[topic]
            outcome = transform(event, dest.settings)
            if isinstance(outcome, Requests):
                if dest.settings.debug:
                    for req in outcome.requests:
                        log.info(
                            "mapped request",
                            extra={
                                "topic": topic,
                                "partition": tp[1],
                                "offset": record.offset,
                                "method": req.method,
                                "path": req.path,
                                "body": req.body,
                                "idempotency_key": req.idempotency_key,
                            },
                        )
                self._sink.submit(Job(record, outcome.requests, self._clients[dest.name]))
            elif isinstance(outcome, Skipped):
                metrics.records_skipped.labels(outcome.reason).inc()
                self._finish(record)
            elif isinstance(outcome, Invalid):
                self._dead_letter(
                    record,
                    STAGE_TRANSFORM,
                    outcome.reason,
                    "InvalidEvent",
                    f"the event cannot be mapped to FullStory: {outcome.reason}",
                )
        metrics.in_flight_records.set(self._in_flight)
        metrics.in_flight_bytes.set(self._in_flight_bytes)

    def _dead_letter(
        self, record: Record, stage: str, reason: str, exc_class: str, message: str
    ) -> None:
        log.warning(
            "dead-lettering record",
            extra={
                "stage": stage,
                "reason": reason,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
        )
        self._dlq.send(
            record,
            stage=stage,
            reason=reason,
            exception_class=exc_class,
            message=message,
            on_done=self._finish,
        )

    def _delivered(self, job: Job, rejected: Rejected | None) -> None:
        record = job.record
        if rejected is None:
            self.metrics.records_delivered.labels(record.topic).inc()
            self._finish(record)
            return
        self._dead_letter(
            record,
            STAGE_SINK,
            rejected.code,
            f"HTTP{rejected.status}",
            f"FullStory answered HTTP {rejected.status} {rejected.code}: {rejected.message}",
        )

    def _finish(self, record: Record) -> None:
        self._in_flight -= 1
        self._in_flight_bytes -= record.size
        self._tracker.done(record.tp, record.offset, record.generation)
        self.metrics.last_processed.set(time.time())

    def _backpressure(self) -> None:
        """Pause every owned partition above the bounds; resume below half of them."""
        source = self._source
        assert source is not None
        cfg = self.config
        over = (
            self._in_flight >= cfg.max_in_flight_records
            or self._in_flight_bytes >= cfg.max_in_flight_bytes
        )
        under = (
            self._in_flight <= cfg.max_in_flight_records // 2
            and self._in_flight_bytes <= cfg.max_in_flight_bytes // 2
        )
        if over and not self._paused:
            self._paused = True
            source.pause(self._tracker.owned())
            self.metrics.paused_partitions.set(len(self._tracker.owned()))
        elif under and self._paused:
            self._paused = False
            source.resume(self._tracker.owned())
            self.metrics.paused_partitions.set(0)
        self.metrics.in_flight_records.set(self._in_flight)
        self.metrics.in_flight_bytes.set(self._in_flight_bytes)

    async def _assigned(self, tps: Partitions) -> None:
        """Track new partitions; pause them at once when backpressure is on."""
        for tp in tps:
            self._tracker.assign(tp)
        if self._paused and self._source is not None:
            self._source.pause(tps)  # new partitions must not slip past backpressure
            self.metrics.paused_partitions.set(len(self._tracker.owned()))
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.info("partitions assigned", extra={"partitions": [f"{t}-{p}" for t, p in tps]})

    async def _revoked(self, tps: Partitions) -> Offsets:
        """Drain the revoked partitions within the budget; returns their done offsets, which the
        source commits before releasing them."""
        owned = [tp for tp in tps if self._tracker.generation(tp) is not None]
        drained = await self._drain(owned, self.config.drain_timeout)
        offsets = self._tracker.committable(owned, changed_only=False)
        for tp in owned:
            self._tracker.revoke(tp)
        self.metrics.rebalances.labels("revoke").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.info(
            "partitions revoked",
            extra={"partitions": [f"{t}-{p}" for t, p in tps], "drained": drained},
        )
        if offsets:
            self.metrics.commits.labels("revoke").inc()
        return offsets

    async def _lost(self, tps: Partitions) -> None:
        """Lost partitions are someone else's already: forget them and commit nothing."""
        for tp in tps:
            self._tracker.revoke(tp)
        self.metrics.rebalances.labels("lost").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.warning(
            "partitions lost; their in-flight work will be redelivered elsewhere",
            extra={"partitions": [f"{t}-{p}" for t, p in tps]},
        )

    async def _drain(self, tps: Partitions, timeout: float) -> bool:
        """Wait (within a budget) until these partitions have nothing in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self._tracker.in_flight(tp) for tp in tps):
            if loop.time() >= deadline or self._fatal is not None:
                return False
            self._dlq.poll()
            await asyncio.sleep(0.01)
        return True

    def _commit(self, tps: Partitions) -> None:
        if self._source is None:
            return
        offsets = self._tracker.committable(tps, changed_only=False)
        self._source.commit_now(offsets)
        if offsets:
            self.metrics.commits.labels("sync").inc()


def _producer_settings(kafka: dict[str, str]) -> dict[str, str]:
    """The user's connection settings (security, SASL...) that also apply to the DLQ producer."""
    consumer_only = (
        "group.",
        "auto.",
        "enable.auto",
        "partition.assignment",
        "session.",
        "max.poll",
        "fetch.",
        "queued.",
        "isolation.",
        "heartbeat.",
        "check.crcs",
        "enable.partition.eof",
        "group.instance.id",
    )
    return {k: v for k, v in kafka.items() if not k.startswith(consumer_only)}
