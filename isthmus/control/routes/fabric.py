"""The fabric in force, the guard policy and the routing settings (admins write, staff read)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from isthmus.control.auth import Admin, Staff, plane_of
from isthmus.control.errors import ERROR_RESPONSES
from isthmus.control.models import FabricImported, FabricOut, FabricUpload, RoutingSettings
from isthmus.guard.policy import GuardPolicy

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/fabric", tags=["fabric"], summary="the catalog in force, as YAML")
def get_fabric(request: Request, _: Staff) -> FabricOut:
    plane = plane_of(request)
    info, _fabric = plane.require_fabric()
    return FabricOut(
        catalog=info.name,
        revision=info.revision,
        sha256=info.sha256,
        imported_at=info.imported_at,
        fabric_name=info.fabric_name,
        description=info.description,
        counts=dict(info.counts),
        yaml=plane.export_fabric(info.revision),
    )


@router.put(
    "/v1/fabric",
    tags=["fabric"],
    summary="validate a fabric and make it the next revision in force",
    description="Every problem is answered as a 422 naming its file, line, column and field.",
)
def put_fabric(request: Request, body: FabricUpload, _: Admin) -> FabricImported:
    plane = plane_of(request)
    result = plane.put_fabric(body.yaml, body.file)
    info, _fabric = plane.require_fabric()
    return FabricImported(
        catalog=result.name,
        revision=result.revision,
        sha256=result.sha256,
        unchanged=result.unchanged,
        counts=dict(info.counts),
    )


@router.get("/v1/policy/guard", tags=["policy"], summary="the guard policy bundles carry")
def get_guard(request: Request, _: Staff) -> GuardPolicy:
    return plane_of(request).guard_policy()


@router.put("/v1/policy/guard", tags=["policy"], summary="replace the guard policy")
async def put_guard(request: Request, body: GuardPolicy, _: Admin) -> GuardPolicy:
    try:  # again, strictly: the policy model's lax mode would take false for 0.0
        policy = GuardPolicy.model_validate_json(await request.body(), strict=True)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    await run_in_threadpool(plane_of(request).put_guard_policy, policy)
    return policy


@router.get("/v1/policy/routing", tags=["policy"], summary="the routing settings bundles carry")
def get_routing(request: Request, _: Staff) -> RoutingSettings:
    return RoutingSettings(settings=plane_of(request).routing())


@router.put("/v1/policy/routing", tags=["policy"], summary="replace the routing settings")
def put_routing(request: Request, body: RoutingSettings, _: Admin) -> RoutingSettings:
    plane_of(request).put_routing(body.settings)
    return body
