from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric
from isthmus.placement import Plan, WorkloadSet, load_workloads, load_workloads_text, plan

HERE = Path(__file__).parent
REPO = HERE.parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def tiny() -> Fabric:
    return load_fabric(HERE / "tiny_fabric.yaml")


@pytest.fixture(scope="session")
def example_fabric() -> Fabric:
    return load_fabric(EXAMPLES / "fabric.yaml")


@pytest.fixture(scope="session")
def example_workloads(example_fabric: Fabric) -> WorkloadSet:
    return load_workloads(EXAMPLES / "workloads.yaml", example_fabric)


@pytest.fixture(scope="session")
def example_plan(example_fabric: Fabric, example_workloads: WorkloadSet) -> Plan:
    return plan(example_fabric, example_workloads)


@pytest.fixture(scope="session")
def infeasible_plan(example_fabric: Fabric) -> Plan:
    workloads = load_workloads(EXAMPLES / "workloads-infeasible.yaml", example_fabric)
    return plan(example_fabric, workloads)


def workloads(fabric: Fabric, body: str) -> WorkloadSet:
    """A workload file from YAML text (the ``workloads:`` list, indented by two)."""
    return load_workloads_text("workloads:\n" + body, fabric, file="test.yaml")
