"""The aiohttp app of the FullStory emulator: API routes, control routes under /emulator/, serve().

Per-request work is kept to a minimum (no per-request logging, orjson, precomputed bodies) so
the emulator is never the bottleneck of a benchmark.

Order of checks on an API request: outage ("refuse" drops the connection before reading), body
read, latency, outage 503, auth 401, per-key rate limit 429, random 500 (`error_rate`),
idempotency replay/conflict, JSON parsing, `reject_matching` rules, validation, effect.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from consumer.emulator import batch
from consumer.emulator.jobs import BatchJob
from consumer.emulator.state import (
    DROPPED,
    EmulatorConfig,
    EmulatorState,
    FaultError,
    retry_after_seconds,
)
from consumer.emulator.validation import Invalid, error_code, validate_event, validate_user
from consumer.errors import UserError

STATE = web.AppKey("state", EmulatorState)
JSON = "application/json"
MAX_BODY = 64 * 1024 * 1024  # room for batch imports of 50,000 items
EMPTY = b"{}"


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """FullStory's `ErrorResponse`; the code is the status's unless given."""
    return orjson.dumps({"message": message, "code": code or error_code(status)})


UNAUTHORIZED = error_body(401, "missing or invalid API key")
SERVER_ERROR = error_body(500, "injected server error")
OUTAGE = error_body(503, "service unavailable (emulated outage)")
TOO_MANY = error_body(429, "rate limit exceeded")
CONFLICT = error_body(400, "Idempotency-Key reused with a different request body")

# Outcome of the synchronous part of a request: status, body, Retry-After, replay.
Outcome = tuple[int, bytes, int | None, bool]


@dataclass(frozen=True)
class Endpoint:
    """One API route: how its document is handled and which faults apply to it."""

    # Validates, then acts; raises Invalid (400) or Answer. Gets the document, the
    # Idempotency-Key and the caller's API key.
    apply: Callable[[EmulatorState, Any, str | None, str], bytes]
    has_body: bool  # the document is the JSON body, else the query and path parameters
    idempotent: bool  # honours Idempotency-Key
    faultable: bool  # subject to error_rate and reject_matching


class Answer(Exception):
    """An answer other than 200 decided by an endpoint (404, 429, 202...)."""

    def __init__(self, status: int, body: bytes, retry_after: int | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.retry_after = retry_after


def _post_user(state: EmulatorState, body: Any, _key: str | None, _api_key: str) -> bytes:
    return orjson.dumps({"id": state.upsert_user(validate_user(body))})


def _post_event(state: EmulatorState, body: Any, _key: str | None, api_key: str) -> bytes:
    validate_event(body)
    state.count_event(api_key)
    return EMPTY


def _delete_user(
    state: EmulatorState, query: dict[str, str], _key: str | None, _api_key: str
) -> bytes:
    uid = query.get("uid")
    if not uid:
        raise Invalid("uid is required", "required_field")
    state.delete_user(uid)
    return EMPTY


def _me(state: EmulatorState, _query: dict[str, str], _key: str | None, _api_key: str) -> bytes:
    config = state.config
    return orjson.dumps({"email": "emulator@example.com", "orgId": config.org_id, "role": "ADMIN"})


POST_USER = Endpoint(_post_user, has_body=True, idempotent=True, faultable=True)
POST_EVENT = Endpoint(_post_event, has_body=True, idempotent=True, faultable=True)
DELETE_USER = Endpoint(_delete_user, has_body=False, idempotent=False, faultable=True)
GET_ME = Endpoint(_me, has_body=False, idempotent=False, faultable=False)


def _batch_create(kind: str) -> Endpoint:
    def apply(state: EmulatorState, body: Any, key: str | None, api_key: str) -> bytes:
        try:
            return batch.create(state, kind, body, key, api_key)
        except batch.TooManyJobs as exc:
            raise Answer(429, error_body(429, str(exc)), exc.retry_after) from None

    return Endpoint(apply, has_body=True, idempotent=True, faultable=True)


def _job(state: EmulatorState, kind: str, params: dict[str, str]) -> BatchJob:
    job = batch.find(state, kind, params["job_id"])
    if job is None:
        raise Answer(404, error_body(404, f"no {kind} batch import job {params['job_id']!r}"))
    return job


def _batch_status(kind: str) -> Endpoint:
    def apply(
        state: EmulatorState, params: dict[str, str], _key: str | None, _api_key: str
    ) -> bytes:
        return orjson.dumps(_job(state, kind, params).as_json())

    return Endpoint(apply, has_body=False, idempotent=False, faultable=True)


def _batch_results(kind: str, which: str) -> Endpoint:
    def apply(
        state: EmulatorState, params: dict[str, str], _key: str | None, _api_key: str
    ) -> bytes:
        job = _job(state, kind, params)
        if job.status == "PROCESSING":
            raise Answer(202, EMPTY)
        return batch.page(job, which, params, state.faults.batch_page_size)

    return Endpoint(apply, has_body=False, idempotent=False, faultable=True)


def _process(
    state: EmulatorState,
    endpoint: Endpoint,
    path: str,
    request: web.Request,
    raw: bytes,
    key: str | None,
) -> Outcome:
    """Everything after the body read and latency; synchronous, so idempotency is atomic."""
    faults = state.faults
    if state.outage_mode() is not None:
        return 503, OUTAGE, None, False
    auth = request.headers.get("Authorization", "")
    api_key = auth[6:] if auth[:6].lower() == "basic " else None
    if api_key is None or api_key not in state.api_keys:
        return 401, UNAUTHORIZED, None, False
    if faults.rate_limit is not None:
        wait = state.rate_wait(api_key)
        if wait > 0.0:
            return 429, TOO_MANY, retry_after_seconds(wait), False
    if endpoint.faultable and state.random_error():
        return 500, SERVER_ERROR, None, False
    digest = b""
    if key is not None and endpoint.idempotent:
        digest = state.digest(raw)
        stored = state.idempotency.get((path, key))
        if stored is not None:
            if stored[0] != digest:
                return 400, CONFLICT, None, False
            return stored[1], stored[2], None, True
    outcome = _evaluate(state, endpoint, path, request, raw, key, api_key)
    if digest:
        state.remember(path, key or "", digest, outcome[0], outcome[1])
    return outcome


def _evaluate(
    state: EmulatorState,
    endpoint: Endpoint,
    path: str,
    request: web.Request,
    raw: bytes,
    key: str | None,
    api_key: str,
) -> Outcome:
    document: Any
    if endpoint.has_body:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 400, error_body(400, "request body is not valid JSON"), None, False
    else:
        document = {**request.query, **request.match_info}
    if endpoint.faultable and state.faults.reject_matching:
        rule = state.match_rule(path, document)
        if rule is not None:
            message = rule.message or "rejected by an emulator reject_matching rule"
            retry_after = 1 if rule.status == 429 else None
            return rule.status, error_body(rule.status, message), retry_after, False
    try:
        return 200, endpoint.apply(state, document, key, api_key), None, False
    except Invalid as exc:
        return 400, error_body(400, str(exc), exc.code), None, False
    except Answer as answer:
        return answer.status, answer.body, answer.retry_after, False


def _api(endpoint: Endpoint) -> Callable[[web.Request], Any]:
    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE]
        method, path, query = request.method, request.path, request.query_string
        key = request.headers.get("Idempotency-Key")
        if state.outage_mode() == "refuse":
            state.record(method, path, query, b"", key, False, DROPPED)
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response()  # never sent: the connection is gone
        raw = await request.read() if endpoint.has_body else b""
        latency = state.faults.latency_ms
        if latency > 0.0:
            await asyncio.sleep(latency / 1000.0)
        status, body, retry_after, replay = _process(state, endpoint, path, request, raw, key)
        state.record(method, path, query, raw, key, replay, status)
        headers = None if retry_after is None else {"Retry-After": str(retry_after)}
        return web.Response(status=status, body=body, content_type=JSON, headers=headers)

    return handler


async def _not_found(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = await request.read()
    state.record(request.method, request.path, request.query_string, raw, None, False, 404)
    body = error_body(404, f"no such endpoint: {request.method} {request.path}")
    return web.Response(status=404, body=body, content_type=JSON)


# -- control routes (no auth) ----------------------------------------------------------------


def _json_response(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type=JSON)


def _bad_request(message: str) -> web.Response:
    return web.Response(status=400, body=error_body(400, message), content_type=JSON)


async def _requests(request: web.Request) -> web.Response:
    """`?all=1` adds rejected requests; `?since=N` starts after seq N; `?path=` filters."""
    query = request.query
    try:
        since = int(query.get("since", "0"))
    except ValueError:
        return _bad_request("since must be an integer")
    everything = query.get("all", "0") not in ("0", "false", "")
    state = request.app[STATE]
    batch.settle(state)
    body = state.requests_json(everything, since, query.get("path"))
    return web.Response(body=body, content_type=JSON)


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE]
    batch.settle(state)
    return _json_response(state.stats())


async def _users(request: web.Request) -> web.Response:
    return _json_response(list(request.app[STATE].users.values()))


async def _get_faults(request: web.Request) -> web.Response:
    return _json_response(request.app[STATE].faults.as_json())


async def _set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.apply_faults(orjson.loads(await request.read()))
    except orjson.JSONDecodeError:
        return _bad_request("body is not valid JSON")
    except FaultError as exc:
        return _bad_request(str(exc))
    return _json_response(state.faults.as_json())


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(body=EMPTY, content_type=JSON)


def create_app(config: EmulatorConfig) -> web.Application:
    """Build the emulator app; its state lives in `app[STATE]`."""
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE] = EmulatorState(config)
    router = app.router
    router.add_get("/me", _api(GET_ME))
    router.add_post("/v2/users", _api(POST_USER))
    router.add_delete("/v2/users", _api(DELETE_USER))
    router.add_post("/v2/events", _api(POST_EVENT))
    for kind in batch.KINDS:
        base = f"/v2/{kind}/batch"
        router.add_post(base, _api(_batch_create(kind)))
        router.add_get(base + "/{job_id}", _api(_batch_status(kind)))
        for which in ("imports", "errors"):
            router.add_get(f"{base}/{{job_id}}/{which}", _api(_batch_results(kind, which)))
    router.add_get("/emulator/requests", _requests)
    router.add_get("/emulator/stats", _stats)
    router.add_get("/emulator/users", _users)
    router.add_get("/emulator/faults", _get_faults)
    router.add_post("/emulator/faults", _set_faults)
    router.add_post("/emulator/reset", _reset)
    router.add_route("*", "/{tail:.*}", _not_found)
    return app


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server side of HTTPS from a PEM certificate (chain) and its key (None: in the
    certificate's file); UserError when they cannot be used."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError included
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise UserError(
            f"cannot use --tls-cert {cert} / --tls-key {key} ({reason}); give a PEM "
            "certificate and its PEM key"
        ) from None
    return context


async def _serve(config: EmulatorConfig, host: str, port: int, tls: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(
        create_app(config), access_log=None, handle_signals=False, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True, ssl_context=tls)
        try:
            await site.start()
        except OSError as exc:
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port"
            ) from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        print(f"emulator listening on {scheme}://{shown}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(
    config: EmulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8080,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Run the emulator until SIGTERM or SIGINT (blocking), over HTTPS with `tls` (see
    `tls_context`). Port 0 picks a free port."""
    asyncio.run(_serve(config, host, port, tls))
