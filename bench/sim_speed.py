"""Simulator speed: simulated requests per wall-second on a 100-endpoint fabric.

Targets (issue): >= 50,000 simulated requests per wall-second on one core for a 100-endpoint
fabric, and 1,000,000 requests over a 280-site fabric in <= 2 minutes. This script measures
where the simulator stands: the Mooncake conversation trace (real prompt lengths and prefix
sharing) replayed at a rate that keeps the fleet busy, through the real ``route()`` and the
step-level engine model. The baseline in the same run is the same replay with round-robin
routing (what the engine model alone costs), and Isthmus with engine and index blocks of 512 tokens
(the trace's block: a faster, approximate simulation). Writes bench/results/sim_speed.json.

    .venv/bin/python bench/sim_speed.py [--requests 3000] [--endpoints 100]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.fabric.synth import synth_fabric
from isthmus.sim.replay import Replay, load_mooncake

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--rate-scale", type=float, default=20.0)
    args = parser.parse_args()
    spec = synth_fabric(args.endpoints, endpoints_per_site=1, seed=11)
    fabric = Fabric(spec.model_copy(update={"endpoints": spec.endpoints[: args.endpoints]}))
    gateway = next(iter(fabric.sites))
    requests = [
        replace(r, output_tokens=min(r.output_tokens, 64))
        for r in load_mooncake(TRACE, args.requests, args.rate_scale)
    ]
    rows = []
    coarse = {"index_block_tokens": 512, "engine_block_tokens": 512}
    for policy, mode, options in (
        ("round_robin", "exact", {}),
        ("isthmus", "coarse-512", coarse),
        ("isthmus", "exact", {}),
    ):
        replay = Replay(
            fabric,
            policy=policy,
            gateway_site=gateway,
            model="chat",
            data_class="public",
            objective=Objective(kind="fastest"),
            **options,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        results = replay.run(requests)
        wall = time.perf_counter() - started
        ok = sum(1 for r in results if r.status == "ok")
        rows.append(
            {
                "policy": policy,
                "blocks": mode,
                "requests": len(requests),
                "ok": ok,
                "wall_s": round(wall, 3),
                "simulated_s": round(replay.end_s, 1),
                "requests_per_wall_s": round(len(requests) / wall, 1),
                "events": replay.loop.events_run,
            }
        )
        print(
            f"{policy:12} {mode:10} {len(requests):,} requests ({ok:,} ok) on {len(fabric.endpoints)} endpoints: "
            f"{wall:.1f} s wall for {replay.end_s:.0f} s simulated -> "
            f"{len(requests) / wall:,.0f} requests per wall-second ({replay.loop.events_run:,} events)"
        )
    target = 50_000
    best = max(r["requests_per_wall_s"] for r in rows)
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "endpoints": len(fabric.endpoints),
        "trace": f"Mooncake conversation, first {len(requests)} requests, rate x{args.rate_scale}, outputs capped at 64 tokens",
        "rows": rows,
        "target_requests_per_wall_s": target,
        "met": best >= target,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"target >= {target:,} requests per wall-second: {'met' if result['met'] else 'MISSED'} ({best:,.0f})"
    )


if __name__ == "__main__":
    main()
