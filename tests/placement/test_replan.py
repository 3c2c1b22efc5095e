"""Re-planning: after a failure or a price change, only what must (or pays to) move moves."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.placement import Plan, plan, replan, reprice

from .conftest import workloads

TWO = """
  - name: tight
    kind: online_inference
    model: m8
    data_class: public
    request: {input_tokens: 1000, output_tokens: 100}
    demand: [{metro: FRA, mean_rps: 0.5, peak_rps: 0.5}]
    slo: {ttft_p95_ms: 150}
  - name: loose
    kind: online_inference
    model: m8
    data_class: public
    request: {input_tokens: 1000, output_tokens: 100}
    demand: [{metro: FRA, mean_rps: 0.5, peak_rps: 0.5}]
    slo: {ttft_p95_ms: 300}
"""


@pytest.fixture()
def before(tiny: Fabric) -> Plan:
    return plan(tiny, workloads(tiny, TWO))


def test_site_failure_moves_only_what_ran_there(before: Plan) -> None:
    after = replan(before, down_sites=["fr-colo"])
    moved = {m.workload: m for m in after.moves}
    assert set(moved) == {"tight"}
    assert moved["tight"].before == ("fr-colo/H100",)
    assert moved["tight"].after == ("de-cloud/H100",)
    assert "site fr-colo is down" in moved["tight"].reason
    assert after.unchanged == ("loose",)
    assert after.cost_after_usd == pytest.approx(1825.0 + 1606.0)


def test_small_price_rise_does_not_pay_for_a_move(tiny: Fabric, before: Plan) -> None:
    # us-neo +0.10/h costs loose 730 x 0.10 x 1.1 = 80 more; moving to de-cloud costs 219 more
    # plus the 250 move penalty: stay
    after = replan(before, reprice(tiny, "us-neo", "H100", on_demand=2.1))
    assert after.moves == ()
    assert set(after.unchanged) == {"tight", "loose"}


def test_large_price_rise_moves_with_its_reason(tiny: Fabric, before: Plan) -> None:
    after = replan(before, reprice(tiny, "us-neo", "H100", on_demand=3.5))
    (move,) = after.moves
    assert move.workload == "loose"
    assert move.after == ("de-cloud/H100",)
    assert "now costs $2,811" in move.reason  # 730 x 3.50 x 1.1 = 2810.50
    assert "move penalty of $250" in move.reason


def test_move_penalty_is_configurable(tiny: Fabric, before: Plan) -> None:
    after = replan(before, reprice(tiny, "us-neo", "H100", on_demand=3.5), move_penalty_usd=5000)
    assert after.moves == ()


def test_reprice_rejects_unknown_pools(tiny: Fabric) -> None:
    with pytest.raises(KeyError):
        reprice(tiny, "us-neo", "B200", on_demand=1.0)


def test_example_replan_after_failure(example_plan: Plan) -> None:
    victim = example_plan.placements[0].legs[0].site
    after = replan(example_plan, down_sites=[victim])
    for placement in after.plan.placements:
        assert all(leg.site != victim for leg in placement.legs)
    assert any(victim in m.reason for m in after.moves)
    assert len(after.moves) + len(after.unchanged) == len(example_plan.placements)
