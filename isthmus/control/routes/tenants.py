"""Tenants, their API keys and their usage. A tenant's own key sees only that tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request

from isthmus.control.auth import Admin, Caller, plane_of, visible_tenant
from isthmus.control.errors import ERROR_RESPONSES
from isthmus.control.models import (
    KEY_ID_PATTERN,
    NAME_PATTERN,
    GatewayUsage,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyOut,
    TenantList,
    TenantOut,
    UsageOut,
)
from isthmus.control.plane import ControlPlane, KeyView
from isthmus.control.timeutil import Timestamp, as_utc
from isthmus.fabric.schema import Tenant

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES, tags=["tenants"])
TenantName = Annotated[str, Path(pattern=NAME_PATTERN, description="tenant name")]
KeyId = Annotated[str, Path(pattern=KEY_ID_PATTERN, description="key id")]


def _tenant_out(plane: ControlPlane, tenant: Tenant) -> TenantOut:
    return TenantOut(
        name=tenant.name,
        default_data_class=tenant.default_data_class,
        allowed_models=list(tenant.allowed_models),
        home_site=tenant.home_site,
        rpm_limit=tenant.rpm_limit,
        tpm_limit=tenant.tpm_limit,
        active_keys=sum(1 for k in plane.keys(tenant) if k.active),
    )


def _key_out(view: KeyView) -> KeyOut:
    return KeyOut(
        id=view.id,
        tenant=view.tenant,
        source="fabric" if view.source == "fabric" else "control",
        created_at=view.created_at,
        revoked_at=view.revoked_at,
        active=view.active,
    )


@router.get("/v1/tenants", summary="tenants of the fabric in force (a tenant key: itself)")
def list_tenants(request: Request, principal: Caller) -> TenantList:
    plane = plane_of(request)
    tenants = plane.tenants()
    if principal.role == "tenant":
        tenants = [t for t in tenants if t.name == principal.tenant]
    return TenantList(tenants=[_tenant_out(plane, t) for t in tenants])


@router.get("/v1/tenants/{tenant}", summary="one tenant")
def get_tenant(request: Request, tenant: TenantName, principal: Caller) -> TenantOut:
    visible_tenant(principal, tenant)
    plane = plane_of(request)
    return _tenant_out(plane, plane.tenant(tenant))


@router.get("/v1/tenants/{tenant}/keys", summary="a tenant's API keys (never their secrets)")
def list_keys(request: Request, tenant: TenantName, principal: Caller) -> KeyList:
    visible_tenant(principal, tenant)
    plane = plane_of(request)
    return KeyList(keys=[_key_out(k) for k in plane.keys(plane.tenant(tenant))])


@router.post(
    "/v1/tenants/{tenant}/keys",
    status_code=201,
    summary="create an API key: the secret is in this answer only",
    responses={409: ERROR_RESPONSES[404] | {"description": "the tenant has a key with this id"}},
)
def create_key(
    request: Request,
    tenant: TenantName,
    _: Admin,
    body: Annotated[KeyCreate | None, Body()] = None,
) -> KeyCreated:
    plane = plane_of(request)
    view, secret = plane.create_key(plane.tenant(tenant), body.id if body else None)
    return KeyCreated(
        key=_key_out(view),
        secret=secret,
        note="store the secret now: it is not shown again; gateways accept it from the next "
        "published bundle",
    )


@router.delete("/v1/tenants/{tenant}/keys/{key_id}", summary="revoke an API key")
def revoke_key(request: Request, tenant: TenantName, key_id: KeyId, _: Admin) -> KeyOut:
    plane = plane_of(request)
    return _key_out(plane.revoke_key(plane.tenant(tenant), key_id))


@router.get("/v1/tenants/{tenant}/usage", summary="a tenant's usage, from gateway telemetry")
def usage(
    request: Request,
    tenant: TenantName,
    principal: Caller,
    since: Annotated[Timestamp | None, Query(description="snapshots taken at or after")] = None,
    until: Annotated[Timestamp | None, Query(description="snapshots taken before")] = None,
) -> UsageOut:
    visible_tenant(principal, tenant)
    plane = plane_of(request)
    plane.tenant(tenant)
    since, until = as_utc(since), as_utc(until)
    rows = plane.records.usage(tenant, since, until)
    return UsageOut(
        tenant=tenant,
        since=since,
        until=until,
        tokens=sum(r.tokens for r in rows),
        usd=sum(r.usd for r in rows),
        as_of=max((r.at for r in rows), default=None),
        by_gateway=[
            GatewayUsage(gateway=r.gateway, n=r.n, at=r.at, tokens=r.tokens, usd=r.usd)
            for r in rows
        ],
    )
