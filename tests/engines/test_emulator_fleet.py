"""Many emulated endpoints in one process; endpoints built from a fabric; the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from isthmus.engines.emulator import (
    EmulatorConfig,
    EndpointEmulation,
    run_fleet,
    spec_for_endpoint,
    specs_from_fabric,
)
from isthmus.engines.timing import EngineProfile
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text

QUICK = EngineProfile(prefill_tokens_per_s=100_000, decode_tokens_per_s=1000)


def test_fleet_of_three_endpoints_on_one_loop() -> None:
    specs = [EndpointEmulation(f"ep{i}", EmulatorConfig(f"model-{i}", QUICK)) for i in range(3)]

    async def go() -> None:
        async with run_fleet(specs) as urls:
            assert list(urls) == ["ep0", "ep1", "ep2"]
            assert len(set(urls.ports.values())) == 3
            async with httpx.AsyncClient() as h:
                for i, name in enumerate(urls):
                    models = (await h.get(urls[name] + "/models")).json()
                    assert models["data"][0]["id"] == f"model-{i}"
                    async with openai.AsyncOpenAI(
                        base_url=urls[name], api_key="x", max_retries=0
                    ) as c:
                        r = await c.chat.completions.create(
                            model=f"model-{i}",
                            messages=[{"role": "user", "content": "hi"}],
                            max_tokens=2,
                        )
                        assert r.model == f"model-{i}"
                    other = await h.post(urls[name] + "/chat/completions",
                                         json={"model": f"model-{(i + 1) % 3}", "messages": []})  # fmt: skip
                    assert other.status_code == 404
            ports = list(urls.ports.values())
        # every port is released on exit
        for port in ports:
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://127.0.0.1:{port}/health")

    asyncio.run(go())


def test_duplicate_names_are_refused() -> None:
    spec = EndpointEmulation("same", EmulatorConfig("m", QUICK))

    async def go() -> None:
        async with run_fleet([spec, spec]):
            pass  # pragma: no cover

    with pytest.raises(ValueError, match="unique"):
        asyncio.run(go())


def test_specs_from_the_mini_fabric(mini: Fabric) -> None:
    specs = specs_from_fabric(mini, one_way_delay_ms={"par-llama": 5.0}, any_port=True)
    assert [s.name for s in specs] == ["fra-llama", "par-llama", "iad-llama"]
    fra = specs[0].config
    assert fra.model == "llama-3.1-8b" and fra.replicas == 1
    assert fra.profile.prefill_tokens_per_s == 12_000 and fra.profile.kv_cache_tokens == 400_000
    assert specs[1].config.one_way_delay_ms == 5.0 and specs[0].port == 0
    on_urls = specs_from_fabric(mini, endpoints={"iad-llama"})
    assert [(s.host, s.port) for s in on_urls] == [("127.0.0.1", 18003)]

    async def go() -> None:
        async with run_fleet(specs) as urls, httpx.AsyncClient() as h:
            for url in urls.values():
                r = await h.post(
                    url + "/completions",
                    json={"model": "llama-3.1-8b", "prompt": "hi", "max_tokens": 1},
                )
                assert r.status_code == 200

    asyncio.run(go())


FABRIC = """
sites:
  - {name: s1, kind: on_prem, provider: me, city: Paris, country: FR, lat_deg: 48.8, lon_deg: 2.3,
     accelerators: [{type: H100, count: 8}, {type: L4, count: 2}]}
models:
  - name: big
    params_b: 70
    licence: llama
    context_tokens: 131072
    profiles: [{accelerator: H100, devices_per_replica: 2, prefill_tokens_per_s: 4000, decode_tokens_per_s: 40}]
  - name: emb
    kind: embedding
    params_b: 0.5
    licence: MIT
    profiles: [{accelerator: H100, prefill_tokens_per_s: 170000, decode_tokens_per_s: 1}]
endpoints:
  - {name: big-4, model: big, site: s1, engine: vllm, url: "http://localhost:18100/v1", accelerator: H100,
     devices: 4, served_model_name: org/Big-70B}
  - {name: emb-1, model: emb, site: s1, engine: emulator, url: "http://127.0.0.1:18101/v1", accelerator: H100}
  - {name: other-accel, model: big, site: s1, engine: sglang, url: "http://127.0.0.1:18102/v1", accelerator: L4,
     kv_cache_tokens: 8192}
  - {name: remote, model: big, site: s1, engine: vllm, url: "http://10.0.0.5:8000/v1", accelerator: H100}
  - {name: api, model: big, site: s1, engine: openai, url: "http://127.0.0.1:18103/v1"}
"""


def test_fabric_mapping_rules() -> None:
    fabric = load_fabric_text(FABRIC)
    specs = {s.name: s for s in specs_from_fabric(fabric, one_way_delay_ms=lambda e: 1.5)}
    assert set(specs) == {
        "big-4",
        "emb-1",
        "other-accel",
    }  # remote and provider APIs are not emulated
    big = specs["big-4"]
    assert (big.host, big.port) == ("127.0.0.1", 18100)
    assert big.config.model == "org/Big-70B" and big.config.aliases == ("big",)
    assert big.config.replicas == 2  # 4 devices, 2 per replica
    assert big.config.max_model_len == 131_072  # the context (one replica holds 262,144)
    assert big.config.one_way_delay_ms == 1.5
    emb = specs["emb-1"].config.profile
    assert emb.decode_tokens_per_s == pytest.approx(1700)
    other = specs["other-accel"].config
    assert other.profile.prefill_tokens_per_s == 10_000  # no L4 profile: the default
    assert other.profile.kv_cache_tokens == 8192 and other.max_model_len == 8192
    assert spec_for_endpoint(fabric, fabric.endpoints["remote"]) is None


def test_command_line_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "isthmus.engines.emulator", "--port", "0", "--model", "cli-model",
         "--prefill-tps", "50000", "--decode-tps", "500", "--kv-cache-tokens", "32768"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        name, url = proc.stdout.readline().split()
        assert name == "cli-model" and url.startswith("http://127.0.0.1:")
        r = httpx.post(url + "/chat/completions",
                       json={"model": "cli-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2})  # fmt: skip
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_command_line_reports_mistakes_without_a_traceback() -> None:
    from isthmus.engines.emulator.fleet import main

    assert main(["--port", "0", "--decode-tps", "0"]) == 2
    assert main(["--fabric", "/nonexistent.yaml"]) == 2
