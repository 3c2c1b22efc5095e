"""``route`` on a few candidates (plain floats) decides exactly as the array path does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import FabricSpec, Objective
from isthmus.fabric.synth import synth_fabric
from isthmus.routing import RouteRequest, build_view, route
from isthmus.routing.router import _FULL_SORT, SCALAR_CANDIDATES, _route_arrays, _route_scalar

WINDOWS = {"llama-3.1-8b": 131_072, "llama-3.3-70b": 131_072, "qwen2.5-7b": 32_768}


def _with_windows(spec: FabricSpec) -> Fabric:
    """The synthetic models with the context windows of their namesakes (the closed one keeps
    the default 8,192), so prompts up to 200,000 tokens meet every window and KV-cache limit."""
    models = tuple(
        m.model_copy(update={"context_tokens": WINDOWS.get(m.name, m.context_tokens)})
        for m in spec.models
    )
    return Fabric(spec.model_copy(update={"models": models}))


FABRIC = _with_windows(synth_fabric(10, seed=3, endpoints_per_site=2))  # 6 endpoints per model
GATEWAY = next(iter(FABRIC.sites))


def _objectives(slos: list[float], min_ttft_weight: float) -> st.SearchStrategy[Objective]:
    return st.one_of(
        st.builds(Objective, kind=st.just("fastest")),
        st.builds(
            Objective, kind=st.just("cheapest_within_slo"), ttft_slo_ms=st.sampled_from(slos)
        ),
        st.builds(
            Objective,
            kind=st.just("weighted"),
            ttft_weight=st.floats(min_ttft_weight, 2),
            cost_weight=st.floats(0, 2),
            quality_weight=st.floats(0, 2),
        ),
    )


def _chain(path: tuple[int, ...]) -> tuple[int, ...]:
    """Chained as the gateway hashes prompts (block k's hash names blocks 0..k), so prompts
    with the same first blocks share their heads."""
    return tuple(hash(path[: k + 1]) for k in range(len(path)))


_prefix = st.lists(st.integers(1, 3), min_size=0, max_size=12).map(lambda xs: _chain(tuple(xs)))


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 19), st.integers(0, 9000), _prefix, st.floats(0, 5)), max_size=12
    ),
    health=st.lists(st.booleans(), min_size=20, max_size=20),
    bias=st.lists(st.floats(-50, 200), min_size=20, max_size=20),
    objective=_objectives([1.0, 50.0, 250.0, 5000.0], min_ttft_weight=0.0),
    prompt=st.integers(1, 200_000),
    output=st.integers(1, 4096),
    prefix=_prefix,
    exclude=st.sets(st.integers(0, 19), max_size=3),
    deadline=st.sampled_from([5.0, 300.0, 60_000.0]),
    now=st.floats(0, 10),
    model=st.sampled_from(sorted(FABRIC.models)),
)
def test_scalar_and_array_paths_agree(
    history, health, bias, objective, prompt, output, prefix, exclude, deadline, now, model
) -> None:  # type: ignore[no-untyped-def]
    view = build_view(FABRIC, index_block_tokens=16)
    fleet = view.fleet
    n = len(fleet.infos)
    for i, tokens, hashes, at in history:
        fleet.dispatched(i % n, tokens, hashes, at)
    for i in range(n):
        fleet.set_health(i, health[i % 20])
        fleet.set_load(i, bias_ms=bias[i % 20])
    request = RouteRequest(
        model=model,
        data_class="public",
        gateway_site=GATEWAY,
        prompt_tokens=prompt,
        max_output_tokens=output,
        block_hashes=prefix,
        objective=objective,
        exclude=frozenset(fleet.infos[i % n].name for i in exclude),
        deadline_ms=deadline,
        now_s=now,
    )
    compliant = view.compliant(GATEWAY, "public", model, ("*",), "chat")
    assert len(compliant.indices) <= SCALAR_CANDIDATES  # the scalar path is what is tested
    assert route(request, view) == _route_arrays(request, view)


LARGE = _with_windows(synth_fabric(60, seed=3, endpoints_per_site=2))  # 106 serve "chat"
LARGE_GATEWAY = next(iter(LARGE.sites))
_SYSTEM = (7, 7, 7, 7)  # a system prompt most endpoints hold: a run unpacked by numpy


_conversation = st.tuples(st.booleans(), st.lists(st.integers(1, 3), max_size=10)).map(
    lambda p: _chain((_SYSTEM if p[0] else ()) + tuple(p[1]))
)


@settings(max_examples=100, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 105), st.integers(0, 9000), _conversation), max_size=30
    ),
    holders=st.integers(0, 106),
    unhealthy=st.sets(st.integers(0, 105), max_size=40),
    # a TTFT weight keeps the keys of identical replicas apart (no ties)
    objective=_objectives([1.0, 150.0, 400.0, 5000.0], min_ttft_weight=0.1),
    prompt=st.integers(1, 200_000),
    output=st.integers(1, 4096),
    prefix=_conversation,
    exclude=st.sets(st.integers(0, 105), max_size=5),
    deadline=st.sampled_from([5.0, 300.0, 60_000.0]),
    now=st.floats(0, 10),
)
def test_array_path_on_many_candidates_decides_as_plain_floats(
    history, holders, unhealthy, objective, prompt, output, prefix, exclude, deadline, now
) -> None:  # type: ignore[no-untyped-def]
    # Past _FULL_SORT candidates the array path partitions instead of sorting, predicts through
    # the prefix index's levels and prices only its candidates; the plain-float path, run over
    # all 106 here, must still decide the same. Distinct learned biases keep every prediction
    # apart, so the two are not left to order ties each their own way.
    view = build_view(LARGE, index_block_tokens=16)
    fleet = view.fleet
    n = len(fleet.infos)
    for i in range(holders):
        fleet.dispatched(i, 0, _chain(_SYSTEM), 0.0)
    for i, tokens, hashes in history:
        fleet.dispatched(i, tokens, hashes, 0.5)
    for i in range(n):
        fleet.set_health(i, i not in unhealthy)
        fleet.set_load(i, bias_ms=i * 0.37)
    request = RouteRequest(
        model="chat",
        data_class="public",
        gateway_site=LARGE_GATEWAY,
        prompt_tokens=prompt,
        max_output_tokens=output,
        block_hashes=prefix,
        objective=objective,
        exclude=frozenset(fleet.infos[i].name for i in exclude),
        deadline_ms=deadline,
        now_s=now,
    )
    compliant = view.compliant(LARGE_GATEWAY, "public", "chat", ("*",), "chat")
    assert len(compliant.indices) > _FULL_SORT  # the partitioning path is what is tested
    plain = _route_scalar(request, view, compliant)
    arrays = _route_arrays(request, view)
    if plain is None:
        assert arrays.status == "unavailable"
    else:
        assert arrays == plain
