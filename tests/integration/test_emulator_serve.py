"""`serve` in a real process: readiness line, real sockets with httpx, clean exit on SIGTERM."""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from consumer.localenv.emulator import EmulatorProcess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.integration
def test_serve_in_a_subprocess_over_real_sockets_and_sigterm() -> None:
    port = free_port()
    code = (
        "from consumer.emulator import EmulatorConfig, serve; "
        f"serve(EmulatorConfig(api_keys=('k1',), org_id='o-SUB-na1'), port={port})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the emulator did not print its readiness line within 30 s"
        line = proc.stdout.readline()
        assert line == f"emulator listening on http://127.0.0.1:{port}\n"
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": "Basic k1"}) as client:
            assert client.get("/me").json()["orgId"] == "o-SUB-na1"
            event = client.post(
                "/v2/events", json={"name": "Real"}, headers={"Idempotency-Key": "i"}
            )
            assert (event.status_code, event.json()) == (200, {})
            denied = client.post("/v2/events", json={"name": "x"}, headers={"Authorization": "no"})
            assert denied.status_code == 401
            log = client.get("/emulator/requests").json()
            assert [(r["path"], r["body"]) for r in log] == [
                ("/me", None),
                ("/v2/events", {"name": "Real"}),
            ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.integration
def test_the_event_quota_flag_and_the_process_helpers_read_the_meter() -> None:
    with EmulatorProcess(api_keys=("k1", "k2"), args=("--event-quota", "2")) as emulator:
        with httpx.Client(base_url=emulator.url, headers={"Authorization": "Basic k1"}) as client:
            for i in range(3):
                assert client.post("/v2/events", json={"name": f"E{i}"}).status_code == 200
        assert emulator.server_events() == {"server_events": 3, "over_quota": 1}
        assert emulator.server_events("k2") == {"server_events": 0, "over_quota": 0}
        emulator.faults(event_quota=None)
        assert emulator.stats()["event_quota"] is None
