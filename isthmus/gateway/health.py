"""Active health checks and engine metrics, in the background of a running gateway.

Every ``health_interval_s`` each endpoint with an HTTP origin is probed (``GET /health``);
where the engine exports Prometheus metrics (vLLM names: ``vllm:num_requests_waiting``,
``vllm:num_requests_running``, ``vllm:gpu_cache_usage_perc`` / ``vllm:kv_cache_usage_perc``)
they are scraped into the fleet state. A probe of an endpoint whose circuit is open counts as
its half-open probe: success closes the circuit, failure keeps it open.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from isthmus.gateway.app import Gateway

__all__ = ["engine_metrics", "health_loop", "probe_all"]

log = logging.getLogger("isthmus.gateway.health")
_WAITING = ("vllm:num_requests_waiting",)
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def engine_metrics(text: str) -> tuple[float | None, float | None]:
    """(requests waiting, KV-cache usage in [0, 1]) from a Prometheus exposition, if present."""
    waiting: float | None = None
    kv: float | None = None
    try:
        families = list(text_string_to_metric_families(text))
    except Exception:  # malformed exposition: ignore, keep the last values
        return None, None
    for family in families:
        if family.name in _WAITING and family.samples:
            waiting = sum(s.value for s in family.samples)
        elif family.name in _KV and family.samples and kv is None:
            kv = max(s.value for s in family.samples)
    return waiting, kv


async def _probe(gateway: Gateway, i: int) -> None:
    fleet = gateway.view.fleet
    name = fleet.infos[i].name
    target = gateway.upstreams.targets[name]
    if not target.origin.startswith("http://127.") and not target.origin.startswith(
        "http://localhost"
    ):
        return  # only self-hosted loopback/private engines are probed here; providers are not
    timeout = gateway.config.health_timeout_s
    status, _ = await gateway.upstreams.get(name, "/health", timeout)
    healthy = status == 200
    if healthy != bool(fleet.healthy[i]):
        log.warning("endpoint %s is now %s", name, "healthy" if healthy else "unhealthy")
    fleet.set_health(i, healthy)
    breaker = gateway.breakers[i]
    now = gateway.clock()
    if breaker.state != "closed" and breaker.allows(now):
        if healthy:
            breaker.success()
            fleet.set_circuit_open(i, False)
            gateway.metrics.circuit_state(name, "closed")
        elif breaker.failure(now):
            fleet.set_circuit_open(i, True)
    if healthy:
        status, body = await gateway.upstreams.get(name, "/metrics", timeout)
        if status == 200:
            waiting, kv = engine_metrics(body.decode("utf-8", "replace"))
            fleet.engine_report(i, waiting=waiting, kv_usage=kv)


async def probe_all(gateway: Gateway) -> None:
    await asyncio.gather(*(_probe(gateway, i) for i in range(len(gateway.view.fleet))))


async def health_loop(gateway: Gateway) -> None:
    while True:
        try:
            await probe_all(gateway)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("health check round failed")
        await asyncio.sleep(gateway.config.health_interval_s)
