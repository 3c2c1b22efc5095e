"""Simulator fidelity: the same trace slice through the real gateway and through the simulator.

The real side is bench/routing_quality.py's deployment: emulated engines (the shared timing
model, in real time, with the network delay of their site injected) behind the real gateway in
a child process, fed by an aiohttp client streaming chat completions. The simulated side
replays the same requests (same arrival schedule, prompt and output lengths, prefix blocks)
through ``isthmus.sim.replay.Replay`` on the same fabric. Compared: TTFT P50 and P95 (target:
within 10%), the prefix-cache hit rate, the engines' prompt token counts and the endpoint each
request went to.

The simulated deployment has the serving path's CPU work per request (JSON, tokenising and
block hashing at the gateway and again at the emulator, measured on single requests: 6 ms +
1.45 ms per 1,000 prompt tokens) served by one CPU, one request at a time
(``isthmus.sim.serving``): the gateway and the four emulators run on one event loop, and the
trace's requests arrive in bursts (its timestamps come in 3-second steps), so a burst queues
for that loop. Two simpler models are reported beside it: no serving work at all, and the same
work as a pure delay (every request on a CPU of its own). The simulated requests arrive when
the client sent them (the client builds each body first, which spreads a burst slightly).

The deployment shares this machine with the client and with whatever else runs on it; the
time its event loop waited for a core (``/proc/<pid>/schedstat``) is reported: a run where it
is large measured the machine's other load as much as Isthmus.

    .venv/bin/python bench/sim_fidelity.py [--requests 300] [--rps 4] [--endpoints 4]

Writes bench/results/sim_fidelity.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
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
from isthmus.sim.replay import Replay
from isthmus.sim.serving import ServingCpu
from isthmus.sim.traces import load_mooncake

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"


def percentiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": float(np.percentile(values, q)) for q in (50, 95)}


def cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(on a core, waiting for one) of a process's main thread so far; None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except OSError:
        return None
    return int(fields[0]) / 1e9, int(fields[1]) / 1e9


def real_run(
    rows: list[dict[str, Any]], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Results in request order, and the serving process's CPU over the run."""
    context = multiprocessing.get_context("spawn")
    ports = free_ports(args.endpoints + 1)
    ready, stop = context.Event(), context.Event()
    child = context.Process(target=serve, args=(args.policy, ports[:-1], ports[-1], ready, stop))
    child.start()
    try:
        if not ready.wait(60):
            raise SystemExit("the gateway did not start")
        url = f"http://127.0.0.1:{ports[-1]}/v1/chat/completions"
        assert child.pid is not None
        before = cpu_seconds(child.pid)
        results = asyncio.run(replay(url, rows, args.speedup, args.max_tokens))
        after = cpu_seconds(child.pid)
        cpu: dict[str, float] = {}
        if before is not None and after is not None:
            cpu = {"on_cpu_s": after[0] - before[0], "waiting_for_a_core_s": after[1] - before[1]}
        return sorted(results, key=lambda r: r["index"]), cpu
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.kill()


def sim_run(args: argparse.Namespace, arrivals: list[float], serving: str) -> Replay:
    """The slice in the simulator, requests arriving at ``arrivals``; ``serving``: "none" (an
    ideal serving path), "delay" (its work as a pure delay) or "queue" (its work on one CPU)."""
    fabric = load_fabric_text(
        fabric_text(list(range(9000, 9000 + args.endpoints))), "fidelity.yaml"
    )
    requests = [
        replace(r, arrival_s=arrival, output_tokens=max(1, min(args.max_tokens, r.output_tokens)))
        for r, arrival in zip(load_mooncake(TRACE, len(arrivals)), arrivals, strict=True)
    ]
    per_request_s, per_token_s = args.overhead_ms / 1000, args.overhead_ms_per_1k / 1e6
    delay = serving == "delay"
    cpu = None
    if serving == "queue":
        cpu = ServingCpu.split(per_request_s, per_token_s, args.gateway_share)
    sim = Replay(
        fabric,
        policy=args.policy,
        gateway_site="site-a",
        model="bench-8b",
        data_class="internal",
        objective=Objective(kind="fastest"),
        scrape_interval_s=0.2,
        request_overhead_s=per_request_s if delay else 0.0,
        overhead_s_per_prompt_token=per_token_s if delay else 0.0,
        serving_cpu=cpu,
    )
    sim.run(requests)
    return sim


def summary(sim: Replay, real_ttft: dict[str, float], real: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in sim.results if r.status == "ok" and r.ttft_s is not None]
    ttft = percentiles([r.ttft_s * 1000 for r in ok if r.ttft_s is not None])
    out: dict[str, Any] = {
        "success_rate": len(ok) / len(sim.results),
        "ttft_ms": ttft,
        "gap": {q: ttft[q] / real_ttft[q] - 1.0 for q in real_ttft},
        "hit_rate": sum(r.cached_tokens for r in ok) / max(1, sum(r.prompt_tokens for r in ok)),
        # endpoints are interchangeable, so per-request choices match about 1 in 4 by chance
        "same_endpoint_as_real": sum(
            s.endpoint == r.get("endpoint") for s, r in zip(sim.results, real, strict=True)
        )
        / len(real),
        "same_cached_tokens_as_real": sum(
            s.cached_tokens == r.get("cached", 0) for s, r in zip(sim.results, real, strict=True)
        )
        / len(real),
    }
    queue = sim.serving_queue
    if queue is not None:
        out["serving_cpu"] = {
            "mean_wait_per_request_ms": 1000 * queue.waited_s / len(sim.results),
            "utilisation": queue.busy_s / max(sim.end_s, 1e-9),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rps", type=float, default=4.0)
    parser.add_argument("--endpoints", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--policy", default="isthmus")
    # the serving path's time per request, fit on single requests (tests/sim/test_fidelity.py)
    parser.add_argument("--overhead-ms", type=float, default=6.0)
    parser.add_argument("--overhead-ms-per-1k", type=float, default=1.45)
    # the gateway's part of that work; the emulator's front end and scheduler do the rest
    # (CPU time of single requests: ~30% before the routing decision, py-spy agrees)
    parser.add_argument("--gateway-share", type=float, default=0.3)
    args = parser.parse_args()

    rows = [json.loads(line) for line in TRACE.read_text().splitlines()[: args.requests]]
    span_s = (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000.0
    args.speedup = args.rps * span_s / len(rows)
    began = time.monotonic()
    client_before = cpu_seconds(os.getpid())
    real, serving_process = real_run(rows, args)
    client_after = cpu_seconds(os.getpid())
    real_wall = time.monotonic() - began
    first = min(r["sent_at"] for r in real)
    arrivals = [r["sent_at"] - first for r in real]
    scheduled = [(row["timestamp"] - rows[0]["timestamp"]) / 1000 / args.speedup for row in rows]
    sims = {serving: sim_run(args, arrivals, serving) for serving in ("queue", "delay", "none")}

    real_ok = [r for r in real if r["ok"]]
    real_ttft = percentiles([r["ttft"] * 1000 for r in real_ok])
    real_prompt = sum(r["prompt"] for r in real_ok)
    trace_prompt = sum(row["input_length"] for row in rows)
    if client_before is not None and client_after is not None:
        serving_process["client_waiting_for_a_core_s"] = client_after[1] - client_before[1]
    model = summary(sims["queue"], real_ttft, real)
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
            "send_lag_ms": percentiles(
                [1000 * (a - s) for a, s in zip(arrivals, scheduled, strict=True)]
            ),
            "serving_process": serving_process,
            "wall_s": real_wall,
        },
        "serving_work": {
            "ms": args.overhead_ms,
            "ms_per_1k_prompt_tokens": args.overhead_ms_per_1k,
            "gateway_share": args.gateway_share,
        },
        "sim": model,
        "sim_serving_work_as_delay": summary(sims["delay"], real_ttft, real),
        "sim_without_serving_work": summary(sims["none"], real_ttft, real),
        "ttft_gap_sim_vs_real": model["gap"],
        "target": "TTFT P50 and P95 within 10%",
        "met": all(abs(g) <= 0.10 for g in model["gap"].values()),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sim_fidelity.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
