"""The emulator's batch import job record, apart from what creates and finishes jobs
(`batch.py`), so the state that stores jobs needs nothing of that module: `batch` depends on
`state` and `jobs`, `state` on `jobs` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BatchJob:
    """One import job: `items` are the parsed bodies, `shared` the batch's `shared` if any, each
    import its result and effective body (whose schema `include_schema` adds)."""

    id: str
    kind: str  # "users" | "events"
    created: str
    ready_at: float  # time.monotonic() when it stops PROCESSING
    items: list[dict[str, Any]]
    shared: dict[str, Any] | None
    key: str | None
    api_key: str  # whose meter its imported events count on
    status: str = "PROCESSING"
    finished: str | None = None
    imports: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A `JobStatusResponse`."""
        job: dict[str, Any] = {"id": self.id, "status": self.status, "created": self.created}
        if self.finished is not None:
            job["finished"] = self.finished
        return {"imports": len(self.imports), "errors": len(self.errors), "job": job}
