"""The budget topic: one partition holding every member's claims in one order (docs/budget.md).

`BudgetLog` appends this member's claims and reads everyone's back on a thread of its own,
applying them in log order to a `Book` on the event loop; a claim's verdict is known once the
reader has reached it. `read_book` replays the whole log once, for `budget status`.

The topic is created with one partition (the order is the point) and a retention of 62 days:
enough for every claim of a monthly cycle, and older cycles age out on their own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from consumer.errors import UserError
from consumer.policy.budget import Book, Claim

log = logging.getLogger(__name__)

RETENTION_MS = 62 * 24 * 3600 * 1000


class BudgetLogError(UserError):
    """The budget topic cannot be created or read; the message says what to do."""

    exit_code = 1


def _ensure_topic(settings: dict[str, Any], topic: str, timeout: float) -> None:
    """Create the one-partition topic unless it exists (a user may create it beforehand)."""
    admin = AdminClient(settings)
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BudgetLogError(
            f"cannot reach Kafka to check the budget topic {topic!r}: {exc}"
        ) from None
    if topic in meta.topics:
        if len(meta.topics[topic].partitions) != 1:
            raise BudgetLogError(
                f"the budget topic {topic!r} has {len(meta.topics[topic].partitions)} "
                "partitions; it needs exactly one (its order decides the budget): delete it or "
                "set budget_topic to another name"
            )
        return
    new = NewTopic(topic, num_partitions=1, config={"retention.ms": str(RETENTION_MS)})
    try:
        admin.create_topics([new], operation_timeout=timeout)[topic].result(timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise BudgetLogError(
            f"cannot create the budget topic {topic!r} ({exc}); create it with one partition "
            f"and retention.ms={RETENTION_MS}, or give this service the right to create topics"
        ) from None


def _reader(settings: dict[str, Any], topic: str) -> Consumer:
    """A consumer of the whole log that joins no group and commits nothing."""
    consumer = Consumer(
        {
            **settings,
            "group.id": f"fullstory-consumer-budget-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "logger": logging.getLogger("consumer.kafka.budget"),
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    return consumer


class BudgetLog:
    """This member's side of the budget topic. Every method runs on the event loop."""

    def __init__(self, settings: dict[str, Any], topic: str, *, member: str | None = None) -> None:
        self._settings = settings
        self.topic = topic
        self.member = member or f"{uuid.uuid4().hex[:12]}"
        self.book = Book()
        self._seq = 0
        self._waiting: dict[int, asyncio.Future[tuple[bool, ...]]] = {}
        self._listeners: list[Callable[[Claim], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def on_claim(self, listener: Callable[[Claim], None]) -> None:
        """Call `listener` after each claim (anyone's) is applied to the book."""
        self._listeners.append(listener)

    async def start(self, timeout: float = 30.0) -> None:
        """Create the topic if needed and replay it up to its end before anything is decided."""
        loop = self._loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _ensure_topic, self._settings, self.topic, timeout)
        self._producer = Producer(
            {
                **self._settings,
                "enable.idempotence": True,
                "linger.ms": 2,
                "logger": logging.getLogger("consumer.kafka.budget"),
            }
        )
        caught_up: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(
            target=self._read, args=(caught_up,), name="budget-log", daemon=True
        )
        self._thread.start()
        try:
            async with asyncio.timeout(timeout):
                await caught_up
        except TimeoutError:
            raise BudgetLogError(
                f"could not read the budget topic {self.topic!r} within {timeout:.0f} s; "
                "check that this service may read it"
            ) from None

    def _read(self, caught_up: asyncio.Future[None]) -> None:
        """The reader thread: hand every record to the loop, in order."""
        loop = self._loop
        assert loop is not None
        consumer = _reader(self._settings, self.topic)
        try:
            while not self._stop.is_set():
                messages = consumer.consume(500, 0.1)
                good = [m for m in messages if m.error() is None]
                errors = [err for m in messages if (err := m.error()) is not None]
                eof = any(err.code() == KafkaError._PARTITION_EOF for err in errors)
                if good or eof:
                    loop.call_soon_threadsafe(self._apply, good, eof, caught_up)
        finally:
            consumer.close()

    def _apply(self, messages: list[Message], eof: bool, caught_up: asyncio.Future[None]) -> None:
        for message in messages:
            value = message.value()
            claim = Claim.decode(value) if value else None
            if claim is None:
                continue
            self._applied(claim, self.book.apply(claim, message.timestamp()[1]))
        if eof and not caught_up.done():
            caught_up.set_result(None)

    def _applied(self, claim: Claim, verdicts: tuple[bool, ...]) -> None:
        """A claim is in the book: answer its writer if that is us, and tell the listeners."""
        if claim.member == self.member:
            waiting = self._waiting.pop(claim.seq, None)
            if waiting is not None and not waiting.done():
                waiting.set_result(verdicts)
        for listener in self._listeners:
            listener(claim)

    async def claim(
        self,
        destination: str,
        cycle: str,
        limit: int,
        topic: str,
        partition: int,
        records: tuple[tuple[int, int], ...],
    ) -> tuple[bool, ...]:
        """Append a claim and wait until the log says which of its records may send."""
        assert self._loop is not None, "start() first"
        self._seq += 1
        claim = Claim(destination, cycle, limit, topic, partition, records, self.member, self._seq)
        future: asyncio.Future[tuple[bool, ...]] = self._loop.create_future()
        self._waiting[claim.seq] = future
        self._produce(claim)
        return await future

    def _produce(self, claim: Claim) -> None:
        assert self._producer is not None and self._loop is not None
        loop = self._loop

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:  # librdkafka gave up retrying: append the same claim again
                log.error("budget claim not written; retrying", extra={"error": err.str()})
                loop.call_later(1.0, self._produce, claim)

        self._producer.produce(
            self.topic,
            key=f"{claim.destination}|{claim.member}|{claim.seq}".encode(),
            value=claim.encode(),
            on_delivery=delivered,
        )
        self._producer.poll(0)

    def poll(self) -> None:
        """Serve the producer's delivery reports (once per loop turn)."""
        if self._producer is not None:
            self._producer.poll(0)

    async def close(self) -> None:
        """Stop reading; claims still waiting stay unanswered (their records uncommitted)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        if self._producer is not None:
            self._producer.flush(5.0)
        for future in self._waiting.values():
            future.cancel()


def read_book(settings: dict[str, Any], topic: str, timeout: float = 30.0) -> Book:
    """The whole log applied to a book, read once without joining any group."""
    book = Book()
    consumer = _reader(settings, topic)
    try:
        try:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        except KafkaException as exc:
            raise BudgetLogError(f"cannot read the budget topic {topic!r}: {exc}") from None
        position = 0
        deadline = time.monotonic() + timeout
        while position < high:
            if time.monotonic() > deadline:
                raise BudgetLogError(f"reading the budget topic {topic!r} timed out")
            for message in consumer.consume(500, 0.5):
                if message.error() is not None:
                    continue
                position = (message.offset() or 0) + 1
                claim = Claim.decode(message.value() or b"")
                if claim is not None:
                    book.apply(claim, message.timestamp()[1])
    finally:
        consumer.close()
    return book
