"""What the gateway tells operators: Prometheus metrics and one JSON log line per decision.

Metric families (all prefixed ``isthmus_``): requests by tenant, model, endpoint, site and
outcome; TTFT and end-to-end histograms by endpoint, site and model; routing decisions by status
and policy; retries by cause; circuit state per endpoint; prompt tokens served from cache
(predicted by the prefix index and reported by engines). Labelled children are cached, so the
per-request cost is a few dictionary lookups.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["DecisionLog", "GatewayMetrics"]

_TTFT_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.15,
    0.25,
    0.4,
    0.6,
    1.0,
    1.5,
    2.5,
    5.0,
    10.0,
    30.0,
)
_E2E_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "isthmus_requests",
            "Requests answered, by outcome",
            ["tenant", "model", "endpoint", "site", "status"],
            registry=r,
        )
        self.ttft = Histogram(
            "isthmus_ttft_seconds",
            "Time to first token seen by the gateway",
            ["endpoint", "site", "model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "isthmus_request_duration_seconds",
            "End-to-end request time",
            ["endpoint", "site", "model"],
            buckets=_E2E_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "isthmus_decisions", "Routing decisions", ["status", "policy"], registry=r
        )
        self.retries = Counter("isthmus_retries", "Failovers", ["endpoint", "cause"], registry=r)
        self.circuit = Gauge(
            "isthmus_circuit_state",
            "Circuit state per endpoint (0 closed, 1 half-open, 2 open)",
            ["endpoint"],
            registry=r,
        )
        self.cached_tokens = Counter(
            "isthmus_cached_prompt_tokens",
            "Prompt tokens served from an engine's prefix cache",
            ["endpoint", "source"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "isthmus_prompt_tokens", "Prompt tokens routed", ["endpoint"], registry=r
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(*labels)
            self._children[key] = child
        return child

    def request(self, tenant: str, model: str, endpoint: str, site: str, status: str) -> None:
        self._child(self.requests, tenant, model, endpoint, site, status).inc()

    def observe_ttft(self, endpoint: str, site: str, model: str, seconds: float) -> None:
        self._child(self.ttft, endpoint, site, model).observe(seconds)

    def observe_e2e(self, endpoint: str, site: str, model: str, seconds: float) -> None:
        self._child(self.e2e, endpoint, site, model).observe(seconds)

    def decision(self, status: str, policy: str) -> None:
        self._child(self.decisions, status, policy).inc()

    def retry(self, endpoint: str, cause: str) -> None:
        self._child(self.retries, endpoint, cause).inc()

    def circuit_state(self, endpoint: str, state: str) -> None:
        self._child(self.circuit, endpoint).set(_CIRCUIT[state])

    def tokens(
        self, endpoint: str, prompt: int, predicted_cached: int, reported_cached: int | None
    ) -> None:
        self._child(self.prompt_tokens, endpoint).inc(prompt)
        if predicted_cached:
            self._child(self.cached_tokens, endpoint, "predicted").inc(predicted_cached)
        if reported_cached:
            self._child(self.cached_tokens, endpoint, "reported").inc(reported_cached)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DecisionLog:
    """One JSON line per routing decision on the ``isthmus.decisions`` logger."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.logger = logging.getLogger("isthmus.decisions")
        self.enabled = enabled
        if enabled and not self.logger.handlers:
            handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.setLevel(logging.INFO)
            self.logger.propagate = False

    def record(self, **fields: Any) -> None:
        if self.enabled and self.logger.isEnabledFor(logging.INFO):
            fields["ts"] = round(time.time(), 6)
            self.logger.info(orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY).decode())
