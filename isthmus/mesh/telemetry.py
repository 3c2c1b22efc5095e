"""Per-tenant usage snapshots, as a gateway reports them on the telemetry stream.

A snapshot is cumulative (tokens and USD this gateway settled in the tenant's current budget
period — its own share, also when a site's replicas share one ledger in Redis), so a lost snapshot loses nothing: the next one supersedes it.
Its number ``n`` is the snapshot time in unix milliseconds, unique per gateway and growing
across restarts, so the message id ``<gateway>:<n>`` never repeats.
"""

from __future__ import annotations

from typing import Any

from isthmus.gateway.app import Gateway

__all__ = ["usage_snapshot"]


def usage_snapshot(gateway: Gateway, gateway_id: str, at: float) -> tuple[int, dict[str, Any]]:
    """(n, snapshot) for ``gateway`` at unix time ``at``."""
    n = int(at * 1000)
    tenants: dict[str, dict[str, float | int]] = {}
    for name, tenant in gateway.fabric.tenants.items():
        tokens, usd = gateway.ledger.own_usage(tenant)  # this gateway's share; the control
        # plane sums the gateways' latest snapshots
        tenants[name] = {"tokens": tokens, "usd": round(usd, 6)}
    return n, {
        "gateway": gateway_id,
        "site": gateway.config.site,
        "n": n,
        "at": at,
        "tenants": tenants,
    }
