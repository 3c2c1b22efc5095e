"""Replay a request trace through gateways' routing and emulated engines, in virtual time.

The gateway part mirrors ``isthmus.gateway.app`` event for event: ``route()`` decides; the fleet
state is written through the same ``FleetState`` events at the same moments (dispatch on
decision; first token, cached-token report and completion when the gateway would see them,
half an RTT after the engine produced them); engine metrics are scraped on the gateway's health
period; a request whose endpoint fails is retried on the next decision excluding it, within the
retry budget. Engines are ``EngineCore`` — the emulator's timing model — stepped by the event
loop. Requests carry their own gateway site, tenant, data class and model (see
``isthmus.sim.demand``), so one replay can drive many gateways sharing one fleet view.

Naive policies can be run blind to sovereignty (``respect_sovereignty=False``); every routed
request is then checked against the compiled policy and counted as a violation if refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from isthmus.engines.emulator.fleet import spec_for_endpoint
from isthmus.engines.timing import (
    DEFAULT_PROFILE as ENGINE_DEFAULT,
)
from isthmus.engines.timing import (
    Done,
    EngineProfile,
    EngineRequest,
    Event,
    FirstToken,
    RequestTooLarge,
)
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.routing import ROUTERS, RouteRequest, RoutingView, build_view
from isthmus.routing.fleet import DEFAULT_PROFILE
from isthmus.sim.engine import RUN_STEPS, SimEngine
from isthmus.sim.events import EventLoop
from isthmus.sim.serving import CpuQueue, ServingCpu

__all__ = [
    "Outage",
    "Replay",
    "RequestResult",
    "TraceRequest",
    "chained_block_hashes",
    "replay",
]

TRACE_BLOCK_TOKENS = 512
_POSITION_BITS = 10  # room for a block's position within a trace block (512 / 1 < 2**10)
_CHAIN_MASK = (1 << 53) - 1  # 53 + 10 bits fit an int64
BYTES_PER_TOKEN = 4.0


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
    metro: str = ""
    ttft_slo_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Outage:
    """Endpoints at ``site`` (or of ``provider``) fail at ``start_s`` and recover after
    ``duration_s`` (``inf``: never). Requests running there fail and are retried."""

    start_s: float
    site: str | None = None
    provider: str | None = None
    duration_s: float = float("inf")


@dataclass(slots=True)
class RequestResult:
    index: int
    arrival_s: float
    status: str
    endpoint: str | None = None
    site: str | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    predicted_ttft_ms: float = 0.0
    ttft_s: float | None = None
    e2e_s: float | None = None
    reason: str = ""
    attempts: int = 0
    violation: str = ""
    tenant: str = ""
    data_class: str = ""
    ttft_slo_ms: float | None = None
    cost_usd: float = 0.0


def chained_block_hashes(
    hash_ids: Sequence[int], prompt_tokens: int, block_tokens: int
) -> tuple[int, ...]:
    """Chained hashes of ``block_tokens``-token blocks of a prompt made of 512-token trace
    blocks (equal trace prefixes give equal hashes, at any block size dividing 512). A
    request without ``hash_ids`` shares nothing (its blocks are unique to it).

    The chain is hashed per trace block; block ``r`` of a trace block is that trace block's
    chained hash (53 bits) shifted left by 10, plus ``r``: distinct prefixes give distinct
    hashes unless two chains agree in 53 bits. Blocks past the trace's ids repeat its last id
    (a prompt longer than its ids, as in the trace's last partial block)."""
    if not hash_ids:
        return ()
    per = TRACE_BLOCK_TOKENS // block_tokens
    n = prompt_tokens // block_tokens
    if n == 0:
        return ()
    groups = -(-n // per)
    ids = list(hash_ids[:groups])
    ids += [ids[-1]] * (groups - len(ids))
    chain: list[int] = []
    previous = 0x157A0B
    for trace_block in ids:
        previous = hash((previous, trace_block))
        chain.append((previous & _CHAIN_MASK) << _POSITION_BITS)
    if per == 1:
        return tuple(chain[:n])
    if n < 64:
        return tuple([chain[k // per] + k % per for k in range(n)])
    blocks = np.repeat(np.asarray(chain, dtype=np.int64), per)[:n]
    blocks += np.tile(np.arange(per, dtype=np.int64), groups)[:n]
    return tuple(blocks.tolist())


def _profiles(fabric: Fabric) -> list[tuple[EngineProfile, int]]:
    """The engine profile and replica count of every endpoint, as the emulator runs them."""
    profiles = []
    for endpoint in fabric.spec.endpoints:
        spec = spec_for_endpoint(fabric, endpoint)
        if spec is not None:
            profiles.append((spec.config.profile, spec.config.replicas))
        else:  # provider APIs: a generic engine with the routing defaults
            kv = DEFAULT_PROFILE.kv_cache_tokens or ENGINE_DEFAULT.kv_cache_tokens
            profile = EngineProfile(
                prefill_tokens_per_s=DEFAULT_PROFILE.prefill_tokens_per_s,
                decode_tokens_per_s=DEFAULT_PROFILE.decode_tokens_per_s,
                kv_cache_tokens=kv,
            )
            profiles.append((profile, 1))
    return profiles


@dataclass
class _Live:
    request: TraceRequest
    result: RequestResult
    endpoint: int
    replica: int
    uncached: int
    predicted_ms: float
    index_hashes: tuple[int, ...]
    one_way_s: float
    ticket: float
    request_id: str
    dispatched_s: float = 0.0
    first_seen: bool = False
    exclude: frozenset[str] = frozenset()


@dataclass
class Replay:
    """One replay of a trace through ``fabric`` with one routing ``policy``.

    ``index_block_tokens`` is the gateway's prefix-index block (64, as ``GatewayConfig``);
    ``engine_block_tokens`` overrides the engines' KV block size (None: their profile's, 16
    as vLLM), a coarser block being a faster, approximate simulation (hits and allocations
    rounded to the block); ``run_steps`` caps the passes a decode run folds into one event
    (1: step every pass, as the emulator does; the timings are the same).

    The serving path's own time per request before its engine queues it (body parsing,
    tokenising, block hashing, guard inspection at the gateway and at the engine) is zero for an
    ideal path. ``request_overhead_s + prompt_tokens * overhead_s_per_prompt_token`` adds it as
    a pure delay, as if every request had a CPU of its own; ``serving_cpu`` instead makes it
    work for one shared CPU that serves requests one at a time (``isthmus.sim.serving``), so
    requests arriving together wait for each other, as on the emulated deployment's one event
    loop. bench/sim_fidelity.py measures both on that deployment (about 6 ms + 1.45 ms per
    1,000 prompt tokens per request on the 2-core development machine).
    """

    fabric: Fabric
    policy: str = "isthmus"
    gateway_site: str = ""
    model: str = ""
    data_class: str = "public"
    objective: Objective = field(default_factory=lambda: Objective(kind="fastest"))
    index_block_tokens: int = 64
    engine_block_tokens: int | None = None
    run_steps: int = RUN_STEPS
    request_overhead_s: float = 0.0
    overhead_s_per_prompt_token: float = 0.0
    serving_cpu: ServingCpu | None = None
    scrape_interval_s: float = 0.2
    max_output_tokens: int | None = None
    respect_sovereignty: bool = True
    retry_budget: int = 2
    outages: Sequence[Outage] = ()
    detection_delay_s: float = 1.0
    view: RoutingView = field(init=False)
    loop: EventLoop = field(default_factory=EventLoop)

    def __post_init__(self) -> None:
        self.view = build_view(
            self.fabric,
            index_block_tokens=self.index_block_tokens,
            ignore_sovereignty=not self.respect_sovereignty,
        )
        self.router = ROUTERS[self.policy]
        self.engines: list[list[SimEngine]] = []
        for i, (profile, replicas) in enumerate(_profiles(self.fabric)):
            if self.engine_block_tokens is not None:
                profile = replace(profile, block_tokens=self.engine_block_tokens)
            self.engines.append(
                [
                    SimEngine(self.loop, profile, self._on_event_for(i), self.run_steps)
                    for _ in range(replicas)
                ]
            )
        self.down = [0] * len(self.engines)  # outages in progress per endpoint (they may overlap)
        self._live: dict[str, _Live] = {}
        self._attempt = 0
        self.results: list[RequestResult] = []
        self._idle_reported = [False] * len(self.engines)  # scrapes of an idle engine repeat
        self.end_s = 0.0
        # without a serving CPU, requests go straight on: no queue, no extra event
        self.serving_queue: CpuQueue | None = None
        self._to_gateway = self._dispatch
        self._to_engine = self._submit
        if self.serving_cpu is not None:
            self.serving_queue = CpuQueue(self.loop)
            self._to_gateway = self._queue_at_gateway
            self._to_engine = self._queue_at_engine

    # -- engines -----------------------------------------------------------------------------
    def _on_event_for(self, i: int):  # type: ignore[no-untyped-def]
        def on_event(event: Event, now: float) -> None:
            if isinstance(event, FirstToken):
                live = self._live.get(event.request_id)
                if live is not None:
                    self.loop.at(now + live.one_way_s, self._first_token, live, event.cached_tokens)
            elif isinstance(event, Done):
                live = self._live.pop(event.request_id, None)
                if live is not None:
                    self.loop.at(now + live.one_way_s, self._done, live, event.usage.cached_tokens)

        return on_event

    def _first_token(self, live: _Live, cached: int) -> None:
        if live.result.status != "running" or live.first_seen:
            return
        now = self.loop.now
        live.first_seen = True
        observed_ms = (now - live.dispatched_s) * 1000.0  # the gateway times its attempt
        live.result.ttft_s = now - live.request.arrival_s
        live.result.cached_tokens = cached
        self.view.fleet.first_token(live.endpoint, live.ticket, live.predicted_ms, observed_ms, now)

    def _done(self, live: _Live, cached: int) -> None:
        if live.result.status != "running":
            return
        self.end_s = self.loop.now
        fleet = self.view.fleet
        if live.index_hashes:
            fleet.cached_tokens_reported(live.endpoint, live.index_hashes, cached)
        fleet.finished(live.endpoint)
        live.result.e2e_s = self.loop.now - live.request.arrival_s
        live.result.status = "ok"
        info = fleet.infos[live.endpoint]
        uncached = live.request.prompt_tokens - cached
        live.result.cost_usd = (
            uncached + 0.1 * cached
        ) * info.usd_per_input_token + live.result.output_tokens * info.usd_per_output_token

    # -- gateway -----------------------------------------------------------------------------
    def _arrive(self, k: int, request: TraceRequest) -> None:
        self.end_s = self.loop.now
        result = RequestResult(
            k,
            request.arrival_s,
            "pending",
            prompt_tokens=request.prompt_tokens,
            tenant=request.tenant,
            data_class=request.data_class or self.data_class,
            ttft_slo_ms=request.ttft_slo_ms,
        )
        self.results.append(result)
        self._to_gateway(request, result, frozenset())

    def _queue_at_gateway(
        self, request: TraceRequest, result: RequestResult, exclude: frozenset[str]
    ) -> None:
        assert self.serving_queue is not None and self.serving_cpu is not None
        service_s = self.serving_cpu.gateway_service_s(request.prompt_tokens)
        self.serving_queue.serve(service_s, self._dispatch, request, result, exclude)

    def _queue_at_engine(self, live: _Live, engine_request: EngineRequest) -> None:
        assert self.serving_queue is not None and self.serving_cpu is not None
        service_s = self.serving_cpu.engine_service_s(live.request.prompt_tokens)
        self.serving_queue.serve(service_s, self._submit, live, engine_request)

    def _dispatch(
        self, request: TraceRequest, result: RequestResult, exclude: frozenset[str]
    ) -> None:
        now = self.loop.now
        index_hashes = chained_block_hashes(
            request.hash_ids, request.prompt_tokens, self.index_block_tokens
        )
        gateway = request.gateway_site or self.gateway_site
        data_class = request.data_class or self.data_class
        route_request = RouteRequest(
            model=request.model or self.model,
            data_class=data_class,
            gateway_site=gateway,
            prompt_tokens=request.prompt_tokens,
            max_output_tokens=request.output_tokens,
            block_hashes=index_hashes,
            objective=self.objective,
            exclude=exclude,
            now_s=now,
        )
        decision = self.router(route_request, self.view)
        result.attempts += 1
        chosen = decision.chosen
        if chosen is None:
            result.status = decision.status
            result.reason = decision.reason
            return
        fleet = self.view.fleet
        i = fleet.position[chosen.endpoint]
        if not self.respect_sovereignty:
            path = self.view.network.path(gateway, chosen.site)
            verdict = self.view.policy.evaluate(data_class, chosen.site, path, chosen.model)
            if not verdict.allowed:
                private = self.view.network.path(gateway, chosen.site, private_only=True)
                retry = (
                    self.view.policy.evaluate(data_class, chosen.site, private, chosen.model)
                    if private is not None
                    else verdict
                )
                if not retry.allowed:
                    result.violation = f"{verdict.rule} ({verdict.clause})"
        uncached = request.prompt_tokens - chosen.cached_tokens
        ticket = fleet.dispatched(i, uncached, index_hashes, now)
        result.endpoint, result.site = chosen.endpoint, chosen.site
        result.predicted_ttft_ms = chosen.predicted_ttft_ms
        result.status = "running"
        output = request.output_tokens
        if self.max_output_tokens is not None:
            output = min(output, self.max_output_tokens)
        output = max(1, output)
        result.output_tokens = output
        self._attempt += 1
        rid = f"{result.index}.{self._attempt}"
        replicas = self.engines[i]
        transfer_s = 0.0
        path = self.view.network.path(gateway, chosen.site)
        if path is not None and path.bandwidth_gbps:
            transfer_s = request.prompt_tokens * BYTES_PER_TOKEN * 8 / (path.bandwidth_gbps * 1e9)
        live = _Live(
            request,
            result,
            i,
            0,
            uncached,
            chosen.model_ttft_ms,
            index_hashes,
            chosen.rtt_ms / 2000.0,
            ticket,
            rid,
            now,
            exclude=exclude | {chosen.endpoint},
        )
        if self.down[i]:  # the gateway does not know yet: the connection fails after an RTT
            self.loop.at(now + 2 * live.one_way_s, self._failed, live, "connect")
            return
        engine_hashes = chained_block_hashes(
            request.hash_ids, request.prompt_tokens, replicas[0].core.profile.block_tokens
        )
        engine_request = EngineRequest(rid, request.prompt_tokens, output, engine_hashes)
        if len(replicas) > 1:
            for replica in replicas:
                replica.sync()
            live.replica = min(
                range(len(replicas)),
                key=lambda r: replicas[r].core.predict_ttft_s(
                    request.prompt_tokens, engine_hashes, now
                ),
            )
        self._live[rid] = live
        overhead_s = (
            self.request_overhead_s + request.prompt_tokens * self.overhead_s_per_prompt_token
        )
        self.loop.at(
            now + live.one_way_s + transfer_s + overhead_s, self._to_engine, live, engine_request
        )

    def _submit(self, live: _Live, engine_request: EngineRequest) -> None:
        if self._live.get(live.request_id) is not live:
            return  # failed on its way (its site went down): its retry is already under way
        if self.down[live.endpoint]:
            self._live.pop(live.request_id, None)
            self.loop.after(live.one_way_s, self._failed, live, "connect")
            return
        try:
            self.engines[live.endpoint][live.replica].submit(engine_request)
        except RequestTooLarge as exc:  # the engine answers 400, which the gateway passes on
            self.end_s = self.loop.now
            self._live.pop(live.request_id, None)
            self.view.fleet.failed(live.endpoint, live.uncached, True, self.loop.now, live.ticket)
            live.result.status = "rejected"
            live.result.reason = str(exc)

    def _failed(self, live: _Live, cause: str) -> None:
        self.end_s = self.loop.now
        fleet = self.view.fleet
        fleet.failed(live.endpoint, live.uncached, not live.first_seen, self.loop.now, live.ticket)
        result = live.result
        if live.first_seen or result.attempts > self.retry_budget:
            result.status = "failed"
            result.reason = f"{cause} at {live.result.endpoint}"
            return
        self._dispatch(live.request, result, live.exclude)

    # -- faults ------------------------------------------------------------------------------
    def _affected(self, outage: Outage) -> list[int]:
        infos = self.view.fleet.infos
        return [
            i
            for i, info in enumerate(infos)
            if (outage.site is not None and info.site == outage.site)
            or (outage.provider is not None and info.provider == outage.provider)
        ]

    def _outage_start(self, outage: Outage) -> None:
        for i in self._affected(outage):
            self.down[i] += 1
            for replica in self.engines[i]:
                for rid in [r for r, live in self._live.items() if live.endpoint == i]:
                    replica.abort(rid)
            for rid, live in list(self._live.items()):
                if live.endpoint == i:
                    del self._live[rid]
                    self.loop.after(live.one_way_s, self._failed, live, "outage")
            self.loop.after(self.detection_delay_s, self.view.fleet.set_health, i, False)

    def _outage_end(self, outage: Outage) -> None:
        for i in self._affected(outage):
            self.down[i] -= 1
            if not self.down[i]:  # the last outage of this endpoint is over
                self.loop.after(self.detection_delay_s, self.view.fleet.set_health, i, True)

    def _scrape(self) -> None:
        fleet = self.view.fleet
        idle_reported = self._idle_reported
        for i, replicas in enumerate(self.engines):
            core = replicas[0].core
            if core.idle:  # reports nothing waiting and no block in use
                if not idle_reported[i]:
                    fleet.engine_report(i, waiting=0, kv_usage=core.kv_usage())
                    idle_reported[i] = True
                continue
            idle_reported[i] = False
            replicas[0].sync()
            fleet.engine_report(i, waiting=core.num_waiting, kv_usage=core.kv_usage())
        if self._live or self.loop.feeding:
            self.loop.after(self.scrape_interval_s, self._scrape)

    def run(self, requests: Iterable[TraceRequest]) -> list[RequestResult]:
        """Replay ``requests``; results in arrival order. A list or tuple may be in any order;
        any other iterable is consumed lazily as the replay reaches it and must be sorted by
        arrival (a generator of a million requests never sits in memory at once)."""
        numbered: Iterable[tuple[int, TraceRequest]] = enumerate(requests)
        if isinstance(requests, Sequence):  # in arrival order, ties in list order
            numbered = sorted(numbered, key=lambda item: max(item[1].arrival_s, 0.0))
        self.loop.feed((max(item[1].arrival_s, 0.0), self._arrive, item) for item in numbered)
        for outage in self.outages:
            self.loop.at(outage.start_s, self._outage_start, outage)
            if outage.duration_s != float("inf"):
                self.loop.at(outage.start_s + outage.duration_s, self._outage_end, outage)
        if self.scrape_interval_s > 0:
            self.loop.at(0.0, self._scrape)
        self.loop.run()
        return self.results

    def engine_busy_s(self) -> list[float]:
        return [sum(r.busy_s for r in replicas) for replicas in self.engines]


def replay(fabric: Fabric, requests: Iterable[TraceRequest], **options: Any) -> list[RequestResult]:
    return Replay(fabric, **options).run(requests)
