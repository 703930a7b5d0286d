"""The budget stage: a `Sink` in front of the delivery mode that lets a record's server events
through only once the budget log granted them (docs/budget.md).

Per partition, records wait in order: one with server events (`POST /v2/events`) waits for the
verdict of its claim, and records behind it wait too, so a user's requests keep their order. A
partition has at most one claim in flight; the next claim takes everything that queued meanwhile,
so claims grow with the rate instead of multiplying. Records already decided (read again after a
rebalance) and, once a cycle is exhausted, every further record are decided without a claim.

A denied record is, by the destination's `when_exhausted`:
- `skip`: done without its events (`skipped: budget_exhausted`); its user requests still go;
- `pause`: handed back unsent with everything queued behind it, and its partition paused and
  rewound to it until the next cycle starts (nothing is skipped; membership is kept).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from consumer.budget_log import BudgetLog
from consumer.metrics import Metrics
from consumer.policy.cycle import Cycle
from consumer.record import Partition
from consumer.sink.contract import Job, Sink
from consumer.transform import BudgetSettings, Request

log = logging.getLogger(__name__)

EXHAUSTED = "budget_exhausted"


def server_events(requests: tuple[Request, ...]) -> int:
    """What the budget counts: each `POST /v2/events` (users and deletes are free)."""
    return sum(1 for r in requests if r.method == "POST" and r.path == "/v2/events")


@dataclass(slots=True)
class _Waiting:
    job: Job
    events: int
    verdict: bool | None = None  # None: not decided yet


@dataclass(slots=True)
class _Destination:
    name: str
    budget: BudgetSettings
    cycle: Cycle | None = None
    warned: str = ""  # the cycle id whose warning line was logged
    exhausted_logged: str = ""


class BudgetGate:
    """A `Sink` that asks the budget log before handing records to `inner`."""

    def __init__(
        self,
        inner: Sink,
        budget_log: BudgetLog,
        budgets: Mapping[str, BudgetSettings],
        destination_of: Mapping[str, str],
        metrics: Metrics,
        *,
        skipped: Callable[[Job, str], None],
        rewind: Callable[[list[Job]], None],
        pause: Callable[[Partition, int, float], None],
        clock: Callable[[], float] = time.time,
        scope: str = "",
    ) -> None:
        self._inner = inner
        # Prefixed to the topic in claims: a backfill's decisions on old offsets are its own,
        # apart from the group's on the same partitions; the cycle's count is shared.
        self._scope = scope
        self._log = budget_log
        self._destinations = {name: _Destination(name, b) for name, b in budgets.items()}
        self._destination_of = destination_of  # topic → destination name
        self._metrics = metrics
        self._skipped = skipped
        self._rewind = rewind
        self._pause = pause
        self._clock = clock
        self._queues: dict[Partition, deque[_Waiting]] = {}
        self._claiming: set[Partition] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        budget_log.on_claim(self._observed)

    # -- the Sink interface -------------------------------------------------------------------

    def start(self) -> None:
        self._inner.start()
        for dest in self._destinations.values():
            self._current(dest)

    def submit(self, job: Job) -> None:
        tp = job.record.tp
        dest = self._destinations.get(self._destination_of[job.record.topic])
        events = server_events(job.requests)
        queue = self._queues.get(tp)
        if dest is None or (events == 0 and not queue):
            self._inner.submit(job)
            return
        if queue is None:
            queue = self._queues[tp] = deque()
        queue.append(_Waiting(job, events, None if events else True))
        self._advance(tp, dest)

    def release(self, partitions: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """Waiting records never started: they all go back, then the inner sink's."""
        back: list[Job] = []
        for tp in partitions:
            queue = self._queues.pop(tp, None)
            if queue:
                back.extend(w.job for w in queue)
        return back + self._inner.release(partitions, everything=everything)

    def plan(self, partition: Partition) -> str:
        return self._inner.plan(partition)

    def restore(self, partition: Partition, metadata: str | None) -> None:
        self._inner.restore(partition, metadata)

    def forget(self, partition: Partition) -> None:
        self._queues.pop(partition, None)
        self._inner.forget(partition)

    def flush(self) -> None:
        self._inner.flush()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._inner.close()

    # -- deciding -------------------------------------------------------------------------------

    def _current(self, dest: _Destination) -> Cycle:
        """The destination's cycle now; a new one starts fresh."""
        now = self._clock()
        cycle = dest.cycle
        if cycle is None or now >= cycle.end.timestamp():
            cycle = dest.cycle = dest.budget.cycle_at(datetime.fromtimestamp(now, UTC))
            self._report(dest)
        return cycle

    def _advance(self, tp: Partition, dest: _Destination) -> None:
        """Decide what the book already knows, send what is decided at the head of the
        queue, and claim the rest (one claim per partition at a time)."""
        queue = self._queues.get(tp)
        if not queue:
            return
        cycle = self._current(dest)
        book = self._log.book
        count = book.count(dest.name, cycle.id)
        key = (dest.name, cycle.id, self._scope + tp[0], tp[1])
        for waiting in queue:
            if waiting.verdict is None:
                known = book.known(key, waiting.job.record.offset)
                if known is None and count is not None and count.exhausted:
                    known = False
                waiting.verdict = known
        while queue and queue[0].verdict is not None:
            waiting = queue.popleft()
            if waiting.verdict:
                self._inner.submit(waiting.job)
            elif not self._deny(tp, dest, cycle, waiting, queue):
                return
        if not queue:
            del self._queues[tp]
            return
        if tp not in self._claiming:
            records = tuple(
                (w.job.record.offset, w.events) for w in queue if w.verdict is None and w.events
            )
            if records:
                self._claiming.add(tp)
                task = asyncio.create_task(self._claim(tp, dest, cycle, records))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _deny(
        self,
        tp: Partition,
        dest: _Destination,
        cycle: Cycle,
        waiting: _Waiting,
        queue: deque[_Waiting],
    ) -> bool:
        """A record the budget refused; False when the partition stops here (pause)."""
        if dest.exhausted_logged != cycle.id:
            dest.exhausted_logged = cycle.id
            log.warning(
                "server-event budget exhausted for this cycle",
                extra={
                    "destination": dest.name,
                    "events_per_cycle": dest.budget.events_per_cycle,
                    "cycle_end": cycle.end.isoformat(),
                    "when_exhausted": dest.budget.when_exhausted,
                },
            )
        job = waiting.job
        if dest.budget.when_exhausted == "pause":
            back = [job, *(w.job for w in queue)]  # nothing behind it has started
            queue.clear()
            self._rewind(back)
            self._pause(tp, job.record.offset, max(0.0, cycle.end.timestamp() - self._clock()))
            return False
        users = tuple(
            r for r in job.requests if not (r.method == "POST" and r.path == "/v2/events")
        )
        if users:
            self._inner.submit(Job(job.record, users, job.client))
        else:
            self._skipped(job, EXHAUSTED)
        return True

    async def _claim(
        self, tp: Partition, dest: _Destination, cycle: Cycle, records: tuple[tuple[int, int], ...]
    ) -> None:
        try:
            verdicts = await self._log.claim(
                dest.name,
                cycle.id,
                dest.budget.events_per_cycle,
                self._scope + tp[0],
                tp[1],
                records,
            )
        finally:
            self._claiming.discard(tp)
        queue = self._queues.get(tp)
        if queue is not None:
            decided = dict(zip((offset for offset, _ in records), verdicts, strict=True))
            for waiting in queue:
                if waiting.verdict is None:
                    waiting.verdict = decided.get(waiting.job.record.offset)
        self._advance(tp, dest)

    # -- what the book says -----------------------------------------------------------------------

    def _observed(self, claim_destination: object) -> None:
        """After any member's claim: the gauges, and the warning once per cycle."""
        for dest in self._destinations.values():
            self._report(dest)

    def _report(self, dest: _Destination) -> None:
        cycle = dest.cycle
        if cycle is None:
            return
        budget = dest.budget
        count = self._log.book.count(dest.name, cycle.id)
        used = count.granted if count is not None else 0
        metrics = self._metrics
        metrics.budget_limit.labels(dest.name).set(budget.events_per_cycle)
        metrics.budget_used.labels(dest.name).set(used)
        metrics.budget_cycle_end.labels(dest.name).set(cycle.end.timestamp())
        metrics.budget_warn_ratio.labels(dest.name).set(budget.warn_at)
        if (
            dest.warned != cycle.id
            and budget.events_per_cycle
            and used >= budget.warn_at * budget.events_per_cycle
        ):
            dest.warned = cycle.id
            log.warning(
                "server-event budget past its warning share",
                extra={
                    "destination": dest.name,
                    "used": used,
                    "events_per_cycle": budget.events_per_cycle,
                    "warn_at": budget.warn_at,
                    "cycle_end": cycle.end.isoformat(),
                },
            )
