"""Realtime delivery: each request to FullStory's single-item endpoints, by a fixed set of senders.

One user's records keep their order: a record whose key (the Segment userId or anonymousId) has
a record waiting or in flight is held behind it until that one is done. Free senders take the
oldest record that may start (in the order records were read, so a partition's records start
roughly in offset order: its commit follows closely, a revoke hands back nearly all that is
queued, and no record waits behind younger ones). A member has as many requests in flight as it
has users with work, up to the senders
(`concurrency`, the most a destination may have in flight); how many of them send at once is
each destination's adaptive limit, which the client applies per request
(`consumer.sink.concurrency`). Keyless records need no order and go to any sender.

Why not lanes by a hash of the key (as before): a lane sends one record at a time, so the lane
with the most records sets how long a backlog takes, and the others idle meanwhile. 14,000
queued records on 512 hashed lanes left the longest with ~1.6x the mean; delivery slowed to a
trickle for seconds before the last commit, and the commit lagged what was sent.

A queued record holds its requests as exact-size JSON, not as the mapped dicts: several times
smaller, so many records can wait (the in-flight window sets the throughput).
"""

from __future__ import annotations

import asyncio
import heapq
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


@dataclass(slots=True)
class _Queued:
    job: Job  # without its mapped requests: `calls` carries them
    calls: tuple[Call, ...]
    seq: int  # the order it was submitted in


# A record that may start, in the ready heap: (its submission order, the record).
_Ready = tuple[int, _Queued]


class RealtimeSink:
    """Bounded-concurrency sender (a `Sink`); reports each job's result through `on_done`."""

    def __init__(self, senders: int, on_done: Done, on_fatal: Fatal) -> None:
        self._senders = senders
        self._ready: list[_Ready] = []  # a heap: free to start, no earlier record of its key left
        # Per key with a record ready or in flight: its later records, in order.
        self._held: dict[bytes, deque[_Queued]] = {}
        self._idle: deque[asyncio.Future[_Queued]] = deque()  # senders waiting for work
        self._seq = 0
        self._started: dict[Partition, int] = {}  # per partition: highest offset started
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._senders)]

    def submit(self, job: Job) -> None:
        calls = tuple(encoded(request) for request in job.requests)
        self._seq += 1
        queued = _Queued(Job(job.record, (), job.client), calls, self._seq)
        key = job.record.key
        if key:
            held = self._held.get(key)
            if held is not None:
                held.append(queued)
                return
            self._held[key] = deque()
        self._dispatch(queued)

    def _dispatch(self, queued: _Queued) -> None:
        """To an idle sender if there is one (it starts the record now), else to the ready queue."""
        idle = self._idle
        while idle:
            sender = idle.popleft()
            if not sender.done():
                self._mark_started(queued)
                sender.set_result(queued)
                return
        heapq.heappush(self._ready, (queued.seq, queued))

    def _mark_started(self, queued: _Queued) -> None:
        record = queued.job.record
        tp = (record.topic, record.partition)
        if record.offset > self._started.get(tp, -1):
            self._started[tp] = record.offset

    def release(self, tps: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """Take back the jobs of these partitions queued beyond the highest offset any sender has
        started (`everything`: all their queued jobs): at a revoke they are left unsent and
        uncommitted for the next owner, instead of holding up the rebalance while the senders
        work through everything queued before them. By default only that suffix goes back, so
        once the rest is done the commit reaches exactly the first released record and the next
        owner sends nothing twice. A held record whose key's ready record goes back takes its
        place in the ready queue."""
        started = self._started

        def releases(queued: _Queued) -> bool:
            record = queued.job.record
            return record.tp in tps and (everything or record.offset > started.get(record.tp, -1))

        released: list[Job] = []
        for key, held in self._held.items():
            kept: deque[_Queued] = deque()
            for queued in held:
                if releases(queued):
                    released.append(queued.job)
                else:
                    kept.append(queued)
            if len(kept) != len(held):
                self._held[key] = kept
        ready: list[_Ready] = []
        for entry in self._ready:
            queued = entry[1]
            if not releases(queued):
                ready.append(entry)
                continue
            released.append(queued.job)
            user = queued.job.record.key
            if user:
                waiting = self._held[user]
                if waiting:
                    follower = waiting.popleft()
                    ready.append((follower.seq, follower))
                else:
                    del self._held[user]
        heapq.heapify(ready)
        self._ready = ready
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
        """Nothing waits to be grouped: every job is sent as soon as a sender is free."""

    async def _next(self) -> _Queued:
        if self._ready:
            queued = heapq.heappop(self._ready)[1]
            self._mark_started(queued)
            return queued
        sender: asyncio.Future[_Queued] = asyncio.get_running_loop().create_future()
        self._idle.append(sender)
        return await sender

    async def _work(self) -> None:
        while True:
            queued = await self._next()
            try:
                result = await self._deliver(queued)
            except Abandoned:
                return  # only raised once the sink is closing
            except AuthenticationError as exc:
                self._on_fatal(exc)
            else:
                self._on_done(queued.job, result)
            key = queued.job.record.key
            if key:
                held = self._held[key]
                if held:  # the key's next record may start now, in its place by age
                    follower = held.popleft()
                    heapq.heappush(self._ready, (follower.seq, follower))
                else:
                    del self._held[key]

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
