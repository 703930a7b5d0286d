"""Emulator batch imports: job lifecycle, paging, item errors, limits, idempotency, recording."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumer.emulator import EmulatorConfig, create_app

Client = TestClient[Any, Any]
AUTH = {"Authorization": "Basic test-key"}
FAST = EmulatorConfig(batch_processing_ms=30)


def run(scenario: Callable[[Client], Awaitable[None]], config: EmulatorConfig = FAST) -> None:
    async def main() -> None:
        async with TestClient(TestServer(create_app(config))) as client:
            await scenario(client)

    asyncio.run(main())


async def call(
    client: Client, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any, aiohttp.ClientResponse]:
    headers = dict(AUTH)
    if key is not None:
        headers["Idempotency-Key"] = key
    data = None if body is None else orjson.dumps(body)
    response = await client.request(method, path, data=data, headers=headers)
    return response.status, orjson.loads(await response.read()), response


async def control(client: Client, path: str, body: Any = None) -> Any:
    method = "GET" if body is None else "POST"
    response = await client.request(method, path, data=None if body is None else orjson.dumps(body))
    assert response.status == 200
    return orjson.loads(await response.read())


async def finished(client: Client, kind: str, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        status, payload, _ = await call(client, "GET", f"/v2/{kind}/batch/{job_id}")
        assert status == 200
        if payload["job"]["status"] != "PROCESSING":
            return dict(payload)
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


def events(*names: str) -> dict[str, Any]:
    return {"requests": [{"name": name} for name in names]}


def test_job_lifecycle_processing_then_completed() -> None:
    async def scenario(client: Client) -> None:
        status, created, _ = await call(client, "POST", "/v2/events/batch", events("a", "b"))
        assert status == 200
        job = created["job"]
        assert set(job) == {"id", "status", "created"} and job["status"] == "PROCESSING"
        status, payload, _ = await call(client, "GET", f"/v2/events/batch/{job['id']}")
        assert payload == {"imports": 0, "errors": 0, "job": job}
        for which in ("imports", "errors"):
            status, payload, _ = await call(client, "GET", f"/v2/events/batch/{job['id']}/{which}")
            assert (status, payload) == (202, {})
        assert await control(client, "/emulator/requests?path=/v2/events") == []
        done = await finished(client, "events", job["id"])
        assert done["job"]["status"] == "COMPLETED" and "finished" in done["job"]
        assert (done["imports"], done["errors"]) == (2, 0)
        status, page, _ = await call(client, "GET", f"/v2/events/batch/{job['id']}/imports")
        assert status == 200
        assert page == {"results": [{"name": "a"}, {"name": "b"}], "total_records": "2"}
        # a job is found only under its own kind
        status, payload, _ = await call(client, "GET", f"/v2/users/batch/{job['id']}")
        assert (status, payload["code"]) == (404, "resource_not_found")

    run(scenario)


def test_processing_time_is_configurable_at_run_time() -> None:
    async def scenario(client: Client) -> None:
        faults = await control(client, "/emulator/faults", {"batch_processing_ms": 400})
        assert faults["batch_processing_ms"] == 400
        _, created, _ = await call(client, "POST", "/v2/events/batch", events("a"))
        await asyncio.sleep(0.2)
        _, payload, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}")
        assert payload["job"]["status"] == "PROCESSING"
        await asyncio.sleep(0.3)
        _, payload, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}")
        assert payload["job"]["status"] == "COMPLETED"

    run(scenario)


def test_item_errors_fail_the_job_and_point_back_to_the_item() -> None:
    async def scenario(client: Client) -> None:
        body = {"requests": [{"uid": "ok"}, {"uid": ""}, {"uid": "x", "bogus": 1}]}
        _, created, _ = await call(client, "POST", "/v2/users/batch", body, key="k1")
        done = await finished(client, "users", created["job"]["id"])
        assert done["job"]["status"] == "FAILED"
        assert (done["imports"], done["errors"]) == (1, 2)
        _, page, _ = await call(client, "GET", f"/v2/users/batch/{created['job']['id']}/errors")
        assert page["total_records"] == "2"
        assert [(e["index"], e["user"], e["code"]) for e in page["results"]] == [
            (1, {"uid": ""}, "invalid_argument"),
            (2, {"uid": "x", "bogus": 1}, "invalid_argument"),
        ]
        assert "uid" in page["results"][0]["message"]
        _, imports, _ = await call(client, "GET", f"/v2/users/batch/{created['job']['id']}/imports")
        assert imports["results"][0]["uid"] == "ok"
        users = await control(client, "/emulator/users")
        assert [u.get("uid") for u in users] == ["ok"]
        rejected = [
            r
            for r in await control(client, "/emulator/requests?all=1&path=/v2/users")
            if r["status"] == 400
        ]
        assert [r["idempotency_key"] for r in rejected] == ["k1#1", "k1#2"]

    run(scenario)


def test_shared_context_applies_to_items_and_conflicts_with_their_own() -> None:
    async def scenario(client: Client) -> None:
        context = {"browser": {"url": "https://x.example/"}}
        body = {
            "requests": [{"name": "a"}, {"name": "b", "context": context}],
            "shared": {"context": context},
        }
        _, created, _ = await call(client, "POST", "/v2/events/batch", body)
        done = await finished(client, "events", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 1)
        log = await control(client, "/emulator/requests?path=/v2/events")
        assert [r["body"] for r in log] == [{"name": "a", "context": context}]
        bad_shared = {"requests": [{"name": "a"}], "shared": {"context": {"nope": {}}}}
        status, _, _ = await call(client, "POST", "/v2/events/batch", bad_shared)
        assert status == 400

    run(scenario)


def test_errors_and_imports_are_paged() -> None:
    async def scenario(client: Client) -> None:
        await control(client, "/emulator/faults", {"batch_page_size": 2})
        _, created, _ = await call(client, "POST", "/v2/events/batch", events(*"abcde"))
        base = f"/v2/events/batch/{created['job']['id']}/imports"
        await finished(client, "events", created["job"]["id"])
        seen: list[str] = []
        token: str | None = None
        pages = 0
        while True:
            path = base + (f"?page_token={token}" if token else "")
            status, page, _ = await call(client, "GET", path)
            assert status == 200 and page["total_records"] == "5"
            seen += [item["name"] for item in page["results"]]
            pages += 1
            token = page.get("next_page_token")
            if token is None:
                break
        assert (seen, pages) == (list("abcde"), 3)
        status, _, _ = await call(client, "GET", base + "?page_token=oops")
        assert status == 400

    run(scenario)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"requests": []}, id="empty"),
        pytest.param({"requests": {"name": "a"}}, id="not-a-list"),
        pytest.param({"items": [{"name": "a"}]}, id="unknown-field"),
        pytest.param({"requests": [{"name": "a"}] * 50_001}, id="too-many"),
        pytest.param([{"name": "a"}], id="not-an-object"),
    ],
)
def test_an_invalid_batch_is_rejected_whole(body: Any) -> None:
    async def scenario(client: Client) -> None:
        status, payload, _ = await call(client, "POST", "/v2/events/batch", body)
        assert (status, payload["code"]) == (400, "invalid_argument")
        assert (await control(client, "/emulator/stats"))["batch_jobs"] == {}

    run(scenario)


def test_in_progress_limit_answers_429_with_retry_after() -> None:
    async def scenario(client: Client) -> None:
        await control(client, "/emulator/faults", {"batch_processing_ms": 300})
        for _ in range(2):
            status, _, _ = await call(client, "POST", "/v2/events/batch", events("a"))
            assert status == 200
        status, payload, response = await call(client, "POST", "/v2/users/batch", events("a"))
        assert (status, payload["code"]) == (429, "too_many_requests")
        assert response.headers["Retry-After"] == "1"
        await asyncio.sleep(0.35)
        status, _, _ = await call(client, "POST", "/v2/users/batch", {"requests": [{"uid": "u"}]})
        assert status == 200

    run(scenario, EmulatorConfig(max_in_progress_jobs=2))


def test_idempotent_batch_create_replays_the_job_and_logs_items_once() -> None:
    async def scenario(client: Client) -> None:
        body = events("a", "b")
        _, first, _ = await call(client, "POST", "/v2/events/batch", body, key="B1")
        await finished(client, "events", first["job"]["id"])
        _, again, _ = await call(client, "POST", "/v2/events/batch", body, key="B1")
        assert again == first
        status, _, _ = await call(client, "POST", "/v2/events/batch", events("c"), key="B1")
        assert status == 400  # same key, other body
        await asyncio.sleep(0.05)
        stats = await control(client, "/emulator/stats")
        assert stats["batch_jobs"] == {"COMPLETED": 1}
        items = await control(client, "/emulator/requests?path=/v2/events")
        assert [
            (r["method"], r["body"], r["idempotency_key"], r["replay"], r["status"]) for r in items
        ] == [
            ("POST", {"name": "a"}, "B1#0", False, 200),
            ("POST", {"name": "b"}, "B1#1", False, 200),
        ]
        assert {r["batch_job"] for r in items} == {first["job"]["id"]}
        posts = await control(client, "/emulator/requests?path=/v2/events/batch")
        assert [r["replay"] for r in posts] == [False, True]
        assert stats["delivered"]["/v2/events"] == 2

    run(scenario)


def test_batch_endpoints_need_auth_and_reset_forgets_jobs() -> None:
    async def scenario(client: Client) -> None:
        response = await client.post("/v2/events/batch", data=orjson.dumps(events("a")))
        assert response.status == 401
        _, created, _ = await call(client, "POST", "/v2/events/batch", events("a"))
        await control(client, "/emulator/reset", {})
        status, _, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}")
        assert status == 404

    run(scenario)


def test_item_reject_rules_fail_items_but_retryable_rules_do_not() -> None:
    async def scenario(client: Client) -> None:
        rules = [
            {"field": "name", "value": "bad", "status": 400, "message": "nope"},
            {"field": "name", "value": "slow", "status": 503, "path": "/v2/events"},
        ]
        await control(client, "/emulator/faults", {"reject_matching": rules})
        _, created, _ = await call(client, "POST", "/v2/events/batch", events("bad", "slow"))
        done = await finished(client, "events", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 1)
        _, page, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}/errors")
        assert [(e["index"], e["message"]) for e in page["results"]] == [(0, "nope")]

    run(scenario)
