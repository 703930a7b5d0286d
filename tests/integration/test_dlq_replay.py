"""Records FullStory rejects land in the dead-letter topic and the rest flow on; after the cause is
fixed, `dlq replay` delivers them, and a second replay delivers nothing twice."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import read_topic, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration


def _events(n: int, bad_every: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "messageId": f"replay-{i}",
            "userId": f"u{i % 13}",
            "event": "Bad Event" if i % bad_every == 0 else "Good Event",
            "properties": {"order_id": f"o{i}"},
            "timestamp": "2026-11-28T10:00:00.000Z",
        }
        for i in range(n)
    ]


def _orders(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(r["body"]["properties"]["order_id"] for r in emulator.deliveries())


def _replay(bootstrap: str, topic: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "consumer.cli",
            "dlq",
            "replay",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rejected_records_are_dead_lettered_then_replayed(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    events = _events(200, bad_every=20)
    emulator.faults(reject_matching=[{"field": "name", "value": "Bad Event", "status": 400}])
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    member = consumers(bootstrap, topic_name, f"g-{uuid.uuid4().hex[:8]}", emulator.url).start()

    wait_for(lambda: len(_orders(emulator)) >= 190, 90, "the good events", member.log)
    dead = read_topic(bootstrap, f"{topic_name}.dlq", expect=10)
    assert len(dead) == 10
    for msg in dead:
        headers = dict(msg.headers() or [])
        assert headers["__connect.errors.stage"] == b"TASK_PUT"
        assert headers["__connect.errors.exception.message"].startswith(b"invalid_argument: ")
        assert b"HTTP 400" in headers["__connect.errors.exception.message"]
    assert set(_orders(emulator)) == {f"o{i}" for i in range(200) if i % 20}

    emulator.faults(reject_matching=None)
    out = _replay(bootstrap, f"{topic_name}.dlq")
    assert "replayed 10" in out
    wait_for(lambda: len(_orders(emulator)) >= 200, 90, "the replayed events", member.log)

    out = _replay(bootstrap, f"{topic_name}.dlq")  # the same records once more
    assert "replayed 10" in out
    wait_for(
        lambda: sum(1 for r in emulator.requests() if r.get("replay")) >= 10,
        60,
        "the second replay to be answered from the idempotency store",
        member.log,
    )
    assert member.stop() == 0, member.log()
    orders = _orders(emulator)
    assert set(orders) == {f"o{i}" for i in range(200)}
    assert all(n == 1 for n in orders.values()), orders
