"""The command line as a user meets it: every help page works, and mistakes the user can fix end
with one `error:` line and exit 2 before anything connects anywhere."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

SUBCOMMANDS = (
    ["run"],
    ["backfill"],
    ["budget"],
    ["budget", "estimate"],
    ["produce"],
    ["transform"],
    ["emulator"],
    ["dlq"],
    ["dlq", "replay"],
    ["demo"],
)


def cli(
    *args: str, cwd: Path, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m consumer.cli` in `cwd` with no FULLSTORY_* settings from this environment
    but those of `env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FULLSTORY_")} | (env or {})
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
    for name in ("run", "backfill", "budget", "produce", "transform", "emulator", "dlq", "demo"):
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


SECRET = "s3cret-never-shown"
RUN = ("run", "--bootstrap-servers", "127.0.0.1:1", "--group-id", "g", "--topic", "t")
PRODUCE = ("produce", "--bootstrap-servers", "127.0.0.1:1", "--topic", "t")
REPLAY = ("dlq", "replay", "--bootstrap-servers", "127.0.0.1:1", "--topic", "t.dlq")
ESTIMATE = ("budget", "estimate", *RUN[1:])
REGISTRY = ("--framing", "confluent", "--schema-registry-url", "https://127.0.0.1:1")


# Files the bad inputs below name, written into the test's directory.
FILES = {
    "garbage.pem": b"not a certificate\n",
    "bad.json": b"{not json",
    "array.json": b"[1]",
    "wrong-type.json": orjson.dumps({"trackAllPages": "yes"}),
    "bad.toml": b"topics = [",
}


def _bad_inputs(tmp: Path) -> dict[str, tuple[tuple[str, ...], str]]:
    """Name → (command line, what its error line must name), each a mistake a user can fix.
    `produce` exits 1 (its errors may come after some lines were sent), the others 2."""
    garbage, bad_json, array, wrong_type, bad_toml = (tmp / name for name in FILES)
    missing = str(tmp / "missing")
    directory = str(tmp)
    return {
        "config missing": ((*RUN, "--config", missing), "--config"),
        "config a directory": ((*RUN, "--config", directory), "--config"),
        "config not TOML": ((*RUN, "--config", str(bad_toml)), "not valid TOML"),
        "settings missing": ((*RUN, "--settings", missing), "--settings"),
        "settings a directory": ((*RUN, "--settings", directory), "--settings"),
        "settings not JSON": ((*RUN, "--settings", str(bad_json)), "not valid JSON"),
        "settings wrong type": ((*RUN, "--settings", str(wrong_type)), "trackAllPages"),
        "registry CA missing": ((*RUN, *REGISTRY, "--schema-registry-ca", missing), "-ca"),
        "registry CA a directory": ((*RUN, *REGISTRY, "--schema-registry-ca", directory), "-ca"),
        "registry CA not PEM": ((*RUN, *REGISTRY, "--schema-registry-ca", str(garbage)), "TLS"),
        "registry cert not PEM": (
            (*RUN, *REGISTRY, "--schema-registry-cert", str(garbage)),
            "TLS",
        ),
        "registry key without cert": (
            (*RUN, *REGISTRY, "--schema-registry-key", str(garbage)),
            "certificate",
        ),
        "registry auth not user:secret": (
            (*RUN, *REGISTRY, "--schema-registry-auth", SECRET),
            "user:secret",
        ),
        "unknown librdkafka setting": ((*RUN, "-X", "no.such.setting=1"), "no.such.setting"),
        "bad librdkafka value": ((*RUN, "-X", "security.protocol=carrier-pigeon"), "-X"),
        "transform settings missing": (("transform", "--settings", missing), "--settings"),
        "transform settings not an object": (("transform", "--settings", str(array)), "object"),
        "transform settings wrong type": (
            ("transform", "--settings", str(wrong_type)),
            "trackAllPages",
        ),
        "produce file missing": (
            (*PRODUCE, "--file", missing),
            "--file",
        ),
        "produce confluent without an id": (
            (*PRODUCE, "--file", "-", "--framing", "confluent"),
            "--schema-id",
        ),
        "dlq replay unknown setting": (
            (*REPLAY, "-X", "no.such.setting=1"),
            "no.such.setting",
        ),
        "estimate since unparseable": ((*ESTIMATE, "--since", "last week"), "--since"),
        "estimate since in the future": ((*ESTIMATE, "--since", "2999-01-01T00:00:00Z"), "future"),
        "estimate since after until": (
            (*ESTIMATE, "--since", "2024-02-01", "--until", "2024-01-01"),
            "before --until",
        ),
        "estimate until unparseable": ((*ESTIMATE, "--since", "1d", "--until", "soon"), "--until"),
        "estimate config missing": ((*ESTIMATE, "--since", "1d", "--config", missing), "--config"),
        "demo events missing": (("demo", "--events", missing), "--events"),
        "demo settings missing": (("demo", "--settings", missing), "--settings"),
    }


BAD_INPUTS = tuple(_bad_inputs(Path("/nonexistent")))  # the names, for the test ids


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_a_bad_input_is_one_error_line_without_secrets(name: str, tmp_path: Path) -> None:
    """Exit 2 (1 for produce), one `error:` line naming what to fix, no traceback, neither
    secret."""
    for file, content in FILES.items():
        (tmp_path / file).write_bytes(content)
    args, needle = _bad_inputs(tmp_path)[name]
    env = {
        "FULLSTORY_API_KEY": SECRET,
        "FULLSTORY_CONSUMER_SCHEMA_REGISTRY_KEY_PASSWORD": SECRET,
    }
    proc = cli(*args, cwd=tmp_path, env=env)
    line = one_error_line(proc)
    assert proc.returncode == (1 if args[0] == "produce" else 2), line
    assert needle in line
    assert SECRET not in proc.stdout.decode() + line


def test_the_emulator_on_a_taken_port_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = cli("emulator", "--port", port, cwd=tmp_path)
    assert proc.returncode == 2
    assert "--port" in one_error_line(proc)
