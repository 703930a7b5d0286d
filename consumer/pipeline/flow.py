"""Which partitions may be read now, in one place: every owned partition pauses when too much is in
flight (and resumes below half of both bounds), and a partition whose schema the registry cannot
serve waits, paused and rewound to that record, until a backoff says to try again (or, while the
schema is still being fetched off the loop, for a moment).

The poll loop never waits for the sink: this is how the sink's pace reaches Kafka."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from consumer.metrics import Metrics
from consumer.pipeline.ledger import Ledger
from consumer.record import Partition
from consumer.sink.retry import Backoff
from consumer.source import Source

log = logging.getLogger(__name__)

SCHEMA_FETCH_RETRY = 0.05  # seconds before a record whose schema is being fetched is read again


class FlowControl:
    """Pauses and resumes partitions on the in-flight bounds and on registry waits."""

    def __init__(
        self,
        source: Source,
        ledger: Ledger,
        metrics: Metrics,
        *,
        max_records: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ledger = ledger
        self._metrics = metrics
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._clock = clock
        self.paused = False  # every owned partition paused by backpressure
        self._blocked: dict[Partition, float] = {}  # waiting for the registry: retry time
        self._registry_failures = 0
        self._registry_backoff = Backoff(base=0.5, cap=30.0)

    def blocked(self, tp: Partition) -> bool:
        return tp in self._blocked

    def block(self, tp: Partition, offset: int, exc: Exception) -> None:
        """The schema registry is unreachable: re-read this partition from `offset` later.
        Nothing is dead-lettered for an outage; the partition waits, paused."""
        retry = self._registry_backoff.delay(self._registry_failures)
        self._registry_failures += 1
        self._hold(tp, offset, retry)
        self._metrics.retries.labels("registry").inc()
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

    def wait_for_schema(self, tp: Partition, offset: int) -> None:
        """The record's schema is being fetched on another thread: re-read from `offset` soon.
        Not a registry failure, so the backoff does not grow and no retry is counted."""
        self._hold(tp, offset, SCHEMA_FETCH_RETRY)
        log.debug(
            "writer schema being fetched; partition paused",
            extra={"topic": tp[0], "partition": tp[1], "offset": offset},
        )

    def wait_for_budget(self, tp: Partition, offset: int, seconds: float) -> None:
        """The destination's budget is exhausted (`when_exhausted = "pause"`): re-read from
        `offset` when the next cycle starts, `seconds` from now. Membership is kept (the
        consumer goes on polling) and nothing is skipped."""
        self._hold(tp, offset, seconds)
        log.info(
            "server-event budget exhausted; partition paused until the next cycle",
            extra={
                "topic": tp[0],
                "partition": tp[1],
                "offset": offset,
                "resume_in_seconds": round(seconds, 1),
            },
        )

    def _hold(self, tp: Partition, offset: int, delay: float) -> None:
        """Pause the partition and rewind it to `offset` for `delay` seconds."""
        self._blocked[tp] = self._clock() + delay
        self._source.pause([tp])
        self._source.seek(tp, offset)

    def update(self) -> bool:
        """Once per loop turn: resume registry waits that are due, then apply the bounds.
        True when it just paused everything: then nothing more can join what the sink holds
        back to group, which the caller should send now."""
        self._unblock()
        ledger = self._ledger
        over = ledger.records >= self._max_records or ledger.bytes >= self._max_bytes
        under = ledger.records <= self._max_records // 2 and ledger.bytes <= self._max_bytes // 2
        if over and not self.paused:
            self.paused = True
            self._source.pause(ledger.owned())
            self._metrics.paused_partitions.set(len(ledger.owned()))
            return True
        if under and self.paused:
            self.paused = False
            self._source.resume([tp for tp in ledger.owned() if tp not in self._blocked])
            self._metrics.paused_partitions.set(0)
        self._metrics.in_flight_records.set(ledger.records)
        self._metrics.in_flight_bytes.set(ledger.bytes)
        return False

    def _unblock(self) -> None:
        if not self._blocked:
            return
        now = self._clock()
        due = [tp for tp, at in self._blocked.items() if at <= now]
        for tp in due:
            del self._blocked[tp]
        if due and not self.paused:
            self._source.resume(due)
        if due and not self._blocked:
            self._registry_failures = 0

    def assigned(self, tps: list[Partition]) -> None:
        """New partitions must not slip past backpressure."""
        if self.paused:
            self._source.pause(tps)
            self._metrics.paused_partitions.set(len(self._ledger.owned()))

    def forget(self, tp: Partition) -> None:
        self._blocked.pop(tp, None)
