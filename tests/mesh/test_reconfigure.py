"""Applying a bundle to a running gateway: the new policy in one step, the fleet's state kept."""

from __future__ import annotations

import pytest

from isthmus.bundle import build_bundle
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Tenant
from isthmus.gateway.errors import ApiError
from isthmus.gateway.reconfigure import BundleNotApplicable, apply_bundle
from isthmus.guard import Guard, GuardPolicy, NullGuard
from tests.mesh.conftest import (
    NEW_KEY,
    chosen_site,
    custody,
    decide,
    make_gateway,
    with_newco,
    without_pii,
)


def test_a_bundle_changes_where_personal_data_may_go(fabric: Fabric) -> None:
    gateway = make_gateway(fabric)
    assert chosen_site(gateway) == "onprem-paris"
    apply_bundle(gateway, build_bundle(version=2, fabric=custody(fabric, "customer").spec))
    assert chosen_site(gateway) == "aws-eu-central-1"
    apply_bundle(gateway, build_bundle(version=3, fabric=without_pii(fabric).spec))
    decision = decide(gateway)
    assert decision.chosen is None and decision.status == "refused"


def test_a_bundle_adds_a_tenant(fabric: Fabric) -> None:
    gateway = make_gateway(fabric)
    with pytest.raises(ApiError):
        gateway.directory.authenticate(f"Bearer {NEW_KEY}")
    apply_bundle(gateway, build_bundle(version=2, fabric=with_newco(fabric).spec))
    assert gateway.directory.authenticate(f"Bearer {NEW_KEY}").tenant.name == "newco"


def test_the_fleets_live_state_is_kept(fabric: Fabric) -> None:
    gateway = make_gateway(fabric)
    fleet = gateway.view.fleet
    fleet.dispatched(0, 100, (1, 2, 3), 0.0)
    apply_bundle(gateway, build_bundle(version=2, fabric=custody(fabric, "customer").spec))
    assert gateway.view.fleet is fleet
    assert gateway.view.fleet.infos == fleet.infos


def test_a_bundle_that_does_not_fit_the_fabric_changes_nothing(fabric: Fabric) -> None:
    gateway = make_gateway(fabric)
    before = (gateway.view, gateway.directory, gateway.guard, gateway.fabric)
    stranger = Tenant(name="x", default_data_class="no-such-class")
    spec = fabric.spec.model_copy(update={"tenants": (*fabric.spec.tenants, stranger)})
    with pytest.raises(BundleNotApplicable, match="no-such-class"):
        apply_bundle(gateway, build_bundle(version=2, fabric=spec))
    assert (gateway.view, gateway.directory, gateway.guard, gateway.fabric) == before


def test_routing_settings_choose_the_router_and_an_unknown_router_is_refused(
    fabric: Fabric,
) -> None:
    gateway = make_gateway(fabric)
    apply_bundle(
        gateway, build_bundle(version=2, fabric=fabric.spec, routing={"router": "round_robin"})
    )
    assert decide(gateway).policy == "round_robin"
    with pytest.raises(BundleNotApplicable, match=r"routing\.router"):
        apply_bundle(gateway, build_bundle(version=3, fabric=fabric.spec, routing={"router": "x"}))
    assert decide(gateway).policy == "round_robin"
    apply_bundle(gateway, build_bundle(version=4, fabric=fabric.spec, routing={"future": 1}))
    assert decide(gateway).policy == "isthmus"  # back to the gateway's configured router


def test_the_guard_policy_comes_from_the_bundle_unless_the_guard_is_off(fabric: Fabric) -> None:
    strict = GuardPolicy(default_action="block")
    gateway = make_gateway(fabric)
    gateway.guard = Guard(GuardPolicy())
    apply_bundle(gateway, build_bundle(version=2, fabric=fabric.spec, guard=strict))
    assert isinstance(gateway.guard, Guard) and gateway.guard.policy == strict
    off = make_gateway(fabric)
    apply_bundle(off, build_bundle(version=2, fabric=fabric.spec, guard=strict))
    assert isinstance(off.guard, NullGuard)
