"""The connection pool through a proxy, against a small fake proxy on loopback that records
what it was asked: CONNECT tunnels (then TLS to the origin), absolute-form requests, and the
proxy's refusals and misbehaviour as TransportErrors of kind `proxy` without credentials."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme
from aiohttp import web

from consumer.proxy import parse_proxy
from consumer.sink.transport import ConnectionPool, TransportError

HEADERS = b"Authorization: Basic a2V5\r\n"
SECRET = "pw-s3cret"
Answer = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await scenario()

    asyncio.run(bounded())


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def tunnel_to(port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer CONNECT with 200, then relay bytes both ways to 127.0.0.1:`port`."""
    upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


@asynccontextmanager
async def fake_proxy(answer: Answer) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A proxy whose `answer` gets each connection's first request head; the list holds those
    heads in arrival order."""
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            await answer(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heads
    finally:
        server.close()


@asynccontextmanager
async def tls_origin(ca: trustme.CA) -> AsyncIterator[int]:
    """An aiohttp HTTPS server answering every request with its path, certified for
    `fullstory.test`."""

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=request.path)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("fullstory.test").configure_cert(context)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def test_https_goes_through_one_connect_tunnel_per_socket_with_tls_to_the_origin() -> None:
    ca = trustme.CA()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def scenario() -> None:
        async with tls_origin(ca) as origin_port:

            async def answer(
                head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                await tunnel_to(origin_port, reader, writer)

            async with fake_proxy(answer) as (port, heads):
                proxy = parse_proxy(f"http://u:{SECRET}@127.0.0.1:{port}", "HTTPS_PROXY")
                pool = ConnectionPool(
                    "https://fullstory.test:8443/base",
                    ssl_context=client_context,
                    proxy=proxy,
                )
                for path in ("/me", "/v2/events"):
                    response = await pool.request("GET", path, HEADERS, None, 5.0)
                    assert (response.status, response.content) == (200, f"/base{path}".encode())
                await pool.aclose()
        assert heads == [
            b"CONNECT fullstory.test:8443 HTTP/1.1\r\nHost: fullstory.test:8443\r\n"
            b"Proxy-Authorization: Basic dTpwdy1zM2NyZXQ=\r\n\r\n"
        ]

    run(scenario)


def test_http_goes_as_absolute_form_requests_with_the_credentials_on_each() -> None:
    async def answer(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            heads.append(await reader.readuntil(b"\r\n\r\n"))

    async def scenario() -> None:
        nonlocal heads
        async with fake_proxy(answer) as (port, heads):
            proxy = parse_proxy(f"http://u:{SECRET}@127.0.0.1:{port}", "HTTP_PROXY")
            pool = ConnectionPool("http://fullstory.test/base", proxy=proxy)
            for _ in range(2):
                response = await pool.request("GET", "/me", HEADERS, None, 5.0)
                assert response.content == b"ok"
            await pool.aclose()
            assert (
                heads
                == [
                    b"GET http://fullstory.test/base/me HTTP/1.1\r\nHost: fullstory.test\r\n"
                    b"Proxy-Authorization: Basic dTpwdy1zM2NyZXQ=\r\n" + HEADERS + b"\r\n"
                ]
                * 2
            )

    heads: list[bytes] = []
    run(scenario)


async def _refuse(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!")
    await writer.drain()


async def _hang_up(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass


async def _chatter(head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\n\r\nunexpected")
    await writer.drain()
    await reader.read()


async def _not_http(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    await writer.drain()
    await reader.read()


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_refuse, r"refused to carry the request \(HTTP 403 Forbidden\)"),
        (_hang_up, "closed the connection before answering CONNECT"),
        (_chatter, "sent bytes after its answer to CONNECT"),
        (_not_http, "answered CONNECT with something that is not HTTP"),
    ],
)
def test_a_failed_tunnel_is_a_proxy_error_naming_the_proxy_only(answer: Answer, says: str) -> None:
    async def scenario() -> None:
        async with fake_proxy(answer) as (port, _):
            proxy = parse_proxy(f"http://u:{SECRET}@127.0.0.1:{port}", "HTTPS_PROXY")
            pool = ConnectionPool("https://fullstory.test", proxy=proxy)
            with pytest.raises(TransportError, match=says) as info:
                await pool.request("GET", "/me", HEADERS, None, 5.0)
            await pool.aclose()
        assert info.value.kind == "proxy"
        assert f"proxy http://127.0.0.1:{port} (from HTTPS_PROXY)" in str(info.value)
        assert SECRET not in str(info.value)

    run(scenario)
