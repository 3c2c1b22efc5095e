"""Injected faults, set at run time through POST /admin/faults."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

MSG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def set_faults(base_url: str, **faults: object) -> None:
    response = httpx.post(base_url.removesuffix("/v1") + "/admin/faults", json=faults)
    response.raise_for_status()
    assert all(response.json()[k] == v for k, v in faults.items())


def client(url: str, timeout: float = 10.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=timeout)


def running(url: str) -> float:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:num_requests_running":
            return family.samples[0].value
    raise AssertionError("no running gauge")


def test_error_and_rate_limit_rates(faulty: str) -> None:
    set_faults(faulty, error_rate=1.0)
    with client(faulty) as c:
        with pytest.raises(openai.InternalServerError) as err:
            c.chat.completions.create(model="faulty-model", messages=MSG)
        assert err.value.status_code == 500
        set_faults(faulty, error_rate=0.0, rate_limit_rate=1.0)
        with pytest.raises(openai.RateLimitError) as limited:
            c.chat.completions.create(model="faulty-model", messages=MSG)
        assert limited.value.code == "rate_limit_exceeded"
        assert limited.value.response.headers["retry-after"] == "1"
        set_faults(faulty, rate_limit_rate=0.5)
        outcomes = set()
        for _ in range(30):
            try:
                c.chat.completions.create(model="faulty-model", messages=MSG, max_tokens=1)
                outcomes.add("ok")
            except openai.RateLimitError:
                outcomes.add("429")
        assert outcomes == {"ok", "429"}


def test_down_refuses_with_503(faulty: str) -> None:
    set_faults(faulty, down=True)
    with client(faulty) as c, pytest.raises(openai.APIStatusError) as down:
        c.chat.completions.create(model="faulty-model", messages=MSG)
    assert down.value.status_code == 503
    assert httpx.get(faulty.removesuffix("/v1") + "/health").status_code == 503


def test_stall_is_detected_by_a_client_timeout_and_frees_the_engine(faulty: str) -> None:
    set_faults(faulty, stall_after_tokens=2)
    received = 0
    with client(faulty, timeout=0.3) as c:
        stream = c.chat.completions.create(
            model="faulty-model", messages=MSG, max_tokens=50, stream=True
        )
        with pytest.raises((httpx.ReadTimeout, openai.APITimeoutError)):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received += 1
        stream.close()
        with pytest.raises(openai.APITimeoutError):
            c.chat.completions.create(model="faulty-model", messages=MSG, max_tokens=50)
    assert received == 2
    deadline = time.monotonic() + 2
    while running(faulty) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running(faulty) == 0  # the stalled requests' blocks were released


def test_abort_mid_stream_closes_the_connection(faulty: str) -> None:
    set_faults(faulty, abort_after_tokens=3)
    received = 0
    with client(faulty) as c:
        stream = c.chat.completions.create(
            model="faulty-model", messages=MSG, max_tokens=20, stream=True
        )
        with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received += 1
        with pytest.raises(openai.APIConnectionError):
            c.chat.completions.create(model="faulty-model", messages=MSG, max_tokens=20)
    assert received == 3


def test_slowness_multiplies_step_time(faulty: str) -> None:
    def duration() -> float:
        with client(faulty) as c:
            t0 = time.perf_counter()
            c.chat.completions.create(model="faulty-model", messages=MSG, max_tokens=10)
            return time.perf_counter() - t0

    normal = duration()  # ~10 steps of 5 ms
    set_faults(faulty, slowness=4.0)
    assert duration() > 2.5 * normal


def test_bad_fault_documents_are_refused(faulty: str) -> None:
    base = faulty.removesuffix("/v1")
    r = httpx.post(base + "/admin/faults", json={"error_rate": 2})
    assert r.status_code == 400 and "error_rate" in r.json()["error"]["message"]
    r = httpx.post(base + "/admin/faults", json={"explode": True})
    assert r.status_code == 400 and "unknown fault" in r.json()["error"]["message"]
    assert httpx.get(base + "/admin/faults").json()["error_rate"] == 0.0
