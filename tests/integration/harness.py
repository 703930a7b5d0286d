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

import orjson
from confluent_kafka import Consumer

from consumer.transform import DestinationSettings, Requests, transform

API_KEY = "it-key"
ORG = "o-IT-na1"


class ConsumerProcess:
    """`fullstory-consumer run` as a child process (so tests can SIGKILL it)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        api_host: str,
        log_path: Path,
        settings: Path | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.cmd = [
            sys.executable,
            "-m",
            "consumer.cli",
            "run",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
            "--group-id",
            group,
            "--api-host",
            api_host,
            "--log-format",
            "json",
            *args,
        ]
        if settings is not None:
            self.cmd += ["--settings", str(settings)]
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ConsumerProcess:
        log = self.log_path.open("ab")
        env = {**os.environ, "FULLSTORY_API_KEY": API_KEY}
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
