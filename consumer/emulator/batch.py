"""Batch import jobs of the emulator: creation, the PROCESSING window, item-by-item import.

A job is settled lazily: every route that can observe jobs (the batch routes, a new batch create,
`/emulator/requests` and `/emulator/stats`) first finishes the jobs whose processing time is over,
so what a test sees never depends on a timer having fired.

Choices where FullStory's behaviour is unverified:
- each error item carries, besides FullStory's `message`, `code` and `user`/`event` (the item as
  sent), an extra `index`: the item's position in `requests`, so a client can map errors back
  even when two items are identical;
- an import result is the effective event (with `shared.context` applied) or, for users,
  `{"id", "uid"?, "display_name"?, "email"?}`;
- `reject_matching` rules with a final 4xx status apply to items (as item errors); rules with a
  retryable status (408, 429, 5xx) do not, as an item cannot be retried on its own;
- beyond `max_in_progress_jobs` jobs in progress a create answers 429 (FullStory first queues
  jobs beyond 100; the emulator does not model that queue);
- `page_token` is the decimal offset of the page's first result.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer.emulator.state import EmulatorState, retry_after_seconds
from consumer.emulator.validation import Invalid, check_context, validate_event, validate_user

MAX_ITEMS = 50_000
KINDS = {"users": "/v2/users", "events": "/v2/events"}


class TooManyJobs(Exception):
    """The org has `max_in_progress_jobs` jobs in progress; retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many batch import jobs in progress")
        self.retry_after = retry_after


@dataclass
class BatchJob:
    """One import job; `items` are the bodies as sent, `context` the shared context if any."""

    id: str
    kind: str  # "users" | "events"
    created: str
    ready_at: float  # time.monotonic() when it stops PROCESSING
    items: list[Any]
    context: dict[str, Any] | None
    key: str | None
    status: str = "PROCESSING"
    finished: str | None = None
    imports: list[Any] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        job: dict[str, Any] = {"id": self.id, "status": self.status, "created": self.created}
        if self.finished is not None:
            job["finished"] = self.finished
        return {"imports": len(self.imports), "errors": len(self.errors), "job": job}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_batch(kind: str, document: Any) -> tuple[list[Any], dict[str, Any] | None]:
    """The items and shared context of a batch create body; raises Invalid for the whole batch."""
    if not isinstance(document, dict):
        raise Invalid("request body must be a JSON object")
    allowed = {"requests", "shared"} if kind == "events" else {"requests"}
    unknown = document.keys() - allowed
    if unknown:
        raise Invalid(f"unknown fields: {sorted(unknown)}")
    items = document.get("requests")
    if not isinstance(items, list) or not items:
        raise Invalid("requests must be a non-empty array")
    if len(items) > MAX_ITEMS:
        raise Invalid(f"a batch import holds at most {MAX_ITEMS} requests, not {len(items)}")
    context = None
    if "shared" in document:
        shared = document["shared"]
        if not isinstance(shared, dict) or not shared.keys() <= {"context"}:
            raise Invalid('shared must be {"context": {...}}')
        if "context" in shared:
            check_context(shared["context"])
            context = shared["context"]
    return items, context


def settle(state: EmulatorState) -> None:
    """Finish every job whose processing time is over."""
    if not state.in_progress:
        return
    now = time.monotonic()
    due = [job for job in state.in_progress if job.ready_at <= now]
    for job in due:
        state.in_progress.remove(job)
        _finish(state, job)


def create(state: EmulatorState, kind: str, document: Any, key: str | None) -> bytes:
    """Validate the batch as a whole and start a job; items are checked when it finishes."""
    items, context = parse_batch(kind, document)
    settle(state)
    faults = state.faults
    if len(state.in_progress) >= faults.max_in_progress_jobs:
        earliest = min(job.ready_at for job in state.in_progress)
        raise TooManyJobs(retry_after_seconds(earliest - time.monotonic()))
    job = BatchJob(
        id=str(uuid.uuid4()),
        kind=kind,
        created=_now_iso(),
        ready_at=time.monotonic() + faults.batch_processing_ms / 1000.0,
        items=items,
        context=context,
        key=key,
    )
    state.jobs[job.id] = job
    state.in_progress.append(job)
    return orjson.dumps({"job": {"id": job.id, "status": job.status, "created": job.created}})


def _import(state: EmulatorState, job: BatchJob, item: Any) -> tuple[Any, Any]:
    """Validate and apply one item as the single endpoint would: (effective body, result)."""
    if job.kind == "users":
        body = validate_user(item)
        rule = state.match_rule(KINDS["users"], body, final_only=True)
        if rule is not None:
            raise Invalid(rule.message or "rejected by an emulator reject_matching rule")
        result = {"id": state.upsert_user(body)}
        result.update((k, body[k]) for k in ("uid", "display_name", "email") if k in body)
        return body, result
    if job.context is not None:
        if isinstance(item, dict) and "context" in item:
            raise Invalid("an item cannot have its own context when shared.context is set")
        if isinstance(item, dict):
            item = {**item, "context": job.context}
    body = validate_event(item)
    rule = state.match_rule(KINDS["events"], body, final_only=True)
    if rule is not None:
        raise Invalid(rule.message or "rejected by an emulator reject_matching rule")
    return body, body


def _finish(state: EmulatorState, job: BatchJob) -> None:
    """Import the items one by one, log each as its own request, and close the job."""
    path = KINDS[job.kind]
    label = "user" if job.kind == "users" else "event"
    for index, item in enumerate(job.items):
        key = f"{job.key}#{index}" if job.key is not None else None
        try:
            body, result = _import(state, job, item)
        except Invalid as exc:
            job.errors.append(
                {"message": str(exc), "code": "invalid_argument", label: item, "index": index}
            )
            state.record("POST", path, "", orjson.dumps(item), key, False, 400, job.id)
            continue
        job.imports.append(result)
        state.record("POST", path, "", orjson.dumps(body), key, False, 200, job.id)
    job.items = []
    job.status = "FAILED" if job.errors else "COMPLETED"
    job.finished = _now_iso()


def find(state: EmulatorState, kind: str, job_id: str) -> BatchJob | None:
    """The job of that kind, settled first; None when unknown."""
    settle(state)
    job = state.jobs.get(job_id)
    return job if job is not None and job.kind == kind else None


def page(job: BatchJob, which: str, token: str | None, size: int) -> bytes:
    """One page of a finished job's imports or errors; raises Invalid for a bad token."""
    results = job.imports if which == "imports" else job.errors
    if token is None or token == "":
        start = 0
    elif token.isdigit() and int(token) <= len(results):
        start = int(token)
    else:
        raise Invalid(f"invalid page_token {token[:32]!r}")
    end = start + size
    out: dict[str, Any] = {"results": results[start:end], "total_records": str(len(results))}
    if end < len(results):
        out["next_page_token"] = str(end)
    return orjson.dumps(out)
