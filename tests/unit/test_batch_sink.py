"""BatchSink against the real emulator on a loopback port, with a real FullStoryClient."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from consumer.emulator import EmulatorConfig, create_app
from consumer.emulator.batch import settle
from consumer.emulator.server import STATE
from consumer.emulator.state import EmulatorState
from consumer.metrics import Metrics
from consumer.record import Record
from consumer.sink.batch import BatchSink, parse_plan, plan_metadata
from consumer.sink.batch_errors import UNMATCHED
from consumer.sink.client import AuthenticationError, FullStoryClient, Rejected
from consumer.sink.contract import Job
from consumer.sink.import_job import batch_key
from consumer.sink.retry import Backoff
from consumer.transform import Request


@dataclass
class Env:
    """A running emulator, a client for it, and what the sink reported."""

    url: str
    state: EmulatorState
    client: FullStoryClient
    done: dict[int, Rejected | None] = field(default_factory=dict)
    fatal: list[BaseException] = field(default_factory=list)
    order: list[int] = field(default_factory=list)

    def on_done(self, job: Job, rejected: Rejected | None) -> None:
        assert job.record.offset not in self.done, "a job reported twice"
        self.done[job.record.offset] = rejected
        self.order.append(job.record.offset)

    def sink(self, **kwargs: Any) -> BatchSink:
        kwargs.setdefault("poll_interval", 0.02)
        return BatchSink(self.on_done, self.fatal.append, **kwargs)

    def job(self, offset: int, *requests: Request) -> Job:
        record = Record("t", 0, offset, f"k{offset}".encode(), b"v", None, 1)
        return Job(record, requests, self.client)

    def log(self, path: str | None, *, everything: bool = False) -> list[dict[str, Any]]:
        """The emulator's request log (read in-process: the server runs in this loop)."""
        settle(self.state)
        entries: list[dict[str, Any]] = orjson.loads(self.state.requests_json(everything, 0, path))
        return entries

    async def faults(self, **faults: Any) -> None:
        async with httpx.AsyncClient() as http:
            (await http.post(f"{self.url}/emulator/faults", json=faults)).raise_for_status()

    async def wait_done(self, count: int, timeout: float = 20.0) -> None:
        for _ in range(int(timeout / 0.01)):
            if len(self.done) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"only {len(self.done)} of {count} jobs done")


def run(scenario: Callable[[Env], Awaitable[None]], config: EmulatorConfig | None = None) -> None:
    """Run a scenario with the emulator served on 127.0.0.1 inside the test's event loop."""

    async def main() -> None:
        app = create_app(config or EmulatorConfig(batch_processing_ms=20))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        client = FullStoryClient(
            url, "test-key", Metrics(), connections=24, backoff=Backoff(0.01, 0.05)
        )
        try:
            await scenario(Env(url, app[STATE], client))
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(main())


def event(name: str, n: int = 0) -> Request:
    return Request("POST", "/v2/events", {"name": name, "properties": {"n": n}}, f"e-{name}-{n}")


def user(uid: str, n: int = 0) -> Request:
    return Request("POST", "/v2/users", {"uid": uid}, f"u-{uid}-{n}")


def delete(uid: str) -> Request:
    return Request("DELETE", f"/v2/users?uid={uid}", None, f"d-{uid}")


def test_linger_flushes_a_partial_batch_into_one_import_job() -> None:
    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=100, linger=0.2)
        sink.start()
        for i in range(5):
            sink.submit(env.job(i, event("a", i)))
        await asyncio.sleep(0.1)
        assert env.log("/v2/events/batch") == []  # still lingering
        assert not sink.idle
        await env.wait_done(5)
        assert env.done == dict.fromkeys(range(5))
        (create,) = env.log("/v2/events/batch")
        assert [b["properties"]["n"] for b in create["body"]["requests"]] == [0, 1, 2, 3, 4]
        items = env.log("/v2/events")
        assert len(items) == 5 and all(r["batch_job"] and not r["replay"] for r in items)
        assert sink.idle
        await sink.close()

    run(scenario)


def test_max_items_seals_between_records_and_a_record_is_done_once_all_its_jobs_are() -> None:
    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=4, linger=0.05)
        sink.start()
        for i in range(10):
            sink.submit(env.job(i, event("b", i)))
        # a record with a user and two events does not fit beside records 8 and 9: it starts a
        # segment of its own, whose two import jobs (users, events) must both finish
        sink.submit(env.job(10, user("x"), event("c", 1), event("c", 2)))
        await env.wait_done(11)
        assert env.done == dict.fromkeys(range(11))
        sizes = sorted(len(r["body"]["requests"]) for r in env.log("/v2/events/batch"))
        assert sizes == [2, 2, 4, 4]
        assert len(env.log("/v2/users/batch")) == 1
        assert len(env.log("/v2/events")) == 12 and len(env.log("/v2/users")) == 1
        await sink.close()

    run(scenario)


def test_failed_items_are_mapped_back_to_their_jobs() -> None:
    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=1000, linger=0.05)
        sink.start()
        bad = Request("POST", "/v2/events", {"name": ""}, "bad-1")
        twin = Request("POST", "/v2/events", {"name": ""}, "bad-2")  # identical body
        sink.submit(env.job(0, event("ok", 0)))
        sink.submit(env.job(1, bad))
        sink.submit(env.job(2, event("ok", 2)))
        sink.submit(env.job(3, event("ok", 3), twin))  # one good, one bad request
        sink.submit(env.job(4, Request("POST", "/v2/users", {"uid": ""}, "bad-user")))
        await env.wait_done(5)
        assert env.done[0] is None and env.done[2] is None
        for offset in (1, 3):
            rejected = env.done[offset]
            assert isinstance(rejected, Rejected)
            assert (rejected.status, rejected.code) == (400, "invalid_argument")
            assert "name" in rejected.message
        assert isinstance(env.done[4], Rejected) and "uid" in env.done[4].message
        assert len(env.log("/v2/events")) == 3  # the good ones were imported once
        await sink.close()

    run(scenario)


def test_errors_are_read_across_pages() -> None:
    async def scenario(env: Env) -> None:
        await env.faults(batch_page_size=2)
        sink = env.sink(max_items=100, linger=0.05)
        sink.start()
        for i in range(7):
            sink.submit(env.job(i, Request("POST", "/v2/events", {"name": ""}, f"bad-{i}")))
        sink.submit(env.job(7, event("ok", 7)))
        await env.wait_done(8)
        assert all(isinstance(env.done[i], Rejected) for i in range(7))
        assert env.done[7] is None
        assert len(env.log("/v2/events/batch")) == 1
        gets = [p for p in env.state.by_path if p.endswith("/errors")]
        assert gets and env.state.by_path[gets[0]] == 4  # 7 errors in pages of 2
        await sink.close()

    run(scenario)


def test_delete_goes_single_and_keeps_its_place_between_batches() -> None:
    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=100, linger=0.05)
        sink.start()
        sink.submit(env.job(0, user("gone")))
        sink.submit(env.job(1, delete("gone")))
        sink.submit(env.job(2, user("gone", 1)))
        await env.wait_done(3)
        assert env.done == dict.fromkeys(range(3))
        log = env.log(None)
        writes = [(r["method"], r["path"]) for r in log if r["method"] != "GET"]
        assert writes == [
            ("POST", "/v2/users/batch"),
            ("POST", "/v2/users"),
            ("DELETE", "/v2/users"),
            ("POST", "/v2/users/batch"),
            ("POST", "/v2/users"),
        ]
        assert env.order == [0, 1, 2]
        await sink.close()

    run(scenario)


def test_a_batch_rejected_as_a_whole_is_sent_item_by_item() -> None:
    async def scenario(env: Env) -> None:
        rule = {
            "field": "requests.0.name",
            "value": "first",
            "status": 400,
            "path": "/v2/events/batch",
            "times": 1,
        }
        await env.faults(reject_matching=[rule])
        sink = env.sink(max_items=100, linger=0.05)
        sink.start()
        sink.submit(env.job(0, event("first")))
        sink.submit(env.job(1, event("second")))
        sink.submit(env.job(2, Request("POST", "/v2/events", {"name": ""}, "bad")))
        await env.wait_done(3)
        assert env.done[0] is None and env.done[1] is None
        assert isinstance(env.done[2], Rejected) and env.done[2].status == 400
        singles = env.log("/v2/events")
        assert [r["idempotency_key"] for r in singles] == ["e-first-0", "e-second-0"]
        assert all("batch_job" not in r for r in singles)
        assert env.log("/v2/events/batch") == []  # the create was refused
        await sink.close()

    run(scenario)


def test_in_progress_limit_is_honoured() -> None:
    async def scenario(env: Env) -> None:
        await env.faults(batch_processing_ms=300)
        sink = env.sink(max_items=1, linger=0.0, max_jobs_in_flight=2)
        sink.start()
        peak = 0
        for i in range(6):
            sink.submit(env.job(i, event("p", i)))
        for _ in range(2000):
            processing = env.state.stats()["batch_jobs"].get("PROCESSING", 0)
            peak = max(peak, processing, sink.jobs_in_flight)
            if len(env.done) == 6:
                break
            await asyncio.sleep(0.005)
        assert len(env.done) == 6
        assert peak == 2
        await sink.close()

    run(scenario)


def test_emulator_429_on_too_many_jobs_is_retried() -> None:
    async def scenario(env: Env) -> None:
        await env.faults(max_in_progress_jobs=1, batch_processing_ms=100)
        sink = env.sink(max_items=1, linger=0.0, max_jobs_in_flight=3)
        sink.start()
        for i in range(3):
            sink.submit(env.job(i, event("q", i)))
        await env.wait_done(3, timeout=30)
        assert env.done == dict.fromkeys(range(3))
        statuses = [r["status"] for r in env.log("/v2/events/batch", everything=True)]
        assert 429 in statuses and statuses.count(200) == 3
        assert len(env.log("/v2/events")) == 3
        await sink.close()

    run(scenario)


def test_retried_create_reuses_the_job() -> None:
    keys = ["b", "a", "c"]
    assert batch_key("events", keys) == batch_key("events", sorted(keys))
    assert batch_key("events", keys) != batch_key("users", keys)
    assert batch_key("events", keys) != batch_key("events", keys[:2])


def test_close_abandons_running_jobs_and_their_records_stay_undone() -> None:
    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=100, linger=60.0)
        sink.start()
        await env.faults(batch_processing_ms=60_000)
        sink.submit(env.job(1, event("d", 1)))
        sink.flush()
        for _ in range(200):  # until its import job exists
            if env.log("/v2/events/batch"):
                break
            await asyncio.sleep(0.01)
        assert sink.jobs_in_flight == 1
        await sink.close()
        assert 1 not in env.done  # abandoned: stays uncommitted
        assert env.fatal == []

    run(scenario)


def test_wrong_key_is_fatal() -> None:
    async def scenario(env: Env) -> None:
        bad = FullStoryClient(env.url, "wrong", Metrics())
        sink = env.sink(max_items=10, linger=0.0)
        sink.start()
        sink.submit(Job(env.job(0).record, (event("x"),), bad))
        for _ in range(500):
            if env.fatal:
                break
            await asyncio.sleep(0.01)
        assert len(env.fatal) == 1 and isinstance(env.fatal[0], AuthenticationError)
        assert env.done == {}
        await sink.close()
        await bad.aclose()

    run(scenario)


@pytest.mark.parametrize("max_items", [0, 50_001])
def test_max_items_is_bounded(max_items: int) -> None:
    with pytest.raises(ValueError):
        BatchSink(lambda job, r: None, lambda exc: None, max_items=max_items)


def test_plan_metadata_round_trips_and_ignores_foreign_metadata() -> None:
    assert plan_metadata([]) == ""
    assert parse_plan(plan_metadata([(5, 9), (10, 30)])) == [(5, 9), (10, 30)]
    for foreign in (None, "", "checkpoint=7", "fsc1:9-5", "fsc1:a-b", "fsc1:1-2,x"):
        assert parse_plan(foreign) == []


def test_a_crash_after_create_re_forms_the_same_segment_and_stores_nothing_twice() -> None:
    async def scenario(env: Env) -> None:
        await env.faults(batch_processing_ms=400)
        persisted: dict[tuple[str, int], str] = {}

        async def persist(tp: tuple[str, int], metadata: str) -> None:
            persisted[tp] = metadata

        first = env.sink(max_items=100, linger=0.05, persist=persist)
        first.start()
        for i in range(5):
            first.submit(env.job(i, event("p", i)))
        for _ in range(200):  # until the import job exists (PROCESSING)
            if env.log("/v2/events/batch"):
                break
            await asyncio.sleep(0.01)
        assert persisted[("t", 0)] == "fsc1:0-4"
        await first.close()  # the "crash": nothing reported, nothing committed
        assert env.done == {}

        second = env.sink(max_items=100, linger=0.05)
        second.restore(("t", 0), persisted[("t", 0)])
        second.start()
        for i in range(8):  # redelivered, plus records the first member never saw
            second.submit(env.job(i, event("p", i)))
        await env.wait_done(8)
        creates = env.log("/v2/events/batch")
        assert [len(c["body"]["requests"]) for c in creates] == [5, 5, 3]
        assert creates[1]["replay"] is True  # the same segment, answered from the store
        stored = [r["body"]["properties"]["n"] for r in env.log("/v2/events") if not r["replay"]]
        assert sorted(stored) == list(range(8))
        await second.close()

    run(scenario)


def test_persist_runs_before_create_and_the_plan_empties_when_done() -> None:
    async def scenario(env: Env) -> None:
        seen: list[tuple[str, int]] = []

        async def persist(tp: tuple[str, int], metadata: str) -> None:
            assert env.log("/v2/events/batch") == []  # nothing created yet
            seen.append((metadata, len(env.log("/v2/events/batch"))))

        sink = env.sink(max_items=3, linger=0.05, persist=persist)
        sink.start()
        for i in range(3):
            sink.submit(env.job(i, event("q", i)))
        await env.wait_done(3)
        assert seen == [("fsc1:0-2", 0)]
        assert sink.plan(("t", 0)) == ""
        await sink.close()

    run(scenario)


def test_waiting_items_hold_about_their_json_size_not_the_mapped_dicts() -> None:
    """What bounds batch mode's memory: a record waiting for its import job costs about its
    JSON body (the mapped dict is dropped, and orjson's 4 KiB output buffer is not kept)."""
    body = {"name": "Order Completed", "properties": {f"p{i}": "x" * 20 for i in range(20)}}
    size = len(orjson.dumps(body))
    count = 2000

    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=50_000, linger=60.0)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i in range(count):
                mapped = orjson.loads(orjson.dumps(body))  # a fresh dict, as the transform makes
                sink.submit(env.job(i, Request("POST", "/v2/events", mapped, f"m{i}")))
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert held / count < size + 600, f"{held / count:.0f} B per waiting item, JSON {size} B"
        await sink.close()

    run(scenario)


def test_flush_seals_open_segments_at_once_instead_of_after_the_linger() -> None:
    """The app flushes when it pauses the partitions: no more records could join."""

    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=1000, linger=60.0)
        sink.start()
        for i in range(3):
            sink.submit(env.job(i, event("f", i)))
        await asyncio.sleep(0.2)
        assert not env.done  # lingering
        sink.flush()
        await env.wait_done(3, timeout=5.0)
        assert len(env.log("/v2/events/batch")) == 1
        await sink.close()

    run(scenario)


def run_fake(
    routes: Callable[[web.Request], Awaitable[web.Response]],
    scenario: Callable[[Env], Awaitable[None]],
) -> None:
    """Run a scenario against a hand-written FullStory (answers the emulator never gives)."""

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        client = FullStoryClient(url, "test-key", Metrics(), backoff=Backoff(0.01, 0.05))
        try:
            await scenario(Env(url, EmulatorState(EmulatorConfig()), client))
        finally:
            await client.aclose()
            await runner.cleanup()

    asyncio.run(main())


def failed_job(errors_page: Callable[[web.Request], web.Response], counted: int) -> Any:
    """A FullStory whose every user import job FAILED with `counted` errors, listed by
    `errors_page`; records which paths were asked."""
    asked: list[str] = []

    async def routes(request: web.Request) -> web.Response:
        asked.append(request.path_qs)
        if request.method == "POST":
            return web.json_response({"job": {"id": "j1", "status": "PROCESSING", "created": "x"}})
        if request.path.endswith("/errors"):
            return errors_page(request)
        job = {"id": "j1", "status": "FAILED", "created": "x", "finished": "y"}
        return web.json_response({"imports": 2 - counted, "errors": counted, "job": job})

    return routes, asked


def two_users_through(routes: Any) -> dict[int, Rejected | None]:
    """Users a and b in one import job against `routes`: what the sink reported for each."""
    done: dict[int, Rejected | None] = {}

    async def scenario(env: Env) -> None:
        sink = env.sink(max_items=10, linger=0.01)
        sink.start()
        sink.submit(env.job(0, user("a")))
        sink.submit(env.job(1, user("b")))
        await env.wait_done(2)
        done.update(env.done)
        await sink.close()

    run_fake(routes, scenario)
    return done


def test_a_repeated_page_token_ends_the_error_paging() -> None:
    def page(request: web.Request) -> web.Response:
        error = {"message": "m", "code": "c", "user": {"uid": "b", "schema": None}}
        return web.json_response(
            {"results": [error], "total_records": "1", "next_page_token": "again"}
        )

    routes, asked = failed_job(page, 1)
    assert two_users_through(routes) == {0: None, 1: Rejected(400, "c", "m")}
    assert [p for p in asked if "/errors" in p] == [
        "/v2/users/batch/j1/errors",
        "/v2/users/batch/j1/errors?page_token=again",
    ]


@pytest.mark.parametrize("answer", ["unreadable", "short"])
def test_errors_that_cannot_be_read_or_are_missing_count_nothing_as_imported(answer: str) -> None:
    def page(request: web.Request) -> web.Response:
        if answer == "unreadable":
            return web.json_response({"message": "gone", "code": "resource_not_found"}, status=404)
        return web.json_response({"results": [], "total_records": "0"})

    routes, _ = failed_job(page, 1)
    for rejected in two_users_through(routes).values():
        assert isinstance(rejected, Rejected) and rejected.code == UNMATCHED
