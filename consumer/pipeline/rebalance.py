"""Partitions coming and going: assigned ones are tracked (with the plan their last owner
committed), revoked ones are drained within a budget and committed, lost ones are forgotten.

At a revoke the sink first hands back the partitions' work that has not started: it stays
uncommitted for the next owner, so the drain waits only for what is already being sent, and
the commit reaches exactly the first record handed back (nothing is sent twice)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from consumer.deadletter import DeadLetters
from consumer.health import Health
from consumer.metrics import Metrics
from consumer.pipeline.flow import FlowControl
from consumer.pipeline.ledger import Ledger
from consumer.record import Partition
from consumer.sink.contract import Sink
from consumer.source import Commits, Partitions

log = logging.getLogger(__name__)


class Rebalancer:
    """The source's assign / revoke / lost listeners, and the drains they and shutdown need."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        flow: FlowControl,
        sink: Sink,
        dead_letters: DeadLetters,
        metrics: Metrics,
        health: Health,
        drain_timeout: float,
        failed: Callable[[], bool],
    ) -> None:
        self._ledger = ledger
        self._flow = flow
        self._sink = sink
        self._dlq = dead_letters
        self._metrics = metrics
        self._health = health
        self._drain_timeout = drain_timeout
        self._failed = failed  # a fatal error: waiting for acks is pointless
        self.drained = False  # the shutdown drain ran: the revoke of close() must not wait

    async def assigned(self, metadata: dict[Partition, str]) -> None:
        """Track new partitions, restoring the plans their last owner committed."""
        tps = list(metadata)
        for tp, plan in metadata.items():
            self._ledger.assign(tp)
            self._sink.restore(tp, plan)
        self._health.joined = True
        self._flow.assigned(tps)
        self._metrics.rebalances.labels("assign").inc()
        self._metrics.assigned_partitions.set(len(self._ledger.owned()))
        log.info("partitions assigned", extra={"partitions": [f"{t}-{p}" for t, p in tps]})

    async def revoked(self, tps: Partitions) -> Commits:
        """Drain the revoked partitions within the budget; returns what to commit for them
        (done offsets, and the plan of batches still running), which the source commits before
        releasing them."""
        owned = [tp for tp in tps if self._ledger.generation(tp) is not None]
        released = self.release(owned)
        budget = 0.0 if self.drained else self._drain_timeout
        drained = await self.drain(owned, budget)
        if not drained:  # the acks would be ignored now: send nothing more of these
            released += self.release(owned, everything=True)
        commits = self._ledger.commits(owned, self._sink.plan)
        for tp in owned:
            self._forget(tp)
        self._metrics.rebalances.labels("revoke").inc()
        self._metrics.assigned_partitions.set(len(self._ledger.owned()))
        log.info(
            "partitions revoked",
            extra={
                "partitions": [f"{t}-{p}" for t, p in tps],
                "drained": drained,
                "released": released,
            },
        )
        if commits:
            self._metrics.commits.labels("revoke").inc()
        return commits

    async def lost(self, tps: Partitions) -> None:
        """Lost partitions are someone else's already: forget them, and their work that has
        not started, and commit nothing."""
        self.release(tps, everything=True)
        for tp in tps:
            self._forget(tp)
        self._metrics.rebalances.labels("lost").inc()
        self._metrics.assigned_partitions.set(len(self._ledger.owned()))
        log.warning(
            "partitions lost; their in-flight work will be redelivered elsewhere",
            extra={"partitions": [f"{t}-{p}" for t, p in tps]},
        )

    def release(self, tps: Partitions, *, everything: bool = False) -> int:
        """Take back from the sink these partitions' work that has not started (see
        `Sink.release`). Returns how many records."""
        return self._ledger.release(self._sink.release(set(tps), everything=everything))

    async def drain(self, tps: Partitions, timeout: float) -> bool:
        """Wait (within a budget) until these partitions have nothing in flight."""
        self._sink.flush()  # the poll thread waits for this drain: no record can join a batch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._ledger.in_flight(tps):
            if loop.time() >= deadline or self._failed():
                return False
            self._dlq.poll()
            await asyncio.sleep(0.01)
        return True

    def _forget(self, tp: Partition) -> None:
        self._ledger.forget(tp)
        self._sink.forget(tp)
        self._flow.forget(tp)
        self._metrics.forget_partition(*tp)
