"""Batch import jobs of the emulator: creation, the PROCESSING window, item-by-item import.

A job is settled lazily: every route that can observe jobs (the batch routes, a new batch create,
`/emulator/requests` and `/emulator/stats`) first finishes the jobs whose processing time is over,
so what a test sees never depends on a timer having fired.

Answers follow FullStory's OpenAPI files: an error item is `{"message", "code", "user"}` or
`{"message", "code", "event", "shared"?}` with no position index; the echoed user is FullStory's
parsed copy (`schema` null when none was sent, `type_conflicts` null, as in the spec's example),
the echoed event is the item as sent (without `shared.context` applied). A user import result is
a `BatchUserImportResponse` (`id`, the item's `uid`, `display_name`, `email`, `properties`,
`schema`, `type_conflicts`), an event import result a `BatchCreateEventsResponse` (`user`
`{id, uid}`, `session` `{id}`, `context`, `name`, `timestamp`, `properties`, `schema`).

Choices where FullStory's behaviour is unverified:
- a body whose items do not parse (not an object, an undeclared field, a wrong JSON type, see
  `validation.py`) is refused whole with 400, as FullStory decodes the whole request first;
  items failing a constraint, an identity rule or `shared.context` fail alone;
- an empty `requests` is refused (400); at most 50,000 items (FullStory's documented limit);
- `schema` in an import result is null for users and absent for events unless the GET has
  `include_schema=true` (`true` or `false`, anything else is 400); it is then the declared
  types over types inferred as FullStory documents them (numbers `real`, `YYYY-MM-DDT...`
  strings `date`, arrays the plural of their items' type), keyed by dotted path;
  `type_conflicts` is always null (the emulator keeps no per-org property types);
- an event result's `user.id` is given only for a user the emulator knows (created through
  `/v2/users` or a user import: events create no users here), `session` only for `session.id`
  (the emulator has no sessions, so `use_most_recent` attaches none); a missing `timestamp` is
  the import time;
- `reject_matching` rules with a final 4xx status apply to items (as item errors whose `code`
  is that status's code); rules with a retryable status (408, 429, 5xx) do not, as an item
  cannot be retried on its own;
- beyond `max_in_progress_jobs` jobs in progress a create answers 429 (FullStory first queues
  jobs beyond 100; the emulator does not model that queue);
- `page_token` is the decimal offset of the page's first result.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from consumer.emulator.jobs import BatchJob
from consumer.emulator.state import EmulatorState, retry_after_seconds
from consumer.emulator.validation import (
    Invalid,
    check_event,
    check_user,
    error_code,
    parse_batch,
    schema_of,
)

KINDS = {"users": "/v2/users", "events": "/v2/events"}
USER_RESULT_FIELDS = ("uid", "display_name", "email", "properties")


class TooManyJobs(Exception):
    """The org has `max_in_progress_jobs` jobs in progress; retry after `retry_after` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many batch import jobs in progress")
        self.retry_after = retry_after


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def settle(state: EmulatorState) -> None:
    """Finish every job whose processing time is over."""
    if not state.in_progress:
        return
    now = time.monotonic()
    due = [job for job in state.in_progress if job.ready_at <= now]
    for job in due:
        state.in_progress.remove(job)
        _finish(state, job)


def create(state: EmulatorState, kind: str, document: Any, key: str | None, api_key: str) -> bytes:
    """Parse the batch as a whole and start a job; items are checked when it finishes."""
    items, shared = parse_batch(kind, document)
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
        shared=shared,
        key=key,
        api_key=api_key,
    )
    state.jobs[job.id] = job
    state.in_progress.append(job)
    return orjson.dumps({"job": {"id": job.id, "status": job.status, "created": job.created}})


def _reject(state: EmulatorState, kind: str, body: dict[str, Any]) -> None:
    rule = state.match_rule(KINDS[kind], body, final_only=True)
    if rule is not None:
        message = rule.message or "rejected by an emulator reject_matching rule"
        raise Invalid(message, error_code(rule.status))


def _event_result(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    """A `BatchCreateEventsResponse` for an imported event."""
    result: dict[str, Any] = {}
    if "user" in body:
        uid, user_id = body["user"].get("uid"), body["user"].get("id")
        if uid is not None:
            user_id = state.uid_to_id.get(uid)
        elif user_id in state.users:
            uid = state.users[user_id].get("uid")
        result["user"] = {k: v for k, v in (("id", user_id), ("uid", uid)) if v is not None}
    if "id" in body.get("session", ()):
        result["session"] = {"id": body["session"]["id"]}
    if "context" in body:
        result["context"] = body["context"]
    result["name"] = body["name"]
    result["timestamp"] = body.get("timestamp") or _now_iso()
    if "properties" in body:
        result["properties"] = body["properties"]
    return result


def _import(
    state: EmulatorState, job: BatchJob, item: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check and apply one item as the single endpoint would: (effective body, result)."""
    if job.kind == "users":
        body = check_user(item)
        _reject(state, job.kind, body)
        result: dict[str, Any] = {"id": state.upsert_user(body)}
        result.update((k, body[k]) for k in USER_RESULT_FIELDS if k in body)
        result.update(schema=None, type_conflicts=None)
        return body, result
    context = job.shared.get("context") if job.shared is not None else None
    if context is not None:
        if "context" in item:
            raise Invalid("an item cannot have its own context when shared.context is set")
        item = {**item, "context": context}
    body = check_event(item)
    _reject(state, job.kind, body)
    return body, _event_result(state, body)


def _error(job: BatchJob, item: dict[str, Any], exc: Invalid) -> dict[str, Any]:
    """A `FailedUserImport` or `FailedEventsImport`: the item as FullStory parsed it."""
    error: dict[str, Any] = {"message": str(exc), "code": exc.code}
    if job.kind == "users":
        error["user"] = {**item, "schema": item.get("schema"), "type_conflicts": None}
    else:
        error["event"] = item
        if job.shared is not None:
            error["shared"] = job.shared
    return error


def _finish(state: EmulatorState, job: BatchJob) -> None:
    """Import the items one by one, log each as its own request, and close the job."""
    path = KINDS[job.kind]
    for index, item in enumerate(job.items):
        key = f"{job.key}#{index}" if job.key is not None else None
        try:
            body, result = _import(state, job, item)
        except Invalid as exc:
            job.errors.append(_error(job, item, exc))
            state.record("POST", path, "", orjson.dumps(item), key, False, 400, job.id)
            continue
        job.imports.append((result, body))
        if job.kind == "events":
            state.count_event(job.api_key)
        state.record("POST", path, "", orjson.dumps(body), key, False, 200, job.id)
    job.items = []
    job.status = "FAILED" if job.errors else "COMPLETED"
    job.finished = _now_iso()


def find(state: EmulatorState, kind: str, job_id: str) -> BatchJob | None:
    """The job of that kind, settled first; None when unknown."""
    settle(state)
    job = state.jobs.get(job_id)
    return job if job is not None and job.kind == kind else None


def page(job: BatchJob, which: str, query: dict[str, str], size: int) -> bytes:
    """One page of a finished job's imports or errors; raises Invalid for a bad query."""
    total = len(job.imports) if which == "imports" else len(job.errors)
    token = query.get("page_token", "")
    if token == "":
        start = 0
    elif token.isdigit() and int(token) <= total:
        start = int(token)
    else:
        raise Invalid(f"invalid page_token {token[:32]!r}")
    end = start + size
    results: list[dict[str, Any]]
    if which == "errors":
        results = job.errors[start:end]
    else:
        include = query.get("include_schema", "false")
        if include not in ("true", "false"):
            raise Invalid("include_schema must be true or false")
        chunk = job.imports[start:end]
        if include == "true":
            results = [{**result, "schema": schema_of(body)} for result, body in chunk]
        else:
            results = [result for result, _ in chunk]
    out: dict[str, Any] = {"results": results, "total_records": str(total)}
    if end < total:
        out["next_page_token"] = str(end)
    return orjson.dumps(out)
