"""Per-partition "done" watermarks: the only thing that decides what offsets may be committed.

A record is done when FullStory acknowledged it, when the transform skipped it, or when it reached
the dead-letter topic. The committed offset of a partition is one past the last record of the
longest done prefix, so a later success never moves the commit past an earlier record that is still
in flight (the classic data-loss bug of Kafka→HTTP sinks). Each assignment of a partition gets a
new generation; acks carrying an old generation (work started before a revoke) are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from consumer.record import Partition


@dataclass(slots=True)
class _Partition:
    generation: int
    pending: deque[int] = field(default_factory=deque)
    stamps: deque[float] = field(default_factory=deque)  # Kafka timestamps of `pending`
    done_out_of_order: set[int] = field(default_factory=set)
    released: int = 0  # pending records handed back unsent at a revoke: no longer waited for
    watermark: int | None = None  # next offset to commit (last done + 1)


class OffsetTracker:
    """Contiguous done-watermarks for the partitions this consumer currently owns."""

    def __init__(self) -> None:
        self._partitions: dict[Partition, _Partition] = {}
        self._next_generation = 1

    def assign(self, tp: Partition) -> int:
        """Start tracking a newly assigned partition; returns its generation."""
        generation = self._next_generation
        self._next_generation += 1
        self._partitions[tp] = _Partition(generation)
        return generation

    def revoke(self, tp: Partition) -> None:
        """Forget a partition: acks still in flight for it are ignored from now on."""
        self._partitions.pop(tp, None)

    def generation(self, tp: Partition) -> int | None:
        """The current generation of an owned partition, or None when it is not owned."""
        part = self._partitions.get(tp)
        return part.generation if part is not None else None

    def owned(self) -> list[Partition]:
        return list(self._partitions)

    def track(self, tp: Partition, offset: int, timestamp: float = 0.0) -> None:
        """Register a record as in flight; records of one partition arrive in offset order."""
        part = self._partitions[tp]
        part.pending.append(offset)
        part.stamps.append(timestamp)

    def done(self, tp: Partition, offset: int, generation: int) -> bool:
        """Mark a record done; returns True when the partition's watermark moved."""
        part = self._partitions.get(tp)
        if part is None or part.generation != generation:
            return False
        pending, stamps = part.pending, part.stamps
        if not pending or pending[0] != offset:
            part.done_out_of_order.add(offset)
            return False
        pending.popleft()
        stamps.popleft()
        last = offset
        early = part.done_out_of_order
        while pending and pending[0] in early:
            last = pending.popleft()
            stamps.popleft()
            early.discard(last)
        part.watermark = last + 1
        return True

    def position(self, tp: Partition) -> tuple[int | None, float | None]:
        """The first offset not yet done (None when nothing was read yet) and the Kafka
        timestamp of the oldest record in flight (None when nothing is in flight)."""
        part = self._partitions.get(tp)
        if part is None:
            return None, None
        if part.pending:
            return part.pending[0], part.stamps[0]
        return part.watermark, None

    def release(self, tp: Partition) -> None:
        """One pending record of a partition being revoked was handed back unsent: stop waiting
        for it. It stays not done, so the commit stops before it and the next owner reads it."""
        part = self._partitions.get(tp)
        if part is not None:
            part.released += 1

    def rewind(self, tp: Partition, offset: int) -> None:
        """The partition will be read again from `offset`, and none of its records from there
        is being worked on: forget them, as if they had never been read (they will be tracked
        again when read)."""
        part = self._partitions.get(tp)
        if part is None:
            return
        pending, stamps = part.pending, part.stamps
        while pending and pending[-1] >= offset:
            part.done_out_of_order.discard(pending.pop())
            stamps.pop()

    def in_flight(self, tp: Partition) -> int:
        """Records of the partition still being worked on (read, not done, not released)."""
        part = self._partitions.get(tp)
        if part is None:
            return 0
        return len(part.pending) - len(part.done_out_of_order) - part.released
