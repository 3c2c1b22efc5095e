from __future__ import annotations

import asyncio

import orjson
import pytest

from isthmus.engines.emulator.config import EmulatorConfig, Faults, FaultsError
from isthmus.engines.emulator.protocol import ApiError, parse_embeddings, parse_generation
from isthmus.engines.emulator.runner import EngineRunner
from isthmus.engines.timing import Done, EngineProfile, EngineRequest
from isthmus.engines.tokens import block_hashes

CFG = EmulatorConfig("m", max_model_len=100, default_max_tokens=20)


def body(**fields: object) -> bytes:
    return orjson.dumps({"model": "m", **fields})


def test_generation_defaults_and_limits() -> None:
    g = parse_generation(body(messages=[{"role": "user", "content": "a b"}]), "chat", CFG)
    assert (len(g.tokens), g.max_tokens, g.limited, g.stream) == (3, 20, False, False)
    g = parse_generation(body(prompt="a b", max_completion_tokens=5, stream=True,
                              stream_options={"include_usage": True}), "completion", CFG)  # fmt: skip
    assert (g.max_tokens, g.limited, g.include_usage) == (5, True, True)
    g = parse_generation(body(prompt=["x " * 95]), "completion", CFG)
    assert g.max_tokens == 5  # the default shrinks to fit the context
    g = parse_generation(body(prompt=[[5, 6]], max_tokens=1), "completion", CFG)
    assert g.tokens == ["#5", "#6"]


@pytest.mark.parametrize(
    ("fields", "kind", "status", "param"),
    [
        ({"messages": [{"content": "no role"}]}, "chat", 400, "messages"),
        ({"messages": "hi"}, "chat", 400, "messages"),
        ({"prompt": ["a", "b"]}, "completion", 400, "prompt"),
        ({"prompt": "x", "n": 2}, "completion", 400, "n"),
        ({"prompt": "x", "max_tokens": 0}, "completion", 400, "max_tokens"),
        ({"prompt": "x", "max_tokens": True}, "completion", 400, "max_tokens"),
        ({"prompt": "x", "stream": "yes"}, "completion", 400, "stream"),
        ({"prompt": "x " * 90, "max_tokens": 20}, "completion", 400, "prompt"),
        ({"prompt": "x", "model": 3}, "completion", 400, "model"),
    ],
)
def test_invalid_generation_bodies(
    fields: dict[str, object], kind: str, status: int, param: str
) -> None:
    with pytest.raises(ApiError) as err:
        parse_generation(body(**fields), kind, CFG)  # type: ignore[arg-type]
    assert (err.value.status, err.value.param) == (status, param)
    shape = orjson.loads(err.value.body())["error"]
    assert set(shape) == {"message", "type", "param", "code"}


def test_non_object_body_and_missing_model() -> None:
    with pytest.raises(ApiError, match="JSON object"):
        parse_generation(b"[1]", "chat", CFG)
    with pytest.raises(ApiError, match="model parameter"):
        parse_generation(b"{}", "chat", CFG)


def test_embedding_inputs() -> None:
    job = parse_embeddings(body(input=[1, 2, 3]), CFG)
    assert job.inputs == [["#1", "#2", "#3"]] and job.dimensions == 384
    job = parse_embeddings(body(input=["a", "b c"], encoding_format="base64", dimensions=16), CFG)
    assert len(job.inputs) == 2 and job.base64 and job.dimensions == 16
    bad_inputs: list[dict[str, object]] = [
        {"input": []},
        {"input": [{"x": 1}]},
        {},
        {"input": "a", "encoding_format": "hex"},
    ]
    for bad in bad_inputs:
        with pytest.raises(ApiError):
            parse_embeddings(body(**bad), CFG)
    with pytest.raises(ApiError, match="context length"):
        parse_embeddings(body(input="x " * 101), CFG)


def test_faults_update_and_validation() -> None:
    f = Faults().updated({"error_rate": 0.5, "stall_after_tokens": 3})
    assert (f.error_rate, f.stall_after_tokens) == (0.5, 3)
    assert f.updated({"stall_after_tokens": None}).stall_after_tokens is None
    assert f.updated({"reset": True, "down": True}) == Faults(down=True)
    bad_faults: list[dict[str, object]] = [
        {"error_rate": 1.5},
        {"slowness": 0},
        {"down": 1},
        {"error_rate": True},
        {"stall_after_tokens": 1.5},
        {"stall_after_tokens": -1},
        {"x": 1},
    ]
    for bad in bad_faults:
        with pytest.raises(FaultsError):
            Faults().updated(bad)


def test_replicas_route_a_repeated_prefix_to_the_replica_holding_it() -> None:
    profile = EngineProfile(prefill_tokens_per_s=20_000, decode_tokens_per_s=1000)
    tokens = [f"t{i}" for i in range(2000)]
    hashes = tuple(block_hashes(tokens, 16))

    async def go() -> tuple[int, int, int]:
        runner = EngineRunner(profile, replicas=2)
        runner.start()
        try:

            async def run(rid: str, h: tuple[int, ...]) -> Done:
                queue = runner.submit(EngineRequest(rid, len(tokens), 2, h))
                while True:
                    item = await queue.get()
                    assert item is not None
                    if isinstance(item[0], Done):
                        return item[0]

            await run("warm", hashes)  # replica 0 now holds the prefix
            repeat, _ = await asyncio.gather(run("repeat", hashes), run("other", ()))
            loads = [core.load() for core in runner.cores]
            return (
                repeat.usage.cached_tokens,
                loads[0].prefix_cache_hits,
                loads[1].prefix_cache_queries,
            )
        finally:
            await runner.stop()

    cached, hits0, queries1 = asyncio.run(go())
    assert cached == 1984 and hits0 == 1984
    assert queries1 == 2000  # the uncached prompt went to the idle replica
