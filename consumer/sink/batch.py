"""Batch delivery: FullStory's asynchronous batch import jobs instead of one request per item.

Requests `POST /v2/users` and `POST /v2/events` of the submitted jobs are grouped per (client,
kind) into import jobs of up to `max_items` items, sealed when full or `linger` seconds after
their first item. A sealed batch is created with `POST /v2/{users|events}/batch` under an
Idempotency-Key derived from its items' own keys (so a retried create is the same job), polled
until it is no longer PROCESSING, and on FAILED its `/errors` pages are mapped back to items:
by the error's `index` when it matches the item's body, else by the body itself. Each failed
item's job gets `Rejected(400, code, message)`; a job is done when every one of its requests is.

Ordering: a user's identify (users) and a later track (events) of the same window go to different
import jobs that FullStory runs independently, so the track may be imported first; FullStory
attaches events by uid, so this only matters for the user properties seen at that instant.
Requests that cannot be batched (`DELETE /v2/users?uid=`) are sent one by one, after every
earlier batch of the same client has finished and before any later one is created, so a delete
is never overtaken by an earlier upsert nor followed by it.

Delivery is at least once: FullStory's batch import has no per-item idempotency, so a record
redelivered after a crash is deduplicated only when it lands in an identical batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson

from consumer.sink.client import Abandoned, AuthenticationError, FullStoryClient, Rejected
from consumer.sink.realtime import Done, Fatal, Job
from consumer.transform import Request

log = logging.getLogger(__name__)

MAX_ITEMS = 50_000  # FullStory's limit per import job
KINDS = {("POST", "/v2/users"): "users", ("POST", "/v2/events"): "events"}
_KEY_NAMESPACE = b"segment-fullstory-consumer/batch-import/v1"


@dataclass(slots=True, eq=False)
class _Tracker:
    """A submitted job and how many of its requests are still unsettled."""

    job: Job
    remaining: int
    rejected: Rejected | None = None


@dataclass(slots=True, eq=False)
class _Batch:
    client: FullStoryClient
    kind: str
    opened: float
    after: asyncio.Future[None] | None  # the client's last single request: created after it
    done: asyncio.Future[None]
    items: list[tuple[_Tracker, Request]] = field(default_factory=list)


def batch_key(kind: str, keys: list[str]) -> str:
    """The create's Idempotency-Key: a UUID-shaped digest of the kind and the sorted item keys."""
    digest = hashlib.sha1(_KEY_NAMESPACE, usedforsecurity=False)
    digest.update(kind.encode())
    for key in sorted(keys):
        digest.update(b"\n" + key.encode())
    text = digest.hexdigest()[:32]
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def map_errors(
    kind: str, bodies: list[Any], errors: list[dict[str, Any]]
) -> tuple[list[Rejected | None], int]:
    """Each item's Rejected (None = imported) from a job's error items, and how many errors
    matched no item. `index` is trusted only when the error's body equals that item's."""
    label = "user" if kind == "users" else "event"
    results: list[Rejected | None] = [None] * len(bodies)
    by_body: dict[bytes, deque[int]] | None = None
    unmapped = 0
    for error in errors:
        body = error.get(label)
        index = error.get("index")
        rejected = Rejected(400, str(error.get("code", "unknown")), str(error.get("message", "")))
        if (
            isinstance(index, int)
            and 0 <= index < len(bodies)
            and results[index] is None
            and (body is None or body == bodies[index])
        ):
            results[index] = rejected
            continue
        if by_body is None:
            by_body = {}
            for i, item in enumerate(bodies):
                by_body.setdefault(orjson.dumps(item, option=orjson.OPT_SORT_KEYS), deque()).append(
                    i
                )
        candidates = by_body.get(orjson.dumps(body, option=orjson.OPT_SORT_KEYS))
        while candidates and results[candidates[0]] is not None:
            candidates.popleft()
        if candidates:
            results[candidates.popleft()] = rejected
        else:
            unmapped += 1
    return results, unmapped


class BatchSink:
    """Delivers jobs through batch import jobs; reports each job's result through `on_done`."""

    def __init__(
        self,
        on_done: Done,
        on_fatal: Fatal,
        *,
        max_items: int = 5000,
        linger: float = 1.0,
        max_jobs_in_flight: int = 20,
        poll_interval: float = 0.5,
    ) -> None:
        if not 1 <= max_items <= MAX_ITEMS:
            raise ValueError(f"max_items must be in 1..{MAX_ITEMS}")
        if max_jobs_in_flight < 1:
            raise ValueError("max_jobs_in_flight must be at least 1")
        self._on_done = on_done
        self._on_fatal = on_fatal
        self._max_items = max_items
        self._linger = linger
        self._max_jobs = max_jobs_in_flight
        self._poll_interval = poll_interval
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._flush_all = False
        self._open: dict[tuple[int, str], _Batch] = {}
        self._ready: deque[_Batch] = deque()
        self._running: set[asyncio.Task[None]] = set()
        self._singles: set[asyncio.Task[None]] = set()
        self._free_lanes = list(range(max_jobs_in_flight))
        self._single_lane = max_jobs_in_flight
        # Per client (by id): unfinished work in submission order, and its last single request.
        self._unfinished: dict[int, set[asyncio.Future[None]]] = {}
        self._barrier: dict[int, asyncio.Future[None]] = {}
        self._scheduler: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule())

    @property
    def idle(self) -> bool:
        return not (self._open or self._ready or self._running or self._singles)

    @property
    def jobs_in_flight(self) -> int:
        """Import jobs being created or polled right now."""
        return len(self._running)

    def submit(self, job: Job) -> None:
        """Queue a job's requests; never blocks."""
        tracker = _Tracker(job, len(job.requests))
        if not job.requests:
            asyncio.get_running_loop().call_soon(self._on_done, job, None)
            return
        loop = asyncio.get_running_loop()
        client = job.client
        cid = id(client)
        for request in job.requests:
            kind = KINDS.get((request.method, request.path))
            if kind is None:
                self._submit_single(tracker, request)
                continue
            batch = self._open.get((cid, kind))
            if batch is None:
                batch = _Batch(
                    client, kind, loop.time(), self._barrier.get(cid), loop.create_future()
                )
                self._open[(cid, kind)] = batch
            batch.items.append((tracker, request))
            if len(batch.items) >= self._max_items:
                self._seal(batch)
        self._wake.set()

    def _submit_single(self, tracker: _Tracker, request: Request) -> None:
        client = tracker.job.client
        cid = id(client)
        for kind in ("users", "events"):
            batch = self._open.get((cid, kind))
            if batch is not None:
                self._seal(batch)
        unfinished = self._unfinished.setdefault(cid, set())
        earlier = list(unfinished)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        unfinished.add(done)
        self._barrier[cid] = done
        task = asyncio.create_task(self._single(tracker, request, earlier, done))
        self._singles.add(task)
        task.add_done_callback(self._singles.discard)

    def _seal(self, batch: _Batch) -> None:
        del self._open[(id(batch.client), batch.kind)]
        self._unfinished.setdefault(id(batch.client), set()).add(batch.done)
        self._ready.append(batch)
        self._wake.set()

    def _finished(self, client: FullStoryClient, done: asyncio.Future[None]) -> None:
        if not done.done():
            done.set_result(None)
        cid = id(client)
        unfinished = self._unfinished.get(cid)
        if unfinished is not None:
            unfinished.discard(done)
            if not unfinished:
                del self._unfinished[cid]
        if self._barrier.get(cid) is done:
            del self._barrier[cid]

    async def _schedule(self) -> None:
        """Seal lingering batches and start sealed ones while fewer than the limit run."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            for batch in list(self._open.values()):
                if self._flush_all or now - batch.opened >= self._linger:
                    self._seal(batch)
            while self._ready and self._free_lanes:
                batch = self._ready.popleft()
                task = asyncio.create_task(self._run(batch, self._free_lanes.pop()))
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = None
            if self._open:
                oldest = min(batch.opened for batch in self._open.values())
                timeout = max(0.0, oldest + self._linger - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()

    async def _run(self, batch: _Batch, lane: int) -> None:
        try:
            if batch.after is not None:
                await batch.after
            results = await self._deliver(batch, lane)
        except Abandoned:
            return
        except AuthenticationError as exc:
            self._on_fatal(exc)
            return
        finally:
            self._free_lanes.append(lane)
            self._finished(batch.client, batch.done)
            self._wake.set()
        for (tracker, _), result in zip(batch.items, results, strict=True):
            self._settle(tracker, result)

    async def _single(
        self,
        tracker: _Tracker,
        request: Request,
        earlier: list[asyncio.Future[None]],
        done: asyncio.Future[None],
    ) -> None:
        try:
            for future in earlier:
                await future
            result = await tracker.job.client.send(request, self._stopping, self._single_lane)
        except Abandoned:
            return
        except AuthenticationError as exc:
            self._on_fatal(exc)
            return
        finally:
            self._finished(tracker.job.client, done)
            self._wake.set()
        self._settle(tracker, result)

    def _settle(self, tracker: _Tracker, result: Rejected | None) -> None:
        if result is not None and tracker.rejected is None:
            tracker.rejected = result
        tracker.remaining -= 1
        if tracker.remaining == 0:
            self._on_done(tracker.job, tracker.rejected)

    async def _deliver(self, batch: _Batch, lane: int) -> list[Rejected | None]:
        """Create the import job, wait for it, and return each item's outcome."""
        client, kind = batch.client, batch.kind
        bodies = [request.body for _, request in batch.items]
        key = batch_key(kind, [request.idempotency_key for _, request in batch.items])
        content = orjson.dumps({"requests": bodies})
        created = await client.call("POST", f"/v2/{kind}/batch", content, key, self._stopping, lane)
        if isinstance(created, Rejected):
            log.warning(
                "batch import rejected as a whole; sending its items one by one",
                extra={
                    "kind": kind,
                    "items": len(bodies),
                    "status": created.status,
                    "code": created.code,
                    "error": created.message,
                },
            )
            return await self._one_by_one(batch, lane)
        job_id = str(orjson.loads(created.content)["job"]["id"])
        base = f"/v2/{kind}/batch/{job_id}"
        status = await self._wait_for_job(client, base, lane)
        if status is None:
            log.warning(
                "batch import job vanished; sending its items one by one",
                extra={"kind": kind, "job": job_id, "items": len(bodies)},
            )
            return await self._one_by_one(batch, lane)
        if status == "COMPLETED":
            return [None] * len(bodies)
        errors = await self._errors(client, base, lane)
        results, unmapped = map_errors(kind, bodies, errors)
        if unmapped:
            log.error(
                "batch import errors that match no item of the batch; those items count as sent",
                extra={"kind": kind, "job": job_id, "unmapped": unmapped},
            )
        return results

    async def _one_by_one(self, batch: _Batch, lane: int) -> list[Rejected | None]:
        """Fallback: each item to the single endpoint, in order (keeps each user's order)."""
        client = batch.client
        return [await client.send(request, self._stopping, lane) for _, request in batch.items]

    async def _wait_for_job(self, client: FullStoryClient, base: str, lane: int) -> str | None:
        """Poll the job until it leaves PROCESSING; None when FullStory no longer knows it."""
        while True:
            await self._sleep(self._poll_interval)
            answer = await client.call("GET", base, None, None, self._stopping, lane)
            if isinstance(answer, Rejected):
                return None
            status = str(orjson.loads(answer.content).get("job", {}).get("status", ""))
            if status in ("COMPLETED", "FAILED"):
                return status

    async def _errors(self, client: FullStoryClient, base: str, lane: int) -> list[dict[str, Any]]:
        """Every error item of a finished job, page by page."""
        errors: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            path = f"{base}/errors" + (f"?page_token={quote(token, safe='')}" if token else "")
            answer = await client.call("GET", path, None, None, self._stopping, lane)
            if isinstance(answer, Rejected):
                log.error("cannot read a batch import's errors", extra={"path": base})
                return errors
            if answer.status_code == 202:  # results not ready yet
                await self._sleep(self._poll_interval)
                continue
            page = orjson.loads(answer.content)
            errors.extend(item for item in page.get("results", []) if isinstance(item, dict))
            token = page.get("next_page_token")
            if not token:
                return errors

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up at once when the sink is closing."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Abandoned()

    async def drain(self, timeout: float) -> bool:
        """Send open batches now and wait until every submitted job has finished; False when
        the budget ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._flush_all = True
        try:
            while not self.idle:
                self._wake.set()
                if loop.time() >= deadline:
                    return False
                await asyncio.sleep(0.01)
            return True
        finally:
            self._flush_all = False

    async def close(self) -> None:
        """Abandon what is left (it stays uncommitted, so it is redelivered) and stop."""
        self._stopping.set()
        tasks = [*self._running, *self._singles]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
