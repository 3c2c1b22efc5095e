"""route(): compliant-only, predicted-TTFT driven, objective-aware; the baselines share its filters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric
from isthmus.fabric.schema import Objective
from isthmus.routing import ROUTERS, RouteRequest, build_view, route
from tests.fabrics import with_short_context_model


@pytest.fixture()
def view(mini: Fabric):  # type: ignore[no-untyped-def]
    return build_view(mini)


def request(**kw: object) -> RouteRequest:
    base = dict(
        model="llama-3.1-8b", data_class="public", gateway_site="onprem-paris", prompt_tokens=1000
    )
    base.update(kw)
    return RouteRequest(**base)  # type: ignore[arg-type]


def test_routes_to_nearest_when_idle(view) -> None:
    decision = route(request(objective=Objective(kind="fastest")), view)
    assert decision.status == "routed"
    assert decision.chosen.endpoint == "par-llama"
    assert [c.endpoint for c in decision.ranked] == ["par-llama", "fra-llama", "iad-llama"]
    assert "ttft" in decision.header and "site=onprem-paris" in decision.header


def test_sovereignty_filters_before_anything_else(view) -> None:
    decision = route(request(data_class="pii", gateway_site="aws-us-east-1"), view)
    # pii: only EEA, key custody not with the provider -> only Paris (over a private path? no:
    # from Virginia the public path transits US, outside EEA) -> refused with the rule named
    assert decision.status == "refused"
    assert "gdpr-pii" in decision.reason
    assert all(name in {"fra-llama", "par-llama", "iad-llama"} for name, _ in decision.refusals)


def test_phi_needs_private_path_and_uses_it(view) -> None:
    decision = route(request(data_class="phi", gateway_site="aws-eu-central-1"), view)
    # the only BAA site is in the US; from Frankfurt the measured backbone path is private but
    # crosses DE, and hipaa-phi has no transit rule: allowed over the private backbone
    assert decision.status == "routed" and decision.chosen.endpoint == "iad-llama"
    public_only = route(request(data_class="phi", gateway_site="onprem-paris"), view)
    assert public_only.status == "routed"  # Paris -> Frankfurt (private) -> AWS backbone


def test_unknown_model_and_tenant_entitlement(view) -> None:
    unknown = route(request(model="gpt-9"), view)
    assert unknown.status == "refused" and "not in the catalog" in unknown.reason
    denied = route(request(model="llama-3.1-8b", allowed_models=("closed-*",)), view)
    assert denied.status == "refused" and "allowed models" in denied.reason
    alias = route(request(model="chat-small", allowed_models=("chat-small",)), view)
    assert alias.status == "routed" and alias.chosen.model == "llama-3.1-8b"


def test_cache_affinity_against_load(view) -> None:
    fleet = view.fleet
    hashes = tuple(range(100, 160))  # 60 blocks x 16 tokens = 960 tokens
    far = fleet.position["fra-llama"]
    fleet.prefix.record(far, hashes)
    req = request(prompt_tokens=1000, block_hashes=hashes, objective=Objective(kind="fastest"))
    hit = route(req, view)
    assert hit.chosen.endpoint == "fra-llama" and hit.chosen.cached_tokens == 960
    # pile prefill work on the cached replica: now recomputing the prefix elsewhere is faster
    fleet.set_load(far, pending_prefill_tokens=50_000)
    moved = route(req, view)
    assert moved.chosen.endpoint == "par-llama"


def test_live_filters_and_failover_exclusion(view) -> None:
    fleet = view.fleet
    fleet.set_health(fleet.position["par-llama"], False)
    fleet.set_circuit_open(fleet.position["fra-llama"], True)
    decision = route(request(), view)
    assert decision.chosen.endpoint == "iad-llama"
    none_left = route(request(exclude=frozenset({"iad-llama"})), view)
    assert none_left.status == "unavailable"
    assert "1 unhealthy, 1 circuit open" in none_left.reason


def test_cheapest_within_slo_spills_when_slo_would_be_missed(view) -> None:
    req = request(
        prompt_tokens=1000, objective=Objective(kind="cheapest_within_slo", ttft_slo_ms=250)
    )
    first = route(req, view).chosen
    assert first.predicted_ttft_ms <= 250
    view.fleet.set_load(view.fleet.position[first.endpoint], pending_prefill_tokens=100_000)
    second = route(req, view).chosen
    assert second.endpoint != first.endpoint


def test_deadline(view) -> None:
    decision = route(request(prompt_tokens=1000, deadline_ms=1.0), view)
    assert decision.status == "unavailable" and "deadline" in decision.reason


def test_bias_learned_from_observations_moves_traffic(view) -> None:
    fleet = view.fleet
    par = fleet.position["par-llama"]
    req = request(objective=Objective(kind="fastest"))
    predicted = route(req, view).chosen.model_ttft_ms
    for _ in range(20):  # Paris is consistently 400 ms slower than its model predicts
        ticket = fleet.dispatched(par, 0)
        fleet.first_token(par, ticket, model_ms=predicted, observed_ms=predicted + 400)
        fleet.finished(par)
    assert 350 < fleet.bias_ms[par] <= 400  # converges to the residual, never overshoots
    assert route(req, view).chosen.endpoint == "fra-llama"


def test_prefill_queue_drains_with_time(view) -> None:
    fleet = view.fleet
    par = fleet.position["par-llama"]
    fleet.dispatched(par, 24_000, now_s=100.0)  # 2 s of prefill at 12,000 tokens/s
    assert fleet.queue_ms(par, 100.0) == pytest.approx(2000.0)
    assert fleet.queue_ms(par, 101.5) == pytest.approx(500.0)
    assert fleet.queue_ms(par, 103.0) == 0.0
    soon = route(request(objective=Objective(kind="fastest"), now_s=100.1), view)
    later = route(request(objective=Objective(kind="fastest"), now_s=102.5), view)
    assert soon.chosen.endpoint != "par-llama" and later.chosen.endpoint == "par-llama"


def test_first_token_means_everything_before_it_is_done(view) -> None:
    fleet = view.fleet
    par = fleet.position["par-llama"]
    first = fleet.dispatched(par, 10_000, now_s=0.0)
    fleet.dispatched(par, 10_000, now_s=0.0)
    fleet.first_token(par, first, model_ms=100, observed_ms=100, now_s=0.01)
    assert fleet.pending_tokens(par, 0.01) == pytest.approx(10_000)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(ROUTERS)),
    st.sampled_from(["public", "pii", "phi", "orphan", "nope"]),
    st.sampled_from(["onprem-paris", "aws-eu-central-1", "aws-us-east-1", "FRA", "IAD"]),
    st.lists(st.integers(0, 70), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_every_router_returns_only_compliant_endpoints(
    mini: Fabric, name: str, data_class: str, gateway: str, load: list[int], healthy: list[bool]
) -> None:
    view = build_view(mini)
    for i, (ok, n) in enumerate(zip(healthy, load, strict=True)):
        view.fleet.set_load(i, in_flight=n)
        view.fleet.set_health(i, ok)
    decision = ROUTERS[name](request(data_class=data_class, gateway_site=gateway), view)
    for candidate in decision.ranked:
        path = view.network.path(gateway, candidate.site)
        private = view.network.path(gateway, candidate.site, private_only=True)
        verdicts = [
            view.policy.evaluate(data_class, candidate.site, p, candidate.model)
            for p in (path, private)
            if p is not None
        ]
        assert any(v.allowed for v in verdicts)
        i = view.fleet.position[candidate.endpoint]
        assert view.fleet.healthy[i] and view.fleet.in_flight[i] < view.fleet.max_concurrency[i]
    if data_class in ("orphan", "nope"):
        assert decision.status == "refused"


def test_decision_is_immutable(view) -> None:
    decision = route(request(), view)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.status = "refused"  # type: ignore[misc]


# -- the model's context window ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_no_router_sends_a_prompt_beyond_the_models_context_window(
    example_path: Path, name: str
) -> None:
    """The demo fabric's ``chat-small`` mixes 32k-context (Qwen 2.5 7B) and 128k-context models:
    a 36k-token prompt must go to a 128k one, as the 32k engine answers 400."""
    fabric = load_fabric(example_path)
    view = build_view(fabric)
    req = RouteRequest(
        model="chat-small",
        data_class="public",
        gateway_site="equinix-fr5",
        prompt_tokens=36_000,
        max_output_tokens=256,
    )
    decision = ROUTERS[name](req, view)
    assert decision.status == "routed"
    assert decision.chosen.endpoint != "equinix-fr5-qwen7b"
    for candidate in decision.ranked:
        assert fabric.models[candidate.model].context_tokens >= 36_256, candidate.endpoint
    small = ROUTERS[name](dataclasses.replace(req, prompt_tokens=1000), build_view(fabric))
    if name == "isthmus":  # what fits the window still goes where it is best served
        assert small.chosen.endpoint == "equinix-fr5-qwen7b"


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_context_window_counts_prompt_plus_output(mini: Fabric, name: str) -> None:
    """vLLM refuses prompt + max_tokens beyond the window; exactly at it is served. On a few
    candidates (the scalar path) and through the arrays (the baselines)."""
    fabric = with_short_context_model(mini)
    fits = request(model="chat-small", prompt_tokens=4096 - 100, max_output_tokens=100)
    over = dataclasses.replace(fits, prompt_tokens=4096 - 99)
    at_the_limit = ROUTERS[name](fits, build_view(fabric))
    assert "par-short" in [c.endpoint for c in at_the_limit.ranked]
    if name == "isthmus":
        assert at_the_limit.chosen.endpoint == "par-short"
    beyond = ROUTERS[name](over, build_view(fabric))
    assert beyond.status == "routed"
    assert "par-short" not in [c.endpoint for c in beyond.ranked]
    assert {c.model for c in beyond.ranked} == {"llama-3.1-8b"}


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_a_prompt_no_window_holds_is_unavailable_and_says_why(mini: Fabric, name: str) -> None:
    view = build_view(mini)  # llama-3.1-8b: 8,192 tokens of context, 400,000 of KV cache
    decision = ROUTERS[name](request(prompt_tokens=9000, max_output_tokens=256), view)
    assert decision.status == "unavailable" and decision.chosen is None
    assert "context window" in decision.reason and "9,256" in decision.reason
    assert "8,192" in decision.reason


# -- what a failed request recorded in the prefix index ---------------------------------------


def test_a_request_the_engine_rejected_is_not_believed_cached(view) -> None:
    """The same unique prompt twice, the engine refusing it (a 400) before computing it: the
    second decision must not predict the first one's blocks cached."""
    fleet = view.fleet
    req = request(prompt_tokens=4000, block_hashes=tuple(range(1000, 1250)))
    first = route(req, view)
    assert first.chosen.cached_tokens == 0
    i = fleet.position[first.chosen.endpoint]
    ticket = fleet.dispatched(i, 4000, req.block_hashes, 0.0)
    fleet.failed(i, 4000, before_first_token=True, now_s=0.1, ticket=ticket)
    second = route(dataclasses.replace(req, now_s=0.1), view)
    assert second.chosen.endpoint == first.chosen.endpoint
    assert second.chosen.cached_tokens == 0
    assert fleet.pending_tokens(i, 0.1) == 0.0 and fleet.in_flight[i] == 0


def test_a_failure_keeps_what_others_had_cached_and_what_was_computed(view) -> None:
    fleet = view.fleet
    par = fleet.position["par-llama"]
    system = tuple(range(100, 130))  # 30 blocks, 480 tokens, held from an earlier request
    fleet.dispatched(par, 480, system, 0.0)
    fleet.finished(par)
    prompt = system + tuple(range(2000, 2100))
    req = request(
        prompt_tokens=2080, block_hashes=prompt, objective=Objective(kind="fastest"), now_s=10.0
    )
    ticket = fleet.dispatched(par, 2080 - 480, prompt, 1.0)
    fleet.failed(par, 2080 - 480, before_first_token=True, now_s=1.0, ticket=ticket)
    assert route(req, view).chosen.cached_tokens == 480
    # failing after its first token, the engine had computed the prompt: it stays cached
    ticket = fleet.dispatched(par, 2080 - 480, prompt, 2.0)
    fleet.first_token(par, ticket, 100.0, 100.0, now_s=2.2)
    fleet.failed(par, 2080 - 480, before_first_token=False, now_s=3.0, ticket=ticket)
    assert route(req, view).chosen.cached_tokens == 2080


def test_a_failure_keeps_blocks_a_later_request_relies_on(view) -> None:
    fleet = view.fleet
    par = fleet.position["par-llama"]
    prompt = tuple(range(3000, 3100))
    req = request(
        prompt_tokens=1600, block_hashes=prompt, objective=Objective(kind="fastest"), now_s=10.0
    )
    first = fleet.dispatched(par, 1600, prompt, 0.0)
    fleet.dispatched(par, 0, prompt, 0.0)  # the same prompt again, still running
    fleet.failed(par, 1600, now_s=0.1, ticket=first)
    assert route(req, view).chosen.cached_tokens == 1600
