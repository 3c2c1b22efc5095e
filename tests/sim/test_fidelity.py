"""The simulator against the real thing: one trace slice through the real gateway with emulated
engines, and through ``Replay``; TTFT P50 and P95 must agree within 10%.

The slice is sent at a light load (a request every 0.8 s, ~25% of the prefill capacity): this
checks the engine model and the serving path's work per request; requests seldom wait for each
other's (bench/sim_fidelity.py runs a loaded, bursty slice, where they do).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from isthmus.engines.emulator.fleet import specs_from_fabric
from isthmus.engines.tokens import prompt_from_hash_ids
from isthmus.fabric.loader import load_fabric_text
from isthmus.fabric.schema import Objective
from isthmus.gateway import GatewayConfig
from isthmus.gateway.harness import LocalDeployment
from isthmus.gateway.tenants import hash_key
from isthmus.network.paths import Network
from isthmus.sim.replay import Replay, TraceRequest
from isthmus.sim.serving import ServingCpu

pytestmark = pytest.mark.slow

TRACE = (
    Path(__file__).resolve().parents[2] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
)
KEY = "sk-sim-fidelity"
SPACING_S = 0.8
REQUESTS = 20
MAX_TOKENS = 8
# The emulated serving path's work per request before the engine queues it (JSON, tokenising
# and hashing the prompt at the gateway and the emulator): real minus simulated TTFT of single
# requests on the 2-core development machine fits 6 ms + 1.45 ms per 1,000 prompt tokens, about
# 30% of it before the routing decision. The gateway and the emulators share one event loop, so
# the simulated deployment serves that work on one CPU, one request at a time.
SERVING_CPU = ServingCpu.split(0.006, 1.45e-6, gateway_share=0.3)

FABRIC = f"""
name: sim-fidelity
data_classes: [{{name: internal, level: 1}}]
policies: [{{name: open, data_classes: [internal]}}]
sites:
  - {{name: site-a, kind: colo, provider: colo-a, city: Frankfurt, country: DE, lat_deg: 50.1,
     lon_deg: 8.6, accelerators: [{{type: H200, count: 8, on_demand_usd_per_device_hour: 3.5}}]}}
  - {{name: site-b, kind: colo, provider: colo-b, city: Amsterdam, country: NL, lat_deg: 52.3,
     lon_deg: 4.8, accelerators: [{{type: H200, count: 8, on_demand_usd_per_device_hour: 3.5}}]}}
links:
  - {{src: site-a, dst: site-b, rtt_ms: 10, private: true}}
models:
  - name: bench-8b
    params_b: 8
    licence: apache-2.0
    context_tokens: 131072
    profiles:
      - {{accelerator: H200, prefill_tokens_per_s: 30000, decode_tokens_per_s: 150,
         max_batch_size: 64, kv_cache_tokens: 2000000}}
endpoints:
  - {{name: a0, model: bench-8b, site: site-a, engine: emulator, url: "http://127.0.0.1:{{port_a}}/v1", accelerator: H200}}
  - {{name: b0, model: bench-8b, site: site-b, engine: emulator, url: "http://127.0.0.1:{{port_b}}/v1", accelerator: H200}}
tenants:
  - name: bench
    default_data_class: internal
    api_keys: [{{id: k, sha256: {hash_key(KEY)}}}]
    max_body_bytes: 4194304
    objective: {{kind: fastest}}
"""


async def _send_all(url: str, rows: list[dict[str, object]]) -> list[tuple[float, float]]:
    """(send offset, TTFT) per request, streaming, one every SPACING_S."""
    out: list[tuple[float, float]] = []
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(row: dict[str, object], offset: float) -> None:
            body = {
                "model": "bench-8b",
                "messages": [
                    {
                        "role": "user",
                        "content": prompt_from_hash_ids(row["hash_ids"], row["input_length"]),  # type: ignore[arg-type]
                    }
                ],
                "max_tokens": MAX_TOKENS,
                "stream": True,
            }
            started = time.monotonic()
            async with client.stream(
                "POST", "/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status_code == 200
                first = None
                async for _ in response.aiter_bytes():
                    if first is None:
                        first = time.monotonic() - started
                assert first is not None
                out.append((offset, first))

        began = time.monotonic()
        tasks = []
        for k, row in enumerate(rows):
            await asyncio.sleep(max(0.0, k * SPACING_S - (time.monotonic() - began)))
            tasks.append(asyncio.create_task(one(row, time.monotonic() - began)))
        await asyncio.gather(*tasks)
    return out


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_simulated_ttft_matches_the_real_gateway_and_emulator() -> None:
    port_a, port_b = _free_ports(2)
    text = FABRIC.replace("{port_a}", str(port_a)).replace("{port_b}", str(port_b))
    fabric = load_fabric_text(text, "sim-fidelity.yaml")
    rows = [json.loads(line) for line in TRACE.read_text().splitlines()[:REQUESTS]]
    network = Network(fabric)
    delays = {e.name: network.rtt_ms("site-a", e.site) / 2 for e in fabric.spec.endpoints}
    specs = specs_from_fabric(fabric, one_way_delay_ms=lambda e: delays[e.name])
    config = GatewayConfig(site="site-a", router="isthmus", health_interval_s=0.2)
    with LocalDeployment(fabric, config, specs) as deployment:
        sent = asyncio.run(_send_all(deployment.url, rows))
    real_ms = [ttft * 1000 for _, ttft in sent]
    offsets = sorted(offset for offset, _ in sent)

    requests = [
        TraceRequest(offset, int(row["input_length"]), MAX_TOKENS, tuple(row["hash_ids"]))
        for offset, row in zip(offsets, rows, strict=True)
    ]
    sim = Replay(
        fabric,
        gateway_site="site-a",
        model="bench-8b",
        data_class="internal",
        objective=Objective(kind="fastest"),
        serving_cpu=SERVING_CPU,
    )
    results = sim.run(requests)
    assert all(r.status == "ok" for r in results)
    sim_ms = [r.ttft_s * 1000 for r in results if r.ttft_s is not None]
    for q in (50, 95):
        real, simulated = np.percentile(real_ms, q), np.percentile(sim_ms, q)
        assert simulated == pytest.approx(real, rel=0.10), (
            f"P{q}: sim {simulated:.1f} ms, real {real:.1f} ms"
        )
