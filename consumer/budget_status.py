"""`fullstory-consumer budget status`: each destination's budget as the group's own accounting
(the budget topic) has it, read without joining the group: used / limit, the cycle, and when the
budget runs out at the last hour's rate."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from consumer.config import Config
from consumer.policy.budget import Book

RATE_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class BudgetStatus:
    """One destination's budget now."""

    destination: str
    limit: int
    used: int
    share: float
    exhausted: bool
    cycle_start: str
    cycle_end: str
    events_last_hour: int
    runs_out: str | None  # ISO instant at the last hour's rate, if before the cycle ends

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        state = (
            "exhausted"
            if self.exhausted
            else f"runs out {self.runs_out}"
            if self.runs_out
            else "lasts the cycle"
        )
        return (
            f"{self.destination}: {self.used:,} of {self.limit:,} server events "
            f"({self.share:.1%}), cycle {self.cycle_start} to {self.cycle_end}, "
            f"{self.events_last_hour:,} in the last hour; {state}"
        )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def statuses(config: Config, book: Book, now: datetime) -> list[BudgetStatus]:
    """Every destination with a budget, from the book of its group's budget topic."""
    out: list[BudgetStatus] = []
    for dest in config.destinations:
        budget = dest.settings.budget
        if budget is None:
            continue
        cycle = budget.cycle_at(now)
        count = book.count(dest.name, cycle.id)
        used = count.granted if count is not None else 0
        since_ms = (now - RATE_WINDOW).timestamp() * 1000
        recent = sum(n for at, n in (count.history if count else ()) if at >= since_ms)
        limit = budget.events_per_cycle
        runs_out = None
        if recent and used < limit:
            at = now + RATE_WINDOW * ((limit - used) / recent)
            if at < cycle.end:
                runs_out = _iso(at)
        out.append(
            BudgetStatus(
                destination=dest.name,
                limit=limit,
                used=used,
                share=used / limit if limit else 1.0,
                exhausted=bool(count and count.exhausted),
                cycle_start=_iso(cycle.start),
                cycle_end=_iso(cycle.end),
                events_last_hour=recent,
                runs_out=runs_out,
            )
        )
    return out
