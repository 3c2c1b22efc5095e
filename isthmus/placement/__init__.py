"""Workload placement: where each AI workload runs, at what cost, and why.

Load workloads against a fabric, plan, explain, re-plan::

    fabric = load_fabric("examples/fabric.yaml")
    workloads = load_workloads("examples/workloads.yaml", fabric)
    result = plan(fabric, workloads)            # exact MILP when small, LP-based at scale
    why = explain(result, "lakeshore-notes-summaries")
    after = replan(result, down_sites=["verda-fin-03"])

The optimizer is pure (no I/O, no printing); ``isthmus.placement.optimizer`` gives its
formulation, ``isthmus.placement.costs`` its cost model.
"""

from isthmus.placement.baseline import (
    Assessment,
    assess,
    compare_with_baseline,
    skypilot_baseline,
)
from isthmus.placement.explain import explain
from isthmus.placement.loader import (
    WorkloadSet,
    load_workloads,
    load_workloads_text,
    workloads_from_data,
)
from isthmus.placement.optimizer import Method, plan
from isthmus.placement.replan import replan, reprice
from isthmus.placement.result import (
    Alternative,
    Conflict,
    CostBreakdown,
    DataMove,
    Explanation,
    Gravity,
    GravityOption,
    Leg,
    Move,
    Placement,
    Plan,
    Replan,
)
from isthmus.placement.spec import Workload, WorkloadsSpec
from isthmus.placement.synth import synth_workloads

__all__ = [
    "Alternative",
    "Assessment",
    "Conflict",
    "CostBreakdown",
    "DataMove",
    "Explanation",
    "Gravity",
    "GravityOption",
    "Leg",
    "Method",
    "Move",
    "Placement",
    "Plan",
    "Replan",
    "Workload",
    "WorkloadSet",
    "WorkloadsSpec",
    "assess",
    "compare_with_baseline",
    "explain",
    "load_workloads",
    "load_workloads_text",
    "plan",
    "replan",
    "reprice",
    "skypilot_baseline",
    "synth_workloads",
    "workloads_from_data",
]
