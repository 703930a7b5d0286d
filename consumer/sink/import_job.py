"""One FullStory batch import job, from create to each item's outcome.

`POST /v2/{users|events}/batch` under an Idempotency-Key derived from the segment and its items,
then the job is polled until it leaves PROCESSING; on FAILED its `/errors` pages are mapped back
to items by what FullStory echoes (`consumer.sink.batch_errors`: an error that cannot be placed
on exactly one item refuses every candidate, so nothing refused counts as imported). A create
refused as a whole, or a job FullStory no longer knows, falls back to the single endpoint.
Kept apart from `BatchSink`, which decides which records form a job and when it may start.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from consumer.sink.batch_errors import map_errors
from consumer.sink.client import Abandoned, FullStoryClient, Rejected

log = logging.getLogger(__name__)

_KEY_NAMESPACE = b"segment-fullstory-consumer/batch-import/v1"

Outcomes = list[Rejected | None]


def batch_key(kind: str, keys: Sequence[str], segment: str = "") -> str:
    """The create's Idempotency-Key: a UUID-shaped digest of the segment (partition and offset
    range), the kind and the sorted item keys."""
    digest = hashlib.sha1(_KEY_NAMESPACE, usedforsecurity=False)
    digest.update(segment.encode() + b"\n" + kind.encode())
    for key in sorted(keys):
        digest.update(b"\n" + key.encode())
    text = digest.hexdigest()[:32]
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class ImportJobs:
    """Runs import jobs until `stopping` is set (then every wait raises `Abandoned`)."""

    def __init__(self, stopping: asyncio.Event, poll_interval: float) -> None:
        self._stopping = stopping
        self._poll_interval = poll_interval

    async def run(
        self,
        client: FullStoryClient,
        kind: str,
        bodies: Sequence[bytes],
        keys: Sequence[str],
        segment: str,
    ) -> Outcomes:
        """Import the items (JSON bodies, with their own idempotency keys) as one job and return
        each one's outcome in order. The request body exists only while the create is sent."""
        created = await client.call(
            "POST",
            f"/v2/{kind}/batch",
            b'{"requests":[' + b",".join(bodies) + b"]}",
            batch_key(kind, keys, segment),
            self._stopping,
        )
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
            return await self._one_by_one(client, kind, bodies, keys)
        job_id = str(orjson.loads(created.content)["job"]["id"])
        base = f"/v2/{kind}/batch/{job_id}"
        status = await self._wait_for_job(client, base)
        if status is None:
            log.warning(
                "batch import job vanished; sending its items one by one",
                extra={"kind": kind, "job": job_id, "items": len(bodies)},
            )
            return await self._one_by_one(client, kind, bodies, keys)
        if status.get("job", {}).get("status") == "COMPLETED":
            return [None] * len(bodies)
        counted = status.get("errors")
        errors = await self._errors(client, base)
        if errors is None:  # unreadable: every item is refused rather than counted as imported
            errors, counted = [], len(bodies)
        mapping = map_errors(
            kind,
            [orjson.loads(body) for body in bodies],
            errors,
            counted if isinstance(counted, int) else None,
        )
        if mapping.ambiguous or mapping.unmatched:
            log.error(
                "batch import errors that cannot be placed on exactly one item; every candidate "
                "goes to the dead-letter topic",
                extra={
                    "kind": kind,
                    "job": job_id,
                    "ambiguous": mapping.ambiguous,
                    "unmatched": mapping.unmatched,
                },
            )
        return mapping.results

    async def _one_by_one(
        self, client: FullStoryClient, kind: str, bodies: Sequence[bytes], keys: Sequence[str]
    ) -> Outcomes:
        """Fallback: each item to the single endpoint, in order (keeps each user's order)."""
        results: Outcomes = []
        for body, key in zip(bodies, keys, strict=True):
            answer = await client.call("POST", f"/v2/{kind}", body, key, self._stopping)
            results.append(answer if isinstance(answer, Rejected) else None)
        return results

    async def _wait_for_job(self, client: FullStoryClient, base: str) -> dict[str, Any] | None:
        """Poll the job until it leaves PROCESSING and return its status answer; None when
        FullStory no longer knows it. Quick jobs are seen done quickly, long ones cost few calls:
        the wait starts at 0.1 s and grows by half each time up to `poll_interval`."""
        wait = min(0.1, self._poll_interval)
        while True:
            await self._sleep(wait)
            wait = min(wait * 1.5, self._poll_interval)
            answer = await client.call("GET", base, None, None, self._stopping)
            if isinstance(answer, Rejected):
                return None
            status: dict[str, Any] = orjson.loads(answer.content)
            if status.get("job", {}).get("status") in ("COMPLETED", "FAILED"):
                return status

    async def _errors(self, client: FullStoryClient, base: str) -> list[dict[str, Any]] | None:
        """Every error item of a finished job, page by page; None when FullStory refuses to
        list them. Paging stops at an empty or an already seen token, as FullStory's SDK does,
        so a repeated token cannot loop for ever."""
        errors: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            path = f"{base}/errors" + (f"?page_token={quote(token, safe='')}" if token else "")
            answer = await client.call("GET", path, None, None, self._stopping)
            if isinstance(answer, Rejected):
                log.error(
                    "cannot read a batch import's errors; its items go to the dead-letter topic",
                    extra={"path": base, "status": answer.status, "code": answer.code},
                )
                return None
            if answer.status == 202:  # results not ready yet
                await self._sleep(self._poll_interval)
                continue
            page = orjson.loads(answer.content)
            errors.extend(item for item in page.get("results", []) if isinstance(item, dict))
            token = page.get("next_page_token")
            if not token or token in seen:
                return errors
            seen.add(token)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up at once when the sink is closing."""
        try:
            async with asyncio.timeout(seconds):  # unlike wait_for, never swallows a cancel
                await self._stopping.wait()
        except TimeoutError:
            return
        raise Abandoned()
