"""Who is calling the admin API, and what their role lets them see.

Roles:

- ``admin``: everything.
- ``operator``: reads everything, publishes bundles, runs plans; no key management, no writes
  to the fabric or the policy.
- ``tenant``: authenticated by one of its own API keys (the keys the gateways accept); sees
  its own tenant, keys, usage and audit records, nothing else.
- ``gateway``: what a gateway holds to fetch the newest signed bundle over HTTP
  (``GET /v1/bundles/latest``) and the public key; nothing else — a site that is compromised
  reads no tenant's data through it.

Invariants: tokens and keys are compared by SHA-256 digest only. A tenant asking for another
tenant's resource gets exactly the 404 a tenant that does not exist gets, so a key never
learns which other tenants exist. A missing or unknown token is a 401, a role that may not is
a 403, before any input is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from isthmus.control.errors import ControlError

if TYPE_CHECKING:
    from isthmus.control.plane import ControlPlane

__all__ = [
    "ROLES",
    "Admin",
    "Anyone",
    "BundleReader",
    "Caller",
    "Principal",
    "Role",
    "Staff",
    "bearer_scheme",
    "current_principal",
    "not_found_tenant",
    "plane_of",
    "require",
    "visible_tenant",
]

Role = Literal["admin", "operator", "tenant", "gateway"]
ROLES: tuple[Role, ...] = ("admin", "operator", "tenant", "gateway")

# declares the security scheme in the OpenAPI document; the header is checked below, so the
# error bodies are ours
bearer_scheme = HTTPBearer(
    auto_error=False, description="admin/operator/gateway token or tenant API key"
)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    tenant: str | None = None
    key_id: str | None = None


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise ControlError(
            401, "missing token: send 'Authorization: Bearer <token or API key>'", "missing_token"
        )
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ControlError(
            401,
            "the Authorization header must be 'Bearer <token or API key>'",
            "invalid_authorization_header",
        )
    return value.strip()


def plane_of(request: Request) -> ControlPlane:
    """The control plane serving this request (kept on the app by ``create_app``)."""
    return cast("ControlPlane", request.app.state.plane)


def current_principal(request: Request, _: object = Depends(bearer_scheme)) -> Principal:
    principal = plane_of(request).authenticate(bearer_token(request))
    if principal is None:
        raise ControlError(401, "invalid token or API key", "invalid_token")
    return principal


def require(*roles: Role) -> Any:
    """A dependency that lets only ``roles`` through (403 for the others)."""

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            allowed = " or ".join(roles)
            raise ControlError(
                403, f"this needs the {allowed} role; this token is {principal.role}", "forbidden"
            )
        return principal

    return Depends(check)


def not_found_tenant(name: str) -> ControlError:
    return ControlError(404, f"no tenant named {name!r}", "unknown_tenant", param="tenant")


def visible_tenant(principal: Principal, name: str) -> None:
    """Raise the unknown-tenant 404 if ``principal`` may not see tenant ``name``."""
    if principal.role == "tenant" and principal.tenant != name:
        raise not_found_tenant(name)


Anyone = Annotated[Principal, Depends(current_principal)]
"""Any authenticated caller, a gateway included."""
Caller = Annotated[Principal, require("admin", "operator", "tenant")]
"""A person's or a tenant's token (a gateway token reads bundles only)."""
BundleReader = Annotated[Principal, require("admin", "operator", "gateway")]
Staff = Annotated[Principal, require("admin", "operator")]
Admin = Annotated[Principal, require("admin")]
