"""Property-based: any JSON value anywhere never raises, and every body obeys FullStory's rules.

`check_request` is the plain statement of FullStory's constraints (fullstory-api.md) that the
emulator enforces too; a later integration test cross-checks the two.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.transform import (
    DestinationSettings,
    Invalid,
    Requests,
    Skipped,
    outcome_to_json,
    transform,
    transform_lines,
)

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
SCHEMA_TYPES = {"str", "strs", "int", "ints", "real", "reals", "bool", "bools", "date", "dates"}
CONTEXT_FIELDS = {
    "browser": {"url", "user_agent", "initial_referrer"},
    "mobile": {"app_id", "app_version", "app_name", "build_variant"},
    "device": {"manufacturer", "model", "screen_width", "screen_height"},
    "location": {"country", "region", "city", "latitude", "longitude", "ip_address"},
}
# ISO 3166-1 alpha-2; the ISO 3166-2 code element after the country.
LOCATION_CODES = {"country": re.compile(r"[A-Z]{2}"), "region": re.compile(r"[A-Z0-9]{1,3}")}
USER_FIELDS = {"uid", "display_name", "email", "properties", "schema"}
MAX_USER_PROPERTIES = 500
EVENT_FIELDS = {"name", "timestamp", "properties", "schema", "user", "session", "context"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
SKIP_REASONS = {
    "integrations_disabled",
    "anonymous_identify",
    "page_events_disabled",
    "page_not_tracked",
    "group_disabled",
    "group_without_user",
    "alias_unsupported",
    "deletes_disabled",
}
ERROR_REASONS = {
    "invalid_event",
    "missing_identity",
    "invalid_uid",
    "missing_event_name",
    "missing_group_id",
}


def _fits(text: str) -> bool:
    return len(text.encode()) <= 8192


def check_properties(props: Any, prefix: str = "") -> None:
    assert isinstance(props, dict), f"properties {prefix!r} must be an object"
    for name, value in props.items():
        path = prefix + name
        assert isinstance(name, str) and NAME.fullmatch(name), f"bad name {path!r}"
        assert len(path) <= 512, f"path too long: {path[:40]}..."
        if isinstance(value, str):
            assert _fits(value), f"{path} over 8192 bytes"
        elif isinstance(value, float):
            assert math.isfinite(value), f"{path} is not finite"
        elif isinstance(value, int) and not isinstance(value, bool):
            assert -(2**63) <= value < 2**63, f"{path} beyond 64 bits"
        elif isinstance(value, dict):
            check_properties(value, path + ".")
        elif isinstance(value, list):
            kinds = set()
            for item in value:
                assert not isinstance(item, dict | list), f"{path}: array of objects/arrays"
                assert item is not None, f"{path}: null inside an array"
                kinds.add("bool" if isinstance(item, bool) else type(item).__name__)
                if isinstance(item, str):
                    assert _fits(item), f"{path} item over 8192 bytes"
                if isinstance(item, float):
                    assert math.isfinite(item)
            assert kinds <= {"str"} or kinds <= {"bool"} or kinds <= {"int", "float"}, path
        else:
            assert value is None or isinstance(value, bool), f"{path}: {type(value)}"


def leaf_count(props: dict[str, Any]) -> int:
    return sum(leaf_count(v) if isinstance(v, dict) and v else 1 for v in props.values())


def check_schema(body: dict[str, Any]) -> None:
    if "schema" not in body:
        return
    schema = body["schema"]
    assert set(schema) == {"properties"} and schema["properties"], "schema only when non-empty"
    for path, kind in schema["properties"].items():
        assert kind in SCHEMA_TYPES, f"schema type {kind!r}"
        node = body["properties"]
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"schema path {path!r} missing"
            node = node[part]
        assert not isinstance(node, dict), f"schema declares object {path!r}"


def check_request(method: str, path: str, body: Any) -> None:
    """FullStory's constraints on one request (fullstory-api.md)."""
    if method == "DELETE":
        assert path.startswith("/v2/users?uid=") and body is None
        assert re.fullmatch(r"[A-Za-z0-9%._~-]+", path.removeprefix("/v2/users?uid="))
        return
    assert method == "POST"
    orjson.dumps(body)  # the sink must be able to send it
    if path == "/v2/users":
        assert set(body) <= USER_FIELDS and "properties" in body
        if "uid" in body:
            assert isinstance(body["uid"], str) and 0 < len(body["uid"]) <= 256
        if "display_name" in body:
            assert isinstance(body["display_name"], str) and 0 < len(body["display_name"]) <= 256
        if "email" in body:
            assert isinstance(body["email"], str) and 0 < len(body["email"]) <= 128
        assert leaf_count(body["properties"]) <= MAX_USER_PROPERTIES
    else:
        assert path == "/v2/events"
        assert set(body) <= EVENT_FIELDS and "properties" in body
        assert isinstance(body["name"], str) and body["name"], "event name must be non-empty"
        if "timestamp" in body:
            assert TIMESTAMP.fullmatch(body["timestamp"])
        if "user" in body:
            assert set(body["user"]) == {"uid"}
            uid = body["user"]["uid"]
            assert isinstance(uid, str) and 0 < len(uid) <= 256
        if "session" in body:
            assert body["session"] == {"use_most_recent": True}, "never false, never session.id"
            assert "user" in body, "use_most_recent needs a user"
        if "context" in body:
            context = body["context"]
            assert context and set(context) <= set(CONTEXT_FIELDS)
            for part, fields in context.items():
                assert fields and set(fields) <= CONTEXT_FIELDS[part]
                for field, value in fields.items():
                    assert isinstance(value, str | int | float) and not isinstance(value, bool)
                    if isinstance(value, str):
                        assert value and _fits(value)
                    if part == "location" and field in LOCATION_CODES:
                        assert LOCATION_CODES[field].fullmatch(value), f"{field} {value!r}"
    check_properties(body["properties"])
    check_schema(body)


def check_outcome(event: object, outcome: object) -> None:
    if isinstance(outcome, Requests):
        assert outcome.requests
        keys = [request.idempotency_key for request in outcome.requests]
        assert len(set(keys)) == len(keys)
        for request in outcome.requests:
            check_request(request.method, request.path, request.body)
    elif isinstance(outcome, Skipped):
        assert outcome.reason in SKIP_REASONS
    else:
        assert isinstance(outcome, Invalid) and outcome.reason in ERROR_REASONS
    orjson.dumps(outcome_to_json(event, outcome))


# --- strategies -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "2024-01-02T03:04:05.678Z",
            "2024-05-17T16:30:05+02:00",
            "2023-02-29T00:00:00Z",
            "",
            " ",
            "Germany",
            "by",
        ]
    )
    | st.builds(lambda char, count: char * count, st.sampled_from("x€😀"), st.integers(2040, 8200))
)
keys = (
    st.text(max_size=12)
    | st.sampled_from(
        [
            "a_int",
            "_str",
            "x_objs",
            "1st",
            "name",
            "email",
            "id",
            "displayName",
            "é_dates",
            "country",
            "region",
        ]
    )
    | st.integers(250, 520).map(lambda count: "k" * count)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)
TYPES = ["identify", "track", "page", "screen", "group", "alias", "delete"]
settings_strategy = st.builds(
    DestinationSettings,
    track_all_pages=st.booleans(),
    track_named_pages=st.booleans(),
    track_categorized_pages=st.booleans(),
    track_pages_with_events=st.booleans(),
    anonymous_identify=st.sampled_from(["send", "skip", "uid"]),
    use_recent_session=st.booleans(),
    send_context=st.booleans(),
    track_groups=st.booleans(),
    process_deletes=st.booleans(),
)
FIELDS = [
    "messageId",
    "type",
    "userId",
    "anonymousId",
    "event",
    "name",
    "category",
    "properties",
    "traits",
    "context",
    "integrations",
    "timestamp",
    "originalTimestamp",
    "sentAt",
    "receivedAt",
    "groupId",
    "previousId",
]


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(TYPES))
    return {
        "messageId": draw(st.sampled_from(["m-1", "m-2", None])),
        "type": kind,
        "userId": draw(st.sampled_from(["u-1", 42, None, "u" * 256])),
        "anonymousId": draw(st.sampled_from(["anon-1", None, "a" * 300])),
        "event": "Clicked",
        "name": draw(st.sampled_from(["Home", None])),
        "category": draw(st.sampled_from(["Docs", None])),
        "properties": {"plan": "pro", "n_int": 3},
        "traits": {"email": "a@b.c", "name": "Jane", "plan": "pro"},
        "context": {"ip": "1.2.3.4", "page": {"url": "https://x.io/"}, "screen": {"width": 3}},
        "integrations": {},
        "timestamp": "2024-01-02T03:04:05.678Z",
        "groupId": "g-1",
    }


BOUNDED = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BOUNDED
@given(event=json_values, config=settings_strategy)
def test_any_json_value_as_the_whole_event(event: Any, config: DestinationSettings) -> None:
    check_outcome(event, transform(event, config))


@BOUNDED
@given(
    event=valid_events(),
    field=st.sampled_from(FIELDS),
    value=json_values,
    config=settings_strategy,
)
def test_any_json_value_in_any_field(
    event: dict[str, Any], field: str, value: Any, config: DestinationSettings
) -> None:
    event[field] = value
    check_outcome(event, transform(event, config))


@BOUNDED
@given(
    event=valid_events(),
    properties=st.dictionaries(keys, json_values, max_size=8),
    config=settings_strategy,
)
def test_arbitrary_properties_and_traits(
    event: dict[str, Any], properties: dict[str, Any], config: DestinationSettings
) -> None:
    event["properties"] = properties
    event["traits"] = properties
    event["context"] = {"traits": properties, "page": properties, "location": properties}
    outcome = transform(event, config)
    check_outcome(event, outcome)
    assert transform(event, config) == outcome  # deterministic


@BOUNDED
@given(lines=st.lists(st.text(max_size=40) | json_values.map(json.dumps), max_size=5))
def test_transform_lines_never_raises(lines: list[str | bytes]) -> None:
    output = list(transform_lines(lines, DestinationSettings(track_all_pages=True)))
    assert len(output) == len(lines)
    for line in output:
        parsed = orjson.loads(line)
        assert "messageId" in parsed
        assert len(parsed) == 2


def test_checker_rejects_what_fullstory_rejects() -> None:
    """The checker must be able to fail: each of these bodies breaks one rule."""
    bad = [
        ("/v2/events", {"name": "", "properties": {}}),
        ("/v2/events", {"name": "E", "properties": {"1x": 1}}),
        ("/v2/events", {"name": "E", "properties": {"a": "x" * 8193}}),
        ("/v2/events", {"name": "E", "properties": {"a": [{"b": 1}]}}),
        (
            "/v2/events",
            {"name": "E", "properties": {"a": 1}, "schema": {"properties": {"b": "int"}}},
        ),
        ("/v2/events", {"name": "E", "properties": {"a": 1}, "schema": {"properties": {"a": "x"}}}),
        ("/v2/events", {"name": "E", "properties": {}, "session": {"use_most_recent": False}}),
        ("/v2/events", {"name": "E", "properties": {}, "session": {"use_most_recent": True}}),
        (
            "/v2/events",
            {"name": "E", "properties": {}, "user": {"uid": "u"}, "session": {"id": "s"}},
        ),
        ("/v2/events", {"name": "E", "properties": {"k" * 300: {"k" * 300: 1}}}),
        ("/v2/users", {"uid": "u" * 257, "properties": {}}),
        ("/v2/users", {"email": "e" * 129, "properties": {}}),
    ]
    for path, body in bad:
        try:
            check_request("POST", path, body)
        except AssertionError:
            continue
        raise AssertionError(f"checker accepted {body!r:.80}")
