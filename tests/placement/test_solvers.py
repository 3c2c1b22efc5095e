"""The scalable method against the exact MILP, and the validity of the bounds they report."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.synth import synth_fabric
from isthmus.placement import Plan, WorkloadSet, plan
from isthmus.placement.synth import scale_capacity, synth_workloads


@pytest.fixture(scope="module")
def instance() -> tuple[Fabric, WorkloadSet]:
    spec, workload_spec = synth_workloads(synth_fabric(40, seed=3), 80, seed=5)
    return Fabric(scale_capacity(spec, 0.5)), WorkloadSet(workload_spec)


@pytest.fixture(scope="module")
def exact(instance: tuple[Fabric, WorkloadSet]) -> Plan:
    return plan(*instance, method="milp")


@pytest.fixture(scope="module")
def scaled(instance: tuple[Fabric, WorkloadSet]) -> Plan:
    return plan(*instance, method="scale")


def test_exact_is_proven_optimal(exact: Plan) -> None:
    assert exact.status == "optimal"
    assert exact.gap <= 1e-5


def test_scalable_bound_and_objective_bracket_the_optimum(exact: Plan, scaled: Plan) -> None:
    assert scaled.method.startswith("lp")
    assert len(scaled.placements) == len(exact.placements)
    optimum = exact.objective_usd
    assert scaled.bound_usd <= optimum * (1 + 1e-6)
    assert scaled.objective_usd >= optimum * (1 - 1e-6)
    assert scaled.gap == pytest.approx((scaled.objective_usd - scaled.bound_usd) / scaled.bound_usd)
    assert scaled.gap <= 0.02


def test_capacity_respected(instance: tuple[Fabric, WorkloadSet], scaled: Plan) -> None:
    fabric, _ = instance
    used: dict[tuple[str, str], float] = {}
    for placement in scaled.placements:
        for leg in placement.legs:
            key = (leg.site, leg.accelerator)
            used[key] = used.get(key, 0.0) + leg.average_devices
            if leg.accelerator != "api":
                pool = next(
                    a for a in fabric.sites[leg.site].accelerators if a.type == leg.accelerator
                )
                assert leg.devices <= pool.free  # each leg fits on its own
                assert leg.average_devices <= leg.devices
    for (site, accelerator), devices in used.items():
        if accelerator == "api":
            continue
        pool = next(a for a in fabric.sites[site].accelerators if a.type == accelerator)
        assert devices <= pool.free + 1e-3  # jobs time-share: average occupancy fits


def test_redundant_legs_use_distinct_domains(scaled: Plan, exact: Plan) -> None:
    for result in (scaled, exact):
        for placement in result.placements:
            domains = [leg.failure_domain for leg in placement.legs]
            assert len(set(domains)) == len(domains)


@pytest.mark.parametrize("method", ["milp", "scale"])
def test_nothing_to_place_is_trivially_optimal(
    instance: tuple[Fabric, WorkloadSet], method: str
) -> None:
    from isthmus.placement import WorkloadsSpec

    fabric, _ = instance
    result = plan(fabric, WorkloadSet(WorkloadsSpec()), method=method)  # type: ignore[arg-type]
    assert result.placements == () and result.unplaced == ()
    assert result.gap == 0.0
