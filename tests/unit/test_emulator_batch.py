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
        assert status == 200 and set(page) == {"results", "total_records"}
        assert page["total_records"] == "2"
        # without a timestamp an event is stamped with the import time
        assert [set(r) for r in page["results"]] == [{"name", "timestamp"}] * 2
        assert [r["name"] for r in page["results"]] == ["a", "b"]
        assert all(r["timestamp"] >= job["created"] for r in page["results"])
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


def test_item_errors_fail_the_job_and_echo_the_parsed_item_without_an_index() -> None:
    async def scenario(client: Client) -> None:
        schema = {"properties": {"n": "int"}}
        too_long = {"uid": "x" * 257, "properties": {"n": 1}, "schema": schema}
        body = {"requests": [{"uid": "ok"}, {"uid": ""}, too_long]}
        _, created, _ = await call(client, "POST", "/v2/users/batch", body, key="k1")
        done = await finished(client, "users", created["job"]["id"])
        assert done["job"]["status"] == "FAILED"
        assert (done["imports"], done["errors"]) == (1, 2)
        _, page, _ = await call(client, "GET", f"/v2/users/batch/{created['job']['id']}/errors")
        assert page["total_records"] == "2" and "next_page_token" not in page
        assert [set(e) for e in page["results"]] == [{"message", "code", "user"}] * 2
        # FullStory's parsed copy: schema (null unless sent) and type_conflicts null are added
        assert [(e["user"], e["code"]) for e in page["results"]] == [
            ({"uid": "", "schema": None, "type_conflicts": None}, "invalid_argument"),
            ({**too_long, "type_conflicts": None}, "invalid_argument"),
        ]
        assert "uid" in page["results"][0]["message"]
        assert "256" in page["results"][1]["message"]
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
        base = f"/v2/events/batch/{created['job']['id']}"
        done = await finished(client, "events", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 1)
        log = await control(client, "/emulator/requests?path=/v2/events")
        assert [r["body"] for r in log] == [{"name": "a", "context": context}]
        _, imports, _ = await call(client, "GET", base + "/imports")
        assert imports["results"][0]["context"] == context
        _, errors, _ = await call(client, "GET", base + "/errors")
        (error,) = errors["results"]
        assert (error["event"], error["shared"]) == (body["requests"][1], body["shared"])
        assert set(error) == {"message", "code", "event", "shared"}
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
        pytest.param({}, id="no-requests"),
        pytest.param({"requests": ["a"]}, id="item-not-an-object"),
        pytest.param({"requests": [{"name": "a", "bogus": 1}]}, id="item-unknown-field"),
        pytest.param({"requests": [{"name": 5}]}, id="item-name-not-a-string"),
        pytest.param(
            {"requests": [{"name": "a", "context": {"device": {"screen_width": "1"}}}]},
            id="item-context-wrong-type",
        ),
        pytest.param({"requests": [{"name": "a"}], "shared": {"user": {}}}, id="shared-unknown"),
        pytest.param({"requests": [{"name": "a"}], "shared": None}, id="shared-null"),
        pytest.param({"requests": {"name": "a"}}, id="not-a-list"),
        pytest.param({"items": [{"name": "a"}]}, id="unknown-field"),
        pytest.param({"requests": [{"name": "a"}] * 50_001}, id="too-many"),
        pytest.param([{"name": "a"}], id="not-an-object"),
    ],
)
def test_an_invalid_batch_is_rejected_whole(body: Any) -> None:
    async def scenario(client: Client) -> None:
        status, payload, _ = await call(client, "POST", "/v2/events/batch", body)
        assert status == 400 and set(payload) == {"message", "code"}
        assert payload["code"] == ("required_field" if body == {} else "invalid_argument")
        assert (await control(client, "/emulator/stats"))["batch_jobs"] == {}

    run(scenario)


@pytest.mark.parametrize(
    "item",
    [
        pytest.param({"uid": "u", "name": "x"}, id="unknown-field"),
        pytest.param({"uid": 7}, id="uid-not-a-string"),
        pytest.param({"id": 7}, id="id-not-a-string"),
        pytest.param({"properties": None}, id="properties-null"),
        pytest.param({"schema": {"properties": []}}, id="schema-properties-not-an-object"),
    ],
)
def test_a_user_batch_whose_items_do_not_parse_is_rejected_whole(item: Any) -> None:
    async def scenario(client: Client) -> None:
        body = {"requests": [{"uid": "fine"}, item]}
        status, payload, _ = await call(client, "POST", "/v2/users/batch", body)
        assert (status, payload["code"]) == (400, "invalid_argument")
        assert "requests[1]" in payload["message"]

    run(scenario)


def test_in_progress_limit_answers_429_with_retry_after() -> None:
    async def scenario(client: Client) -> None:
        await control(client, "/emulator/faults", {"batch_processing_ms": 300})
        for _ in range(2):
            status, _, _ = await call(client, "POST", "/v2/events/batch", events("a"))
            assert status == 200
        users = {"requests": [{"uid": "u"}]}
        status, payload, response = await call(client, "POST", "/v2/users/batch", users)
        assert (status, payload["code"]) == (429, "too_many_requests")
        assert response.headers["Retry-After"] == "1"
        await asyncio.sleep(0.35)
        status, _, _ = await call(client, "POST", "/v2/users/batch", users)
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
            {"field": "name", "value": "gone", "status": 404},
            {"field": "name", "value": "slow", "status": 503, "path": "/v2/events"},
        ]
        await control(client, "/emulator/faults", {"reject_matching": rules})
        body = events("bad", "slow", "gone")
        _, created, _ = await call(client, "POST", "/v2/events/batch", body)
        done = await finished(client, "events", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 2)
        _, page, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}/errors")
        assert [(e["event"], e["message"], e["code"]) for e in page["results"]] == [
            ({"name": "bad"}, "nope", "invalid_argument"),
            (
                {"name": "gone"},
                "rejected by an emulator reject_matching rule",
                "resource_not_found",
            ),
        ]

    run(scenario)


async def imports(client: Client, kind: str, body: Any, query: str = "") -> list[Any]:
    """Create a job, wait for it, and return its import results (one page)."""
    status, created, _ = await call(client, "POST", f"/v2/{kind}/batch", body)
    assert status == 200, created
    await finished(client, kind, created["job"]["id"])
    status, page, _ = await call(
        client, "GET", f"/v2/{kind}/batch/{created['job']['id']}/imports{query}"
    )
    assert status == 200, page
    return list(page["results"])


def test_user_import_results_follow_batch_user_import_response() -> None:
    async def scenario(client: Client) -> None:
        full = {
            "uid": "u1",
            "display_name": "One",
            "email": "donotreply@fullstory",
            "properties": {"plan": "pro", "seen": "2024-05-01T10:00:00Z", "sign_up": {"n": 3}},
            "schema": {"properties": {"sign_up.n": "int"}},
        }
        body = {"requests": [full, {"display_name": "anonymous"}]}
        first, anonymous = await imports(client, "users", body)
        assert first == {
            "id": first["id"],
            **{k: v for k, v in full.items() if k != "schema"},
            "schema": None,
            "type_conflicts": None,
        }
        assert anonymous == {
            "id": anonymous["id"],
            "display_name": "anonymous",
            "schema": None,
            "type_conflicts": None,
        }
        assert first["id"] != anonymous["id"]
        first, anonymous = await imports(client, "users", body, "?include_schema=true")
        assert first["schema"] == {
            "properties": {"plan": "str", "seen": "date", "sign_up.n": "int"}
        }
        assert anonymous["schema"] == {"properties": {}}
        assert first["type_conflicts"] is None
        status, created, _ = await call(client, "POST", "/v2/users/batch", body)
        await finished(client, "users", created["job"]["id"])
        path = f"/v2/users/batch/{created['job']['id']}/imports?include_schema=yes"
        status, payload, _ = await call(client, "GET", path)
        assert (status, payload["code"]) == (400, "invalid_argument")

    run(scenario)


def test_user_items_may_name_the_fullstory_id() -> None:
    async def scenario(client: Client) -> None:
        _, known, _ = await call(client, "POST", "/v2/users", {"uid": "u1"})
        _, anonymous, _ = await call(client, "POST", "/v2/users", {})
        requests = [
            {"id": known["id"], "display_name": "Known"},
            {"id": anonymous["id"], "uid": "late"},  # an anonymous user gets its uid
            {"id": "999", "display_name": "Nobody"},
            {"id": known["id"], "uid": "other"},  # a uid, once set, never changes
        ]
        _, created, _ = await call(client, "POST", "/v2/users/batch", {"requests": requests})
        job = f"/v2/users/batch/{created['job']['id']}"
        done = await finished(client, "users", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (2, 2)
        _, page, _ = await call(client, "GET", job + "/imports")
        assert [r["id"] for r in page["results"]] == [known["id"], anonymous["id"]]
        _, page, _ = await call(client, "GET", job + "/errors")
        assert [e["code"] for e in page["results"]] == ["user_not_found", "invalid_argument"]
        users = {u["id"]: u for u in await control(client, "/emulator/users")}
        assert users[known["id"]] == {
            "id": known["id"],
            "uid": "u1",
            "display_name": "Known",
            "properties": {},
        }
        assert users[anonymous["id"]]["uid"] == "late"
        _, again, _ = await call(client, "POST", "/v2/users", {"uid": "late"})
        assert again["id"] == anonymous["id"]

    run(scenario)


def test_event_import_results_follow_batch_create_events_response() -> None:
    async def scenario(client: Client) -> None:
        _, known, _ = await call(client, "POST", "/v2/users", {"uid": "known"})
        stamp = "2024-05-01T12:00:00Z"
        context = {"browser": {"url": "https://x.example/"}}
        requests = [
            {"name": "a", "timestamp": stamp, "user": {"uid": "known"}, "properties": {"n": 1}},
            {"name": "b", "timestamp": stamp, "user": {"id": known["id"]}},
            {"name": "c", "timestamp": stamp, "user": {"uid": "new"}},
            {
                "name": "d",
                "timestamp": stamp,
                "user": {"uid": "known"},
                "session": {"use_most_recent": True},
            },
            {"name": "e", "timestamp": stamp, "session": {"id": "1:2"}, "schema": {}},
        ]
        body = {"requests": requests, "shared": {"context": context}}
        results = await imports(client, "events", body)
        ids = {"id": known["id"], "uid": "known"}
        shared = {"context": context, "timestamp": stamp}
        assert results == [
            {"user": ids, **shared, "name": "a", "properties": {"n": 1}},
            {"user": ids, **shared, "name": "b"},
            {"user": {"uid": "new"}, **shared, "name": "c"},
            {"user": ids, **shared, "name": "d"},  # no session: the emulator has none
            {"session": {"id": "1:2"}, **shared, "name": "e"},
        ]
        results = await imports(client, "events", body, "?include_schema=true")
        assert results[0]["schema"] == {"properties": {"n": "real"}}
        assert results[4]["schema"] == {"properties": {}}

    run(scenario)


def test_user_limits_fail_the_item() -> None:
    async def scenario(client: Client) -> None:
        many = {f"p{i}": i for i in range(501)}
        requests = [
            {"uid": "fits", "properties": dict(list(many.items())[:500])},
            {"uid": "over", "properties": many},
        ]
        _, created, _ = await call(client, "POST", "/v2/users/batch", {"requests": requests})
        done = await finished(client, "users", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 1)
        _, page, _ = await call(client, "GET", f"/v2/users/batch/{created['job']['id']}/errors")
        (error,) = page["results"]
        assert (error["user"]["uid"], error["code"]) == ("over", "invalid_argument")
        assert "500" in error["message"]

    run(scenario)


def test_event_user_uid_over_256_characters_fails_the_item() -> None:
    async def scenario(client: Client) -> None:
        requests = [
            {"name": "a", "user": {"uid": "u" * 256}},
            {"name": "b", "user": {"uid": "u" * 257}},
        ]
        _, created, _ = await call(client, "POST", "/v2/events/batch", {"requests": requests})
        done = await finished(client, "events", created["job"]["id"])
        assert (done["imports"], done["errors"]) == (1, 1)
        _, page, _ = await call(client, "GET", f"/v2/events/batch/{created['job']['id']}/errors")
        assert [e["event"]["name"] for e in page["results"]] == ["b"]
        assert "shared" not in page["results"][0]

    run(scenario)
