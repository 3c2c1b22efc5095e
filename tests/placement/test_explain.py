"""Explanations: binding constraints, rejected alternatives with reasons, data gravity."""

from __future__ import annotations

import pytest

from isthmus.placement import Plan, explain


def test_health_batch_is_bound_by_its_rule(example_plan: Plan) -> None:
    why = explain(example_plan, "lakeshore-notes-summaries")
    assert why.placement is not None and why.conflict is None
    assert any(b.startswith("sovereignty") and "us-health-phi" in b for b in why.binding)
    refused = [a for a in why.alternatives if a.reason_kind == "sovereignty"]
    assert refused and all("us-health-phi" in a.reason for a in refused)
    assert all(a.delta_pct is not None and a.delta_pct < 0 for a in refused)
    costlier = [a for a in why.alternatives if a.reason_kind == "cost"]
    assert costlier and all(a.reason.startswith(("cost +", "same cost")) for a in costlier)


def test_move_the_model_or_the_data_is_costed_both_ways(example_plan: Plan) -> None:
    why = explain(example_plan, "lakeshore-radiology-lora")
    (gravity,) = why.gravity
    assert gravity.dataset == "lakeshore-radiology-reports"
    assert gravity.home_site == "aws-us-east-2"
    assert gravity.move_model is not None and gravity.move_data is not None
    assert gravity.move_model.site == "aws-us-east-2"
    assert gravity.move_data.site != "aws-us-east-2"
    assert gravity.chosen in ("move the model", "move the data")
    assert "cheaper by" in gravity.summary


def test_avoid_list_and_latency_reasons(example_plan: Plan) -> None:
    why = explain(example_plan, "rheinbank-staff-assistant")
    avoided = [a for a in why.alternatives if a.reason == "on the workload's avoid list"]
    assert avoided and all(a.site.startswith("equinix-") for a in avoided)
    assert len(why.placement.legs if why.placement else ()) == 2
    domains = {leg.failure_domain for leg in why.placement.legs} if why.placement else set()
    assert len(domains) == 2


def test_latency_miss_is_quantified(example_plan: Plan) -> None:
    why = explain(example_plan, "meridian-product-search")
    late = [a for a in why.alternatives if a.reason_kind == "latency"]
    assert late and all("SLO missed by" in a.reason and " ms from " in a.reason for a in late)


def test_unknown_workload(example_plan: Plan) -> None:
    with pytest.raises(KeyError):
        explain(example_plan, "nope")


def test_explanation_serialises(example_plan: Plan) -> None:
    data = explain(example_plan, "meridian-catalog-embeddings").as_dict()
    assert data["placement"]["legs"][0]["tier"] in ("spot", "on_demand", "dedicated")
    assert isinstance(data["binding"], list)
