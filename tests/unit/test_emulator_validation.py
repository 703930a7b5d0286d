"""Body validation of the FullStory emulator, checked over HTTP as a client would see it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from consumer.emulator import EmulatorConfig, create_app

AUTH = {"Authorization": "Basic test-key"}


def post(path: str, body: Any) -> tuple[int, Any]:
    """POST a body (bytes as is, anything else as JSON) to a fresh emulator."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)

    async def main() -> tuple[int, Any]:
        async with TestClient(TestServer(create_app(EmulatorConfig()))) as client:
            response = await client.post(path, data=raw, headers=AUTH)
            return response.status, orjson.loads(await response.read())

    return asyncio.run(main())


def nested(depth: int, leaf: Any) -> dict[str, Any]:
    """`{"a0": {"a1": ...: leaf}}` whose dotted path is `depth` names of 10 characters."""
    node: Any = leaf
    for level in reversed(range(depth)):
        node = {f"n{level:09d}": node}
    return dict(node)


BAD_EVENTS = [
    pytest.param(b"{not json", id="invalid-json"),
    pytest.param(b"", id="empty-body"),
    pytest.param([{"name": "a"}], id="array-body"),
    pytest.param("name", id="string-body"),
    pytest.param({"name": "a", "extra": 1}, id="unknown-top-level-field"),
    pytest.param({}, id="missing-name"),
    pytest.param({"name": ""}, id="empty-name"),
    pytest.param({"name": 5}, id="name-not-string"),
    pytest.param({"name": "a", "user": {}}, id="user-empty"),
    pytest.param({"name": "a", "user": {"uid": "u", "id": "i"}}, id="user-two-fields"),
    pytest.param({"name": "a", "user": {"email": "e@x"}}, id="user-unknown-field"),
    pytest.param({"name": "a", "user": {"uid": ""}}, id="user-uid-empty"),
    pytest.param({"name": "a", "user": {"uid": 5}}, id="user-uid-not-string"),
    pytest.param({"name": "a", "user": {"uid": "u" * 257}}, id="user-uid-over-256"),
    pytest.param({"name": "a", "user": {"id": 123}}, id="user-id-not-string"),
    pytest.param({"name": "a", "session": {"id": 1}}, id="session-id-not-string"),
    pytest.param({"name": "a", "user": "u"}, id="user-not-object"),
    pytest.param({"name": "a", "user": None}, id="user-null"),
    pytest.param(
        {"name": "a", "session": {"id": "s"}, "user": {"uid": "u"}}, id="session-id-and-user"
    ),
    pytest.param(
        {"name": "a", "session": {"use_most_recent": True}}, id="most-recent-without-user"
    ),
    pytest.param(
        {"name": "a", "session": {"use_most_recent": False}, "user": {"uid": "u"}},
        id="most-recent-false",
    ),
    pytest.param(
        {"name": "a", "session": {"use_most_recent": 1}, "user": {"uid": "u"}},
        id="most-recent-not-bool",
    ),
    pytest.param({"name": "a", "session": {}}, id="session-empty"),
    pytest.param(
        {"name": "a", "session": {"id": "s", "use_most_recent": True}}, id="session-both-forms"
    ),
    pytest.param({"name": "a", "session": {"id": ""}}, id="session-id-empty"),
    pytest.param({"name": "a", "session": "s"}, id="session-not-object"),
    pytest.param({"name": "a", "timestamp": "yesterday"}, id="timestamp-not-iso"),
    pytest.param({"name": "a", "timestamp": 1714567890}, id="timestamp-number"),
    pytest.param({"name": "a", "properties": []}, id="properties-array"),
    pytest.param({"name": "a", "properties": None}, id="properties-null"),
    pytest.param({"name": "a", "properties": {"1a": 1}}, id="name-starts-with-digit"),
    pytest.param({"name": "a", "properties": {"_a": 1}}, id="name-starts-with-underscore"),
    pytest.param({"name": "a", "properties": {"a-b": 1}}, id="name-with-dash"),
    pytest.param({"name": "a", "properties": {"": 1}}, id="name-empty"),
    pytest.param({"name": "a", "properties": {"a": {"b c": 1}}}, id="nested-bad-name"),
    pytest.param({"name": "a", "properties": {"a" * 513: 1}}, id="name-over-512"),
    pytest.param({"name": "a", "properties": nested(47, 1)}, id="dotted-path-over-512"),
    pytest.param({"name": "a", "properties": {"s": "x" * 8193}}, id="string-over-8192-bytes"),
    pytest.param({"name": "a", "properties": {"s": "é" * 4097}}, id="utf8-over-8192-bytes"),
    pytest.param({"name": "a", "properties": {"l": [{"a": 1}]}}, id="array-of-objects"),
    pytest.param({"name": "a", "properties": {"l": [[1]]}}, id="array-of-arrays"),
    pytest.param({"name": "a", "properties": {"l": ["x" * 8193]}}, id="array-item-over-8192"),
    pytest.param({"name": "a", "properties": {"p": 1}, "schema": []}, id="schema-not-object"),
    pytest.param(
        {"name": "a", "properties": {"p": 1}, "schema": {"properties": {"p": "int"}, "x": {}}},
        id="schema-extra-key",
    ),
    pytest.param(
        {"name": "a", "properties": {"p": 1}, "schema": {"properties": ["p"]}},
        id="schema-properties-not-object",
    ),
    pytest.param(
        {"name": "a", "properties": {"p": 1}, "schema": {"properties": {"p": "integer"}}},
        id="schema-unknown-type",
    ),
    pytest.param(
        {"name": "a", "properties": {"p": 1}, "schema": {"properties": {"q": "int"}}},
        id="schema-path-missing",
    ),
    pytest.param(
        {"name": "a", "properties": {"p": 1}, "schema": {"properties": {"p.q": "int"}}},
        id="schema-path-through-scalar",
    ),
    pytest.param({"name": "a", "schema": {"properties": {"p": "int"}}}, id="schema-no-props"),
    pytest.param({"name": "a", "context": []}, id="context-not-object"),
    pytest.param({"name": "a", "context": {"app": {"name": "x"}}}, id="context-unknown-section"),
    pytest.param({"name": "a", "context": {"browser": {"referrer": "x"}}}, id="context-bad-field"),
    pytest.param({"name": "a", "context": {"browser": "x"}}, id="context-section-not-object"),
    pytest.param(
        {"name": "a", "context": {"location": {"city": {"name": "Paris"}}}},
        id="context-value-object",
    ),
    pytest.param({"name": "a", "context": {"browser": {"url": 1}}}, id="context-url-number"),
    pytest.param(
        {"name": "a", "context": {"device": {"screen_width": 393.0}}}, id="context-width-float"
    ),
    pytest.param(
        {"name": "a", "context": {"device": {"screen_width": "393"}}}, id="context-width-string"
    ),
    pytest.param(
        {"name": "a", "context": {"device": {"viewport_height": True}}}, id="context-height-bool"
    ),
    pytest.param(
        {"name": "a", "context": {"device": {"screen_height": 2**31}}}, id="context-over-int32"
    ),
    pytest.param(
        {"name": "a", "context": {"location": {"latitude": "48.8"}}}, id="context-lat-string"
    ),
    pytest.param({"name": "a", "context": {"mobile": {"app_id": None}}}, id="context-null"),
]

GOOD_EVENTS = [
    pytest.param({"name": "a"}, id="minimal"),
    pytest.param(
        {
            "name": "Order Completed",
            "timestamp": "2024-05-01T12:34:56.789Z",
            "user": {"uid": "u1"},
            "session": {"use_most_recent": True},
            "properties": {
                "total": 27.5,
                "count": 3,
                "paid": True,
                "coupon": None,
                "tags": ["a", "b"],
                "scores": [1, 2.5],
                "flags": [],
                "address": {"zip": 75001, "geo": {"lat": 48.8}},
            },
            "schema": {"properties": {"count": "int", "address.zip": "int", "tags": "strs"}},
            "context": {
                "browser": {"url": "https://x", "user_agent": "UA", "initial_referrer": "r"},
                "mobile": {
                    "app_id": "i",
                    "app_version": "1",
                    "app_name": "n",
                    "build_variant": "b",
                },
                "device": {
                    "manufacturer": "m",
                    "model": "mo",
                    "screen_width": 1,
                    "screen_height": 2,
                    "viewport_width": 3,
                    "viewport_height": 4,
                },
                "location": {
                    "country": "FR",
                    "region": "IDF",
                    "city": "Paris",
                    "latitude": 48.8,
                    "longitude": 2.3,
                    "ip_address": "203.0.113.7",
                },
            },
        },
        id="everything",
    ),
    pytest.param({"name": "a", "session": {"id": "s1"}}, id="session-id-alone"),
    pytest.param({"name": "a", "user": {"id": "123"}}, id="user-id-alone"),
    pytest.param(
        {"name": "a", "user": {"id": "1"}, "session": {"use_most_recent": True}},
        id="most-recent-with-user-id",
    ),
    pytest.param({"name": "a", "timestamp": "2024-05-01T12:34:56+02:00"}, id="timestamp-offset"),
    pytest.param({"name": "a", "properties": {"s": "é" * 4096}}, id="utf8-exactly-8192-bytes"),
    pytest.param({"name": "a", "properties": {"a" * 512: 1}}, id="name-exactly-512"),
    pytest.param({"name": "a", "properties": nested(46, 1)}, id="dotted-path-under-512"),
    pytest.param({"name": "a", "properties": {"A_b9": 1}}, id="name-with-digits-underscore"),
    pytest.param({"name": "a", "properties": {"p": 1}, "schema": {}}, id="schema-empty"),
    pytest.param({"name": "a", "schema": {"properties": {}}}, id="schema-declares-nothing"),
    pytest.param({"name": "a", "user": {"uid": "u" * 256}}, id="user-uid-exactly-256"),
    pytest.param(
        {"name": "a", "context": {"location": {"latitude": 48, "longitude": -2.5}}},
        id="context-integer-latitude",
    ),
    pytest.param(
        {"name": "a", "context": {"device": {"screen_width": 2**31 - 1}}}, id="context-int32-max"
    ),
    pytest.param(
        {"name": "a", "properties": {f"p{i}": i for i in range(501)}}, id="501-event-properties"
    ),
]


@pytest.mark.parametrize("body", BAD_EVENTS)
def test_bad_event_is_rejected_with_400(body: Any) -> None:
    status, payload = post("/v2/events", body)
    assert status == 400
    assert set(payload) == {"message", "code"}
    assert payload["code"] == "invalid_argument"
    assert isinstance(payload["message"], str) and payload["message"]


@pytest.mark.parametrize("body", [{}, {"name": ""}])
def test_a_nameless_event_gets_fullstorys_message(body: Any) -> None:
    """The SDK's smoke test against the live API: 400 invalid_argument with this message."""
    assert post("/v2/events", body) == (
        400,
        {"message": "events must have a non-empty name", "code": "invalid_argument"},
    )


@pytest.mark.parametrize("body", GOOD_EVENTS)
def test_good_event_is_accepted(body: Any) -> None:
    assert post("/v2/events", body) == (200, {})


BAD_USERS = [
    pytest.param(b"nope", id="invalid-json"),
    pytest.param([], id="array-body"),
    pytest.param({"uid": "u", "name": "x"}, id="unknown-field"),
    pytest.param({"uid": "u" * 257}, id="uid-over-256"),
    pytest.param({"uid": ""}, id="uid-empty"),
    pytest.param({"uid": 7}, id="uid-not-string"),
    pytest.param({"uid": "u", "display_name": "d" * 257}, id="display-name-over-256"),
    pytest.param({"uid": "u", "display_name": None}, id="display-name-null"),
    pytest.param({"uid": "u", "email": "e" * 129}, id="email-over-128"),
    pytest.param({"uid": "u", "email": ["e@x"]}, id="email-not-string"),
    pytest.param({"uid": "u", "properties": "x"}, id="properties-not-object"),
    pytest.param({"uid": "u", "properties": {"a.b": 1}}, id="property-name-with-dot"),
    pytest.param({"uid": "u", "properties": {"l": [{"a": 1}]}}, id="array-of-objects"),
    pytest.param({"uid": "u", "properties": {f"p{i}": i for i in range(501)}}, id="501-properties"),
    pytest.param({"id": "1000000001", "uid": "u"}, id="id-not-declared-for-create"),
    pytest.param({"uid": "u", "schema": {"types": {}}}, id="schema-unknown-field"),
    pytest.param({"uid": "u", "schema": {"properties": "str"}}, id="schema-properties-string"),
    pytest.param(
        {"uid": "u", "properties": {"a": 1}, "schema": {"properties": {"b": "str"}}},
        id="schema-path-missing",
    ),
    pytest.param(
        {"uid": "u", "properties": {"a": 1}, "schema": {"properties": {"a": "number"}}},
        id="schema-bad-type",
    ),
]


@pytest.mark.parametrize("body", BAD_USERS)
def test_bad_user_is_rejected_with_400(body: Any) -> None:
    status, payload = post("/v2/users", body)
    assert (status, payload["code"]) == (400, "invalid_argument")
    assert set(payload) == {"message", "code"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="anonymous-empty"),
        pytest.param(
            {
                "uid": "u" * 256,
                "display_name": "d" * 256,
                "email": "e" * 128,
                "properties": {"plan": "pro", "logins": 3, "address": {"zip": "75001"}},
                "schema": {"properties": {"logins": "int", "address.zip": "str"}},
            },
            id="all-fields-at-limits",
        ),
        pytest.param({"properties": {f"p{i}": i for i in range(500)}}, id="500-properties"),
        pytest.param(
            {
                "properties": {
                    "a": {f"p{i}": i for i in range(300)},
                    **{f"q{i}": 1 for i in range(300)},
                }
            },
            id="nested-properties-count-at-their-own-level",
        ),
        pytest.param({"email": "donotreply@fullstory"}, id="email-not-checked-as-an-address"),
    ],
)
def test_good_user_is_accepted(body: Any) -> None:
    status, payload = post("/v2/users", body)
    assert status == 200 and set(payload) == {"id"}
    assert isinstance(payload["id"], str) and payload["id"]
