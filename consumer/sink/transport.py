"""A lean HTTP/1.1 keep-alive client for one origin: `asyncio.Protocol` connections whose
answers are parsed by httptools (llhttp, the parser uvicorn uses), pooled LIFO.

Why not aiohttp's client: most of its CPU per request goes to per-request machinery (header
multidicts, URL objects, tracing hooks, stream readers), and in realtime mode one request per
event is most of the service's CPU (figures in `consumer.sink.client`). This transport writes
one pre-serialised request and gets one callback-parsed answer.

What it does and does not do:
- Requests are bytes built by `%` formatting and sent with one `write`; no `Accept-Encoding`
  is sent, and a gzip or deflate answer is still decoded. Writes ignore socket backpressure
  (`pause_writing`): bodies are at most a few MB, so buffering one is cheaper than waiting.
- At most `connections` sockets; idle ones are reused newest first and dropped after
  `IDLE_SECONDS`; callers wait for a free one in arrival order, within their timeout.
- The timeout bounds the whole request. Waiting for or opening a socket runs under
  `asyncio.timeout_at`, but the answer is not: that costs 6-9 µs a request (a Timeout, a timer
  pushed on and cancelled from the loop's heap), a fifth to a quarter of the transport's CPU. A
  connection instead carries its deadline, and one timer per pool, set for the earliest
  deadline, fails the overdue answers: with equal timeouts it fires about once per timeout.
- Every failure (connect, reset, close mid-answer, unparsable answer, timeout) is one
  `TransportError` naming the origin, never a header; the connection is closed, never reused.
  A request whose reused idle connection turns out closed before any answer byte is sent once
  more on a new connection: the server had dropped the idle socket, which is not an error
  (safe for FullStory, whose writes all carry an Idempotency-Key).
- Through an HTTP proxy (`consumer.proxy`): an http origin gets absolute-form requests on
  sockets to the proxy; an https origin gets, per socket, a CONNECT answered 200, then TLS to
  the origin over that socket (`loop.start_tls`). Both only change how a socket is opened and
  the request line's pre-built prefix, so a request costs what it costs directly. Written here
  rather than taken from a library because that is all a proxy needs of this client: a proxy's
  refusal is a TransportError of kind `proxy` naming the proxy, never its credentials.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import time
import zlib
from collections import deque
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools

from consumer.proxy import Proxy, refusal

IDLE_SECONDS = 30.0
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PARSE_ERRORS = (httptools.HttpParserError, httptools.HttpParserUpgrade)


class TransportError(Exception):
    """The request got no usable answer: connecting, sending or reading it failed. `kind`
    (connect, timeout, closed, protocol, proxy, shutdown) is what the retry metric counts."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Response(NamedTuple):
    """A complete answer; header names are lower-case, repeated headers joined with ", "."""

    status: int
    headers: dict[str, str]
    content: bytes


class _Connection(asyncio.Protocol):
    """One socket: sends a request, parses its answer with httptools callbacks."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: str) -> None:
        self._loop = loop
        self._origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._status = 0
        self._until_eof = False  # the answer has no length: its body ends when the socket does
        self.received = False  # any byte of the current answer arrived
        self.keep_alive = False  # the last answer allows another request on this socket
        self.closed = False
        self.idle_since = 0.0
        self.deadline = 0.0  # loop time by which the current answer must be complete
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except _PARSE_ERRORS as exc:
            self._fail(f"unreadable answer from {self._origin} ({exc})", "protocol")
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.lost.done():
            self.lost.set_result(None)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._until_eof:
            self._complete(waiter)
        elif self.received:
            self._fail(f"{self._origin} closed the connection in the middle of an answer")
        else:
            reason = f" ({exc})" if exc else ""
            self._fail(f"{self._origin} closed the connection before answering{reason}")

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._waiter is None:
            raise TransportError("an answer that no request asked for", "protocol")
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._headers
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        status = self._status = self._parser.get_status_code()
        headers = self._headers
        self._until_eof = (
            status >= 200
            and status not in (204, 304)
            and "content-length" not in headers
            and "transfer-encoding" not in headers
        )

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim answer (100 Continue, 103 Early Hints): skip it
            return
        self.keep_alive = self._parser.should_keep_alive()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._complete(waiter)

    # used by the pool

    def exchange(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        """Send `request`; the future gets its answer, a TransportError, or TimeoutError once
        the pool's timer finds it past `deadline`."""
        self.received = self.keep_alive = self._until_eof = False
        self.deadline = deadline
        self._waiter = waiter = self._loop.create_future()
        if self.closed or self._transport is None:
            self._fail(f"{self._origin} closed the connection before answering")
        else:
            self._transport.write(request)
        return waiter

    def awaiting(self) -> bool:
        """A request was sent and its answer is not complete yet."""
        return self._waiter is not None and not self._waiter.done()

    def expire(self) -> None:
        """The deadline passed: fail the answer with TimeoutError and drop the socket."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _complete(self, waiter: asyncio.Future[Response]) -> None:
        self._waiter = None
        waiter.set_result(Response(self._status, self._headers, b"".join(self._body)))

    def _fail(self, message: str, kind: str = "closed") -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError(message, kind))


class _ProxyReply(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT: `status` gets its status code and reason once the
    head is complete. Nothing may follow the head: the origin speaks only after our TLS hello."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proxy: Proxy) -> None:
        self.status: asyncio.Future[tuple[int, str]] = loop.create_future()
        self._proxy = proxy
        self._data = b""

    def data_received(self, data: bytes) -> None:
        if self.status.done():
            return
        self._data += data
        head, blank, rest = self._data.partition(b"\r\n\r\n")
        if not blank:
            if len(self._data) > 65536:
                self._fail("sent an endless answer to CONNECT")
            return
        parts = head.split(b"\r\n", 1)[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            self._fail("answered CONNECT with something that is not HTTP")
        elif rest and parts[1] == b"200":
            self._fail("sent bytes after its answer to CONNECT")
        else:
            reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
            self.status.set_result((int(parts[1]), reason))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail("closed the connection before answering CONNECT")

    def _fail(self, what: str) -> None:
        if not self.status.done():
            self.status.set_exception(TransportError(f"{self._proxy} {what}", "proxy"))


class _Route:
    """Where a pool's sockets go and how each opens: straight to the origin, or through an HTTP
    proxy (absolute-form requests to an http origin; per socket, a CONNECT then TLS to an https
    one). Also the parts of every request line that depend on it: the Host line and the prefix
    of the target."""

    def __init__(
        self, base_url: str, ssl_context: ssl.SSLContext | None, proxy: Proxy | None
    ) -> None:
        url = urlsplit(base_url)
        if url.scheme not in _DEFAULT_PORTS or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = url.hostname.encode("idna").decode("ascii")
        self.port = url.port or _DEFAULT_PORTS[url.scheme]
        self.ssl = (ssl_context or ssl.create_default_context()) if url.scheme == "https" else None
        self.origin = f"{url.scheme}://{url.netloc.rpartition('@')[2]}"
        bracketed = f"[{self.host}]" if ":" in self.host else self.host
        authority = bracketed if url.port is None else f"{bracketed}:{self.port}"
        self.host_line = f"Host: {authority}\r\n".encode("ascii")
        self.prefix = url.path.rstrip("/").encode("ascii")
        self.proxy = proxy
        self.address = (self.host, self.port) if proxy is None else (proxy.host, proxy.port)
        self.tunnel = b""  # the CONNECT request that opens each socket to an https origin
        if proxy is not None and self.ssl is None:  # absolute-form, credentials on each
            self.prefix = f"http://{authority}".encode("ascii") + self.prefix
            self.host_line += proxy.authorization
        elif proxy is not None:
            target = f"{bracketed}:{self.port}".encode("ascii")
            self.tunnel = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
                target,
                target,
                proxy.authorization,
            )

    async def open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A new connection to the origin (raises OSError, or TransportError from a proxy)."""
        if self.tunnel:
            return await self._open_tunnel(loop)
        _, connection = await loop.create_connection(
            lambda: _Connection(loop, self.origin),
            *self.address,
            ssl=self.ssl,
            server_hostname=self.host if self.ssl else None,
        )
        return connection

    async def _open_tunnel(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        """A socket to the proxy, a CONNECT to the origin on it, then TLS to the origin."""
        proxy = self.proxy
        assert proxy is not None and self.ssl is not None
        raw, reply = await loop.create_connection(lambda: _ProxyReply(loop, proxy), *self.address)
        try:
            raw.write(self.tunnel)
            status, reason = await reply.status
            if status != 200:
                raise TransportError(refusal(proxy, status, reason), "proxy")
            connection = _Connection(loop, self.origin)
            tls = await loop.start_tls(raw, connection, self.ssl, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        if tls is None:  # only when the loop has no TLS at all
            raise TransportError(f"no TLS transport to {self.origin}", "connect")
        connection.connection_made(tls)
        return connection


class ConnectionPool:
    """Keep-alive connections to the origin of `base_url` (http or https; a path in it
    prefixes every target), at most `connections` of them."""

    def __init__(
        self,
        base_url: str,
        *,
        connections: int = 32,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        route = self._route = _Route(base_url, ssl_context, proxy)
        self._origin = route.origin  # the request path's parts, read per request: kept here
        self._host_line = route.host_line
        self._prefix = route.prefix
        self.proxy = proxy
        self._limit = max(1, connections)
        self._count = 0  # open or opening connections
        self._idle: deque[_Connection] = deque()  # newest on the right
        self._all: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def request(
        self, method: str, target: str, headers: bytes, body: bytes | None, timeout: float
    ) -> Response:
        """Send one request and read its whole answer within `timeout` seconds, waiting for a
        connection included. `headers` are complete `Name: value\\r\\n` lines; Host and
        Content-Length are added here."""
        if " " in target or not target.isprintable():
            raise ValueError(f"target {target!r} must be percent-encoded")
        if body is None:
            data = b"%s %s%s HTTP/1.1\r\n%s%s\r\n" % (
                method.encode(),
                self._prefix,
                target.encode(),
                self._host_line,
                headers,
            )
        else:
            data = b"%s %s%s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
                method.encode(),
                self._prefix,
                target.encode(),
                self._host_line,
                headers,
                len(body),
                body,
            )
        try:
            response = await self._send(data, asyncio.get_running_loop().time() + timeout)
        except TimeoutError:
            raise TransportError(
                f"no answer from {self._origin} within {timeout:g} s (timed out)", "timeout"
            ) from None
        encoding = response.headers.get("content-encoding")
        if encoding is None or encoding == "identity":
            return response
        return response._replace(content=self._decode(encoding, response.content))

    async def aclose(self) -> None:
        """Close every connection; waiting and later requests fail with TransportError."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        error = TransportError(f"the connection pool for {self._origin} is closed", "shutdown")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self._idle.clear()
        connections = list(self._all)
        for connection in connections:
            connection.close()
        if connections:
            await asyncio.wait([c.lost for c in connections], timeout=1.0)

    async def _send(self, data: bytes, deadline: float) -> Response:
        fresh = False
        while True:
            connection = None if fresh else self._idle_connection()
            reused = connection is not None
            if connection is None:
                async with asyncio.timeout_at(deadline):
                    connection, reused = await self._acquire(fresh)
            if deadline < self._timer_at:
                self._set_timer(deadline)
            try:
                response = await connection.exchange(data, deadline)
            except TransportError:
                self._release(connection, False)
                if reused and not connection.received and not fresh:
                    fresh = True  # the server had closed the idle socket: once more, anew
                    continue
                raise
            except BaseException:  # timed out or cancelled mid-answer: the socket is dirty
                self._release(connection, False)
                raise
            self._release(connection, connection.keep_alive)
            return response

    def _idle_connection(self) -> _Connection | None:
        """The most recently used idle connection still worth using (older ones are closed)."""
        idle = self._idle
        oldest = time.monotonic() - IDLE_SECONDS
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since > oldest:
                return connection
            self._discard(connection)
        return None

    async def _acquire(self, fresh: bool) -> tuple[_Connection, bool]:
        """When no idle one is at hand: a new connection, or one released by another request
        (second item True). `fresh` asks for a new socket."""
        if self._closed:
            raise TransportError(f"the connection pool for {self._origin} is closed", "shutdown")
        if fresh and self._idle and self._count >= self._limit:
            self._discard(self._idle.popleft())  # make room for the new socket
        if self._count < self._limit:
            self._count += 1
            return await self._connect(), False
        granted = await self._wait()
        if granted is None:  # a slot was handed over: open its socket
            return await self._connect(), False
        if not fresh:
            return granted, True
        self._all.discard(granted)
        granted.close()
        return await self._connect(), False

    def _set_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._expire_overdue)
        self._timer_at = when

    def _expire_overdue(self) -> None:
        """The timer: fail the answers past their deadline, then wait for the next deadline."""
        self._timer, self._timer_at = None, math.inf
        now = asyncio.get_running_loop().time()
        earliest = math.inf
        for connection in list(self._all):
            if connection.awaiting():
                if connection.deadline <= now:
                    connection.expire()
                else:
                    earliest = min(earliest, connection.deadline)
        if earliest < math.inf:
            self._set_timer(earliest)

    async def _wait(self) -> _Connection | None:
        """Queue for the next released connection (or None: a free slot, already counted)."""
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                granted = waiter.result()  # handed over just as we were cancelled: pass it on
                if granted is None:
                    self._free_slot()
                else:
                    self._release(granted, True)
            raise

    async def _connect(self) -> _Connection:
        """Open a socket in a slot already counted; on failure the slot is freed."""
        try:
            connection = await self._route.open(asyncio.get_running_loop())
        except OSError as exc:
            self._free_slot()
            where = self._origin if self.proxy is None else self.proxy
            raise TransportError(f"cannot connect to {where} ({exc})", "connect") from None
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            connection.close()
            self._free_slot()
            raise TransportError(f"the connection pool for {self._origin} is closed", "shutdown")
        self._all.add(connection)
        return connection

    def _release(self, connection: _Connection, reusable: bool) -> None:
        """Return a connection after a request: to the next waiter, to the idle stack, or
        closed (then its slot goes to the next waiter)."""
        if not reusable or connection.closed or self._closed:
            self._discard(connection)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        now = time.monotonic()
        connection.idle_since = now
        idle = self._idle
        idle.append(connection)
        while idle[0].idle_since < now - IDLE_SECONDS:
            self._discard(idle.popleft())

    def _discard(self, connection: _Connection) -> None:
        """Close a connection and free its slot."""
        self._all.discard(connection)
        connection.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """One connection fewer: the slot goes to the next waiter (who opens a socket), if any."""
        self._count -= 1
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                self._count += 1
                waiter.set_result(None)
                return

    def _decode(self, encoding: str, content: bytes) -> bytes:
        """Undo a gzip or deflate Content-Encoding (sent although we never asked for it)."""
        try:
            if encoding == "gzip":
                return zlib.decompress(content, 16 + zlib.MAX_WBITS)
            if encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers do
                try:
                    return zlib.decompress(content)
                except zlib.error:
                    return zlib.decompress(content, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise TransportError(
                f"undecodable {encoding} answer from {self._origin} ({exc})", "protocol"
            ) from None
        raise TransportError(
            f"{self._origin} answered in unsupported encoding {encoding!r}", "protocol"
        )
