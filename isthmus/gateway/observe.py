"""What the gateway tells operators: Prometheus metrics and one JSON log line per decision.

Metric families (all prefixed ``isthmus_``): requests by tenant, model, endpoint, site and
outcome; TTFT and end-to-end histograms by endpoint, site and model; routing decisions by status
and policy; retries by cause; circuit state per endpoint; prompt tokens served from cache
(predicted by the prefix index and reported by engines).

The gateway counts in plain dictionaries (one event loop writes them: no locks) and a collector
turns them into Prometheus families when ``/metrics`` is read: a request costs a few dictionary
updates, not a locked client-library call per family. Counters and histogram buckets only grow.
"""

from __future__ import annotations

import bisect
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

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

Labels = tuple[str, ...]


class _Histogram:
    """Bucket counts (not cumulative; the last bucket is +Inf) and the sum, per label set."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[Labels, list[float]] = {}  # [count per bucket..., +Inf, sum]

    def observe(self, labels: Labels, value: float) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        row[bisect.bisect_left(self.bounds, value)] += 1  # le: a value on a bound counts in it
        row[-1] += value

    def family(self, name: str, documentation: str, label_names: list[str]) -> Metric:
        family = HistogramMetricFamily(name, documentation, labels=label_names)
        edges = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        for labels, row in self.series.items():
            cumulative, buckets = 0.0, []
            for edge, count in zip(edges, row[:-1], strict=True):
                cumulative += count
                buckets.append((edge, cumulative))
            family.add_metric(list(labels), buckets, row[-1])
        return family


class GatewayMetrics:
    def __init__(self) -> None:
        self.requests: dict[Labels, float] = {}  # tenant, model, endpoint, site, status
        self.ttft = _Histogram(_TTFT_BUCKETS)  # endpoint, site, model
        self.e2e = _Histogram(_E2E_BUCKETS)  # endpoint, site, model
        self.decisions: dict[Labels, float] = {}  # status, policy
        self.retries: dict[Labels, float] = {}  # endpoint, cause
        self.circuit: dict[str, float] = {}  # endpoint
        self.cached_tokens: dict[Labels, float] = {}  # endpoint, source
        self.prompt_tokens: dict[str, float] = {}  # endpoint
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))

    def request(self, tenant: str, model: str, endpoint: str, site: str, status: str) -> None:
        key = (tenant, model, endpoint, site, status)
        self.requests[key] = self.requests.get(key, 0.0) + 1

    def observe_ttft(self, endpoint: str, site: str, model: str, seconds: float) -> None:
        self.ttft.observe((endpoint, site, model), seconds)

    def observe_e2e(self, endpoint: str, site: str, model: str, seconds: float) -> None:
        self.e2e.observe((endpoint, site, model), seconds)

    def decision(self, status: str, policy: str) -> None:
        key = (status, policy)
        self.decisions[key] = self.decisions.get(key, 0.0) + 1

    def retry(self, endpoint: str, cause: str) -> None:
        key = (endpoint, cause)
        self.retries[key] = self.retries.get(key, 0.0) + 1

    def circuit_state(self, endpoint: str, state: str) -> None:
        self.circuit[endpoint] = _CIRCUIT[state]

    def tokens(
        self, endpoint: str, prompt: int, predicted_cached: int, reported_cached: int | None
    ) -> None:
        self.prompt_tokens[endpoint] = self.prompt_tokens.get(endpoint, 0.0) + prompt
        for source, count in (("predicted", predicted_cached), ("reported", reported_cached)):
            if count:
                key = (endpoint, source)
                self.cached_tokens[key] = self.cached_tokens.get(key, 0.0) + count

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _counter(
    name: str, documentation: str, label_names: list[str], values: dict[Any, float]
) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=label_names)
    for labels, value in values.items():
        family.add_metric(list(labels) if isinstance(labels, tuple) else [labels], value)
    return family


class _Collector:
    """The gateway's counts as Prometheus families, built when they are scraped."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _counter(
            "isthmus_requests",
            "Requests answered, by outcome",
            ["tenant", "model", "endpoint", "site", "status"],
            dict(m.requests),
        )
        yield m.ttft.family(
            "isthmus_ttft_seconds",
            "Time to first token seen by the gateway",
            ["endpoint", "site", "model"],
        )
        yield m.e2e.family(
            "isthmus_request_duration_seconds",
            "End-to-end request time",
            ["endpoint", "site", "model"],
        )
        yield _counter(
            "isthmus_decisions", "Routing decisions", ["status", "policy"], dict(m.decisions)
        )
        yield _counter("isthmus_retries", "Failovers", ["endpoint", "cause"], dict(m.retries))
        circuit = GaugeMetricFamily(
            "isthmus_circuit_state",
            "Circuit state per endpoint (0 closed, 1 half-open, 2 open)",
            labels=["endpoint"],
        )
        for endpoint, state in dict(m.circuit).items():
            circuit.add_metric([endpoint], state)
        yield circuit
        yield _counter(
            "isthmus_cached_prompt_tokens",
            "Prompt tokens served from an engine's prefix cache",
            ["endpoint", "source"],
            dict(m.cached_tokens),
        )
        yield _counter(
            "isthmus_prompt_tokens", "Prompt tokens routed", ["endpoint"], dict(m.prompt_tokens)
        )


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
