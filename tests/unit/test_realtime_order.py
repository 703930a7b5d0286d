"""The realtime sink's senders: one user's records one at a time and in order, every other
user's on whichever sender is free (a busy user holds up nobody else), keyless ones in parallel."""

from __future__ import annotations

import asyncio

from consumer.record import Record
from consumer.sink.client import Abandoned, Rejected
from consumer.sink.contract import Job
from consumer.sink.realtime import RealtimeSink
from consumer.transform import Request


class _GatedClient:
    """Each call waits for its own gate (by path) or the shared one; records what overlaps."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.open = asyncio.Event()
        self.in_flight: set[str] = set()
        self.started: list[str] = []
        self.most_in_flight = 0

    async def call(
        self, method: str, path: str, body: bytes | None, key: str, stopping: asyncio.Event
    ) -> object:
        self.started.append(path)
        self.in_flight.add(path)
        self.most_in_flight = max(self.most_in_flight, len(self.in_flight))
        gate = self.gates.get(path, self.open)
        try:
            await gate.wait()
        finally:
            self.in_flight.discard(path)
        if stopping.is_set():
            raise Abandoned()
        return object()


def _job(client: _GatedClient, offset: int, key: bytes | None, partition: int = 0) -> Job:
    record = Record("t", partition, offset, key, b"v", None, 1)
    request = Request("POST", f"/{key!r}/{offset}", {"n": offset}, f"k{offset}")
    return Job(record, (request,), client)  # type: ignore[arg-type]


async def _until(condition: object, tries: int = 200) -> None:
    for _ in range(tries):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def test_one_users_records_go_one_at_a_time_in_order() -> None:
    async def scenario() -> None:
        done: list[int] = []
        sink = RealtimeSink(8, lambda job, _: done.append(job.record.offset), lambda exc: None)
        client = _GatedClient()
        sink.start()
        for offset in range(5):
            sink.submit(_job(client, offset, b"user-1"))
        await asyncio.sleep(0.02)
        assert client.started == ["/b'user-1'/0"]  # the rest wait behind it, senders free
        client.open.set()
        await _until(lambda: len(done) == 5)
        assert done == [0, 1, 2, 3, 4]
        assert client.most_in_flight == 1
        await sink.close()

    asyncio.run(scenario())


def test_a_busy_user_holds_up_no_other_user() -> None:
    async def scenario() -> None:
        done: list[bytes | None] = []
        sink = RealtimeSink(4, lambda job, _: done.append(job.record.key), lambda exc: None)
        client = _GatedClient()
        client.gates["/b'hot'/0"] = asyncio.Event()  # the hot user's first request hangs
        sink.start()
        keys = (b"hot", b"hot", b"hot", *(f"user-{i}".encode() for i in range(20)))
        for offset, key in enumerate(keys):
            sink.submit(_job(client, offset, key))
        client.open.set()
        # Hashed lanes would have queued some of the 20 behind the hot user; senders do not.
        await _until(lambda: len(done) == 20)
        assert b"hot" not in done
        client.gates["/b'hot'/0"].set()
        await _until(lambda: len(done) == 23)
        assert done[-3:] == [b"hot"] * 3
        await sink.close()

    asyncio.run(scenario())


def test_keyless_records_and_different_users_fill_every_sender() -> None:
    async def scenario() -> None:
        sink = RealtimeSink(6, lambda job, _: None, lambda exc: None)
        client = _GatedClient()
        sink.start()
        for offset in range(3):
            sink.submit(_job(client, offset, None))
        for offset in range(3, 10):
            sink.submit(_job(client, offset, f"user-{offset}".encode()))
        await _until(lambda: len(client.in_flight) == 6)
        await asyncio.sleep(0.02)
        assert client.most_in_flight == 6  # never more than the senders
        client.open.set()
        await _until(lambda: len(client.started) == 10 and not client.in_flight)
        await sink.close()

    asyncio.run(scenario())


def test_a_released_ready_record_hands_its_place_to_its_users_next_one() -> None:
    async def scenario() -> None:
        done: list[tuple[int, int]] = []

        def on_done(job: Job, rejected: Rejected | None) -> None:
            done.append((job.record.partition, job.record.offset))

        sink = RealtimeSink(1, on_done, lambda exc: None)
        client = _GatedClient()
        sink.start()
        sink.submit(_job(client, 0, b"a", partition=0))  # starts on the only sender
        sink.submit(_job(client, 1, b"b", partition=0))  # ready, revoked below
        sink.submit(_job(client, 5, b"b", partition=1))  # held behind it, kept
        await asyncio.sleep(0.01)
        released = sink.release({("t", 0)})
        assert [(j.record.partition, j.record.offset) for j in released] == [(0, 1)]
        client.open.set()
        await _until(lambda: len(done) == 2)
        assert done == [(0, 0), (1, 5)]  # user b's record of partition 1 was not stranded
        await sink.close()

    asyncio.run(scenario())


def test_records_start_in_the_order_read_so_no_user_waits_behind_younger_ones() -> None:
    """A sender freed by a user's record takes the oldest record that may start, not that user's
    next one: C's record, read before the others' later records, is not starved by them."""

    async def scenario() -> None:
        sink = RealtimeSink(2, lambda job, _: None, lambda exc: None)
        client = _GatedClient()
        sink.start()
        for offset, key in enumerate((b"a", b"b", b"c", b"a", b"b", b"a", b"b")):
            sink.submit(_job(client, offset, key))
        client.open.set()
        await _until(lambda: len(client.started) == 7 and not client.in_flight)
        offsets = [int(path.rsplit("/", 1)[1]) for path in client.started]
        assert offsets.index(2) < offsets.index(3)
        assert offsets.index(2) < offsets.index(4)
        await sink.close()

    asyncio.run(scenario())


class _CountingClient(_GatedClient):
    """Answers at once until `limit` calls have started, then holds every call."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.open.set()
        self.hold = asyncio.Event()

    async def call(
        self, method: str, path: str, body: bytes | None, key: str, stopping: asyncio.Event
    ) -> object:
        if len(self.started) >= self.limit:
            self.gates[path] = self.hold
        return await super().call(method, path, body, key, stopping)


def test_a_revoke_hands_back_nearly_all_of_a_backlog_of_repeat_users() -> None:
    """Users with several records each: the highest started offset stays near what was sent,
    so a revoke gives back the rest instead of waiting for most of the backlog."""

    async def scenario() -> None:
        sink = RealtimeSink(4, lambda job, _: None, lambda exc: None)
        client = _CountingClient(limit=20)
        sink.start()
        for offset in range(400):
            sink.submit(_job(client, offset, f"user-{offset % 50}".encode()))
        await _until(lambda: len(client.started) >= 24)
        released = sink.release({("t", 0)})
        # 24 started (20 done, 4 held in flight); a sender jumping to its user's next record
        # would have started offsets ~50 apart and kept all below them.
        assert len(released) >= 400 - 30, len(released)
        client.hold.set()
        await sink.close()

    asyncio.run(scenario())
