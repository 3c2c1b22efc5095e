"""The emulator's raw ASGI application: OpenAI's HTTP API over an :class:`EngineRunner`.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (both streamed or not),
``POST /v1/embeddings``, ``GET /v1/models``, ``GET /health``, ``GET /metrics``,
``GET|POST /admin/faults``. Invariants: every data-path response pays the configured network
delay (``config.py``); injected faults are decided once per request from one snapshot of the
faults; a client that disconnects has its engine request aborted, so a stalled or abandoned
stream never holds KV blocks; tokens are sent when the timing model produced them (plus the
one-way delay), never earlier.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from isthmus.engines.emulator.config import EmulatorConfig, Faults, FaultsError
from isthmus.engines.emulator.metrics import (
    E2E_BUCKETS_S,
    TTFT_BUCKETS_S,
    Histogram,
    render_metrics,
)
from isthmus.engines.emulator.protocol import (
    ApiError,
    Generation,
    parse_embeddings,
    parse_generation,
)
from isthmus.engines.emulator.responses import (
    DONE,
    ResponseIds,
    StreamChunks,
    completion_body,
    embeddings_body,
    filler_token,
    pseudo_embedding,
)
from isthmus.engines.emulator.runner import CLOSED, EngineRunner, TimedQueue
from isthmus.engines.timing import Done, EngineRequest, FirstToken, RequestTooLarge, Token, Usage
from isthmus.engines.tokens import block_hashes

__all__ = ["EmulatorApp"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_BODY_BYTES = 64 * 1024 * 1024
_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_ZERO_TEXT = "ok"
_ABORT_LOG = "ASGI callable returned without completing response."


class _QuietAborts(logging.Filter):
    """Uvicorn logs an error when an app closes a response early; here that is the point."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _ABORT_LOG


def _install_log_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietAborts) for f in logger.filters):
        logger.addFilter(_QuietAborts())


class _Disconnected(Exception):
    pass


class EmulatorApp:
    """One emulated endpoint as an ASGI callable."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.faults: Faults = config.faults
        self._rng = random.Random(config.seed)
        self._ids = ResponseIds()
        self._one_way_s = config.one_way_delay_ms / 1000.0
        self.runner: EngineRunner | None = None
        if config.timing == "model":
            self.runner = EngineRunner(
                config.profile, config.replicas, slowness=lambda: self.faults.slowness
            )
        self._zero_ttft = Histogram.with_buckets(TTFT_BUCKETS_S)
        self._zero_e2e = Histogram.with_buckets(E2E_BUCKETS_S)
        self._zero_counts = {"prompt_tokens": 0, "generation_tokens": 0, "request_success": 0}
        self._hanging: set[asyncio.Event] = set()
        _install_log_filter()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine loops (idempotent; needs a running event loop)."""
        if self.runner is not None:
            self.runner.start()

    async def stop(self) -> None:
        """Stop the engines; open requests end (stalled ones are released too)."""
        for gone in self._hanging:
            gone.set()
        if self.runner is not None:
            await self.runner.stop()

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                await self._route(scope, receive, send)
            except _Disconnected:
                return
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            if method != "POST":
                return await _error(send, ApiError(405, f"Use POST for {path}."))
            if self.runner is not None:
                self.runner.start()
            body = await _read_body(receive)
            await self._sleep(self._one_way_s)  # the request's flight to the engine
            return await self._data_path(path, body, receive, send)
        if path == "/health" and method == "GET":
            await self._sleep(2 * self._one_way_s)
            status = 503 if self.faults.down else 200
            return await _respond(send, status, b"", [])
        if path == "/v1/models" and method == "GET":
            await self._sleep(2 * self._one_way_s)
            return await _respond(send, 200, self._models_body(), _JSON)
        if path == "/metrics" and method == "GET":
            return await _respond(
                send, 200, self._metrics(), [(b"content-type", b"text/plain; version=0.0.4")]
            )
        if path == "/admin/faults" and method in ("GET", "POST"):
            return await self._admin_faults(method, receive, send)
        await _error(send, ApiError(404, f"No route for {method} {path}.", code="not_found"))

    async def _data_path(self, path: str, body: bytes, receive: Receive, send: Send) -> None:
        faults = self.faults
        try:
            if faults.down:
                raise ApiError(503, "The engine is unavailable.", "service_unavailable")
            if faults.rate_limit_rate and self._rng.random() < faults.rate_limit_rate:
                raise ApiError(
                    429, "Rate limit reached for requests.", "requests", code="rate_limit_exceeded"
                )
            if faults.error_rate and self._rng.random() < faults.error_rate:
                raise ApiError(500, "The server had an error while processing your request.",
                               "server_error")  # fmt: skip
            if path == "/v1/embeddings":
                return await self._embeddings(body, send)
            gen = parse_generation(
                body, "chat" if path == "/v1/chat/completions" else "completion", self.config
            )
        except ApiError as exc:
            await self._sleep(self._one_way_s)
            return await _error(send, exc)
        if self.runner is None:
            return await self._zero(gen, send)
        await self._generate(gen, faults, receive, send)

    # -- generation ------------------------------------------------------------------------
    async def _generate(
        self, gen: Generation, faults: Faults, receive: Receive, send: Send
    ) -> None:
        assert self.runner is not None
        hashes = tuple(block_hashes(gen.tokens, self.config.profile.block_tokens))
        rid = self._ids.next()
        request = EngineRequest(rid, len(gen.tokens), gen.max_tokens, hashes)
        try:
            queue = self.runner.submit(request)
        except RequestTooLarge as exc:
            await self._sleep(self._one_way_s)
            return await _error(
                send, ApiError(400, str(exc), param="max_tokens", code="context_length_exceeded")
            )
        rng = self._rng
        stall_at = faults.stall_after_tokens
        if stall_at is not None and rng.random() >= faults.stall_rate:
            stall_at = None
        abort_at = faults.abort_after_tokens
        if abort_at is not None and rng.random() >= faults.abort_rate:
            abort_at = None
        seed = (hashes[-1] if hashes else len(gen.tokens)) % 997
        gone = asyncio.Event()
        watcher = asyncio.create_task(self._watch(receive, rid, queue, gone))
        try:
            if gen.stream:
                await self._stream(gen, rid, queue, seed, stall_at, abort_at, gone, send)
            else:
                await self._whole(gen, rid, queue, seed, stall_at, abort_at, gone, send)
        finally:
            if not watcher.done():
                watcher.cancel()

    async def _watch(
        self, receive: Receive, rid: str, queue: TimedQueue, gone: asyncio.Event
    ) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()
        assert self.runner is not None
        self.runner.abort(rid)
        queue.put_nowait(CLOSED)

    async def _hang(self, rid: str, gone: asyncio.Event) -> None:
        """A stalled engine: free the request's blocks, keep the connection until the client
        gives up."""
        assert self.runner is not None
        self.runner.abort(rid)
        self._hanging.add(gone)
        try:
            await gone.wait()
        finally:
            self._hanging.discard(gone)

    async def _stream(
        self, gen: Generation, rid: str, queue: TimedQueue, seed: int,
        stall_at: int | None, abort_at: int | None, gone: asyncio.Event, send: Send,
    ) -> None:  # fmt: skip
        await self._sleep(self._one_way_s)  # the headers' flight back
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        chunks = StreamChunks(gen, rid)
        sent = 0
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is CLOSED:
                return  # client gone or engine stopped: end without completing
            event, at = item
            if self._one_way_s:
                await _sleep_until(loop, at + self._one_way_s)
            if isinstance(event, FirstToken | Token):
                if stall_at is not None and sent >= stall_at:
                    return await self._hang(rid, gone)
                if abort_at is not None and sent >= abort_at:
                    assert self.runner is not None
                    self.runner.abort(rid)
                    return  # uvicorn closes the connection mid-stream
                text = filler_token(seed, sent)
                await send({"type": "http.response.body", "body": chunks.token(text, sent == 0),
                            "more_body": True})  # fmt: skip
                sent += 1
            elif isinstance(event, Done):
                reason = "length" if gen.limited else "stop"
                tail = chunks.finish(reason)
                if gen.include_usage:
                    tail += chunks.usage(event.usage)
                await send({"type": "http.response.body", "body": tail + DONE, "more_body": False})
                return

    async def _whole(
        self, gen: Generation, rid: str, queue: TimedQueue, seed: int,
        stall_at: int | None, abort_at: int | None, gone: asyncio.Event, send: Send,
    ) -> None:  # fmt: skip
        produced = 0
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is CLOSED:
                return
            event, at = item
            if isinstance(event, FirstToken | Token):
                if stall_at is not None and produced >= stall_at:
                    return await self._hang(rid, gone)
                if abort_at is not None and produced >= abort_at:
                    assert self.runner is not None
                    self.runner.abort(rid)
                    await _sleep_until(loop, at + self._one_way_s)
                    body = b'{"id":"' + rid.encode() + b'","object":'  # truncated on purpose
                    await send({"type": "http.response.start", "status": 200,
                                "headers": [*_JSON, (b"content-length", b"1000")]})  # fmt: skip
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    return
                produced += 1
            elif isinstance(event, Done):
                text = "".join(filler_token(seed, i) for i in range(event.usage.completion_tokens))
                reason = "length" if gen.limited else "stop"
                body = completion_body(gen, rid, text, reason, event.usage)
                await _sleep_until(loop, at + self._one_way_s)
                return await _respond(send, 200, body, _JSON)

    async def _zero(self, gen: Generation, send: Send) -> None:
        """``timing: none``: a one-token answer at once (plus the network delay)."""
        usage = Usage(len(gen.tokens), 1, 0)
        counts = self._zero_counts
        counts["prompt_tokens"] += usage.prompt_tokens
        counts["generation_tokens"] += 1
        counts["request_success"] += 1
        self._zero_ttft.observe(0.0)
        self._zero_e2e.observe(0.0)
        rid = self._ids.next()
        await self._sleep(self._one_way_s)
        if not gen.stream:
            body = completion_body(gen, rid, _ZERO_TEXT, "stop", usage)
            return await _respond(send, 200, body, _JSON)
        chunks = StreamChunks(gen, rid)
        body = chunks.token(_ZERO_TEXT, True) + chunks.finish("stop")
        if gen.include_usage:
            body += chunks.usage(usage)
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        await send({"type": "http.response.body", "body": body + DONE, "more_body": False})

    # -- embeddings, models, metrics, admin ------------------------------------------------
    async def _embeddings(self, body: bytes, send: Send) -> None:
        job = parse_embeddings(body, self.config)
        total = sum(len(tokens) for tokens in job.inputs)
        if self.runner is not None:
            queues = []
            for tokens in job.inputs:
                request = EngineRequest(self._ids.next(), len(tokens), 0)
                try:
                    queues.append(self.runner.submit(request))
                except RequestTooLarge as exc:
                    raise ApiError(400, str(exc), param="input",
                                   code="context_length_exceeded") from None  # fmt: skip
            for queue in queues:
                while (item := await queue.get()) is not CLOSED and not isinstance(item[0], Done):
                    pass
        else:
            self._zero_counts["prompt_tokens"] += total
            self._zero_counts["request_success"] += 1
        vectors = [pseudo_embedding(tokens, job.dimensions) for tokens in job.inputs]
        await self._sleep(self._one_way_s)
        await _respond(send, 200, embeddings_body(job.model, vectors, job.base64, total), _JSON)

    def _models_body(self) -> bytes:
        data = [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "isthmus-emulator",
                "root": self.config.model,
                "max_model_len": self.config.max_model_len,
            }
            for name in self.config.served_names
        ]
        return orjson.dumps({"object": "list", "data": data})

    def _metrics(self) -> bytes:
        if self.runner is None:
            return render_metrics(
                self.config.model, [], self._zero_ttft, self._zero_e2e, self._zero_counts
            )
        stats = self.runner.stats
        counters = {
            "prompt_tokens": stats.prompt_tokens,
            "generation_tokens": stats.generation_tokens,
            "request_success": stats.finished,
        }
        loads = [core.load() for core in self.runner.cores]
        return render_metrics(self.config.model, loads, stats.ttft, stats.e2e, counters)

    async def _admin_faults(self, method: str, receive: Receive, send: Send) -> None:
        if method == "POST":
            body = await _read_body(receive)
            try:
                changes = orjson.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise FaultsError("the faults document must be a JSON object")
                self.faults = self.faults.updated(changes)
            except (orjson.JSONDecodeError, FaultsError) as exc:
                return await _error(send, ApiError(400, str(exc), param="faults"))
        await _respond(send, 200, orjson.dumps(self.faults.as_dict()), _JSON)

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    if message["type"] == "http.disconnect":
        raise _Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    parts, size = [body], len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _Disconnected  # pragma: no cover - refuse to buffer more
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, error: ApiError) -> None:
    headers = list(_JSON)
    if error.status in (429, 503):
        headers.append((b"retry-after", b"1"))
    await _respond(send, error.status, error.body(), headers)
