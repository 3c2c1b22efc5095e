from __future__ import annotations

import pytest

from isthmus.engines.timing import (
    DEFAULT_PROFILE,
    Done,
    EngineCore,
    EngineProfile,
    EngineRequest,
    FirstToken,
    Preempted,
    RequestTooLarge,
    Step,
    Token,
)
from isthmus.engines.tokens import block_hashes
from isthmus.engines.virtual import TimedEvent, run_virtual
from isthmus.fabric.schema import PerfProfile

H100_8B = EngineProfile(
    prefill_tokens_per_s=12_000, decode_tokens_per_s=120, kv_cache_tokens=400_000
)


def prompt(name: str, n: int, bt: int = 16) -> tuple[int, tuple[int, ...]]:
    tokens = [f"{name}{i}" for i in range(n)]
    return n, tuple(block_hashes(tokens, bt))


def first_token_time(events: list[TimedEvent], rid: str) -> float:
    return next(
        e.time_s for e in events if isinstance(e.event, FirstToken) and e.event.request_id == rid
    )


# -- the step-time formula --------------------------------------------------------------------
def test_batch_one_decode_takes_the_profiled_time() -> None:
    assert H100_8B.step_duration_s(0, 1, 0) == pytest.approx(1 / 120)


def test_long_prefill_runs_at_the_profiled_rate() -> None:
    assert H100_8B.step_duration_s(2048) == pytest.approx(0.001 + 2048 / 12_000)


def test_short_prefill_costs_at_least_one_weight_read() -> None:
    assert H100_8B.step_duration_s(1) == pytest.approx(1 / 120)


def test_decode_slows_with_batch_and_context() -> None:
    p = H100_8B
    w = p.weights_read_s
    assert p.step_duration_s(0, 64, 0) == pytest.approx(1 / 120 + w * 0.01 * 63)
    full = p.step_duration_s(0, 1, p.kv_cache_tokens)
    assert full == pytest.approx(1 / 120 + w * 1.0)  # a full cache costs one more weight read
    assert p.step_duration_s(0, 2, 0) > p.step_duration_s(0, 1, 0)
    assert p.step_duration_s(0, 1, 1000) > p.step_duration_s(0, 1, 0)


def test_overhead_is_capped_for_fast_decoders() -> None:
    p = EngineProfile(prefill_tokens_per_s=1e6, decode_tokens_per_s=2000)
    assert p.overhead_s == pytest.approx(0.25 / 2000)
    assert p.step_duration_s(0, 1) == pytest.approx(1 / 2000)


def test_empty_step_is_free_and_invalid_profiles_are_refused() -> None:
    assert H100_8B.step_duration_s(0, 0) == 0.0
    with pytest.raises(ValueError, match="max_batched_tokens"):
        EngineProfile(prefill_tokens_per_s=1, decode_tokens_per_s=1, max_batch_size=4000)
    with pytest.raises(ValueError, match="prefill_tokens_per_s"):
        EngineProfile(prefill_tokens_per_s=0, decode_tokens_per_s=1)


def test_from_perf() -> None:
    perf = PerfProfile(accelerator="H100", prefill_tokens_per_s=12_000, decode_tokens_per_s=120,
                       max_batch_size=256, kv_cache_tokens=400_000)  # fmt: skip
    p = EngineProfile.from_perf(perf)
    assert (p.prefill_tokens_per_s, p.decode_tokens_per_s, p.kv_cache_tokens) == (
        12_000,
        120,
        400_000,
    )
    assert p.max_batch_size == 256 and p.max_batched_tokens == 2048
    assert EngineProfile.from_perf(perf, 65_536).kv_cache_tokens == 65_536
    bare = PerfProfile(accelerator="L4", prefill_tokens_per_s=3000, decode_tokens_per_s=30)
    assert EngineProfile.from_perf(bare).kv_cache_tokens == 64 * 4096
    emb = PerfProfile(accelerator="L4", prefill_tokens_per_s=21_000, decode_tokens_per_s=1)
    pe = EngineProfile.from_perf(emb, kind="embedding")
    assert pe.decode_tokens_per_s == pytest.approx(210)
    assert pe.step_duration_s(10) < 0.01  # the placeholder decode rate is not a 1 s floor
    assert EngineProfile.from_perf(perf, block_tokens=32).block_tokens == 32


# -- the engine -------------------------------------------------------------------------------
def test_isolated_request_timeline() -> None:
    core = EngineCore(H100_8B)
    n, hashes = prompt("a", 1000)
    events = run_virtual(core, [(0.0, EngineRequest("a", n, 3, hashes))])
    kinds = [type(e.event) for e in events]
    assert kinds == [FirstToken, Token, Token, Done]
    ttft = H100_8B.step_duration_s(1000)
    assert events[0].time_s == pytest.approx(ttft)
    first = events[0].event
    assert isinstance(first, FirstToken) and first.cached_tokens == 0
    assert first.ttft_s == pytest.approx(ttft)
    done = events[-1].event
    assert isinstance(done, Done)
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.cached_tokens) == (
        1000,
        3,
        0,
    )
    assert core.idle and core.kv_usage() == 0.0


def test_long_prompt_is_chunked() -> None:
    core = EngineCore(H100_8B)
    steps: list[Step] = []
    run_virtual(core, [(0.0, EngineRequest("a", 5000, 1))], on_step=steps.append)
    assert [s.prefill_tokens for s in steps] == [2048, 2048, 904]


def test_repeated_prompt_reuses_the_cache() -> None:
    core = EngineCore(H100_8B)
    n, hashes = prompt("a", 1000)
    events = run_virtual(
        core, [(0.0, EngineRequest("a", n, 2, hashes)), (5.0, EngineRequest("b", n, 2, hashes))]
    )
    first_b = next(
        e.event for e in events if isinstance(e.event, FirstToken) and e.event.request_id == "b"
    )
    assert first_b.cached_tokens == 992  # 62 full blocks; the partial block is recomputed
    assert first_b.ttft_s < first_token_time(events, "a")
    assert core.prefix_cache_hits == 992 and core.prefix_cache_queries == 2000


def test_whole_prompt_cached_still_computes_one_token() -> None:
    core = EngineCore(H100_8B)
    n, hashes = prompt("a", 64)
    events = run_virtual(
        core, [(0.0, EngineRequest("a", n, 1, hashes)), (1.0, EngineRequest("b", n, 1, hashes))]
    )
    cached = [e.event.cached_tokens for e in events if isinstance(e.event, FirstToken)]
    assert cached == [0, 48]


def test_decodes_go_first_and_prefill_fills_the_budget() -> None:
    p = EngineProfile(
        prefill_tokens_per_s=10_000,
        decode_tokens_per_s=100,
        max_batched_tokens=64,
        max_batch_size=4,
    )
    core = EngineCore(p)
    core.submit(EngineRequest("old", 10, 5), 0.0)
    step = core.plan_step(0.0)
    assert step is not None and step.prefill == (("old", 10),)
    core.finish_step(step, step.ended_s)
    core.submit(EngineRequest("new", 200, 5), step.ended_s)
    step2 = core.plan_step(step.ended_s)
    assert step2 is not None and step2.decode == ("old",) and step2.prefill == (("new", 63),)


def test_preemption_recomputes_the_youngest_and_everyone_finishes() -> None:
    p = EngineProfile(prefill_tokens_per_s=10_000, decode_tokens_per_s=100, kv_cache_tokens=160,
                      block_tokens=16, max_batch_size=4, max_batched_tokens=64)  # fmt: skip
    core = EngineCore(p)
    reqs = [(0.0, EngineRequest(r, 40, 60)) for r in ("a", "b", "c")]
    events = run_virtual(core, reqs, on_step=lambda s: core.pool.check())
    preempted = [e.event.request_id for e in events if isinstance(e.event, Preempted)]
    assert preempted and "a" not in preempted  # the oldest is never the victim
    done = {
        e.event.request_id: e.event.usage.completion_tokens
        for e in events
        if isinstance(e.event, Done)
    }
    assert done == {"a": 60, "b": 60, "c": 60}
    assert core.preemptions == len(preempted)
    for rid in "abc":
        firsts = [
            e for e in events if isinstance(e.event, FirstToken) and e.event.request_id == rid
        ]
        assert len(firsts) == 1  # the first token is announced once, even if recomputed


def test_requests_that_cannot_fit_are_refused() -> None:
    core = EngineCore(
        EngineProfile(
            prefill_tokens_per_s=1000,
            decode_tokens_per_s=10,
            kv_cache_tokens=100,
            block_tokens=16,
            max_batch_size=4,
            max_batched_tokens=16,
        )
    )
    with pytest.raises(RequestTooLarge):
        core.submit(EngineRequest("a", 90, 10), 0.0)  # 96 tokens of blocks
    with pytest.raises(ValueError):
        core.submit(EngineRequest("b", 0, 1), 0.0)
    core.submit(EngineRequest("c", 80, 16), 0.0)
    with pytest.raises(ValueError, match="already"):
        core.submit(EngineRequest("c", 8, 1), 0.0)


def test_abort_frees_blocks_even_mid_step() -> None:
    core = EngineCore(H100_8B)
    core.submit(EngineRequest("a", 3000, 10), 0.0)
    step = core.plan_step(0.0)
    assert step is not None and core.kv_usage() > 0
    assert core.abort("a") and not core.abort("a")
    assert core.finish_step(step, step.ended_s) == []
    assert core.kv_usage() == 0.0 and core.idle
    core.pool.check()


def test_prefill_only_requests_finish_without_tokens() -> None:
    core = EngineCore(H100_8B)
    events = run_virtual(core, [(0.0, EngineRequest("e", 100, 0))])
    assert [type(e.event) for e in events] == [Done]


def test_step_protocol_is_enforced() -> None:
    core = EngineCore(H100_8B)
    assert core.plan_step(0.0) is None
    core.submit(EngineRequest("a", 10, 1), 0.0)
    step = core.plan_step(0.0)
    assert step is not None
    with pytest.raises(RuntimeError):
        core.plan_step(0.0)
    core.finish_step(step, step.ended_s)
    with pytest.raises(RuntimeError):
        core.finish_step(step, step.ended_s)


# -- observables and prediction ---------------------------------------------------------------
def test_prediction_is_exact_on_an_idle_engine_and_sees_the_cache() -> None:
    core = EngineCore(H100_8B)
    n, hashes = prompt("a", 3000)
    predicted = core.predict_ttft_s(n, hashes, 0.0)
    events = run_virtual(core, [(0.0, EngineRequest("a", n, 1, hashes))])
    assert predicted == pytest.approx(first_token_time(events, "a"))
    warm = core.predict_ttft_s(n, hashes, 10.0)
    assert warm < predicted
    assert core.cached_prefix_tokens(n, hashes) == 2992


def test_load_snapshot_and_queue_observables() -> None:
    core = EngineCore(DEFAULT_PROFILE)
    for i in range(3):
        core.submit(EngineRequest(f"r{i}", 500, 10), 0.0)
    load = core.load()
    assert (load.waiting, load.running, load.queued_prefill_tokens) == (3, 0, 1500)
    t0 = core.predict_ttft_s(100, (), 0.0)
    core.submit(EngineRequest("r3", 500, 10), 0.0)
    assert core.predict_ttft_s(100, (), 0.0) > t0
    step = core.plan_step(0.0)
    assert step is not None
    load = core.load()
    assert load.running == 4 and load.waiting == 0 and load.kv_usage > 0


def test_full_batch_prediction_waits_for_a_slot() -> None:
    p = EngineProfile(
        prefill_tokens_per_s=10_000,
        decode_tokens_per_s=100,
        max_batch_size=2,
        max_batched_tokens=64,
    )
    core = EngineCore(p)
    for rid in ("a", "b"):
        core.submit(EngineRequest(rid, 8, 100), 0.0)
    step = core.plan_step(0.0)
    assert step is not None
    core.finish_step(step, step.ended_s)
    # both running and decoding; a new request must wait ~99 decode steps for a slot
    assert core.predict_ttft_s(8, (), step.ended_s) > 90 * p.step_duration_s(0, 2, 16)


def test_a_core_without_tokens_times_requests_alike() -> None:
    def drive(core: EngineCore) -> list[tuple[float, object]]:
        now, out = 0.0, []
        for k in range(3):
            core.submit(EngineRequest(f"r{k}", 300 + 100 * k, 5), now)
        while (step := core.plan_step(now)) is not None:
            now += step.duration_s
            out += [(now, e) for e in core.finish_step(step, now)]
        return out

    streamed = drive(EngineCore(H100_8B))
    quiet = drive(EngineCore(H100_8B, tokens=False))
    assert any(isinstance(e, Token) for _, e in streamed)
    assert quiet == [(t, e) for t, e in streamed if not isinstance(e, Token)]
