"""Under FullStory's rate limit a realtime member delivers close to the allowed rate: its senders
share a pace set from the 429s instead of all sleeping out their Retry-After together (which
delivered 30-40% of the limit), and every event is still stored exactly once."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from harness import (
    API_KEY,
    ORG,
    assert_exactly_once,
    expected_identities,
    gauge,
    many_events,
    wait_for,
    write_jsonl,
)

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

LIMIT = 200  # requests/s the emulator lets through per API key
EVENTS = 4000  # one request each: ~20 s at the limit
STRETCH = 10.0  # seconds of steady state measured


def _delivered(emulator: EmulatorProcess) -> tuple[float, int]:
    """When (this process's clock, read after the answer) the emulator had stored how many
    writes: its own count, unlike the request log it costs the emulator nothing to answer."""
    stats = httpx.get(f"{emulator.url}/emulator/stats", timeout=10).json()
    return time.monotonic(), sum(n for path, n in stats["delivered"].items() if path != "/me")


def test_rate_limited_realtime_delivers_near_the_limit_exactly_once(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    events = many_events(EVENTS, prefix="rl")
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_identities(events, settings)
    assert len(expected) == EVENTS
    bootstrap = kafka_broker.bootstrap_servers
    produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "e.jsonl", events))
    emulator.faults(rate_limit=LIMIT, burst=20)
    port = free_port()
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--delivery", "realtime", "--metrics-port", str(port)),
    ).start()
    # Past the start (the first 429s, the first cuts): measure a steady stretch.
    wait_for(lambda: _delivered(emulator)[1] >= 400, 60, "the first deliveries", member.log)
    started, before = _delivered(emulator)
    time.sleep(STRETCH)
    paced = gauge(port, f'fullstory_consumer_fullstory_request_pace{{org="{ORG}"}}') or 0.0
    ended, after = _delivered(emulator)
    rate = (after - before) / (ended - started)
    assert after < EVENTS, "the stretch reached the end of the backlog: nothing was measured"
    assert rate >= 0.6 * LIMIT, f"{rate:.0f} requests/s delivered of {LIMIT} allowed"
    assert 0 < paced <= 1.5 * LIMIT

    wait_for(lambda: _delivered(emulator)[1] >= EVENTS, 60, "every delivery", member.log)
    assert member.stop() == 0, member.log()
    assert_exactly_once(emulator.deliveries(), expected)
    log = member.log()
    starts = [
        entry
        for entry in (orjson.loads(line) for line in log.splitlines() if line.startswith("{"))
        if entry["msg"].startswith("FullStory answered 429: pacing")
    ]
    assert starts and starts[0]["org"] == ORG and starts[0]["rate"] >= 1, log[-3000:]
    assert API_KEY not in log
