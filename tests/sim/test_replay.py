"""The virtual-time replay: the router and the engine model, event for event as the gateway."""

from __future__ import annotations

import pytest

from isthmus.engines.timing import EngineCore
from isthmus.fabric.catalog import Fabric
from isthmus.sim.events import EventLoop
from isthmus.sim.replay import Outage, Replay, TraceRequest, chained_block_hashes


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
    profile = replay.engines[replay.view.fleet.position["par-llama"]][0].core.profile
    core = EngineCore(profile)
    hashes = chained_block_hashes(request.hash_ids, request.prompt_tokens, profile.block_tokens)
    engine_ttft = core.predict_ttft_s(2048, hashes, 0.0)
    rtt_s = replay.view.network.rtt_ms("onprem-paris", "onprem-paris") / 1000.0
    assert result.ttft_s == pytest.approx(engine_ttft + rtt_s, rel=0.02)


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


def test_outage_fails_over(mini: Fabric) -> None:
    requests = [
        TraceRequest(arrival_s=k * 0.1, prompt_tokens=256, output_tokens=20, hash_ids=(k, k + 1))
        for k in range(60)
    ]
    replay = Replay(
        mini,
        gateway_site="onprem-paris",
        model="llama-3.1-8b",
        data_class="public",
        outages=(Outage(start_s=2.0, site="onprem-paris", duration_s=2.0),),
    )
    results = replay.run(requests)
    # streams cut mid-way fail (as at the gateway: no transparent retry once tokens flowed)
    failed = [r for r in results if r.status != "ok"]
    assert failed and all(r.status == "failed" and r.ttft_s is not None for r in failed)
    assert all(r.status == "ok" for r in results if r.arrival_s >= 2.0)
    # after detection new requests go elsewhere; before it they fail over after a connect error
    assert all(r.site != "onprem-paris" for r in results if 3.2 <= r.arrival_s < 4.0)
    assert any(r.attempts > 1 and r.status == "ok" for r in results)
    # after recovery, Paris serves again
    assert any(r.site == "onprem-paris" for r in results if r.arrival_s > 5.5)


def test_naive_policies_count_violations(mini: Fabric) -> None:
    requests = [
        TraceRequest(arrival_s=k * 0.1, prompt_tokens=256, output_tokens=20, hash_ids=(k, k + 1))
        for k in range(30)
    ]
    naive = Replay(
        mini,
        policy="round_robin",
        gateway_site="onprem-paris",
        model="llama-3.1-8b",
        data_class="pii",
        respect_sovereignty=False,
    )
    blind = naive.run(requests)
    assert sum(1 for r in blind if r.violation) >= 15  # two of three endpoints are refused for pii
    safe = Replay(mini, gateway_site="onprem-paris", model="llama-3.1-8b", data_class="pii").run(
        requests
    )
    assert not any(r.violation for r in safe) and all(r.site == "onprem-paris" for r in safe)


def test_decode_runs_replay_as_stepping_one_by_one(mini: Fabric) -> None:
    requests = [
        TraceRequest(
            arrival_s=k * 0.037,
            prompt_tokens=300 + 97 * (k % 7),
            output_tokens=5 + 13 * (k % 5),
            hash_ids=(1, 2, 100 + k % 3) if k % 2 else (),
        )
        for k in range(80)
    ]
    outage = (Outage(start_s=1.0, site="onprem-paris", duration_s=0.5),)
    options = dict(gateway_site="onprem-paris", model="llama-3.1-8b", data_class="public")
    stepped = Replay(mini, run_steps=1, outages=outage, **options).run(requests)  # type: ignore[arg-type]
    folded_replay = Replay(mini, outages=outage, **options)  # type: ignore[arg-type]
    folded = folded_replay.run(requests)
    assert [(r.status, r.endpoint, r.cached_tokens, r.attempts) for r in folded] == [
        (r.status, r.endpoint, r.cached_tokens, r.attempts) for r in stepped
    ]
    for a, b in zip(folded, stepped, strict=True):
        assert a.ttft_s == pytest.approx(b.ttft_s, abs=1e-9)
        assert a.e2e_s == pytest.approx(b.e2e_s, abs=1e-9)
    assert any(r.status == "failed" for r in folded)  # the outage aborted running requests


def test_chained_hashes_match_exactly_the_shared_trace_prefix() -> None:
    a = chained_block_hashes((1, 2, 3), 1400, 16)
    b = chained_block_hashes((1, 2, 4), 1400, 16)
    assert len(a) == 1400 // 16 and len(set(a)) == len(a)
    assert a[:64] == b[:64] and not set(a[64:]) & set(b)  # two 512-token blocks shared
    assert chained_block_hashes((2, 1, 3), 1400, 16)[0] != a[0]
    # the same prefix at another block size: the same split into trace blocks
    assert len(chained_block_hashes((1, 2, 3), 1400, 64)) == 21
    assert chained_block_hashes((), 1400, 16) == ()
    # blocks past the trace's ids continue its chain (a prompt longer than its ids)
    long = chained_block_hashes((1,), 2048, 512)
    assert len(long) == 4 and len(set(long)) == 4


def test_a_fed_stream_runs_as_if_scheduled_first() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    loop.at(1.0, lambda: seen.append((loop.now, "heap")))
    loop.feed((t, seen.append, ((t, name),)) for t, name in ((0.5, "a"), (1.0, "b"), (2.0, "c")))
    loop.run()
    assert seen == [(0.5, "a"), (1.0, "b"), (1.0, "heap"), (2.0, "c")]
    assert not loop.feeding and len(loop) == 0


def test_an_unsorted_stream_is_refused() -> None:
    loop = EventLoop()
    loop.feed((t, lambda: None, ()) for t in (2.0, 1.0))
    with pytest.raises(ValueError, match="sorted by time"):
        loop.run()


def test_a_lazy_trace_replays_as_the_list(mini: Fabric) -> None:
    requests = [
        TraceRequest(arrival_s=k * 0.07, prompt_tokens=600, output_tokens=5, hash_ids=(1, k % 3))
        for k in range(30)
    ]
    options = {"gateway_site": "onprem-paris", "model": "llama-3.1-8b", "data_class": "public"}
    listed = Replay(mini, **options).run(list(reversed(requests)))  # type: ignore[arg-type]
    lazy = Replay(mini, **options).run(iter(requests))  # type: ignore[arg-type]
    assert [r.index for r in listed] == list(range(29, -1, -1))
    strip = [(r.arrival_s, r.endpoint, r.ttft_s, r.e2e_s, r.cached_tokens) for r in listed]
    assert strip == [(r.arrival_s, r.endpoint, r.ttft_s, r.e2e_s, r.cached_tokens) for r in lazy]


def _paris(mini: Fabric, *outages: Outage) -> Replay:
    return Replay(
        mini, gateway_site="onprem-paris", model="llama-3.1-8b", data_class="public",
        outages=outages,
    )  # fmt: skip


def test_a_request_on_its_way_when_the_site_fails_is_retried_once(mini: Fabric) -> None:
    """The outage starts while the request travels to the engine: one failure, one retry, ok;
    and no load is left behind on the endpoint it never reached."""
    request = TraceRequest(arrival_s=0.0, prompt_tokens=2000, output_tokens=4)
    replay = _paris(mini, Outage(start_s=0.0001, site="onprem-paris", duration_s=100.0))
    (result,) = replay.run([request])
    assert result.status == "ok" and result.attempts == 2 and result.site != "onprem-paris"
    assert replay.view.fleet.in_flight.sum() == 0


def test_overlapping_outages_keep_the_site_down_until_the_last_ends(mini: Fabric) -> None:
    requests = [
        TraceRequest(arrival_s=k * 0.5, prompt_tokens=256, output_tokens=4, hash_ids=(k,))
        for k in range(40)
    ]
    replay = _paris(
        mini,
        Outage(start_s=2.0, site="onprem-paris", duration_s=3.0),
        Outage(start_s=4.0, site="onprem-paris", duration_s=100.0),
    )
    results = replay.run(requests)
    assert not any(r.site == "onprem-paris" for r in results if r.arrival_s >= 6.5)


def test_a_fault_after_the_last_request_does_not_stretch_the_run(mini: Fabric) -> None:
    requests = [TraceRequest(arrival_s=k * 0.5, prompt_tokens=256, output_tokens=4) for k in range(4)]
    plain = _paris(mini)
    plain.run(requests)
    late = _paris(mini, Outage(start_s=5000.0, site="aws-us-east-1", duration_s=1.0))
    late.run(requests)
    assert late.end_s == plain.end_s < 10.0
