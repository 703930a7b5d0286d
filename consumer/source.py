"""The Kafka side: the `Source` interface the pipeline reads through, and `KafkaSource`, a
consumer-group member whose consume calls run on a thread of its own, so the asyncio loop that
drives the sink never blocks. Rebalance callbacks run on that thread; they hand the work to the
loop and wait for it, so all pipeline state is touched by the loop alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from consumer.errors import UserError
from consumer.record import Partition

log = logging.getLogger(__name__)
T = TypeVar("T")

Partitions = list[Partition]
# (topic, partition, next offset, commit metadata); "" = no metadata.
Commits = list[tuple[str, int, int, str]]


@dataclass(frozen=True)
class Listeners:
    """What the source calls, on the loop, when the group's assignment changes."""

    # Newly assigned partitions with the metadata of their committed offsets.
    assigned: Callable[[dict[Partition, str]], Coroutine[Any, Any, None]]
    # Revoked partitions: returns what to commit for them before they are released.
    revoked: Callable[[Partitions], Coroutine[Any, Any, Commits]]
    # Partitions already owned by another member: commit nothing.
    lost: Callable[[Partitions], Coroutine[Any, Any, None]]
    # Partitions whose commit the broker refused (e.g. during a rebalance): commit them again.
    commit_failed: Callable[[Partitions], None] = lambda _tps: None


class Source(Protocol):
    """What the pipeline needs of Kafka; `KafkaSource` is the real one, tests pass fakes."""

    brokers_up: bool

    async def check_reachable(self, timeout: float) -> None: ...
    async def subscribe(self) -> None: ...
    async def consume(self, max_records: int, timeout: float) -> list[Message]: ...
    def pause(self, tps: Partitions) -> None: ...
    def resume(self, tps: Partitions) -> None: ...
    def seek(self, tp: Partition, offset: int) -> None: ...
    def high_watermark(self, tp: Partition) -> int | None: ...
    async def commit(self, commits: Commits, *, asynchronous: bool = False) -> Partitions: ...
    async def probe(self, timeout: float = 2.0) -> None: ...
    async def close(self) -> None: ...


class KafkaUnavailable(UserError):
    """The brokers could not be reached, or the client failed fatally while running."""

    exit_code = 1


class KafkaSettingsError(UserError):
    """librdkafka refused a setting of the [kafka] table or -X (it checks them as a client is
    made, before connecting)."""

    @classmethod
    def of(cls, exc: KafkaException) -> KafkaSettingsError:
        reason = exc.args[0].str() if exc.args else str(exc)
        return cls(f"the Kafka client refused its settings: {reason}; fix the [kafka] table or -X")


# What the pipeline's correctness relies on; a user's [kafka] table may not change these.
_FORCED = {
    # Every commit is explicit: the done offsets with the sink's plan as metadata.
    "enable.auto.offset.store": False,
    "enable.auto.commit": False,
}
_DEFAULTS = {
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    # Bound librdkafka's prefetch: the defaults (64 MiB queued, 50 MiB per fetch) defeat
    # backpressure and make memory grow with the backlog; a few MiB keep up with ~50k events/s.
    "queued.max.messages.kbytes": 4096,
    "fetch.max.bytes": 4 * 1024 * 1024,
    # With so small a queue it is often full: look again after 10 ms, not the default 1 s
    # (which capped batch delivery at ~16k events/s here).
    "fetch.queue.backoff.ms": 10,
    "session.timeout.ms": 45000,
    "max.poll.interval.ms": 300000,
}


EARLIEST, LATEST = "earliest", "latest"


def start_position(text: str) -> int:
    """The `start_from` option as an offset for a partition without a committed one: Kafka's
    OFFSET_BEGINNING or OFFSET_END, or an instant in ms (to look up with offsets for times).
    ValueError when it is none of these."""
    word = text.strip().lower()
    if word == EARLIEST:
        return OFFSET_BEGINNING
    if word == LATEST:
        return OFFSET_END
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


def consumer_config(bootstrap: str, group_id: str, extra: dict[str, str]) -> dict[str, Any]:
    """librdkafka settings: the user's, but never the ones correctness relies on."""
    return {**_DEFAULTS, **extra, "bootstrap.servers": bootstrap, "group.id": group_id, **_FORCED}


class KafkaSource:
    """A `Source`: subscribes, consumes messages, pauses and resumes, commits offsets."""

    def __init__(
        self,
        config: dict[str, Any],
        topics: list[str],
        loop: asyncio.AbstractEventLoop,
        listeners: Listeners,
        revoke_timeout: float,
        start_from: str | None = None,
    ) -> None:
        self._loop = loop
        self._start = None if start_from is None else start_position(start_from)
        self._listeners = listeners
        self._revoke_timeout = revoke_timeout
        self._bootstrap = config["bootstrap.servers"]
        self._fatal: KafkaError | None = None
        self.brokers_up = True  # False from "all brokers down" until a consume succeeds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-poll")
        try:
            self._consumer = Consumer(
                {
                    **config,
                    "error_cb": self._error,
                    "on_commit": self._commit_result,
                    "logger": logging.getLogger("consumer.kafka"),
                }
            )
        except KafkaException as exc:
            raise KafkaSettingsError.of(exc) from None
        self._topics = topics
        self._commit_queue: queue.SimpleQueue[
            tuple[Commits, bool, concurrent.futures.Future[Partitions]]
        ] = queue.SimpleQueue()

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

    def _commit_result(
        self, err: KafkaError | None, partitions: list[TopicPartition]
    ) -> Partitions:
        """A commit's result (poll thread): librdkafka's `on_commit` for asynchronous commits,
        `commit_now` for synchronous ones (which never reach `on_commit`). A refused one is
        handed to the loop, which commits those partitions again: the periodic commit sends
        only changed positions, so a lost commit of a partition with nothing left to do would
        otherwise stay behind until shutdown. Returns the refused partitions."""
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return []
        errors = [p.error for p in partitions if p.error is not None]
        failed = [
            (p.topic, p.partition) for p in partitions if err is not None or p.error is not None
        ]
        if failed:
            reason = err.str() if err is not None else str(errors[0])
            log.warning(
                "offset commit refused; committing again",
                extra={"partitions": [f"{t}-{p}" for t, p in failed], "error": reason},
            )
            self._loop.call_soon_threadsafe(self._listeners.commit_failed, failed)
        return failed

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

    def _bridge(
        self,
        listener: Callable[[Partitions], Coroutine[Any, Any, T]],
        partitions: list[TopicPartition],
    ) -> T:
        """Run a listener on the loop and wait for it (we are on the poll thread)."""
        tps = [(p.topic, p.partition) for p in partitions]
        return self._wait(asyncio.run_coroutine_threadsafe(listener(tps), self._loop))

    def _wait(self, future: concurrent.futures.Future[T]) -> T:
        """Wait for the loop, serving the commits it asks for meanwhile (it may need one to
        finish what it is draining, and only this thread may commit now)."""
        deadline = time.monotonic() + self._revoke_timeout + 30
        while True:
            try:
                return future.result(timeout=0.05)
            except concurrent.futures.TimeoutError:
                if time.monotonic() > deadline:
                    raise
                self._serve_commits()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Read the committed offsets here, on the thread that owns the consumer; assign before
        # the listener runs, so that it may pause the new partitions before any fetch.
        metadata: dict[Partition, str] = {(p.topic, p.partition): "" for p in partitions}
        committed: list[TopicPartition] = []
        if partitions:
            try:
                committed = consumer.committed(partitions, timeout=10)
            except KafkaException as exc:
                log.warning("cannot read committed offsets' metadata", extra={"error": str(exc)})
            for tp in committed:
                metadata[(tp.topic, tp.partition)] = tp.metadata or ""
        if self._start is not None and committed:
            partitions = self._starts(consumer, committed, self._start)
        consumer.incremental_assign(partitions)
        self._wait(asyncio.run_coroutine_threadsafe(self._listeners.assigned(metadata), self._loop))

    def _starts(
        self, consumer: Consumer, committed: list[TopicPartition], start: int
    ) -> list[TopicPartition]:
        """`start_from` for the partitions without a committed offset; the others continue."""
        kept = [tp for tp in committed if tp.offset >= 0]
        if kept:
            log.info(
                "start_from ignored for partitions with committed offsets",
                extra={"partitions": [f"{tp.topic}-{tp.partition}" for tp in kept]},
            )
        new = [TopicPartition(tp.topic, tp.partition, start) for tp in committed if tp.offset < 0]
        if new and start >= 0:  # an instant: the first offset at or after it, else the end (-1)
            try:
                new = consumer.offsets_for_times(new, timeout=10)
            except KafkaException as exc:
                raise KafkaUnavailable(f"cannot look up start_from's offsets: {exc}") from None
        if new:
            log.info(
                "partitions without committed offsets start from start_from",
                extra={"partitions": {f"{tp.topic}-{tp.partition}": tp.offset for tp in new}},
            )
        return [*(TopicPartition(tp.topic, tp.partition) for tp in kept), *new]

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The listener drains the partitions and says what is done; commit it here, on the
        # thread that owns the consumer, before the partitions are released.
        self.commit_now(self._bridge(self._listeners.revoked, partitions))
        consumer.incremental_unassign(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost partitions belong to someone else already: forget them, commit nothing.
        self._bridge(self._listeners.lost, partitions)
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

    def seek(self, tp: Partition, offset: int) -> None:
        """Read a partition again from `offset` (for records that must wait and be re-read)."""
        try:
            self._consumer.seek(TopicPartition(tp[0], tp[1], offset))
        except KafkaException as exc:
            log.warning(
                "seek failed", extra={"topic": tp[0], "partition": tp[1], "error": str(exc)}
            )

    def high_watermark(self, tp: Partition) -> int | None:
        """The partition's end offset as last seen by the fetcher (no broker round trip)."""
        try:
            _low, high = self._consumer.get_watermark_offsets(
                TopicPartition(tp[0], tp[1]), cached=True
            )
        except KafkaException:
            return None
        return int(high) if high is not None and high >= 0 else None

    def commit_now(self, commits: Commits, *, asynchronous: bool = False) -> Partitions:
        """Commit offsets with their metadata (synchronous unless asked). Call it on the poll
        thread (`commit`) or while no consume runs: librdkafka may be inside a rebalance
        callback there. Returns the partitions a synchronous commit was refused for (an
        asynchronous one's refusals come later, through `commit_failed`)."""
        if not commits:
            return []
        offsets = [TopicPartition(t, p, o, metadata=m) for t, p, o, m in commits]
        try:
            if asynchronous:  # two calls: the client's type hints overload on the literal
                self._consumer.commit(offsets=offsets, asynchronous=True)
                return []
            # per-partition errors come back in the result, not as an exception
            return self._commit_result(
                None, self._consumer.commit(offsets=offsets, asynchronous=False) or []
            )
        except KafkaException as exc:
            error = exc.args[0] if exc.args else KafkaError(KafkaError._FAIL)
            return self._commit_result(error, offsets)

    async def commit(self, commits: Commits, *, asynchronous: bool = False) -> Partitions:
        """Commit on the poll thread, in order with consumes and never racing a rebalance: the
        request is served by the poll thread as soon as it is free, or from inside a rebalance
        callback that is waiting for the loop. Returns what `commit_now` does."""
        done: concurrent.futures.Future[Partitions] = concurrent.futures.Future()
        self._commit_queue.put((commits, asynchronous, done))
        self._loop.run_in_executor(self._thread, self._serve_commits)
        return await asyncio.wrap_future(done)

    def _serve_commits(self) -> None:
        """Run the queued commit requests (poll thread only)."""
        while True:
            try:
                commits, asynchronous, done = self._commit_queue.get_nowait()
            except queue.Empty:
                return
            try:
                refused = self.commit_now(commits, asynchronous=asynchronous)
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(refused)

    async def close(self) -> None:
        """Leave the group (runs the revoke callback, so the final drain happens there)."""
        await self._run(self._consumer.close)
        self._thread.shutdown(wait=True)
