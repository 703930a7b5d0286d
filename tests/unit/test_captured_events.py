"""Guard the events captured from Segment's own libraries (tests/data/captured/).

Other tests use these files as genuine input; these checks make sure a regeneration or a hand edit
cannot quietly leave them empty, truncated or no longer Segment-shaped.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "captured"
# file name -> the context.library.name that Segment's library stamps on every event
LIBRARIES = {
    "segment-python.jsonl": "analytics-python",
    "segment-node.jsonl": "@segment/analytics-node",
}
CALL_TYPES = {"identify", "track", "page", "screen", "group", "alias", "delete"}
# delete has no client-library call, so it cannot appear in a capture.
LIBRARY_CALL_TYPES = CALL_TYPES - {"delete"}
TIMESTAMP_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
WRITE_KEY = "test-write-key"


def _load(name: str) -> list[dict[str, Any]]:
    path = CAPTURED / name
    text = path.read_text(encoding="utf-8")
    assert WRITE_KEY not in text, f"{name} leaks the write key"
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(e, dict) for e in events), f"{name}: a line is not a JSON object"
    return events


@pytest.fixture(params=sorted(LIBRARIES), ids=lambda name: name.removesuffix(".jsonl"))
def captured(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    name: str = request.param
    return name, _load(name)


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and value != ""


def test_every_call_type_a_library_can_send_is_present(
    captured: tuple[str, list[dict[str, Any]]],
) -> None:
    name, events = captured
    assert {e.get("type") for e in events} >= LIBRARY_CALL_TYPES, name


def test_message_ids_are_present_and_unique(captured: tuple[str, list[dict[str, Any]]]) -> None:
    name, events = captured
    ids = [e.get("messageId") for e in events]
    assert all(_nonempty_str(i) for i in ids), name
    assert len(set(ids)) == len(ids), f"{name}: duplicate messageId"


def test_types_and_identities_follow_the_spec(captured: tuple[str, list[dict[str, Any]]]) -> None:
    name, events = captured
    for event in events:
        where = f"{name} {event.get('messageId')}"
        assert event.get("type") in CALL_TYPES, where
        assert _nonempty_str(event.get("userId")) or _nonempty_str(event.get("anonymousId")), where
        if event["type"] == "track":
            assert _nonempty_str(event.get("event")), where


def test_timestamps_are_zoned_iso8601(captured: tuple[str, list[dict[str, Any]]]) -> None:
    name, events = captured
    for event in events:
        assert "timestamp" in event, f"{name} {event.get('messageId')}"
        for key in TIMESTAMP_FIELDS:
            value = event.get(key)
            if value is None:
                continue
            parsed = datetime.fromisoformat(value)
            assert parsed.tzinfo is not None, f"{name} {event['messageId']} {key}={value}"


def test_library_stamp_names_the_library(captured: tuple[str, list[dict[str, Any]]]) -> None:
    name, events = captured
    for event in events:
        library = event.get("context", {}).get("library", {})
        assert library.get("name") == LIBRARIES[name], f"{name} {event.get('messageId')}"
        assert _nonempty_str(library.get("version")), f"{name} {event.get('messageId')}"


def test_seed_purchase_event_survives(captured: tuple[str, list[dict[str, Any]]]) -> None:
    """The destination page's own example must stay in the data, with its float price."""
    name, events = captured
    purchases = [e for e in events if e.get("event") == "Product Purchased"]
    assert len(purchases) == 1, name
    assert purchases[0]["properties"] == {
        "order_ID": "2969302398",
        "category": "boots",
        "product_name": "yellow_cowboy_boots",
        "price": 99.95,
        "currency": "EUR",
    }
