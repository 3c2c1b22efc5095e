"""The virtual-time replay: the router and the engine model, event for event as the gateway."""

from __future__ import annotations

import pytest

from isthmus.engines.timing import EngineCore, EngineRequest
from isthmus.fabric.catalog import Fabric
from isthmus.sim.events import EventLoop
from isthmus.sim.replay import Replay, TraceRequest, chained_block_hashes


def test_event_loop_runs_in_time_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    loop.at(2.0, lambda: seen.append((loop.now, "b")))
    loop.at(1.0, lambda: loop.after(0.5, lambda: seen.append((loop.now, "c"))))
    loop.at(2.0, lambda: seen.append((loop.now, "d")))
    loop.run()
    assert seen == [(1.5, "c"), (2.0, "b"), (2.0, "d")]


def test_isolated_request_ttft_is_rtt_plus_engine_model(mini: Fabric) -> None:
    replay = Replay(mini, gateway_site="onprem-paris", model="llama-3.1-8b", data_class="public")
    request = TraceRequest(
        arrival_s=1.0, prompt_tokens=2048, output_tokens=4, hash_ids=(1, 2, 3, 4)
    )
    (result,) = replay.run([request])
    assert result.status == "ok" and result.endpoint == "par-llama"
    core = EngineCore(replay.engines[replay.view.fleet.position["par-llama"]].core.profile)
    hashes = chained_block_hashes(
        request.hash_ids, request.prompt_tokens, core.profile.block_tokens
    )
    engine_ttft = core.predict_ttft_s(2048, hashes, 0.0)
    rtt_s = replay.view.network.rtt_ms("onprem-paris", "onprem-paris") / 1000.0
    assert result.ttft_s == pytest.approx(engine_ttft + rtt_s, rel=0.02)
    core.submit(EngineRequest("x", 2048, 4, hashes), 0.0)  # the same request, sanity of the API


def test_shared_prefixes_hit_the_cache_and_everything_finishes(mini: Fabric) -> None:
    replay = Replay(mini, gateway_site="onprem-paris", model="llama-3.1-8b", data_class="public")
    requests = [
        TraceRequest(
            arrival_s=k * 0.05,
            prompt_tokens=4096,
            output_tokens=8,
            hash_ids=(7, 8, 9, 10 + k, 100 + k, 200 + k, 300 + k, 400 + k),
        )
        for k in range(40)
    ]
    results = replay.run(requests)
    assert all(r.status == "ok" for r in results)
    # blocks 7, 8, 9 (1,536 tokens) are shared by every request after the first
    assert sum(r.cached_tokens >= 1536 for r in results[1:]) >= 35
    assert replay.view.fleet.in_flight.sum() == 0


def test_refusals_are_recorded_not_run(mini: Fabric) -> None:
    replay = Replay(mini, gateway_site="aws-us-east-1", model="llama-3.1-8b", data_class="pii")
    (result,) = replay.run([TraceRequest(arrival_s=0.0, prompt_tokens=100, output_tokens=2)])
    assert result.status == "refused" and "gdpr-pii" in result.reason
