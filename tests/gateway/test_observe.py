"""The gateway's metrics, read back through Prometheus' own text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from isthmus.gateway.observe import GatewayMetrics


def scrape(metrics: GatewayMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_counters_accumulate_per_label_set() -> None:
    m = GatewayMetrics()
    for status in ("ok", "ok", "http_400"):
        m.request("acme", "llama", "par-1", "paris", status)
    m.decision("routed", "isthmus")
    m.retry("par-1", "connect")
    m.tokens("par-1", 100, 64, None)
    m.tokens("par-1", 50, 0, 32)
    got = scrape(m)
    base = {"endpoint": "par-1", "model": "llama", "site": "paris", "tenant": "acme"}

    def key(status: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**base, "status": status}.items()))

    assert got["isthmus_requests_total"][key("ok")] == 2
    assert got["isthmus_requests_total"][key("http_400")] == 1
    assert got["isthmus_decisions_total"][(("policy", "isthmus"), ("status", "routed"))] == 1
    assert got["isthmus_retries_total"][(("cause", "connect"), ("endpoint", "par-1"))] == 1
    assert got["isthmus_prompt_tokens_total"][(("endpoint", "par-1"),)] == 150
    cached = got["isthmus_cached_prompt_tokens_total"]
    assert cached[(("endpoint", "par-1"), ("source", "predicted"))] == 64
    assert cached[(("endpoint", "par-1"), ("source", "reported"))] == 32


def test_histogram_buckets_are_cumulative_and_a_value_on_a_bound_counts_in_it() -> None:
    m = GatewayMetrics()
    for seconds in (0.003, 0.1, 0.1, 0.12, 45.0):
        m.observe_ttft("par-1", "paris", "llama", seconds)
    got = scrape(m)
    series = (("endpoint", "par-1"), ("model", "llama"), ("site", "paris"))
    buckets = got["isthmus_ttft_seconds_bucket"]
    assert buckets[(*series[:1], ("le", "0.005"), *series[1:])] == 1
    assert buckets[(*series[:1], ("le", "0.1"), *series[1:])] == 3
    assert buckets[(*series[:1], ("le", "0.15"), *series[1:])] == 4
    assert buckets[(*series[:1], ("le", "30.0"), *series[1:])] == 4
    assert buckets[(*series[:1], ("le", "+Inf"), *series[1:])] == 5
    assert got["isthmus_ttft_seconds_count"][series] == 5
    assert abs(got["isthmus_ttft_seconds_sum"][series] - 45.323) < 1e-9


def test_circuit_state_is_a_gauge_that_goes_back_down() -> None:
    m = GatewayMetrics()
    m.circuit_state("par-1", "open")
    assert scrape(m)["isthmus_circuit_state"][(("endpoint", "par-1"),)] == 2
    m.circuit_state("par-1", "closed")
    assert scrape(m)["isthmus_circuit_state"][(("endpoint", "par-1"),)] == 0
