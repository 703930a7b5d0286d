"""At a revoke the realtime sink hands back the revoked partitions' jobs queued beyond the
highest offset a sender has started, keeps sending everything else, and lets started jobs
finish: the commit then reaches exactly the first released record."""

from __future__ import annotations

import asyncio

from consumer.record import Record
from consumer.sink.client import Abandoned, Rejected
from consumer.sink.contract import Job
from consumer.sink.realtime import RealtimeSink
from consumer.transform import Request


class _SlowClient:
    """Answers each call after `gate` opens, recording the paths sent."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.sent: list[str] = []

    async def call(
        self, method: str, path: str, body: bytes | None, key: str, stopping: asyncio.Event
    ) -> object:
        self.sent.append(path)
        await self.gate.wait()
        if stopping.is_set():
            raise Abandoned()
        return object()


def _job(client: _SlowClient, partition: int, offset: int, key: bytes | None = b"user") -> Job:
    record = Record("t", partition, offset, key, b"v", None, 1)
    request = Request("POST", f"/v2/events/{partition}/{offset}", {"n": offset}, f"k{offset}")
    return Job(record, (request,), client)  # type: ignore[arg-type]


def test_release_takes_back_only_unstarted_jobs_of_the_revoked_partitions() -> None:
    async def scenario() -> None:
        done: list[tuple[int, int]] = []

        def on_done(job: Job, rejected: Rejected | None) -> None:
            done.append((job.record.partition, job.record.offset))

        sink = RealtimeSink(1, on_done, lambda exc: None)  # one sender: a strict queue
        client = _SlowClient()
        sink.start()
        for offset, partition in enumerate((0, 1, 0, 1, 0)):
            sink.submit(_job(client, partition, offset))
        await asyncio.sleep(0.01)  # the sender has started the first job (partition 0)
        released = sink.release({("t", 0)})
        assert [(j.record.partition, j.record.offset) for j in released] == [(0, 2), (0, 4)]
        assert sink.release({("t", 0)}) == []  # nothing of partition 0 is queued any more
        client.gate.set()
        for _ in range(100):
            if len(done) == 3:
                break
            await asyncio.sleep(0.01)
        assert done == [(0, 0), (1, 1), (1, 3)]  # the started one finished; partition 1 kept
        assert client.sent == ["/v2/events/0/0", "/v2/events/1/1", "/v2/events/1/3"]
        await sink.close()

    asyncio.run(scenario())


def test_release_keeps_queued_jobs_below_the_highest_started_offset() -> None:
    async def scenario() -> None:
        done: list[tuple[int, int]] = []
        sink = RealtimeSink(
            2,
            lambda job, _: done.append((job.record.partition, job.record.offset)),
            lambda exc: None,
        )
        client = _SlowClient()
        sink.start()
        # Partition 0's offset 4 is held behind its user's record of partition 1, in flight on
        # one sender, while the other sender starts the keyless offset 5 at once.
        sink.submit(_job(client, 1, 2, key=b"user"))
        sink.submit(_job(client, 0, 4, key=b"user"))
        for offset in (5, 6, 7):
            sink.submit(_job(client, 0, offset, key=None))
        await asyncio.sleep(0.01)
        released = sink.release({("t", 0)})
        assert sorted(j.record.offset for j in released) == [6, 7]  # 4 < 5 must still go
        # A revoke whose drain ran out of time takes back the rest too: its acks would be
        # ignored, and the next owner sends it.
        rest = sink.release({("t", 0)}, everything=True)
        assert [j.record.offset for j in rest] == [4]
        client.gate.set()
        for _ in range(100):
            if len(done) == 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert sorted(done) == [(0, 5), (1, 2)]
        sink.forget(("t", 0))
        assert sink.release({("t", 0)}) == []
        await sink.close()

    asyncio.run(scenario())
