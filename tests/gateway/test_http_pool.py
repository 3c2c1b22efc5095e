"""The upstream HTTP pool against raw servers that answer exactly what each test needs."""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Awaitable, Callable

import pytest

from isthmus.gateway.http_pool import Origin, PoolError, ResponsePool


def run(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """A sync test that runs the coroutine test on a fresh event loop."""

    @functools.wraps(test)
    def wrapper() -> None:
        asyncio.run(asyncio.wait_for(test(), 20))

    return wrapper


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    body = await reader.readexactly(length) if length else b""
    return head + body


class _Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def __aenter__(self) -> Origin:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return Origin("http", "127.0.0.1", port)

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def _keep_alive(server: list[_Server], body: bytes = b'{"ok":true}') -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader)
            server[0].requests.append(request)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                % len(body)
                + body
            )
            await writer.drain()

    return handler


@run
async def test_sized_responses_reuse_one_connection() -> None:
    holder: list[_Server] = []
    server = _Server(_keep_alive(holder))
    holder.append(server)
    pool = ResponsePool()
    async with server as origin:
        for _ in range(5):
            response = await pool.request(
                "POST",
                origin,
                "/v1/x",
                [("content-type", "application/json")],
                b"{}",
                header_timeout_s=2,
            )
            assert response.status == 200
            assert response.headers["content-type"] == "application/json"
            assert await response.read() == b'{"ok":true}'
            response.release()
        assert server.connections == 1
        assert len(server.requests) == 5
        assert server.requests[0].startswith(b"POST /v1/x HTTP/1.1\r\nhost: 127.0.0.1:")
    await pool.close()


@run
async def test_chunked_body_arrives_chunk_by_chunk() -> None:
    gate = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"6\r\ndata: \r\n")
        await writer.drain()
        await gate.wait()
        writer.write(b"5\r\nhello\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    pool = ResponsePool()
    async with _Server(handler) as origin:
        response = await pool.request("POST", origin, "/s", [], b"{}", header_timeout_s=2)
        assert await response.readany() == b"data: "  # before the rest was even written
        gate.set()
        assert await response.readany() == b"hello"
        assert await response.readany() == b""
        response.release()
    await pool.close()


@run
async def test_body_delimited_by_close_ends_cleanly() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    pool = ResponsePool()
    async with _Server(handler) as origin:
        response = await pool.request("GET", origin, "/", [], header_timeout_s=2)
        assert await response.read() == b"all of it"
        response.release()
    await pool.close()


@run
async def test_a_break_mid_body_is_an_error_not_a_short_body() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")
        await writer.drain()

    pool = ResponsePool()
    async with _Server(handler) as origin:
        response = await pool.request("GET", origin, "/", [], header_timeout_s=2)
        with pytest.raises(PoolError) as caught:
            await response.read()
        assert caught.value.kind == "broken"
        response.release()
    await pool.close()


@run
async def test_stale_keep_alive_connection_is_retried_once_on_a_fresh_one() -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await _read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        # keep-alive promised, then the server drops the connection once the next request
        # arrives, without answering it (an idle timeout racing the request)
        await reader.read(1)

    pool = ResponsePool()
    server = _Server(handler)
    async with server as origin:
        for _ in range(2):
            response = await pool.request("GET", origin, "/", [], header_timeout_s=2)
            assert await response.read() == b"ok"
            response.release()
        assert served == 2
        assert server.connections == 2
    await pool.close()


@run
async def test_connect_refused_and_header_timeout_are_told_apart() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    pool = ResponsePool(connect_timeout_s=1)
    with pytest.raises(PoolError) as caught:
        await pool.request(
            "GET", Origin("http", "127.0.0.1", closed_port), "/", [], header_timeout_s=1
        )
    assert caught.value.kind == "connect"

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async with _Server(silent) as origin:
        with pytest.raises(PoolError) as caught:
            await pool.request("GET", origin, "/", [], header_timeout_s=0.2)
        assert caught.value.kind == "timeout"
    await pool.close()


@run
async def test_a_stream_that_stalls_mid_way_times_out_instead_of_hanging() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        await writer.drain()
        await asyncio.sleep(10)

    pool = ResponsePool()
    async with _Server(handler) as origin:
        response = await pool.request(
            "POST", origin, "/s", [], b"{}", header_timeout_s=2, idle_timeout_s=0.2
        )
        assert await response.readany() == b"data: "
        with pytest.raises(PoolError) as caught:
            await response.readany()
        assert caught.value.kind == "timeout"
        response.release()
    await pool.close()


@run
async def test_malformed_response_is_broken() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    pool = ResponsePool()
    async with _Server(handler) as origin:
        with pytest.raises(PoolError) as caught:
            await pool.request("GET", origin, "/", [], header_timeout_s=2)
        assert caught.value.kind == "broken"
    await pool.close()


@run
async def test_a_slow_reader_pauses_the_upstream_instead_of_buffering_everything() -> None:
    total = 8 * 1024 * 1024
    piece = b"x" * 65536

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        for _ in range(total // len(piece)):
            writer.write(piece)
            await writer.drain()

    pool = ResponsePool()
    async with _Server(handler) as origin:
        response = await pool.request("GET", origin, "/", [], header_timeout_s=2)
        await asyncio.sleep(0.5)  # the server writes as fast as it can; nobody reads
        assert response.buffered <= 2 * 1024 * 1024
        received = len(await response.read())
        assert received == total
        response.release()
    await pool.close()


def test_origins_from_urls() -> None:
    assert Origin.of("http://127.0.0.1:18000/v1") == Origin("http", "127.0.0.1", 18000)
    assert Origin.of("https://api.example.com/v1").port == 443
    assert Origin.of("https://api.example.com/v1").host_header == b"api.example.com"
    with pytest.raises(ValueError, match="unsupported scheme"):
        Origin.of("ftp://x/")


@run
async def test_a_cancelled_request_closes_its_connection() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await reader.read()  # returns at EOF: when the client closes the connection
        closed.set()

    pool = ResponsePool()
    async with _Server(silent) as origin:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                pool.request("GET", origin, "/", [], header_timeout_s=5), timeout=0.2
            )
        await asyncio.wait_for(closed.wait(), 2)  # not left open, not parked in the pool
        assert not pool._idle.get(origin)
    await pool.close()


@run
async def test_releasing_twice_does_not_pool_a_connection_twice() -> None:
    holder: list[_Server] = []
    server = _Server(_keep_alive(holder))
    holder.append(server)
    pool = ResponsePool()
    async with server as origin:
        response = await pool.request("GET", origin, "/", [], header_timeout_s=2)
        await response.read()
        response.release()
        response.release()
        assert len(pool._idle[origin]) == 1
    await pool.close()
