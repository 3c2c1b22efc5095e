"""Two gateway replicas of one site merge each other's endpoint load and prefix index."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.mesh.shared_state import SharedState, shared_state_from_url
from isthmus.routing import Decision, RouteRequest, route

REDIS_URL = "redis://127.0.0.1:6379/0"
SITE = "onprem-paris"
HASHES = tuple(range(1000, 1015))  # 15 blocks of 64 tokens = 960 tokens
Replica = tuple[Gateway, SharedState]


@pytest.fixture()
def namespace() -> Iterator[str]:
    """A key prefix of its own, deleted afterwards."""
    ns = f"t-shared-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{ns}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def replica(fabric: Fabric, namespace: str, url: str = REDIS_URL) -> Replica:
    state = shared_state_from_url(url, SITE, namespace, sync_period_s=0.02)
    config = GatewayConfig(site=SITE, health_interval_s=0, log_decisions=False)
    return Gateway(fabric, config, shared=state), state


def decide(gateway: Gateway, now_s: float = 0.0) -> Decision:
    request = RouteRequest(
        model="llama-3.1-8b",
        data_class="public",
        gateway_site=SITE,
        prompt_tokens=1000,
        block_hashes=HASHES,
        objective=Objective(kind="fastest"),
        now_s=now_s,
    )
    return route(request, gateway.view)


async def sync(*replicas: Replica, now_s: float = 0.0) -> None:
    """One round for each replica, in turn, then once more so each has read the others."""
    for _ in range(2):
        for gateway, state in replicas:
            await state.fleet.sync_once(gateway.view.fleet, now_s)


def attach(*pairs: Replica) -> None:
    for gateway, state in pairs:
        state.fleet.attach(gateway.view.fleet)


@contextlib.asynccontextmanager
async def two_replicas(fabric: Fabric, namespace: str) -> AsyncIterator[tuple[Replica, Replica]]:
    """Two attached replicas of the site, stopped afterwards (also when the test fails)."""
    ra, rb = replica(fabric, namespace), replica(fabric, namespace)
    attach(ra, rb)
    try:
        yield ra, rb
    finally:
        await ra[1].stop()
        await rb[1].stop()


@pytest.mark.slow
def test_a_prefix_sent_by_one_replica_draws_the_others_requests(
    mini: Fabric, namespace: str
) -> None:
    async def scenario() -> None:
        async with two_replicas(mini, namespace) as (ra, rb):
            (a, _), (b, _) = ra, rb
            assert decide(b).chosen.endpoint == "par-llama"  # nearest, nothing cached anywhere
            far = a.view.fleet.position["fra-llama"]
            a.view.fleet.dispatched(far, 1000, HASHES, 0.0)  # A routed such a prompt to Frankfurt
            a.view.fleet.finished(far)
            await sync(ra, rb, now_s=100.0)
            chosen = decide(b, now_s=100.0).chosen
            assert chosen.endpoint == "fra-llama" and chosen.cached_tokens == 960

    asyncio.run(scenario())


@pytest.mark.slow
def test_in_flight_load_is_the_sum_seen_by_both(mini: Fabric, namespace: str) -> None:
    async def scenario() -> None:
        async with two_replicas(mini, namespace) as (ra, rb):
            (a, _), (b, _) = ra, rb
            fa, fb = a.view.fleet, b.view.fleet
            par = fa.position["par-llama"]
            for _ in range(3):
                fa.dispatched(par, 0, (), 0.0)
            for _ in range(2):
                fb.dispatched(par, 0, (), 0.0)
            await sync(ra, rb)
            assert fa.in_flight[par] == fb.in_flight[par] == 5
            for _ in range(3):
                fa.finished(par)
            await sync(ra, rb)
            assert fa.in_flight[par] == fb.in_flight[par] == 2

    asyncio.run(scenario())


@pytest.mark.slow
def test_prefill_work_queued_by_one_replica_delays_the_others_predictions(
    mini: Fabric, namespace: str
) -> None:
    async def scenario() -> None:
        async with two_replicas(mini, namespace) as (ra, rb):
            (a, _), (b, _) = ra, rb
            par = a.view.fleet.position["par-llama"]
            ticket = a.view.fleet.dispatched(par, 50_000, (), 10.0)
            await sync(ra, rb, now_s=10.0)
            assert b.view.fleet.pending_tokens(par, 10.0) == pytest.approx(50_000)
            assert decide(b, now_s=10.0).chosen.endpoint != "par-llama"
            # A's first token shows all that work done: B's queue empties too
            a.view.fleet.first_token(par, ticket, 10.0, 10.0, now_s=10.5)
            await sync(ra, rb, now_s=10.5)
            assert b.view.fleet.pending_tokens(par, 10.5) == pytest.approx(0.0)

    asyncio.run(scenario())


@pytest.mark.slow
def test_a_silent_replica_s_load_expires(mini: Fabric, namespace: str) -> None:
    async def scenario() -> None:
        async with two_replicas(mini, namespace) as (ra, rb):
            (a, _), (b, sb) = ra, rb
            par = a.view.fleet.position["par-llama"]
            a.view.fleet.dispatched(par, 0, (), 0.0)
            await sync(ra, rb)
            assert b.view.fleet.in_flight[par] == 1
            await sb.fleet.sync_once(b.view.fleet, sb.fleet.expiry_s + 1.0)  # A died: no heartbeat
            assert b.view.fleet.in_flight[par] == 0 and sb.fleet.peers == ()

    asyncio.run(scenario())


@pytest.mark.slow
def test_started_gateways_converge_in_the_background(mini: Fabric, namespace: str) -> None:
    async def scenario() -> None:
        (a, _), (b, _) = replica(mini, namespace), replica(mini, namespace)
        await a.start()
        await b.start()
        try:
            far = a.view.fleet.position["fra-llama"]
            a.view.fleet.dispatched(far, 1000, HASHES, a.clock())
            for _ in range(200):
                if b.view.fleet.in_flight[far] == 1:
                    break
                await asyncio.sleep(0.01)
            assert b.view.fleet.in_flight[far] == 1
            assert decide(b, b.clock()).chosen.cached_tokens == 960
            assert "isthmus_shared_fleet_merged_total" in b.metrics.render().decode()
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_redis_a_replica_routes_on_its_own_state(mini: Fabric) -> None:
    async def scenario() -> None:
        gateway, state = replica(mini, "t-down", f"redis://127.0.0.1:{closed_port()}/0")
        attach((gateway, state))
        fleet = gateway.view.fleet
        par = fleet.position["par-llama"]
        fleet.dispatched(par, 100, HASHES, 0.0)
        assert await state.fleet.sync_once(fleet, 0.0) == 0
        assert await state.fleet.sync_once(fleet, 0.1) == 0
        assert fleet.in_flight[par] == 1  # its own load stays
        state.metrics.register(gateway.metrics.registry)
        text = gateway.metrics.render().decode()
        assert 'isthmus_shared_state_fallbacks_total{part="fleet"} 1.0' in text
        assert 'isthmus_shared_state_degraded{part="fleet"} 1.0' in text
        assert decide(gateway).status == "routed"
        await state.stop()

    asyncio.run(scenario())
