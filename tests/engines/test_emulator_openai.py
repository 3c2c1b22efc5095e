"""The emulator through the official OpenAI client: sync, async, streaming, errors, timing."""

from __future__ import annotations

import asyncio
import math
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from isthmus.engines.emulator import RunningFleet
from isthmus.engines.tokens import count_tokens

LONG_PROMPT = " ".join(f"word{i}" for i in range(300))


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="none", max_retries=0)


def test_chat_completion(emulators: RunningFleet) -> None:
    with client(emulators["fast"]) as c:
        r = c.chat.completions.create(
            model="fast-model",
            messages=[{"role": "user", "content": "Hello there, engine!"}],
            max_tokens=5,
        )
        assert r.object == "chat.completion" and r.model == "fast-model"
        choice = r.choices[0]
        assert choice.finish_reason == "length" and choice.message.role == "assistant"
        assert r.usage is not None
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (6, 5)
        assert count_tokens(choice.message.content or "") == 5
        # without max_tokens: the default length, finishing as if the model stopped
        r2 = c.chat.completions.create(
            model="fast-alias", messages=[{"role": "user", "content": "hi"}]
        )
        assert r2.choices[0].finish_reason == "stop" and r2.usage is not None
        assert r2.usage.completion_tokens == 8


def test_text_completion_stream_and_whole(emulators: RunningFleet) -> None:
    with client(emulators["fast"]) as c:
        r = c.completions.create(model="fast-model", prompt="Once upon a time", max_tokens=4)
        assert r.object == "text_completion" and r.usage is not None
        assert r.usage.completion_tokens == 4 and count_tokens(r.choices[0].text) == 4
        parts = [ch.choices[0].text for ch in c.completions.create(
            model="fast-model", prompt="Once upon a time", max_tokens=4, stream=True) if ch.choices]  # fmt: skip
        assert "".join(parts) == r.choices[0].text  # deterministic output
        ids = c.completions.create(model="fast-model", prompt=[1, 2, 3], max_tokens=1)
        assert ids.usage is not None and ids.usage.prompt_tokens == 3


def test_stream_with_usage_reports_cached_tokens_on_a_repeated_prompt(
    emulators: RunningFleet,
) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": LONG_PROMPT}]
    usages = []
    with client(emulators["fast"]) as c:
        for _ in range(2):
            stream = c.chat.completions.create(
                model="fast-model", messages=messages, max_tokens=3, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = list(stream)
            content = [
                ch.choices[0].delta for ch in chunks if ch.choices and ch.choices[0].delta.content
            ]
            assert content[0].role == "assistant" and len(content) == 3
            assert chunks[-1].choices == [] and chunks[-1].usage is not None
            usages.append(chunks[-1].usage)
    assert usages[0].prompt_tokens == 301
    details = [u.prompt_tokens_details for u in usages]
    assert details[0] is not None and details[1] is not None
    assert details[0].cached_tokens == 0
    assert details[1].cached_tokens == 288  # 18 full blocks of 16; the last token is recomputed


def test_async_client_concurrent_requests(emulators: RunningFleet) -> None:
    async def go() -> list[int]:
        async with openai.AsyncOpenAI(base_url=emulators["fast"], api_key="x", max_retries=0) as c:
            results = await asyncio.gather(*(
                c.chat.completions.create(model="fast-model", max_tokens=3 + i % 3,
                                          messages=[{"role": "user", "content": f"question {i}"}])
                for i in range(20)
            ))  # fmt: skip
            stream = await c.chat.completions.create(
                model="fast-model",
                messages=[{"role": "user", "content": "s"}],
                max_tokens=2,
                stream=True,
            )
            assert (
                len([ch async for ch in stream if ch.choices and ch.choices[0].delta.content]) == 2
            )
            return [r.usage.completion_tokens for r in results if r.usage]

    assert asyncio.run(go()) == [3 + i % 3 for i in range(20)]


def test_embeddings_and_models(emulators: RunningFleet) -> None:
    with client(emulators["fast"]) as c:
        r = c.embeddings.create(
            model="fast-model", input=["the cat sat", "the cat sat", "a dog ran"]
        )
        vecs = [d.embedding for d in r.data]
        assert [len(v) for v in vecs] == [384] * 3
        assert vecs[0] == vecs[1] and vecs[0] != vecs[2]
        assert math.isclose(sum(x * x for x in vecs[0]), 1.0, rel_tol=1e-5)
        assert r.usage.prompt_tokens == 9
        floats = c.embeddings.create(
            model="fast-model", input="x y", encoding_format="float", dimensions=8
        )
        assert len(floats.data[0].embedding) == 8
        assert [m.id for m in c.models.list()] == ["fast-model", "fast-alias"]
    assert httpx.get(emulators["fast"].removesuffix("/v1") + "/health").status_code == 200


def test_errors_have_openai_shape(emulators: RunningFleet) -> None:
    url = emulators["fast"]
    with client(url) as c:
        with pytest.raises(openai.NotFoundError) as nf:
            c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
        assert nf.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as long:
            c.chat.completions.create(
                model="fast-model", messages=[{"role": "user", "content": "x " * 4095}]
            )
        assert long.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="fast-model", messages=[], max_tokens=1)
    bad = httpx.post(url + "/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}
    missing = httpx.post(url + "/chat/completions", json={"model": "fast-model"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "messages"
    assert httpx.get(url + "/chat/completions").status_code == 405
    assert httpx.get(url + "/nowhere").status_code == 404


def test_tokens_arrive_at_modelled_times_with_network_delay(emulators: RunningFleet) -> None:
    # paced: 100 tokens/s at batch 1 (10 ms a step), 10 ms one-way delay
    with client(emulators["paced"]) as c:
        start = time.perf_counter()
        stamps = []
        for ch in c.chat.completions.create(
            model="paced-model",
            messages=[{"role": "user", "content": "tick"}],
            max_tokens=10,
            stream=True,
        ):
            if ch.choices and ch.choices[0].delta.content:
                stamps.append(time.perf_counter() - start)
    assert len(stamps) == 10
    # Token k is due at RTT 20 ms + one ~10 ms prefill step + k decode steps of 10 ms. The
    # emulator never sends a token early, so the lower bounds are exact; a busy machine can only
    # make tokens late (and a late token lets the next ones catch up), so the upper bound is loose.
    for k, stamp in enumerate(stamps):
        assert stamp >= 0.029 + k * 0.0095, (k, stamps)
    assert stamps[-1] < 0.5


def test_zero_mode_answers_at_once(emulators: RunningFleet) -> None:
    with client(emulators["zero"]) as c:
        r = c.chat.completions.create(
            model="zero-model", messages=[{"role": "user", "content": "a b c"}]
        )
        assert r.choices[0].message.content == "ok" and r.usage is not None
        assert r.usage.prompt_tokens == 4 and r.usage.completion_tokens == 1
        chunks = list(c.chat.completions.create(
            model="zero-model", messages=[{"role": "user", "content": "a"}], stream=True,
            stream_options={"include_usage": True}))  # fmt: skip
        assert chunks[0].choices[0].delta.content == "ok" and chunks[-1].usage is not None

    async def burst() -> float:
        async with httpx.AsyncClient(base_url=emulators["zero"]) as h:
            body = {"model": "zero-model", "messages": [{"role": "user", "content": "hi"}]}
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(h.post("/chat/completions", json=body) for _ in range(200)))
            assert all(r.status_code == 200 for r in rs)
            return time.perf_counter() - t0

    assert asyncio.run(burst()) < 5.0
