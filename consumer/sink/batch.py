"""Batch delivery: FullStory's asynchronous batch import jobs instead of one request per item.

Batches are segments of one partition: consecutive records, sealed when `max_items` is reached or
`linger` seconds after the first. A sealed segment becomes up to two import jobs (users, events),
run by `consumer.sink.import_job` under an Idempotency-Key derived from the segment's partition,
offset range and items; each failed item's record gets a `Rejected`. A record is done when all its
requests are.

No duplicates after a crash or a rebalance: FullStory's batch import has no per-item idempotency,
so the same records must form the same job again. Before a segment's jobs are created, the
`persist` hook writes the partition's unfinished segment ranges into the committed offset's
metadata (`plan_metadata`); a member that takes the partition over reads them (`restore`) and
forms exactly those segments again, whose create keys FullStory then answers from its idempotency
store. Records past the plan form new segments, which were never created before.

Ordering: a user's identify (users) and a later track (events) of one segment go to different
import jobs that FullStory runs independently. Requests that cannot be batched
(`DELETE /v2/users?uid=`) seal the partition's open segment and are sent one by one after every
earlier segment of that partition has finished, and before any later one is created, so a delete
is never overtaken by an earlier upsert of that user (keyed to the same partition) nor followed
by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from consumer.record import Partition
from consumer.sink.client import (
    Abandoned,
    AuthenticationError,
    FullStoryClient,
    Rejected,
    json_body,
)
from consumer.sink.contract import Done, Fatal, Job
from consumer.sink.import_job import ImportJobs
from consumer.transform import Request

log = logging.getLogger(__name__)

MAX_ITEMS = 50_000  # FullStory's limit per import job
KINDS = {("POST", "/v2/users"): "users", ("POST", "/v2/events"): "events"}
_PLAN_PREFIX = "fsc1:"

Persist = Callable[[Partition, str], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _Tracker:
    """A submitted job and how many of its requests are still unsettled."""

    job: Job
    remaining: int
    rejected: Rejected | None = None


@dataclass(slots=True, eq=False)
class _Item:
    """One request of a segment, its body already JSON: several times smaller than the mapped
    dict, and what is held for every in-flight record while import jobs run."""

    tracker: _Tracker
    kind: str
    body: bytes
    key: str


@dataclass(slots=True, eq=False)
class _Segment:
    """Consecutive records of one partition that become one import job per kind."""

    tp: Partition
    client: FullStoryClient
    opened: float
    after: asyncio.Future[None] | None  # the partition's last single request: created after it
    done: asyncio.Future[None]
    planned_last: int | None = None  # a restored segment ends exactly at this offset
    items: list[_Item] = field(default_factory=list)
    first: int = -1
    last: int = -1

    def add(self, tracker: _Tracker, requests: tuple[Request, ...]) -> None:
        offset = tracker.job.record.offset
        if not self.items:
            self.first = offset
        self.last = offset
        for request in requests:
            kind = KINDS[(request.method, request.path)]
            body = json_body(request.body)
            self.items.append(_Item(tracker, kind, body, request.idempotency_key))


class _Order:
    """Per partition, the unfinished work in order: a single request starts after everything
    sealed before it, and a segment sealed after a single request is created after it."""

    def __init__(self) -> None:
        self._unfinished: dict[Partition, set[asyncio.Future[None]]] = {}
        self._barrier: dict[Partition, asyncio.Future[None]] = {}

    def after(self, tp: Partition) -> asyncio.Future[None] | None:
        """What a new segment of the partition must wait for: its last single request."""
        return self._barrier.get(tp)

    def sealed(self, tp: Partition, done: asyncio.Future[None]) -> None:
        self._unfinished.setdefault(tp, set()).add(done)

    def single(self, tp: Partition) -> tuple[list[asyncio.Future[None]], asyncio.Future[None]]:
        """A single request's turn: the work it waits for, and its own completion."""
        unfinished = self._unfinished.setdefault(tp, set())
        earlier = list(unfinished)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unfinished.add(done)
        self._barrier[tp] = done
        return earlier, done

    def finished(self, tp: Partition, done: asyncio.Future[None]) -> None:
        if not done.done():
            done.set_result(None)
        unfinished = self._unfinished.get(tp)
        if unfinished is not None:
            unfinished.discard(done)
            if not unfinished:
                del self._unfinished[tp]
        if self._barrier.get(tp) is done:
            del self._barrier[tp]


def plan_metadata(ranges: list[tuple[int, int]]) -> str:
    """The commit metadata that records a partition's unfinished segments."""
    return _PLAN_PREFIX + ",".join(f"{a}-{b}" for a, b in ranges) if ranges else ""


def parse_plan(metadata: str | None) -> list[tuple[int, int]]:
    """Segment ranges from commit metadata; anything else (another tool's metadata) is none."""
    if not metadata or not metadata.startswith(_PLAN_PREFIX):
        return []
    ranges: list[tuple[int, int]] = []
    for part in metadata[len(_PLAN_PREFIX) :].split(","):
        first, sep, last = part.partition("-")
        if not sep or not first.isdigit() or not last.isdigit() or int(first) > int(last):
            return []
        ranges.append((int(first), int(last)))
    return sorted(ranges)


class BatchSink:
    """Delivers jobs through batch import jobs (a `Sink`); reports each job's result through
    `on_done`."""

    def __init__(
        self,
        on_done: Done,
        on_fatal: Fatal,
        *,
        max_items: int = 5000,
        linger: float = 0.5,
        max_jobs_in_flight: int = 20,
        poll_interval: float = 2.0,
        persist: Persist | None = None,
    ) -> None:
        if not 1 <= max_items <= MAX_ITEMS:
            raise ValueError(f"max_items must be in 1..{MAX_ITEMS}")
        if max_jobs_in_flight < 1:
            raise ValueError("max_jobs_in_flight must be at least 1")
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._max_items = max_items
        self._linger = linger
        self._max_jobs = max_jobs_in_flight
        self._persist = persist
        self._stopping = asyncio.Event()
        self._jobs = ImportJobs(self._stopping, poll_interval)
        self._wake = asyncio.Event()
        self._open: dict[Partition, _Segment] = {}
        self._ready: deque[_Segment] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._singles: set[asyncio.Task[None]] = set()
        self._free_slots = max_jobs_in_flight
        # Per partition: sealed segments not finished (their ranges are the plan), restored plans
        # still to re-form, and the order of its unfinished work.
        self._sealed: dict[Partition, list[_Segment]] = {}
        self._plans: dict[Partition, deque[tuple[int, int]]] = {}
        self._order = _Order()
        self._scheduler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule())

    @property
    def idle(self) -> bool:
        return not (self._open or self._ready or self._running or self._singles)

    @property
    def jobs_in_flight(self) -> int:
        """Segments whose import jobs are being created or polled right now."""
        return len(self._running)

    def plan(self, tp: Partition) -> str:
        """Commit metadata for a partition: its sealed, unfinished segment ranges."""
        return plan_metadata([(seg.first, seg.last) for seg in self._sealed.get(tp, ())])

    def restore(self, tp: Partition, metadata: str | None) -> None:
        """A newly assigned partition's plan from its committed metadata: those ranges will be
        formed into exactly the same segments again."""
        ranges = parse_plan(metadata)
        if ranges:
            self._plans[tp] = deque(ranges)
        else:
            self._plans.pop(tp, None)

    def release(self, tps: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """Nothing is handed back at a revoke: a sealed segment's plan is committed for the
        next owner, who forms the very same import jobs, so this owner finishes them."""
        return []

    def forget(self, tp: Partition) -> None:
        """The partition is no longer ours: its plan belongs to the next owner."""
        self._plans.pop(tp, None)

    def flush(self) -> None:
        """Seal every open segment now instead of after its linger: the app calls this when it
        pauses the partitions, so no more records could join them. A segment re-forming a
        restored plan stays open: it must end exactly where its plan says."""
        for segment in list(self._open.values()):
            if segment.planned_last is None:
                self._seal(segment)

    def submit(self, job: Job) -> None:
        """Queue a job's requests; never blocks."""
        requests = job.requests
        if not requests:
            asyncio.get_running_loop().call_soon(self._on_done, job, None)
            return
        tracker = _Tracker(job, len(requests))
        tp = job.record.tp
        if any((r.method, r.path) not in KINDS for r in requests):
            for request in requests:
                self._submit_single(tracker, request)
            return
        # From here the requests live on as JSON in their segment only (see _Item).
        tracker.job = Job(job.record, (), job.client)
        offset = job.record.offset
        segment = self._open.get(tp)
        plans = self._plans.get(tp)
        while plans and plans[0][1] < offset:  # a planned range whose end never came
            plans.popleft()
            if segment is not None and segment.planned_last is not None:
                self._seal(segment)
                segment = None
        planned = plans[0] if plans and plans[0][0] <= offset else None
        if segment is not None and (
            (segment.planned_last is not None) != (planned is not None)
            or (planned is None and len(segment.items) + len(requests) > self._max_items)
        ):
            self._seal(segment)
            segment = None
        if segment is None:
            loop = asyncio.get_running_loop()
            segment = _Segment(
                tp,
                job.client,
                loop.time(),
                self._order.after(tp),
                loop.create_future(),
                planned[1] if planned else None,
            )
            self._open[tp] = segment
        segment.add(tracker, requests)
        if planned is not None:
            if offset >= planned[1]:
                assert plans is not None
                plans.popleft()
                self._seal(segment)
        elif len(segment.items) >= self._max_items:
            self._seal(segment)
        self._wake.set()

    def _submit_single(self, tracker: _Tracker, request: Request) -> None:
        tp = tracker.job.record.tp
        segment = self._open.get(tp)
        if segment is not None:
            self._seal(segment)
        earlier, done = self._order.single(tp)
        task = asyncio.create_task(self._single(tracker, request, earlier, done))
        self._singles.add(task)
        task.add_done_callback(self._singles.discard)

    def _seal(self, segment: _Segment) -> None:
        del self._open[segment.tp]
        self._order.sealed(segment.tp, segment.done)
        self._sealed.setdefault(segment.tp, []).append(segment)
        self._ready.append(segment)
        self._wake.set()

    async def _schedule(self) -> None:
        """Seal lingering segments and start sealed ones while fewer than the limit run."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for segment in list(self._open.values()):
                if now - segment.opened >= self._linger:
                    self._seal(segment)
            while self._ready and self._free_slots:
                segment = self._ready.popleft()
                self._free_slots -= 1
                task = asyncio.create_task(self._run(segment))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = None
            if self._open:
                oldest = min(segment.opened for segment in self._open.values())
                timeout = max(0.0, oldest + self._linger - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    async def _run(self, segment: _Segment) -> None:
        try:
            if segment.after is not None:
                await segment.after
            if self._persist is not None:
                await self._persist(segment.tp, self.plan(segment.tp))
            results = await self._deliver(segment)
        except Abandoned:
            return
        except AuthenticationError as exc:
            self._on_fatal(exc)
            return
        finally:
            self._free_slots += 1
            self._order.finished(segment.tp, segment.done)
            self._wake.set()
        sealed = self._sealed.get(segment.tp, [])
        if segment in sealed:
            sealed.remove(segment)
            if not sealed:
                del self._sealed[segment.tp]
        for item, result in zip(segment.items, results, strict=True):
            self._settle(item.tracker, result)

    async def _single(
        self,
        tracker: _Tracker,
        request: Request,
        earlier: list[asyncio.Future[None]],
        done: asyncio.Future[None],
    ) -> None:
        tp = tracker.job.record.tp
        try:
            for future in earlier:
                await future
            result = await tracker.job.client.send(request, self._stopping)
        except Abandoned:
            return
        except AuthenticationError as exc:
            self._on_fatal(exc)
            return
        finally:
            self._order.finished(tp, done)
            self._wake.set()
        self._settle(tracker, result)

    def _settle(self, tracker: _Tracker, result: Rejected | None) -> None:
        if result is not None and tracker.rejected is None:
            tracker.rejected = result
        tracker.remaining -= 1
        if tracker.remaining == 0:
            self._on_done(tracker.job, tracker.rejected)

    async def _deliver(self, segment: _Segment) -> list[Rejected | None]:
        """Create the segment's import jobs (one per kind), wait for them, and return each
        item's outcome in the segment's order."""
        positions: dict[str, list[int]] = {}
        for i, item in enumerate(segment.items):
            positions.setdefault(item.kind, []).append(i)
        name = f"{segment.tp[0]}/{segment.tp[1]}/{segment.first}-{segment.last}"
        items = segment.items
        outcomes = await asyncio.gather(
            *(
                self._jobs.run(
                    segment.client,
                    kind,
                    [items[i].body for i in idx],
                    [items[i].key for i in idx],
                    name,
                )
                for kind, idx in positions.items()
            )
        )
        results: list[Rejected | None] = [None] * len(segment.items)
        for idx, outcome in zip(positions.values(), outcomes, strict=True):
            for i, result in zip(idx, outcome, strict=True):
                results[i] = result
        return results

    async def close(self) -> None:
        """Abandon what is left (it stays uncommitted, so it is redelivered) and stop."""
        self._stopping.set()
        tasks = [*self._running, *self._singles]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
