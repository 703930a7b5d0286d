"""Health, metrics and debug logging of a running consumer."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from harness import API_KEY, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file

pytestmark = pytest.mark.integration


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_health_metrics_and_debug_log(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    events = [
        {
            "type": "track",
            "messageId": f"ops-{i}",
            "userId": "u1",
            "event": "Ping",
            "properties": {"n": i},
            "receivedAt": "2026-11-28T10:00:00.000Z",
        }
        for i in range(40)
    ]
    produce_file(
        kafka_broker.bootstrap_servers, topic_name, write_jsonl(tmp_path / "e.jsonl", events)
    )
    settings = tmp_path / "s.json"
    settings.write_bytes(orjson.dumps({"debug": True, "recordOnlyThisIFrame": True}))
    port = free_port()
    member = consumers(
        kafka_broker.bootstrap_servers,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        settings=settings,
        args=("--metrics-port", str(port)),
    ).start()
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> httpx.Response | None:
        try:
            return httpx.get(base + path, timeout=2)
        except httpx.TransportError:
            return None

    wait_for(lambda: (r := get("/healthz")) is not None and r.status_code == 200, 30, "/healthz")
    wait_for(
        lambda: (r := get("/readyz")) is not None and r.status_code == 200,
        60,
        "/readyz",
        member.log,
    )

    def metrics() -> str:
        response = get("/metrics")
        return response.text if response is not None else ""

    wait_for(
        lambda: _metric(metrics(), "fullstory_consumer_records_delivered_total") >= 40,
        60,
        "40 delivered in the metrics",
        member.log,
    )
    # Lag gauges refresh every few seconds; they must reach zero once all is done.
    wait_for(
        lambda: (
            "fullstory_consumer_consumer_lag_records{" in metrics()
            and _metric(metrics(), "fullstory_consumer_consumer_lag_records") == 0
        ),
        30,
        "zero lag",
        member.log,
    )
    text = metrics()
    assert _metric(text, "fullstory_consumer_records_consumed_total") == 40
    assert _metric(text, "fullstory_consumer_fullstory_requests_total") >= 40
    assert _metric(text, "fullstory_consumer_freshness_seconds") > 0
    assert "_created" not in text
    assert API_KEY not in text
    assert member.stop() == 0
    log = member.log()
    mapped = [
        orjson.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"mapped request"' in line
    ]
    assert len(mapped) == 40
    assert mapped[0]["body"]["name"] == "Ping"
    assert API_KEY not in log
    assert log.count("recordOnlyThisIFrame only affects") == 1  # the browser-only setting
