"""The gateway through the official OpenAI client: plain, streaming, refusals, failover, breaker."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from isthmus.gateway.harness import LocalDeployment

from .conftest import KEY, OTHER_KEY


def client(local: LocalDeployment, key: str = KEY, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=local.url + "/v1", api_key=key, max_retries=retries, timeout=20)


CHAT = [{"role": "user", "content": "Summarise the quarterly report in three bullet points."}]


def test_plain_chat_with_decision_header(deployment: LocalDeployment) -> None:
    raw = client(deployment).chat.completions.with_raw_response.create(
        model="llama-3.1-8b", messages=CHAT, max_tokens=8
    )
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens == 8
    decision = raw.headers["x-isthmus-decision"]
    # the bank's class is pii: only the Paris on-prem site is compliant
    assert "endpoint=par-llama" in decision and "site=onprem-paris" in decision
    assert raw.headers["x-isthmus-site"] == "onprem-paris"


def test_streaming_passes_chunks_and_usage(deployment: LocalDeployment) -> None:
    stream = client(deployment, OTHER_KEY).chat.completions.create(
        model="chat-small",
        messages=CHAT,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage.completion_tokens == 12


def test_async_client_and_prefix_cache(deployment: LocalDeployment) -> None:
    prompt = [{"role": "system", "content": "You are a careful analyst. " * 80}, *CHAT]

    async def run() -> list[int]:
        async with openai.AsyncOpenAI(
            base_url=deployment.url + "/v1", api_key=KEY, max_retries=0
        ) as c:
            cached = []
            for _ in range(3):
                done = await c.chat.completions.create(
                    model="llama-3.1-8b", messages=prompt, max_tokens=4
                )
                cached.append(done.usage.prompt_tokens_details.cached_tokens)
            return cached

    cached = asyncio.run(run())
    assert cached[0] == 0 and cached[1] > 300 and cached[2] > 300


def test_completions_embeddings_and_models(deployment: LocalDeployment) -> None:
    c = client(deployment, OTHER_KEY)
    done = c.completions.create(model="chat-small", prompt="Once upon a time", max_tokens=5)
    assert done.choices[0].text
    models = {m.id for m in client(deployment).models.list()}
    assert {"llama-3.1-8b", "closed-large", "chat-small"} <= models


def test_refusal_names_the_rule(us_deployment: LocalDeployment) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client(us_deployment, retries=2).chat.completions.create(
            model="llama-3.1-8b", messages=CHAT
        )
    error = caught.value
    assert error.status_code == 503
    assert error.body["code"] == "no_compliant_endpoint"
    # from Virginia every path to the EEA crosses the US: the GDPR rule refuses them all
    assert "gdpr-pii" in error.body["message"]
    assert error.response.headers["x-should-retry"] == "false"
    # a class no rule covers is refused too (fail closed)
    with pytest.raises(openai.APIStatusError) as uncovered:
        client(us_deployment, OTHER_KEY).chat.completions.create(
            model="chat-small", messages=CHAT, extra_headers={"x-isthmus-data-class": "orphan"}
        )
    assert "fail-closed" in uncovered.value.body["message"]


def test_data_class_cannot_be_lowered(deployment: LocalDeployment) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(deployment).chat.completions.create(
            model="llama-3.1-8b", messages=CHAT, extra_headers={"x-isthmus-data-class": "public"}
        )
    assert caught.value.body["code"] == "data_class_lowered"


def test_failover_when_an_endpoint_is_killed(deployment: LocalDeployment) -> None:
    """Kill the preferred endpoint mid-run: every request still succeeds, elsewhere."""
    c = client(deployment, OTHER_KEY)
    first = c.chat.completions.with_raw_response.create(
        model="chat-small", messages=CHAT, max_tokens=4
    )
    victim = first.headers["x-isthmus-endpoint"]
    assert victim == "par-llama"
    served = deployment.fleet._served[victim]
    deployment.call(served.stop())
    endpoints = []
    for _ in range(10):
        raw = c.chat.completions.with_raw_response.create(
            model="chat-small", messages=CHAT, max_tokens=4
        )
        endpoints.append(raw.headers["x-isthmus-endpoint"])
    assert victim not in endpoints and len(endpoints) == 10


def test_circuit_breaker_opens_and_closes(deployment: LocalDeployment) -> None:
    c = client(deployment, OTHER_KEY)
    gateway = deployment.gateway
    i = gateway.view.fleet.position["par-llama"]
    origin = gateway.upstreams.targets["par-llama"].origin
    httpx.post(origin + "/admin/faults", json={"error_rate": 1.0}).raise_for_status()
    for _ in range(6):  # 500s fail over to the others; after 3 the circuit opens
        c.chat.completions.create(model="chat-small", messages=CHAT, max_tokens=2)
    assert gateway.breakers[i].state == "open"
    assert bool(gateway.view.fleet.circuit_open[i])
    metrics = httpx.get(deployment.url + "/metrics").text
    assert 'isthmus_circuit_state{endpoint="par-llama"} 2.0' in metrics
    httpx.post(origin + "/admin/faults", json={"reset": True}).raise_for_status()
    deadline = time.monotonic() + 10
    while gateway.breakers[i].state != "closed" and time.monotonic() < deadline:
        time.sleep(0.1)  # the half-open probe (a health check) closes it after the cool-down
    assert gateway.breakers[i].state == "closed"


def test_stream_broken_midway_ends_with_an_error_event(deployment: LocalDeployment) -> None:
    gateway = deployment.gateway
    origin = gateway.upstreams.targets["par-llama"].origin
    httpx.post(origin + "/admin/faults", json={"abort_after_tokens": 3}).raise_for_status()
    with httpx.stream(
        "POST",
        deployment.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "llama-3.1-8b", "messages": CHAT, "max_tokens": 20, "stream": True},
        timeout=10,
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert body.count("data: {") >= 2
    assert '"code":"upstream_stream_error"' in body


def test_provider_cut_off_continues_on_another_allowed_provider(
    deployment: LocalDeployment,
) -> None:
    """Every endpoint of one provider goes dark: traffic continues on the other provider."""
    c = client(deployment, OTHER_KEY)
    gateway = deployment.gateway
    aws = [
        n
        for n, info in zip(gateway.view.fleet.position, gateway.view.fleet.infos, strict=True)
        if info.provider == "aws"
    ]
    assert sorted(aws) == ["fra-llama", "iad-llama"]
    for name in aws:
        origin = gateway.upstreams.targets[name].origin
        httpx.post(origin + "/admin/faults", json={"down": True}).raise_for_status()
    # make the provider's endpoints the preferred ones: the Paris endpoint is busy
    par = gateway.view.fleet.position["par-llama"]
    deployment.call(_set_pending(gateway, par, 200_000))
    sites = []
    for _ in range(6):
        raw = c.chat.completions.with_raw_response.create(
            model="chat-small", messages=CHAT, max_tokens=2
        )
        sites.append(raw.headers["x-isthmus-site"])
    assert set(sites) == {"onprem-paris"}


async def _set_pending(gateway, i: int, tokens: float) -> None:  # type: ignore[no-untyped-def]
    gateway.view.fleet.set_load(i, pending_prefill_tokens=tokens, now_s=gateway.clock())


def test_models_are_listed_and_retrieved_per_tenant(deployment: LocalDeployment) -> None:
    lab = client(deployment, OTHER_KEY)  # the lab may use chat-small only
    assert {m.id for m in lab.models.list()} == {"chat-small"}
    assert lab.models.retrieve("chat-small").id == "chat-small"
    with pytest.raises(openai.NotFoundError):
        lab.models.retrieve("llama-3.1-8b")
    assert client(deployment).models.retrieve("llama-3.1-8b").owned_by
    response = httpx.post(deployment.url + "/v1/models")
    assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
    response = httpx.get(deployment.url + "/v1/chat/completions")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_an_upstream_rate_limit_reaches_the_client_as_429(deployment: LocalDeployment) -> None:
    """The bank's pii requests from Paris have one compliant endpoint; when it answers 429,
    the client is told to slow down (429, Retry-After), not that the service is down."""
    origin = deployment.gateway.upstreams.targets["par-llama"].origin
    httpx.post(origin + "/admin/faults", json={"rate_limit_rate": 1.0}).raise_for_status()
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            client(deployment).chat.completions.create(
                model="llama-3.1-8b", messages=CHAT, max_tokens=2
            )
        assert caught.value.code == "upstream_rate_limited"
        assert caught.value.response.headers["retry-after"]
    finally:
        httpx.post(origin + "/admin/faults", json={"reset": True}).raise_for_status()
