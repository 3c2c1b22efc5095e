from __future__ import annotations

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from isthmus.engines.emulator import RunningFleet
from isthmus.engines.emulator.metrics import TTFT_BUCKETS_S, Histogram, render_metrics
from isthmus.engines.timing import EngineLoad


def families(url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }


def test_metrics_parse_with_vllm_names_and_count_cache_hits(emulators: RunningFleet) -> None:
    url = emulators["fast"]
    prompt: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": " ".join(f"m{i}" for i in range(100))}
    ]
    with openai.OpenAI(base_url=url, api_key="x", max_retries=0) as c:
        for _ in range(2):
            c.chat.completions.create(model="fast-model", messages=prompt, max_tokens=2)
    fams = families(url)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:gpu_cache_usage_perc",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_queries",
        "vllm:prefix_cache_hits",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
    ):
        assert name in fams, name
        assert all(labels["model_name"] == "fast-model" for _, labels, _ in fams[name])
    hits = fams["vllm:prefix_cache_hits"][0][2]
    queries = fams["vllm:prefix_cache_queries"][0][2]
    assert 0 < hits < queries
    ttft = {
        n: v
        for n, labels, v in fams["vllm:time_to_first_token_seconds"]
        if labels.get("le") in (None, "+Inf")
    }
    assert ttft["vllm:time_to_first_token_seconds_count"] >= 2
    assert 0 <= fams["vllm:kv_cache_usage_perc"][0][2] <= 1


def test_zero_mode_metrics_parse(emulators: RunningFleet) -> None:
    fams = families(emulators["zero"])
    assert fams["vllm:num_requests_running"][0][2] == 0


def test_render_escapes_labels_and_sums_replicas() -> None:
    load = EngineLoad(waiting=1, running=2, kv_usage=0.5, queued_prefill_tokens=10,
                      prefix_cache_queries=4, prefix_cache_hits=1, preemptions=0)  # fmt: skip
    hist = Histogram.with_buckets(TTFT_BUCKETS_S)
    hist.observe(0.03)
    hist.observe(9999)
    text = render_metrics('we"ird\\', [load, load], hist, hist, {}).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    running = fams["vllm:num_requests_running"].samples[0]
    assert running.value == 4 and running.labels["model_name"] == 'we"ird\\'
    buckets = {
        s.labels["le"]: s.value
        for s in fams["vllm:time_to_first_token_seconds"].samples
        if "le" in s.labels
    }
    assert buckets["0.02"] == 0 and buckets["0.04"] == 1 and buckets["+Inf"] == 2
