"""The command line as a user meets it: every help page works, and mistakes the user can fix end
with one `error:` line and exit 2 before anything connects anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

SUBCOMMANDS = (
    ["run"],
    ["produce"],
    ["transform"],
    ["emulator"],
    ["dlq"],
    ["dlq", "replay"],
    ["demo"],
)


def cli(*args: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """Run `python -m consumer.cli` in `cwd` with no FULLSTORY_* settings from this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FULLSTORY_")}
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    return lines[0]


def test_top_level_help(tmp_path: Path) -> None:
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in ("run", "produce", "transform", "emulator", "dlq", "demo"):
        assert name.encode() in proc.stdout


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_subcommand_help(command: list[str], tmp_path: Path) -> None:
    proc = cli(*command, "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"usage: fullstory-consumer " + " ".join(command).encode())


def test_run_without_configuration_is_one_error_line(tmp_path: Path) -> None:
    proc = cli("run", cwd=tmp_path)
    assert proc.returncode == 2
    assert "bootstrap_servers is not set" in one_error_line(proc)
    assert proc.stdout == b""


def test_dlq_replay_rejects_a_bad_since(tmp_path: Path) -> None:
    proc = cli(
        "dlq",
        "replay",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--topic",
        "events.dlq",
        "--since",
        "not-a-date",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "--since" in one_error_line(proc)


def test_produce_rejects_register_with_schema_id(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    proc = cli(
        "produce",
        "--bootstrap-servers",
        "127.0.0.1:1",
        "--topic",
        "t",
        "--file",
        str(events),
        "--framing",
        "confluent",
        "--register",
        "http://127.0.0.1:1",
        "--schema-id",
        "1",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "--register" in one_error_line(proc)


def test_transform_maps_an_event_from_stdin(tmp_path: Path) -> None:
    event = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2024-01-01T00:00:00Z",
        "properties": {"plan": "pro"},
    }
    proc = cli("transform", cwd=tmp_path, stdin=orjson.dumps(event) + b"\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    out = orjson.loads(lines[0])
    assert out["messageId"] == "m1"
    [request] = out["requests"]
    assert (request["method"], request["path"]) == ("POST", "/v2/events")
    assert request["body"]["name"] == "Signed Up"
    assert request["body"]["user"] == {"uid": "u1"}
    assert request["body"]["properties"] == {"plan": "pro"}
    assert request["idempotency_key"]
