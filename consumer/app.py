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
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaError, Message

from consumer.config import Config, Destination
from consumer.deadletter import STAGE_DECODE, STAGE_SINK, STAGE_TRANSFORM, DeadLetterQueue
from consumer.decode import (
    DecodeError,
    Decoder,
    DirectorySchemaResolver,
    RegistrySchemaResolver,
    RegistryUnavailable,
)
from consumer.health import Health
from consumer.metrics import Metrics
from consumer.offsets import OffsetTracker, TopicPartition
from consumer.record import Record
from consumer.replay import rekey_for_replay
from consumer.sink.batch import BatchSink
from consumer.sink.client import Abandoned, FullStoryClient, Rejected
from consumer.sink.contract import Job, Sink
from consumer.sink.realtime import RealtimeSink
from consumer.sink.retry import Backoff
from consumer.source import Commits, KafkaSource, Partitions, consumer_config
from consumer.transform import Invalid, Request, Requests, Skipped, transform

log = logging.getLogger(__name__)

LAG_INTERVAL = 5.0  # seconds between lag gauge updates
COMMIT_INTERVAL = 1.0  # seconds between explicit commits (batch delivery)


def _epoch(value: object) -> float | None:
    """Segment's receivedAt (ISO-8601) as Unix seconds, for the freshness metric."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _decoder(config: Config) -> Decoder:
    if config.framing == "raw":
        return Decoder("raw")
    registry = config.registry_settings()
    if registry is not None:
        return Decoder("confluent", RegistrySchemaResolver(registry))
    schema_dir = config.schema_dir or Path("schemas/registry")
    return Decoder("confluent", DirectorySchemaResolver(schema_dir))


class Pipeline:
    """One consumer-group member; `run` returns after a clean shutdown."""

    def __init__(self, config: Config, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.health = Health()
        self._blocked: dict[TopicPartition, float] = {}  # waiting for the registry: retry time
        self._registry_failures = 0
        self._registry_backoff = Backoff(base=0.5, cap=30.0)
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
        self._sink: Sink
        if config.delivery == "batch":
            self._sink = BatchSink(
                self._delivered,
                self._fail,
                max_items=config.batch_max_items,
                linger=config.batch_linger,
                max_jobs_in_flight=config.batch_max_jobs,
                poll_interval=config.batch_poll_interval,
                persist=self._persist,
            )
        else:
            self._sink = RealtimeSink(config.concurrency, self._delivered, self._fail)
        self._source: KafkaSource | None = None
        self._committed: dict[TopicPartition, tuple[int, str]] = {}
        self._drained = False
        self._delivered_by_topic: dict[str, Any] = {}
        self._finished_any = False
        self._last_received_at: object = None

    def stop(self) -> None:
        """Ask for a graceful stop: drain, commit, leave the group."""
        self._stop.set()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            self.health.failure = type(exc).__name__
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
                connections=max(self.config.concurrency, 2 * self.config.batch_max_jobs + 1),
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
                self.config.bootstrap_servers,
                self.config.group_id,
                self.config.kafka,
                auto_commit=self.config.delivery != "batch",
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
            await self._drain_polling(self.config.drain_timeout)
            await self._source.commit(self._commits(self._tracker.owned()))
            self._drained = True  # the revoke that close() runs must not drain again
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
        health = self.health
        next_lag = next_commit = 0.0
        explicit = self.config.delivery == "batch"
        while not self._stop.is_set():
            messages = await source.consume(batch, 0.1)
            health.turn()
            health.brokers_up = source.brokers_up
            if messages:
                self.metrics.batch_size.labels("consume").observe(len(messages))
                self._process(messages)
            self._dlq.poll()
            self._observe_progress()
            now = time.monotonic()
            if not explicit:
                source.store(self._tracker.committable())
            elif now >= next_commit:
                next_commit = now + COMMIT_INTERVAL
                await source.commit(
                    self._commits(self._tracker.owned(), changed_only=True), asynchronous=True
                )
            self._unblock()
            self._backpressure()
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL
                self._update_lag()
                if not source.brokers_up:
                    await source.probe()
            # Let the sink's lanes run between batches even when Kafka returns at once.
            await asyncio.sleep(0)

    def _process(self, messages: list[Message]) -> None:
        tracker = self._tracker
        metrics = self.metrics
        blocked = self._blocked
        consumed: Counter[str] = Counter()
        decoded: Counter[str] = Counter()
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
            if generation is None or tp in blocked:
                continue  # revoked since the fetch, or waiting for the registry (re-read later)
            offset = cast(int, msg.offset())
            error: DecodeError | None = None
            try:
                event = self._decoder.decode(msg.value())
            except RegistryUnavailable as exc:
                self._block(tp, offset, exc)
                continue
            except DecodeError as exc:
                error = exc
            headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            record = Record(
                topic,
                tp[1],
                offset,
                msg.key(),
                msg.value(),
                headers,
                generation,
                msg.timestamp()[1] / 1000.0,
            )
            tracker.track(tp, offset, record.timestamp)
            self._in_flight += 1
            self._in_flight_bytes += record.size
            consumed[topic] += 1
            if error is not None:
                self._dead_letter(record, STAGE_DECODE, error.reason, "DecodeError", str(error))
                continue
            decoded[topic] += 1
            record.received_at = event.get("receivedAt")
            dest = self._by_topic[topic]
            outcome = transform(event, dest.settings)
            if isinstance(outcome, Requests):
                requests = outcome.requests
                if headers:
                    requests = rekey_for_replay(requests, headers)
                if dest.settings.debug:
                    self._log_requests(record, requests)
                self._sink.submit(Job(record, requests, self._clients[dest.name]))
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
        for topic, n in consumed.items():  # counted per batch: labels() costs per call
            metrics.records_consumed.labels(topic).inc(n)
        for topic, n in decoded.items():
            metrics.records_decoded.labels(topic).inc(n)
        metrics.in_flight_records.set(self._in_flight)
        metrics.in_flight_bytes.set(self._in_flight_bytes)

    def _observe_progress(self) -> None:
        """Once per loop turn, not per record: the last-processed time, and the freshness of
        the last delivered event (now minus its Segment receivedAt)."""
        if self._finished_any:
            self._finished_any = False
            self.metrics.last_processed.set(time.time())
        if self._last_received_at is not None:
            received = _epoch(self._last_received_at)
            self._last_received_at = None
            if received is not None:
                age = time.time() - received
                self.metrics.freshness.set(age)
                self.metrics.freshness_histogram.observe(age)

    @staticmethod
    def _log_requests(record: Record, requests: tuple[Request, ...]) -> None:
        """The `debug` setting: each mapped request (the key is in no request, so never here)."""
        for req in requests:
            log.info(
                "mapped request",
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "method": req.method,
                    "path": req.path,
                    "body": req.body,
                    "idempotency_key": req.idempotency_key,
                },
            )

    def _block(self, tp: TopicPartition, offset: int, exc: Exception) -> None:
        """The schema registry is unreachable: re-read this partition from `offset` later.
        Nothing is dead-lettered for an outage; the partition waits, paused."""
        source = self._source
        assert source is not None
        retry = self._registry_backoff.delay(self._registry_failures)
        self._registry_failures += 1
        self._blocked[tp] = time.monotonic() + retry
        source.pause([tp])
        source.seek(tp, offset)
        self.metrics.retries.labels("registry").inc()
        log.warning(
            "schema registry unavailable; partition paused",
            extra={
                "topic": tp[0],
                "partition": tp[1],
                "offset": offset,
                "retry_in_seconds": round(retry, 2),
                "error": str(exc),
            },
        )

    def _unblock(self) -> None:
        if not self._blocked:
            return
        now = time.monotonic()
        due = [tp for tp, at in self._blocked.items() if at <= now]
        for tp in due:
            del self._blocked[tp]
        if due and not self._paused and self._source is not None:
            self._source.resume(due)
        if due and len(self._blocked) == 0:
            self._registry_failures = 0

    def _update_lag(self) -> None:
        """Per-partition lag in records (end offset minus first offset not done) and seconds."""
        source = self._source
        assert source is not None
        now = time.time()
        for tp in self._tracker.owned():
            high = source.high_watermark(tp)
            position, oldest = self._tracker.position(tp)
            if high is None or position is None:
                continue
            lag = max(0, high - position)
            labels = (tp[0], str(tp[1]))
            self.metrics.lag_records.labels(*labels).set(lag)
            self.metrics.lag_seconds.labels(*labels).set(max(0.0, now - oldest) if oldest else 0.0)

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
            metrics = self.metrics
            delivered = self._delivered_by_topic.get(record.topic)
            if delivered is None:
                delivered = metrics.records_delivered.labels(record.topic)
                self._delivered_by_topic[record.topic] = delivered
            delivered.inc()
            if record.received_at is not None:
                self._last_received_at = record.received_at
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
        self._finished_any = True

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
            self._sink.flush()  # nothing more can join what is waiting to be grouped
            self.metrics.paused_partitions.set(len(self._tracker.owned()))
        elif under and self._paused:
            self._paused = False
            source.resume([tp for tp in self._tracker.owned() if tp not in self._blocked])
            self.metrics.paused_partitions.set(0)
        self.metrics.in_flight_records.set(self._in_flight)
        self.metrics.in_flight_bytes.set(self._in_flight_bytes)

    async def _assigned(self, metadata: dict[TopicPartition, str]) -> None:
        """Track new partitions (restoring the batch plans their last owner committed); pause
        them at once when backpressure is on."""
        tps = list(metadata)
        for tp, plan in metadata.items():
            self._tracker.assign(tp)
            self._sink.restore(tp, plan)
        self.health.joined = True
        if self._paused and self._source is not None:
            self._source.pause(tps)  # new partitions must not slip past backpressure
            self.metrics.paused_partitions.set(len(self._tracker.owned()))
        self.metrics.rebalances.labels("assign").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.info("partitions assigned", extra={"partitions": [f"{t}-{p}" for t, p in tps]})

    async def _revoked(self, tps: Partitions) -> Commits:
        """Drain the revoked partitions within the budget; returns what to commit for them
        (done offsets, and the plan of batches still running), which the source commits before
        releasing them."""
        owned = [tp for tp in tps if self._tracker.generation(tp) is not None]
        released = self._release(owned)
        budget = 0.0 if self._drained else self.config.drain_timeout
        drained = await self._drain(owned, budget)
        if not drained:  # the acks would be ignored now: send nothing more of these
            released += self._release(owned, everything=True)
        commits = self._commits(owned)
        for tp in owned:
            self._forget(tp)
        self.metrics.rebalances.labels("revoke").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.info(
            "partitions revoked",
            extra={
                "partitions": [f"{t}-{p}" for t, p in tps],
                "drained": drained,
                "released": released,
            },
        )
        if commits:
            self.metrics.commits.labels("revoke").inc()
        return commits

    def _release(self, tps: Partitions, *, everything: bool = False) -> int:
        """Take back from the sink the revoked partitions' work that has not started (see
        `RealtimeSink.release`): it is no longer in flight here, and stays uncommitted for the
        next owner. Returns how many."""
        released = self._sink.release(set(tps), everything=everything)
        for job in released:
            record = job.record
            self._tracker.release(record.tp)
            self._in_flight -= 1
            self._in_flight_bytes -= record.size
        return len(released)

    async def _lost(self, tps: Partitions) -> None:
        """Lost partitions are someone else's already: forget them, and their work that has
        not started, and commit nothing."""
        self._release(tps, everything=True)
        for tp in tps:
            self._forget(tp)
        self.metrics.rebalances.labels("lost").inc()
        self.metrics.assigned_partitions.set(len(self._tracker.owned()))
        log.warning(
            "partitions lost; their in-flight work will be redelivered elsewhere",
            extra={"partitions": [f"{t}-{p}" for t, p in tps]},
        )

    def _forget(self, tp: TopicPartition) -> None:
        self._tracker.revoke(tp)
        self._sink.forget(tp)
        self._committed.pop(tp, None)
        self._blocked.pop(tp, None)
        self.metrics.forget_partition(*tp)

    async def _drain(self, tps: Partitions, timeout: float) -> bool:
        """Wait (within a budget) until these partitions have nothing in flight."""
        self._sink.flush()  # the poll thread waits for this drain: no record can join a batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self._tracker.in_flight(tp) for tp in tps):
            if loop.time() >= deadline or self._fatal is not None:
                return False
            self._dlq.poll()
            await asyncio.sleep(0.01)
        return True

    async def _drain_polling(self, timeout: float) -> bool:
        """The shutdown drain: every partition paused, and the consumer still polled (it
        returns nothing now) so that a long drain does not exceed max.poll.interval.ms and
        cost the group membership whose commits are about to be made."""
        source = self._source
        assert source is not None
        owned = self._tracker.owned()
        source.pause(owned)
        self._sink.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(self._tracker.in_flight(tp) for tp in owned):
            if loop.time() >= deadline or self._fatal is not None:
                return False
            await source.consume(self.config.poll_batch, 0.05)  # paused: nothing is tracked
            self.health.turn()
            self._dlq.poll()
        return True

    def _commits(self, tps: Partitions, *, changed_only: bool = False) -> Commits:
        """For each partition: the first offset not done, with the batch plan as metadata."""
        commits: Commits = []
        for tp in tps:
            position, _ = self._tracker.position(tp)
            if position is None:
                continue
            entry = (position, self._sink.plan(tp))
            if changed_only and self._committed.get(tp) == entry:
                continue
            self._committed[tp] = entry
            commits.append((tp[0], tp[1], *entry))
        if commits:
            self.metrics.commits.labels("explicit").inc()
        return commits

    async def _persist(self, tp: TopicPartition, plan: str) -> None:
        """Batch delivery: record a partition's segment plan in Kafka before its import jobs
        are created, so whoever reads the partition next forms the same jobs again."""
        position, _ = self._tracker.position(tp)
        if self._source is None or position is None or self._tracker.generation(tp) is None:
            raise Abandoned()  # no longer ours: the next owner decides its own segments
        self._committed[tp] = (position, plan)
        await self._source.commit([(tp[0], tp[1], position, plan)])


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
