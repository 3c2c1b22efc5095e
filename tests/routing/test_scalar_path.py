"""``route`` on a few candidates (plain floats) decides exactly as the array path does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.fabric.synth import synth_fabric
from isthmus.routing import RouteRequest, build_view, route
from isthmus.routing.router import SCALAR_CANDIDATES, _route_arrays

FABRIC = Fabric(synth_fabric(10, seed=3, endpoints_per_site=2))  # 6 endpoints per model
GATEWAY = next(iter(FABRIC.sites))

_objectives = st.one_of(
    st.builds(Objective, kind=st.just("fastest")),
    st.builds(
        Objective,
        kind=st.just("cheapest_within_slo"),
        ttft_slo_ms=st.sampled_from([1.0, 50.0, 250.0, 5000.0]),
    ),
    st.builds(
        Objective,
        kind=st.just("weighted"),
        ttft_weight=st.floats(0, 2),
        cost_weight=st.floats(0, 2),
        quality_weight=st.floats(0, 2),
    ),
)
_prefix = st.lists(st.integers(1, 6), min_size=0, max_size=12).map(
    lambda xs: tuple(sum(xs[: k + 1]) for k in range(len(xs)))  # chains share their heads
)


@settings(max_examples=300, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 19), st.integers(0, 9000), _prefix, st.floats(0, 5)), max_size=12
    ),
    health=st.lists(st.booleans(), min_size=20, max_size=20),
    bias=st.lists(st.floats(-50, 200), min_size=20, max_size=20),
    objective=_objectives,
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
