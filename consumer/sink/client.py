"""The FullStory HTTP client: one pooled keep-alive connection set, retries until an answer that
settles the request, and errors that tell the user what to fix (never showing the API key)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import orjson

from consumer import __version__
from consumer.metrics import Metrics
from consumer.sink.retry import Backoff, is_retryable_status, parse_retry_after
from consumer.transform import Request


class FullStoryError(Exception):
    """A problem with the FullStory account or API that the operator must fix."""


class AuthenticationError(FullStoryError):
    """FullStory refused the API key; sending anything else would fail the same way."""


class OrgMismatchError(FullStoryError):
    """The API key belongs to another org than the one configured."""


class Abandoned(Exception):
    """The request was given up because the service is stopping; its record stays uncommitted."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """FullStory answered with a final 4xx for this request: the record goes to the DLQ."""

    status: int
    code: str
    message: str


def _endpoint(path: str) -> str:
    return path.split("?", 1)[0]


def _error_body(response: httpx.Response) -> tuple[str, str]:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return "unknown", response.text[:200]
    if isinstance(data, dict):
        return str(data.get("code", "unknown")), str(data.get("message", ""))[:500]
    return "unknown", response.text[:200]


class FullStoryClient:
    """Sends mapped requests to FullStory; `send` returns only once the outcome is final."""

    def __init__(
        self,
        api_host: str,
        api_key: str,
        metrics: Metrics,
        *,
        timeout: float = 10.0,
        connections: int = 32,
        backoff: Backoff | None = None,
    ) -> None:
        self._api_host = api_host.rstrip("/")
        self._metrics = metrics
        self._backoff = backoff or Backoff()
        headers = {
            "Authorization": f"Basic {api_key}",
            "Content-Type": "application/json",
            "Integration-Source": f"segment-fullstory-consumer/{__version__}",
        }
        # One single-connection client per lane: httpx's shared pool serialises badly under
        # many concurrent requests (measured: ~170 req/s with 64 connections in one pool).
        self._pool = [
            httpx.AsyncClient(
                base_url=self._api_host,
                headers=headers,
                timeout=timeout,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            for _ in range(max(1, connections))
        ]

    async def aclose(self) -> None:
        for http in self._pool:
            await http.aclose()

    async def check_credentials(self, expected_org: str | None) -> str:
        """GET /me: proves the key works and, when an org is configured, that it is that org's."""
        try:
            response = await self._pool[0].get("/me")
        except httpx.TransportError as exc:
            raise FullStoryError(
                f"cannot reach FullStory at {self._api_host} ({type(exc).__name__}: {exc}); "
                "check --api-host and the network"
            ) from None
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"FullStory at {self._api_host} rejected the API key (HTTP "
                f"{response.status_code}); set a valid server API key with --api-key or "
                "FULLSTORY_API_KEY"
            )
        if response.status_code != 200:
            code, message = _error_body(response)
            raise FullStoryError(
                f"FullStory at {self._api_host} answered GET /me with HTTP "
                f"{response.status_code} ({code}: {message})"
            )
        org = str(orjson.loads(response.content).get("orgId", ""))
        if expected_org and org != expected_org:
            raise OrgMismatchError(
                f"the API key belongs to FullStory org {org!r}, but the settings name org "
                f"{expected_org!r}; use the key of org {expected_org!r} or fix the 'org' setting"
            )
        return org

    async def send(
        self, request: Request, stopping: asyncio.Event, lane: int = 0
    ) -> Rejected | None:
        """Send one mapped request; None means FullStory accepted it (see `call`)."""
        content = orjson.dumps(request.body) if request.body is not None else None
        result = await self.call(
            request.method, request.path, content, request.idempotency_key, stopping, lane
        )
        return result if isinstance(result, Rejected) else None

    async def call(
        self,
        method: str,
        path: str,
        content: bytes | None,
        idempotency_key: str | None,
        stopping: asyncio.Event,
        lane: int = 0,
    ) -> httpx.Response | Rejected:
        """One API call, retried until FullStory gives an answer that settles it: the 2xx
        response, or a final 4xx as Rejected. 429, 408, 5xx and network errors are retried with
        backoff (Retry-After as a floor) for as long as it takes.

        Raises AuthenticationError (fatal for the whole service) and Abandoned (stopping).
        """
        endpoint = _endpoint(path)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        http = self._pool[lane % len(self._pool)]
        metrics = self._metrics
        attempt = 0
        while True:
            if stopping.is_set() and attempt > 0:
                raise Abandoned()
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                response = await http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as exc:
                metrics.requests.labels(endpoint, "error").inc()
                cause = type(exc).__name__
            else:
                status = response.status_code
                metrics.request_latency.labels(endpoint).observe(time.perf_counter() - started)
                metrics.requests.labels(endpoint, f"{status // 100}xx").inc()
                if status < 300:
                    return response
                if status in (401, 403):
                    raise AuthenticationError(
                        f"FullStory rejected the API key on {method} {endpoint} "
                        f"(HTTP {status}); set a valid server API key"
                    )
                if not is_retryable_status(status):
                    code, message = _error_body(response)
                    return Rejected(status, code, message)
                cause = str(status)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after:
                    metrics.retry_after_seconds.inc(retry_after)
            metrics.retries.labels(cause).inc()
            await self._wait(self._backoff.delay(attempt, retry_after), stopping)
            attempt += 1

    @staticmethod
    async def _wait(seconds: float, stopping: asyncio.Event) -> None:
        """Sleep, but wake at once when the service starts stopping."""
        try:
            async with asyncio.timeout(seconds):  # unlike wait_for, never swallows a cancel
                await stopping.wait()
        except TimeoutError:
            return
        raise Abandoned()
