"""Replay a request trace through a gateway's routing and emulated engines, in virtual time.

The gateway part mirrors ``isthmus.gateway.app`` event for event: ``route()`` from the routing
package decides; the fleet state is written through the same ``FleetState`` events at the same
moments (dispatch on decision, first token and cached-token report when the gateway would see
them, i.e. half an RTT after the engine produced them; completion likewise); engine metrics are
scraped on the same period as the gateway's health loop. Engines are ``EngineCore`` — the
emulator's timing model — stepped by the event loop.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isthmus.engines.emulator.fleet import spec_for_endpoint
from isthmus.engines.timing import Done, EngineProfile, EngineRequest, Event, FirstToken
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.routing import ROUTERS, RouteRequest, RoutingView, build_view
from isthmus.routing.fleet import DEFAULT_PROFILE
from isthmus.sim.engine import SimEngine
from isthmus.sim.events import EventLoop

__all__ = [
    "RequestResult",
    "TraceRequest",
    "chained_block_hashes",
    "load_mooncake",
    "replay",
]

TRACE_BLOCK_TOKENS = 512


@dataclass(frozen=True, slots=True)
class TraceRequest:
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    model: str = ""  # empty: the replay's default (likewise below)
    data_class: str = ""
    tenant: str = ""
    gateway_site: str = ""


@dataclass(slots=True)
class RequestResult:
    index: int
    arrival_s: float
    status: str
    endpoint: str | None = None
    site: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    predicted_ttft_ms: float = 0.0
    ttft_s: float | None = None
    e2e_s: float | None = None
    reason: str = ""


def load_mooncake(path: Path, limit: int | None = None, speedup: float = 1.0) -> list[TraceRequest]:
    """Mooncake JSONL rows as requests (timestamps in ms, compressed by ``speedup``)."""
    lines = path.read_text().splitlines()
    rows = [json.loads(line) for line in (lines[:limit] if limit else lines)]
    base = rows[0]["timestamp"] if rows else 0
    return [
        TraceRequest(
            arrival_s=(row["timestamp"] - base) / 1000.0 / speedup,
            prompt_tokens=int(row["input_length"]),
            output_tokens=int(row["output_length"]),
            hash_ids=tuple(row["hash_ids"]),
        )
        for row in rows
    ]


def chained_block_hashes(
    hash_ids: Sequence[int], prompt_tokens: int, block_tokens: int
) -> tuple[int, ...]:
    """Chained hashes of ``block_tokens``-token blocks of a prompt made of 512-token trace
    blocks (equal trace prefixes give equal hashes, at any block size dividing 512)."""
    per = TRACE_BLOCK_TOKENS // block_tokens
    out: list[int] = []
    previous = 0x15_7A_0B
    for k in range(prompt_tokens // block_tokens):
        trace_block = hash_ids[min(k // per, len(hash_ids) - 1)] if hash_ids else -1
        previous = hash((previous, trace_block, k % per))
        out.append(previous)
    return tuple(out)


def _profiles(fabric: Fabric) -> list[EngineProfile]:
    from isthmus.engines.timing import DEFAULT_PROFILE as ENGINE_DEFAULT

    profiles = []
    for endpoint in fabric.spec.endpoints:
        spec = spec_for_endpoint(fabric, endpoint)
        if spec is not None:
            profiles.append(spec.config.profile)
        else:  # provider APIs: a generic engine with the routing defaults
            profiles.append(
                EngineProfile(
                    prefill_tokens_per_s=DEFAULT_PROFILE.prefill_tokens_per_s,
                    decode_tokens_per_s=DEFAULT_PROFILE.decode_tokens_per_s,
                    kv_cache_tokens=DEFAULT_PROFILE.kv_cache_tokens
                    or ENGINE_DEFAULT.kv_cache_tokens,
                )
            )
    return profiles


@dataclass
class _Live:
    request: TraceRequest
    result: RequestResult
    endpoint: int
    uncached: int
    predicted_ms: float
    index_hashes: tuple[int, ...]
    one_way_s: float
    ticket: float


@dataclass
class Replay:
    fabric: Fabric
    policy: str = "isthmus"
    gateway_site: str = ""
    model: str = ""
    data_class: str = "public"
    objective: Objective = field(default_factory=lambda: Objective(kind="fastest"))
    index_block_tokens: int = 64
    scrape_interval_s: float = 0.2
    max_output_tokens: int | None = None
    view: RoutingView = field(init=False)
    loop: EventLoop = field(default_factory=EventLoop)

    def __post_init__(self) -> None:
        self.view = build_view(self.fabric, index_block_tokens=self.index_block_tokens)
        self.router = ROUTERS[self.policy]
        self.engines = [
            SimEngine(self.loop, profile, self._on_event_for(i))
            for i, profile in enumerate(_profiles(self.fabric))
        ]
        self._live: dict[str, _Live] = {}
        self.results: list[RequestResult] = []

    def _on_event_for(self, i: int):  # type: ignore[no-untyped-def]
        def on_event(event: Event, now: float) -> None:
            if isinstance(event, FirstToken):
                live = self._live[event.request_id]
                self.loop.at(now + live.one_way_s, self._first_token, live, event.cached_tokens)
            elif isinstance(event, Done):
                live = self._live.pop(event.request_id)
                self.loop.at(now + live.one_way_s, self._done, live, event.usage.cached_tokens)

        return on_event

    def _first_token(self, live: _Live, cached: int) -> None:
        now = self.loop.now
        observed_ms = (now - live.request.arrival_s) * 1000.0
        live.result.ttft_s = now - live.request.arrival_s
        live.result.cached_tokens = cached
        self.view.fleet.first_token(live.endpoint, live.ticket, live.predicted_ms, observed_ms, now)

    def _done(self, live: _Live, cached: int) -> None:
        fleet = self.view.fleet
        if live.index_hashes:
            fleet.cached_tokens_reported(live.endpoint, live.index_hashes, cached)
        fleet.finished(live.endpoint)
        live.result.e2e_s = self.loop.now - live.request.arrival_s
        live.result.status = "ok"

    def _arrive(self, k: int, request: TraceRequest) -> None:
        index_hashes = chained_block_hashes(
            request.hash_ids, request.prompt_tokens, self.index_block_tokens
        )
        route_request = RouteRequest(
            model=request.model or self.model,
            data_class=request.data_class or self.data_class,
            gateway_site=request.gateway_site or self.gateway_site,
            prompt_tokens=request.prompt_tokens,
            max_output_tokens=request.output_tokens,
            block_hashes=index_hashes,
            objective=self.objective,
            now_s=self.loop.now,
        )
        decision = self.router(route_request, self.view)
        result = RequestResult(
            k, request.arrival_s, decision.status, prompt_tokens=request.prompt_tokens
        )
        self.results.append(result)
        chosen = decision.chosen
        if chosen is None:
            result.reason = decision.reason
            return
        fleet = self.view.fleet
        i = fleet.position[chosen.endpoint]
        uncached = request.prompt_tokens - chosen.cached_tokens
        ticket = fleet.dispatched(i, uncached, index_hashes, self.loop.now)
        result.endpoint, result.site = chosen.endpoint, chosen.site
        result.predicted_ttft_ms = chosen.predicted_ttft_ms
        result.status = "running"
        rid = str(k)
        live = _Live(
            request,
            result,
            i,
            uncached,
            chosen.model_ttft_ms,
            index_hashes,
            chosen.rtt_ms / 2000.0,
            ticket,
        )
        self._live[rid] = live
        engine = self.engines[i]
        output = (
            request.output_tokens
            if self.max_output_tokens is None
            else min(request.output_tokens, self.max_output_tokens)
        )
        engine_request = EngineRequest(
            rid,
            request.prompt_tokens,
            max(1, output),
            chained_block_hashes(
                request.hash_ids, request.prompt_tokens, engine.core.profile.block_tokens
            ),
        )
        self.loop.at(self.loop.now + live.one_way_s, engine.submit, engine_request)

    def _scrape(self) -> None:
        fleet = self.view.fleet
        for i, engine in enumerate(self.engines):
            fleet.engine_report(i, waiting=engine.core.num_waiting, kv_usage=engine.core.kv_usage())
        if self._live or self._pending:
            self.loop.after(self.scrape_interval_s, self._scrape)

    def run(self, requests: Iterable[TraceRequest]) -> list[RequestResult]:
        items = list(requests)
        self._pending = len(items)
        for k, request in enumerate(items):
            self.loop.at(request.arrival_s, self._arrive_counted, k, request)
        if self.scrape_interval_s > 0:
            self.loop.at(0.0, self._scrape)
        self.loop.run()
        return self.results

    def _arrive_counted(self, k: int, request: TraceRequest) -> None:
        self._pending -= 1
        self._arrive(k, request)


def replay(fabric: Fabric, requests: Iterable[TraceRequest], **options: Any) -> list[RequestResult]:
    return Replay(fabric, **options).run(requests)
