"""`fullstory-consumer backfill`: send the destinations' records of a past window through the
same pipeline as `run` (privacy, mapping, `events`, the budget), by batch import, then stop.

The window's offsets are Kafka's offsets for its two times (the budget estimate's `Window` and
`window_ranges`); the pipeline runs as the only member of a group of its own, which starts a
partition without commits at `--since` (`start_from`) and commits as it goes, so a rerun with
the same arguments continues where the last one stopped and batch delivery's persisted plans
make FullStory store each event once. `Bounded` keeps the pipeline inside the window: each
partition is paused at its end offset and nothing at or past it, or stamped outside the window,
is handed on.

The budget is the destination group's (its budget topic), so a backfill spends what `run` spends.
Its claims are scoped to its own group (see `BudgetGate`), so its verdicts on old offsets never
mix with the group's on the same partitions, while the cycle's count is shared. A backfill never
skips for the budget: when it runs out, it stops there (`when_exhausted` is taken as `pause`),
and a rerun in the next cycle sends the rest.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import orjson
from confluent_kafka import KafkaException, Message, TopicPartition
from prometheus_client import Counter as PromCounter

from consumer.app import Pipeline, SinkFactory, budget_topic, connection_settings
from consumer.budget_log import BudgetLog
from consumer.config import Config
from consumer.errors import UserError
from consumer.estimate import DURATION, Range, Window, iso, open_reader, window_ranges
from consumer.progress import progress_bar
from consumer.record import Partition
from consumer.sink.batch import Persist
from consumer.sink.client import Rejected
from consumer.sink.contract import Done, Fatal, Job, Sink
from consumer.source import Commits, Listeners, Partitions, Source
from consumer.transform import Request
from consumer.transform.mapping import EVENTS_PATH, USERS_PATH

WATCH_INTERVAL = 0.2  # seconds between looks at what is done
PROGRESS_INTERVAL = 5.0  # seconds between JSON progress lines when not on a terminal


class BackfillError(UserError):
    """The backfill stopped before the end of its window; the message says why and how to go
    on (a rerun with the same arguments continues)."""

    exit_code = 1


def backfill_group(group: str, since: str, window: Window) -> str:
    """The default group of a backfill: the destination group's name and `--since` (an instant
    compacted, a duration as given), so that the same arguments continue the same backfill."""
    text = since.strip()
    token = text if DURATION.fullmatch(text) else window.start.strftime("%Y%m%dT%H%M%SZ")
    return f"{group}.backfill.{token}"


def backfill_config(config: Config, group: str) -> Config:
    """`run`'s configuration as the backfill runs it: its own group (never a static member of
    the destination group's), the destination group's budget topic, and a budget that stops
    the backfill instead of skipping."""
    destinations = tuple(
        d
        if d.settings.budget is None
        else replace(
            d,
            settings=replace(d.settings, budget=replace(d.settings.budget, when_exhausted="pause")),
        )
        for d in config.destinations
    )
    librdkafka = {k: v for k, v in config.kafka.librdkafka.items() if k != "group.instance.id"}
    return replace(
        config,
        destinations=destinations,
        kafka=replace(config.kafka, group_id=group, librdkafka=librdkafka),
        budget=replace(config.budget, topic=budget_topic(config)),
    )


# -- the plan ----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What the window holds and what an earlier run of the same backfill already did."""

    window: Window
    group: str
    ranges: dict[Partition, Range]
    committed: dict[Partition, int] = field(default_factory=dict)  # the group's commits

    def first(self, tp: Partition) -> int:
        """Where the partition's unfinished part starts."""
        return max(self.ranges[tp].start, self.committed.get(tp, -1))

    def complete(self, tp: Partition) -> bool:
        """An earlier run finished the partition."""
        return self.committed.get(tp, -1) >= self.ranges[tp].end

    def totals(self) -> dict[str, int]:
        """Records in the window, per destination."""
        totals: Counter[str] = Counter()
        for r in self.ranges.values():
            totals[r.destination] += r.end - r.start
        return dict(totals)


def _human(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} hours" if days else f"{hours} hours"


def _oldest(reader: Any, tp: Partition, offset: int) -> datetime | None:
    """The Kafka time of the record at `offset`, if it can be read within a few seconds."""
    reader.assign([TopicPartition(tp[0], tp[1], offset)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for msg in reader.consume(1, 1.0):
            if msg.error() is None:
                return datetime.fromtimestamp(msg.timestamp()[1] / 1000, UTC)
    return None


def _check_retention(reader: Any, plan: Plan, now: datetime) -> None:
    """Refuse a window whose start the topic no longer holds: a partition's first record in it
    is the first the log keeps, and older ones were deleted (they may have been in it)."""
    for tp, r in plan.ranges.items():
        low, _high = reader.get_watermark_offsets(TopicPartition(*tp), timeout=15)
        if low == 0 or r.start != low:
            continue
        oldest = _oldest(reader, tp, low)
        held = (
            f"; it holds {_human(now - oldest)} of history, from {iso(oldest)}: "
            f"use --since {iso(oldest)} or later"
            if oldest is not None
            else ""
        )
        raise UserError(
            f"topic {tp[0]!r} no longer holds all of the window from --since "
            f"{iso(plan.window.start)}: partition {tp[1]}'s records before offset {low} were "
            f"deleted (retention){held}"
        )


def plan_backfill(config: Config, window: Window, group: str, now: datetime) -> Plan:
    """The window's offsets per partition and the backfill group's commits; UserError for a
    window without records or one the topics no longer hold."""
    reader = open_reader(config, group)  # assigned only: it joins no group, commits nothing
    try:
        plan = Plan(window, group, window_ranges(reader, config, window))
        if not plan.ranges:
            raise UserError(
                f"no records between {iso(window.start)} and {iso(window.end)} in "
                f"{', '.join(config.topics)}; choose another window (`budget estimate` shows "
                "what one holds)"
            )
        _check_retention(reader, plan, now)
        found = reader.committed([TopicPartition(*tp) for tp in plan.ranges], timeout=15)
        plan.committed = {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}
    except KafkaException as exc:
        raise BackfillError(
            f"Kafka error while planning the backfill: {exc}; check --bootstrap-servers and -X"
        ) from None
    finally:
        reader.close()
    return plan


# -- keeping the pipeline inside the window ----------------------------------------------------


class Bounded:
    """A `Source` that hands on only the window's records: a partition is paused once its last
    offset in the window is read (and stays paused through flow control's resumes until it is
    rewound before that), and records at or past the end, or stamped outside the window, are
    dropped."""

    def __init__(self, inner: Source, plan: Plan) -> None:
        self._inner = inner
        self._ends = {tp: r.end for tp, r in plan.ranges.items()}  # other partitions: nothing
        self._window = plan.window
        self.reached: set[Partition] = set()

    @property
    def brokers_up(self) -> bool:
        return self._inner.brokers_up

    @brokers_up.setter
    def brokers_up(self, value: bool) -> None:
        self._inner.brokers_up = value

    async def consume(self, max_records: int, timeout: float) -> list[Message]:
        kept = []
        for msg in await self._inner.consume(max_records, timeout):
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            if msg.error() is not None or topic is None or partition is None or offset is None:
                kept.append(msg)  # the router logs errors
                continue
            tp = (topic, partition)
            end = self._ends.get(tp, 0)
            if offset >= end - 1 and tp not in self.reached:
                self.reached.add(tp)
                self._inner.pause([tp])
            if offset < end and self._window.holds(*msg.timestamp()):
                kept.append(msg)
        return kept

    def seek(self, tp: Partition, offset: int) -> None:
        """A rewind (registry wait, budget) before the end: the partition is to be read again."""
        if offset < self._ends.get(tp, 0):
            self.reached.discard(tp)
        self._inner.seek(tp, offset)

    def resume(self, tps: Partitions) -> None:
        self._inner.resume([tp for tp in tps if tp not in self.reached])

    def pause(self, tps: Partitions) -> None:
        self._inner.pause(tps)

    async def check_reachable(self, timeout: float) -> None:
        await self._inner.check_reachable(timeout)

    async def subscribe(self) -> None:
        await self._inner.subscribe()

    def high_watermark(self, tp: Partition) -> int | None:
        return self._inner.high_watermark(tp)

    async def commit(self, commits: Commits, *, asynchronous: bool = False) -> Partitions:
        return await self._inner.commit(commits, asynchronous=asynchronous)

    async def probe(self, timeout: float = 2.0) -> None:
        await self._inner.probe(timeout)

    async def close(self) -> None:
        await self._inner.close()


# -- running it --------------------------------------------------------------------------------


@dataclass
class Summary:
    """What the backfill did in this run."""

    records: int = 0
    users: int = 0
    events: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    exhausted: list[str] = field(default_factory=list)  # destinations whose budget ran out
    interrupted: bool = False

    def sent(self, requests: tuple[Request, ...]) -> None:
        for request in requests:
            if request.method == "POST" and request.path == USERS_PATH:
                self.users += 1
            elif request.path == EVENTS_PATH:
                self.events += 1


class Counted:
    """The delivery sink, telling the summary what each acknowledged job sent. A sink lets go
    of a job's requests once it holds them, so they are noted as the job goes in."""

    def __init__(
        self, make: SinkFactory, summary: Summary, on_done: Done, on_fatal: Fatal, persist: Persist
    ) -> None:
        self._summary = summary
        self._report = on_done
        self._requests: dict[int, tuple[Request, ...]] = {}  # by id() of the job's record
        self._inner = make(self._done, on_fatal, persist)

    def _done(self, job: Job, rejected: Rejected | None) -> None:
        requests = self._requests.pop(id(job.record), ())
        if rejected is None:
            self._summary.sent(requests)
        self._report(job, rejected)

    def submit(self, job: Job) -> None:
        self._requests[id(job.record)] = job.requests
        self._inner.submit(job)

    def release(self, partitions: Collection[Partition], *, everything: bool = False) -> list[Job]:
        back = self._inner.release(partitions, everything=everything)
        for job in back:
            self._requests.pop(id(job.record), None)
        return back

    def start(self) -> None:
        self._inner.start()

    def plan(self, partition: Partition) -> str:
        return self._inner.plan(partition)

    def restore(self, partition: Partition, metadata: str | None) -> None:
        self._inner.restore(partition, metadata)

    def forget(self, partition: Partition) -> None:
        self._inner.forget(partition)

    def flush(self) -> None:
        self._inner.flush()

    async def close(self) -> None:
        await self._inner.close()


def _by_label(counter: PromCounter, label: str) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                totals[sample.labels[label]] += int(sample.value)
    return dict(totals)


class _Watch:
    """Looks at the pipeline a few times a second: progress, and the stop once every partition
    is done, or waits for a budget that ran out."""

    def __init__(self, pipeline: Pipeline, plan: Plan, budget_log: BudgetLog | None) -> None:
        self._pipeline = pipeline
        self._plan = plan
        self._budget_log = budget_log
        self._budgets = {
            d.name: d.settings.budget
            for d in pipeline.config.destinations
            if d.settings.budget is not None
        }
        self.source: Bounded | None = None

    def exhausted(self) -> list[str]:
        """Destinations whose budget ran out in the current cycle."""
        if self._budget_log is None:
            return []
        now = datetime.now(UTC)
        book = self._budget_log.book
        out = []
        for name, budget in self._budgets.items():
            count = book.count(name, budget.cycle_at(now).id)
            if count is not None and count.exhausted:
                out.append(name)
        return out

    def _done(self, tp: Partition, stopped: list[str]) -> bool:
        plan, ledger, source = self._plan, self._pipeline.ledger, self.source
        if plan.complete(tp):
            return True
        if ledger.generation(tp) is None or ledger.in_flight([tp]):
            return False
        return plan.ranges[tp].destination in stopped or (
            source is not None and tp in source.reached
        )

    def progress(self) -> dict[str, int]:
        """Records done per destination (of `plan.totals()`)."""
        plan, ledger = self._plan, self._pipeline.ledger
        done: Counter[str] = Counter()
        for tp, r in plan.ranges.items():
            position, _ = ledger.position(tp)
            at = plan.first(tp) if position is None else position
            if self._done(tp, []):
                at = r.end
            done[r.destination] += min(max(at, r.start), r.end) - r.start
        return dict(done)

    def finished(self) -> bool:
        stopped = self.exhausted()
        return all(self._done(tp, stopped) for tp in self._plan.ranges)

    async def run(self, out: IO[str]) -> None:
        totals = self._plan.totals()
        started = time.monotonic()
        at_start = self.progress()
        next_line = started + PROGRESS_INTERVAL
        with progress_bar(out) as bar:
            tasks = {name: bar.add_task(name, total=n) for name, n in totals.items()}
            while True:
                done = self.progress()
                for name, task in tasks.items():
                    bar.update(task, completed=done.get(name, 0))
                now = time.monotonic()
                if not bar.console.is_terminal and now >= next_line:
                    next_line = now + PROGRESS_INTERVAL
                    for name, total in totals.items():
                        _line(
                            out,
                            name,
                            done.get(name, 0),
                            total,
                            at_start.get(name, 0),
                            now - started,
                        )
                if self.finished():
                    self._pipeline.stop()
                    return
                await asyncio.sleep(WATCH_INTERVAL)


def _line(out: IO[str], name: str, done: int, total: int, first: int, seconds: float) -> None:
    """One JSON progress line: done of total, the rate of this run and the time left at it."""
    rate = (done - first) / seconds if seconds > 0 else 0.0
    eta = round((total - done) / rate, 1) if rate > 0 else None
    doc = {
        "backfill": name,
        "done": done,
        "total": total,
        "rate": round(rate, 1),
        "eta_seconds": eta,
    }
    out.write(orjson.dumps(doc).decode() + "\n")
    out.flush()


async def backfill(config: Config, plan: Plan, out: IO[str] = sys.stderr) -> Summary:
    """Run the pipeline over the plan's window until every partition is done (or a budget ran
    out, or a signal came); `config` is `backfill_config`'s."""
    summary = Summary()
    budget_log = None
    if any(d.settings.budget is not None for d in config.destinations):
        budget_log = BudgetLog(connection_settings(config), budget_topic(config))
    pipeline: Pipeline

    def source(listeners: Listeners) -> Source:
        bounded = Bounded(pipeline.kafka_source(listeners), plan)
        watch.source = bounded
        return bounded

    def sink(on_done: Done, on_fatal: Fatal, persist: Persist) -> Sink:
        return Counted(pipeline.delivery_sink, summary, on_done, on_fatal, persist)

    pipeline = Pipeline(
        config,
        source=source,
        sink=sink,
        budget_log=budget_log,
        budget_scope=f"{plan.group}/",
    )
    watch = _Watch(pipeline, plan, budget_log)

    def interrupt() -> None:
        summary.interrupted = True
        pipeline.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, interrupt)
    watcher = asyncio.create_task(watch.run(out))
    try:
        await pipeline.run()
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    metrics = pipeline.metrics
    summary.records = sum(_by_label(metrics.records_consumed, "topic").values())
    summary.skipped = _by_label(metrics.records_skipped, "reason")
    summary.dead_lettered = sum(_by_label(metrics.records_dead_lettered, "reason").values())
    summary.exhausted = watch.exhausted()
    return summary


def document(plan: Plan, summary: Summary) -> dict[str, Any]:
    """The summary as `--json` prints it."""
    return {
        "window": {"since": iso(plan.window.start), "until": iso(plan.window.end)},
        "group": plan.group,
        "records": summary.records,
        "users": summary.users,
        "events": summary.events,
        "skipped": dict(sorted(summary.skipped.items())),
        "dead_lettered": summary.dead_lettered,
        "budget_exhausted": summary.exhausted,
        "finished": not summary.exhausted and not summary.interrupted,
    }


def render(doc: Mapping[str, Any]) -> str:
    """The summary for a person."""
    skipped = doc["skipped"]
    reasons = ", ".join(f"{reason} {n:,}" for reason, n in skipped.items())
    lines = [
        f"backfill {doc['window']['since']} to {doc['window']['until']} (group {doc['group']})",
        f"  records read   {doc['records']:>12,}",
        f"  users sent     {doc['users']:>12,}",
        f"  events sent    {doc['events']:>12,}",
        f"  skipped        {sum(skipped.values()):>12,}" + (f"  ({reasons})" if reasons else ""),
        f"  dead-lettered  {doc['dead_lettered']:>12,}",
    ]
    for name in doc["budget_exhausted"]:
        lines.append(f"  budget exhausted for destination {name}: stopped there")
    return "\n".join(lines)


def stop_reason(plan: Plan, summary: Summary, config: Config) -> str | None:
    """Why the backfill did not reach the end of its window (None: it did)."""
    if summary.exhausted:
        ends = []
        for dest in config.destinations:
            if dest.name in summary.exhausted and dest.settings.budget is not None:
                cycle = dest.settings.budget.cycle_at(datetime.now(UTC))
                ends.append(f"{dest.name} until {iso(cycle.end)}")
        return (
            f"the server-event budget is used up ({', '.join(ends)}); the records from where it "
            "ran out were not sent: run the same command once the next cycle has started to send "
            "them"
        )
    if summary.interrupted:
        return "interrupted; run the same command again to continue where it stopped"
    return None
