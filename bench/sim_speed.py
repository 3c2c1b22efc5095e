"""Simulator speed: simulated requests per wall-second, on 100 endpoints and on 280 sites.

Targets (issue): >= 50,000 simulated requests per wall-second on one core for a 100-endpoint
fabric, and 1,000,000 requests over a 280-site fabric in <= 2 minutes. This script measures
where the simulator stands: the Mooncake conversation trace (real prompt lengths and prefix
sharing) replayed at a rate that keeps the fleet busy, through the real ``route()`` and the
step-level engine model.

- **100 endpoints**: the first ``--requests`` of the trace at ``--rate-scale``; the baseline in
  the same run is the same replay with round-robin routing (what the engine model alone costs),
  then Isthmus with exact 16-token engine blocks and 64-token index blocks, and with engine and
  index blocks of 512 tokens (the trace's block: a faster, approximate simulation). Each row
  is the median wall time of ``--repeats`` runs. Then the router alone on the same requests
  (``route()`` and the fleet-state dispatch, no engines, no events; the best of ``--repeats``):
  the ceiling of any simulator that calls the live router once per request, on this interpreter.
- **280 sites** (``synth_fabric(280)``, two endpoints per site): the trace repeated back to back
  (``isthmus.sim.traces.repeat_trace``: each copy a new population of conversations, hash ids
  shifted) and compressed so each endpoint sees the request rate of the 100-endpoint case;
  requests enter at the sites' gateways in turn. ``--large-requests`` of the ``--large-total``
  are simulated; when fewer than the total, the time for the total is extrapolated linearly
  from the measured rate and labelled so.

Outputs are capped at 64 tokens in both. Writes bench/results/sim_speed.json.

    .venv/bin/python bench/sim_speed.py [--requests 3000] [--large-requests 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.fabric.synth import synth_fabric
from isthmus.routing import RouteRequest, route
from isthmus.sim.replay import Replay, TraceRequest, chained_block_hashes
from isthmus.sim.traces import load_mooncake, repeat_trace

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"
OUTPUT_CAP = 64
COARSE = {"index_block_tokens": 512, "engine_block_tokens": 512}
TARGET_RATE = 50_000
TARGET_LARGE_S = 120.0


def _replay(fabric: Fabric, policy: str, options: dict[str, Any], gateway: str = "") -> Replay:
    return Replay(
        fabric,
        policy=policy,
        gateway_site=gateway,
        model="chat",
        data_class="public",
        objective=Objective(kind="fastest"),
        **options,
    )


def _timed(replay: Replay, requests: Any) -> tuple[float, int, int]:
    started = time.perf_counter()
    results = replay.run(requests)
    wall = time.perf_counter() - started
    return wall, len(results), sum(1 for r in results if r.status == "ok")


def small_case(
    args: argparse.Namespace,
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    spec = synth_fabric(args.endpoints, endpoints_per_site=1, seed=11)
    fabric = Fabric(spec.model_copy(update={"endpoints": spec.endpoints[: args.endpoints]}))
    gateway = next(iter(fabric.sites))
    requests = [
        replace(r, output_tokens=min(r.output_tokens, OUTPUT_CAP))
        for r in load_mooncake(TRACE, args.requests, args.rate_scale)
    ]
    rows = []
    for policy, mode, options in (
        ("round_robin", "exact", {}),
        ("isthmus", "coarse-512", COARSE),
        ("isthmus", "exact", {}),
    ):
        walls = []
        for _ in range(args.repeats):
            replay = _replay(fabric, policy, options, gateway)
            wall, n, ok = _timed(replay, requests)
            walls.append(wall)
        wall = statistics.median(walls)
        rows.append(
            {
                "policy": policy,
                "blocks": mode,
                "requests": n,
                "ok": ok,
                "wall_s": round(wall, 3),
                "wall_s_runs": [round(w, 3) for w in walls],
                "simulated_s": round(replay.end_s, 1),
                "requests_per_wall_s": round(n / wall, 1),
                "events": replay.loop.events_run,
            }
        )
        print(
            f"{policy:12} {mode:10} {n:,} requests ({ok:,} ok) on {len(fabric.endpoints)} "
            f"endpoints: {wall:.2f} s wall (median of {len(walls)}) for {replay.end_s:.0f} s "
            f"simulated -> {n / wall:,.0f} requests per wall-second"
        )
    ceiling = []
    for mode, options in (("coarse-512", COARSE), ("exact", {})):
        row = min(
            (route_ceiling(fabric, requests, gateway, mode, options) for _ in range(args.repeats)),
            key=lambda r: r["wall_s"],
        )
        ceiling.append(row)
        print(
            f"route() alone  {mode:10} {row['requests']:,} requests: "
            f"{row['us_per_request']:.0f} us each -> at most {row['requests_per_wall_s']:,.0f} "
            f"requests per wall-second for a simulator calling it once per request"
        )
    return len(fabric.endpoints), rows, ceiling


def route_ceiling(
    fabric: Fabric, requests: list[TraceRequest], gateway: str, mode: str, options: dict[str, Any]
) -> dict[str, Any]:
    """The router alone on the same requests: each one's decision and its dispatch into the
    fleet state (prefix index, in-flight counts), without engines or events. Any simulator that
    calls the live ``route()`` once per request runs no faster than this on this interpreter."""
    replay = _replay(fabric, "isthmus", options, gateway)
    view, fleet = replay.view, replay.view.fleet
    block = replay.index_block_tokens
    routed = [
        RouteRequest(
            model="chat",
            data_class="public",
            gateway_site=gateway,
            prompt_tokens=r.prompt_tokens,
            max_output_tokens=r.output_tokens,
            block_hashes=chained_block_hashes(r.hash_ids, r.prompt_tokens, block),
            objective=Objective(kind="fastest"),
            now_s=r.arrival_s,
        )
        for r in requests
    ]
    started = time.perf_counter()
    for request in routed:
        decision = route(request, view)
        chosen = decision.chosen
        if chosen is not None:
            i = fleet.position[chosen.endpoint]
            fleet.dispatched(
                i, request.prompt_tokens - chosen.cached_tokens, request.block_hashes, request.now_s
            )
            fleet.finished(i)
    wall = time.perf_counter() - started
    return {
        "what": "route() and the fleet-state dispatch per request, no engines, no events",
        "blocks": mode,
        "requests": len(routed),
        "wall_s": round(wall, 3),
        "us_per_request": round(wall / len(routed) * 1e6, 1),
        "requests_per_wall_s": round(len(routed) / wall, 1),
    }


def large_trace(fabric: Fabric, total: int, rate_scale: float) -> Iterator[TraceRequest]:
    sites = sorted(fabric.sites)
    base = load_mooncake(TRACE, None, rate_scale)
    for k, request in enumerate(repeat_trace(base, total)):
        yield replace(
            request,
            output_tokens=min(request.output_tokens, OUTPUT_CAP),
            gateway_site=sites[k % len(sites)],
        )


def large_case(args: argparse.Namespace, small_endpoints: int) -> dict[str, Any]:
    fabric = Fabric(synth_fabric(args.large_sites, seed=11))
    endpoints = len(fabric.endpoints)
    rate_scale = args.rate_scale * endpoints / small_endpoints
    rows = []
    for mode, options in (("coarse-512", COARSE), ("exact", {})):
        if mode not in args.large_modes:
            continue
        replay = _replay(fabric, "isthmus", options)
        wall, n, ok = _timed(replay, large_trace(fabric, args.large_requests, rate_scale))
        rate = n / wall
        projected = args.large_total / rate
        measured = n >= args.large_total
        rows.append(
            {
                "policy": "isthmus",
                "blocks": mode,
                "requests": n,
                "ok": ok,
                "wall_s": round(wall, 1),
                "simulated_s": round(replay.end_s, 1),
                "requests_per_wall_s": round(rate, 1),
                "events": replay.loop.events_run,
                "total_requests": args.large_total,
                "wall_s_for_total": round(projected, 1),
                "wall_s_for_total_is": "measured" if measured else "extrapolated",
            }
        )
        print(
            f"isthmus      {mode:10} {n:,} requests ({ok:,} ok) on {args.large_sites} sites "
            f"({endpoints} endpoints): {wall:.1f} s wall for {replay.end_s:.0f} s simulated -> "
            f"{rate:,.0f} requests per wall-second; {args.large_total:,} requests: "
            f"{projected:.0f} s ({'measured' if measured else 'extrapolated'})"
        )
    return {
        "sites": args.large_sites,
        "endpoints": endpoints,
        "trace": (
            f"Mooncake conversation repeated back to back (hash ids shifted per copy), "
            f"rate x{rate_scale:.1f}, gateways at every site in turn, outputs capped at "
            f"{OUTPUT_CAP} tokens"
        ),
        "rows": rows,
        "target_wall_s_for_total": TARGET_LARGE_S,
        "met": any(
            r["wall_s_for_total"] <= TARGET_LARGE_S and r["wall_s_for_total_is"] == "measured"
            for r in rows
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--rate-scale", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-sites", type=int, default=280)
    parser.add_argument("--large-requests", type=int, default=100_000)
    parser.add_argument("--large-total", type=int, default=1_000_000)
    parser.add_argument("--large-modes", default="coarse-512,exact")
    args = parser.parse_args()
    load_before = os.getloadavg()
    small_endpoints, rows, ceiling = small_case(args)
    best = max(r["requests_per_wall_s"] for r in rows)
    print(
        f"target >= {TARGET_RATE:,} requests per wall-second: "
        f"{'met' if best >= TARGET_RATE else 'MISSED'} ({best:,.0f})"
    )
    large = large_case(args, small_endpoints) if args.large_requests > 0 else None
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "load_average_1m_before_after": [
                round(load_before[0], 2),
                round(os.getloadavg()[0], 2),
            ],
        },
        "endpoints": small_endpoints,
        "trace": (
            f"Mooncake conversation, first {args.requests} requests, rate x{args.rate_scale}, "
            f"outputs capped at {OUTPUT_CAP} tokens"
        ),
        "rows": rows,
        "route_ceiling": ceiling,
        "target_requests_per_wall_s": TARGET_RATE,
        "met": best >= TARGET_RATE,
        "large": large,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
