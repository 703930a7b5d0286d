"""Python handle on deploy/local/apicurio.sh: Apicurio Registry (in memory) for tests and the demo.

The script owns fetching the archive, finding a Java 21+ and process control; this wrapper picks
a port, runs it, and turns failures into RegistryProcessError carrying the script's log tail.
"""

from __future__ import annotations

import math
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from consumer.localenv.ports import free_port

_FETCH_TIMEOUT_S = 900.0
_STOP_TIMEOUT_S = 30
CCOMPAT_PATH = "/apis/ccompat/v7"


class RegistryProcessError(RuntimeError):
    """The local registry could not be fetched, started or stopped; the message has the log tail."""


def apicurio_script() -> Path:
    """Locate deploy/local/apicurio.sh; consumer/ sits at the repo root (editable install)."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "local" / "apicurio.sh"
    if not script.is_file():
        raise RegistryProcessError(f"{script} not found: localenv needs a source checkout")
    return script


def _run_script(args: list[str], timeout: float) -> str:
    cmd = ["bash", str(apicurio_script()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RegistryProcessError(
            f"apicurio.sh {args[0]} did not finish within {timeout:.0f}s"
        ) from exc
    if proc.returncode != 0:
        raise RegistryProcessError(
            f"apicurio.sh {args[0]} failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    return proc.stdout


def registry_java() -> str | None:
    """The Java 21+ the script would run the registry with, or None if there is none."""
    try:
        return _run_script(["java"], 60.0).strip() or None
    except RegistryProcessError:
        return None


class LocalRegistry:
    """Apicurio Registry on 127.0.0.1:`port`; storage is in memory, so a restart starts empty.

    `url` is the Confluent-compatible base the consumer and producers are given.
    """

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="apicurio-")
            data_dir = Path(self._tmp.name)
        self.data_dir = Path(data_dir)
        self.url = f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"
        self.log_file = self.data_dir / "registry.log"
        self.pid: int | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Fetch the archive if needed, start, and wait until the ccompat API answers."""
        _run_script(["fetch"], _FETCH_TIMEOUT_S)
        out = _run_script(
            [
                "start",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir),
                "--timeout",
                str(math.ceil(timeout)),
            ],
            timeout + 30.0,
        )
        self.pid = int(out.split()[-1])

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL, for fault tests) the registry by pid and wait until it is gone."""
        if self.data_dir.is_dir():
            args = ["stop", "--data-dir", str(self.data_dir), "--timeout", str(_STOP_TIMEOUT_S)]
            if kill:
                args.append("--kill")
            _run_script(args, _STOP_TIMEOUT_S + 30.0)
        self.pid = None

    def close(self) -> None:
        """Stop and remove the temporary data dir, if this object made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalRegistry:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
