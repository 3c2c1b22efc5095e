"""Bundles swapped in under concurrent requests through the real gateway: never a mixed policy."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from isthmus.bundle import PolicyBundle, build_bundle
from isthmus.engines.emulator.fleet import specs_from_fabric
from isthmus.fabric.catalog import Fabric
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.harness import LocalDeployment
from isthmus.gateway.reconfigure import apply_bundle
from tests.mesh.conftest import KEY, SITE, custody

REQUESTS = 360
CONCURRENCY = 8
FLIP_EVERY = 30  # completed requests between two bundles
# odd versions keep personal data on the customer-keyed site, even ones on the provider-keyed one
EXPECTED = {1: "onprem-paris", 0: "aws-eu-central-1"}


async def _scenario(gateway: Gateway, url: str, bundles: dict[int, PolicyBundle]) -> None:
    state = {"version": 1, "done": 0}
    apply_bundle(gateway, bundles[1])
    outcomes: list[tuple[int, int, int, str]] = []
    mixed: list[str] = []
    running = True

    async def monitor() -> None:
        # at every point where a request could run, all references belong to one bundle
        while running:
            if not (gateway.view.fabric is gateway.directory.fabric is gateway.fabric):
                mixed.append(f"references of two bundles at version {state['version']}")
            await asyncio.sleep(0)

    async def caller(client: httpx.AsyncClient, queue: asyncio.Queue[int]) -> None:
        while not queue.empty():
            queue.get_nowait()
            before = state["version"]
            response = await client.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {KEY}"},
                json={
                    "model": "chat-small",
                    "messages": [{"role": "user", "content": "hello"}],
                    "max_tokens": 2,
                },
            )
            after = state["version"]
            outcomes.append(
                (before, after, response.status_code, response.headers.get("x-isthmus-site", ""))
            )
            state["done"] += 1
            if state["done"] % FLIP_EVERY == 0:
                version = state["version"] + 1
                apply_bundle(gateway, bundles[version])
                state["version"] = version

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    watcher = asyncio.create_task(monitor())
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(caller(client, queue) for _ in range(CONCURRENCY)))
    running = False
    await watcher

    assert not mixed
    assert all(status == 200 for _, _, status, _ in outcomes), outcomes
    settled = [(before, site) for before, after, _, site in outcomes if before == after]
    assert len({before for before, _ in settled}) > REQUESTS // FLIP_EVERY // 2
    wrong = [(v, site) for v, site in settled if site != EXPECTED[v % 2]]
    assert not wrong, wrong


@pytest.mark.slow
def test_requests_see_one_bundle_or_the_next_never_a_mix(fabric: Fabric) -> None:
    bundles = {
        v: build_bundle(version=v, fabric=custody(fabric, "provider" if v % 2 else "customer").spec)
        for v in range(1, REQUESTS // FLIP_EVERY + 3)
    }
    config = GatewayConfig(site=SITE, health_interval_s=0, log_decisions=False)
    with LocalDeployment(
        fabric, config, specs_from_fabric(fabric, timing="none", any_port=True)
    ) as local:
        local.call(_scenario(local.gateway, local.url, bundles), timeout_s=120)
