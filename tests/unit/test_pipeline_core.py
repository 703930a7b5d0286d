"""The at-least-once core without Kafka: the real Pipeline composed with a fake source, a fake sink
and a fake dead-letter queue (pipeline_fakes.py), each controlled by the test, so every rule is
checked step by step and none depends on a broker or on timing beyond a few loop turns."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from pipeline_fakes import (
    ALIAS,
    ENCODER,
    GARBAGE,
    TP,
    Core,
    FlakyRegistryDecoder,
    run_core,
    track,
)

from consumer.record import Partition
from consumer.sink.client import Rejected


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


def test_a_refused_commit_is_made_again_though_nothing_changed_since() -> None:
    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 3, "three jobs submitted")
        core.source.refuse = 2
        for offset in range(3):
            core.sink.ack(offset)
        await core.until(lambda: core.source.refuse == 0, "both refusals")
        await core.until(lambda: core.committed() == 3, "the refused commit made again")

    run_core(scenario, {TP: [track(i) for i in range(3)]})


def test_a_batch_plan_the_broker_refused_is_written_again_before_its_jobs_start() -> None:
    """A plan refused during a rebalance and its import jobs created anyway let the next owner
    form other segments and import their items twice: the hook returns only once it is in."""

    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 3, "three jobs submitted")
        core.source.refuse_sync = 2
        await asyncio.wait_for(core.sink.persist(TP, "plan-0-3"), 10)
        assert core.source.refuse_sync == 0
        assert "plan-0-3" in [metadata for _t, _p, _o, metadata in core.source.commits]

    run_core(scenario, {TP: [track(i) for i in range(3)]})


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


def test_privacy_applies_before_the_sink_and_each_action_is_counted(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_bytes(
        orjson.dumps({"privacy": {"drop": ["context.ip"], "detect": {"card": "redact"}}})
    )
    event = {
        "type": "track",
        "messageId": "p1",
        "userId": "u",
        "event": "E",
        "properties": {"note": "card 4111 1111 1111 1111"},
        "context": {"ip": "198.51.100.9"},
    }

    async def scenario(core: Core) -> None:
        await core.until(lambda: len(core.sink.jobs) == 1, "the job submitted")
        (job,) = core.sink.jobs.values()
        sent = orjson.dumps([r.body for r in job.requests])
        assert b"4111" not in sent and b"198.51.100.9" not in sent
        registry = core.pipeline.metrics.registry
        for action in ("drop", "redact"):
            labels = {"destination": "default", "action": action}
            count = registry.get_sample_value("fullstory_consumer_privacy_actions_total", labels)
            assert count == 1, action

    run_core(scenario, {TP: [ENCODER.encode(event)]}, settings=settings)
