"""Which gateway runs which bundle, when it was last seen, what audit it still holds."""

from __future__ import annotations

from fastapi import APIRouter, Request

from isthmus.control.auth import Staff, plane_of
from isthmus.control.errors import ERROR_RESPONSES
from isthmus.control.models import GatewayList, GatewayOut
from isthmus.mesh.protocol import GatewayStatus

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES, tags=["gateways"])


@router.get(
    "/v1/gateways",
    summary="the gateways' last reported status",
    description="Read from the database, where the control plane copies the status bucket "
    "while NATS is reachable; so this answers (with the last status read) when it is not.",
)
def list_gateways(request: Request, _: Staff) -> GatewayList:
    plane = plane_of(request)
    published = [row.version for row in plane.db.bundles() if row.published_at is not None]
    newest = max(published) if published else None
    gateways = []
    for status, read_at in plane.db.gateways():
        parsed = GatewayStatus.model_validate(status)
        current = None if newest is None else parsed.bundle_version == newest
        gateways.append(GatewayOut(status=parsed, read_at=read_at, current=current))
    return GatewayList(gateways=gateways, newest_published=newest, nats=plane.mesh.state)
