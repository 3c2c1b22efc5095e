"""Workload files are validated like fabric files: every problem, located, with what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.problems import FabricError
from isthmus.placement import load_workloads, load_workloads_text

from .conftest import EXAMPLES


def problems(fabric: Fabric, text: str) -> list[str]:
    with pytest.raises(FabricError) as caught:
        load_workloads_text(text, fabric, file="w.yaml")
    return [str(p) for p in caught.value.problems]


def test_examples_load(example_fabric: Fabric) -> None:
    for name in ("workloads.yaml", "workloads-infeasible.yaml"):
        loaded = load_workloads(EXAMPLES / name, example_fabric)
        assert loaded.workloads
    kinds = {w.kind for w in load_workloads(EXAMPLES / "workloads.yaml", example_fabric).workloads}
    assert kinds == {"pretraining", "fine_tuning", "batch_inference", "online_inference", "rag"}


def test_unknown_names_are_located_with_suggestions(example_fabric: Fabric) -> None:
    found = problems(
        example_fabric,
        """workloads:
  - name: a
    kind: online_inference
    tenant: meridian-retail
    model: llama-3.1-8b-instruc
    demand: [{metro: FRX, mean_rps: 1, peak_rps: 2}]
    datasets: [{name: meridian-product-catalogue}]
    anti_affinity: [b]
""",
    )
    text = "\n".join(found)
    assert "w.yaml:5:12: workloads[0].model: unknown model 'llama-3.1-8b-instruc'" in text
    assert "did you mean 'llama-3.1-8b-instruct'?" in text
    assert "w.yaml:6:22: workloads[0].demand[0].metro: unknown metro or site 'FRX'" in text
    assert "workloads[0].datasets[0].name: unknown dataset 'meridian-product-catalogue'" in text
    assert "workloads[0].anti_affinity[0]: unknown workload 'b'" in text
    assert len(found) == 4


def test_schema_errors_say_what_is_valid(example_fabric: Fabric) -> None:
    found = problems(
        example_fabric,
        """workloads:
  - name: a
    kind: online_inferance
    model: llama-3.1-8b-instruct
    data_class: internal
  - name: b
    kind: batch_inference
    model: llama-3.1-8b-instruct
    data_class: internal
    slo: {ttft_p95_ms: 100}
  - name: c
    kind: batch_inference
    model: llama-3.1-8b-instruct
    colour: blue
""",
    )
    text = "\n".join(found)
    assert "w.yaml:3:11: workloads[0].kind: found 'online_inferance'; expected one of" in text
    assert "unknown field 'colour'" in text
    assert "a batch_inference job needs slo.deadline_hours" in text
    assert "slo.ttft_p95_ms applies to services" in text


def test_demand_shape_is_checked(example_fabric: Fabric) -> None:
    found = problems(
        example_fabric,
        """workloads:
  - name: a
    kind: online_inference
    model: llama-3.1-8b-instruct
    data_class: internal
    demand:
      - {metro: FRA, mean_rps: 5, peak_rps: 2}
      - {metro: LHR, mean_rps: 1}
  - name: b
    kind: online_inference
    model: llama-3.1-8b-instruct
    data_class: internal
    duty_cycle: 0.1
    demand: [{metro: FRA, mean_rps: 1, peak_rps: 2}]
""",
    )
    text = "\n".join(found)
    assert "the mean (5) exceeds the peak (2)" in text
    assert "both mean_rps and peak_rps are required" in text
    assert "duty_cycle 0.1 averages 10 req/s while active, above the peak of 2" in text


def test_tenant_entitlement_and_aliases(example_fabric: Fabric) -> None:
    found = problems(
        example_fabric,
        """workloads:
  - name: a
    kind: online_inference
    tenant: bund-digital
    model: gpt-4o
    demand: [{metro: FRA, mean_rps: 1, peak_rps: 2}]
  - name: b
    kind: online_inference
    data_class: internal
    model: chat-large
    demand: [{metro: FRA, mean_rps: 1, peak_rps: 2}]
  - name: b
    kind: batch_inference
    model: bge-m3
    requests: 10
    slo: {deadline_hours: 1}
""",
    )
    text = "\n".join(found)
    assert "tenant bund-digital may not use model 'gpt-4o'" in text
    assert "'chat-large' is an alias" in text
    assert "duplicate workload name 'b'" in text
    assert "give data_class, or a tenant" in text


def test_file_errors_are_problems(example_fabric: Fabric, tmp_path: Path) -> None:
    with pytest.raises(FabricError) as caught:
        load_workloads(tmp_path / "absent.yaml", example_fabric)
    assert "cannot read file" in str(caught.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("workloads: [\n")
    with pytest.raises(FabricError) as caught:
        load_workloads(bad, example_fabric)
    assert "invalid YAML" in str(caught.value)
