"""Simulator fidelity: the same trace slice through the real gateway and through the simulator.

The real side is bench/routing_quality.py's deployment: emulated engines (the shared timing
model, in real time, with the network delay of their site injected) behind the real gateway in
a child process, fed by an aiohttp client streaming chat completions. The simulated side
replays the same requests (same arrival schedule, prompt and output lengths, prefix blocks)
through ``isthmus.sim.replay.Replay`` on the same fabric. Compared: TTFT P50 and P95 (target:
within 10%), the prefix-cache hit rate and the engines' prompt token counts.

    .venv/bin/python bench/sim_fidelity.py [--requests 1000] [--rps 8] [--endpoints 4]

Writes bench/results/sim_fidelity.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from routing_quality import fabric_text, free_ports, replay, serve

from isthmus.fabric.loader import load_fabric_text
from isthmus.fabric.schema import Objective
from isthmus.sim.replay import Replay, load_mooncake

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"


def percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95)}


def real_run(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    ports = free_ports(args.endpoints + 1)
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=serve, args=(args.policy, ports[:-1], ports[-1], ready, stop))
    child.start()
    try:
        if not ready.wait(60):
            raise SystemExit("the gateway did not start")
        url = f"http://127.0.0.1:{ports[-1]}/v1/chat/completions"
        return asyncio.run(replay(url, rows, args.speedup, args.max_tokens))
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()


def sim_run(args: argparse.Namespace, n: int, calibrated: bool) -> Replay:
    fabric = load_fabric_text(
        fabric_text(list(range(9000, 9000 + args.endpoints))), "fidelity.yaml"
    )
    requests = [
        replace(r, output_tokens=max(1, min(args.max_tokens, r.output_tokens)))
        for r in load_mooncake(TRACE, n, args.speedup)
    ]
    sim = Replay(
        fabric,
        policy=args.policy,
        gateway_site="site-a",
        model="bench-8b",
        data_class="internal",
        objective=Objective(kind="fastest"),
        scrape_interval_s=0.2,
        request_overhead_s=args.overhead_ms / 1000 if calibrated else 0.0,
        overhead_s_per_prompt_token=args.overhead_ms_per_1k / 1e6 if calibrated else 0.0,
    )
    sim.run(requests)
    return sim


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rps", type=float, default=8.0)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--policy", default="isthmus")
    # the serving path's CPU time per request, fit on single requests (tests/sim/test_fidelity.py)
    parser.add_argument("--overhead-ms", type=float, default=6.0)
    parser.add_argument("--overhead-ms-per-1k", type=float, default=1.45)
    args = parser.parse_args()

    rows = [json.loads(line) for line in TRACE.read_text().splitlines()[: args.requests]]
    span_s = (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000.0
    args.speedup = args.rps * span_s / len(rows)
    began = time.monotonic()
    real = real_run(rows, args)
    real_wall = time.monotonic() - began
    sim = sim_run(args, len(rows), calibrated=True)
    ideal = sim_run(args, len(rows), calibrated=False)

    real_ok = [r for r in real if r["ok"]]
    sim_ok = [r for r in sim.results if r.status == "ok" and r.ttft_s is not None]
    real_ttft = percentiles([r["ttft"] * 1000 for r in real_ok])
    sim_ttft = percentiles([r.ttft_s * 1000 for r in sim_ok if r.ttft_s is not None])
    ideal_ttft = percentiles([r.ttft_s * 1000 for r in ideal.results if r.ttft_s is not None])
    gap = {q: sim_ttft[q] / real_ttft[q] - 1.0 for q in real_ttft}
    ideal_gap = {q: ideal_ttft[q] / real_ttft[q] - 1.0 for q in real_ttft}
    real_prompt = sum(r["prompt"] for r in real_ok)
    trace_prompt = sum(row["input_length"] for row in rows)
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.machine(), "cores": 2},
        "trace": f"Mooncake conversation, first {len(rows)} requests at {args.rps} req/s",
        "endpoints": args.endpoints,
        "policy": args.policy,
        "max_output_tokens": args.max_tokens,
        "real": {
            "success_rate": len(real_ok) / len(real),
            "ttft_ms": real_ttft,
            "hit_rate": sum(r.get("cached", 0) for r in real_ok) / max(1, real_prompt),
            "prompt_tokens_counted_by_engines_over_trace": real_prompt / trace_prompt,
            "wall_s": real_wall,
        },
        "sim": {
            "success_rate": len(sim_ok) / len(sim.results),
            "ttft_ms": sim_ttft,
            "hit_rate": sum(r.cached_tokens for r in sim_ok)
            / max(1, sum(r.prompt_tokens for r in sim_ok)),
        },
        "sim_without_serving_overhead": {"ttft_ms": ideal_ttft, "gap": ideal_gap},
        "serving_overhead": {
            "ms": args.overhead_ms,
            "ms_per_1k_prompt_tokens": args.overhead_ms_per_1k,
        },
        "ttft_gap_sim_vs_real": gap,
        "target": "TTFT P50 and P95 within 10%",
        "met": all(abs(g) <= 0.10 for g in gap.values()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
