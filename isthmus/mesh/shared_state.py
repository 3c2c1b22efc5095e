"""Shared state for the gateway replicas of one site: one Redis, two uses.

``SharedState`` bundles a ``SharedLedger`` (rate limits and budgets enforced together) and a
``FleetSync`` (endpoint load and the prefix index merged among replicas). A gateway given one
(``Gateway(..., shared=state)``) admits through the shared ledger and, once started, runs the
fleet sync in its background; a gateway without one works alone, as it always has. Several
replicas behind one load balancer then route as one and spend one budget.

The ledger admits synchronously (one Lua call: the request waits for its admission anyway, and
a site's Redis answers in a fraction of a millisecond); its timeouts are short so an
unreachable Redis costs one wait per retry, not one per request. Once the gateway has started
the shared state, settlements are queued and sent by the background task with the fleet sync,
every ``period_s``, pipelined and asynchronous: unused tokens return to the shared buckets,
and spending reaches the budgets, within a period of the request's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import TYPE_CHECKING

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

from isthmus.mesh.shared_fleet import FleetSync
from isthmus.mesh.shared_limits import SharedLedger
from isthmus.mesh.shared_metrics import SharedStateMetrics
from isthmus.store.urls import redact_url

if TYPE_CHECKING:
    from isthmus.gateway.app import Gateway

__all__ = ["SharedState", "shared_state_from_url"]

log = logging.getLogger("isthmus.mesh.shared_state")

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,127}$")  # a catalog name
LEDGER_TIMEOUT_S = 0.25
"""Socket timeouts of the ledger's (blocking) client: how long a request can wait for Redis."""


class SharedState:
    """Rate limits, budgets and fleet state shared by the gateway replicas of one site."""

    def __init__(self, ledger: SharedLedger, fleet: FleetSync, metrics: SharedStateMetrics) -> None:
        self.ledger = ledger
        self.fleet = fleet
        self.metrics = metrics
        fleet.on_reachable = ledger.redis_is_back
        self._task: asyncio.Task[None] | None = None

    def start(self, gateway: Gateway) -> None:
        """Join ``gateway``'s metrics and journal its fleet; from now on settlements are sent
        and the fleet synced in the background, every ``fleet.period_s``."""
        self.metrics.register(gateway.metrics.registry)
        self.fleet.attach(gateway.view.fleet)
        if self._task is None:
            self.ledger.deferred = True
            self._task = asyncio.create_task(self._run(gateway))

    async def _run(self, gateway: Gateway) -> None:
        while True:
            try:
                await self.ledger.flush()
                await self.fleet.sync_once(gateway.view.fleet, gateway.clock())
            except asyncio.CancelledError:
                raise
            except Exception:  # a malformed message or a bug must not stop the sharing
                log.exception("shared state round failed")
            await asyncio.sleep(self.fleet.period_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
            await self.ledger.flush()  # what is still queued, if Redis is there
            self.ledger.deferred = False
        await self.fleet.close()
        self.ledger.client.close()


def shared_state_from_url(
    url: str,
    site: str,
    namespace: str = "isthmus",
    *,
    sync_period_s: float = 0.05,
) -> SharedState:
    """Shared state in the Redis at ``url`` (``redis://host:port/db``, ``rediss://`` for TLS)
    for the gateways of ``site``; keys start with ``namespace:``. Connects lazily: a Redis that
    is down at start means local state until it is up."""
    if not _NAME.match(namespace):
        raise ValueError(f"namespace {namespace!r} must match {_NAME.pattern}")
    if not _SITE.match(site):
        raise ValueError(f"site {site!r} is not a catalog site name")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(
            f"Redis URL {redact_url(url)!r} must start with redis://, rediss:// or unix:// "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    try:
        # one immediate retry (a pooled connection cut by a Redis restart), never a backoff
        # that would hold the request, or the event loop, for seconds
        blocking = redis.Redis.from_url(
            url,
            socket_timeout=LEDGER_TIMEOUT_S,
            socket_connect_timeout=LEDGER_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
        background = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
        )
    except ValueError as error:
        raise ValueError(f"invalid Redis URL {redact_url(url)!r}: {error}") from None
    metrics = SharedStateMetrics()
    ledger = SharedLedger(blocking, namespace, metrics=metrics, background=background)
    fleet = FleetSync(background, namespace, site, period_s=sync_period_s, metrics=metrics)
    return SharedState(ledger, fleet, metrics)
