"""Routing against what engines accept, end to end: the context window is a filter, and a
request an engine refused is not believed cached there."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import pytest

from isthmus.engines.emulator.fleet import specs_from_fabric
from isthmus.fabric.catalog import Fabric
from isthmus.gateway import GatewayConfig
from isthmus.gateway.harness import LocalDeployment
from tests.fabrics import with_short_context_model

from .conftest import OTHER_KEY, with_tenants


def deploy(fabric: Fabric, max_model_len: int | None = None) -> LocalDeployment:
    specs = specs_from_fabric(fabric, any_port=True)
    if max_model_len is not None:  # engines started with a shorter window than the catalog's
        specs = [
            dataclasses.replace(
                s, config=dataclasses.replace(s.config, max_model_len=max_model_len)
            )
            for s in specs
        ]
    config = GatewayConfig(site="onprem-paris", health_interval_s=0, log_decisions=False)
    return LocalDeployment(fabric, config, specs)


def chat(local: LocalDeployment, words: int, tag: str, stream: bool = False) -> httpx.Response:
    content = " ".join(f"{tag}{k}" for k in range(words))  # one token a word, unique per tag
    return httpx.post(
        local.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {OTHER_KEY}"},
        json={
            "model": "chat-small",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 8,
            "stream": stream,
        },
        timeout=30,
    )


def decision(response: httpx.Response) -> dict[str, str]:
    header = response.headers["x-isthmus-decision"]
    return dict(part.split("=", 1) for part in header.split("; ") if "=" in part)


@pytest.fixture()
def short_window(mini: Fabric) -> Iterator[LocalDeployment]:
    with deploy(with_short_context_model(with_tenants(mini))) as local:
        yield local


@pytest.fixture()
def shrunk_engines(mini: Fabric) -> Iterator[LocalDeployment]:
    with deploy(with_tenants(mini), max_model_len=2048) as local:
        yield local


def test_a_prompt_beyond_a_models_window_goes_to_a_model_that_holds_it(
    short_window: LocalDeployment,
) -> None:
    small = chat(short_window, 200, "small")
    assert small.status_code == 200 and decision(small)["endpoint"] == "par-short"
    long = chat(short_window, 5000, "long")  # 5,000 + 8 tokens: beyond par-short's 4,096
    assert long.status_code == 200, long.text
    assert decision(long)["model"] == "llama-3.1-8b"


def test_a_prompt_rejected_twice_is_predicted_uncached_twice(
    shrunk_engines: LocalDeployment,
) -> None:
    """The catalog says 8,192 tokens of context, the engines were started with 2,048: they
    answer 400 before computing anything, so nothing of the prompt is cached anywhere."""
    first = chat(shrunk_engines, 3000, "once")
    second = chat(shrunk_engines, 3000, "once")
    for response in (first, second):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"
    assert decision(first)["cached"] == "0"
    assert decision(second)["endpoint"] == decision(first)["endpoint"]
    assert decision(second)["cached"] == "0"


def test_an_endpoint_that_failed_over_is_not_believed_cached(
    short_window: LocalDeployment,
) -> None:
    gateway = short_window.gateway
    origin = gateway.upstreams.targets["par-short"].origin
    httpx.post(origin + "/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    failed_over = chat(short_window, 1000, "retry")  # par-short answers 500: served elsewhere
    assert failed_over.status_code == 200 and decision(failed_over)["endpoint"] != "par-short"
    httpx.post(origin + "/admin/faults", json={"reset": True}).raise_for_status()
    again = chat(short_window, 1000, "retry")
    assert again.status_code == 200
    if decision(again)["endpoint"] == "par-short":
        assert decision(again)["cached"] == "0"
        assert again.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def test_a_stream_broken_after_its_first_token_stays_cached(
    short_window: LocalDeployment,
) -> None:
    """The engine computed the prompt before the stream broke: its blocks stay in the index."""
    gateway = short_window.gateway
    origin = gateway.upstreams.targets["par-short"].origin
    httpx.post(origin + "/admin/faults", json={"abort_after_tokens": 2}).raise_for_status()
    broken = chat(short_window, 1000, "broken", stream=True)
    assert "upstream_stream_error" in broken.text and decision(broken)["endpoint"] == "par-short"
    httpx.post(origin + "/admin/faults", json={"reset": True}).raise_for_status()
    again = chat(short_window, 1000, "broken")
    assert decision(again)["endpoint"] == "par-short"
    assert int(decision(again)["cached"]) >= 960
