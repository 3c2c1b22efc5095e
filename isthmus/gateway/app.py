"""The gateway: an OpenAI-compatible ASGI application that routes every request across sites.

Per request: authenticate (hashed key -> tenant), read the body within the tenant's size limit,
check it (``requests``), settle its data class (raise, never lower), admit it against rate
limits and budgets, ``route()`` it, forward it to the chosen endpoint with pooled keep-alive
connections, and fail over — connect errors, 5xx and 429 go to the next-best *compliant*
endpoint within the retry budget and the deadline. Streams pass through chunk by chunk; a stream
that breaks after its first byte ends with an SSE error event, never a hang. Every response
carries ``x-isthmus-decision``; every decision is logged and counted.

Invariants: no non-compliant endpoint is ever contacted (candidates come only from ``route()``,
which filters by the compiled sovereignty policy); no stack trace reaches a client (unexpected
errors become a 500 with a generic message and are logged); the fleet state the router reads is
written only through ``FleetState``'s event methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from isthmus.fabric.catalog import Fabric
from isthmus.gateway.circuit import CircuitBreaker
from isthmus.gateway.errors import ApiError
from isthmus.gateway.http_pool import PoolError
from isthmus.gateway.limits import Ledger, LedgerLike
from isthmus.gateway.observe import DecisionLog, GatewayMetrics
from isthmus.gateway.requests import ParsedRequest, parse_request
from isthmus.gateway.sse_guard import GuardedStream
from isthmus.gateway.tenants import Caller, TenantDirectory
from isthmus.gateway.tracing import Tracer, tracer_for
from isthmus.gateway.upstream import Response, UpstreamError, Upstreams
from isthmus.guard import GuardLike, NullGuard, NullOutputFilter, OutputFilter
from isthmus.routing import ROUTERS, Decision, RouteRequest, RoutingView, build_view

__all__ = ["Gateway", "GatewayConfig"]

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("isthmus.gateway")

_JSON = (b"content-type", b"application/json")
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_DATA_CLASS_HEADER = "x-isthmus-data-class"
_PATHS = {
    "/v1/chat/completions": ("chat", "/chat/completions"),
    "/v1/completions": ("completion", "/completions"),
    "/v1/embeddings": ("embedding", "/embeddings"),
}


@dataclass(frozen=True)
class GatewayConfig:
    site: str
    router: str = "isthmus"
    retry_budget: int = 2
    connect_timeout_s: float = 2.0
    health_interval_s: float = 5.0
    health_timeout_s: float = 1.0
    index_block_tokens: int = 64
    max_body_bytes: int = 16 * 1024 * 1024
    log_decisions: bool = True
    tracing: bool = False  # OpenTelemetry spans (needs the ``otel`` extra and a provider)


@dataclass
class _Attempt:
    decision: Decision
    endpoint: int
    uncached: int
    started: float
    predicted_ms: float  # the model's prediction, before the learned correction
    ticket: float = 0.0  # place in the endpoint's prefill queue


@dataclass
class _Outcome:
    tenant: str = ""
    tokens: int = 0
    usd: float = 0.0
    endpoint: str = "-"
    site: str = "-"
    model: str = "-"
    status: str = "error"
    cached_reported: int | None = None


class _ClientGone(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                return None
    return None


def _data_classes(scope: Scope, parsed: ParsedRequest) -> list[tuple[str, str]]:
    """Every data class the request asks for, with where: each ``x-isthmus-data-class`` header
    (repeated, or comma-separated) and ``metadata.data_class``."""
    asked = [
        (name.strip(), _DATA_CLASS_HEADER)
        for key, value in scope["headers"]
        if key == b"x-isthmus-data-class"
        for name in value.decode("latin-1").split(",")
        if name.strip()
    ]
    if parsed.data_class is not None:
        asked.append((parsed.data_class, "metadata.data_class"))
    return asked


def _shown(name: str, limit: int = 80) -> str:
    """A client-supplied name quoted for an error message, cut to ``limit`` characters."""
    return repr(name) if len(name) <= limit else f"{name[:limit]!r}... ({len(name):,} characters)"


def _ascii(text: str) -> bytes:
    return text.encode("ascii", "replace")


@dataclass
class Gateway:
    """One gateway process at one site of a fabric."""

    fabric: Fabric
    config: GatewayConfig
    clock: Callable[[], float] = time.monotonic
    view: RoutingView = field(init=False)
    directory: TenantDirectory = field(init=False)
    ledger: LedgerLike = field(init=False)
    upstreams: Upstreams = field(init=False)
    metrics: GatewayMetrics = field(init=False)
    decisions: DecisionLog = field(init=False)
    breakers: list[CircuitBreaker] = field(init=False)
    tracer: Tracer | None = None
    guard: GuardLike | None = None  # None: the guard is off (NullGuard)
    audit: Any = None  # an isthmus.audit.AuditLog, or None: verdicts are not recorded
    shared: Any = None  # an isthmus.mesh.SharedState (limits and load shared by a site's replicas)
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.config.site not in self.fabric.sites:
            raise ValueError(f"unknown gateway site {self.config.site!r}")
        if self.config.router not in ROUTERS:
            raise ValueError(f"unknown router {self.config.router!r}; known: {', '.join(ROUTERS)}")
        self.view = build_view(self.fabric, index_block_tokens=self.config.index_block_tokens)
        self.router = ROUTERS[self.config.router]
        self.directory = TenantDirectory(self.fabric)
        self.ledger = Ledger() if self.shared is None else self.shared.ledger
        self.upstreams = Upstreams(self.fabric, connect_timeout_s=self.config.connect_timeout_s)
        self.metrics = GatewayMetrics()
        self.decisions = DecisionLog(enabled=self.config.log_decisions)
        self.breakers = [CircuitBreaker() for _ in self.view.fleet.infos]
        if self.tracer is None:
            self.tracer = tracer_for(self.config.tracing)
        if self.guard is None:
            self.guard = NullGuard()
        self._models_bodies: dict[tuple[str, ...], bytes] = {}
        self._models_of: Fabric | None = None  # the fabric the bodies were built from

    def _model_objects(self) -> dict[str, dict[str, Any]]:
        """Every model and alias of the fabric as an OpenAI model object, by name."""
        objects = {
            name: {"id": name, "object": "model", "created": 0, "owned_by": m.provider or "isthmus"}
            for name, m in self.fabric.models.items()
        }
        for alias in self.fabric.spec.aliases:
            objects[alias] = {
                "id": alias,
                "object": "model",
                "created": 0,
                "owned_by": "isthmus-alias",
            }
        return objects

    def _usable(self, name: str, allowed: tuple[str, ...]) -> bool:
        return bool(self.view.models_for(name, allowed))

    def _models_body(self, allowed: tuple[str, ...]) -> bytes:
        """GET /v1/models for a tenant: the models and aliases it may use (built once per set
        of allowed models, again after a new policy is installed)."""
        if self._models_of is not self.fabric:
            self._models_bodies, self._models_of = {}, self.fabric
        body = self._models_bodies.get(allowed)
        if body is None:
            data = [o for name, o in self._model_objects().items() if self._usable(name, allowed)]
            body = orjson.dumps({"object": "list", "data": data})
            self._models_bodies[allowed] = body
        return body

    # -- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._dispatch(scope, receive, send)
        except ApiError as error:
            await self._send_error(send, error)
        except _ClientGone:
            return
        except Exception:
            log.exception(
                "unexpected error answering %s %s", scope.get("method"), scope.get("path")
            )
            await self._send_error(
                send, ApiError(500, "internal error in the gateway", "internal_error")
            )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        if self.config.health_interval_s > 0 and not self._background:
            from isthmus.gateway.health import health_loop

            self._background.append(asyncio.create_task(health_loop(self)))
        if self.shared is not None:
            self.shared.start(self)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        if self.shared is not None:
            await self.shared.stop()
        await self.upstreams.close()

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        route = _PATHS.get(path)
        if route is not None:
            if method != "POST":
                raise ApiError(405, f"{path} accepts POST only", "method_not_allowed", allow="POST")
            await self._completion(scope, receive, send, route[0], route[1])
            return
        if method not in ("GET", "HEAD") and (
            path in ("/v1/models", "/health", "/healthz", "/metrics")
            or path.startswith("/v1/models/")
        ):
            raise ApiError(405, f"{path} accepts GET only", "method_not_allowed", allow="GET, HEAD")
        if path == "/v1/models" or path.startswith("/v1/models/"):
            caller = self.directory.authenticate(
                _header(scope, b"authorization"), _header(scope, b"api-key")
            )
            allowed = caller.tenant.allowed_models
            if path == "/v1/models":
                await self._send(send, 200, self._models_body(allowed))
                return
            name = path.removeprefix("/v1/models/")
            found = self._model_objects().get(name)
            if found is None or not self._usable(name, allowed):
                raise ApiError(
                    404,
                    f"the model {_shown(name)} does not exist or is not available to this key",
                    "model_not_found",
                    "model",
                )
            await self._send(send, 200, orjson.dumps(found))
        elif path in ("/health", "/healthz"):
            await self._send(send, 200, b'{"status":"ok"}')
        elif path == "/metrics":
            await self._send(send, 200, self.metrics.render(), b"text/plain; version=0.0.4")
        else:
            raise ApiError(404, f"unknown path {path}", "unknown_path")

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes = b"application/json",
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _send_error(self, send: Send, error: ApiError) -> None:
        try:
            body = error.body()
            headers = [*error.headers(), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception:  # the response had already started, or the client left
            pass

    async def _read_body(self, scope: Scope, receive: Receive, limit: int) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise ApiError(400, "invalid Content-Length header", "invalid_header") from None
            if size > limit:
                raise ApiError(
                    413,
                    f"request body of {size:,} bytes exceeds the limit of {limit:,} bytes",
                    "request_too_large",
                )
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise ApiError(
                    413, f"request body exceeds the limit of {limit:,} bytes", "request_too_large"
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- completions ----------------------------------------------------------------------------
    async def _completion(
        self, scope: Scope, receive: Receive, send: Send, kind: str, upstream_path: str
    ) -> None:
        caller = self.directory.authenticate(
            _header(scope, b"authorization"), _header(scope, b"api-key")
        )
        tenant = caller.tenant
        raw = await self._read_body(
            scope, receive, min(tenant.max_body_bytes, self.config.max_body_bytes)
        )
        parsed = parse_request(kind, raw, self.config.index_block_tokens)  # type: ignore[arg-type]
        data_class = self.directory.data_class(tenant, _data_classes(scope, parsed))
        parsed = await self._inspect_request(tenant.name, parsed)
        reservation = self.ledger.admit(tenant, parsed.prompt_tokens + parsed.max_output_tokens)
        outcome = _Outcome(tenant=tenant.name)
        started = self.clock()
        assert self.tracer is not None
        with self.tracer.span(
            "isthmus.request",
            tenant=tenant.name,
            model=parsed.model,
            data_class=data_class,
            gateway_site=self.config.site,
            stream=parsed.stream,
        ) as span:
            try:
                await self._forward(
                    scope, receive, send, caller, parsed, data_class, upstream_path, outcome
                )
            finally:
                self.ledger.settle(tenant, reservation, outcome.tokens, outcome.usd)
                self.metrics.request(
                    tenant.name,
                    self._model_label(parsed.model),
                    outcome.endpoint,
                    outcome.site,
                    outcome.status,
                )
                if outcome.status == "ok":
                    self.metrics.observe_e2e(
                        outcome.endpoint, outcome.site, outcome.model, self.clock() - started
                    )
                span.set_attribute("endpoint", outcome.endpoint)
                span.set_attribute("site", outcome.site)
                span.set_attribute("outcome", outcome.status)
                span.set_attribute("tokens", outcome.tokens)
                span.set_attribute("cached_tokens_reported", outcome.cached_reported or 0)

    def _model_label(self, model: str) -> str:
        """The model as a metrics label: a model or alias of the fabric, else ``unknown`` (a
        client's made-up names must not grow the metrics without bound)."""
        fabric = self.fabric
        return model if model in fabric.models or model in fabric.spec.aliases else "unknown"

    async def _record(self, tenant: str, verdicts: Any) -> None:
        """Audit verdicts off the event loop (the log writes to a database)."""
        if self.audit is not None and verdicts:
            try:
                await asyncio.to_thread(self.audit.record, tenant, verdicts)
            except Exception:  # auditing must not take the data path down; it is logged
                log.exception("audit record failed for tenant %s", tenant)

    async def _inspect_request(self, tenant: str, parsed: ParsedRequest) -> ParsedRequest:
        """Run the input guard; block, or swap in the redacted payload."""
        assert self.guard is not None
        if isinstance(self.guard, NullGuard):
            return parsed
        body = parsed.body
        key = {"chat": "messages", "completion": "prompt"}.get(parsed.kind, "input")
        raw = body[key]
        if parsed.kind == "chat":
            messages = raw
        else:
            # one user message per element, index for index, so each element of a batch is
            # judged and redacted on its own and the batch keeps its length and order; token
            # ids (parse_request allows all strings or all ints) are no text: no message
            texts = raw if isinstance(raw, list) else [raw]
            messages = [{"role": "user", "content": t} for t in texts if isinstance(t, str)]
        decision = self.guard.inspect_request(
            tenant, messages, tools=body.get("tools"), max_output_tokens=parsed.max_output_tokens
        )
        if decision.verdicts:
            await self._record(tenant, decision.verdicts)
        if decision.blocked:
            raise ApiError(400, decision.reason, "guard_blocked", retryable=False)
        if decision.messages is None or not messages:  # nothing redacted, or no text to redact
            return parsed
        if parsed.kind == "chat":
            redacted: Any = decision.messages
        else:
            contents = [m["content"] for m in decision.messages]
            redacted = contents if isinstance(raw, list) else contents[0]
        return replace(parsed, body={**body, key: redacted})

    def _guarded_stream(self, tenant: str, parsed: ParsedRequest) -> GuardedStream | None:
        assert self.guard is not None
        if isinstance(self.guard, NullGuard) or parsed.kind == "embedding":
            return None
        output_filter: OutputFilter = self.guard.output_filter(tenant)
        if isinstance(output_filter, NullOutputFilter):
            return None
        return GuardedStream(output_filter, parsed.kind)

    async def _inspect_response(
        self, tenant: str, parsed: ParsedRequest, body: bytes
    ) -> tuple[bytes, dict[str, Any] | None]:
        """Run the output guard on a whole response; block (ApiError) or redact. Returns the
        body to send and, when it had to be parsed, the parsed response (its usage is read from
        it afterwards, not parsed again)."""
        assert self.guard is not None
        if isinstance(self.guard, NullGuard) or parsed.kind == "embedding":
            return body, None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body, None
        if not isinstance(data, dict):
            return body, None
        usage = data.get("usage")
        changed = False
        for holder, key in _message_texts(data, parsed.kind):
            decision = self.guard.inspect_output(tenant, holder[key])
            if decision.verdicts:
                await self._record(tenant, decision.verdicts)
            if decision.blocked:
                raise ApiError(400, decision.reason, "guard_blocked", retryable=False)
            if decision.text is not None and decision.text != holder[key]:
                holder[key] = decision.text
                changed = True
        return (orjson.dumps(data) if changed else body), {"usage": usage}

    def _route(
        self,
        caller: Caller,
        parsed: ParsedRequest,
        data_class: str,
        exclude: set[str],
        remaining_ms: float,
    ) -> Decision:
        tenant = caller.tenant
        request = RouteRequest(
            model=parsed.model,
            data_class=data_class,
            gateway_site=self.config.site,
            prompt_tokens=parsed.prompt_tokens,
            max_output_tokens=parsed.max_output_tokens,
            kind=parsed.kind,
            block_hashes=parsed.block_hashes,
            tenant=tenant.name,
            allowed_models=tenant.allowed_models,
            objective=tenant.objective,
            exclude=frozenset(exclude),
            deadline_ms=remaining_ms,
            now_s=self.clock(),
        )
        decision = self.router(request, self.view)
        self.metrics.decision(decision.status, decision.policy)
        if not self.decisions.enabled:
            return decision
        chosen = decision.chosen
        self.decisions.record(
            tenant=tenant.name,
            model=parsed.model,
            data_class=data_class,
            gateway=self.config.site,
            status=decision.status,
            endpoint=chosen.endpoint if chosen else None,
            site=chosen.site if chosen else None,
            predicted_ttft_ms=round(chosen.predicted_ttft_ms, 2) if chosen else None,
            cached_tokens=chosen.cached_tokens if chosen else None,
            predicted_cost_usd=chosen.predicted_cost_usd if chosen else None,
            failover=[c.endpoint for c in decision.ranked[1:]],
            excluded=sorted(exclude),
            reason=decision.reason,
        )
        return decision

    def _no_route(
        self,
        decision: Decision,
        parsed: ParsedRequest,
        last_error: str | None,
        throttled: bool = False,
    ) -> ApiError:
        """The client's error when no endpoint is left: 404/403 for the model, 503 naming the
        rule when nothing compliant exists, 503 (or 429 when the last compliant endpoint tried
        was rate limiting: the client should slow down, not fail over) when none is usable."""
        if decision.status == "refused":
            refusals = decision.refusals
            if refusals and refusals[0][0] == "catalog" and "not in the catalog" in refusals[0][1]:
                return ApiError(
                    404,
                    f"the model {_shown(parsed.model)} does not exist; GET /v1/models lists the "
                    "models and aliases this gateway serves",
                    "model_not_found",
                    "model",
                )
            if refusals and refusals[0][0] == "tenant":
                return ApiError(403, refusals[0][1], "model_not_allowed", "model")
            return ApiError(503, decision.reason, "no_compliant_endpoint", retryable=False)
        detail = f"; last error: {last_error}" if last_error else ""
        if throttled:
            return ApiError(
                429, f"{decision.reason}{detail}", "upstream_rate_limited", retry_after_s=1
            )
        return ApiError(503, f"{decision.reason}{detail}", "no_available_endpoint", retry_after_s=1)

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        caller: Caller,
        parsed: ParsedRequest,
        data_class: str,
        upstream_path: str,
        outcome: _Outcome,
    ) -> None:
        fleet = self.view.fleet
        deadline = self.clock() + caller.tenant.deadline_ms / 1000.0
        exclude: set[str] = set()
        last_error: str | None = None
        last_status: int | None = None  # the last upstream's HTTP status, None: no answer
        failures = 0
        while True:
            remaining_ms = (deadline - self.clock()) * 1000.0
            if remaining_ms <= 0:
                raise ApiError(
                    504,
                    "the request's deadline passed before any endpoint answered",
                    "deadline_exceeded",
                )
            decision = self._route(caller, parsed, data_class, exclude, remaining_ms)
            chosen = decision.chosen
            if chosen is None:
                raise self._no_route(decision, parsed, last_error, last_status == 429)
            i = fleet.position[chosen.endpoint]
            breaker = self.breakers[i]
            now = self.clock()
            if not breaker.allows(now):
                exclude.add(chosen.endpoint)
                continue
            uncached = parsed.prompt_tokens - chosen.cached_tokens
            ticket = fleet.dispatched(i, uncached, parsed.block_hashes, now)
            attempt = _Attempt(decision, i, uncached, now, chosen.model_ttft_ms, ticket)
            body = parsed.body
            target = self.upstreams.targets[chosen.endpoint]
            if body.get("model") != target.served_model:
                body = {**body, "model": target.served_model}
            payload = orjson.dumps(body)
            try:
                response = await self.upstreams.open(
                    chosen.endpoint, upstream_path, payload, max(0.001, (deadline - now))
                )
            except UpstreamError as error:
                last_error, last_status = f"{chosen.endpoint}: {error.reason}", None
                self._failed(attempt, "connect" if "connect" in error.reason else "timeout")
                failures += 1
                self._give_up_if_spent(failures, last_error)
                exclude.add(chosen.endpoint)
                continue
            if response.status in _RETRYABLE_STATUS:
                try:
                    text = (await response.read())[:300].decode("utf-8", "replace")
                except PoolError:
                    text = ""
                response.release()
                last_error = f"{chosen.endpoint}: http {response.status} {text}"
                last_status = response.status
                self._failed(attempt, f"http_{response.status}", trip=response.status != 429)
                failures += 1
                self._give_up_if_spent(failures, last_error, 429 if response.status == 429 else 502)
                exclude.add(chosen.endpoint)
                continue
            outcome.endpoint, outcome.site, outcome.model = (
                chosen.endpoint,
                chosen.site,
                chosen.model,
            )
            if parsed.stream and response.status == 200:
                done = await self._stream(send, receive, response, attempt, parsed, outcome)
            else:
                done = await self._plain(send, response, attempt, parsed, outcome)
            if not done:  # failed before the first byte reached the client: fail over
                last_error = f"{chosen.endpoint}: stream broke before the first token"
                last_status = None
                failures += 1
                self._give_up_if_spent(failures, last_error)
                exclude.add(chosen.endpoint)
                continue
            return

    def _give_up_if_spent(self, failures: int, last_error: str, status: int = 502) -> None:
        """Raise the client's error once the retry budget is spent (429 stays a 429)."""
        if failures > self.config.retry_budget:
            raise ApiError(
                status,
                f"upstream failed after {failures} attempts; last error: {last_error}",
                "upstream_error",
                retry_after_s=1 if status == 429 else None,
            )

    def _failed(self, attempt: _Attempt, cause: str, trip: bool = True) -> None:
        i = attempt.endpoint
        name = self.view.fleet.infos[i].name
        self.view.fleet.failed(  # a stream broken midway had its first token: prompt computed
            i, attempt.uncached, cause != "stream_broken", self.clock(), attempt.ticket
        )
        self.metrics.retry(name, cause)
        if trip and self.breakers[i].failure(self.clock()):
            self.view.fleet.set_circuit_open(i, True)
            self.metrics.circuit_state(name, "open")
            log.warning("circuit opened for %s after %s", name, cause)

    def _succeeded(self, attempt: _Attempt) -> None:
        i = attempt.endpoint
        if self.breakers[i].success():
            self.view.fleet.set_circuit_open(i, False)
            self.metrics.circuit_state(self.view.fleet.infos[i].name, "closed")

    def _decision_headers(self, attempt: _Attempt) -> list[tuple[bytes, bytes]]:
        chosen = attempt.decision.chosen
        assert chosen is not None
        return [
            (b"x-isthmus-decision", _ascii(attempt.decision.header)),
            (b"x-isthmus-endpoint", _ascii(chosen.endpoint)),
            (b"x-isthmus-site", _ascii(chosen.site)),
        ]

    def _settle_usage(
        self,
        attempt: _Attempt,
        usage: dict[str, Any] | None,
        outcome: _Outcome,
        parsed: ParsedRequest,
        output_tokens: int,
    ) -> None:
        fleet = self.view.fleet
        i = attempt.endpoint
        info = fleet.infos[i]
        chosen = attempt.decision.chosen
        assert chosen is not None
        prompt = parsed.prompt_tokens
        completion = output_tokens
        cached = None
        if usage:
            prompt = int(usage.get("prompt_tokens") or prompt)
            completion = int(usage.get("completion_tokens") or completion)
            details = usage.get("prompt_tokens_details") or {}
            if isinstance(details, dict) and details.get("cached_tokens") is not None:
                cached = int(details["cached_tokens"])
        if cached is not None and parsed.block_hashes:
            fleet.cached_tokens_reported(i, parsed.block_hashes, cached)
        outcome.cached_reported = cached
        outcome.tokens = prompt + completion
        effective_cached = cached if cached is not None else chosen.cached_tokens
        outcome.usd = (
            prompt - effective_cached + 0.1 * effective_cached
        ) * info.usd_per_input_token + completion * info.usd_per_output_token
        self.metrics.tokens(info.name, prompt, chosen.cached_tokens, cached)

    async def _plain(
        self,
        send: Send,
        response: Response,
        attempt: _Attempt,
        parsed: ParsedRequest,
        outcome: _Outcome,
    ) -> bool:
        """Pass a whole response on. The client gets it as soon as it is read (and inspected);
        the bookkeeping (fleet state, usage, metrics) follows the write, off the client's
        critical path. The request counts as in flight until then (the write yields only when
        the client's socket buffer is full)."""
        fleet = self.view.fleet
        i = attempt.endpoint
        try:
            body = await response.read()
        except PoolError:
            self._failed(attempt, "read")
            return False
        finally:
            response.release()
        elapsed = self.clock() - attempt.started
        status = response.status
        content_type = response.headers.get("content-type", "application/json").encode("latin-1")
        upstream_body, data = body, None
        try:
            if status == 200:
                try:
                    body, data = await self._inspect_response(outcome.tenant, parsed, body)
                except ApiError:
                    outcome.status = "guard_blocked"
                    raise
            await self._send(send, status, body, content_type, self._decision_headers(attempt))
        finally:
            if status == 200:
                self._settle_plain(attempt, upstream_body, data, elapsed, parsed, outcome)
            else:
                # a 4xx from the upstream is the request's fault: pass it through, no failover
                fleet.failed(i, attempt.uncached, now_s=self.clock(), ticket=attempt.ticket)
                outcome.status = f"http_{status}"
        return True

    def _settle_plain(
        self,
        attempt: _Attempt,
        body: bytes,
        data: dict[str, Any] | None,
        elapsed_s: float,
        parsed: ParsedRequest,
        outcome: _Outcome,
    ) -> None:
        """A 200 came back whole: learn its TTFT, settle its usage, free its slot. ``data``:
        the response already parsed (by the guard), else ``body`` is parsed here."""
        fleet = self.view.fleet
        i = attempt.endpoint
        info = fleet.infos[i]
        if data is None:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
        usage = data.get("usage") if isinstance(data, dict) else None
        usage = usage if isinstance(usage, dict) else None
        output = int((usage or {}).get("completion_tokens") or 0)
        # without a stream the first token is not seen: subtract the modelled decode time
        ttft_s = max(0.0, elapsed_s - output / info.decode_tokens_per_s)
        fleet.first_token(i, attempt.ticket, attempt.predicted_ms, ttft_s * 1000.0, self.clock())
        self.metrics.observe_ttft(info.name, info.site, info.model, ttft_s)
        self._settle_usage(attempt, usage, outcome, parsed, output)
        self._succeeded(attempt)
        fleet.finished(i)
        if outcome.status != "guard_blocked":
            outcome.status = "ok"

    async def _stream(
        self,
        send: Send,
        receive: Receive,
        response: Response,
        attempt: _Attempt,
        parsed: ParsedRequest,
        outcome: _Outcome,
    ) -> bool:
        fleet = self.view.fleet
        i = attempt.endpoint
        info = fleet.infos[i]
        try:
            first = await response.readany()
        except PoolError:
            first = b""
        if not first:
            response.release()
            self._failed(attempt, "stream_start")
            return False
        ttft_s = self.clock() - attempt.started
        fleet.first_token(i, attempt.ticket, attempt.predicted_ms, ttft_s * 1000.0, self.clock())
        self.metrics.observe_ttft(info.name, info.site, info.model, ttft_s)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE, *self._decision_headers(attempt)],
            }
        )
        usage: dict[str, Any] | None = None
        chunks = 0
        tail = b""
        broken = False
        guarded = self._guarded_stream(outcome.tenant, parsed)
        disconnect = asyncio.ensure_future(receive())
        try:
            chunk = first
            while chunk:
                chunks += chunk.count(b"data: ")
                if b'"usage"' in chunk:
                    usage = _find_usage(tail + chunk) or usage
                tail = chunk[-4096:]
                body = chunk if guarded is None else guarded.feed(chunk)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                if disconnect.done():
                    raise _ClientGone
                if guarded is not None and guarded.blocked is not None:
                    break
                try:
                    chunk = await response.readany()
                except PoolError:
                    broken = True
                    break
            if not broken and not tail.rstrip().endswith(b"[DONE]"):
                broken = True
        except _ClientGone:
            response.close()
            fleet.failed(i, attempt.uncached, before_first_token=False, now_s=self.clock())
            outcome.status = "client_gone"
            raise
        finally:
            disconnect.cancel()
            response.release()
        if guarded is not None and guarded.filter.verdicts:
            await self._record(outcome.tenant, guarded.filter.verdicts)
        if guarded is not None and guarded.blocked is not None:
            error = ApiError(400, guarded.blocked, "guard_blocked")
            event = b"data: " + orjson.dumps(error.payload()) + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": False})
            self._settle_usage(attempt, usage, outcome, parsed, max(0, chunks - 2))
            self._succeeded(attempt)
            fleet.finished(i)
            outcome.status = "guard_blocked"
            return True
        if broken:
            error = ApiError(
                502,
                f"the upstream stream from {info.name} broke after it started",
                "upstream_stream_error",
            )
            event = b"data: " + orjson.dumps(error.payload()) + b"\n\n"
            await send({"type": "http.response.body", "body": event, "more_body": False})
            self._failed(attempt, "stream_broken")
            outcome.status = "stream_broken"
            self._settle_usage(attempt, usage, outcome, parsed, max(0, chunks - 2))
            return True
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self._settle_usage(attempt, usage, outcome, parsed, max(0, chunks - 2))
        self._succeeded(attempt)
        fleet.finished(i)
        outcome.status = "ok"
        return True


def _message_texts(data: dict[str, Any], kind: str) -> list[tuple[dict[str, Any], str]]:
    """The (holder, key) of every piece of model text in a non-streamed response."""
    out = []
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if kind == "chat":
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                out.append((message, "content"))
        elif isinstance(choice.get("text"), str):
            out.append((choice, "text"))
    return out


def _find_usage(data: bytes) -> dict[str, Any] | None:
    """The ``usage`` object of the last SSE event in ``data`` that carries one."""
    for line in reversed(data.split(b"\n")):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                event = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue
            usage = event.get("usage") if isinstance(event, dict) else None
            if isinstance(usage, dict):
                return usage
    return None
