"""Routing quality on the Mooncake conversation trace, through the real gateway.

8 emulated endpoints of one model at 2 sites (4 at the gateway's site, 4 at a site 10 ms away,
with that delay injected) serve a replay of the first N requests of the Mooncake conversation
trace at high load. Prompts are built from the trace's ``hash_ids``, so requests that share
blocks share identical text and the engines' prefix caches see the trace's real reuse. The same
replay runs through the gateway once per routing policy — round-robin, least-loaded, a
prefix/queue/KV-usage weighted scorer in the style of the Gateway API Inference Extension
(3/2/2), SGLang-style cache-aware, and Isthmus — each with fresh engines (cold caches).

Reported per policy: prefix-cache hit rate (prompt tokens the engines served from cache, from
``usage.prompt_tokens_details.cached_tokens``) against the infinite-cache bound of the slice,
TTFT P50/P95, end-to-end P50/P95, throughput and success rate. Output tokens are capped
(``--max-tokens``) so two cores can carry the decode work; TTFT, the figure routing moves, is
unaffected. Targets: Isthmus P95 TTFT >= 1.5x better than the weighted scorer, hit rate >= 90%
of the bound, 100% success. Writes bench/results/routing_quality.json.

    .venv/bin/python bench/routing_quality.py [--requests 2000] [--rps 16] [--policies ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "data" / "traces" / "mooncake_conversation_trace.jsonl"
RESULTS = Path(__file__).parent / "results"
KEY = "sk-bench-routing"
POLICIES = ("round_robin", "least_loaded", "weighted_scorer", "cache_aware", "isthmus")

FABRIC = """
name: routing-quality-bench
data_classes: [{name: internal, level: 1}]
policies: [{name: open, data_classes: [internal]}]
sites:
  - {name: site-a, kind: colo, provider: colo-a, city: Frankfurt, country: DE, lat_deg: 50.1, lon_deg: 8.6,
     accelerators: [{type: H200, count: 32, on_demand_usd_per_device_hour: 3.5}]}
  - {name: site-b, kind: colo, provider: colo-b, city: Amsterdam, country: NL, lat_deg: 52.3, lon_deg: 4.8,
     accelerators: [{type: H200, count: 32, on_demand_usd_per_device_hour: 3.5}]}
links:
  - {src: site-a, dst: site-b, rtt_ms: 10, private: true}
models:
  - name: bench-8b
    params_b: 8
    licence: apache-2.0
    context_tokens: 131072
    # an 8B model on one H200 (141 GB) with an FP8 KV cache: 16 GB of weights leave ~125 GB,
    # and Llama-3.1-8B's KV is 64 KiB per token in FP8 -> ~2M tokens of prefix cache
    profiles:
      - {accelerator: H200, prefill_tokens_per_s: 30000, decode_tokens_per_s: 150,
         max_batch_size: 64, kv_cache_tokens: 2000000}
endpoints:
{endpoints}
tenants:
  - name: bench
    default_data_class: internal
    api_keys: [{{id: k, sha256: {digest}}}]
    max_body_bytes: 4194304
    deadline_ms: 120000
    objective: {{kind: fastest}}
"""


def fabric_text(ports: list[int]) -> str:
    from isthmus.gateway.tenants import hash_key

    lines = []
    for k, port in enumerate(ports):
        site = "site-a" if k < len(ports) // 2 else "site-b"
        lines.append(
            f"  - {{name: ep{k}-{site}, model: bench-8b, site: {site}, engine: emulator, "
            f'url: "http://127.0.0.1:{port}/v1", accelerator: H200, max_concurrency: 256}}'
        )
    head, tail = FABRIC.split("{endpoints}")
    return (
        head
        + "\n".join(lines)
        + tail.replace("{digest}", hash_key(KEY)).replace("{{", "{").replace("}}", "}")
    )


def serve(policy: str, ports: list[int], gateway_port: int, ready: Any, stop: Any) -> None:
    """Child process: emulated engines and the gateway on one event loop."""
    import uvloop

    from isthmus.engines.emulator.fleet import run_fleet, specs_from_fabric
    from isthmus.fabric.loader import load_fabric_text
    from isthmus.gateway import Gateway, GatewayConfig
    from isthmus.gateway.server import start_gateway
    from isthmus.network.paths import Network

    async def main() -> None:
        fabric = load_fabric_text(fabric_text(ports), "routing-quality-bench.yaml")
        network = Network(fabric)
        delays = {e.name: network.rtt_ms("site-a", e.site) / 2 for e in fabric.spec.endpoints}
        specs = specs_from_fabric(fabric, one_way_delay_ms=lambda e: delays[e.name])
        async with run_fleet(specs):
            config = GatewayConfig(
                site="site-a", router=policy, health_interval_s=0.2, log_decisions=False
            )
            served = await start_gateway(Gateway(fabric, config), port=gateway_port)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.1)
            await served.stop()

    uvloop.run(main())


async def replay(
    url: str, rows: list[dict[str, Any]], speedup: float, max_tokens: int
) -> list[dict[str, Any]]:
    from isthmus.engines.tokens import prompt_from_hash_ids

    results: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, row: dict[str, Any]) -> None:
            body = orjson.dumps(
                {
                    "model": "bench-8b",
                    "messages": [
                        {
                            "role": "user",
                            "content": prompt_from_hash_ids(row["hash_ids"], row["input_length"]),
                        }
                    ],
                    "max_tokens": max(1, min(max_tokens, row["output_length"])),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            )
            start = time.monotonic()
            # sent_at: the body is built, the request leaves now
            out: dict[str, Any] = {
                "ok": False,
                "prompt": row["input_length"],
                "index": index,
                "sent_at": start,
            }
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    out["endpoint"] = response.headers.get("x-isthmus-endpoint")
                    if response.status != 200:
                        out["error"] = f"http {response.status}: {(await response.read())[:200]!r}"
                    else:
                        buffer = b""
                        async for chunk in response.content.iter_any():
                            if "ttft" not in out:
                                out["ttft"] = time.monotonic() - start
                            buffer = (buffer + chunk)[-8192:]
                        out["e2e"] = time.monotonic() - start
                        for line in reversed(buffer.split(b"\n")):
                            if line.startswith(b"data: {") and b'"usage"' in line:
                                usage = orjson.loads(line[6:])["usage"]
                                out["prompt"] = usage["prompt_tokens"]
                                out["cached"] = (usage.get("prompt_tokens_details") or {}).get(
                                    "cached_tokens", 0
                                )
                                break
                        out["ok"] = buffer.rstrip().endswith(b"[DONE]") and b'"error"' not in buffer
            except (aiohttp.ClientError, TimeoutError) as exc:
                out["error"] = type(exc).__name__
            results.append(out)

        tasks = []
        start = time.monotonic()
        base = rows[0]["timestamp"]
        for index, row in enumerate(rows):
            delay = (row["timestamp"] - base) / 1000.0 / speedup - (time.monotonic() - start)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index, row)))
        await asyncio.gather(*tasks)
    return results


def infinite_cache_bound(rows: list[dict[str, Any]]) -> float:
    """Share of prompt tokens an infinite, perfectly shared prefix cache would serve."""
    seen: set[int] = set()
    hit = total = 0
    for row in rows:
        n = 0
        for block in row["hash_ids"]:
            if block not in seen:
                break
            n += 1
        hit += min(n * 512, row["input_length"])
        total += row["input_length"]
        seen.update(row["hash_ids"])
    return hit / total


def summarise(policy: str, results: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r["ok"]]
    ttft = np.array([r["ttft"] for r in ok]) * 1000 if ok else np.array([np.nan])
    e2e = np.array([r["e2e"] for r in ok]) * 1000 if ok else np.array([np.nan])
    prompt = sum(r["prompt"] for r in ok)
    cached = sum(r.get("cached", 0) for r in ok)
    errors: dict[str, int] = {}
    for r in results:
        if not r["ok"]:
            errors[r.get("error", "broken stream")] = (
                errors.get(r.get("error", "broken stream"), 0) + 1
            )
    return {
        "policy": policy,
        "requests": len(results),
        "success_rate": len(ok) / len(results),
        "hit_rate": cached / prompt if prompt else 0.0,
        "ttft_ms_p50": float(np.percentile(ttft, 50)),
        "ttft_ms_p95": float(np.percentile(ttft, 95)),
        "e2e_ms_p50": float(np.percentile(e2e, 50)),
        "e2e_ms_p95": float(np.percentile(e2e, 95)),
        "throughput_rps": len(ok) / wall_s,
        "endpoints_used": len({r.get("endpoint") for r in ok}),
        "errors": errors,
    }


def free_ports(n: int) -> list[int]:
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--rps", type=float, default=16.0, help="offered load (trace compressed to it)"
    )
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--endpoints", type=int, default=8)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args()

    rows = [json.loads(line) for line in TRACE.read_text().splitlines()[: args.requests]]
    span_s = (rows[-1]["timestamp"] - rows[0]["timestamp"]) / 1000.0
    speedup = args.rps * span_s / len(rows)
    bound = infinite_cache_bound(rows)
    summaries = []
    context = multiprocessing.get_context("spawn")
    for policy in args.policies:
        ports = free_ports(args.endpoints + 1)
        ready, stop = context.Event(), context.Event()
        child = context.Process(target=serve, args=(policy, ports[:-1], ports[-1], ready, stop))
        child.start()
        try:
            if not ready.wait(60):
                raise SystemExit(f"{policy}: the gateway did not start")
            url = f"http://127.0.0.1:{ports[-1]}/v1/chat/completions"
            began = time.monotonic()
            results = asyncio.run(replay(url, rows, speedup, args.max_tokens))
            summary = summarise(policy, results, time.monotonic() - began)
        finally:
            stop.set()
            child.join(30)
            if child.is_alive():
                child.kill()
        summary["hit_rate_of_bound"] = summary["hit_rate"] / bound
        summaries.append(summary)
        print(
            f"{policy:16} success {summary['success_rate']:.1%}  hit {summary['hit_rate']:.1%} "
            f"({summary['hit_rate_of_bound']:.0%} of bound)  TTFT p50 {summary['ttft_ms_p50']:.0f} ms "
            f"p95 {summary['ttft_ms_p95']:.0f} ms  e2e p95 {summary['e2e_ms_p95']:.0f} ms  "
            f"{summary['throughput_rps']:.1f} req/s",
            flush=True,
        )
    by = {s["policy"]: s for s in summaries}
    verdict: dict[str, Any] = {}
    if "isthmus" in by and "weighted_scorer" in by:
        ratio = by["weighted_scorer"]["ttft_ms_p95"] / by["isthmus"]["ttft_ms_p95"]
        verdict = {
            "p95_ttft_vs_weighted_scorer": ratio,
            "p95_ttft_target_met": ratio >= 1.5,
            "hit_rate_of_bound": by["isthmus"]["hit_rate_of_bound"],
            "hit_rate_target_met": by["isthmus"]["hit_rate_of_bound"] >= 0.9,
            "success_target_met": by["isthmus"]["success_rate"] == 1.0,
        }
    result = {
        "machine": {"python": platform.python_version(), "cpu": platform.machine(), "cores": 2},
        "trace": f"Mooncake conversation, first {len(rows)} requests",
        "offered_rps": args.rps,
        "speedup": speedup,
        "endpoints": args.endpoints,
        "max_output_tokens": args.max_tokens,
        "infinite_cache_bound": bound,
        "policies": summaries,
        "verdict": verdict,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "routing_quality.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"infinite-cache bound on this slice: {bound:.1%}")
    if verdict:
        print(
            f"Isthmus P95 TTFT {verdict['p95_ttft_vs_weighted_scorer']:.2f}x better than the weighted "
            f"scorer (target 1.5x: {'met' if verdict['p95_ttft_target_met'] else 'MISSED'}); hit rate "
            f"{verdict['hit_rate_of_bound']:.0%} of bound (target 90%: "
            f"{'met' if verdict['hit_rate_target_met'] else 'MISSED'}); success "
            f"{'100%' if verdict['success_target_met'] else 'below 100% (MISSED)'}"
        )


if __name__ == "__main__":
    main()
