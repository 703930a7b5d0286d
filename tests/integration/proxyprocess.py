"""proxy.py (from PyPI) as a child process on a free loopback port, stopped by pid, with the
`proxy_hosts` plugin that makes `*.test` names resolve to 127.0.0.1 inside the proxy only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


class ProxyProcess:
    """`python -m proxy`, with `--basic-auth user:password` when `auth` is given."""

    def __init__(self, workdir: Path, auth: str | None = None) -> None:
        self._port_file = workdir / "proxy.port"
        self.log_path = workdir / "proxy.log"
        self._cmd = [
            sys.executable,
            "-m",
            "proxy",
            "--hostname",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(self._port_file),
            "--num-workers",
            "1",
            "--num-acceptors",
            "1",
            "--log-file",
            str(self.log_path),
            "--plugins",
            "proxy_hosts.LoopbackTestHosts",
            *(["--basic-auth", auth] if auth else []),
        ]
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, credentials: str | None = None) -> str:
        """Its URL, with `user:password@` when `credentials` are given."""
        return f"http://{credentials}@127.0.0.1:{self.port}" if credentials else self.address

    def start(self, timeout: float = 30.0) -> ProxyProcess:
        path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            self._cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": path},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy.py exited with {self.proc.returncode}: {self.log()}")
            text = self._port_file.read_text().strip() if self._port_file.exists() else ""
            if text.isdigit():
                self.port = int(text)
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                    return self
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"proxy.py did not listen within {timeout:.0f} s: {self.log()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
