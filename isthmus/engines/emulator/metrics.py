"""``GET /metrics``: Prometheus text exposition with vLLM's metric names.

A gateway or dashboard written against vLLM reads the emulator unchanged: the same names,
types, units (the two cache-usage gauges are fractions in [0, 1] despite ``_perc``, as in
vLLM), the same ``model_name`` label and the same histogram buckets. Prefix-cache counters are
in tokens, as in vLLM V1. Rendering is plain string formatting (no registry, no globals), so
many emulated endpoints in one process never share state.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from isthmus.engines.timing import EngineLoad

__all__ = ["E2E_BUCKETS_S", "TTFT_BUCKETS_S", "Histogram", "render_metrics"]

TTFT_BUCKETS_S = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
"""vLLM's ``time_to_first_token_seconds`` buckets."""

E2E_BUCKETS_S = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
    120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip
"""vLLM's ``e2e_request_latency_seconds`` buckets."""


@dataclass(slots=True)
class Histogram:
    """A histogram in Prometheus' shape: per-bucket counts, sum and count (+Inf = count)."""

    buckets: tuple[float, ...]
    counts: list[int]
    total: float = 0.0
    count: int = 0

    @classmethod
    def with_buckets(cls, buckets: tuple[float, ...]) -> Histogram:
        return cls(buckets, [0] * len(buckets))

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[int]:
        return list(itertools.accumulate(self.counts))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(
    model_name: str,
    loads: Sequence[EngineLoad],
    ttft: Histogram,
    e2e: Histogram,
    counters: dict[str, int],
) -> bytes:
    """The exposition text. ``loads`` are the replicas' snapshots (gauges sum, except cache
    usage which averages); ``counters`` holds ``prompt_tokens``, ``generation_tokens`` and
    ``request_success`` totals."""
    lab = f'model_name="{_label(model_name)}"'
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, value: float) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{{{lab}}} {value}")

    n = max(1, len(loads))
    usage = sum(ld.kv_usage for ld in loads) / n
    metric(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        sum(ld.running for ld in loads),
    )
    metric(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        sum(ld.waiting for ld in loads),
    )
    metric("vllm:gpu_cache_usage_perc", "gauge", "GPU KV-cache usage. 1 means 100 percent.", usage)
    metric("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent.", usage)
    metric(
        "vllm:prefix_cache_queries_total",
        "counter",
        "Prefix cache queries, in terms of number of queried tokens.",
        sum(ld.prefix_cache_queries for ld in loads),
    )
    metric(
        "vllm:prefix_cache_hits_total",
        "counter",
        "Prefix cache hits, in terms of number of cached tokens.",
        sum(ld.prefix_cache_hits for ld in loads),
    )
    metric(
        "vllm:num_preemptions_total",
        "counter",
        "Cumulative number of preemption from the engine.",
        sum(ld.preemptions for ld in loads),
    )
    metric(
        "vllm:prompt_tokens_total",
        "counter",
        "Number of prefill tokens processed.",
        counters.get("prompt_tokens", 0),
    )
    metric(
        "vllm:generation_tokens_total",
        "counter",
        "Number of generation tokens processed.",
        counters.get("generation_tokens", 0),
    )
    metric(
        "vllm:request_success_total",
        "counter",
        "Count of successfully processed requests.",
        counters.get("request_success", 0),
    )
    metric(
        "isthmus:queued_prefill_tokens",
        "gauge",
        "Prompt tokens queued or mid-prefill (less known prefix hits).",
        sum(ld.queued_prefill_tokens for ld in loads),
    )
    for name, help_text, hist in (
        ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", ttft),
        (
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            e2e,
        ),
    ):
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} histogram")
        for bound, count in zip(hist.buckets, hist.cumulative(), strict=True):
            lines.append(f'{name}_bucket{{{lab},le="{bound}"}} {count}')
        lines.append(f'{name}_bucket{{{lab},le="+Inf"}} {hist.count}')
        lines.append(f"{name}_count{{{lab}}} {hist.count}")
        lines.append(f"{name}_sum{{{lab}}} {hist.total}")
    lines.append("")
    return "\n".join(lines).encode()
