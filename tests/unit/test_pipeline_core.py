"""The at-least-once core without Kafka: the real Pipeline composed with a fake source, a fake sink
and a fake dead-letter queue, each controlled by the test, so every rule is checked step by step
and none depends on a broker or on timing beyond a few loop turns."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from confluent_kafka import Message

from consumer.app import Pipeline
from consumer.codec.decode import Decoder
from consumer.codec.encode import Encoder
from consumer.codec.schema_registry import RegistryUnavailable
from consumer.config import load_config
from consumer.record import Partition, Record
from consumer.sink.client import FullStoryClient, Rejected
from consumer.sink.contract import Done, Fatal, Job
from consumer.source import Commits, Listeners, Partitions

TP: Partition = ("t", 0)
ENCODER = Encoder()


def track(n: int, user: str = "u") -> bytes:
    event = {"type": "track", "messageId": f"m{n}", "userId": user, "event": "E"}
    return ENCODER.encode(event)


ALIAS = ENCODER.encode({"type": "alias", "messageId": "a", "userId": "u", "previousId": "p"})
GARBAGE = b"\x00\x01 not avro"


class FakeSource:
    """A partition log per partition, read from a position, with pause, seek and the
    rebalance listeners driven by the test (and by close, as librdkafka's close does)."""

    def __init__(self, listeners: Listeners, logs: dict[Partition, list[bytes]]) -> None:
        self.listeners = listeners
        self.logs = logs
        self.positions: dict[Partition, int] = {}
        self.paused: set[Partition] = set()
        self.commits: list[tuple[str, int, int, str]] = []
        self.seeks: list[tuple[Partition, int]] = []
        self.brokers_up = True

    def committed(self, tp: Partition) -> int | None:
        offsets = [o for t, p, o, _ in self.commits if (t, p) == tp]
        return offsets[-1] if offsets else None

    async def assign(self, *tps: Partition) -> None:
        for tp in tps:
            self.positions[tp] = self.committed(tp) or 0
        await self.listeners.assigned(dict.fromkeys(tps, ""))

    async def revoke(self, *tps: Partition) -> None:
        self.commits += await self.listeners.revoked(list(tps))
        for tp in tps:
            self.positions.pop(tp, None)
            self.paused.discard(tp)

    async def lose(self, *tps: Partition) -> None:
        await self.listeners.lost(list(tps))
        for tp in tps:
            self.positions.pop(tp, None)

    async def check_reachable(self, timeout: float) -> None:
        pass

    async def subscribe(self) -> None:
        await self.assign(*self.logs)

    async def consume(self, max_records: int, timeout: float) -> list[Message]:
        out: list[Message] = []
        for tp, position in self.positions.items():
            log = self.logs[tp]
            while tp not in self.paused and position < len(log) and len(out) < max_records:
                out.append(
                    Message(
                        topic=tp[0],
                        partition=tp[1],
                        offset=position,
                        key=b"k",
                        value=log[position],
                        timestamp=(1, 1000),
                    )
                )
                position += 1
            self.positions[tp] = position
        await asyncio.sleep(0.001)
        return out

    def pause(self, tps: Partitions) -> None:
        self.paused.update(tps)

    def resume(self, tps: Partitions) -> None:
        self.paused.difference_update(tps)

    def seek(self, tp: Partition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.positions[tp] = offset

    def high_watermark(self, tp: Partition) -> int | None:
        return len(self.logs[tp])

    async def commit(self, commits: Commits, *, asynchronous: bool = False) -> None:
        self.commits += commits

    async def probe(self, timeout: float = 2.0) -> None:
        pass

    async def close(self) -> None:
        await self.revoke(*list(self.positions))


class FakeSink:
    """Holds every job until the test acknowledges it; `started` jobs are the ones a lane has
    begun (a revoke must wait for those, and may take the others back)."""

    def __init__(self, on_done: Done, on_fatal: Fatal) -> None:
        self.on_done = on_done
        self.jobs: dict[tuple[Partition, int], Job] = {}
        self.started: set[tuple[Partition, int]] = set()
        self.flushes = 0

    def ack(self, offset: int, rejected: Rejected | None = None, tp: Partition = TP) -> None:
        self.on_done(self.jobs.pop((tp, offset)), rejected)

    def start(self) -> None:
        pass

    def submit(self, job: Job) -> None:
        self.jobs[(job.record.tp, job.record.offset)] = job

    def release(self, partitions: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """Queued jobs beyond the highest started offset of their partition (`everything`:
        every queued job); a started job is never handed back, as in the real modes."""
        highest = {
            tp: max((o for t, o in self.started if t == tp), default=-1) for tp in partitions
        }
        back = [
            key
            for key in self.jobs
            if key[0] in partitions
            and key not in self.started
            and (everything or key[1] > highest[key[0]])
        ]
        return [self.jobs.pop(key) for key in back]

    def plan(self, partition: Partition) -> str:
        return ""

    def restore(self, partition: Partition, metadata: str | None) -> None:
        pass

    def forget(self, partition: Partition) -> None:
        pass

    def flush(self) -> None:
        self.flushes += 1

    async def close(self) -> None:
        pass


@dataclass
class FakeDeadLetters:
    """Dead-letter writes the broker acknowledges only once the test says so."""

    sent: list[tuple[Record, str]] = field(default_factory=list)
    confirmed: bool = False
    _waiting: list[Callable[[], None]] = field(default_factory=list)

    def send(
        self,
        record: Record,
        *,
        stage: str,
        reason: str,
        exception_class: str,
        message: str,
        on_done: Callable[[Record], None],
    ) -> None:
        self.sent.append((record, reason))
        self._waiting.append(lambda: on_done(record))

    def poll(self) -> None:
        if self.confirmed:
            waiting, self._waiting = self._waiting, []
            for done in waiting:
                done()

    def close(self, timeout: float) -> int:
        return len(self._waiting)


class FlakyRegistryDecoder(Decoder):
    """The raw decoder, except that the registry is unreachable for the first `failures`
    decodes of record `offset_value`."""

    def __init__(self, failing: bytes, failures: int) -> None:
        super().__init__("raw")
        self.failing = failing
        self.failures = failures

    def decode(self, value: bytes | None) -> dict[str, Any]:
        if value == self.failing and self.failures:
            self.failures -= 1
            raise RegistryUnavailable("registry down")
        return super().decode(value)


@dataclass
class Core:
    pipeline: Pipeline
    source: FakeSource
    sink: FakeSink
    dlq: FakeDeadLetters

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(2000):
            if condition():
                return
            await asyncio.sleep(0.001)
        raise AssertionError(f"never happened: {what}")

    def committed(self, tp: Partition = TP) -> int | None:
        return self.source.committed(tp)


def run_core(
    scenario: Callable[[Core], Awaitable[None]],
    logs: dict[Partition, list[bytes]],
    *,
    decoder: Decoder | None = None,
    **env: str,
) -> None:
    config = load_config(
        {
            "bootstrap_servers": "127.0.0.1:9",
            "group_id": "g",
            "topics": sorted({t for t, _ in logs}),
            "api_key": "k",
        },
        env={f"FULLSTORY_CONSUMER_{k.upper()}": v for k, v in env.items()},
    )
    made: dict[str, Any] = {}

    def source(listeners: Listeners) -> FakeSource:
        made["source"] = FakeSource(listeners, logs)
        return cast(FakeSource, made["source"])

    def sink(on_done: Done, on_fatal: Fatal, persist: Any) -> FakeSink:
        made["sink"] = FakeSink(on_done, on_fatal)
        return cast(FakeSink, made["sink"])

    async def main() -> None:
        dlq = FakeDeadLetters()
        pipeline = Pipeline(
            config,
            source=source,
            sink=sink,
            dead_letters=dlq,
            clients={"default": cast(FullStoryClient, object())},
            decoder=decoder,
            commit_interval=0.0,
        )
        task = asyncio.create_task(pipeline.run())
        for _ in range(1000):
            if "sink" in made and pipeline.ledger.owned():
                break
            await asyncio.sleep(0.001)
        core = Core(pipeline, made["source"], made["sink"], dlq)
        try:
            await scenario(core)
        finally:
            core.dlq.confirmed = True
            for key in list(core.sink.jobs):
                core.sink.ack(key[1], tp=key[0])
            pipeline.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_the_commit_never_passes_an_unacknowledged_record() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 5, "five jobs submitted")
        for offset in (0, 1, 3, 4):
            core.sink.ack(offset)
        await core.until(lambda: core.committed() == 2, "commit up to the first unacked")
        await asyncio.sleep(0.02)
        assert core.committed() == 2
        core.sink.ack(2)
        await core.until(lambda: core.committed() == 5, "commit past all five")
        assert core.pipeline.ledger.records == 0

    run_core(scenario, {TP: [track(i) for i in range(5)]})


def test_dead_lettered_records_are_done_only_once_the_broker_has_them() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.dlq.sent) == 1, "the garbage dead-lettered")
        await core.until(lambda: len(core.sink.jobs) == 2, "the two tracks submitted")
        ((record, reason),) = core.dlq.sent
        assert record.offset == 1 and reason
        core.sink.ack(0)
        core.sink.ack(3, Rejected(400, "invalid_argument", "bad"))  # refused: dead-lettered too
        await core.until(lambda: core.committed() == 1, "commit up to the dead letter")
        await asyncio.sleep(0.02)
        assert core.committed() == 1  # not acknowledged by the broker yet
        core.dlq.confirmed = True
        await core.until(lambda: core.committed() == 4, "commit past the dead letters")
        assert [r.offset for r, _ in core.dlq.sent] == [1, 3]
        assert core.dlq.sent[1][1] == "invalid_argument"

    # offset 2 is an alias: skipped, and done at once
    run_core(scenario, {TP: [track(0), GARBAGE, ALIAS, track(3)]})


def test_a_revoke_hands_back_unstarted_work_and_waits_only_for_started_work() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 5, "five jobs submitted")
        core.sink.started = {(TP, 0), (TP, 1)}
        core.sink.ack(0)

        async def finish_started() -> None:
            await asyncio.sleep(0.05)
            assert list(core.sink.jobs) == [(TP, 1)]  # handed back before the drain began
            core.sink.ack(1)

        acker = asyncio.create_task(finish_started())
        await core.source.revoke(TP)
        await acker
        assert core.committed() == 2  # exactly the first record handed back
        assert core.sink.jobs == {}
        assert core.pipeline.ledger.records == 0 and core.pipeline.ledger.bytes == 0
        assert core.pipeline.ledger.owned() == []

    run_core(scenario, {TP: [track(i) for i in range(5)]}, drain_timeout="5")


def test_a_revoke_whose_drain_runs_out_hands_back_all_unstarted_work() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 3, "three jobs submitted")
        core.sink.started = {(TP, 0), (TP, 1)}
        core.sink.ack(1)
        await core.source.revoke(TP)  # 0 never finishes within the budget
        assert core.committed() == 0
        assert list(core.sink.jobs) == [(TP, 0)]  # 2 went back unsent; 0 is still being sent
        assert core.pipeline.ledger.records == 1
        core.sink.ack(0)  # too late: it only frees its room
        await asyncio.sleep(0.02)
        assert core.committed() == 0 and core.pipeline.ledger.records == 0

    run_core(scenario, {TP: [track(i) for i in range(3)]}, drain_timeout="0.05")


def test_lost_partitions_commit_nothing_and_their_late_acks_are_ignored() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 3, "three jobs submitted")
        core.sink.started = {(TP, 0)}
        started = core.sink.jobs[(TP, 0)]
        await core.source.lose(TP)
        assert core.committed() in (None, 0)  # read, nothing done
        assert list(core.sink.jobs) == [(TP, 0)]  # only the started one is still out
        assert core.pipeline.ledger.records == 1
        core.sink.on_done(core.sink.jobs.pop((TP, 0)), None)  # FullStory answers after all
        assert started.record.generation == 1
        await asyncio.sleep(0.02)
        assert core.committed() in (None, 0)
        assert core.pipeline.ledger.records == 0

    run_core(scenario, {TP: [track(i) for i in range(3)]})


def test_acks_from_an_old_generation_never_move_the_new_owners_commit() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 2, "two jobs submitted")
        core.sink.started = {(TP, 0), (TP, 1)}
        old = dict(core.sink.jobs)
        await core.source.revoke(TP)  # the drain budget runs out: nothing past 0 is done
        assert core.committed() == 0
        core.sink.jobs.clear()
        await core.source.assign(TP)  # ours again, read again from the start
        await core.until(lambda: len(core.sink.jobs) == 2, "the records read again")
        for job in old.values():  # the first generation's answers arrive now
            core.sink.on_done(job, None)
        await asyncio.sleep(0.02)
        assert core.committed() == 0
        assert core.pipeline.ledger.records == 2
        core.sink.ack(0)
        core.sink.ack(1)
        await core.until(lambda: core.committed() == 2, "the new generation's commit")

    run_core(scenario, {TP: [track(0), track(1)]}, drain_timeout="0.05")


@pytest.mark.parametrize("bound", ["records", "bytes"])
def test_backpressure_pauses_at_a_bound_and_resumes_below_half(bound: str) -> None:
    size = len(track(0)) + 1  # value and key
    limits = (
        {"max_in_flight_records": "4"}
        if bound == "records"
        else {"max_in_flight_bytes": str(4 * size)}
    )

    async def scenario(core: Core) -> None:
        await core.until(lambda: TP in core.source.paused, "paused at the bound")
        assert len(core.sink.jobs) == 4  # not one record more was read
        assert core.sink.flushes >= 1  # what waits to be grouped goes now
        core.sink.ack(0)
        await asyncio.sleep(0.02)
        assert TP in core.source.paused  # 3 in flight: above half
        core.sink.ack(1)
        await core.until(lambda: TP not in core.source.paused, "resumed at half")
        await core.until(lambda: len(core.sink.jobs) == 4, "reading on up to the bound")

    run_core(scenario, {TP: [track(i) for i in range(10)]}, poll_batch="1", **limits)


def test_a_registry_wait_pauses_and_rewinds_only_its_partition_then_rereads_it() -> None:
    other: Partition = ("t", 1)
    failing = track(1)

    async def scenario(core: Core) -> None:
        await core.until(lambda: (TP, 1) in core.source.seeks, "rewound to the record")
        assert TP in core.source.paused and other not in core.source.paused
        assert core.dlq.sent == []  # an outage dead-letters nothing
        await core.until(lambda: len(core.sink.jobs) == 5, "re-read once the wait is over")
        assert TP not in core.source.paused
        assert sorted(off for tp, off in core.sink.jobs if tp == TP) == [0, 1, 2]
        for tp, offset in list(core.sink.jobs):
            core.sink.ack(offset, tp=tp)
        await core.until(lambda: core.committed() == 3, "all of it committed")

    run_core(
        scenario,
        {TP: [track(0), failing, track(2)], other: [track(10), track(11)]},
        decoder=FlakyRegistryDecoder(failing, failures=1),
        poll_batch="1",
    )


def test_a_schema_fetch_leaves_the_loop_running_and_the_record_is_decoded_after(
    registry: tuple[str, list[tuple[str, str | None]]], slow_answer: float
) -> None:
    """The registry takes `slow_answer` seconds for id 7: the partition waits, paused and
    rewound, while the loop keeps turning; then the record is read again and decoded."""
    url, seen = registry
    framed = b"\x00" + (7).to_bytes(4, "big") + track(0)

    async def scenario(core: Core) -> None:
        loop = asyncio.get_running_loop()
        gaps: list[float] = []
        last = loop.time()
        while not core.sink.jobs:
            assert loop.time() - last < 10 * slow_answer, "never decoded"
            await asyncio.sleep(0.01)
            now = loop.time()
            gaps.append(now - last)
            last = now
        assert sum(gaps) >= slow_answer  # the fetch took its time...
        assert max(gaps) < slow_answer / 2  # ...and the loop never stood still for it
        assert (TP, 0) in core.source.seeks  # waited through the pause-and-re-read path
        assert list(core.sink.jobs) == [(TP, 0)] and core.dlq.sent == []
        assert [path for path, _ in seen] == ["/schemas/ids/7"]  # fetched once
        retries = core.pipeline.metrics.registry.get_sample_value(
            "fullstory_consumer_fullstory_retries_total", {"cause": "registry"}
        )
        assert not retries  # waiting for a fetch is no registry failure

    run_core(scenario, {TP: [framed]}, framing="confluent", schema_registry_url=url)
