"""The httptools connection pool against real loopback servers: aiohttp.web for well-behaved
answers, raw asyncio servers for the misbehaving ones."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme
from aiohttp import web

from consumer.metrics import Metrics
from consumer.sink import transport
from consumer.sink.client import FullStoryClient, FullStoryError, Reply
from consumer.sink.retry import Backoff
from consumer.sink.transport import ConnectionPool, Response, TransportError

KEY = "c2VjcmV0LWtleS0xMjM="
HEADERS = f"Authorization: Basic {KEY}\r\nContent-Type: application/json\r\n".encode()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()

    asyncio.run(bounded())


class Peers:
    """What an aiohttp test server saw: the client port of every request, and concurrency."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.active = 0
        self.most_active = 0
        self.headers: list[dict[str, str]] = []

    @property
    def connections(self) -> int:
        return len(set(self.ports))


@asynccontextmanager
async def aiohttp_server(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Peers]]:
    peers = Peers()

    async def counted(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.ports.append(request.transport.get_extra_info("peername")[1])
        peers.headers.append(dict(request.headers))
        peers.active += 1
        peers.most_active = max(peers.most_active, peers.active)
        try:
            return await handler(request)
        finally:
            peers.active -= 1

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", counted)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    port = runner.addresses[0][1]
    scheme = "https" if ssl_context else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}", peers
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[tuple[str, list[int]]]:
    """A plain TCP server; the list counts accepted connections (one entry each)."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()


def answers_over_connections(handler: RawHandler, requests: int) -> tuple[list[Response], int]:
    """Send `requests` GETs one after another to a raw server; their answers and how many
    connections the server accepted for them."""
    result: tuple[list[Response], int] = ([], 0)

    async def scenario() -> None:
        nonlocal result
        async with raw_server(handler) as (url, accepted):
            pool = ConnectionPool(url)
            answers = [await get(pool) for _ in range(requests)]
            await pool.aclose()
        result = (answers, len(accepted))

    run(scenario)
    return result


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's head and body, or None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b'{"ok":true}', content_type="application/json")


async def get(pool: ConnectionPool, target: str = "/x", timeout: float = 5.0) -> Response:
    return await pool.request("GET", target, HEADERS, None, timeout)


def test_sequential_requests_share_one_kept_alive_connection() -> None:
    async def scenario() -> None:
        async with aiohttp_server(ok) as (url, peers):
            pool = ConnectionPool(url, connections=4)
            for i in range(50):
                response = await pool.request("POST", f"/v2/events?i={i}", HEADERS, b"{}", 5.0)
                assert (response.status, response.content) == (200, b'{"ok":true}')
            await pool.aclose()
        assert len(peers.ports) == 50
        assert peers.connections == 1

    run(scenario)


def test_requests_carry_the_given_headers_host_and_body_and_no_accept_encoding() -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, await request.read()))
        return web.Response(text="done")

    async def scenario() -> None:
        async with aiohttp_server(echo) as (url, peers):
            pool = ConnectionPool(url + "/base/")
            await pool.request("POST", "/v2/users?uid=a%20b", HEADERS, b'{"a":1}', 5.0)
            await get(pool, "/me")
            await pool.aclose()
        assert seen == [("POST", "/base/v2/users?uid=a%20b", b'{"a":1}'), ("GET", "/base/me", b"")]
        first = peers.headers[0]
        assert first["Authorization"] == f"Basic {KEY}"
        assert first["Host"] == url.removeprefix("http://")
        assert first["Content-Length"] == "7"
        assert "Accept-Encoding" not in first
        assert "Content-Length" not in peers.headers[1]

    run(scenario)


def test_concurrency_never_exceeds_the_connection_limit() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02)
        return web.Response(text=request.path)

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, peers):
            pool = ConnectionPool(url, connections=3)
            answers = await asyncio.gather(*(get(pool, f"/{i}") for i in range(30)))
            assert [a.content for a in answers] == [f"/{i}".encode() for i in range(30)]
            await pool.aclose()
        assert peers.most_active == 3
        assert peers.connections == 3

    run(scenario)


def test_waiting_requests_are_served_in_arrival_order() -> None:
    order: list[str] = []

    async def slow(request: web.Request) -> web.Response:
        order.append(request.path)
        await asyncio.sleep(0.01)
        return web.Response(text="x")

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, _):
            pool = ConnectionPool(url, connections=1)
            tasks = []
            for i in range(8):
                tasks.append(asyncio.create_task(get(pool, f"/{i}")))
                await asyncio.sleep(0)  # each task queues before the next starts
            await asyncio.gather(*tasks)
            await pool.aclose()
        assert order == [f"/{i}" for i in range(8)]

    run(scenario)


def test_chunked_answer_is_read_whole_and_the_connection_kept() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Retry-After": "7"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"abc", b"d" * 70_000, b"e"):
            await response.write(part)
        await response.write_eof()
        return response

    async def scenario() -> None:
        async with aiohttp_server(chunked) as (url, peers):
            pool = ConnectionPool(url)
            for _ in range(3):
                response = await get(pool)
                assert response.content == b"abc" + b"d" * 70_000 + b"e"
                assert response.headers["transfer-encoding"] == "chunked"
                assert response.headers["retry-after"] == "7"
            await pool.aclose()
        assert peers.connections == 1

    run(scenario)


def test_content_length_answer_split_across_reads() -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: many reads

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=body)

    async def scenario() -> None:
        async with aiohttp_server(big) as (url, peers):
            pool = ConnectionPool(url)
            for _ in range(2):
                response = await get(pool)
                assert response.headers["content-length"] == str(len(body))
                assert response.content == body
            await pool.aclose()
        assert peers.connections == 1

    run(scenario)


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
    ],
)
def test_compressed_answers_are_decoded(encoding: str, compress: Callable[[bytes], bytes]) -> None:
    document = b'{"message":"' + b"z" * 5000 + b'"}'

    async def compressed(request: web.Request) -> web.Response:
        return web.Response(body=compress(document), headers={"Content-Encoding": encoding})

    async def scenario() -> None:
        async with aiohttp_server(compressed) as (url, _):
            pool = ConnectionPool(url)
            assert (await get(pool)).content == document
            await pool.aclose()

    run(scenario)


def test_an_unknown_or_broken_encoding_is_a_transport_error() -> None:
    async def weird(request: web.Request) -> web.Response:
        encoding = "br" if request.path == "/br" else "gzip"
        return web.Response(body=b"not compressed", headers={"Content-Encoding": encoding})

    async def scenario() -> None:
        async with aiohttp_server(weird) as (url, _):
            pool = ConnectionPool(url)
            with pytest.raises(TransportError, match="unsupported encoding 'br'"):
                await get(pool, "/br")
            with pytest.raises(TransportError, match="undecodable gzip"):
                await get(pool, "/gz")
            await pool.aclose()

    run(scenario)


def test_connection_close_answer_is_not_reused() -> None:
    async def closing(request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    async def scenario() -> None:
        async with aiohttp_server(closing) as (url, peers):
            pool = ConnectionPool(url)
            for _ in range(3):
                assert (await get(pool)).content == b"bye"
            await pool.aclose()
        assert peers.connections == 3

    run(scenario)


def test_http_1_0_answer_is_not_reused_even_if_the_server_keeps_the_socket() -> None:
    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")

    answers, connections = answers_over_connections(http10, 3)
    assert [a.content for a in answers] == [b"ok"] * 3
    assert connections == 3


def test_answer_without_length_ends_when_the_server_closes() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"part two")

    answers, connections = answers_over_connections(until_close, 2)
    assert [a.content for a in answers] == [b"part one, part two"] * 2
    assert connections == 2


def test_interim_1xx_answers_are_skipped() -> None:
    async def hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            await writer.drain()
            writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")

    answers, connections = answers_over_connections(hints, 2)
    assert [(a.status, a.content) for a in answers] == [(201, b"done")] * 2
    assert all("link" not in a.headers for a in answers)
    assert connections == 1


def test_bytes_after_an_answer_make_the_connection_unusable() -> None:
    async def trailing_junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nCont")

    answers, connections = answers_over_connections(trailing_junk, 3)
    assert [a.content for a in answers] == [b"ok"] * 3
    assert connections == 3


@pytest.mark.parametrize("close_seen", [False, True])
def test_an_idle_connection_the_server_dropped_is_replaced(close_seen: bool) -> None:
    """Unseen (the request meets the close: sent again on a new socket) or already seen."""

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if not close_seen:
            await read_request(reader)  # the next request on this socket: dropped unanswered

    async def scenario() -> None:
        async with raw_server(one_answer_per_connection) as (url, accepted):
            pool = ConnectionPool(url, connections=1)
            for _ in range(4):
                assert (await get(pool)).content == b"ok"
                if close_seen:
                    await asyncio.sleep(0.05)
            await pool.aclose()
        assert len(accepted) == 4

    run(scenario)


def test_idle_connections_are_reused_newest_first_and_dropped_when_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "IDLE_SECONDS", 0.2)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.02 if request.path == "/slow" else 0)
        return web.Response(text="x")

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, peers):
            pool = ConnectionPool(url, connections=2)
            await asyncio.gather(get(pool, "/slow"), get(pool, "/slow"))
            for _ in range(5):
                await get(pool)
            assert len(set(peers.ports[2:])) == 1  # always the newest idle one
            await asyncio.sleep(0.3)
            await get(pool)
            await pool.aclose()
        assert peers.connections == 3  # both idle ones had expired

    run(scenario)


def test_a_new_connection_closed_before_answering_is_an_error_not_a_retry() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async def scenario() -> None:
        async with raw_server(hang_up) as (url, accepted):
            pool = ConnectionPool(url)
            with pytest.raises(TransportError, match="closed the connection before answering"):
                await get(pool)
            await pool.aclose()
        assert len(accepted) == 1

    run(scenario)


def test_a_connection_closed_mid_answer_is_an_error() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")

    async def scenario() -> None:
        async with raw_server(cut) as (url, _):
            pool = ConnectionPool(url)
            with pytest.raises(TransportError, match="in the middle of an answer") as caught:
                await get(pool)
            assert KEY not in str(caught.value)
            assert caught.value.kind == "closed"
            await pool.aclose()

    run(scenario)


def test_a_malformed_answer_is_an_error_and_the_socket_is_dropped() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader) is not None:
            writer.write(b"SPDY/9 who knows\r\n\r\n")

    async def scenario() -> None:
        async with raw_server(garbage) as (url, accepted):
            pool = ConnectionPool(url)
            for _ in range(2):
                with pytest.raises(TransportError, match="unreadable answer from") as caught:
                    await get(pool)
                assert KEY not in str(caught.value)
                assert caught.value.kind == "protocol"
            await pool.aclose()
        assert len(accepted) == 2

    run(scenario)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_connection_refused_names_the_host_and_never_the_key() -> None:
    port = free_port()

    async def scenario() -> None:
        pool = ConnectionPool(f"http://127.0.0.1:{port}", connections=1)
        for _ in range(2):  # the failed connect gave its slot back
            with pytest.raises(TransportError) as caught:
                await get(pool)
            message = str(caught.value)
            assert f"cannot connect to http://127.0.0.1:{port}" in message
            assert KEY not in message and "Authorization" not in message
            assert caught.value.kind == "connect"
        await pool.aclose()

    run(scenario)


def test_client_errors_never_show_the_key() -> None:
    port = free_port()

    async def scenario() -> None:
        client = FullStoryClient(f"http://127.0.0.1:{port}", KEY, Metrics(), timeout=1.0)
        with pytest.raises(FullStoryError) as caught:
            await client.check_credentials(None)
        message = str(caught.value)
        assert f"cannot reach FullStory at http://127.0.0.1:{port}" in message
        assert f"(cannot connect to http://127.0.0.1:{port}" in message
        assert KEY not in message
        await client.aclose()

    run(scenario)


def test_an_api_key_with_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(FullStoryError) as caught:
        FullStoryClient("http://127.0.0.1:9", "abc\r\nX-Evil: 1", Metrics())
    assert "abc" not in str(caught.value)


def test_timeouts_are_errors_and_their_connections_are_discarded() -> None:
    async def first_hangs(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(5)
        return web.Response(text="fast")

    async def scenario() -> None:
        async with aiohttp_server(first_hangs) as (url, peers):
            pool = ConnectionPool(url, connections=2)
            loop = asyncio.get_running_loop()
            started = loop.time()
            longer = asyncio.create_task(get(pool, "/slow", timeout=0.6))
            await asyncio.sleep(0.05)
            with pytest.raises(TransportError, match=r"within 0.1 s \(timed out\)") as caught:
                await get(pool, "/slow", timeout=0.1)  # its deadline comes before the first's
            assert loop.time() - started < 0.5
            assert KEY not in str(caught.value)
            assert caught.value.kind == "timeout"
            with pytest.raises(TransportError, match=r"within 0.6 s \(timed out\)"):
                await longer
            assert 0.6 <= loop.time() - started < 1.5
            assert (await get(pool, "/fast")).content == b"fast"
            await pool.aclose()
        assert peers.connections == 3

    run(scenario)


def test_waiting_for_a_connection_counts_toward_the_timeout() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="x")

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, _):
            pool = ConnectionPool(url, connections=1)
            busy = asyncio.create_task(get(pool))
            await asyncio.sleep(0.05)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TransportError, match="timed out"):
                await get(pool, timeout=0.05)
            assert loop.time() - started < 0.2  # not when the busy connection came free
            assert not busy.done()
            assert (await busy).status == 200
            assert (await get(pool)).status == 200
            await pool.aclose()

    run(scenario)


def test_cancelling_requests_leaves_the_pool_usable() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2 if request.path == "/slow" else 0)
        return web.Response(text=request.path)

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, peers):
            pool = ConnectionPool(url, connections=1)
            in_flight = asyncio.create_task(get(pool, "/slow"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(get(pool, "/waiting"))
            await asyncio.sleep(0.01)
            waiting.cancel()
            in_flight.cancel()
            for task in (waiting, in_flight):
                with pytest.raises(asyncio.CancelledError):
                    await task
            for _ in range(3):
                assert (await get(pool, "/after")).content == b"/after"
            await pool.aclose()
        assert peers.ports.count(peers.ports[-1]) == 3  # one new socket for the three
        assert peers.connections == 2  # the half-read one was dropped

    run(scenario)


def test_a_connection_handed_to_a_cancelled_waiter_goes_to_the_next() -> None:
    async def scenario() -> None:
        async with aiohttp_server(ok) as (url, peers):
            pool = ConnectionPool(url, connections=1)
            second = asyncio.create_task(get(pool, "/second"))
            third = asyncio.create_task(get(pool, "/third"))
            await get(pool, "/first")  # both queued behind it; its connection goes to `second`
            second.cancel()  # ... which is cancelled before it could run
            assert (await third).status == 200
            with pytest.raises(asyncio.CancelledError):
                await second
            await pool.aclose()
        assert len(peers.ports) == 2
        assert peers.connections == 1

    run(scenario)


def test_aclose_closes_every_connection_and_refuses_new_requests() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2 if request.path == "/slow" else 0)
        return web.Response(text="x")

    async def scenario() -> None:
        async with aiohttp_server(slow) as (url, _):
            pool = ConnectionPool(url, connections=2)
            await asyncio.gather(get(pool), get(pool))  # two idle connections
            busy = asyncio.create_task(get(pool, "/slow"))
            waiting = asyncio.create_task(get(pool, "/slow"))
            blocked = asyncio.create_task(get(pool, "/slow"))
            await asyncio.sleep(0.05)
            await pool.aclose()
            for task in (busy, waiting, blocked):
                with pytest.raises(TransportError, match="closed"):
                    await task
            with pytest.raises(TransportError, match="is closed"):
                await get(pool)

    run(scenario)


def test_https_with_a_trusted_certificate() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def scenario() -> None:
        async with aiohttp_server(ok, server_context) as (url, peers):
            pool = ConnectionPool(url, ssl_context=client_context)
            for _ in range(3):
                response = await pool.request("POST", "/v2/events", HEADERS, b"{}", 5.0)
                assert response.content == b'{"ok":true}'
            await pool.aclose()
            untrusting = ConnectionPool(url)  # the system CAs do not know trustme's
            with pytest.raises(TransportError, match=r"cannot connect.*CERTIFICATE_VERIFY_FAILED"):
                await get(untrusting)
            await untrusting.aclose()
        assert peers.connections == 1

    run(scenario)


def test_targets_and_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="not an http"):
        ConnectionPool("ftp://example.com")

    async def scenario() -> None:
        pool = ConnectionPool("http://127.0.0.1:9")
        for target in ("/a b", "/a\r\nX: y"):
            with pytest.raises(ValueError, match="percent-encoded"):
                await get(pool, target)
        await pool.aclose()

    run(scenario)


def test_client_call_honours_retry_after_and_sends_the_idempotency_key() -> None:
    answers = [503, 200]

    async def flaky(request: web.Request) -> web.Response:
        status = answers.pop(0)
        return web.Response(status=status, text="{}", headers={"Retry-After": "0.2"})

    async def scenario() -> None:
        async with aiohttp_server(flaky) as (url, peers):
            client = FullStoryClient(url, KEY, Metrics(), backoff=Backoff(0.001, 0.002))
            loop = asyncio.get_running_loop()
            started = loop.time()
            reply = await client.call("POST", "/v2/events", b"{}", "key-1", asyncio.Event())
            assert reply == Reply(200, b"{}")
            assert loop.time() - started >= 0.2  # the Retry-After floor, not the tiny backoff
            with pytest.raises(ValueError, match="control characters"):
                await client.call("POST", "/v2/events", b"{}", "a\r\nX: y", asyncio.Event())
            await client.aclose()
        assert [h["Idempotency-Key"] for h in peers.headers] == ["key-1", "key-1"]
        assert peers.headers[0]["Integration-Source"].startswith("segment-fullstory-consumer/")
        assert peers.connections == 1

    run(scenario)


@pytest.mark.parametrize("configured", [KEY, f"Basic {KEY}", f"  basic  {KEY}\n"])
def test_the_key_is_sent_once_behind_basic_even_when_configured_with_the_scheme(
    configured: str,
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="{}")

    async def scenario() -> None:
        async with aiohttp_server(ok) as (url, peers):
            client = FullStoryClient(url, configured, Metrics())
            await client.call("POST", "/v2/events", b"{}", "key-1", asyncio.Event())
            await client.aclose()
        assert peers.headers[0]["Authorization"] == f"Basic {KEY}"

    run(scenario)
