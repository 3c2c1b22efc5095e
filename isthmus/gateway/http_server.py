"""The gateway's HTTP/1.1 server: asyncio protocols, httptools' parser, one ASGI app.

Why not uvicorn: a proxy's added latency is what it does between reading a request and writing
it upstream, and between reading the answer and writing it back. Uvicorn writes a response's
head and body in two system calls and runs each request through general machinery (flow
control objects, per-request timers, header rewriting) that the gateway does not need. This
server speaks just enough HTTP/1.1 for an API gateway, with the same C parser uvicorn uses, and
writes a response's head together with its first body bytes. ``bench/gateway_overhead.py``
measures both stacks in one run.

What it serves: keep-alive and ``Connection: close``, HTTP/1.0 and 1.1, sized and chunked
request bodies, ``Expect: 100-continue``, pipelined requests (answered one at a time, in
order), sized, chunked and (HTTP/1.0) close-delimited responses, ``HEAD``, the ASGI lifespan.

Invariants:

- One request at a time per connection; a pipelined request waits for the one before it.
- A request's body is buffered up to ``BODY_HIGH_WATER`` bytes the app has not read yet; past
  it the connection stops reading until the app catches up (the app enforces its own size
  limit as it reads). A connection whose request body was not read to the end is closed after
  the response, never reused.
- A response write waits while the client's socket buffer is full, so a slow client never makes
  the gateway buffer a whole stream.
- Unparsable requests get a 400 (oversized heads a 431) with an OpenAI-style JSON error body,
  and the connection is closed. An app that fails before responding yields a 500 with the same
  kind of body; one that fails after, a closed connection. No stack trace reaches a client.
- ``stop`` stops accepting, lets requests in flight finish (within a grace period), then closes
  every connection and runs the app's lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, cast
from urllib.parse import unquote

import httptools
import orjson

__all__ = ["BODY_HIGH_WATER", "MAX_HEAD_BYTES", "HttpServer", "serve"]

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

BODY_HIGH_WATER = 1 << 20
MAX_HEAD_BYTES = 64 * 1024
"""Request line plus headers; past it the request is refused with 431."""
LINGER_S = 2.0
"""How long a connection keeps reading (and dropping) a request body its app did not read."""

log = logging.getLogger("isthmus.gateway.http")

_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_STATUS_LINES: dict[tuple[int, str], bytes] = {}


def _status_line(status: int, version: str) -> bytes:
    line = _STATUS_LINES.get((status, version))
    if line is None:
        reason = _REASONS.get(status, "")
        line = f"HTTP/{version} {status} {reason}\r\n".encode("latin-1")
        _STATUS_LINES[(status, version)] = line
    return line


def _error_response(status: int, message: str, code: str) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )
    return (
        _status_line(status, "1.1")
        + b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
        % len(body)
        + body
    )


class _Exchange:
    """One request and its response on a connection."""

    __slots__ = (
        "body_complete",
        "body_delivered",
        "body_waiter",
        "buffered",
        "chunked",
        "chunks",
        "close_after",
        "conn",
        "continue_sent",
        "expects_continue",
        "head",
        "head_only",
        "response_complete",
        "response_started",
        "scope",
        "version",
    )

    def __init__(self, conn: _Connection, scope: Scope, keep_alive: bool, expects: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.version: str = scope["http_version"]
        self.head_only = scope["method"] == "HEAD"
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.body_complete = False  # the parser has read the whole body
        self.body_delivered = False  # ... and the app has received all of it
        self.body_waiter: asyncio.Future[None] | None = None
        self.expects_continue = expects
        self.continue_sent = False
        self.close_after = not keep_alive
        self.head: bytes | None = None  # the response head, held until the first body bytes
        self.chunked = False
        self.response_started = False
        self.response_complete = False

    # -- fed by the connection ----------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def finish_body(self) -> None:
        self.body_complete = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- ASGI ---------------------------------------------------------------------------------
    async def receive(self) -> Message:
        conn = self.conn
        if self.expects_continue and not self.continue_sent and not self.body_complete:
            self.continue_sent = True
            conn.write(_status_line(100, self.version) + b"\r\n")
        while not self.chunks and not self.body_complete and not conn.lost:
            self.body_waiter = conn.loop.create_future()
            await self.body_waiter
            self.body_waiter = None
        if self.chunks or (self.body_complete and not self.body_delivered):
            body = self.chunks.popleft() if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks.clear()
            self.buffered = 0
            self.body_delivered = self.body_complete
            conn.update_reading()
            return {"type": "http.request", "body": body, "more_body": not self.body_complete}
        if not self.body_complete or self.response_complete:
            return {"type": "http.disconnect"}
        if not conn.lost:  # the whole body was delivered: what is left to tell is a disconnect
            await conn.lost_waiter()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.response_started:
                raise RuntimeError("the response has already started")
            self.response_started = True
            self.head = self._head(message["status"], message.get("headers") or ())
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.response_started:
            raise RuntimeError("response body before http.response.start")
        if self.response_complete:
            raise RuntimeError("the response has already completed")
        conn = self.conn
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        if self.head_only:
            body = b""
        if self.chunked:
            if body:
                body = b"%x\r\n" % len(body) + body + b"\r\n"
            if not more:
                body += b"0\r\n\r\n"
        head = self.head
        if head is not None:  # the head goes out with the first body bytes: one write
            self.head = None
            body = head + body
        if not more:
            self.response_complete = True
        if conn.lost:
            return
        if body:
            conn.write(body)
        if not more:
            conn.exchange_done(self)
        elif conn.write_paused:
            await conn.drained()

    def _head(self, status: int, headers: Any) -> bytes:
        parts = [_status_line(status, self.version)]
        sized = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                continue  # this server chooses the framing
            if lower == b"connection":
                if value.lower() == b"close":
                    self.close_after = True
                continue
            sized = sized or lower == b"content-length"
            parts += (name, b": ", value, b"\r\n")
        if not sized and status >= 200 and status not in (204, 304) and not self.head_only:
            if self.version == "1.1":
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            else:  # HTTP/1.0: the body ends with the connection
                self.close_after = True
        if self.conn.server.stopping:  # draining: this connection answers no more requests
            self.close_after = True
        if self.close_after:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.app = server.app
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.discarding = False  # lingering after a response: what arrives is dropped
        self.write_paused = False
        self.reading_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._lost_waiters: list[asyncio.Future[None]] = []
        self.exchanges: deque[_Exchange] = deque()  # the first one is being answered
        self.receiving: _Exchange | None = None  # the one whose body the parser is reading
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        # keep-alive: one timer per connection, re-armed only when it fires (not per request)
        self._idle_since: float | None = None  # None while a request is being served
        self._idle: asyncio.TimerHandle | None = None
        self._client: tuple[str, int] | None = None
        self._server_addr: tuple[str, int] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self._client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self._server_addr = (str(local[0]), int(local[1])) if isinstance(local, tuple) else None
        self.server.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.discarding:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrades are not supported", "unsupported_upgrade")
        except httptools.HttpParserError as exc:  # also what a callback raised, wrapped
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(
                    431, f"request head exceeds {MAX_HEAD_BYTES:,} bytes", "request_head_too_large"
                )
            else:
                self._refuse(400, f"malformed HTTP request: {exc}", "malformed_http")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
        for exchange in self.exchanges:
            exchange._wake()
        for waiter in self._lost_waiters + self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._lost_waiters.clear()
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        self._idle_since = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        self._headers.append((name.lower(), value))

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise ValueError("request head too large")  # the parser stops; see data_received

    def on_headers_complete(self) -> None:
        parser = self.parser
        url = httptools.parse_url(self._url)
        raw_path: bytes = url.path or b"/"
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        headers = self._headers
        expects = any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": parser.get_http_version(),
            "method": parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": headers,
            "client": self._client,
            "server": self._server_addr,
        }
        exchange = _Exchange(self, scope, bool(parser.should_keep_alive()), expects)
        self.receiving = exchange
        self.exchanges.append(exchange)
        if len(self.exchanges) == 1:
            self.loop.create_task(self._run(exchange))

    def on_body(self, body: bytes) -> None:
        exchange = self.receiving
        if exchange is None:  # pragma: no cover - the parser sends a body only after headers
            return
        exchange.feed(body)
        if exchange.buffered > BODY_HIGH_WATER:
            self.update_reading()

    def on_message_complete(self) -> None:
        exchange = self.receiving
        if exchange is not None:
            exchange.finish_body()
        self.receiving = None
        if len(self.exchanges) > 1:  # pipelined: read no further until the backlog is answered
            self.update_reading()

    # -- used by exchanges ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not self.lost and not transport.is_closing():
            transport.write(data)

    def update_reading(self) -> None:
        """Read while the app keeps up: pause past ``BODY_HIGH_WATER`` unread body bytes or
        while a pipelined request waits for the one before it."""
        if self.transport is None or self.lost:
            return
        receiving = self.receiving
        backlog = (receiving is not None and receiving.buffered > BODY_HIGH_WATER) or len(
            self.exchanges
        ) > 1
        if backlog and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        elif not backlog and self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()

    async def drained(self) -> None:
        if self.write_paused and not self.lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def lost_waiter(self) -> None:
        waiter = self.loop.create_future()
        self._lost_waiters.append(waiter)
        await waiter

    def exchange_done(self, exchange: _Exchange) -> None:
        """The response is complete: keep the connection for the next request, or close it."""
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if not exchange.body_complete:  # the client may still be sending: let it finish
            self._linger()
            return
        if exchange.close_after or self.server.stopping:
            self.close()
            return
        for waiter in self._lost_waiters:  # nothing more to wait for on this exchange
            if not waiter.done():
                waiter.set_result(None)
        self._lost_waiters.clear()
        if self.exchanges:  # a pipelined request was waiting
            self.loop.create_task(self._run(self.exchanges[0]))
        else:
            self._arm_idle()
        self.update_reading()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _linger(self) -> None:
        """Close after a response that did not wait for the whole request body: send our end's
        FIN, then read and drop what the client still sends for up to ``LINGER_S``. Closing at
        once, with unread bytes, would reset the connection, and a client still writing its
        body could lose the response (a 413, say) to the reset."""
        transport = self.transport
        if transport is None or self.lost or transport.is_closing():
            return
        self.discarding = True
        self.exchanges.clear()
        if transport.can_write_eof():
            transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.loop.call_later(LINGER_S, self.close)

    def eof_received(self) -> bool:
        return False  # the client finished: close the connection

    def _arm_idle(self) -> None:
        self._idle_since = self.loop.time()
        if self._idle is None:
            self._idle = self.loop.call_later(self.server.keep_alive_s, self._idle_check)

    def _idle_check(self) -> None:
        """Close a connection idle for ``keep_alive_s``; otherwise look again when it could be."""
        self._idle = None
        if self.lost or self.discarding or self._idle_since is None:
            return  # closed, lingering (its own timer), or busy (re-armed when idle again)
        left = self._idle_since + self.server.keep_alive_s - self.loop.time()
        if left <= 0:
            self.close()
        else:
            self._idle = self.loop.call_later(left, self._idle_check)

    def _refuse(self, status: int, message: str, code: str) -> None:
        exchange = self.exchanges[0] if self.exchanges else None
        if exchange is None or not exchange.response_started:
            self.write(_error_response(status, message, code))
        for pending in self.exchanges:
            pending.response_complete = True
        self.close()

    async def _run(self, exchange: _Exchange) -> None:
        self.server.in_flight += 1
        try:
            await self.app(exchange.scope, exchange.receive, exchange.send)
        except Exception:
            log.exception(
                "unexpected error serving %s %s", exchange.scope["method"], exchange.scope["path"]
            )
            if not exchange.response_started and not self.lost:
                self.write(_error_response(500, "internal error in the gateway", "internal_error"))
            self.close()
        else:
            if not exchange.response_complete:
                if not exchange.response_started and not self.lost:
                    self.write(
                        _error_response(500, "the gateway returned no response", "internal_error")
                    )
                self.close()
        finally:
            self.server.in_flight -= 1
            if not exchange.response_complete:
                exchange.response_complete = True
                if self.exchanges and self.exchanges[0] is exchange:
                    self.exchanges.popleft()
            if self.server.stopping and self.server.in_flight == 0:
                self.server.idle.set()


class HttpServer:
    """An ASGI app served on one listening socket."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop, keep_alive_s: float) -> None:
        self.app = app
        self.loop = loop
        self.keep_alive_s = keep_alive_s
        self.connections: set[_Connection] = set()
        self.in_flight = 0
        self.stopping = False
        self.idle = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._lifespan: _Lifespan | None = None

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop accepting; let requests in flight finish within ``grace_s``; close; shut down."""
        if self.stopping:
            return
        self.stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if not conn.exchanges:
                conn.close()
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), grace_s)
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._lifespan is not None:
            await self._lifespan.shutdown()


async def serve(
    app: App, sock: socket.socket, *, keep_alive_s: float = 75.0, lifespan: bool = True
) -> HttpServer:
    """Run the app's lifespan start-up, then accept connections on ``sock`` (bound)."""
    loop = asyncio.get_running_loop()
    server = HttpServer(app, loop, keep_alive_s)
    if lifespan:
        server._lifespan = _Lifespan(app)
        await server._lifespan.startup()
    server._server = await loop.create_server(lambda: _Connection(server), sock=sock, backlog=4096)
    return server


class _Lifespan:
    """The ASGI lifespan protocol: start-up before the first connection, shutdown after the last."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception:
            log.debug("the app does not support the ASGI lifespan", exc_info=True)
        # the app returned or failed: it has nothing (more) to say about start-up or shutdown
        self.supported = False
        await self.outbox.put({"type": "lifespan.unsupported"})

    async def _step(self, kind: str) -> None:
        await self.inbox.put({"type": f"lifespan.{kind}"})
        reply = await self.outbox.get()
        if reply["type"] == f"lifespan.{kind}.failed":
            raise RuntimeError(f"application {kind} failed: {reply.get('message', '')}")

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self._step("startup")

    async def shutdown(self) -> None:
        if self.supported and self.task is not None and not self.task.done():
            await self._step("shutdown")
        if self.task is not None:
            with contextlib.suppress(BaseException):
                await self.task
