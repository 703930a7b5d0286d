"""Measuring a contender from outside: its CPU and RSS from /proc, its final rusage from wait4, and
when its consumer group has committed the end of every partition.

The harness never imports a contender's code: each runs as its own process, so CPU seconds and
peak RSS belong to that contender alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka import Consumer, TopicPartition

_TICK = float(os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of `pid` so far (0.0 once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds so far per thread name (threads of one name summed, e.g. librdkafka's
    `rdk:broker*`; the main thread as "main", other Python threads as "python"): shows which
    thread a contender's CPU goes to."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        head, tail = text.rsplit(")", 1)
        name = "main" if task.name == str(pid) else head.split("(", 1)[1].rstrip("0123456789-")
        fields = tail.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, elapsed) CPU seconds of the whole machine so far, summed over its cores, from
    /proc/stat: over a window, busy / elapsed x cores is how many cores everything (contender,
    broker, emulator, harness) kept busy, i.e. how much room the machine had left."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / _TICK, sum(fields) / _TICK


def metric_sum(port: int, name: str) -> float | None:
    """The sum of a metric's series on a service's /metrics (None when it does not answer)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " ")
    ]
    return sum(values) if values else None


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    """Resident set (VmRSS) or its high-water mark (VmHWM) in MB; 0.0 once gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def load_average() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so every figure carries them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Exit:
    """What wait4 says about a finished child."""

    returncode: int
    cpu: float  # user + sys seconds over the whole life of the process
    peak_rss_mb: float


def exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has exited, without reaping it (wait4 must still see its rusage)."""
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None


def stop_and_reap(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> Exit:
    """SIGTERM the child (if still running), wait for it and return its rusage."""
    if not exited(proc):
        proc.send_signal(signal.SIGTERM)
    return reap(proc, timeout)


def reap(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> Exit:
    """Wait for the child with wait4 (SIGKILL after `timeout`) and return its rusage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Exit(proc.returncode, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


class CommitWatcher:
    """Reads a group's committed offsets (an OffsetFetch; it never joins the group)."""

    def __init__(self, bootstrap: str, group: str, ends: dict[tuple[str, int], int]) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._ends = ends
        self._tps = [TopicPartition(t, p) for t, p in ends]

    def committed(self) -> int:
        """How many records the group has committed over all partitions (capped at the ends)."""
        total = 0
        for tp in self._consumer.committed(self._tps, timeout=10.0):
            end = self._ends[(tp.topic, tp.partition)]
            total += min(max(tp.offset, 0), end)
        return total

    def close(self) -> None:
        self._consumer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of `topic`."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        meta = consumer.list_topics(topic, timeout=30.0).topics[topic]
        ends = {}
        for partition in sorted(meta.partitions):
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=30.0
            )
            ends[(topic, partition)] = high
        return ends
    finally:
        consumer.close()
