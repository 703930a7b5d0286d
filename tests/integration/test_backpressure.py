"""A consumer whose sink is throttled pauses its partitions and keeps polling: it stays in the
group (no eviction even with a short max.poll.interval.ms) and its memory stays flat while the
backlog waits in Kafka."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from harness import gauge, many_events, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_file

pytestmark = pytest.mark.integration


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_throttled_sink_pauses_keeps_membership_and_memory_flat(
    mode: str,
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    tmp_path: Path,
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    produce_file(
        bootstrap,
        topic_name,
        write_jsonl(tmp_path / "e.jsonl", many_events(30000, prefix=f"bp-{mode}")),
    )
    # FullStory accepts a trickle: 20 requests a second (batch: each job stays PROCESSING long).
    emulator.faults(rate_limit=20, burst=5, batch_processing_ms=5000)
    port = free_port()
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=(
            "--delivery",
            mode,
            "--metrics-port",
            str(port),
            "-X",
            "max.poll.interval.ms=10000",
            "-X",
            "session.timeout.ms=6000",
        ),
        env={
            "FULLSTORY_CONSUMER_MAX_IN_FLIGHT_RECORDS": "2000",
            "FULLSTORY_CONSUMER_BATCH_MAX_ITEMS": "500",
            "FULLSTORY_CONSUMER_BATCH_MAX_JOBS": "2",
        },
    ).start()
    assert member.proc is not None
    wait_for(
        lambda: (gauge(port, "fullstory_consumer_paused_partitions") or 0) > 0,
        60,
        "backpressure to pause the partitions",
        member.log,
    )
    samples: list[float] = []
    in_flight: list[float] = []
    for _ in range(25):  # 25 s throttled: well past max.poll.interval.ms
        time.sleep(1)
        samples.append(_rss_mb(member.proc.pid))
        in_flight.append(gauge(port, "fullstory_consumer_in_flight_records") or 0.0)
    assert member.proc.poll() is None, member.log()
    assert max(in_flight) <= 2000 + 500  # the bound, plus at most one poll batch
    assert max(samples) < 250, samples
    # Flat, not growing with the backlog. The baseline is the high-water mark of the first 10 s: by
    # then the first jobs have finished, their records are released and the resumed partitions
    # have refilled librdkafka's prefetch (bounded at 4 MiB queued + 4 MiB per fetch).
    baseline = max(samples[:10])
    assert samples[-1] <= baseline * 1.10 + 5, samples
    log = member.log()
    assert "partitions revoked" not in log and "partitions lost" not in log, log[-2000:]
    assert log.count('"msg":"partitions assigned"') == 1
    assert member.stop(timeout=90) == 0
