"""The FullStory emulator as a child process, for the demo and the tests, with helpers to read
what it received and to change its faults."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from typing import Any

import httpx

from consumer.errors import UserError
from consumer.localenv.ports import free_port


class EmulatorError(UserError):
    """The emulator process did not start or stopped unexpectedly."""

    exit_code = 1


class EmulatorProcess:
    """`fullstory-consumer emulator` on a loopback port, stopped by pid. With `tls` (the PEM
    certificate and key files) it serves HTTPS, and `ca` (a PEM file) is what this object
    trusts for its own requests to it."""

    def __init__(
        self,
        port: int | None = None,
        api_keys: tuple[str, ...] = ("test-key",),
        org_id: str = "o-TEST-na1",
        args: tuple[str, ...] = (),
        tls: tuple[str, str] | None = None,
        ca: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.api_keys = api_keys
        self._args = ["--port", str(self.port), "--org-id", org_id, *args]
        if tls:
            self._args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        for key in api_keys:
            self._args += ["--api-key", key]
        self._verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "consumer.cli", "emulator", *self._args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise EmulatorError(f"emulator exited with {self._proc.returncode}: {err[-2000:]}")
            try:
                httpx.get(f"{self.url}/emulator/stats", timeout=1.0, verify=self._verify)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise EmulatorError(f"emulator did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, include_rejected: bool = False) -> list[dict[str, Any]]:
        """Every request the emulator accepted (with `replay` marking idempotent replays)."""
        params = {"all": "1"} if include_rejected else {}
        response = httpx.get(
            f"{self.url}/emulator/requests", params=params, timeout=30.0, verify=self._verify
        )
        response.raise_for_status()
        data: list[dict[str, Any]] = response.json()
        return data

    def deliveries(self) -> list[dict[str, Any]]:
        """Accepted writes that were not idempotent replays: what FullStory really stored."""
        return [r for r in self.requests() if not r.get("replay") and r["method"] != "GET"]

    def stats(self) -> dict[str, Any]:
        """`GET /emulator/stats`: counters, and per API key `server_events` / `over_quota`."""
        response = httpx.get(f"{self.url}/emulator/stats", timeout=30.0, verify=self._verify)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def server_events(self, api_key: str | None = None) -> dict[str, int]:
        """`{"server_events", "over_quota"}` of one key (the first accepted key by default):
        what FullStory would meter."""
        key = api_key or self.api_keys[0]
        counts: dict[str, int] = self.stats()["by_api_key"].get(key, {})
        return {"server_events": 0, "over_quota": 0, **counts}

    def faults(self, **faults: Any) -> None:
        httpx.post(
            f"{self.url}/emulator/faults", json=faults, timeout=10.0, verify=self._verify
        ).raise_for_status()

    def reset(self) -> None:
        httpx.post(
            f"{self.url}/emulator/reset", timeout=10.0, verify=self._verify
        ).raise_for_status()
