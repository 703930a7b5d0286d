"""Python handle on deploy/local/kafka.sh: a single-node KRaft broker for tests and the demo.

The script owns fetching jars, formatting storage and process control; this wrapper only picks
ports, runs it, and turns failures into BrokerError carrying the script's log tail.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it for mypy

from consumer.localenv.ports import free_port

_FETCH_TIMEOUT_S = 900.0
_STOP_TIMEOUT_S = 30
_TOPIC_TIMEOUT_S = 60.0


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message has the log tail."""


def kafka_script() -> Path:
    """Locate deploy/local/kafka.sh; consumer/ sits at the repo root (editable install)."""
    script = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka.sh"
    if not script.is_file():
        raise BrokerError(
            f"{script} not found: the local Kafka broker (the demo, the tests) runs from a source "
            "checkout; clone the repository and `pip install -e .` there"
        )
    return script


def _run_script(args: list[str], timeout: float) -> str:
    """Run kafka.sh with ARGS; return its stdout or raise BrokerError with its stderr."""
    cmd = ["bash", str(kafka_script()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerError(f"kafka.sh {args[0]} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise BrokerError(f"kafka.sh {args[0]} failed (exit {proc.returncode}):\n{proc.stderr}")
    return proc.stdout


class LocalBroker:
    """A broker+controller JVM on 127.0.0.1 whose state lives in data_dir (kept across restarts)."""

    def __init__(
        self, data_dir: Path, port: int | None = None, controller_port: int | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        for _ in range(10):
            if self.controller_port != self.port:
                break
            self.controller_port = free_port()
        if self.controller_port == self.port:
            raise BrokerError(f"port and controller port are both {self.port}")
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self.log_file = self.data_dir / "logs" / "broker.log"
        self.pid: int | None = None

    def start(self, timeout: float = 120.0) -> None:
        """Fetch jars if needed, then start and wait for the broker's ready line."""
        _run_script(["fetch"], _FETCH_TIMEOUT_S)
        out = _run_script(
            [
                "start",
                "--port",
                str(self.port),
                "--controller-port",
                str(self.controller_port),
                "--data-dir",
                str(self.data_dir),
                "--timeout",
                str(math.ceil(timeout)),
            ],
            # Formatting storage runs before the ready wait; give it room beyond `timeout`.
            timeout + 60.0,
        )
        self.pid = int(out.split()[-1])

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL, for fault tests) the broker by pid and wait until it is gone."""
        args = ["stop", "--data-dir", str(self.data_dir), "--timeout", str(_STOP_TIMEOUT_S)]
        if kill:
            args.append("--kill")
        _run_script(args, _STOP_TIMEOUT_S + 30.0)
        self.pid = None

    def restart(self) -> None:
        """Stop and start again with the same data dir and ports, so the data must survive."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def create_topic(bootstrap: str, name: str, partitions: int = 6) -> None:
    """Create NAME (replication 1) and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)],
        request_timeout=_TOPIC_TIMEOUT_S,
    )
    try:
        futures[name].result(timeout=_TOPIC_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    # The controller commits the topic before every broker's metadata cache has it; wait so
    # callers can produce at once without UNKNOWN_TOPIC_OR_PART noise.
    deadline = time.monotonic() + _TOPIC_TIMEOUT_S
    while time.monotonic() < deadline:
        topic = admin.list_topics(topic=name, timeout=10).topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and topic.partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        time.sleep(0.2)
    raise BrokerError(f"topic {name} has no leader for every partition after {_TOPIC_TIMEOUT_S}s")
