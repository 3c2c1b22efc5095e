"""Properties of the timing model over random workloads (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.engines.timing import (
    Done,
    EngineCore,
    EngineProfile,
    EngineRequest,
    FirstToken,
    RequestTooLarge,
    Step,
    Token,
)
from isthmus.engines.tokens import block_hashes
from isthmus.engines.virtual import TimedEvent, run_virtual


@dataclass(frozen=True)
class Job:
    arrival_s: float
    tokens: tuple[str, ...]
    max_tokens: int


@st.composite
def profiles(draw: st.DrawFn) -> EngineProfile:
    bt = draw(st.sampled_from([1, 4, 16]))
    batch = draw(st.integers(1, 8))
    return EngineProfile(
        prefill_tokens_per_s=draw(st.sampled_from([1_000.0, 10_000.0])),
        decode_tokens_per_s=draw(st.sampled_from([20.0, 100.0])),
        max_batch_size=batch,
        kv_cache_tokens=draw(st.integers(4, 80)) * bt,
        block_tokens=bt,
        max_batched_tokens=draw(st.integers(batch, 128)),
    )


@st.composite
def jobs(draw: st.DrawFn) -> list[Job]:
    # a few prompt families: requests of a family share a prefix of random length
    families = [[f"f{f}t{i}" for i in range(300)] for f in range(3)]
    out = []
    for i in range(draw(st.integers(1, 12))):
        family = families[draw(st.integers(0, 2))]
        shared = draw(st.integers(0, 200))
        tail = draw(st.integers(0 if shared else 1, 40))
        tokens = (*family[:shared], *(f"r{i}u{j}" for j in range(tail)))
        out.append(Job(draw(st.floats(0, 2, allow_nan=False)), tokens, draw(st.integers(0, 30))))
    return out


def _lcp(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@settings(max_examples=150, deadline=None)
@given(profiles(), jobs())
def test_random_workloads_keep_invariants_and_finish(
    profile: EngineProfile, work: list[Job]
) -> None:
    core = EngineCore(profile)
    bt = profile.block_tokens
    arrivals: list[tuple[float, EngineRequest]] = []
    accepted: dict[str, Job] = {}
    for i, job in enumerate(work):
        request = EngineRequest(
            f"q{i}", len(job.tokens), job.max_tokens, tuple(block_hashes(job.tokens, bt))
        )
        if len(job.tokens) + job.max_tokens > profile.capacity_tokens:
            probe = EngineCore(profile)
            try:
                probe.submit(request, 0.0)
            except RequestTooLarge:
                continue
            raise AssertionError("an oversized request was accepted")
        arrivals.append((job.arrival_s, request))
        accepted[request.request_id] = job

    def check(step: Step) -> None:
        core.pool.check()  # refcounts >= 0, states consistent
        assert core.pool.num_used <= core.pool.num_blocks
        assert core.num_running <= profile.max_batch_size
        assert step.prefill_tokens + len(step.decode) <= profile.max_batched_tokens
        assert step.duration_s > 0

    events = run_virtual(core, arrivals, on_step=check)

    # liveness: everything accepted finished, with exactly the tokens asked for
    by_request: dict[str, list[TimedEvent]] = {}
    for e in events:
        by_request.setdefault(e.event.request_id, []).append(e)
    assert set(accepted) <= set(by_request)
    for rid, job in accepted.items():
        evs = [e.event for e in by_request[rid] if type(e.event).__name__ != "Preempted"]
        assert isinstance(evs[-1], Done)
        assert evs[-1].usage.completion_tokens == job.max_tokens
        tokens = [e for e in evs if isinstance(e, FirstToken | Token)]
        assert len(tokens) == job.max_tokens
        if tokens:
            assert isinstance(tokens[0], FirstToken)
            assert [t.index for t in tokens[1:] if isinstance(t, Token)] == list(
                range(1, job.max_tokens)
            )
    times = [e.time_s for e in events]
    assert times == sorted(times)
    assert core.idle and core.pool.num_used == 0

    # cache reuse never exceeds what an earlier request shared with this one
    order = sorted(arrivals, key=lambda a: a[0])
    for pos, (_, request) in enumerate(order):
        done = next(e.event for e in by_request[request.request_id] if isinstance(e.event, Done))
        cached = done.usage.cached_tokens
        job = accepted[request.request_id]
        assert cached % bt == 0 and cached <= len(job.tokens) - 1
        shared = max(
            (_lcp(job.tokens, accepted[r.request_id].tokens) for _, r in order[:pos]), default=0
        )
        assert cached <= shared


@settings(max_examples=60, deadline=None)
@given(profiles(), st.integers(1, 150), st.integers(1, 6))
def test_ttft_grows_with_queue_length(
    profile: EngineProfile, prompt_len: int, max_queue: int
) -> None:
    prompt_len = min(prompt_len, profile.capacity_tokens - 1)

    def ttft(queued: int) -> tuple[float, float]:
        core = EngineCore(profile)
        arrivals = [(0.0, EngineRequest(f"q{i}", prompt_len, 1)) for i in range(queued)]
        arrivals.append((0.0, EngineRequest("target", prompt_len, 1)))
        for _, r in arrivals[:-1]:
            core.submit(r, 0.0)
        predicted = core.predict_ttft_s(prompt_len, (), 0.0)
        events = run_virtual(core, arrivals[-1:])
        actual = next(
            e.time_s
            for e in events
            if isinstance(e.event, FirstToken) and e.event.request_id == "target"
        )
        return actual, predicted

    results = [ttft(n) for n in range(max_queue + 1)]
    actual = [a for a, _ in results]
    predicted = [p for _, p in results]
    assert actual == sorted(actual) and predicted == sorted(predicted)
    assert abs(predicted[0] - actual[0]) < 1e-9  # exact on an idle engine
    if max_queue * prompt_len >= profile.max_batched_tokens or max_queue >= profile.max_batch_size:
        # the queue no longer fits the target's first step
        assert actual[-1] > actual[0] and predicted[-1] > predicted[0]


@settings(max_examples=80, deadline=None)
@given(profiles(), st.integers(2, 300), st.integers(1, 40), st.integers(1, 5))
def test_cached_prefix_gives_an_earlier_first_token(
    profile: EngineProfile, shared: int, tail: int, out: int
) -> None:
    bt = profile.block_tokens
    if shared + tail + out > profile.capacity_tokens:
        return
    base = [f"s{i}" for i in range(shared)]
    warmup = [*base, *(f"w{i}" for i in range(tail))]
    target = [*base, *(f"t{i}" for i in range(tail))]

    def first_token_s(core: EngineCore, start: float) -> float:
        req = EngineRequest("t", len(target), out, tuple(block_hashes(target, bt)))
        events = run_virtual(core, [(start, req)])
        return next(e.event.ttft_s for e in events if isinstance(e.event, FirstToken))

    cold = first_token_s(EngineCore(profile), 0.0)
    warm_core = EngineCore(profile)
    run_virtual(
        warm_core, [(0.0, EngineRequest("w", len(warmup), out, tuple(block_hashes(warmup, bt))))]
    )
    warm = first_token_s(warm_core, 100.0)
    assert warm <= cold + 1e-9
    full, last = divmod(len(target), profile.max_batched_tokens)
    chunks = [profile.max_batched_tokens] * full + ([last] if last else [])
    if shared > bt and all(
        c / profile.prefill_tokens_per_s > profile.weights_read_s for c in chunks
    ):
        assert warm < cold  # a compute-bound cold prefill is shortened by the hit


def _milestones(events: list[TimedEvent]) -> list[tuple[str, str, float, int | None]]:
    """What a client sees of a run but the token stream: first tokens, completions, preemptions."""
    out = []
    for e in events:
        if isinstance(e.event, Token):
            continue
        cached = e.event.cached_tokens if isinstance(e.event, FirstToken) else None
        if isinstance(e.event, Done):
            cached = e.event.usage.cached_tokens
        out.append((type(e.event).__name__, e.event.request_id, e.time_s, cached))
    return sorted(out, key=lambda m: (m[0], m[1]))


@settings(max_examples=150, deadline=None)
@given(profiles(), jobs())
def test_runs_of_passes_time_requests_as_stepping_one_by_one(
    profile: EngineProfile, work: list[Job]
) -> None:
    bt = profile.block_tokens
    arrivals = [
        (
            job.arrival_s,
            EngineRequest(
                f"q{i}", len(job.tokens), job.max_tokens, tuple(block_hashes(job.tokens, bt))
            ),
        )
        for i, job in enumerate(work)
        if len(job.tokens) + job.max_tokens <= profile.capacity_tokens
    ]
    single, folded = EngineCore(profile), EngineCore(profile)
    runs: list[Step] = []

    def check(step: Step) -> None:
        folded.pool.check()
        runs.extend([step] if step.steps > 1 else [])

    one_by_one = run_virtual(single, arrivals)
    in_runs = run_virtual(folded, arrivals, run_steps=1_000_000, on_step=check)
    folded_seen, single_seen = _milestones(in_runs), _milestones(one_by_one)
    assert [(k, r, c) for k, r, _, c in folded_seen] == [(k, r, c) for k, r, _, c in single_seen]
    for (_, _, t_folded, _), (_, _, t_single, _) in zip(folded_seen, single_seen, strict=True):
        assert abs(t_folded - t_single) < 1e-9  # rounding of a closed form, nothing more
    assert folded.preemptions == single.preemptions
    assert folded.prefix_cache_hits == single.prefix_cache_hits
    assert folded.idle and folded.pool.num_used == 0
    assert all(step.duration_s > 0 for step in runs)


def test_a_run_is_cut_by_an_arrival_and_advanced_to_the_present() -> None:
    profile = EngineProfile(prefill_tokens_per_s=10_000, decode_tokens_per_s=100,
                            kv_cache_tokens=4096, max_batch_size=4)  # fmt: skip
    core = EngineCore(profile)
    core.submit(EngineRequest("a", 32, 50), 0.0)
    first = core.plan_step(0.0, max_steps=1000)
    assert first is not None and first.steps == 1  # the prefill
    core.finish_step(first, first.ended_s)
    run = core.plan_step(first.ended_s, max_steps=1000)
    assert run is not None and run.steps == 49 and run.decode == ("a",)
    middle = run.started_s + run.offset_s(10) + 1e-6  # just after pass 10 started
    tokens = core.advance(middle)
    assert tokens == [Token("a", 10)]  # passes 0..9 are over: tokens 1..10
    cut = core.truncate(middle)
    assert cut.steps == 1 and cut.ended_s > middle  # pass 10 completes
    events = core.finish_step(cut, cut.ended_s)
    assert events == [Token("a", 11)]
    expected = first.ended_s + sum(
        profile.step_duration_s(0, 1, 32 + j) for j in range(11)
    )  # one pass per token at a growing context
    assert abs(cut.ended_s - expected) < 1e-9
