"""Realtime delivery: each request to FullStory's single-item endpoints, over a fixed set of lanes.

A record's key (the Segment userId or anonymousId) always maps to the same lane and a lane sends one
record at a time, so one user's updates keep their order while different users go in parallel.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from consumer.record import Record
from consumer.sink.client import Abandoned, AuthenticationError, FullStoryClient, Rejected
from consumer.transform import Request


@dataclass(slots=True)
class Job:
    record: Record
    requests: tuple[Request, ...]
    client: FullStoryClient


Done = Callable[[Job, Rejected | None], None]
Fatal = Callable[[BaseException], None]


class RealtimeSink:
    """Bounded-concurrency sender; reports each job's result through `on_done`."""

    def __init__(self, lanes: int, on_done: Done, on_fatal: Fatal) -> None:
        self._queues: list[asyncio.Queue[Job]] = [asyncio.Queue() for _ in range(lanes)]
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._stopping = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    def submit(self, job: Job) -> None:
        key = job.record.key
        lane = zlib.crc32(key) % len(self._queues) if key else job.record.offset % len(self._queues)
        self._queues[lane].put_nowait(job)

    def plan(self, tp: tuple[str, int]) -> str:
        """Realtime requests carry their own idempotency keys: no plan to commit."""
        return ""

    def restore(self, tp: tuple[str, int], metadata: str | None) -> None:
        """Nothing to restore (see `plan`)."""

    def forget(self, tp: tuple[str, int]) -> None:
        """Nothing to forget (see `plan`)."""

    def flush(self) -> None:
        """Nothing waits to be grouped: every job is sent as soon as its lane is free."""

    async def _work(self, queue: asyncio.Queue[Job]) -> None:
        while True:
            job = await queue.get()
            try:
                result = await self._deliver(job)
            except Abandoned:
                return  # only raised once the sink is closing
            except AuthenticationError as exc:
                self._on_fatal(exc)
                continue
            self._on_done(job, result)

    async def _deliver(self, job: Job) -> Rejected | None:
        for request in job.requests:
            rejected = await job.client.send(request, self._stopping)
            if rejected is not None:
                return rejected
        return None

    async def close(self) -> None:
        """Abandon what is left (it stays uncommitted, so it is redelivered) and stop."""
        self._stopping.set()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
