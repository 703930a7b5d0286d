"""The budget stage in the real Pipeline, on fakes (pipeline_fakes.py) and a budget log that keeps
its claims in memory: what is sent, skipped, paused and committed as the budget runs out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from pipeline_fakes import TP, Core, run_core

from consumer.budget_log import BudgetLog
from consumer.codec.encode import Encoder
from consumer.policy.budget import Claim
from consumer.record import Partition

ENCODER = Encoder()


def event(kind: str, n: int, user: str = "u") -> bytes:
    if kind == "identify":
        return ENCODER.encode(
            {"type": "identify", "messageId": f"i{n}", "userId": user, "traits": {"n": n}}
        )
    return ENCODER.encode({"type": "track", "messageId": f"t{n}", "userId": user, "event": "E"})


class MemoryBudgetLog(BudgetLog):
    """The budget log without Kafka: a claim is applied to the book at once, or when the test
    releases it (`hold` set); `claims` is the log."""

    def __init__(self) -> None:
        super().__init__({}, "g.budget", member="m")
        self.claims: list[Claim] = []
        self.hold = False
        self.held: list[Claim] = []

    async def start(self, timeout: float = 30.0) -> None:
        self._loop = asyncio.get_running_loop()

    def _produce(self, claim: Claim) -> None:
        self.held.append(claim)
        if not self.hold:
            self.release()

    def release(self) -> None:
        held, self.held = self.held, []
        for claim in held:
            self.claims.append(claim)
            self._applied(claim, self.book.apply(claim))

    async def close(self) -> None:
        pass


def settings_file(tmp_path: Path, **budget: Any) -> Path:
    path = tmp_path / "settings.json"
    path.write_bytes(orjson.dumps({"budget": budget}))
    return path


def run_budget(
    scenario: Any, logs: dict[Partition, list[bytes]], tmp_path: Path, **budget: Any
) -> MemoryBudgetLog:
    budget_log = MemoryBudgetLog()
    run_core(scenario, logs, settings=settings_file(tmp_path, **budget), budget_log=budget_log)
    return budget_log


def test_events_go_while_the_budget_lasts_then_are_skipped_and_users_keep_flowing(
    tmp_path: Path,
) -> None:
    logs = {TP: [event("track", 0), event("track", 1), event("identify", 2), event("track", 3)]}
    sent: list[int] = []

    async def scenario(core: Core) -> None:
        async def ack_as_they_come() -> None:
            while True:
                for _, offset in list(core.sink.jobs):
                    sent.append(offset)
                    core.sink.ack(offset)
                await asyncio.sleep(0.001)

        acker = asyncio.create_task(ack_as_they_come())
        try:
            await core.until(lambda: core.committed() == 4, "every record done")
        finally:
            acker.cancel()
        metrics = core.pipeline.metrics.registry
        skipped = metrics.get_sample_value(
            "fullstory_consumer_records_skipped_total", {"reason": "budget_exhausted"}
        )
        used = metrics.get_sample_value(
            "fullstory_consumer_budget_used_events", {"destination": "default"}
        )
        assert (skipped, used) == (1, 2)

    budget_log = run_budget(scenario, logs, tmp_path, events_per_cycle=2)
    assert sorted(sent) == [0, 1, 2]  # the identify after exhaustion still goes
    claimed = [offset for c in budget_log.claims for offset, _ in c.records]
    assert 2 not in claimed  # a user costs nothing and needs no claim


def test_a_user_behind_a_waiting_event_waits_too_and_claims_batch_up(tmp_path: Path) -> None:
    logs = {TP: [event("track", 0), event("identify", 1), event("track", 2), event("track", 3)]}
    budget_log = MemoryBudgetLog()
    budget_log.hold = True

    async def scenario(core: Core) -> None:
        await core.until(lambda: len(budget_log.held) == 1, "the first claim")
        await asyncio.sleep(0.02)
        assert core.sink.jobs == {}  # the identify keeps its place behind the track
        budget_log.release()
        await core.until(lambda: len(budget_log.held) == 1, "the second claim")
        assert sorted(o for _, o in core.sink.jobs) == [0, 1]
        budget_log.release()
        await core.until(lambda: len(core.sink.jobs) == 4, "all sent")

    run_core(
        scenario,
        logs,
        settings=settings_file(tmp_path, events_per_cycle=100),
        budget_log=budget_log,
    )
    assert [c.records for c in budget_log.claims] == [((0, 1),), ((2, 1), (3, 1))]


def test_records_read_again_are_decided_from_the_book_without_a_claim(tmp_path: Path) -> None:
    budget_log = MemoryBudgetLog()
    logs = {TP: [event("track", 0), event("track", 1)]}

    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 1, "the granted record")
        assert list(core.sink.jobs) == [(TP, 0)]  # 1 did not fit and was skipped
        claims = len(budget_log.claims)
        await core.source.revoke(TP)  # 0 unacknowledged: the commit stays at 0
        assert core.committed() == 0
        core.sink.jobs.clear()
        await core.source.assign(TP)  # read again from 0
        await core.until(lambda: len(core.sink.jobs) == 1, "granted again, from the book")
        assert len(budget_log.claims) == claims  # decided records need no second claim

    run_core(
        scenario,
        logs,
        settings=settings_file(tmp_path, events_per_cycle=1),
        budget_log=budget_log,
        drain_timeout="0.05",
    )
    count = budget_log.book.count("default", budget_log.claims[0].cycle)
    assert count is not None and count.granted == 1


def test_pause_hands_back_the_rest_and_rereads_it_when_the_next_cycle_starts(
    tmp_path: Path,
) -> None:
    # a daily cycle that ends in about a second
    end = time.time() + 1.0
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(end)) + f".{int(end % 1 * 1e6):06d}Z"
    logs = {TP: [event("track", i) for i in range(4)]}

    async def scenario(core: Core) -> None:
        await core.until(lambda: TP in core.source.paused, "paused at exhaustion")
        assert sorted(o for _, o in core.sink.jobs) == [0, 1]
        assert (TP, 2) in core.source.seeks  # rewound to the first denied record
        assert core.pipeline.ledger.records == 2  # 2 and 3 handed back, not done
        for offset in (0, 1):
            core.sink.ack(offset)
        await core.until(lambda: core.committed() == 2, "commit stops at the denied record")
        for _ in range(3000):  # the next cycle: read again and granted
            if len(core.sink.jobs) == 2:
                break
            await asyncio.sleep(0.001)
        assert sorted(o for _, o in core.sink.jobs) == [2, 3]
        for offset in (2, 3):
            core.sink.ack(offset)
        await core.until(lambda: core.committed() == 4, "the re-read records committed")
        skipped = core.pipeline.metrics.registry.get_sample_value(
            "fullstory_consumer_records_skipped_total", {"reason": "budget_exhausted"}
        )
        assert not skipped  # pause skips nothing

    run_budget(
        scenario,
        logs,
        tmp_path,
        events_per_cycle=2,
        cycle="daily",
        cycle_start=start,
        when_exhausted="pause",
    )


@pytest.mark.parametrize("mode", ["skip", "pause"])
def test_a_zero_budget_sends_users_only(tmp_path: Path, mode: str) -> None:
    logs = {TP: [event("identify", 0), event("track", 1), event("identify", 2)]}

    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) >= 1, "the identify")
        await asyncio.sleep(0.05)
        offsets = sorted(o for _, o in core.sink.jobs)
        assert offsets == ([0, 2] if mode == "skip" else [0])

    run_budget(scenario, logs, tmp_path, events_per_cycle=0, when_exhausted=mode)
