"""What shared state tells operators: falls back to local state, and how stale the merge is.

The families are created unregistered and joined to the gateway's registry when the shared
state is started with a gateway (``register``), so ``/metrics`` shows them next to the rest.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["SharedStateMetrics"]


class SharedStateMetrics:
    def __init__(self) -> None:
        self.fallbacks = Counter(
            "isthmus_shared_state_fallbacks",
            "Times shared state (Redis) became unreachable and this gateway went on alone",
            ["part"],
            registry=None,
        )
        self.degraded = Gauge(
            "isthmus_shared_state_degraded",
            "1 while this gateway works on local state only (Redis unreachable)",
            ["part"],
            registry=None,
        )
        self.local_admissions = Counter(
            "isthmus_shared_ledger_local_admissions",
            "Requests admitted by this gateway's own ledger because Redis was unreachable",
            registry=None,
        )
        self.merged = Counter(
            "isthmus_shared_fleet_merged",
            "Fleet-state messages merged from the other gateways of this site",
            registry=None,
        )
        self._registered: set[int] = set()

    def register(self, registry: CollectorRegistry) -> None:
        if id(registry) in self._registered:
            return
        for collector in (self.fallbacks, self.degraded, self.local_admissions, self.merged):
            registry.register(collector)
        self._registered.add(id(registry))
