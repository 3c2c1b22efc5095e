"""What sharing state through Redis adds to a gateway's request path, against local state.

Two gateway replicas of one site (``Gateway`` objects in this process, as two processes behind
a load balancer would be) take requests alternately at a paced rate. For every request the
part of the gateway's path that shared state changes is timed:

- at admission: ``ledger.admit`` (a Lua call on Redis when shared), ``route()``, and
  ``fleet.dispatched`` (which journals the prefill tokens and prefix chain when shared);
- at completion (``--window`` requests later, so endpoints have work in flight):
  ``fleet.first_token``, ``fleet.finished`` and ``ledger.settle`` (queued when shared).

Every ``--period`` seconds each replica runs its background round, as a started gateway does:
the queued settlements go to Redis in one pipelined call, then the fleet sync (its deltas out,
the peer's merged in). Each round's wall time and the CPU it takes on the event loop (thread
CPU time) are measured, and the CPU is spread over the requests of the run
(``sync_cpu_us_per_request``). Merging the peer's prefix chains costs about what indexing them
costs the peer (``dispatch_us``): each replica keeps the whole site's index.
Local and shared runs alternate (``--reps`` each) in the same process against the same
prompts (Mooncake conversation trace) on a synthetic fleet; Redis is the one on this machine
(loopback; a site's Redis on its LAN adds its round trip twice per request).

    .venv/bin/python bench/shared_state.py [--rate 1000] [--requests 6000] [--reps 2]

Writes bench/results/shared_state.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import redis

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Budget, Tenant
from isthmus.fabric.synth import synth_fabric
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.limits import Reservation
from isthmus.mesh.shared_state import SharedState, shared_state_from_url
from isthmus.routing import RouteRequest, route

RESULTS = Path(__file__).parent / "results"
TRACE = Path(__file__).parents[1] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
TRACE_BLOCK_TOKENS = 512
INDEX_BLOCK_TOKENS = 64
REDIS_URL = os.environ.get("ISTHMUS_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def index_hashes(hash_ids: list[int], input_length: int) -> tuple[int, ...]:
    """Chained 64-token block hashes of a prompt whose 512-token blocks are ``hash_ids``."""
    out: list[int] = []
    previous = 0
    per = TRACE_BLOCK_TOKENS // INDEX_BLOCK_TOKENS
    for k in range(input_length // INDEX_BLOCK_TOKENS):
        trace_block = hash_ids[min(k // per, len(hash_ids) - 1)]
        previous = hash((previous, trace_block, k % per)) & (2**64 - 1)
        out.append(previous)
    return tuple(out)


def fleet_fabric(sites: int) -> tuple[Fabric, Tenant]:
    """A synthetic fleet and a tenant with every limit set (none reached: all paths run)."""
    spec = synth_fabric(sites, endpoints_per_site=2, seed=3)
    tenant = Tenant(
        name="bench",
        default_data_class="public",
        rpm_limit=10**9,
        tpm_limit=10**12,
        budget=Budget(period="month", tokens=10**15, usd=10**9),
    )
    return Fabric(spec.model_copy(update={"tenants": (tenant,)})), tenant


@dataclass
class Samples:
    path: list[float] = field(default_factory=list)  # admit..dispatch + completion, seconds
    route: list[float] = field(default_factory=list)
    dispatch: list[float] = field(default_factory=list)  # fleet.dispatched (index insertion)
    ledger: list[float] = field(default_factory=list)  # admit + settle
    sync_wall: list[float] = field(default_factory=list)
    sync_cpu: list[float] = field(default_factory=list)
    requests: int = 0


@dataclass
class _InFlight:
    gateway: Gateway
    reservation: Reservation
    endpoint: int
    ticket: float
    predicted_ms: float
    tokens: int
    spent: float  # seconds already timed at admission
    admit: float  # of which in ledger.admit


async def run(
    gateways: list[Gateway],
    states: list[SharedState] | None,
    tenant: Tenant,
    requests: list[RouteRequest],
    rate: float,
    window: int,
    period_s: float,
    samples: Samples,
) -> None:
    pending: list[_InFlight] = []
    interval = 1.0 / rate
    start = time.perf_counter()
    next_sync = start + period_s
    perf = time.perf_counter
    for n, request in enumerate(requests):
        due = start + n * interval
        now = perf()
        if due > now:
            await asyncio.sleep(due - now)
        if states is not None and perf() >= next_sync:
            for gateway, state in zip(gateways, states, strict=True):
                wall, cpu = perf(), time.thread_time()
                await state.ledger.flush()
                await state.fleet.sync_once(gateway.view.fleet, gateway.clock())
                samples.sync_wall.append(perf() - wall)
                samples.sync_cpu.append(time.thread_time() - cpu)
            next_sync += period_s
        gateway = gateways[n % len(gateways)]
        fleet = gateway.view.fleet
        need = request.prompt_tokens + request.max_output_tokens
        request = replace(request, now_s=gateway.clock())
        t0 = perf()
        reservation = gateway.ledger.admit(tenant, need)
        t1 = perf()
        decision = route(request, gateway.view)
        t2 = perf()
        chosen = decision.chosen
        assert chosen is not None, decision.reason
        i = fleet.position[chosen.endpoint]
        ticket = fleet.dispatched(
            i, request.prompt_tokens - chosen.cached_tokens, request.block_hashes, gateway.clock()
        )
        t3 = perf()
        samples.route.append(t2 - t1)
        samples.dispatch.append(t3 - t2)
        pending.append(
            _InFlight(gateway, reservation, i, ticket, chosen.model_ttft_ms, need, t3 - t0, t1 - t0)
        )
        if len(pending) > window:
            done = pending.pop(0)
            _complete(done, tenant, samples)
    for done in pending:
        _complete(done, tenant, samples)
    samples.requests += len(requests)


def _complete(done: _InFlight, tenant: Tenant, samples: Samples) -> None:
    perf = time.perf_counter
    fleet = done.gateway.view.fleet
    t0 = perf()
    now = done.gateway.clock()
    fleet.first_token(done.endpoint, done.ticket, done.predicted_ms, done.predicted_ms, now)
    fleet.finished(done.endpoint)
    t1 = perf()
    done.gateway.ledger.settle(tenant, done.reservation, done.tokens, 0.001)
    t2 = perf()
    samples.path.append(done.spent + t2 - t0)
    samples.ledger.append(done.admit + t2 - t1)


def stats(values: list[float]) -> dict[str, float]:
    us = np.asarray(values) * 1e6
    if not len(us):
        return {"p50": 0.0, "p99": 0.0, "mean": 0.0}
    return {
        "p50": float(np.percentile(us, 50)),
        "p99": float(np.percentile(us, 99)),
        "mean": float(us.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=50, help="2 endpoints per site")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s, both replicas")
    parser.add_argument("--requests", type=int, default=6000, help="per run")
    parser.add_argument("--reps", type=int, default=2, help="local and shared runs, alternated")
    parser.add_argument("--window", type=int, default=32, help="requests in flight")
    parser.add_argument("--period", type=float, default=0.05, help="fleet sync period, s")
    args = parser.parse_args()

    fabric, tenant = fleet_fabric(args.sites)
    site = next(iter(fabric.sites))
    rows = [json.loads(line) for line in TRACE.read_text().splitlines()][: args.requests]
    requests = [
        RouteRequest(
            model="chat",
            data_class="public",
            gateway_site=site,
            prompt_tokens=row["input_length"],
            max_output_tokens=row["output_length"],
            block_hashes=index_hashes(row["hash_ids"], row["input_length"]),
            tenant=tenant.name,
            deadline_ms=1e9,
        )
        for row in rows
    ]
    config = GatewayConfig(
        site=site, health_interval_s=0, log_decisions=False, index_block_tokens=INDEX_BLOCK_TOKENS
    )
    local, shared = Samples(), Samples()
    namespaces: list[str] = []
    gc.freeze()

    async def both() -> None:
        for _ in range(args.reps):
            gateways = [Gateway(fabric, config) for _ in range(2)]
            await run(gateways, None, tenant, requests, args.rate, args.window, args.period, local)
            namespace = f"bench-shared-{uuid.uuid4().hex[:8]}"
            namespaces.append(namespace)
            states = [
                shared_state_from_url(REDIS_URL, site, namespace, sync_period_s=args.period)
                for _ in range(2)
            ]
            gateways = [Gateway(fabric, config, shared=state) for state in states]
            for gateway, state in zip(gateways, states, strict=True):
                state.fleet.attach(gateway.view.fleet)
                state.ledger.deferred = True  # as a started gateway: settle in the sync round
            await run(
                gateways, states, tenant, requests, args.rate, args.window, args.period, shared
            )
            for state in states:
                await state.stop()

    try:
        asyncio.run(both())
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for namespace in namespaces:
            keys = list(client.scan_iter(f"{namespace}:*"))
            if keys:
                client.delete(*keys)
        client.close()

    sync_cpu_per_request = sum(shared.sync_cpu) / max(1, shared.requests) * 1e6
    local_path, shared_path = stats(local.path), stats(shared.path)
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "redis": "loopback, same machine",
        },
        "load": {
            "replicas": 2,
            "endpoints": len(fabric.spec.endpoints),
            "rate_per_s": args.rate,
            "requests_per_run": len(requests),
            "runs_each": args.reps,
            "in_flight_window": args.window,
            "sync_period_s": args.period,
        },
        "local": {
            "path_us": local_path,
            "route_us": stats(local.route),
            "dispatch_us": stats(local.dispatch),
            "ledger_us": stats(local.ledger),
        },
        "shared": {
            "path_us": shared_path,
            "route_us": stats(shared.route),
            "dispatch_us": stats(shared.dispatch),
            "ledger_us": stats(shared.ledger),
            "sync_round_wall_us": stats(shared.sync_wall),
            "sync_round_cpu_us": stats(shared.sync_cpu),
            "sync_rounds": len(shared.sync_cpu),
            "sync_cpu_us_per_request": sync_cpu_per_request,
        },
        "added_us": {
            "p50": shared_path["p50"] - local_path["p50"] + sync_cpu_per_request,
            "p99": shared_path["p99"] - local_path["p99"] + sync_cpu_per_request,
        },
        "ratio_p50": (shared_path["p50"] + sync_cpu_per_request) / local_path["p50"],
        "ratio_p99": (shared_path["p99"] + sync_cpu_per_request) / local_path["p99"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shared_state.json").write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"2 replicas, {len(fabric.spec.endpoints)} endpoints, {args.rate:.0f} req/s, "
        f"{len(requests):,} requests x {args.reps} runs each, Redis on loopback"
    )
    print(f"{'per request, us':34} {'local p50':>10} {'p99':>8} {'shared p50':>11} {'p99':>8}")
    for name, key in (
        ("gateway path (admit..settle)", "path_us"),
        ("  route() alone", "route_us"),
        ("  fleet.dispatched (index insert)", "dispatch_us"),
        ("  ledger admit + settle", "ledger_us"),
    ):
        lo, sh = result["local"][key], result["shared"][key]  # type: ignore[index]
        print(f"{name:34} {lo['p50']:10.1f} {lo['p99']:8.1f} {sh['p50']:11.1f} {sh['p99']:8.1f}")
    sync = result["shared"]
    print(
        f"fleet sync round: wall p50 {sync['sync_round_wall_us']['p50']:.0f} us, "  # type: ignore[index]
        f"loop CPU p50 {sync['sync_round_cpu_us']['p50']:.0f} us, "  # type: ignore[index]
        f"{sync_cpu_per_request:.1f} us per request"
    )
    added = result["added_us"]
    print(
        f"added by shared state: p50 {added['p50']:.1f} us, p99 {added['p99']:.1f} us "  # type: ignore[index]
        f"(x{result['ratio_p50']:.2f} at p50, x{result['ratio_p99']:.2f} at p99)"
    )


if __name__ == "__main__":
    main()
