"""The Kafka side: a consumer-group member read in batches on a thread of its own, so the asyncio
loop that drives the sink never blocks. Rebalance callbacks run on that thread; they hand the work
to the loop and wait for it, so all pipeline state is touched by the loop alone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

Partitions = list[tuple[str, int]]
Offsets = list[tuple[str, int, int]]
Listener = Callable[[Partitions], Coroutine[Any, Any, Offsets | None]]


class KafkaUnavailable(Exception):
    """The brokers could not be reached or refused the client's configuration."""


# What the pipeline's correctness relies on; a user's [kafka] table may not change these.
_FORCED = {
    "enable.auto.offset.store": False,  # offsets are stored only for done records
    "enable.auto.commit": True,  # the stored (done) offsets are committed periodically
}
_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "auto.commit.interval.ms": 1000,
    # Bound librdkafka's prefetch: the default 64 MiB per consumer defeats backpressure.
    "queued.max.messages.kbytes": 16384,
    "session.timeout.ms": 45000,
    "max.poll.interval.ms": 300000,
}


def consumer_config(bootstrap: str, group_id: str, extra: dict[str, str]) -> dict[str, Any]:
    return {**_DEFAULTS, **extra, "bootstrap.servers": bootstrap, "group.id": group_id, **_FORCED}


class KafkaSource:
    """Subscribes, consumes batches, pauses and resumes, stores and commits offsets."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        loop: asyncio.AbstractEventLoop,
        on_assign: Listener,
        on_revoke: Listener,
        on_lost: Listener,
        revoke_timeout: float,
    ) -> None:
        self._loop = loop
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._revoke_timeout = revoke_timeout
        self._bootstrap = config["bootstrap.servers"]
        self._fatal: KafkaError | None = None
        self.brokers_up = True  # False from "all brokers down" until a consume succeeds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-poll")
        self._consumer = Consumer(
            {**config, "error_cb": self._error, "logger": logging.getLogger("consumer.kafka")}
        )
        self._topics = topics

    def _error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.brokers_up = False
            log.error(
                "cannot reach any Kafka broker; check --bootstrap-servers and the network",
                extra={"bootstrap_servers": self._bootstrap, "error": err.str()},
            )
        else:
            log.warning("kafka client error", extra={"error": err.str()})

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self._loop.run_in_executor(self._thread, fn, *args)

    async def check_reachable(self, timeout: float) -> None:
        """Fail fast with a clear message when the brokers cannot be reached at all."""
        try:
            meta = await self._run(lambda: self._consumer.list_topics(timeout=timeout))
        except KafkaException as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self._bootstrap} within {timeout:.0f} s "
                f"({exc.args[0].str() if exc.args else exc}); check --bootstrap-servers, the "
                "network, and the security settings in the [kafka] table"
            ) from None
        missing = [t for t in self._topics if t not in meta.topics]
        if missing:
            log.warning("topics do not exist yet; waiting for them", extra={"topics": missing})

    async def probe(self, timeout: float = 2.0) -> None:
        """After "all brokers down", find out whether they are back (for readiness)."""
        try:
            await self._run(lambda: self._consumer.list_topics(timeout=timeout))
        except KafkaException:
            return
        self.brokers_up = True

    async def subscribe(self) -> None:
        await self._run(
            lambda: self._consumer.subscribe(
                self._topics,
                on_assign=self._assigned,
                on_revoke=self._revoked,
                on_lost=self._lost,
            )
        )

    def _bridge(self, listener: Listener, partitions: list[TopicPartition]) -> Offsets | None:
        """Run a listener on the loop and wait for it (we are on the poll thread)."""
        tps = [(p.topic, p.partition) for p in partitions]
        future = asyncio.run_coroutine_threadsafe(listener(tps), self._loop)
        return future.result(timeout=self._revoke_timeout + 30)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign first, so the listener may pause the new partitions before any fetch.
        consumer.incremental_assign(partitions)
        self._bridge(self._on_assign, partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The listener drains the partitions and says what is done; commit it here, on the
        # thread that owns the consumer, before the partitions are released.
        self.commit_now(self._bridge(self._on_revoke, partitions) or [])
        consumer.incremental_unassign(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions belong to someone else already: forget them, commit nothing.
        self._bridge(self._on_lost, partitions)
        consumer.incremental_unassign(partitions)

    async def consume(self, max_records: int, timeout: float) -> list[Message]:
        messages: list[Message] = await self._run(self._consumer.consume, max_records, timeout)
        if self._fatal is not None:
            raise KafkaUnavailable(f"fatal Kafka client error: {self._fatal.str()}")
        if messages:
            self.brokers_up = True
        return messages

    def pause(self, tps: Partitions) -> None:
        if tps:
            self._consumer.pause([TopicPartition(t, p) for t, p in tps])

    def resume(self, tps: Partitions) -> None:
        if tps:
            self._consumer.resume([TopicPartition(t, p) for t, p in tps])

    def seek(self, tp: tuple[str, int], offset: int) -> None:
        """Read a partition again from `offset` (for records that must wait and be re-read)."""
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            log.warning(
                "seek failed", extra={"topic": tp[0], "partition": tp[1], "error": str(exc)}
            )

    def high_watermark(self, tp: tuple[str, int]) -> int | None:
        """The partition's end offset as last seen by the fetcher (no broker round trip)."""
        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp[0], tp[1]), cached=True
            )
        except KafkaException:
            return None
        return int(high) if high is not None and high >= 0 else None

    def store(self, offsets: Offsets) -> None:
        """Hand done offsets to librdkafka's auto-commit (offsets are "next to read")."""
        if not offsets:
            return
        try:
            self._consumer.store_offsets(offsets=[TopicPartition(t, p, o) for t, p, o in offsets])
        except KafkaException as exc:
            # A partition revoked meanwhile refuses the store: that is the safe outcome.
            log.info("offset store refused", extra={"error": str(exc)})

    def commit_now(self, offsets: Offsets) -> None:
        """Synchronous commit, for revokes and shutdown (never while a consume is running on the
        poll thread: librdkafka may be inside a rebalance callback there)."""
        if not offsets:
            return
        try:
            self._consumer.commit(
                offsets=[TopicPartition(t, p, o) for t, p, o in offsets], asynchronous=False
            )
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            log.warning("offset commit failed", extra={"error": str(exc)})

    async def close(self) -> None:
        """Leave the group (runs the revoke callback, so the final drain happens there)."""
        await self._run(self._consumer.close)
        self._thread.shutdown(wait=True)
