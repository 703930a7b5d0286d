"""What is in flight and what may be committed: the per-partition done-watermarks, the in-flight
counts that backpressure bounds, and the one commit path of both delivery modes.

A commit is (topic, partition, first offset not done, metadata); the metadata is the sink's plan
for the partition (batch delivery's unfinished segments, empty in realtime), so whoever owns the
partition next reads both from the same place."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from consumer.offsets import OffsetTracker
from consumer.record import Partition, Record
from consumer.sink.contract import Job
from consumer.source import Commits, Partitions


class Ledger:
    """Owned partitions, the records read from them and not yet finished, and commits."""

    def __init__(self) -> None:
        self._tracker = OffsetTracker()
        self.records = 0  # read and not finished (nor handed back)
        self.bytes = 0
        self._committed: dict[Partition, tuple[int, str]] = {}  # last commit handed out

    def assign(self, tp: Partition) -> int:
        """Own a partition from now on; returns its new generation."""
        return self._tracker.assign(tp)

    def uncommitted(self, tps: Partitions) -> None:
        """Those commits did not land: the next `commits(changed_only=True)` hands them out
        again."""
        for tp in tps:
            self._committed.pop(tp, None)

    def forget(self, tp: Partition) -> None:
        """The partition is no longer ours: acks still under way for it are ignored."""
        self._tracker.revoke(tp)
        self._committed.pop(tp, None)

    def generation(self, tp: Partition) -> int | None:
        return self._tracker.generation(tp)

    def owned(self) -> list[Partition]:
        return self._tracker.owned()

    def track(self, record: Record) -> None:
        """A record read from an owned partition (in offset order) is now in flight."""
        self._tracker.track(record.tp, record.offset, record.timestamp)
        self.records += 1
        self.bytes += record.size

    def finish(self, record: Record) -> None:
        """The record is done: delivered, skipped or dead-lettered. An ack of an earlier
        generation only frees its in-flight room; it never moves a watermark."""
        self.records -= 1
        self.bytes -= record.size
        self._tracker.done(record.tp, record.offset, record.generation)

    def release(self, jobs: Iterable[Job]) -> int:
        """Jobs the sink handed back unsent at a revoke: no longer in flight here, and never
        done, so the commit stops before the first of them. Returns how many."""
        count = 0
        for job in jobs:
            record = job.record
            self._tracker.release(record.tp)
            self.records -= 1
            self.bytes -= record.size
            count += 1
        return count

    def rewind(self, jobs: list[Job]) -> None:
        """Records of one partition, from some offset to the last read, that will be read
        again (a partition paused until its budget's next cycle): untracked, not released."""
        if not jobs:
            return
        first = jobs[0].record
        self._tracker.rewind(first.tp, first.offset)
        for job in jobs:
            self.records -= 1
            self.bytes -= job.record.size

    def in_flight(self, tps: Iterable[Partition]) -> bool:
        """Whether any of these partitions still has records being worked on."""
        return any(self._tracker.in_flight(tp) for tp in tps)

    def position(self, tp: Partition) -> tuple[int | None, float | None]:
        """The first offset not done, and the Kafka time of the oldest record in flight."""
        return self._tracker.position(tp)

    def commits(
        self,
        tps: Iterable[Partition],
        plan: Callable[[Partition], str],
        *,
        changed_only: bool = False,
    ) -> Commits:
        """For each partition that has read anything: the first offset not done, with the
        sink's plan as metadata (`changed_only`: only those that differ from the last)."""
        commits: Commits = []
        for tp in tps:
            position, _ = self._tracker.position(tp)
            if position is None:
                continue
            entry = (position, plan(tp))
            if changed_only and self._committed.get(tp) == entry:
                continue
            self._committed[tp] = entry
            commits.append((tp[0], tp[1], *entry))
        return commits

    def pin(self, tp: Partition, plan: str) -> Commits:
        """The commit that records a new plan at the current position (batch delivery writes
        it before creating import jobs); empty when the partition is no longer ours."""
        position, _ = self._tracker.position(tp)
        if position is None or self._tracker.generation(tp) is None:
            return []
        self._committed[tp] = (position, plan)
        return [(tp[0], tp[1], position, plan)]
