"""Helpers for the integration tests: consumers as processes, waiting, reading topics back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import Consumer, TopicPartition

from consumer.transform import DestinationSettings, Requests, transform

API_KEY = "it-key"
ORG = "o-IT-na1"


class ConsumerProcess:
    """`fullstory-consumer run` as a child process (so tests can SIGKILL it). With topic None,
    topics, group and hosts come from a `--config` file in `args`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str | None,
        group: str,
        api_host: str,
        log_path: Path,
        settings: Path | None = None,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_env = env or {}
        self.cmd = [sys.executable, "-m", "consumer.cli", "run", "--log-format", "json"]
        if topic is not None:
            self.cmd += [
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                topic,
                "--group-id",
                group,
                "--api-host",
                api_host,
            ]
        self.cmd += args
        if settings is not None:
            self.cmd += ["--settings", str(settings)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, "FULLSTORY_API_KEY": API_KEY, **self.extra_env}
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=log, env=env)
        return self

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, wait for the drain and a clean exit."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def expected_keys(events: list[dict[str, Any]], settings: DestinationSettings) -> set[str]:
    keys: set[str] = set()
    for event in events:
        outcome = transform(event, settings)
        if isinstance(outcome, Requests):
            keys.update(r.idempotency_key for r in outcome.requests)
    return keys


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] = lambda: "",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")


def lag(bootstrap: str, group: str, topic: str, partitions: int = 6) -> int:
    """Records of the topic past the group's committed offsets (all of them without any)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        behind = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            behind += high - (tp.offset if tp.offset >= 0 else 0)
        return behind
    finally:
        consumer.close()


def offsets(bootstrap: str, group: str, topic: str, partitions: int = 6) -> str:
    """Each partition's committed offset, its metadata and its end: what a test that timed out
    waiting for the lag shows."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        lines = []
        for tp in consumer.committed(tps, timeout=10):
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            lines.append(
                f"partition {tp.partition}: committed {tp.offset} {tp.metadata!r} end {high}"
            )
        return "\n".join(lines)
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Read a topic from the beginning until `expect` records arrived (or the time is up)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    out.append(msg)
    finally:
        consumer.close()
    return out


def write_jsonl(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    return path


def request_identity(method: str, path: str, body: Any) -> bytes:
    """What identifies one stored write whichever way it arrived (single request or an item of a
    batch import job, whose idempotency keys differ): method, path and canonical body."""
    return orjson.dumps([method, path.split("?", 1)[0], body], option=orjson.OPT_SORT_KEYS)


def expected_identities(events: list[dict[str, Any]], settings: DestinationSettings) -> set[bytes]:
    out: set[bytes] = set()
    for event in events:
        outcome = transform(event, settings)
        if isinstance(outcome, Requests):
            out.update(request_identity(r.method, r.path, r.body) for r in outcome.requests)
    return out


def stored_writes(deliveries: list[dict[str, Any]]) -> list[bytes]:
    """The writes FullStory stored (batch create calls themselves are not writes)."""
    return [
        request_identity(r["method"], r["path"], r["body"])
        for r in deliveries
        if not r["path"].endswith("/batch")
    ]


def assert_exactly_once(deliveries: list[dict[str, Any]], expected: set[bytes]) -> None:
    """Every expected write stored by FullStory once: none missing, none twice, none extra
    (idempotent replays are not in `deliveries`)."""
    counts: dict[bytes, int] = {}
    for identity in stored_writes(deliveries):
        counts[identity] = counts.get(identity, 0) + 1
    missing = expected - set(counts)
    extra = set(counts) - expected
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not missing and not extra and not twice, (
        f"{len(missing)} missing, {len(extra)} unexpected, {len(twice)} stored twice"
    )


def many_events(n: int, prefix: str = "m") -> list[dict[str, Any]]:
    """A deterministic mix of identify and track events over 97 users."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        user = f"user-{i % 97}"
        if i % 5 == 0:
            events.append(
                {
                    "type": "identify",
                    "messageId": f"{prefix}-{i}",
                    "userId": user,
                    "traits": {"plan": "pro", "logins": i, "email": f"{user}@example.com"},
                    "timestamp": "2026-11-28T10:00:00.000Z",
                }
            )
        else:
            events.append(
                {
                    "type": "track",
                    "messageId": f"{prefix}-{i}",
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"order_id": str(i), "revenue": i * 1.5, "items": i % 7},
                    "timestamp": "2026-11-28T10:00:00.000Z",
                }
            )
    return events


def owned_partitions(member: ConsumerProcess) -> set[str]:
    """The partitions a member owns now, replayed from its assign/revoke log lines."""
    owned: set[str] = set()
    for line in member.log().splitlines():
        if not line.startswith("{"):
            continue
        entry = orjson.loads(line)
        if entry.get("msg") == "partitions assigned":
            owned.update(entry["partitions"])
        elif entry.get("msg") in ("partitions revoked", "partitions lost"):
            owned.difference_update(entry["partitions"])
    return owned


def gauge(port: int, name: str) -> float | None:
    """A gauge's value from a running consumer's /metrics (None: not answering, or no such
    gauge yet). For a labelled series, `name` includes its labels as exposed: `g{org="o"}`."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
