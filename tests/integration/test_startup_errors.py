"""Mistakes a user makes at start-up end with one clear `error:` line, never the API key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from harness import API_KEY

from consumer.localenv import LocalBroker
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port

pytestmark = pytest.mark.integration


def _run(*args: str, key: str = API_KEY, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", "run", "--group-id", "g", "--topic", "t", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": "/usr/bin:/bin",
            "FULLSTORY_API_KEY": key,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
    )


def test_wrong_api_key(kafka_broker: LocalBroker, emulator: EmulatorProcess) -> None:
    secret = "definitely-wrong-secret-key"
    result = _run(
        "--bootstrap-servers",
        kafka_broker.bootstrap_servers,
        "--api-host",
        emulator.url,
        key=secret,
    )
    assert result.returncode == 1
    assert "rejected the API key" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_org_mismatch_names_both_orgs(
    kafka_broker: LocalBroker, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    settings = tmp_path / "s.json"
    settings.write_bytes(orjson.dumps({"org": "o-OTHER-na1"}))
    result = _run(
        "--bootstrap-servers",
        kafka_broker.bootstrap_servers,
        "--api-host",
        emulator.url,
        "--settings",
        str(settings),
    )
    assert result.returncode == 1
    assert "o-OTHER-na1" in result.stderr and "o-IT-na1" in result.stderr
    assert API_KEY not in result.stderr


def test_unreachable_broker(emulator: EmulatorProcess) -> None:
    result = _run("--bootstrap-servers", f"127.0.0.1:{free_port()}", "--api-host", emulator.url)
    assert result.returncode == 1
    assert "cannot reach Kafka" in result.stderr
    assert "--bootstrap-servers" in result.stderr


def test_unreachable_fullstory(kafka_broker: LocalBroker) -> None:
    result = _run(
        "--bootstrap-servers",
        kafka_broker.bootstrap_servers,
        "--api-host",
        f"http://127.0.0.1:{free_port()}",
    )
    assert result.returncode == 1
    assert "cannot reach FullStory" in result.stderr


def test_bad_settings_type(tmp_path: Path) -> None:
    settings = tmp_path / "s.json"
    settings.write_bytes(orjson.dumps({"trackAllPages": "yes"}))
    result = _run("--bootstrap-servers", "127.0.0.1:1", "--settings", str(settings))
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "trackAllPages" in result.stderr or "track_all_pages" in result.stderr


def test_metrics_port_taken(kafka_broker: LocalBroker, emulator: EmulatorProcess) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = _run(
            "--bootstrap-servers",
            kafka_broker.bootstrap_servers,
            "--api-host",
            emulator.url,
            "--metrics-port",
            port,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error:") and "--metrics-port" in result.stderr
    assert API_KEY not in result.stderr
