"""The gateway's HTTP/1.1 server, spoken to over raw sockets by small ASGI apps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from isthmus.gateway.http_server import BODY_HIGH_WATER, MAX_HEAD_BYTES, HttpServer, serve
from isthmus.serving import bind_socket


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it received: method, path, query, a header and the whole body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = dict(scope["headers"])
    payload = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "x": headers.get(b"x-test", b"").decode(),
            "body": body.decode("latin-1"),
            "version": scope["http_version"],
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(payload)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def streamer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Three chunks, no content-length."""
    if scope["type"] != "http":
        return
    await receive()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    for part in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class Served:
    def __init__(self, server: HttpServer, port: int) -> None:
        self.server = server
        self.port = port

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def start(app: Any, **options: Any) -> Served:
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    server = await serve(app, sock, **options)
    return Served(server, port)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: sized, chunked, or (connection: close) to the end."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    else:
        body = await reader.read()
    return status, headers, body


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        for k in range(3):
            writer.write(post(f"/v1/x?k={k}", b'{"n": %d}' % k, "x-test: hi\r\n"))
            status, headers, body = await read_response(reader)
            data = json.loads(body)
            assert status == 200 and headers["content-type"] == "application/json"
            assert (data["path"], data["query"], data["x"], data["body"]) == (
                "/v1/x",
                f"k={k}",
                "hi",
                f'{{"n": {k}}}',
            )
        writer.close()
        await served.server.stop()

    run(main())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(b"".join(post(f"/p{k}", b"%d" % k) for k in range(5)))
        paths = [json.loads((await read_response(reader))[2])["path"] for _ in range(5)]
        assert paths == [f"/p{k}" for k in range(5)]
        writer.close()
        await served.server.stop()

    run(main())


def test_chunked_request_body_and_percent_encoded_path() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(
            b"POST /a%20b HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        status, _, body = await read_response(reader)
        data = json.loads(body)
        assert status == 200 and data["body"] == "hello world" and data["path"] == "/a b"
        writer.close()
        await served.server.stop()

    run(main())


def test_expect_continue_is_answered_before_the_body_is_sent() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(
            b"POST /e HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b"data")
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["body"] == "data"
        writer.close()
        await served.server.stop()

    run(main())


def test_malformed_request_gets_a_json_400_and_the_connection_closes() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert json.loads(body)["error"]["code"] == "malformed_http"
        assert await reader.read() == b""
        writer.close()
        await served.server.stop()

    run(main())


def test_oversized_head_gets_431() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(
            b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
        )
        status, _, body = await read_response(reader)
        assert status == 431 and json.loads(body)["error"]["code"] == "request_head_too_large"
        writer.close()
        await served.server.stop()

    run(main())


def test_streamed_response_is_chunked_on_http11_and_close_delimited_on_http10() -> None:
    async def main() -> None:
        served = await start(streamer)
        reader, writer = await served.connect()
        writer.write(post("/s", b"{}"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers["transfer-encoding"] == "chunked"
        assert body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        writer.close()
        reader, writer = await served.connect()
        writer.write(b"POST /s HTTP/1.0\r\ncontent-length: 2\r\n\r\n{}")
        status, headers, body = await read_response(reader)
        assert "transfer-encoding" not in headers and headers["connection"] == "close"
        assert body == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
        writer.close()
        await served.server.stop()

    run(main())


def test_head_request_gets_headers_without_a_body() -> None:
    async def main() -> None:
        served = await start(echo)
        reader, writer = await served.connect()
        writer.write(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length" in head
        writer.write(post("/after", b"x"))  # the connection is still in step
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["path"] == "/after"
        writer.close()
        await served.server.stop()

    run(main())


def test_an_app_that_fails_yields_a_500_without_a_trace() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            raise ValueError("secret internals")

    async def main() -> None:
        served = await start(broken, lifespan=False)
        reader, writer = await served.connect()
        writer.write(post("/b", b"{}"))
        status, _, body = await read_response(reader)
        assert status == 500 and b"secret" not in body and b"Traceback" not in body
        assert json.loads(body)["error"]["code"] == "internal_error"
        writer.close()
        await served.server.stop()

    run(main())


def test_an_app_that_stops_reading_a_large_body_still_answers_and_the_connection_closes() -> None:
    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()  # one piece of the body, then refuse
        body = b'{"error": "too large"}'
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        served = await start(refuse, lifespan=False)
        reader, writer = await served.connect()
        size = 4 * BODY_HIGH_WATER
        writer.write(f"POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: {size}\r\n\r\n".encode())
        writer.write(b"x" * (BODY_HIGH_WATER // 2))
        status, _, _ = await read_response(reader)
        assert status == 413
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, never reused mid-body
        writer.close()
        await served.server.stop()

    run(main())


def test_receive_reports_a_client_that_went_away() -> None:
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def waits(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        message = await receive()  # blocks until the client leaves
        await seen.put(message["type"])

    async def main() -> None:
        served = await start(waits, lifespan=False)
        reader, writer = await served.connect()
        writer.write(post("/w", b"{}"))
        await reader.readuntil(b"first")
        writer.close()
        assert await asyncio.wait_for(seen.get(), 2) == "http.disconnect"
        await served.server.stop()

    run(main())


def test_stop_lets_requests_in_flight_finish_and_runs_the_lifespan_shutdown() -> None:
    events: list[str] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while True:
                    message = await receive()
                    events.append(message["type"])
                    await send({"type": message["type"] + ".complete"})
                    if message["type"] == "lifespan.shutdown":
                        return
            await receive()
            await gate.wait()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4")],
                }
            )
            await send({"type": "http.response.body", "body": b"done"})

        served = await start(slow)
        reader, writer = await served.connect()
        writer.write(post("/slow", b"{}"))
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(served.server.stop(grace_s=5))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # waiting for the request in flight
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", served.port)  # no longer accepting
        gate.set()
        status, headers, body = await read_response(reader)
        assert (status, body, headers["connection"]) == (200, b"done", "close")
        await asyncio.wait_for(stopping, 5)
        assert events == ["lifespan.startup", "lifespan.shutdown"]

    run(main())


def test_idle_keep_alive_connections_close_and_busy_ones_stay() -> None:
    async def main() -> None:
        served = await start(echo, keep_alive_s=0.3)
        reader, writer = await served.connect()
        for k in range(6):  # 0.6 s of use, never 0.3 s idle
            writer.write(post(f"/k{k}", b"{}"))
            assert (await read_response(reader))[0] == 200
            await asyncio.sleep(0.1)
        assert await asyncio.wait_for(reader.read(), 2) == b""  # then closed once idle
        writer.close()
        await served.server.stop()

    run(main())
