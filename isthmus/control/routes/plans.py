"""Placement plans: run the optimizer on a workloads file against the fabric in force."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.engine import RowMapping

from isthmus.control.auth import Staff, plane_of
from isthmus.control.errors import ERROR_RESPONSES, ControlError, problems_out
from isthmus.control.models import PlanList, PlanOut, PlanRequest, PlanSummary
from isthmus.control.timeutil import as_utc
from isthmus.fabric.problems import FabricError
from isthmus.placement import load_workloads_text
from isthmus.placement import plan as make_plan

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES, tags=["plans"])


def _finite(value: Any) -> Any:
    """JSON has no infinity or NaN: such a figure (a gap with no bound) becomes null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _summary(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": as_utc(row["created_at"]),
        "catalog": row["catalog"],
        "catalog_revision": row["catalog_revision"],
        "method": row["method"],
        "status": row["status"],
        "objective_usd": _finite(row["objective_usd"]),
        "gap": _finite(row["gap"]),
        "placed": row["placed"],
        "unplaced": row["unplaced"],
    }


@router.post("/v1/plans", status_code=201, summary="place workloads; store and return the plan")
def run_plan(request: Request, body: PlanRequest, _: Staff) -> PlanOut:
    plane = plane_of(request)
    info, fabric = plane.require_fabric()
    try:
        workloads = load_workloads_text(body.workloads_yaml, fabric, body.file)
    except FabricError as exc:
        count = len(exc.problems)
        first = str(exc.problems[0]) if exc.problems else ""
        raise ControlError(
            422,
            f"the workloads have {count} problem{'s' if count != 1 else ''}: {first}",
            "invalid_workloads",
            param="workloads_yaml",
            problems=problems_out(exc.problems),
        ) from None
    result = make_plan(fabric, workloads, method=body.method, time_limit_s=body.time_limit_s)
    document = _finite(result.as_dict())
    plan_id = plane.db.add_plan(
        {
            "catalog": info.name,
            "catalog_revision": info.revision,
            "method": result.method,
            "status": result.status,
            "objective_usd": result.objective_usd,
            "gap": result.gap,
            "placed": len(result.placements),
            "unplaced": len(result.unplaced),
            "workloads_yaml": body.workloads_yaml,
            "result": document,
        }
    )
    row = plane.db.plan(plan_id)
    assert row is not None
    return PlanOut(**_summary(row), result=document)


@router.get("/v1/plans", summary="stored plans, newest first")
def list_plans(
    request: Request,
    _: Staff,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PlanList:
    rows = plane_of(request).db.plans(limit)
    return PlanList(plans=[PlanSummary(**_summary(row)) for row in rows])


@router.get("/v1/plans/{plan_id}", summary="one stored plan, in full")
def get_plan(request: Request, plan_id: Annotated[int, Path(ge=1, le=2**62)], _: Staff) -> PlanOut:
    row = plane_of(request).db.plan(plan_id)
    if row is None:
        raise ControlError(404, f"no plan {plan_id}", "unknown_plan", param="plan_id")
    return PlanOut(**_summary(row), result=row["result"])
