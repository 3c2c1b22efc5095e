"""The SkyPilot-style baseline and the yardstick both plans are measured with."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.placement import Plan, assess, compare_with_baseline, plan, skypilot_baseline
from isthmus.placement.optimizer import PlanState

from .conftest import workloads


def test_baseline_takes_the_cheapest_listed_price_and_ignores_rules(tiny: Fabric) -> None:
    body = """
  - name: p
    kind: online_inference
    model: m8
    data_class: pii
    request: {input_tokens: 1000, output_tokens: 100}
    demand: [{metro: FRA, mean_rps: 0.5, peak_rps: 0.5}]
    slo: {ttft_p95_ms: 150}
"""
    result = plan(tiny, workloads(tiny, body))
    state = result.state
    assert isinstance(state, PlanState)
    base = skypilot_baseline(state.ctx, state.needs)
    # fr-colo lists 1.50/h, the cheapest; it has the one device needed
    assert [state.ctx.slot_name(s) for s in base[0]] == ["fr-colo/H100"]
    judged = assess(state.ctx, state.needs, base, "baseline", broker=True)
    # bought on demand: the owned pool shared at 1.50 / 0.6 = 2.50/h x 730 x 1.1
    assert round(judged.total_usd, 2) == 2007.5
    assert judged.sovereignty_violations == 0 and judged.slo_misses == 0


def test_baseline_breaks_what_the_plan_keeps(example_plan: Plan) -> None:
    report = compare_with_baseline(example_plan)
    ours, theirs, rebought = report["rows"]
    assert ours["slo_misses"] == 0
    assert ours["sovereignty_violations"] == 0
    assert ours["redundancy_shortfalls"] == 0
    assert theirs["sovereignty_violations"] > 0
    assert theirs["redundancy_shortfalls"] > 0
    assert "us-health-phi" in theirs["violations_by_rule"]
    assert report["saving"] >= 0.15
    # bought at the cheapest tier, the baseline's sites still cost more than the plan
    assert ours["total_usd"] < rebought["total_usd"] <= theirs["total_usd"]


def test_assessing_the_plan_reproduces_its_cost(example_plan: Plan) -> None:
    state = example_plan.state
    assert isinstance(state, PlanState)
    ours = {
        w: [int(state.candidates.slot[leg]) for leg in legs] for w, legs in state.legs_of.items()
    }
    judged = assess(state.ctx, state.needs, ours, "plan")
    # the plan reports in single precision; the yardstick recomputes in double
    assert judged.total_usd == pytest.approx(example_plan.total.total_usd, rel=1e-6)
    assert judged.placed == len(example_plan.placements)
