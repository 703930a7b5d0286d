"""What the running consumer sends is exactly what `fullstory-consumer transform` prints."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from harness import wait_for

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SOURCES = [
    REPO / "schemas" / "sample-events.jsonl",
    REPO / "tests" / "data" / "captured" / "segment-python.jsonl",
    REPO / "tests" / "data" / "captured" / "segment-node.jsonl",
]


def _printed(events_file: Path, settings: Path) -> dict[str, dict[str, Any]]:
    """Idempotency key → request, as the transform command prints them."""
    out = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "transform", "--settings", str(settings)],
        input=events_file.read_bytes(),
        capture_output=True,
        check=True,
    ).stdout
    requests: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        for req in orjson.loads(line).get("requests", []):
            requests[req["idempotency_key"]] = req
    return requests


def test_emulator_receives_what_transform_prints(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    # Both captures use one fixed messageId on different events: FullStory would answer the
    # second with an idempotency conflict, so keep the first of each id.
    seen: set[str] = set()
    lines = []
    for source in SOURCES:
        for line in source.read_bytes().splitlines():
            message_id = orjson.loads(line)["messageId"]
            if line.strip() and message_id not in seen:
                seen.add(message_id)
                lines.append(line)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    settings = tmp_path / "settings.json"
    settings.write_bytes(
        orjson.dumps(
            {
                "trackNamedPages": True,
                "trackCategorizedPages": True,
                "track_groups": True,
                "use_recent_session": True,
            }
        )
    )
    printed = _printed(events, settings)
    assert len(printed) > 40

    produce_file(kafka_broker.bootstrap_servers, topic_name, events)
    member = consumers(
        kafka_broker.bootstrap_servers,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        settings=settings,
    ).start()

    def received() -> dict[str, dict[str, Any]]:
        return {r["idempotency_key"]: r for r in emulator.deliveries()}

    wait_for(lambda: set(received()) >= set(printed), 90, "every printed request", member.log)
    assert member.stop() == 0, member.log()
    got = received()
    assert set(got) == set(printed)
    for key, want in printed.items():
        have = got[key]
        path, _, query = want["path"].partition("?")
        assert have["method"] == want["method"], key
        assert have["path"] == path, key
        assert (have.get("query") or {}) == dict(parse_qsl(query)), key
        assert have["body"] == want["body"], key
