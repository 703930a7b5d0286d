"""A real Prometheus (Debian's package) scrapes a running consumer: after N events are delivered,
its queries for delivered records and consumer lag return N and 0, and /healthz and /readyz answer
on the metrics port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import expected_keys, wait_for, write_jsonl

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.produce import produce_file
from consumer.transform import DestinationSettings

pytestmark = pytest.mark.integration

N = 300
JOB = "fullstory-consumer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


class Prometheus:
    """`prometheus` on a free loopback port, scraping one target every second."""

    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        self.log_path = workdir / "prometheus.log"
        self.cmd = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log)
        wait_for(lambda: _get(f"{self.url}/-/ready")[0] == 200, 60, "prometheus ready", self.log)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def query(self, promql: str) -> list[dict[str, Any]]:
        status, body = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert status == 200, body
        data: dict[str, Any] = json.loads(body)
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The value of a single-series query, None while it has no series."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("prometheus is missing under CI (bash .ci/install-tools.sh installs it)")
    pytest.skip("prometheus is not installed (bash .ci/install-tools.sh installs it)")


@pytest.fixture
def prometheus_factory(tmp_path: Path, prometheus_binary: str) -> Iterator[Any]:
    started: list[Prometheus] = []

    def make(target: str) -> Prometheus:
        prom = Prometheus(prometheus_binary, tmp_path, target).start()
        started.append(prom)
        return prom

    yield make
    for prom in started:
        prom.stop()


def _track_events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "messageId": f"prom-{i}",
            "userId": f"user-{i % 13}",
            "event": "Order Completed",
            "properties": {"order": i},
            "timestamp": "2026-11-28T10:00:00.000Z",
            "receivedAt": "2026-11-28T10:00:01.000Z",
        }
        for i in range(n)
    ]


def test_prometheus_sees_delivered_records_and_zero_lag(
    kafka_broker: LocalBroker,
    topic_name: str,
    emulator: EmulatorProcess,
    consumers: Any,
    prometheus_factory: Any,
    tmp_path: Path,
) -> None:
    events = _track_events(N)
    settings, _ = DestinationSettings.from_mapping({})
    expected = expected_keys(events, settings)
    assert len(expected) == N
    bootstrap = kafka_broker.bootstrap_servers
    assert produce_file(bootstrap, topic_name, write_jsonl(tmp_path / "events.jsonl", events)) == N

    metrics_port = _free_port()
    member = consumers(
        bootstrap,
        topic_name,
        f"g-{uuid.uuid4().hex[:8]}",
        emulator.url,
        args=("--metrics-port", str(metrics_port)),
    ).start()
    prom = prometheus_factory(f"127.0.0.1:{metrics_port}")

    def delivered_keys() -> set[str]:
        return {r["idempotency_key"] for r in emulator.deliveries()}

    wait_for(lambda: delivered_keys() >= expected, 90, "every event delivered", member.log)
    base = f"http://127.0.0.1:{metrics_port}"
    assert _get(f"{base}/healthz")[0] == 200
    wait_for(lambda: _get(f"{base}/readyz")[0] == 200, 30, "/readyz to answer 200", member.log)

    delivered = f'sum(fullstory_consumer_records_delivered_total{{job="{JOB}"}})'
    wait_for(
        lambda: (prom.scalar(delivered) or 0) >= N,
        60,
        f"Prometheus to see {N} delivered records",
        lambda: f"{prom.query(delivered)}\n{prom.log()}\n{member.log()}",
    )
    assert prom.scalar(delivered) == N
    assert prom.scalar(f'up{{job="{JOB}"}}') == 1

    lag = f'sum(fullstory_consumer_consumer_lag_records{{job="{JOB}"}})'
    wait_for(
        lambda: prom.scalar(lag) == 0,
        60,
        "Prometheus to see zero consumer lag",
        lambda: f"{prom.query(lag)}\n{member.log()}",
    )
    per_partition = prom.query(f'fullstory_consumer_consumer_lag_records{{job="{JOB}"}}')
    assert {s["metric"]["topic"] for s in per_partition} == {topic_name}
    # One series per partition of the 6-partition topic that held records, each at zero.
    assert 1 <= len(per_partition) <= 6
    assert all(float(s["value"][1]) == 0 for s in per_partition), per_partition
    assert member.stop() == 0, member.log()
