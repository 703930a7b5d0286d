"""Fakes that drive the real Pipeline without Kafka or FullStory: a source over in-memory partition
logs, a sink that holds every job until the test acknowledges it, a dead-letter queue the test
confirms, and `run_core`, which runs a scenario against them (tests/unit/test_pipeline_core.py,
test_budget_gate.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Message

from consumer.app import Pipeline
from consumer.budget_log import BudgetLog
from consumer.codec.decode import Decoder
from consumer.codec.encode import Encoder
from consumer.codec.schema_registry import RegistryUnavailable
from consumer.config import load_config
from consumer.record import Partition, Record
from consumer.sink.batch import Persist
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
        self.refuse = 0  # periodic commits to refuse, as a broker does during a rebalance
        self.refuse_sync = 0  # synchronous ones (a batch plan) to refuse
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

    async def commit(self, commits: Commits, *, asynchronous: bool = False) -> Partitions:
        refused = [(t, p) for t, p, _o, _m in commits]
        if asynchronous and self.refuse and commits:
            self.refuse -= 1  # reported later, as librdkafka's on_commit is
            asyncio.get_running_loop().call_soon(self.listeners.commit_failed, refused)
            return []
        if not asynchronous and self.refuse_sync and commits:
            self.refuse_sync -= 1
            return refused  # a synchronous commit says so in its result
        self.commits += commits
        return []

    async def probe(self, timeout: float = 2.0) -> None:
        pass

    async def close(self) -> None:
        await self.revoke(*list(self.positions))


class FakeSink:
    """Holds every job until the test acknowledges it; `started` jobs are the ones a sender has
    begun (a revoke must wait for those, and may take the others back)."""

    def __init__(self, on_done: Done, on_fatal: Fatal, persist: Persist) -> None:
        self.on_done = on_done
        self.persist = persist  # the pipeline's hook for a batch plan
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
    settings: Path | None = None,
    budget_log: BudgetLog | None = None,
    **env: str,
) -> None:
    """Run `scenario` against the real Pipeline on the fakes; `env` sets options by name."""
    config = load_config(
        {
            "bootstrap_servers": "127.0.0.1:9",
            "group_id": "g",
            "topics": sorted({t for t, _ in logs}),
            "api_key": "k",
            "settings": str(settings) if settings else None,
        },
        env={f"FULLSTORY_CONSUMER_{k.upper()}": v for k, v in env.items()},
    )
    made: dict[str, Any] = {}

    def source(listeners: Listeners) -> FakeSource:
        made["source"] = FakeSource(listeners, logs)
        return cast(FakeSource, made["source"])

    def sink(on_done: Done, on_fatal: Fatal, persist: Persist) -> FakeSink:
        made["sink"] = FakeSink(on_done, on_fatal, persist)
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
            budget_log=budget_log,
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
