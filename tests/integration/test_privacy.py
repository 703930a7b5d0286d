"""`privacy` rules through the real broker and the emulator, in both delivery modes: no dropped,
redacted or detected canary reaches FullStory, hashed values are the contract's HMAC, and a
dead-lettered record keeps its original value while its error headers carry no canary."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException
from harness import lag, read_topic, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration

KEY = "integration-hmac-key-7f3a"
SETTINGS = {
    "privacy": {
        "drop": ["context.ip", "properties.ssn"],
        "redact": ["*password*"],
        "hash": ["traits.email"],
        "detect": {"email": "hash", "card": "drop"},
    }
}
IP = "198.51.100.77"
SSN = "canary-ssn-000-11-2222"
PASSWORD = "canary-password-hunter2"
EMAIL = "canary.person@example.org"
NOTE_EMAIL = "reach me at canary.note@example.net please"
CARD = "4111 1111 1111 1111"
CANARIES = (IP, SSN, PASSWORD, EMAIL, "canary.note@example.net", CARD, "4111111111111111", KEY)


def _hex(text: str) -> str:
    return hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def _events(n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(n):
        events.append(
            {
                "type": "identify",
                "messageId": f"pi-{i}",
                "userId": f"u{i}",
                "traits": {"email": EMAIL, "name": f"User {i}", "password": PASSWORD},
                "context": {"ip": IP},
                "timestamp": "2026-11-28T10:00:00.000Z",
            }
        )
        events.append(
            {
                "type": "track",
                "messageId": f"pt-{i}",
                "userId": f"u{i}",
                "event": "Refused Event" if i == 0 else "Order Completed",
                "properties": {"ssn": SSN, "note": NOTE_EMAIL, "card": CARD, "order": i},
                "context": {"ip": IP},
                "timestamp": "2026-11-28T10:00:00.000Z",
            }
        )
    return events


def _drained(bootstrap: str, group: str, topic: str) -> bool:
    """Whether the group's lag is 0; a coordinator move while the group forms (NOT_COORDINATOR)
    is asked again."""
    try:
        return lag(bootstrap, group, topic) == 0
    except KafkaException:
        return False


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_what_fullstory_stores_holds_no_protected_value(
    mode: str,
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = tmp_path / "settings.json"
    settings.write_bytes(orjson.dumps(SETTINGS))
    events = _events(20)
    emulator.faults(reject_matching=[{"field": "name", "value": "Refused Event", "status": 400}])
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    member = consumers(
        bootstrap,
        topic_name,
        group,
        emulator.url,
        settings=settings,
        args=("--delivery", mode),
        env={"FULLSTORY_CONSUMER_HASH_KEY": KEY},
    ).start()
    wait_for(lambda: _drained(bootstrap, group, topic_name), 120, "every record done", member.log)
    dead = read_topic(bootstrap, f"{topic_name}.dlq", expect=1)
    assert member.stop() == 0, member.log()

    deliveries = emulator.deliveries()  # in batch mode also the batch create calls themselves
    sent = orjson.dumps(deliveries).decode()
    stored = [r for r in deliveries if not r["path"].endswith("/batch")]
    assert len(stored) == 39  # 20 users, 19 events: the refused one is dead-lettered
    for canary in CANARIES:
        assert canary not in sent, canary
        assert canary not in member.log(), canary
    users = [r["body"] for r in stored if r["path"] == "/v2/users"]
    assert all(user["properties"]["email"] == _hex(EMAIL) for user in users)
    assert all("email" not in user for user in users)  # a hashed e-mail is not FullStory's email
    assert all(user["properties"]["password"] == "[redacted]" for user in users)
    assert all(user["display_name"].startswith("User ") for user in users)
    tracks = [r["body"] for r in stored if r["path"] == "/v2/events"]
    assert all(body["properties"]["note"] == _hex(NOTE_EMAIL) for body in tracks)
    assert all(
        "card" not in body["properties"] and "ssn" not in body["properties"] for body in tracks
    )
    assert all(
        "ip_address" not in (body.get("context") or {}).get("location", {}) for body in tracks
    )

    assert len(dead) == 1
    original = next(e for e in events if e["messageId"] == "pt-0")
    kept = dead[0].value()  # the record as Kafka holds it, canaries and all
    assert all(value.encode() in kept for value in (SSN, CARD, NOTE_EMAIL, original["messageId"]))
    for name, value in dead[0].headers() or []:
        if name.startswith("__connect.errors."):
            for canary in CANARIES:
                assert canary.encode() not in (value or b""), (name, canary)
