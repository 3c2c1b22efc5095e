"""A keep-alive HTTP/1.1 client pool for upstream calls: asyncio protocols and httptools' parser.

Why not aiohttp: on the gateway's hot path aiohttp's client cost about a fifth of the CPU per
proxied request (request building, header multidicts, stream readers, timers per request).
This client does only what the gateway needs — POST a JSON body, GET a health or metrics
page, read a whole body or its chunks as they arrive — over connections pooled per origin, with
httptools (the C parser uvicorn uses) decoding the response, chunked or sized.

Invariants:

- A connection returns to its origin's pool only when its response was read to the end, the
  server did not ask to close it, and the transport is still open; anything else is closed.
- ``request`` returns once the status line and headers arrived, or raises ``PoolError`` with
  ``connect`` (no connection could be made: safe to retry elsewhere), ``timeout`` or ``broken``.
  A request that fails on a *reused* connection before a single response byte arrived (the
  server closed an idle keep-alive connection at the moment it was taken) is sent once more on
  a fresh connection, as browsers and other HTTP clients do.
- Every wait for body bytes is bounded by the idle timeout: a stalled upstream fails the read
  with ``timeout`` and its connection is closed.
- Body bytes are buffered up to ``HIGH_WATER`` per response; past it the transport stops
  reading until the consumer catches up, so a slow client never makes the gateway buffer a
  whole stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["HIGH_WATER", "Origin", "PoolError", "Response", "ResponsePool"]

HIGH_WATER = 1 << 20
_IDLE_PER_ORIGIN = 512


class PoolError(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind  # "connect" | "timeout" | "broken"


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        scheme = parts.scheme or "http"
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} in {url!r}")
        port = parts.port or (443 if scheme == "https" else 80)
        return cls(scheme, parts.hostname or "127.0.0.1", port)

    @property
    def host_header(self) -> bytes:
        return _host_header(self)


@functools.lru_cache(maxsize=4096)
def _host_header(origin: Origin) -> bytes:
    default = 443 if origin.scheme == "https" else 80
    host = origin.host if ":" not in origin.host else f"[{origin.host}]"
    return (host if origin.port == default else f"{host}:{origin.port}").encode("idna")


def _delimited_by_close(headers: dict[str, str]) -> bool:
    return (
        "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    )


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; parses one response at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: Response | None = None
        self.closed = False
        self.reused = False
        self.keep_alive = True
        self._paused = False
        self._header_name = b""

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it

    def data_received(self, data: bytes) -> None:
        if self.response is None:  # bytes nobody asked for: the connection is not reusable
            self.keep_alive = False
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never requested
            self.response._fail(PoolError("broken", "unexpected protocol upgrade"))
            self.close()
        except httptools.HttpParserError as exc:
            self.response._fail(PoolError("broken", f"malformed response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        response = self.response
        if response is not None and not response.complete:
            if response.status and _delimited_by_close(response.headers):
                response._finish()  # a body without a length or chunks ends with the connection
            else:
                response._fail(PoolError("broken", "connection closed mid-response"))

    def pause_writing(self) -> None:  # pragma: no cover - request bodies are small
        pass

    def resume_writing(self) -> None:  # pragma: no cover
        pass

    # -- httptools callbacks ---------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        assert self.response is not None
        self.response.status = self.parser.get_status_code()

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self.response is not None
        self.keep_alive = bool(self.parser.should_keep_alive())
        self.response._headers_done()

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._feed(body)
        if self.response.buffered > HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response._finish()

    # -- used by Response and the pool ----------------------------------------------------------
    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def start(self, response: Response, request: bytes) -> None:
        assert self.transport is not None
        self.response = response  # the parser carries over: responses follow one another
        self.transport.write(request)


class Response:
    """An upstream response whose status and headers have arrived; the body follows."""

    __slots__ = (
        "_chunks",
        "_conn",
        "_error",
        "_headers_waiter",
        "_pool",
        "_waiter",
        "buffered",
        "complete",
        "headers",
        "idle_timeout_s",
        "status",
    )

    def __init__(self, conn: _Connection, pool: ResponsePool, idle_timeout_s: float) -> None:
        self._conn = conn
        self.idle_timeout_s = idle_timeout_s
        self._pool = pool
        self.status = 0
        self.headers: dict[str, str] = {}
        self._chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self._error: PoolError | None = None
        loop = asyncio.get_running_loop()
        self._headers_waiter: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None

    # fed by the connection
    def _headers_done(self) -> None:
        if not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: PoolError) -> None:
        if self._error is None:
            self._error = error
        if not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)
        self._wake()

    def _headers_timed_out(self) -> None:
        if not self._headers_waiter.done():  # the headers may have won the race this tick
            self._fail(PoolError("timeout", "no response headers in time"))

    def _idle_expired(self) -> None:
        if self._chunks or self.complete:  # bytes (or the end) arrived in the same tick
            return
        self._fail(
            PoolError("timeout", f"no bytes from the upstream for {self.idle_timeout_s:g} s")
        )
        self._conn.close()

    # read by the gateway
    @property
    def received_anything(self) -> bool:
        return self.status != 0

    async def readany(self) -> bytes:
        """The next bytes of the body as they arrive; ``b""`` at its end."""
        while not self._chunks:
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(self.idle_timeout_s, self._idle_expired)
            try:
                await self._waiter
            finally:
                self._waiter = None
                timer.cancel()
        data = self._chunks.popleft()
        self.buffered -= len(data)
        if self.buffered < HIGH_WATER // 2:
            self._conn.resume()
        return data

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.readany():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the response: a fully read one gives its connection back to the pool."""
        conn = self._conn
        if conn.response is not self:  # released (or abandoned) already: nothing to do
            return
        conn.response = None
        if self.complete and conn.keep_alive and not conn.closed:
            self._pool._give_back(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Abandon the response (the client went away): the connection is closed, not reused."""
        if self._conn.response is self:
            self._conn.response = None
        self._conn.close()


@dataclass
class ResponsePool:
    """Keep-alive connections per origin."""

    connect_timeout_s: float = 2.0
    ssl_context: ssl.SSLContext | None = None
    _idle: dict[Origin, collections.deque[_Connection]] = field(default_factory=dict)

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(origin),
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context else None,
                )
        except TimeoutError:
            raise PoolError(
                "connect", f"timed out connecting to {origin.host}:{origin.port}"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise PoolError(
                "connect", f"{origin.host}:{origin.port}: {exc.strerror or exc}"
            ) from None
        return conn

    def _take(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.transport is not None and not conn.transport.is_closing():
                conn.reused = True
                return conn
        return None

    def _give_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.origin, collections.deque())
        if len(idle) >= _IDLE_PER_ORIGIN:
            conn.close()
        else:
            idle.append(conn)

    async def request(
        self,
        method: str,
        url_origin: Origin,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        *,
        header_timeout_s: float,
        idle_timeout_s: float | None = None,
    ) -> Response:
        """Send a request; return when the response's headers arrived.

        ``idle_timeout_s`` bounds every wait for more of the body afterwards (default: the
        header timeout), so a stream that stalls mid-way ends with an error, not a hang."""
        head = [
            f"{method} {path} HTTP/1.1\r\n".encode("latin-1"),
            b"host: ",
            url_origin.host_header,
        ]
        head.append(b"\r\ncontent-length: %d\r\n" % len(body))
        for name, value in headers:
            head.append(f"{name}: {value}\r\n".encode("latin-1"))
        head.append(b"\r\n")
        request = b"".join(head) + body
        loop = asyncio.get_running_loop()
        for _ in range(2):
            conn = self._take(url_origin) or await self._connect(url_origin)
            response = Response(conn, self, idle_timeout_s or header_timeout_s)
            conn.start(response, request)
            # a plain timer, cheaper than asyncio.timeout on this per-request path
            timer = loop.call_later(header_timeout_s, response._headers_timed_out)
            try:
                await response._headers_waiter
                return response
            except PoolError as error:
                conn.response = None
                conn.close()
                stale = conn.reused and not response.received_anything
                if stale and error.kind != "timeout":
                    continue  # a stale keep-alive connection: once more on a fresh one
                raise
            except BaseException:  # cancelled (an outer timeout, a client gone): never reused
                conn.response = None
                conn.close()
                raise
            finally:
                timer.cancel()
        raise PoolError("broken", "the connection closed before the response")  # pragma: no cover

    async def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
