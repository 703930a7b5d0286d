"""One command for the throughput benchmark (issue 7): ceilings, service, Quix peer, emulator.

    python benchmarks/run.py [--events 200000] [--repeat 1] [--quick] [--memory] [--scaling]
                             [--profile] [--only a,b,realtime,batch,quix,emulator,filtered]
                             [--latency-ms 100 ... [--rate-limit 1000]]

Starts a local Kafka broker (temp dir) and the FullStory emulator (no latency), produces a
6-partition topic of deterministic Segment events before any timing, then runs every contender as
its own process over that topic with a fresh consumer group, and prints a table. The JSON result
goes to benchmarks/results/. See benchmarks/README.md for what each figure means.

Window: from the contender's first record to the moment the harness sees its group's committed
offsets at the end of every partition (the ceilings time themselves, first to last record). The
service exposes nothing new for this: its first record is taken as the first request the emulator
receives (polled every 20 ms; its start-up GET /me does not count). CPU is the process's user+sys
(all threads) within that window.

`filtered` runs on a topic of its own (datagen's `filtered_events`: 99% track "Noise Event", which
its settings' `events.exclude` removes, and 1% the usual mix): ceiling B over that topic, then the
realtime service, back to back in each repeat; the table gives the service's CPU per event over
ceiling B's on the same stream (the target is at most FILTERED_TARGET).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from datagen import FILTERED_SETTINGS, SETTINGS, Stream, encoded, events, filtered_events
from emulator_capacity import KEY, hammer
from measure import (
    CommitWatcher,
    cpu_seconds,
    end_offsets,
    exited,
    load_average,
    machine_cpu,
    metric_sum,
    reap,
    rss_mb,
    stop_and_reap,
    thread_cpu,
)

from consumer.localenv import LocalBroker, create_topic
from consumer.localenv.emulator import EmulatorProcess
from consumer.localenv.ports import free_port
from consumer.produce import produce_raw

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PARTITIONS = 6
CORES = os.cpu_count() or 1
ASSIGNED = "fullstory_consumer_assigned_partitions"
ALL = ("a", "b", "realtime", "batch", "quix", "emulator", "filtered")
QUICK = ("a", "b", "realtime")
# `filtered` is two rows: ceiling B over the filtered stream, then the service over it.
FILTERED_PAIR = ("b-filtered", "filtered")
FILTERED_TARGET = 1.5  # the service's CPU per event at most this many times ceiling B's
LABELS = {
    "a": "ceiling A: consume",
    "b": "ceiling B: consume + decode",
    "realtime": "service, realtime",
    "batch": "service, batch",
    "quix": "Quix Streams peer",
    "emulator": "emulator (req per its CPU-s)",
    "b-filtered": "ceiling B, filtered stream",
    "filtered": "service, 99% excluded",
}
ROWS = (*ALL[:-1], *FILTERED_PAIR)


@dataclass
class Run:
    """One contender's run; `seconds`/`cpu` cover the measured window only."""

    name: str
    events: int
    seconds: float
    cpu: float
    peak_rss_mb: float
    load: str
    cpu_total: float = 0.0
    emulator_cpu_share: float | None = None
    machine_busy_cores: float | None = None  # every process on the machine, over the window
    requests: int | None = None
    ok: bool = True
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_100k(self) -> float:
        return self.cpu / self.events * 100_000 if self.events else 0.0


class Env:
    """The broker, the emulator and the pre-loaded topic every contender reads."""

    def __init__(
        self, workdir: Path, emulator_args: tuple[str, ...] = (), service_args: Sequence[str] = ()
    ) -> None:
        self.workdir = workdir
        self.service_args = list(service_args)  # appended to every `fullstory-consumer run`
        self.broker = LocalBroker(workdir / "kafka")
        self.emulator = EmulatorProcess(api_keys=(KEY,), args=emulator_args)
        self.settings = workdir / "settings.json"
        self.settings.write_text(json.dumps(SETTINGS))
        self.filtered_settings = workdir / "settings-filtered.json"
        self.filtered_settings.write_text(json.dumps(FILTERED_SETTINGS))
        self.groups = 0
        self._topics: dict[str, tuple[str, dict[tuple[str, int], int]]] = {}

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    def group(self, name: str) -> str:
        """A fresh consumer group, so every run starts from offset 0."""
        self.groups += 1
        return f"bench-{name}-{self.groups}-{os.getpid()}"

    def load(self, topic: str, count: int, stream: Stream = events) -> dict[tuple[str, int], int]:
        """Create the topic and produce the events (untimed); return its end offsets."""
        create_topic(self.bootstrap, topic, PARTITIONS)
        started = time.monotonic()
        produce_raw(self.bootstrap, topic, encoded(count, stream=stream), flush_timeout=300.0)
        ends = end_offsets(self.bootstrap, topic)
        took = time.monotonic() - started
        print(f"produced {sum(ends.values()):,} events to {topic} in {took:.0f} s", flush=True)
        return ends

    def topic(self, count: int, stream: Stream = events) -> tuple[str, dict[tuple[str, int], int]]:
        """The topic of `count` events of `stream`, loaded on first use: (name, end offsets)."""
        name = "bench-events" if stream is events else "bench-filtered"
        if name not in self._topics:
            self._topics[name] = (name, self.load(name, count, stream))
        return self._topics[name]

    def emulator_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.emulator.url}/emulator/stats", timeout=10).json()
        return stats


@contextlib.contextmanager
def environment(
    emulator_args: tuple[str, ...] = (), service_args: Sequence[str] = ()
) -> Iterator[Env]:
    """Start the broker and the emulator in a temp dir; stop both whatever happens."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        env = Env(Path(tmp), emulator_args, service_args)
        env.broker.start()
        try:
            env.emulator.start()
            try:
                yield env
            finally:
                env.emulator.stop()
        finally:
            env.broker.stop()


def delivery_modes() -> tuple[str, ...]:
    """The delivery modes `fullstory-consumer run` offers (batch only once it is wired)."""
    help_text = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return ("realtime", "batch") if "--delivery" in help_text else ("realtime",)


def service_command(
    env: Env,
    topic: str,
    group: str,
    mode: str,
    profile: Path | None = None,
    settings: Path | None = None,
) -> list[str]:
    """`fullstory-consumer run` against the emulator (optionally under cProfile), with the
    benchmark's settings file unless given another."""
    head = [sys.executable, "-m"]
    if profile is not None:
        head += ["cProfile", "-o", str(profile), "-m"]
    cmd = [
        *head,
        "consumer.cli",
        "run",
        "--bootstrap-servers",
        env.bootstrap,
        "--topic",
        topic,
        "--group-id",
        group,
        "--api-host",
        env.emulator.url,
        "--api-key",
        KEY,
        "--settings",
        str(settings or env.settings),
        "--log-format",
        "json",
    ]
    if mode != "realtime":
        cmd += ["--delivery", mode]
    return cmd + env.service_args


def spawn(cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:] if log.exists() else ""


@dataclass
class Window:
    """What the harness saw while watching consumers work through the topic."""

    t_first_request: float
    cpu_first_request: float
    emu_cpu_first: float
    t_done: float
    cpu_done: float
    emu_cpu_done: float
    committed: int
    done: bool
    threads: dict[str, float] = field(default_factory=dict)
    busy_cores: float | None = None
    progress: list[tuple[float, int]] = field(default_factory=list)  # (s since first, committed)
    stable: tuple[float, int] | None = None  # when every member had partitions; committed then
    # (s since first, emulator requests so far, each metric of `sample`), once a second
    samples: list[tuple[float, ...]] = field(default_factory=list)


def _thread_split(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per thread name within the window (the first process only)."""
    return {k: round(v - before.get(k, 0.0), 2) for k, v in sorted(after.items())}


def watch(
    env: Env,
    procs: list[subprocess.Popen[bytes]],
    watcher: CommitWatcher,
    total: int,
    timeout: float,
    metrics_ports: Sequence[int] = (),
    sample: Sequence[str] = (),
) -> Window:
    """Poll until the group has committed `total` records (or timeout / a consumer exits).
    With the members' `metrics_ports`, also note when the group is stable: every member owns
    partitions and together all of them (the joins and their rebalances are over), and read
    the metrics `sample` of the first member (and the emulator's request count) each second."""
    deadline = time.monotonic() + timeout
    first: tuple[float, float, float] | None = None
    threads_first: dict[str, float] = {}
    machine_first = machine_cpu()
    committed = 0
    progress: list[tuple[float, int]] = []
    stable: tuple[float, int] | None = None
    samples: list[tuple[float, ...]] = []
    while time.monotonic() < deadline:
        if any(exited(p) for p in procs):
            break
        if first is None:
            stats = env.emulator_stats()
            if stats["total"] > stats["by_path"].get("/me", 0):  # start-up's GET /me: no record
                cpu = sum(cpu_seconds(p.pid) for p in procs)
                first = (time.time(), cpu, float(stats["process_cpu_seconds"]))
                threads_first = thread_cpu(procs[0].pid)
                machine_first = machine_cpu()
            time.sleep(0.02)
            continue
        committed = watcher.committed()
        if metrics_ports and stable is None:
            owned = [metric_sum(port, ASSIGNED) or 0.0 for port in metrics_ports]
            if min(owned) > 0 and sum(owned) == PARTITIONS:
                stable = (time.time(), committed)
        since = time.time() - first[0]
        if not progress or since - progress[-1][0] >= 1.0:
            progress.append((round(since, 2), committed))
            if sample and metrics_ports:
                values = [metric_sum(metrics_ports[0], name) or 0.0 for name in sample]
                requests = float(env.emulator_stats()["total"])
                samples.append((round(since, 2), requests, *values))
        if committed >= total:
            now, cpu = time.time(), sum(cpu_seconds(p.pid) for p in procs)
            emu = float(env.emulator_stats()["process_cpu_seconds"])
            threads = _thread_split(threads_first, thread_cpu(procs[0].pid))
            busy, elapsed = (b - a for a, b in zip(machine_first, machine_cpu(), strict=True))
            cores = busy / elapsed * CORES if elapsed > 0 else None
            return Window(
                first[0],
                first[1],
                first[2],
                now,
                cpu,
                emu,
                committed,
                True,
                threads,
                cores,
                progress,
                stable,
                samples,
            )
        time.sleep(0.1)
    now, cpu = time.time(), sum(cpu_seconds(p.pid) for p in procs)
    start = first or (now, cpu, 0.0)
    return Window(start[0], start[1], start[2], now, cpu, start[2], committed, False)


def run_ceiling(
    env: Env, topic: str, total: int, decode: bool, timeout: float, name: str | None = None
) -> Run:
    name = name or ("b" if decode else "a")
    cmd = [
        sys.executable,
        str(HERE / "ceiling.py"),
        "--bootstrap-servers",
        env.bootstrap,
        "--topic",
        topic,
        "--group-id",
        env.group(name),
        "--events",
        str(total),
        "--timeout",
        str(timeout),
    ]
    if decode:
        cmd.append("--decode")
    load = load_average()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    exit_ = reap(proc)
    data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    records = int(data.get("records", 0))
    return Run(
        name=name,
        events=records,
        seconds=float(data.get("t_last", 0.0)) - float(data.get("t_first", 0.0)),
        cpu=float(data.get("cpu_last", 0.0)) - float(data.get("cpu_first", 0.0)),
        peak_rss_mb=exit_.peak_rss_mb,
        load=load,
        cpu_total=exit_.cpu,
        ok=exit_.returncode == 0 and records == total,
    )


def run_consumers(
    env: Env,
    name: str,
    cmds: list[list[str]],
    ends: dict[tuple[str, int], int],
    timeout: float,
    self_reported_start: bool = False,
    faults: dict[str, Any] | None = None,
    metrics_ports: Sequence[int] = (),
    sample: Sequence[str] = (),
) -> Run:
    """Run one or more consumer processes of one group until all is committed, then SIGTERM.

    With `self_reported_start` the window starts at the first-record line the process prints
    (the Quix peer: its sink sends only at the first checkpoint, so the emulator's first request
    would start its window late and flatter it); otherwise at the emulator's first request.
    """
    total = sum(ends.values())
    httpx.post(f"{env.emulator.url}/emulator/reset", timeout=30).raise_for_status()
    if faults:
        httpx.post(
            f"{env.emulator.url}/emulator/faults", json=faults, timeout=30
        ).raise_for_status()
    group = cmds[0][cmds[0].index("--group-id") + 1]
    watcher = CommitWatcher(env.bootstrap, group, ends)
    load = load_average()
    logs = [env.workdir / f"{group}-{i}.log" for i in range(len(cmds))]
    procs = [spawn(cmd, log) for cmd, log in zip(cmds, logs, strict=True)]
    try:
        window = watch(env, procs, watcher, total, timeout, metrics_ports, sample)
    finally:
        exits = [stop_and_reap(p) for p in procs]
        watcher.close()
    stats = env.emulator_stats()
    t_first, cpu_first = window.t_first_request, window.cpu_first_request
    extra: dict[str, Any] = {
        "by_status": stats.get("by_status"),
        "replays": stats.get("replays"),
        "thread_cpu_s": window.threads,
        "committed_each_s": window.progress,
    }
    if window.samples:
        extra["samples"] = window.samples
    if window.stable is not None and window.done:
        at, committed = window.stable
        extra["stable_group"] = {
            "after_s": round(at - window.t_first_request, 2),
            "committed": committed,
            "events_per_s": (total - committed) / (window.t_done - at),
        }
    first = _first_record(logs[0]) if self_reported_start else None
    if first is not None:
        extra["first_request_after_first_record_s"] = round(t_first - first[0], 3)
        t_first, cpu_first = first
    span = window.t_done - t_first
    emu_span = window.t_done - window.t_first_request
    note = "" if window.done else f"not done: committed {window.committed:,} of {total:,}"
    if not window.done:
        note += "; log tail: " + _tail(logs[0]).replace("\n", " | ")[-600:]
    return Run(
        name=name,
        events=total if window.done else window.committed,
        seconds=span,
        cpu=window.cpu_done - cpu_first,
        peak_rss_mb=max(e.peak_rss_mb for e in exits),
        load=load,
        cpu_total=sum(e.cpu for e in exits),
        emulator_cpu_share=(
            (window.emu_cpu_done - window.emu_cpu_first) / emu_span if emu_span > 0 else None
        ),
        machine_busy_cores=window.busy_cores,
        requests=stored_items(stats),
        ok=window.done and all(e.returncode == 0 for e in exits),
        note=note or ("" if all(e.returncode == 0 for e in exits) else "non-zero exit"),
        extra=extra,
    )


def run_service(
    env: Env,
    topic: str,
    ends: dict[tuple[str, int], int],
    mode: str,
    timeout: float,
    name: str | None = None,
    settings: Path | None = None,
) -> Run:
    name = name or mode
    cmd = service_command(env, topic, env.group(name), mode, settings=settings)
    return run_consumers(env, name, [cmd], ends, timeout)


def run_quix(env: Env, topic: str, ends: dict[tuple[str, int], int], timeout: float) -> Run:
    cmd = [
        sys.executable,
        str(HERE / "peer_quix.py"),
        "--bootstrap-servers",
        env.bootstrap,
        "--topic",
        topic,
        "--group-id",
        env.group("quix"),
        "--api-host",
        env.emulator.url,
        "--api-key",
        KEY,
        "--settings",
        str(env.settings),
    ]
    return run_consumers(env, "quix", [cmd], ends, timeout, self_reported_start=True)


def stored_items(stats: dict[str, Any]) -> int:
    """Users and events the emulator stored (single requests or batch items; not GET /me)."""
    delivered = stats.get("delivered", {})
    return int(delivered.get("/v2/users", 0)) + int(delivered.get("/v2/events", 0))


def _first_record(log: Path) -> tuple[float, float] | None:
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith('{"t_first"'):
            data = json.loads(line)
            return float(data["t_first"]), float(data["cpu_first"])
    return None


def run_emulator_capacity(env: Env, seconds: float) -> Run:
    """The emulator hammered by the harness (64 connections): its requests per CPU-second of its
    own, i.e. what it can answer with a whole core, whatever else the machine is doing."""
    httpx.post(f"{env.emulator.url}/emulator/reset", timeout=30).raise_for_status()
    load = load_average()
    ok, failed, wall, emu_cpu = asyncio.run(hammer(env.emulator.url, seconds, 64))
    return Run(
        name="emulator",
        events=ok,
        seconds=emu_cpu,
        cpu=emu_cpu,
        peak_rss_mb=0.0,
        load=load,
        emulator_cpu_share=emu_cpu / wall if wall else None,
        requests=ok,
        ok=failed == 0 and ok > 0,
        note=f"{ok / wall:,.0f} req/s wall-clock, bound by the harness's own httpx client",
    )


def median_run(runs: list[Run]) -> Run:
    """The run with the median events/s (all runs stay in the JSON file)."""
    ordered = sorted(runs, key=lambda r: r.rate)
    return ordered[(len(ordered) - 1) // 2]


def filtered_ratio(filtered: Run | None, ceiling: Run | None) -> float | None:
    """The filtered service's CPU per event over ceiling B's on the same stream."""
    if filtered is None or ceiling is None or not ceiling.cpu_per_100k:
        return None
    return filtered.cpu_per_100k / ceiling.cpu_per_100k


def table(best: dict[str, Run], events: int, ratio: float | None = None) -> str:
    """The side-by-side table: ratios against ceiling B on the same stream (events/s and CPU
    per event) and Quix (CPU per event); then the filtered stream's `ratio` against its target."""
    quix = best.get("quix")
    head = (
        f"{'contender':<30} {'events/s':>9} {'CPU s/100k':>10} {'peak RSS MB':>11} "
        f"{'x ceil B':>8} {'CPU x B':>7} {'CPU x Quix':>10} {'emu CPU':>7} {'machine':>7} "
        f"{'load1':>5}  ok"
    )
    lines = [f"{events:,} events, {PARTITIONS} partitions", head, "-" * len(head)]
    for name in ROWS:
        run = best.get(name)
        if run is None:
            continue
        ceiling_b = best.get("b-filtered" if name in FILTERED_PAIR else "b")
        vs_b = f"{run.rate / ceiling_b.rate:.2f}" if ceiling_b and ceiling_b.rate else "-"
        cpu_b = (
            f"{run.cpu_per_100k / ceiling_b.cpu_per_100k:.2f}"
            if ceiling_b and ceiling_b.cpu_per_100k and name != "emulator"
            else "-"
        )
        vs_q = (
            f"{run.cpu_per_100k / quix.cpu_per_100k:.2f}"
            if quix and quix.cpu_per_100k and name in ("realtime", "batch", "quix")
            else "-"
        )
        emu = f"{run.emulator_cpu_share:.0%}" if run.emulator_cpu_share is not None else "-"
        busy = run.machine_busy_cores
        cores = f"{busy:.2f}/{CORES}" if busy is not None else "-"
        rss = f"{run.peak_rss_mb:.0f}" if run.peak_rss_mb else "-"
        if name == "emulator":
            vs_b = "-"
        lines.append(
            f"{LABELS[name]:<30} {run.rate:>9,.0f} {run.cpu_per_100k:>10.2f} {rss:>11} "
            f"{vs_b:>8} {cpu_b:>7} {vs_q:>10} {emu:>7} {cores:>7} {run.load.split()[0]:>5}  "
            f"{'yes' if run.ok else 'NO ' + run.note[:80]}"
        )
    if ratio is not None:
        lines.append(
            f"filtered stream (99% excluded by `events`): CPU per event {ratio:.2f}x ceiling B's "
            f"on the same stream, median of the repeats' pairs (target <= {FILTERED_TARGET}: "
            f"{'met' if ratio <= FILTERED_TARGET else 'NOT met'})"
        )
    return "\n".join(lines)


def main_suite(args: argparse.Namespace, env: Env) -> Any:
    """Every contender `--repeat` times over the same topic (`filtered`: ceiling B and the
    service over the filtered stream's topic); the table and the raw runs."""
    total = args.events
    timeout = max(180.0, total / 400)
    modes = delivery_modes()
    wanted = [c for c in (QUICK if args.quick else ALL) if c in args.only]
    wanted = [row for c in wanted for row in (FILTERED_PAIR if c == "filtered" else (c,))]
    skipped: dict[str, str] = {}
    if "batch" in wanted and "batch" not in modes:
        skipped["batch"] = "`fullstory-consumer run` has no --delivery flag yet"
    if "quix" in wanted:
        try:
            import quixstreams  # noqa: F401
        except ImportError:
            skipped["quix"] = "quixstreams is not installed (pip install quixstreams)"
    runs: dict[str, list[Run]] = {}
    for _ in range(args.repeat):
        for name in wanted:
            if name in skipped:
                continue
            print(f"running {LABELS[name]} (load {load_average()})", flush=True)
            topic, ends = env.topic(total, filtered_events if name in FILTERED_PAIR else events)
            if name in ("a", "b", "b-filtered"):
                run = run_ceiling(env, topic, total, name != "a", timeout, name)
            elif name == "filtered":
                run = run_service(
                    env, topic, ends, "realtime", timeout, name, env.filtered_settings
                )
            elif name in ("realtime", "batch"):
                run = run_service(env, topic, ends, name, timeout)
            elif name == "quix":
                run = run_quix(env, topic, ends, timeout)
            else:
                run = run_emulator_capacity(env, 2.0 if args.quick else 5.0)
            runs.setdefault(name, []).append(run)
            status = "ok" if run.ok else f"FAILED {run.note}"
            print(f"  {run.rate:,.0f}/s, {run.cpu_per_100k:.2f} CPU s/100k ({status})", flush=True)
            if run.extra.get("thread_cpu_s"):
                print(f"  CPU s by thread: {run.extra['thread_cpu_s']}", flush=True)
    best = {name: median_run(rs) for name, rs in runs.items()}
    # Each repeat's pair ran back to back: the ratio is the median of the pairs' ratios.
    pairs = zip(runs.get("filtered", []), runs.get("b-filtered", []), strict=True)
    ratios = sorted(r for f, b in pairs if (r := filtered_ratio(f, b)) is not None)
    ratio = statistics.median(ratios) if ratios else None
    print()
    print(table(best, total, ratio))
    for name, why in skipped.items():
        print(f"skipped {LABELS[name]}: {why}")
    report: dict[str, Any] = {
        "table": table(best, total, ratio),
        "skipped": skipped,
        "runs": {name: [_as_json(r) for r in rs] for name, rs in runs.items()},
    }
    if ratio is not None:
        report["filtered_vs_ceiling_b"] = {
            "ratio": ratio,
            "ratio_each_repeat": [
                filtered_ratio(f, b)
                for f, b in zip(runs["filtered"], runs["b-filtered"], strict=True)
            ],
            "cpu_s_per_100k_each_repeat": [r.cpu_per_100k for r in runs["filtered"]],
            "ceiling_b_cpu_s_per_100k_each_repeat": [r.cpu_per_100k for r in runs["b-filtered"]],
            "target": FILTERED_TARGET,
            "met": ratio <= FILTERED_TARGET,
        }
    return report


def _as_json(run: Run) -> dict[str, Any]:
    return {**asdict(run), "events_per_s": run.rate, "cpu_s_per_100k": run.cpu_per_100k}


def memory_suite(args: argparse.Namespace, env: Env) -> Any:
    """Peak RSS of one consumer with a backlog of 1,000,000 vs 100,000 events, the emulator
    accepting a fraction of the consume rate (realtime: a requests/s cap; batch: slow import
    jobs); each run stops after `--memory-seconds`. `--only` picks the modes."""
    sizes = (100_000, 1_000_000) if not args.quick else (2_000, 20_000)
    results: list[dict[str, Any]] = []
    modes = [mode for mode in delivery_modes() if mode in args.only]
    topics = {size: (f"bench-mem-{size}", env.load(f"bench-mem-{size}", size)) for size in sizes}
    for mode in modes:
        for size in sizes:
            topic, ends = topics[size]
            httpx.post(f"{env.emulator.url}/emulator/reset", timeout=30).raise_for_status()
            if mode == "batch":
                # A requests/s cap does not slow a few large requests: FullStory is slow here
                # by taking `--memory-batch-ms` to process each import job instead.
                httpx.post(
                    f"{env.emulator.url}/emulator/faults",
                    json={"batch_processing_ms": args.memory_batch_ms},
                    timeout=30,
                ).raise_for_status()
            group = env.group(f"mem-{mode}")
            log = env.workdir / f"{group}.log"
            load = load_average()
            print(f"memory: {mode}, backlog {size:,} (load {load})", flush=True)
            proc = spawn(service_command(env, topic, group, mode), log)
            watcher = CommitWatcher(env.bootstrap, group, ends)
            rss_series: list[float] = []
            deadline = time.monotonic() + 120
            while env.emulator_stats()["total"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            stop_at = time.monotonic() + args.memory_seconds
            while time.monotonic() < stop_at and not exited(proc):
                rss_series.append(rss_mb(proc.pid))
                time.sleep(0.5)
            committed = watcher.committed()
            watcher.close()
            hwm_running = rss_mb(proc.pid, "VmHWM")
            exit_ = stop_and_reap(proc)
            stats = env.emulator_stats()
            results.append(
                {
                    "mode": mode,
                    "backlog": size,
                    "seconds": args.memory_seconds,
                    "peak_rss_mb": exit_.peak_rss_mb,
                    "peak_rss_before_stop_mb": hwm_running,
                    "rss_last_mb": rss_series[-1] if rss_series else 0.0,
                    "rss_series_mb": [round(v, 1) for v in rss_series],
                    "committed": committed,
                    "delivered_requests": stored_items(stats),
                    "by_status": stats["by_status"],
                    "load": load,
                    "exit": exit_.returncode,
                }
            )
            r = results[-1]
            print(
                f"  peak RSS {r['peak_rss_mb']:.0f} MB, committed {committed:,}, "
                f"statuses {r['by_status']}",
                flush=True,
            )
    return results


def scaling_suite(args: argparse.Namespace, env: Env, topic: str, ends: dict[Any, int]) -> Any:
    """Events/s of one consumer process vs two in one group, on the 6-partition topic: once
    with an instant emulator (CPU-bound: both processes share this machine's cores with the
    broker and the emulator), and once per `--scaling-latency-ms` with that FullStory response
    time (bound by each process's requests in flight and the latency, as against the real API)."""
    total = sum(ends.values())
    timeout = max(180.0, total / 400)
    out = []
    modes = [mode for mode in delivery_modes() if mode in args.only]
    for latency in (0.0, *args.scaling_latency_ms):
        for mode in modes if latency == 0.0 else ["realtime"]:
            row: dict[str, Any] = {"mode": mode, "latency_ms": latency}
            faults = {"latency_ms": latency} if latency else None
            for procs in (1, 2):
                group = env.group(f"scale{procs}-{mode}")
                ports = [free_port() for _ in range(procs)]
                cmds = [
                    [*service_command(env, topic, group, mode), "--metrics-port", str(port)]
                    for port in ports
                ]
                print(
                    f"scaling: {mode}, latency {latency:g} ms, {procs} process(es) "
                    f"(load {load_average()})",
                    flush=True,
                )
                run = run_consumers(
                    env, f"{mode}x{procs}", cmds, ends, timeout, faults=faults, metrics_ports=ports
                )
                row[f"x{procs}"] = _as_json(run)
                busy = run.machine_busy_cores
                shown = f", machine {busy:.2f} of {CORES} cores busy" if busy is not None else ""
                stable = run.extra.get("stable_group")
                if stable:
                    shown += (
                        f"; {stable['events_per_s']:,.0f}/s once the group was stable "
                        f"({stable['after_s']:.1f} s in, {stable['committed']:,} committed)"
                    )
                print(f"  {run.rate:,.0f}/s{shown} ({'ok' if run.ok else run.note})", flush=True)
            one, two = row["x1"]["events_per_s"], row["x2"]["events_per_s"]
            row["ratio"] = two / one if one else None
            steady = [
                row[k]["extra"].get("stable_group", {}).get("events_per_s") for k in ("x1", "x2")
            ]
            row["ratio_stable"] = steady[1] / steady[0] if all(steady) else None
            out.append(row)
    return out


LIMIT_GAUGE = "fullstory_consumer_fullstory_concurrency_limit"
FIXED_CONCURRENCY = 512  # `concurrency`'s default: --latency-fixed-ms runs hold it in flight
# The limit and the requests' latency (its sum and count give the mean RTT between two samples).
LATENCY_SAMPLES = (
    LIMIT_GAUGE,
    "fullstory_consumer_fullstory_request_duration_seconds_sum",
    "fullstory_consumer_fullstory_request_duration_seconds_count",
    "fullstory_consumer_fullstory_retries_total",
    "fullstory_consumer_fullstory_request_pace",
)


def _settled(samples: list[Any]) -> tuple[float | None, float | None, float | None]:
    """Over the second half of the samples: the median limit, the emulator's requests/s and the
    mean RTT in ms (limit over RTT against requests/s says whether the limit or the demand
    bound the rate)."""
    if len(samples) < 4:
        return None, None, None
    half = samples[len(samples) // 2 :]
    (t0, req0, _, sum0, n0, *_), (t1, req1, _, sum1, n1, *_) = half[0], half[-1]
    rate = (req1 - req0) / (t1 - t0) if t1 > t0 else None
    rtt = (sum1 - sum0) / (n1 - n0) * 1e3 if n1 > n0 else None
    return statistics.median(row[2] for row in half), rate, rtt


def latency_suite(args: argparse.Namespace, env: Env) -> Any:
    """Realtime with default settings against an emulator answering after each of
    `--latency-ms`, and once more at `--rate-limit` requests/s (100 ms): events/s, CPU per event,
    the adaptive concurrency limit (the gauge each second; `settled` is the median of the second
    half of the run, with the requests/s and mean RTT then) and the 429s (a storm would be many
    per request stored)."""
    count = args.latency_events
    topic = f"bench-latency-{count}"
    ends = env.load(topic, count)
    cases: list[tuple[dict[str, Any], bool]] = [
        *(({"latency_ms": ms}, False) for ms in args.latency_ms),
        *(({"latency_ms": ms}, True) for ms in args.latency_fixed_ms),
    ]
    if args.rate_limit:
        cases.append(({"latency_ms": 100.0, "rate_limit": args.rate_limit, "burst": 50}, False))
    out = []
    for faults, fixed in cases:
        port = free_port()
        group = env.group(f"latency-{faults['latency_ms']:g}{'-fixed' if fixed else ''}")
        cmd = [*service_command(env, topic, group, "realtime"), "--metrics-port", str(port)]
        if fixed:  # the floor at the ceiling: a fixed number in flight, to compare with
            cmd += ["--min-concurrency", str(FIXED_CONCURRENCY)]
        print(f"latency: {faults}{' fixed' if fixed else ''} (load {load_average()})", flush=True)
        timeout = max(180.0, count / 50)
        run = run_consumers(
            env,
            "realtime",
            [cmd],
            ends,
            timeout,
            faults=faults,
            metrics_ports=[port],
            sample=LATENCY_SAMPLES,
        )
        samples = run.extra.get("samples", [])
        limits = [row[2] for row in samples]
        settled, requests_per_s, rtt_ms = _settled(samples)
        statuses = run.extra.get("by_status") or {}
        row = {
            **faults,
            "fixed_concurrency": FIXED_CONCURRENCY if fixed else None,
            "events_per_s": run.rate,
            "cpu_us_per_event": run.cpu / run.events * 1e6 if run.events else None,
            "limit_settled": settled,
            "limit_max": max(limits) if limits else None,
            "settled_requests_per_s": requests_per_s,
            "settled_rtt_ms": rtt_ms,
            "status_429": int(statuses.get("429", 0)),
            "emulator_cpu_share": run.emulator_cpu_share,
            "machine_busy_cores": run.machine_busy_cores,
            "run": _as_json(run),
        }
        out.append(row)
        cpu = row["cpu_us_per_event"] or 0.0
        busy = run.machine_busy_cores or 0.0
        emu = run.emulator_cpu_share or 0.0
        print(
            f"  {run.rate:,.0f} events/s, {cpu:.0f} µs CPU per event, limit settled at "
            f"{settled} ({requests_per_s or 0:,.0f} requests/s at {rtt_ms or 0:.0f} ms then), max "
            f"{row['limit_max']}, {row['status_429']} 429s, emulator "
            f"{emu:.0%} of a core, machine {busy:.2f} of {CORES} cores busy "
            f"({'ok' if run.ok else run.note})",
            flush=True,
        )
    return out


def profile_suite(args: argparse.Namespace, env: Env, results: Path) -> Any:
    """Each delivery mode in `--only` once under cProfile (main thread), and the filtered
    stream's service when `--only` names `filtered`; top functions by own time."""
    import pstats

    out = {}
    targets = [(mode, mode, events, None) for mode in delivery_modes() if mode in args.only]
    if "filtered" in args.only:
        targets.append(("filtered", "realtime", filtered_events, env.filtered_settings))
    for name, mode, stream, settings in targets:
        topic, ends = env.topic(args.events, stream)
        prof = results / f"profile-{name}.prof"
        group = env.group(f"prof-{name}")
        cmd = service_command(env, topic, group, mode, profile=prof, settings=settings)
        run = run_consumers(env, f"profile-{name}", [cmd], ends, max(180.0, sum(ends.values())))
        print(f"\nprofile {name}: {run.rate:,.0f}/s under cProfile -> {prof}")
        if prof.exists():
            stats = pstats.Stats(str(prof))
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(30)
        out[name] = {"prof": str(prof), "run": _as_json(run)}
    return out


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown",
    )
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gb": round(int(mem) / 2**20, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="ceilings + realtime service only")
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated contenders")
    parser.add_argument("--memory", action="store_true", help="also the backlog memory test")
    parser.add_argument("--memory-seconds", type=float, default=30.0)
    parser.add_argument("--memory-rate", type=float, default=1000.0, help="emulator req/s cap")
    parser.add_argument(
        "--memory-batch-ms", type=float, default=5000.0, help="emulator import job time (batch)"
    )
    parser.add_argument("--scaling", action="store_true", help="also one vs two processes")
    parser.add_argument(
        "--scaling-latency-ms",
        type=float,
        action="append",
        default=[],
        help="also scale realtime against an emulator answering after this many ms",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        action="append",
        default=[],
        help="also realtime with default settings against an emulator answering after this many "
        "ms (repeatable; the adaptive concurrency benchmark: 20, 100, 300)",
    )
    parser.add_argument(
        "--latency-fixed-ms",
        type=float,
        action="append",
        default=[],
        help="also realtime at this latency with a fixed 512 in flight (the adaptive limit's "
        "ceiling), side by side with the defaults",
    )
    parser.add_argument("--latency-events", type=int, default=60_000)
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="with --latency-ms, also a run against an emulator allowing this many requests/s",
    )
    parser.add_argument("--profile", action="store_true", help="also the service under cProfile")
    parser.add_argument("--no-suite", action="store_true", help="skip the main table")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--service-arg",
        action="append",
        default=[],
        help="extra argument for every service run, e.g. --service-arg=-Xfetch.max.bytes=1048576",
    )
    args = parser.parse_args(argv)
    args.only = tuple(args.only.split(","))
    args.results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "load_at_start": load_average(),
        "events": args.events,
    }
    ok = True
    with environment(service_args=args.service_arg) as env:
        if not args.no_suite:
            report["suite"] = main_suite(args, env)
            ok = all(r["ok"] for rs in report["suite"]["runs"].values() for r in rs)
        if args.scaling:
            report["scaling"] = scaling_suite(args, env, *env.topic(args.events))
            for row in report["scaling"]:
                stable = row["ratio_stable"]
                print(
                    f"scaling {row['mode']}, latency {row['latency_ms']:g} ms: "
                    f"two processes = {row['ratio']:.2f}x one over the whole window"
                    + (f", {stable:.2f}x once the group was stable" if stable else "")
                )
        if args.latency_ms or args.latency_fixed_ms:
            report["latency"] = latency_suite(args, env)
        if args.profile:
            report["profile"] = profile_suite(args, env, args.results)
    if args.memory:
        rate = ("--rate-limit", str(args.memory_rate), "--burst", "100")
        with environment(rate, args.service_arg) as env:
            report["memory"] = memory_suite(args, env)
    report["load_at_end"] = load_average()
    path = args.results / f"run-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nresults: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
