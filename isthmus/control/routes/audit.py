"""Audit records gathered from every gateway: filtered, paged. A tenant key reads its own only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from isthmus.control.auth import Caller, plane_of
from isthmus.control.errors import ERROR_RESPONSES, ControlError
from isthmus.control.models import NAME_PATTERN, AuditOut, AuditPage
from isthmus.control.records import AuditFilter
from isthmus.control.timeutil import Timestamp, as_utc
from isthmus.mesh.protocol import GATEWAY_ID

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES, tags=["audit"])


@router.get("/v1/audit", summary="audit records, oldest first, filtered and paged")
def query_audit(
    request: Request,
    principal: Caller,
    tenant: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    gateway: Annotated[str | None, Query(pattern=GATEWAY_ID.pattern)] = None,
    since: Annotated[Timestamp | None, Query(description="records at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="records before (RFC 3339)")] = None,
    action: Annotated[str | None, Query(max_length=8)] = None,
    category: Annotated[
        str | None, Query(max_length=64, description="e.g. pii or pii:email")
    ] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="the next_after of the last page")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    if principal.role == "tenant":
        if tenant is not None and tenant != principal.tenant:
            raise ControlError(
                403,
                "a tenant key reads only its own tenant's audit records",
                "forbidden",
                param="tenant",
            )
        tenant = principal.tenant
    where = AuditFilter(tenant, gateway, as_utc(since), as_utc(until), action, category)
    rows = plane_of(request).records.audit(where, after=after, limit=limit)
    records = [AuditOut(**{**row, "at": as_utc(row["at"])}) for row in rows]
    next_after = records[-1].id if len(records) == limit else None
    return AuditPage(records=records, next_after=next_after)
