"""What the pipeline and a delivery mode say to each other: the `Sink` interface both modes
implement, the `Job` handed to it and the callbacks it reports through.

Kept apart from either mode so that neither borrows the other's types, and so that a test can
drive the pipeline with a fake sink that only has to satisfy this interface."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from consumer.record import Partition, Record
from consumer.sink.client import FullStoryClient, Rejected
from consumer.transform import Request


@dataclass(slots=True)
class Job:
    """One record's requests, and the client of the destination they go to."""

    record: Record
    requests: tuple[Request, ...]
    client: FullStoryClient


Done = Callable[[Job, Rejected | None], None]
"""Called once per submitted job: None when FullStory acknowledged all its requests, else the
final refusal (the record goes to the dead-letter topic)."""

Fatal = Callable[[BaseException], None]
"""Called when delivery cannot go on at all (FullStory refused the API key)."""


class Sink(Protocol):
    """A delivery mode. Every call is made on the event loop; `submit` never blocks."""

    def start(self) -> None:
        """Start the mode's tasks (called once, inside the running loop)."""

    def submit(self, job: Job) -> None:
        """Queue a job; its outcome is reported through the `Done` callback."""

    def release(self, partitions: Collection[Partition], *, everything: bool = False) -> list[Job]:
        """At a revoke, take back these partitions' jobs that have not started (`everything`:
        all of them that are still queued); they are never reported through `Done`."""

    def plan(self, partition: Partition) -> str:
        """Metadata to commit with the partition's offset, read back by its next owner."""

    def restore(self, partition: Partition, metadata: str | None) -> None:
        """A newly assigned partition's committed metadata (see `plan`)."""

    def forget(self, partition: Partition) -> None:
        """The partition is no longer ours: drop what the mode keeps about it."""

    def flush(self) -> None:
        """Start now whatever waits to be grouped: no more records will join it for a while."""

    async def close(self) -> None:
        """Abandon what is left (it stays uncommitted, so it is redelivered) and stop."""
