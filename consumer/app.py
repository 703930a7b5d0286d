"""The composer: builds the source, the core parts (`consumer.pipeline`), the sink and the
dead-letter queue, and runs the poll loop until a stop, then drains and leaves the group.

Every record taken from Kafka ends in exactly one way — delivered, skipped, or dead-lettered — and
only then counts as done for its partition's watermark. The poll loop never waits for the sink:
when too much is in flight it pauses the partitions and keeps polling. Each dependency can be
passed in (a fake source, sink, dead-letter queue or FullStory client), so the core runs in unit
tests without a broker.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consumer.budget_log import BudgetLog
from consumer.codec.decode import Decoder, DirectorySchemaResolver
from consumer.codec.schema_registry import RegistrySchemaResolver
from consumer.config import Config
from consumer.deadletter import DeadLetterQueue, DeadLetters
from consumer.health import Health
from consumer.metrics import Metrics
from consumer.pipeline.budget_gate import BudgetGate
from consumer.pipeline.flow import FlowControl
from consumer.pipeline.ledger import Ledger
from consumer.pipeline.rebalance import Rebalancer
from consumer.pipeline.router import Router
from consumer.record import Partition
from consumer.sink.batch import BatchSink, Persist
from consumer.sink.client import Abandoned, FullStoryClient
from consumer.sink.connect import open_clients, warn_settings
from consumer.sink.contract import Done, Fatal, Sink
from consumer.sink.realtime import RealtimeSink
from consumer.sink.retry import Backoff
from consumer.source import Commits, KafkaSource, Listeners, Partitions, Source, consumer_config

log = logging.getLogger(__name__)

LAG_INTERVAL = 5.0  # seconds between lag gauge updates
# Records routed per loop turn. A consume call returns up to 500, about 30 ms of CPU; answers
# that arrive meanwhile wait that long, which the adaptive concurrency limit reads as a queue
# at FullStory and cuts for. Slices of 100 keep that wait near 5 ms at no measurable cost.
ROUTE_SLICE = 100
COMMIT_INTERVAL = 1.0  # seconds between commits of what is done
PLAN_RETRY = Backoff(base=0.1, cap=2.0)  # a batch plan the broker refused is written again

SourceFactory = Callable[[Listeners], Source]
SinkFactory = Callable[[Done, Fatal, Persist], Sink]


def decoder_for(config: Config) -> Decoder:
    """The decoder the configured framing and schema source call for."""
    if config.registry.framing == "raw":
        return Decoder("raw")
    registry = config.registry_settings()
    if registry is not None:
        # Decoding runs on the event loop: a schema fetch must not stall the senders.
        return Decoder("confluent", RegistrySchemaResolver(registry, blocking=False))
    return Decoder("confluent", DirectorySchemaResolver(config.registry.schema_dir))


def _producer_settings(kafka: dict[str, str]) -> dict[str, str]:
    """The user's connection settings (security, SASL...) that also apply to the DLQ producer."""
    consumer_only = (
        "group.",
        "auto.",
        "enable.auto",
        "partition.assignment",
        "session.",
        "max.poll",
        "fetch.",
        "queued.",
        "isolation.",
        "heartbeat.",
        "check.crcs",
        "enable.partition.eof",
        "group.instance.id",
    )
    return {k: v for k, v in kafka.items() if not k.startswith(consumer_only)}


def connection_settings(config: Config) -> dict[str, str]:
    """How a producer, or a reader outside the group, reaches the cluster."""
    kafka = config.kafka
    return {"bootstrap.servers": kafka.bootstrap_servers, **_producer_settings(kafka.librdkafka)}


def budget_topic(config: Config) -> str:
    return config.budget.topic or f"{config.kafka.group_id}.budget"


@dataclass
class _Core:
    """The parts that exist while the member runs (they need the source)."""

    source: Source
    flow: FlowControl
    router: Router
    rebalancer: Rebalancer


class Pipeline:
    """One consumer-group member; `run` returns after a clean shutdown."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        *,
        source: SourceFactory | None = None,
        sink: SinkFactory | None = None,
        dead_letters: DeadLetters | None = None,
        clients: Mapping[str, FullStoryClient] | None = None,
        decoder: Decoder | None = None,
        budget_log: BudgetLog | None = None,
        budget_scope: str = "",
        commit_interval: float = COMMIT_INTERVAL,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.health = Health()
        self.ledger = Ledger()
        self._make_source = source or self.kafka_source
        self._make_sink = sink or self.delivery_sink
        self._dlq = dead_letters or DeadLetterQueue(
            connection_settings(config),
            self.metrics,
            connector=config.kafka.group_id,
            task_id=f"{socket.gethostname()}-{id(self):x}",
            topic=config.dlq.topic,
            suffix=config.dlq.suffix,
        )
        self._clients: dict[str, FullStoryClient] = dict(clients or {})
        self._owns_clients = clients is None  # else the caller made, checks and closes them
        self._decoder = decoder or decoder_for(config)
        self._commit_interval = commit_interval
        self._budgets = {
            d.name: d.settings.budget for d in config.destinations if d.settings.budget is not None
        }
        self._budget_log = budget_log
        self._budget_scope = budget_scope  # see BudgetGate: a backfill's claims are its own
        if self._budgets and budget_log is None:
            self._budget_log = BudgetLog(
                connection_settings(config),
                budget_topic(config),
            )
        self._sink: Sink | None = None
        self._core: _Core | None = None
        self._fatal: BaseException | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask for a graceful stop: drain, commit, leave the group."""
        self._stop.set()

    def _fail(self, exc: BaseException) -> None:
        if self._fatal is None:
            self._fatal = exc
            self.health.failure = type(exc).__name__
            log.error("stopping: %s", exc)
        self._stop.set()

    def kafka_source(self, listeners: Listeners) -> Source:
        """The group member `run` reads through (a backfill wraps it)."""
        cfg = self.config
        return KafkaSource(
            consumer_config(cfg.kafka.bootstrap_servers, cfg.kafka.group_id, cfg.kafka.librdkafka),
            cfg.topics,
            asyncio.get_running_loop(),
            listeners,
            revoke_timeout=cfg.delivery.drain_timeout,
            start_from=cfg.kafka.start_from,
        )

    def delivery_sink(self, on_done: Done, on_fatal: Fatal, persist: Persist) -> Sink:
        """The configured delivery mode (a backfill wraps it to count what it sends)."""
        cfg = self.config
        if cfg.delivery.mode == "batch":
            return BatchSink(
                on_done,
                on_fatal,
                max_items=cfg.batch.max_items,
                linger=cfg.batch.linger,
                max_jobs_in_flight=cfg.batch.max_jobs,
                poll_interval=cfg.batch.poll_interval,
                persist=persist,
            )
        return RealtimeSink(cfg.delivery.concurrency, on_done, on_fatal)

    def _build(self) -> tuple[_Core, Sink]:
        cfg = self.config
        source = self._make_source(
            Listeners(self._on_assign, self._on_revoke, self._on_lost, self.ledger.uncommitted)
        )
        flow = FlowControl(
            source,
            self.ledger,
            self.metrics,
            max_records=cfg.limits.in_flight_records,
            max_bytes=cfg.limits.in_flight_bytes,
        )
        router = Router(
            decoder=self._decoder,
            destinations=cfg.destination_for(),
            clients=self._clients,
            ledger=self.ledger,
            flow=flow,
            dead_letters=self._dlq,
            metrics=self.metrics,
        )
        sink = self._make_sink(router.delivered, self._fail, self._persist)
        if self._budget_log is not None:
            sink = BudgetGate(
                sink,
                self._budget_log,
                self._budgets,
                {topic: dest.name for topic, dest in cfg.destination_for().items()},
                self.metrics,
                skipped=router.skipped,
                rewind=self.ledger.rewind,
                pause=flow.wait_for_budget,
                scope=self._budget_scope,
            )
        router.sink = sink
        rebalancer = Rebalancer(
            ledger=self.ledger,
            flow=flow,
            sink=sink,
            dead_letters=self._dlq,
            metrics=self.metrics,
            health=self.health,
            drain_timeout=cfg.delivery.drain_timeout,
            failed=lambda: self._fatal is not None,
        )
        return _Core(source, flow, router, rebalancer), sink

    async def run(self) -> None:
        """Consume until `stop()` (or a fatal error), then drain and leave the group."""
        sink: Sink | None = None
        try:
            warn_settings(self.config)
            if self._owns_clients:
                await open_clients(self.config, self.metrics, self._clients)
            core, sink = self._build()
            self._core, self._sink = core, sink
            source = core.source
            await source.check_reachable(timeout=15.0)
            if self._budget_log is not None:  # every claim so far, before deciding anything
                await self._budget_log.start()
            sink.start()
            await source.subscribe()
            log.info(
                "consuming",
                extra={"topics": self.config.topics, "group_id": self.config.kafka.group_id},
            )
            await self._loop(core, sink)
            await self._drain_polling(core, sink, self.config.delivery.drain_timeout)
            await source.commit(self.ledger.commits(self.ledger.owned(), sink.plan))
            core.rebalancer.drained = True  # the revoke that close() runs must not drain again
            await source.close()
        finally:
            if sink is not None:
                await sink.close()
            if self._budget_log is not None:
                await self._budget_log.close()
            remaining = self._dlq.close(10.0)
            if remaining:
                log.error(
                    "dead-letter writes not acknowledged at exit; those records stay uncommitted",
                    extra={"count": remaining},
                )
            if self._owns_clients:
                for client in self._clients.values():
                    await client.aclose()
        if self._fatal is not None:
            raise self._fatal

    async def _loop(self, core: _Core, sink: Sink) -> None:
        source, flow, router = core.source, core.flow, core.router
        ledger = self.ledger
        max_records = self.config.kafka.records_per_consume
        health = self.health
        next_lag = next_commit = 0.0
        while not self._stop.is_set():
            messages = await source.consume(max_records, 0.1)
            health.turn()
            health.brokers_up = source.brokers_up
            if messages:
                self.metrics.batch_size.labels("consume").observe(len(messages))
                for start in range(0, len(messages), ROUTE_SLICE):
                    if start:
                        await asyncio.sleep(0)  # serve the answers that came meanwhile
                    router.route(messages[start : start + ROUTE_SLICE])
            self._dlq.poll()
            if self._budget_log is not None:
                self._budget_log.poll()
            router.observe_progress()
            now = time.monotonic()
            if now >= next_commit:
                next_commit = now + self._commit_interval
                commits = ledger.commits(ledger.owned(), sink.plan, changed_only=True)
                if commits:
                    self.metrics.commits.labels("explicit").inc()
                    await source.commit(commits, asynchronous=True)
            if flow.update():
                sink.flush()  # paused: nothing more can join what waits to be grouped
            if now >= next_lag:
                next_lag = now + LAG_INTERVAL
                self._update_lag(source)
                if not source.brokers_up:
                    await source.probe()
            # Let the sink's senders run between consume calls even when Kafka returns at once.
            await asyncio.sleep(0)

    async def _drain_polling(self, core: _Core, sink: Sink, timeout: float) -> bool:
        """The shutdown drain: every partition paused, and the consumer still polled (it
        returns nothing now) so that a long drain does not exceed max.poll.interval.ms and
        cost the group membership whose commits are about to be made."""
        owned = self.ledger.owned()
        core.source.pause(owned)
        sink.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.ledger.in_flight(owned):
            if loop.time() >= deadline or self._fatal is not None:
                return False
            await core.source.consume(self.config.kafka.records_per_consume, 0.05)  # paused
            self.health.turn()
            self._dlq.poll()
        return True

    def _update_lag(self, source: Source) -> None:
        """Per-partition lag in records (end offset minus first offset not done) and seconds."""
        now = time.time()
        for tp in self.ledger.owned():
            high = source.high_watermark(tp)
            position, oldest = self.ledger.position(tp)
            if high is None or position is None:
                continue
            labels = (tp[0], str(tp[1]))
            self.metrics.lag_records.labels(*labels).set(max(0, high - position))
            self.metrics.lag_seconds.labels(*labels).set(max(0.0, now - oldest) if oldest else 0.0)

    async def _on_assign(self, metadata: dict[Partition, str]) -> None:
        assert self._core is not None
        await self._core.rebalancer.assigned(metadata)

    async def _on_revoke(self, tps: Partitions) -> Commits:
        assert self._core is not None
        return await self._core.rebalancer.revoked(tps)

    async def _on_lost(self, tps: Partitions) -> None:
        assert self._core is not None
        await self._core.rebalancer.lost(tps)

    async def _persist(self, tp: Partition, plan: str) -> None:
        """Batch delivery: record a partition's segment plan in Kafka before its import jobs
        are created, so whoever reads the partition next forms the same jobs again. Only once
        the broker took it: a plan refused during a rebalance and its jobs created anyway
        let the next owner form other segments and import their items a second time (233
        twice in a join-and-leave test), so a refused plan is written again."""
        for attempt in itertools.count():
            commits = self.ledger.pin(tp, plan)
            if self._core is None or not commits:
                raise Abandoned()  # no longer ours: the next owner decides its own segments
            if tp not in await self._core.source.commit(commits):
                return
            await asyncio.sleep(PLAN_RETRY.delay(attempt))
