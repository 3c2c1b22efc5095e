"""Health, who-am-I and the public signing key."""

from __future__ import annotations

from fastapi import APIRouter, Request

from isthmus.control.auth import Anyone, plane_of
from isthmus.control.errors import ERROR_RESPONSES
from isthmus.control.models import Health, SigningKeyOut, WhoAmI

__all__ = ["router"]

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/healthz", tags=["meta"], summary="the service answers and its database too")
def health(request: Request) -> Health:
    plane = plane_of(request)
    plane.db.token_count("admin")  # a database failure answers 503
    return Health(
        status="ok", database="ok", nats=plane.mesh.state, namespace=plane.names.namespace
    )


@router.get("/v1/whoami", tags=["meta"], summary="the role (and tenant) of this token")
def whoami(principal: Anyone) -> WhoAmI:
    return WhoAmI(role=principal.role, tenant=principal.tenant, key_id=principal.key_id)


@router.get("/v1/signing-key", tags=["meta"], summary="the public key gateways verify with")
def signing_key(request: Request) -> SigningKeyOut:
    plane = plane_of(request)
    return SigningKeyOut(
        algorithm="ed25519", key_id=plane.key_id, public_key_pem=plane.public_key_pem()
    )
