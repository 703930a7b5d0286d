"""The emulator's server-event meter per API key and the quota: what FullStory would bill."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from consumer.emulator import EmulatorConfig, create_app

Client = TestClient[Any, Any]
KEYS = ("key-a", "key-b")


def run(scenario: Callable[[Client], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        app = create_app(EmulatorConfig(api_keys=KEYS, batch_processing_ms=0, **config))
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


async def call(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    *,
    api_key: str = "key-a",
    key: str = "",
) -> int:
    headers = {"Authorization": f"Basic {api_key}"}
    if key:
        headers["Idempotency-Key"] = key
    data = None if body is None else orjson.dumps(body)
    response = await client.request(method, path, data=data, headers=headers)
    await response.read()
    return response.status


async def control(client: Client, path: str, body: Any = None) -> Any:
    method = "GET" if body is None else "POST"
    data = None if body is None else orjson.dumps(body)
    response = await client.request(method, path, data=data)
    payload = orjson.loads(await response.read())
    assert response.status == 200, payload
    return payload


async def meters(client: Client) -> dict[str, dict[str, int]]:
    return dict((await control(client, "/emulator/stats"))["by_api_key"])


async def finish_batch(client: Client, job_id: str) -> None:
    for _ in range(200):
        response = await client.get(
            f"/v2/events/batch/{job_id}", headers={"Authorization": "Basic key-a"}
        )
        if orjson.loads(await response.read())["job"]["status"] != "PROCESSING":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


def test_single_events_count_per_key_and_replays_users_deletes_do_not() -> None:
    async def scenario(client: Client) -> None:
        assert await call(client, "POST", "/v2/events", {"name": "A"}, key="e1") == 200
        assert await call(client, "POST", "/v2/events", {"name": "A"}, key="e1") == 200  # replay
        assert await call(client, "POST", "/v2/events", {"name": "B"}) == 200
        assert await call(client, "POST", "/v2/events", {"name": "C"}, api_key="key-b") == 200
        assert await call(client, "POST", "/v2/events", {"name": ""}) == 400  # not stored
        assert await call(client, "POST", "/v2/users", {"uid": "u1"}) == 200
        assert await call(client, "DELETE", "/v2/users?uid=u1") == 200
        assert await meters(client) == {
            "key-a": {"server_events": 2, "over_quota": 0},
            "key-b": {"server_events": 1, "over_quota": 0},
        }
        stats = await control(client, "/emulator/stats")
        assert stats["event_quota"] is None and stats["replays"] == 1  # old fields kept
        await control(client, "/emulator/reset", {})
        assert await meters(client) == {}

    run(scenario)


def test_each_imported_event_item_counts_and_failed_items_and_user_imports_do_not() -> None:
    async def scenario(client: Client) -> None:
        body = {"requests": [{"name": "A"}, {"name": ""}, {"name": "B"}]}
        response = await client.post(
            "/v2/events/batch",
            data=orjson.dumps(body),
            headers={"Authorization": "Basic key-a", "Idempotency-Key": "b1"},
        )
        job = orjson.loads(await response.read())["job"]["id"]
        assert await call(client, "POST", "/v2/events/batch", body, key="b1") == 200  # replay
        users = {"requests": [{"uid": "u1"}, {"uid": "u2"}]}
        assert await call(client, "POST", "/v2/users/batch", users) == 200
        await finish_batch(client, job)
        assert await meters(client) == {"key-a": {"server_events": 2, "over_quota": 0}}

    run(scenario)


def test_beyond_the_quota_events_are_still_stored_and_the_excess_is_counted() -> None:
    async def scenario(client: Client) -> None:
        for i in range(3):
            assert await call(client, "POST", "/v2/events", {"name": f"E{i}"}) == 200
        assert await call(client, "POST", "/v2/events", {"name": "E"}, api_key="key-b") == 200
        assert await meters(client) == {
            "key-a": {"server_events": 3, "over_quota": 1},
            "key-b": {"server_events": 1, "over_quota": 0},
        }
        stored = await control(client, "/emulator/requests?path=/v2/events")
        assert [r["body"]["name"] for r in stored] == ["E0", "E1", "E2", "E"]

        faults = await control(client, "/emulator/faults", {"event_quota": None})
        assert faults["event_quota"] is None
        assert await call(client, "POST", "/v2/events", {"name": "E3"}) == 200
        await control(client, "/emulator/faults", {"event_quota": 0})
        assert await call(client, "POST", "/v2/events", {"name": "E4"}, api_key="key-b") == 200
        assert await meters(client) == {
            "key-a": {"server_events": 4, "over_quota": 1},
            "key-b": {"server_events": 2, "over_quota": 1},
        }

    run(scenario, event_quota=2)


def test_a_bad_quota_is_refused_whole() -> None:
    async def scenario(client: Client) -> None:
        for bad in (-1, 1.5, True, "10"):
            response = await client.post(
                "/emulator/faults", data=orjson.dumps({"event_quota": bad, "latency_ms": 5})
            )
            assert response.status == 400, bad
        assert (await control(client, "/emulator/faults"))["latency_ms"] == 0.0

    run(scenario)
