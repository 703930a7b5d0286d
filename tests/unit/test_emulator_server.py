"""FullStory emulator behaviour: auth, users, idempotency, rate limit, faults, control routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumer.emulator import EmulatorConfig, create_app

Client = TestClient[Any, Any]
AUTH = {"Authorization": "Basic test-key"}


def run(
    scenario: Callable[[Client], Awaitable[None]], config: EmulatorConfig | None = None
) -> None:
    """Run a scenario against a fresh emulator on a loopback port."""

    async def main() -> None:
        app = create_app(config or EmulatorConfig())
        async with TestClient(TestServer(app)) as client:
            await scenario(client)

    asyncio.run(main())


async def call(
    client: Client,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = None,
    auth: dict[str, str] | None = AUTH,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send one request; return status, decoded JSON body and the response."""
    headers = dict(auth or {})
    if key is not None:
        headers["Idempotency-Key"] = key
    data = None if body is None else orjson.dumps(body)
    response = await client.request(method, path, data=data, headers=headers)
    return response.status, orjson.loads(await response.read()), response


async def control(client: Client, path: str, body: Any = None) -> Any:
    method = "GET" if body is None else "POST"
    status, payload, _ = await call(client, method, path, body, auth=None)
    assert status == 200, payload
    return payload


async def accepted(client: Client, query: str = "") -> list[dict[str, Any]]:
    return list(await control(client, "/emulator/requests" + query))


def test_me_reports_the_configured_org() -> None:
    async def scenario(client: Client) -> None:
        status, payload, _ = await call(client, "GET", "/me")
        assert status == 200
        assert payload["orgId"] == "o-CUSTOM-eu1"
        assert set(payload) == {"email", "orgId", "role"}

    run(scenario, EmulatorConfig(org_id="o-CUSTOM-eu1"))


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="missing"),
        pytest.param({"Authorization": "Basic wrong-key"}, id="wrong-key"),
        pytest.param({"Authorization": "Bearer test-key"}, id="wrong-scheme"),
        pytest.param({"Authorization": "Basic " + "dGVzdC1rZXk="}, id="base64-of-key"),
    ],
)
def test_bad_credentials_get_401_and_nothing_is_stored(auth: dict[str, str] | None) -> None:
    async def scenario(client: Client) -> None:
        for path, body in (("/me", None), ("/v2/events", {"name": "a"}), ("/v2/users", {})):
            method = "GET" if body is None else "POST"
            status, payload, _ = await call(client, method, path, body, auth=auth)
            assert (status, payload["code"]) == (401, "unauthorized")
            if auth is not None:
                assert auth["Authorization"].split()[-1] not in str(payload)
        assert await accepted(client) == []
        assert (await control(client, "/emulator/stats"))["by_status"] == {"401": 3}

    run(scenario)


def test_any_configured_key_is_accepted_and_never_echoed() -> None:
    async def scenario(client: Client) -> None:
        for key in ("first-secret", "second-secret"):
            auth = {"Authorization": f"Basic {key}"}
            status, _, response = await call(client, "POST", "/v2/events", {"name": "a"}, auth=auth)
            assert status == 200
            assert key not in str(response.headers)
        status, _, _ = await call(client, "POST", "/v2/events", {"name": "a"})
        assert status == 401
        everything = await client.get("/emulator/requests?all=1")
        text = await everything.text()
        assert "secret" not in text and "test-key" not in text

    run(scenario, EmulatorConfig(api_keys=("first-secret", "second-secret")))


def test_users_upsert_by_uid_and_anonymous_users_are_new_each_time() -> None:
    async def scenario(client: Client) -> None:
        _, first, _ = await call(client, "POST", "/v2/users", {"uid": "u1", "properties": {"a": 1}})
        body = {"uid": "u1", "email": "u1@example.com", "properties": {"b": {"c": 2}}}
        _, again, _ = await call(client, "POST", "/v2/users", body)
        _, anon1, _ = await call(client, "POST", "/v2/users", {"display_name": "x"})
        _, anon2, _ = await call(client, "POST", "/v2/users", {"display_name": "x"})
        assert first["id"] == again["id"]
        assert len({first["id"], anon1["id"], anon2["id"]}) == 3
        users = {user["id"]: user for user in await control(client, "/emulator/users")}
        assert users[first["id"]] == {
            "id": first["id"],
            "uid": "u1",
            "email": "u1@example.com",
            "properties": {"a": 1, "b": {"c": 2}},
        }
        await call(client, "POST", "/v2/users", {"uid": "u1", "properties": {"b": {"d": 3}}})
        users = {user["id"]: user for user in await control(client, "/emulator/users")}
        assert users[first["id"]]["properties"] == {"a": 1, "b": {"c": 2, "d": 3}}

    run(scenario)


def test_delete_user_by_uid() -> None:
    async def scenario(client: Client) -> None:
        _, created, _ = await call(client, "POST", "/v2/users", {"uid": "a b/é"})
        status, payload, _ = await call(client, "DELETE", "/v2/users?uid=a%20b%2F%C3%A9")
        assert (status, payload) == (200, {})
        assert await control(client, "/emulator/users") == []
        _, recreated, _ = await call(client, "POST", "/v2/users", {"uid": "a b/é"})
        assert recreated["id"] != created["id"]
        # Unknown uids are accepted and recorded too (blind GDPR deletes).
        status, payload, _ = await call(client, "DELETE", "/v2/users?uid=never-seen")
        assert (status, payload) == (200, {})
        # the spec's own 400 example
        for path in ("/v2/users", "/v2/users?uid="):
            status, payload, _ = await call(client, "DELETE", path)
            assert (status, payload) == (
                400,
                {"message": "uid is required", "code": "required_field"},
            )
        deletes = await accepted(client, "?path=/v2/users")
        assert [r["query"] for r in deletes if r["method"] == "DELETE"] == [
            {"uid": "a b/é"},
            {"uid": "never-seen"},
        ]

    run(scenario)


def test_idempotent_replay_returns_the_stored_result_and_is_logged_as_replay() -> None:
    async def scenario(client: Client) -> None:
        body = {"uid": "u1", "display_name": "One"}
        first = await call(client, "POST", "/v2/users", body, key="k-1")
        second = await call(client, "POST", "/v2/users", body, key="k-1")
        assert first[:2] == second[:2]
        assert first[0] == 200
        event = {"name": "Signed Up"}
        assert (await call(client, "POST", "/v2/events", event, key="k-2"))[:2] == (200, {})
        assert (await call(client, "POST", "/v2/events", event, key="k-2"))[:2] == (200, {})
        log = await accepted(client)
        assert [(r["path"], r["idempotency_key"], r["replay"]) for r in log] == [
            ("/v2/users", "k-1", False),
            ("/v2/users", "k-1", True),
            ("/v2/events", "k-2", False),
            ("/v2/events", "k-2", True),
        ]
        stats = await control(client, "/emulator/stats")
        assert stats["replays"] == 2
        assert stats["delivered"] == {"/v2/events": 1, "/v2/users": 1}

    run(scenario)


def test_same_key_with_another_body_is_a_400_conflict() -> None:
    async def scenario(client: Client) -> None:
        assert (await call(client, "POST", "/v2/events", {"name": "a"}, key="k"))[0] == 200
        status, payload, _ = await call(client, "POST", "/v2/events", {"name": "b"}, key="k")
        assert (status, payload["code"]) == (400, "invalid_argument")
        assert [r["body"] for r in await accepted(client)] == [{"name": "a"}]

    run(scenario)


def test_a_400_result_is_stored_and_replayed() -> None:
    async def scenario(client: Client) -> None:
        first = await call(client, "POST", "/v2/events", {"name": ""}, key="k")
        second = await call(client, "POST", "/v2/events", {"name": ""}, key="k")
        assert first[:2] == second[:2]
        assert first[0] == 400
        log = await accepted(client, "?all=1")
        assert [(r["status"], r["replay"]) for r in log] == [(400, False), (400, True)]

    run(scenario)


def test_500_and_429_results_are_not_stored() -> None:
    async def scenario(client: Client) -> None:
        await control(client, "/emulator/faults", {"error_rate": 1.0})
        assert (await call(client, "POST", "/v2/events", {"name": "a"}, key="k"))[0] == 500
        await control(
            client, "/emulator/faults", {"error_rate": 0.0, "rate_limit": 0.001, "burst": 1}
        )
        assert (await call(client, "POST", "/v2/events", {"name": "z"}, key="other"))[0] == 200
        assert (await call(client, "POST", "/v2/events", {"name": "a"}, key="k"))[0] == 429
        await control(client, "/emulator/faults", {"rate_limit": None})
        status, _, _ = await call(client, "POST", "/v2/events", {"name": "a"}, key="k")
        assert status == 200
        # Forced 5xx and 429 answers (reject_matching) are not stored either.
        for status in (503, 429):
            rule = {"field": "name", "value": "f", "status": status, "times": 1}
            await control(client, "/emulator/faults", {"reject_matching": [rule]})
            assert (await call(client, "POST", "/v2/events", {"name": "f"}, key="f"))[0] == status
        assert (await call(client, "POST", "/v2/events", {"name": "f"}, key="f"))[0] == 200
        log = await accepted(client, "?path=/v2/events")
        assert [(r["idempotency_key"], r["replay"]) for r in log] == [
            ("other", False),
            ("k", False),
            ("f", False),
        ]

    run(scenario)


def test_rate_limit_answers_429_with_retry_after_per_key() -> None:
    async def scenario(client: Client) -> None:
        statuses = []
        for _ in range(3):
            status, payload, response = await call(client, "POST", "/v2/events", {"name": "a"})
            statuses.append(status)
        assert statuses == [200, 200, 429]
        assert payload["code"] == "too_many_requests"
        retry_after = response.headers["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1
        other = {"Authorization": "Basic other-key"}
        assert (await call(client, "POST", "/v2/events", {"name": "a"}, auth=other))[0] == 200
        assert len(await accepted(client)) == 3

    run(scenario, EmulatorConfig(api_keys=("test-key", "other-key"), rate_limit=0.01, burst=2))


def test_retry_after_rounds_the_wait_up_to_whole_seconds() -> None:
    async def scenario(client: Client) -> None:
        assert (await call(client, "POST", "/v2/events", {"name": "a"}))[0] == 200
        _, _, response = await call(client, "POST", "/v2/events", {"name": "a"})
        assert response.status == 429
        # One token per 2.5 s, just spent: the wait is just under 2.5 s, sent as 3.
        assert response.headers["Retry-After"] == "3"

    run(scenario, EmulatorConfig(rate_limit=0.4, burst=1))


def test_error_rate_one_fails_every_api_write_with_500() -> None:
    async def scenario(client: Client) -> None:
        for path, body in (("/v2/events", {"name": "a"}), ("/v2/users", {"uid": "u"})):
            status, payload, _ = await call(client, "POST", path, body)
            assert (status, payload["code"]) == (500, "server_error")
        assert (await call(client, "GET", "/me"))[0] == 200
        assert await control(client, "/emulator/users") == []
        assert [r["path"] for r in await accepted(client)] == ["/me"]

    run(scenario, EmulatorConfig(error_rate=1.0))


def test_latency_is_added_to_api_responses() -> None:
    async def scenario(client: Client) -> None:
        start = time.monotonic()
        assert (await call(client, "POST", "/v2/events", {"name": "a"}))[0] == 200
        assert time.monotonic() - start >= 0.2

    run(scenario, EmulatorConfig(latency_ms=200))


def test_outage_503_answers_every_api_request_until_it_ends() -> None:
    async def scenario(client: Client) -> None:
        faults = await control(client, "/emulator/faults", {"outage_seconds": 60})
        assert faults["outage_mode"] == "503" and faults["outage_remaining_seconds"] > 0
        for method, path, body in (("POST", "/v2/events", {"name": "a"}), ("GET", "/me", None)):
            status, payload, _ = await call(client, method, path, body)
            assert (status, payload["code"]) == (503, "server_error")
        await control(client, "/emulator/faults", {"outage_seconds": 0})
        assert (await call(client, "POST", "/v2/events", {"name": "a"}))[0] == 200
        log = await accepted(client, "?all=1")
        assert [r["status"] for r in log] == [503, 503, 200]

    run(scenario)


def test_outage_refuse_drops_connections_without_answering_then_ends_by_itself() -> None:
    async def scenario(client: Client) -> None:
        await control(client, "/emulator/faults", {"outage_seconds": 0.3, "outage_mode": "refuse"})
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(client, "POST", "/v2/events", {"name": "a"})
        await asyncio.sleep(0.4)
        assert (await call(client, "POST", "/v2/events", {"name": "a"}))[0] == 200
        log = await accepted(client, "?all=1")
        assert [r["status"] for r in log] == [0, 200]
        assert (await control(client, "/emulator/stats"))["by_status"] == {"0": 1, "200": 1}

    run(scenario)


def test_reject_matching_forces_a_status_for_matching_requests_until_cleared() -> None:
    async def scenario(client: Client) -> None:
        rule = {"field": "name", "value": "Bad Event", "status": 400, "message": "bad one"}
        await control(client, "/emulator/faults", {"reject_matching": [rule]})
        status, payload, _ = await call(client, "POST", "/v2/events", {"name": "Bad Event"})
        assert (status, payload) == (400, {"message": "bad one", "code": "invalid_argument"})
        assert (await call(client, "POST", "/v2/events", {"name": "Good Event"}))[0] == 200
        assert (await control(client, "/emulator/faults"))["reject_matching"] == [rule]
        await control(client, "/emulator/faults", {"reject_matching": None})
        assert (await call(client, "POST", "/v2/events", {"name": "Bad Event"}))[0] == 200
        names = [r["body"]["name"] for r in await accepted(client)]
        assert names == ["Good Event", "Bad Event"]

    run(scenario)


def test_reject_matching_with_times_path_and_nested_field() -> None:
    async def scenario(client: Client) -> None:
        rules = [
            {"field": "user.uid", "value": "flaky", "status": 503, "times": 2},
            {"field": "uid", "value": "gone", "status": 404, "path": "/v2/users"},
            {"field": "name", "value": "Slow", "status": 429},
        ]
        await control(client, "/emulator/faults", {"reject_matching": rules})
        flaky = {"name": "a", "user": {"uid": "flaky"}}
        statuses = [(await call(client, "POST", "/v2/events", flaky))[0] for _ in range(3)]
        assert statuses == [503, 503, 200]
        status, payload, _ = await call(client, "DELETE", "/v2/users?uid=gone")
        assert (status, payload["code"]) == (404, "resource_not_found")
        assert (await call(client, "POST", "/v2/events", {"name": "gone"}))[0] == 200
        _, payload, response = await call(client, "POST", "/v2/events", {"name": "Slow"})
        assert (response.status, response.headers["Retry-After"]) == (429, "1")
        remaining = (await control(client, "/emulator/faults"))["reject_matching"]
        assert [r["field"] for r in remaining] == ["uid", "name"]

    run(scenario)


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param({"error_rate": 1.5}, id="error-rate-over-1"),
        pytest.param({"latency_ms": -1}, id="negative-latency"),
        pytest.param({"rate_limit": 0}, id="zero-rate"),
        pytest.param({"burst": 0}, id="zero-burst"),
        pytest.param({"outage_mode": "drop"}, id="unknown-outage-mode"),
        pytest.param({"outage_seconds": "10"}, id="outage-not-number"),
        pytest.param({"reject_matching": {"field": "name"}}, id="rules-not-list"),
        pytest.param({"reject_matching": [{"field": "name", "value": 1}]}, id="rule-no-status"),
        pytest.param(
            {"reject_matching": [{"field": "name", "value": 1, "status": 200}]}, id="rule-2xx"
        ),
        pytest.param({"chaos": True}, id="unknown-field"),
        pytest.param({"error_rate": 0.5, "burst": 0}, id="partly-valid"),
    ],
)
def test_invalid_faults_are_rejected_and_change_nothing(faults: dict[str, Any]) -> None:
    async def scenario(client: Client) -> None:
        before = await control(client, "/emulator/faults")
        status, payload, _ = await call(client, "POST", "/emulator/faults", faults, auth=None)
        assert (status, payload["code"]) == (400, "invalid_argument")
        assert await control(client, "/emulator/faults") == before

    run(scenario)


def test_reset_returns_to_the_start_config_and_forgets_everything() -> None:
    async def scenario(client: Client) -> None:
        await call(client, "POST", "/v2/users", {"uid": "u1"}, key="k")
        await call(client, "POST", "/v2/events", {"name": "a"})
        await control(client, "/emulator/faults", {"error_rate": 1.0, "outage_seconds": 60})
        assert await control(client, "/emulator/reset", {}) == {}
        faults = await control(client, "/emulator/faults")
        assert faults["error_rate"] == 0.0 and faults["outage_remaining_seconds"] == 0
        assert faults["latency_ms"] == 5 and faults["rate_limit"] == 100
        assert await accepted(client, "?all=1") == []
        assert await control(client, "/emulator/users") == []
        assert (await control(client, "/emulator/stats"))["total"] == 0
        # The idempotency store is empty: the same key with another body is a fresh request.
        status, _, _ = await call(client, "POST", "/v2/users", {"uid": "u2"}, key="k")
        assert status == 200
        assert [(r["seq"], r["replay"]) for r in await accepted(client)] == [(1, False)]

    run(scenario, EmulatorConfig(latency_ms=5, rate_limit=100))


def test_request_log_filters_and_stats() -> None:
    async def scenario(client: Client) -> None:
        await call(client, "POST", "/v2/events", {"name": "a"}, key="e1")
        await call(client, "POST", "/v2/events", {"name": ""})
        await call(client, "POST", "/v2/users", {"uid": "u"})
        await call(client, "POST", "/v2/events", {"name": "a"}, key="e1")
        await client.post("/v2/events", data=b"{broken", headers=AUTH)
        log = await accepted(client)
        assert [r["seq"] for r in log] == [1, 3, 4]
        assert log[0] == {
            "seq": 1,
            "method": "POST",
            "path": "/v2/events",
            "query": {},
            "body": {"name": "a"},
            "idempotency_key": "e1",
            "replay": False,
            "status": 200,
        }
        everything = await accepted(client, "?all=1")
        assert [r["status"] for r in everything] == [200, 400, 200, 200, 400]
        assert everything[-1]["body"] == "{broken"
        assert [r["seq"] for r in await accepted(client, "?all=1&since=2")] == [3, 4, 5]
        assert [r["seq"] for r in await accepted(client, "?path=/v2/users")] == [3]
        stats = await control(client, "/emulator/stats")
        assert stats["total"] == 5
        assert stats["by_status"] == {"200": 3, "400": 2}
        assert stats["by_path"] == {"/v2/events": 4, "/v2/users": 1}
        assert stats["replays"] == 1
        assert stats["delivered"] == {"/v2/events": 1, "/v2/users": 1}
        assert stats["process_cpu_seconds"] > 0

    run(scenario)


def test_unknown_endpoint_is_a_json_404() -> None:
    async def scenario(client: Client) -> None:
        status, payload, _ = await call(client, "POST", "/v2/sessions/batch", {"requests": []})
        assert (status, payload["code"]) == (404, "resource_not_found")

    run(scenario)
