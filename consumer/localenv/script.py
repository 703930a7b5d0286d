"""The Python side of deploy/local's service scripts (kafka.sh, apicurio.sh): they own fetching,
starting, waiting until ready and stopping by pid; this runs them and turns failures into one
error carrying the script's output (with the service's log tail)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from consumer.errors import UserError

FETCH_TIMEOUT_S = 900.0
STOP_TIMEOUT_S = 30


class ServiceError(UserError):
    """A local service could not be fetched, started or stopped; the message says why."""

    exit_code = 1


class ScriptedService:
    """A JVM service on 127.0.0.1 whose pid and logs live in `data_dir`."""

    script_name: ClassVar[str]
    error: ClassVar[type[ServiceError]] = ServiceError
    start_slack: ClassVar[float] = 30.0  # seconds the script may take beyond the ready wait

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.pid: int | None = None

    @classmethod
    def script(cls) -> Path:
        """The script in the source checkout (consumer/ sits at the repo root)."""
        path = Path(__file__).resolve().parents[2] / "deploy" / "local" / cls.script_name
        if not path.is_file():
            raise cls.error(
                f"{path} not found: the local services (the demo, the tests) run from a source "
                "checkout; clone the repository and `pip install -e .` there"
            )
        return path

    @classmethod
    def run(cls, args: list[str], timeout: float) -> str:
        """Run the script with ARGS; its stdout, or the error with its stderr."""
        cmd = ["bash", str(cls.script()), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise cls.error(
                f"{cls.script_name} {args[0]} did not finish within {timeout:.0f}s"
            ) from exc
        if proc.returncode != 0:
            raise cls.error(
                f"{cls.script_name} {args[0]} failed (exit {proc.returncode}):\n{proc.stderr}"
            )
        return proc.stdout

    def start_args(self) -> list[str]:
        """The service's own `start` options (ports)."""
        raise NotImplementedError

    def start(self, timeout: float = 120.0) -> None:
        """Fetch what is missing, then start and wait until the service is ready."""
        self.run(["fetch"], FETCH_TIMEOUT_S)
        out = self.run(
            [
                "start",
                *self.start_args(),
                "--data-dir",
                str(self.data_dir),
                "--timeout",
                str(math.ceil(timeout)),
            ],
            timeout + self.start_slack,
        )
        self.pid = int(out.split()[-1])

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL, for fault tests) by pid and wait until the process is gone."""
        if self.data_dir.is_dir():
            args = ["stop", "--data-dir", str(self.data_dir), "--timeout", str(STOP_TIMEOUT_S)]
            if kill:
                args.append("--kill")
            self.run(args, STOP_TIMEOUT_S + 30.0)
        self.pid = None

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
