"""Python handle on deploy/local/apicurio.sh: Apicurio Registry (in memory) for tests and the demo.

The script owns fetching the archive, finding a Java 21+ and process control; this class picks
a port and, unless given one, a temporary data dir that `close` removes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from consumer.localenv.ports import free_port
from consumer.localenv.script import ScriptedService, ServiceError

CCOMPAT_PATH = "/apis/ccompat/v7"


class RegistryProcessError(ServiceError):
    """The local registry could not be fetched, started or stopped; the message has the log tail."""


def registry_java() -> str | None:
    """The Java 21+ the script would run the registry with, or None if there is none."""
    try:
        return LocalRegistry.run(["java"], 60.0).strip() or None
    except RegistryProcessError:
        return None


class LocalRegistry(ScriptedService):
    """Apicurio Registry on 127.0.0.1:`port`; storage is in memory, so a restart starts empty.

    `url` is the Confluent-compatible base the consumer and producers are given.
    """

    script_name = "apicurio.sh"
    error = RegistryProcessError

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port if port is not None else free_port()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="apicurio-")
            data_dir = Path(self._tmp.name)
        super().__init__(data_dir)
        self.url = f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"
        self.log_file = self.data_dir / "registry.log"

    def start_args(self) -> list[str]:
        """The registry's HTTP port."""
        return ["--port", str(self.port)]

    def close(self) -> None:
        """Stop and remove the temporary data dir, if this object made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
