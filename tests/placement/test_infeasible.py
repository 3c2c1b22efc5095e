"""Specs that cannot be met are answered with the constraints that conflict, in words."""

from __future__ import annotations

import re

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.placement import Plan, explain, plan

from .conftest import workloads


def conflict(result: Plan, name: str) -> tuple[tuple[str, ...], str]:
    found = result.conflict(name)
    assert found is not None, f"{name} was placed"
    return found.constraints, found.message


def test_sovereignty_against_latency_names_rule_slo_and_nearest_site(
    infeasible_plan: Plan,
) -> None:
    constraints, message = conflict(infeasible_plan, "rheinbank-tokyo-desk")
    assert "sovereignty:gdpr-personal-data" in constraints
    assert "slo:ttft_p95_ms@NRT" in constraints
    assert "data class pii allowed only in EEA_AND_ADEQUATE" in message
    assert "rule gdpr-personal-data" in message
    assert "the TTFT SLO of 250 ms from NRT needs a compliant site within" in message
    assert re.search(r"nearest compliant site is \S+ \(\w\w\) at \d+ ms RTT", message)


def test_refused_everywhere_names_the_rule_and_clauses(infeasible_plan: Plan) -> None:
    constraints, message = conflict(infeasible_plan, "lakeshore-from-frankfurt")
    assert constraints == ("sovereignty:us-health-phi",)
    assert "us-health-phi (process_in)" in message
    assert "on the path from FRA" in message


@pytest.mark.parametrize(
    ("name", "constraint", "words"),
    [
        ("bund-triple-redundant", "redundancy", "needs 3 distinct failure domains"),
        ("bund-crash-pretrain", "capacity:H100", "the deadline of 24 h needs at least"),
        ("meridian-frontier-finetune", "model", "cannot be fine-tuned"),
        ("meridian-cheap-copy", "budget", "above the budget of $100"),
        ("meridian-green-only", "carbon", "carbon cap of 5 gCO2/kWh"),
    ],
)
def test_each_conflict_is_named(
    infeasible_plan: Plan, name: str, constraint: str, words: str
) -> None:
    constraints, message = conflict(infeasible_plan, name)
    assert constraint in constraints
    assert words in message


def test_never_a_solver_status(infeasible_plan: Plan) -> None:
    for found in infeasible_plan.unplaced:
        lowered = found.message.lower()
        for code in ("infeasible", "kinfeasible", "status", "highs", "unbounded"):
            assert code not in lowered, found.message


def test_the_placeable_rest_is_still_planned(infeasible_plan: Plan) -> None:
    assert [p.workload for p in infeasible_plan.placements] == ["meridian-shop-assistant"]
    assert explain(infeasible_plan, "rheinbank-tokyo-desk").conflict is not None


def test_capacity_contention_names_the_competitors(tiny: Fabric) -> None:
    body = "".join(
        f"""
  - name: w{i}
    kind: online_inference
    model: m8
    data_class: pii
    request: {{input_tokens: 1000, output_tokens: 100}}
    demand: [{{metro: FRA, mean_rps: 2, peak_rps: 2}}]
    slo: {{ttft_p95_ms: 150}}
"""
        for i in range(2)
    )
    result = plan(tiny, workloads(tiny, body))
    # each needs 4 devices near FRA in the EU: de-cloud has 4, fr-colo 1 -> one is left out
    assert len(result.placements) == 1 and len(result.unplaced) == 1
    left = result.unplaced[0]
    assert left.constraints == ("capacity",)
    assert "de-cloud/H100" in left.message and result.placements[0].workload in left.message
