"""The server-event budget's book: which counted records may send their events, decided the same
way by every member from one ordered log of claims (docs/budget.md).

A member that wants to send records' server events first appends a `Claim` naming them (their
partition, offsets and event counts, the cycle, the budget it runs under) to the budget topic,
then reads the log back. Every member and `budget status` apply the log's claims in order to a
`Book`; the verdict on each record follows from the log alone, so it is the same everywhere:

- a record not decided before is granted while the cycle's granted events plus its own stay
  within the claim's limit; the first record that does not fit exhausts the cycle, and every
  later record of that destination and cycle is denied (grants are a prefix of the log, so each
  partition's grants are a prefix of its decided offsets);
- a record already decided (a redelivery: its partition's new owner read it again) keeps its
  first verdict and is never counted twice.

Pure and standard library only; the Kafka side is `consumer.budget_log`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Claim:
    """One log entry: records of one partition whose server events a member wants to send."""

    destination: str
    cycle: str  # the cycle's id (its start, ISO-8601 UTC)
    limit: int  # the budget the claiming member runs under
    topic: str
    partition: int
    records: tuple[tuple[int, int], ...]  # (offset, server events), offsets increasing
    member: str
    seq: int

    def encode(self) -> bytes:
        return json.dumps(
            {
                "d": self.destination,
                "c": self.cycle,
                "l": self.limit,
                "t": self.topic,
                "p": self.partition,
                "r": self.records,
                "m": self.member,
                "s": self.seq,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, value: bytes) -> Claim | None:
        """The claim in a log value; None for anything else (never fatal: skip it)."""
        try:
            data = json.loads(value)
            return cls(
                str(data["d"]),
                str(data["c"]),
                int(data["l"]),
                str(data["t"]),
                int(data["p"]),
                tuple((int(o), int(n)) for o, n in data["r"]),
                str(data["m"]),
                int(data["s"]),
            )
        except (KeyError, TypeError, ValueError):  # JSONDecodeError is a ValueError
            return None


@dataclass(slots=True)
class CycleCount:
    """One destination's cycle: events granted, and whether a record was ever denied."""

    limit: int
    granted: int = 0
    exhausted: bool = False
    first_claim_ms: int | None = None  # log time of its first claim
    # (log time in ms, events granted) per claim, for the rate `budget status` projects
    history: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Decided:
    """One partition's records in one cycle: the highest offset decided, the highest granted."""

    through: int = -1
    granted_through: int = -1


class Book:
    """The log's claims applied in order."""

    def __init__(self) -> None:
        self.cycles: dict[tuple[str, str], CycleCount] = {}
        self._decided: dict[tuple[str, str, str, int], _Decided] = {}

    def apply(self, claim: Claim, timestamp_ms: int = 0) -> tuple[bool, ...]:
        """Each record's verdict (True: send its events), in the claim's order."""
        count = self.cycles.get((claim.destination, claim.cycle))
        if count is None:
            count = self.cycles[(claim.destination, claim.cycle)] = CycleCount(claim.limit)
            count.first_claim_ms = timestamp_ms
        count.limit = claim.limit
        key = (claim.destination, claim.cycle, claim.topic, claim.partition)
        decided = self._decided.get(key)
        if decided is None:
            decided = self._decided[key] = _Decided()
        verdicts: list[bool] = []
        granted = 0
        for offset, events in claim.records:
            if offset <= decided.through:  # decided before: keep that verdict
                verdicts.append(offset <= decided.granted_through)
                continue
            decided.through = offset
            if not count.exhausted and count.granted + events <= claim.limit:
                count.granted += events
                granted += events
                decided.granted_through = offset
                verdicts.append(True)
            else:
                count.exhausted = True
                verdicts.append(False)
        if granted:
            count.history.append((timestamp_ms, granted))
        return tuple(verdicts)

    def known(self, claim_key: tuple[str, str, str, int], offset: int) -> bool | None:
        """The verdict of a record decided before (destination, cycle, topic, partition), or
        None when it is not decided yet."""
        decided = self._decided.get(claim_key)
        if decided is None or offset > decided.through:
            return None
        return offset <= decided.granted_through

    def count(self, destination: str, cycle: str) -> CycleCount | None:
        return self.cycles.get((destination, cycle))
