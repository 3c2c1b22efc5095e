"""Signed policy bundles: build from what is in force, sign, store, publish; list; get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from isthmus.control.auth import BundleReader, Staff, plane_of
from isthmus.control.database import BundleRow
from isthmus.control.errors import ERROR_RESPONSES, ControlError
from isthmus.control.models import BundleDetail, BundleList, BundleOut, BundlePublished
from isthmus.control.plane import ControlPlane

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES, tags=["bundles"])


def _out(plane: ControlPlane, row: BundleRow) -> BundleOut:
    return BundleOut(
        version=row.version,
        created_at=row.created_at,
        content_sha256=row.content_sha256,
        key_id=row.key_id,
        catalog=row.catalog,
        catalog_revision=row.catalog_revision,
        published_at=row.published_at,
        state=plane.bundle_state(row),
    )


@router.post(
    "/v1/bundles",
    status_code=201,
    summary="build, sign, store and publish the next bundle",
    description="Built from the fabric in force, the guard policy, the routing settings and "
    "the tenants' active keys. When NATS is unreachable the bundle is stored and published "
    "by a background retry when NATS returns.",
)
async def publish(request: Request, _: Staff) -> BundlePublished:
    plane = plane_of(request)
    row, message = await plane.publish()
    return BundlePublished(bundle=_out(plane, row), message=message)


@router.get("/v1/bundles", summary="every bundle, newest first")
def list_bundles(request: Request, _: Staff) -> BundleList:
    plane = plane_of(request)
    return BundleList(bundles=[_out(plane, row) for row in plane.db.bundles()])


@router.get(
    "/v1/bundles/latest",
    summary="the newest bundle's signed document, as bytes (a gateway's fallback to NATS)",
    response_class=Response,
    responses={
        200: {
            "description": "the signed bundle document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def latest_bundle(request: Request, _: BundleReader) -> Response:
    row = plane_of(request).db.latest_bundle()
    if row is None:
        raise ControlError(404, "no bundle yet: publish one (POST /v1/bundles)", "no_bundle")
    return Response(row.signed, media_type="application/json")


@router.get("/v1/bundles/{version}", summary="one bundle, with its signed document")
def get_bundle(
    request: Request, version: Annotated[int, Path(ge=1, le=2**31 - 1)], _: Staff
) -> BundleDetail:
    plane = plane_of(request)
    row = plane.db.bundle(version)
    if row is None:
        raise ControlError(404, f"no bundle version {version}", "unknown_bundle", param="version")
    return BundleDetail(**_out(plane, row).model_dump(), signed=row.signed.decode("utf-8"))
