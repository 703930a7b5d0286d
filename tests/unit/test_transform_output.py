"""Idempotency keys and the `transform` command's JSON-lines format."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from consumer.transform import (
    DestinationSettings,
    Invalid,
    Request,
    Requests,
    Skipped,
    outcome_to_json,
    transform,
    transform_lines,
)
from consumer.transform.idempotency import HASH_NAMESPACE, MESSAGE_NAMESPACE

DEFAULT = DestinationSettings()


def key_of(event: dict[str, Any]) -> str:
    outcome = transform(event, DEFAULT)
    assert isinstance(outcome, Requests)
    return outcome.requests[0].idempotency_key


def event(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "userId": "u", **fields}


def test_key_is_uuid5_of_message_id_and_position() -> None:
    assert key_of(event(messageId="m-1")) == str(uuid.uuid5(MESSAGE_NAMESPACE, "m-1:0"))
    assert key_of(event(messageId=12)) == str(uuid.uuid5(MESSAGE_NAMESPACE, "12:0"))
    assert key_of(event(messageId="Ünï 😀")) == str(uuid.uuid5(MESSAGE_NAMESPACE, "Ünï 😀:0"))


def test_key_depends_only_on_the_message_id() -> None:
    first = key_of(event(messageId="m-1", properties={"a": 1}, receivedAt="2024-01-01T00:00Z"))
    again = key_of(event(messageId="m-1", properties={"a": 2}))
    other = key_of(event(messageId="m-2", properties={"a": 1}))
    assert first == again
    assert first != other
    delete = transform({"type": "delete", "userId": "u", "messageId": "m-1"}, DEFAULT)
    assert isinstance(delete, Requests)
    assert delete.requests[0].idempotency_key == first


def test_without_message_id_the_key_hashes_the_canonical_event() -> None:
    import hashlib

    base = event(properties={"b": 1, "a": [1, 2]})
    canonical = orjson.dumps(base, option=orjson.OPT_SORT_KEYS)
    expected = str(uuid.uuid5(HASH_NAMESPACE, f"{hashlib.sha256(canonical).hexdigest()}:0"))
    assert key_of(base) == expected
    reordered = {key: base[key] for key in reversed(list(base))}
    assert key_of(reordered) == expected
    assert key_of(event(properties={"b": 2, "a": [1, 2]})) != expected
    for unusable in ("", None, True, {"id": 1}, 1.5):
        with_bad = event(messageId=unusable, properties={"b": 1, "a": [1, 2]})
        assert key_of(with_bad) == key_of(dict(with_bad)) != expected


def test_event_that_orjson_cannot_encode_still_gets_a_stable_key() -> None:
    huge = event(properties={"n": 2**70, "m": 1})
    assert key_of(huge) == key_of(event(properties={"n": 2**70, "m": 1}))
    assert key_of(huge) != key_of(event(properties={"n": 2**70, "m": 2}))


def test_outcome_to_json_shapes() -> None:
    request = Request("POST", "/v2/events", {"name": "E"}, "k-1")
    assert outcome_to_json({"messageId": "m"}, Requests((request,))) == {
        "messageId": "m",
        "requests": [
            {
                "method": "POST",
                "path": "/v2/events",
                "body": {"name": "E"},
                "idempotency_key": "k-1",
            }
        ],
    }
    assert outcome_to_json({"messageId": 7}, Skipped("alias_unsupported")) == {
        "messageId": 7,
        "skipped": "alias_unsupported",
    }
    assert outcome_to_json([1], Invalid("invalid_event")) == {
        "messageId": None,
        "error": "invalid_event",
    }
    for odd in ({"a": 1}, [1], 2**64, True, 1.5, None):
        assert outcome_to_json({"messageId": odd}, Skipped("x"))["messageId"] is None


def test_transform_lines_one_line_per_input_line_in_order() -> None:
    lines: list[str | bytes] = [
        orjson.dumps(
            {"type": "identify", "messageId": "m-1", "userId": "u", "traits": {"plan": "pro"}}
        ),
        "not json\n",
        "",
        '{"type": "alias", "messageId": "m-2"}\n',
        b"[1, 2]\n",
        '{"type": "delete", "userId": "a b", "messageId": "m-3"}',
        b"\xff\xfe",
        '{"type": "track", "messageId": "m-4"}',
    ]
    output = list(transform_lines(lines, DEFAULT))
    assert len(output) == len(lines)
    assert all(b"\n" not in line for line in output)
    parsed = [orjson.loads(line) for line in output]
    assert parsed == [
        {
            "messageId": "m-1",
            "requests": [
                {
                    "method": "POST",
                    "path": "/v2/users",
                    "body": {"uid": "u", "properties": {"plan": "pro"}},
                    "idempotency_key": str(uuid.uuid5(MESSAGE_NAMESPACE, "m-1:0")),
                }
            ],
        },
        {"messageId": None, "error": "invalid_json"},
        {"messageId": None, "error": "invalid_json"},
        {"messageId": "m-2", "skipped": "alias_unsupported"},
        {"messageId": None, "error": "invalid_event"},
        {
            "messageId": "m-3",
            "requests": [
                {
                    "method": "DELETE",
                    "path": "/v2/users?uid=a%20b",
                    "body": None,
                    "idempotency_key": str(uuid.uuid5(MESSAGE_NAMESPACE, "m-3:0")),
                }
            ],
        },
        {"messageId": None, "error": "invalid_json"},
        {"messageId": "m-4", "error": "missing_identity"},
    ]


def test_transform_lines_uses_the_settings() -> None:
    line = '{"type": "page", "name": "Home", "userId": "u", "messageId": "m"}'
    assert orjson.loads(next(transform_lines([line], DEFAULT))) == {
        "messageId": "m",
        "skipped": "page_not_tracked",
    }
    named = DestinationSettings(track_named_pages=True)
    body = orjson.loads(next(transform_lines([line], named)))["requests"][0]["body"]
    assert body == {
        "name": "Viewed Home Page",
        "properties": {"name": "Home", "pageName": "Home"},
        "user": {"uid": "u"},
    }
