"""The least a Python reverse proxy on asyncio can do per request: the floor under the gateway.

An HTTP/1.1 server on uvloop with httptools' parser that forwards each request's body, as is,
to one upstream over the gateway's own keep-alive pool (``isthmus.gateway.http_pool``) and writes
the upstream's answer back, status, content type and body, in one write; streams are passed
through chunk by chunk. No keys, no JSON, no routing, no metrics: what remains is the event loop,
the parsers and the system calls that any proxy written in Python pays. ``bench/gateway_overhead.py``
measures it beside the gateway and nginx, so the gateway's own cost is its distance from this
floor, and the floor's distance from nginx is what Python itself costs.

    .venv/bin/python bench/python_floor_proxy.py --port 8081 --upstream-port 8000
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import httptools
import uvloop

from isthmus.gateway.http_pool import Origin, PoolError, ResponsePool


class _FloorProtocol(asyncio.Protocol):
    def __init__(self, pool: ResponsePool, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        asyncio.get_running_loop().create_task(self._forward(self.url.decode("latin-1"), body))

    async def _forward(self, path: str, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        headers = [("content-type", "application/json")]
        try:
            response = await self.pool.request(
                "POST", self.origin, path, headers, body, header_timeout_s=30
            )
        except PoolError:
            transport.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            return
        kind = response.headers.get("content-type", "application/json").encode("latin-1")
        head = b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\n" % (response.status, kind)
        try:
            if "text/event-stream" in kind.decode("latin-1"):
                transport.write(head + b"transfer-encoding: chunked\r\n\r\n")
                while chunk := await response.readany():
                    transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                transport.write(b"0\r\n\r\n")
            else:
                data = await response.read()
                transport.write(head + b"content-length: %d\r\n\r\n" % len(data) + data)
        except PoolError:
            transport.close()
        finally:
            response.release()


async def _serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = ResponsePool()
    origin = Origin("http", "127.0.0.1", upstream_port)
    server = await loop.create_server(
        lambda: _FloorProtocol(pool, origin), "127.0.0.1", port, backlog=4096
    )
    print(f"ready http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    server.close()
    await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(_serve(args.port, args.upstream_port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
