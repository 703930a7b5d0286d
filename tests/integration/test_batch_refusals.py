"""Batch delivery when FullStory refuses some items of an import job, answered in the real API's
shape (error items without a position, echoes with added null fields): exactly the refused
records are dead-lettered, and an error that fits two identical items dead-letters both rather
than counting either as imported. Everything else arrives once and the offsets are committed."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import read_topic, wait_for, write_jsonl

from consumer.codec.decode import Decoder
from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration

TIME = "2026-11-28T10:00:00.000Z"


def _events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [
        {
            "type": "track",
            "messageId": f"refusal-{i}",
            "userId": f"u{i % 7}",
            "event": "Bad Event" if i % 10 == 0 else "Good Event",
            "properties": {"order_id": f"o{i}"},
            "timestamp": TIME,
        }
        for i in range(60)
    ]
    events += [
        {
            "type": "identify",
            "messageId": f"refusal-user-{uid}",
            "userId": uid,
            "traits": {"plan": "pro"},
            "timestamp": TIME,
        }
        for uid in ("kept-user", "refused-user")
    ]
    # Two records whose requests are identical; FullStory refuses one of them.
    events += [
        {
            "type": "track",
            "messageId": f"refusal-twin-{n}",
            "userId": "twin",
            "event": "Twin Event",
            "properties": {"order_id": "twin"},
            "timestamp": TIME,
        }
        for n in (1, 2)
    ]
    return events


def test_refused_batch_items_and_ambiguous_candidates_are_dead_lettered(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    emulator.faults(
        reject_matching=[
            {"field": "name", "value": "Bad Event", "status": 400},
            {"field": "uid", "value": "refused-user", "status": 400, "path": "/v2/users"},
            {"field": "name", "value": "Twin Event", "status": 400, "times": 1},
        ]
    )
    events = _events()
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--delivery", "batch"),
        # one segment per partition, so the twins share an import job
        env={"FULLSTORY_CONSUMER_BATCH_LINGER": "3"},
    ).start()

    refused = {f"refusal-{i}" for i in range(0, 60, 10)} | {"refusal-user-refused-user"}
    twins = {"refusal-twin-1", "refusal-twin-2"}
    dead = read_topic(bootstrap, f"{topic_name}.dlq", expect=len(refused) + len(twins), timeout=90)
    good = {f"o{i}" for i in range(60) if i % 10}

    def orders() -> Counter[str]:
        return Counter(
            r["body"]["properties"]["order_id"]
            for r in emulator.deliveries()
            if r["path"] == "/v2/events"
        )

    wait_for(lambda: set(orders()) >= good, 90, "the good events", member.log)
    assert member.stop() == 0, member.log()

    decoder = Decoder("raw")
    by_id: dict[str, bytes] = {}
    for msg in dead:
        headers = dict(msg.headers() or [])
        assert headers["__connect.errors.stage"] == b"TASK_PUT"
        by_id[decoder.decode(msg.value())["messageId"]] = headers[
            "__connect.errors.exception.message"
        ]
    assert set(by_id) == refused | twins  # exactly these, each once
    for message_id in refused:
        assert by_id[message_id].startswith(b"invalid_argument: "), by_id[message_id]
    for message_id in twins:
        assert by_id[message_id].startswith(b"batch_error_ambiguous: "), by_id[message_id]

    # FullStory stored the twin it did not refuse; both are dead-lettered all the same, as the
    # error could be either's (a replay may store it twice: the price of losing nothing)
    counts = orders()
    assert set(counts) == good | {"twin"} and all(n == 1 for n in counts.values()), counts
    users = [r["body"]["uid"] for r in emulator.deliveries() if r["path"] == "/v2/users"]
    assert users == ["kept-user"]
