"""Routing policies compared in the simulator on the Mooncake conversation trace.

16 endpoints of one 8B model on H200 (the profile of bench/routing_quality.py: prefill 30,000
tokens/s, decode 150 tokens/s, batch 64, 2M tokens of KV cache), 8 at the gateway's site and
8 at a site 10 ms away, serve the whole Mooncake conversation trace (12,031 requests, full
output lengths) in virtual time. The trace is compressed so the offered prompt tokens are
``--load`` (default 80%) of the fleet's aggregate prefill rate: every prompt counted in full,
so a policy that reuses the prefix cache has headroom and one that does not is near
saturation. Every policy runs the same requests through the same route() filters with fresh
engines (cold caches) at the exact engine block size (16 tokens) and the gateway's index block
size (64 tokens).

Targets (issue): Isthmus reaches >= 90% of the infinite-cache hit-rate bound, its P95 TTFT is
>= 2x better than round-robin and >= 1.3x better than the weighted scorer (Gateway API
Inference Extension style, prefix 3 / queue 2 / KV 2), with 100% success. Writes
bench/results/sim_policies.json, TTFT CDFs (sim_policies_ttft_cdf.png) and requests per
endpoint over time (sim_policies_load_<policy>.png).

    .venv/bin/python bench/sim_policies.py [--requests N] [--load 0.8]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from routing_quality import fabric_text

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text
from isthmus.fabric.schema import Objective
from isthmus.sim.plots import plot_load, plot_ttft_cdf
from isthmus.sim.replay import Replay, RequestResult, TraceRequest
from isthmus.sim.report import infinite_cache_bound, summarise
from isthmus.sim.traces import load_mooncake

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"
POLICIES = ("round_robin", "least_loaded", "weighted_scorer", "cache_aware", "isthmus")
PREFILL_TOKENS_PER_S = 30_000.0


def bench_fabric(endpoints: int, ports: list[int] | None = None) -> Fabric:
    """The routing-quality bench's fleet: half the endpoints at site-a (the gateway's), half at
    site-b; emulated engines (the simulator does not connect to ``ports``; the fidelity bench
    serves them)."""
    return load_fabric_text(fabric_text(ports or [9] * endpoints), "sim-policies.yaml")


def rate_for_load(requests: list[TraceRequest], endpoints: int, load: float) -> float:
    """The rate scale at which offered prompt tokens are ``load`` of the fleet's prefill rate."""
    span = requests[-1].arrival_s - requests[0].arrival_s
    offered = sum(r.prompt_tokens for r in requests) / span
    return load * endpoints * PREFILL_TOKENS_PER_S / offered


def run(fabric: Fabric, requests: list[TraceRequest], policy: str) -> tuple[Replay, float]:
    replay = Replay(
        fabric,
        policy=policy,
        gateway_site="site-a",
        model="bench-8b",
        data_class="internal",
        objective=Objective(kind="fastest"),
    )
    started = time.perf_counter()
    replay.run(requests)
    return replay, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=None, help="first N (default: all)")
    parser.add_argument("--endpoints", type=int, default=16)
    parser.add_argument("--load", type=float, default=0.8)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args()

    fabric = bench_fabric(args.endpoints)
    raw = load_mooncake(TRACE, args.requests)
    scale = rate_for_load(raw, args.endpoints, args.load)
    requests = [replace(r, arrival_s=r.arrival_s / scale) for r in raw]
    bound = infinite_cache_bound(requests)
    print(
        f"{len(requests):,} requests, rate x{scale:.2f} "
        f"({len(requests) / requests[-1].arrival_s:.1f} req/s) for {args.load:.0%} prefill load "
        f"on {args.endpoints} endpoints; infinite-cache bound {bound:.1%}",
        flush=True,
    )
    summaries: list[dict[str, Any]] = []
    runs: dict[str, list[RequestResult]] = {}
    for policy in args.policies:
        replay, wall = run(fabric, requests, policy)
        summary = summarise(policy, replay.results, replay, bound)
        summary["wall_s"] = round(wall, 2)
        summary.pop("utilisation_by_endpoint", None)
        summaries.append(summary)
        runs[policy] = replay.results
        t = summary["ttft_ms"]
        print(
            f"{policy:16} success {summary['success_rate']:.1%}  hit {summary['hit_rate']:.1%} "
            f"({summary['hit_rate_of_bound']:.1%} of bound)  TTFT p50 {t['p50']:,.0f} ms "
            f"p95 {t['p95']:,.0f} ms p99 {t['p99']:,.0f} ms  ({wall:.1f} s wall)",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    plot_ttft_cdf(
        runs,
        RESULTS / "sim_policies_ttft_cdf.png",
        f"TTFT, Mooncake trace at {args.load:.0%} load, {args.endpoints} endpoints (simulated)",
    )
    for policy, results in runs.items():
        plot_load(
            results,
            RESULTS / f"sim_policies_load_{policy}.png",
            f"requests per endpoint, {policy} (busiest 8)",
            bucket_s=max(1.0, requests[-1].arrival_s / 60),
            by="endpoint",
        )
    by = {s["policy"]: s for s in summaries}
    verdict: dict[str, Any] = {}
    if "isthmus" in by:
        ours = by["isthmus"]
        verdict["hit_rate_of_bound"] = ours["hit_rate_of_bound"]
        verdict["hit_rate_target_met"] = ours["hit_rate_of_bound"] >= 0.9
        verdict["success_target_met"] = ours["success_rate"] == 1.0
        for name, target in (("round_robin", 2.0), ("weighted_scorer", 1.3)):
            if name in by:
                ratio = by[name]["ttft_ms"]["p95"] / ours["ttft_ms"]["p95"]
                verdict[f"p95_ttft_vs_{name}"] = ratio
                verdict[f"p95_ttft_vs_{name}_target_met"] = ratio >= target
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "trace": f"Mooncake conversation, {len(requests)} requests, rate x{scale:.3f}",
        "offered_rps": len(requests) / requests[-1].arrival_s,
        "load": args.load,
        "endpoints": args.endpoints,
        "infinite_cache_bound": bound,
        "policies": summaries,
        "verdict": verdict,
    }
    (RESULTS / "sim_policies.json").write_text(json.dumps(result, indent=2) + "\n")
    if verdict:
        print(
            f"Isthmus: hit rate {verdict['hit_rate_of_bound']:.1%} of bound (target 90%); "
            + "; ".join(
                f"P95 TTFT {verdict[f'p95_ttft_vs_{n}']:.2f}x better than {n} (target {t}x)"
                for n, t in (("round_robin", 2.0), ("weighted_scorer", 1.3))
                if f"p95_ttft_vs_{n}" in verdict
            )
            + f"; success {by['isthmus']['success_rate']:.1%}"
        )


if __name__ == "__main__":
    main()
