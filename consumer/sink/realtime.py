"""Realtime delivery: each request to FullStory's single-item endpoints, over a fixed set of lanes.

A record's key (the Segment userId or anonymousId) always maps to the same lane and a lane sends one
record at a time, so one user's updates keep their order while different users go in parallel.
There are as many lanes as `concurrency`, the most requests a destination may have in flight;
how many of them send at once is each destination's adaptive limit, which the client applies
per request (`consumer.sink.concurrency`), so the lanes only keep the order.
A queued record holds its requests as exact-size JSON, not as the mapped dicts: several times
smaller, so many records can wait in the lanes (the in-flight window sets the throughput).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from consumer.record import Partition
from consumer.sink.client import Abandoned, AuthenticationError, Rejected, json_body
from consumer.sink.contract import Done, Fatal, Job
from consumer.transform import Request

# One request ready to send: method, path, JSON body (None: no body), Idempotency-Key.
Call = tuple[str, str, bytes | None, str]


def encoded(request: Request) -> Call:
    """A request as sent (its body as exact-size JSON)."""
    body = None if request.body is None else json_body(request.body)
    return (request.method, request.path, body, request.idempotency_key)


def lane_for(key: bytes | None, offset: int, lanes: int) -> int:
    """The lane of a record: by key, so one user's records keep their order (keyless ones
    spread by offset). Python's hash (SipHash, seeded per process; lanes live only as long as
    the process) rather than CRC32, which librdkafka's default partitioner uses: with the same
    hash a member owning only the odd partitions of a 6-partition topic sent on odd lanes only,
    half its lanes idle."""
    return hash(key) % lanes if key else offset % lanes


@dataclass(slots=True)
class _Queued:
    job: Job  # without its mapped requests: `calls` carries them
    calls: tuple[Call, ...]


class _Lane:
    """A lane's waiting jobs: a deque rather than an asyncio.Queue, so that a revoke can take
    back the jobs of its partitions that have not started."""

    __slots__ = ("jobs", "ready")

    def __init__(self) -> None:
        self.jobs: deque[_Queued] = deque()
        self.ready = asyncio.Event()

    def put(self, queued: _Queued) -> None:
        self.jobs.append(queued)
        self.ready.set()

    async def get(self) -> _Queued:
        while not self.jobs:
            self.ready.clear()
            await self.ready.wait()
        return self.jobs.popleft()


class RealtimeSink:
    """Bounded-concurrency sender (a `Sink`); reports each job's result through `on_done`."""

    def __init__(self, lanes: int, on_done: Done, on_fatal: Fatal) -> None:
        self._lanes = [_Lane() for _ in range(lanes)]
        self._started: dict[Partition, int] = {}  # per partition: highest offset started
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(lane)) for lane in self._lanes]

    def submit(self, job: Job) -> None:
        lane = lane_for(job.record.key, job.record.offset, len(self._lanes))
        calls = tuple(encoded(request) for request in job.requests)
        self._lanes[lane].put(_Queued(Job(job.record, (), job.client), calls))

    def release(self, tps: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """Take back the jobs of these partitions queued beyond the highest offset any lane has
        started (`everything`: all their queued jobs): at a revoke they are left unsent and
        uncommitted for the next owner, instead of holding up the rebalance while the lanes
        work through everything queued before them. By default only that suffix goes back, so
        once the rest is done the commit reaches exactly the first released record and the next
        owner sends nothing twice."""
        started = self._started
        released: list[Job] = []
        for lane in self._lanes:
            kept: deque[_Queued] = deque()
            for queued in lane.jobs:
                record = queued.job.record
                tp = record.tp
                if tp in tps and (everything or record.offset > started.get(tp, -1)):
                    released.append(queued.job)
                else:
                    kept.append(queued)
            if len(kept) != len(lane.jobs):
                lane.jobs = kept
        return released

    def plan(self, tp: Partition) -> str:
        """Realtime requests carry their own idempotency keys: no plan to commit."""
        return ""

    def restore(self, tp: Partition, metadata: str | None) -> None:
        """Nothing to restore (see `plan`)."""

    def forget(self, tp: Partition) -> None:
        """The partition is no longer ours: drop its highest started offset."""
        self._started.pop(tp, None)

    def flush(self) -> None:
        """Nothing waits to be grouped: every job is sent as soon as its lane is free."""

    async def _work(self, lane: _Lane) -> None:
        started = self._started
        while True:
            queued = await lane.get()
            record = queued.job.record
            tp = (record.topic, record.partition)
            if record.offset > started.get(tp, -1):
                started[tp] = record.offset
            try:
                result = await self._deliver(queued)
            except Abandoned:
                return  # only raised once the sink is closing
            except AuthenticationError as exc:
                self._on_fatal(exc)
                continue
            self._on_done(queued.job, result)

    async def _deliver(self, queued: _Queued) -> Rejected | None:
        client = queued.job.client
        for method, path, body, key in queued.calls:
            answer = await client.call(method, path, body, key, self._stopping)
            if isinstance(answer, Rejected):
                return answer
        return None

    async def close(self) -> None:
        """Abandon what is left (it stays uncommitted, so it is redelivered) and stop."""
        self._stopping.set()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
