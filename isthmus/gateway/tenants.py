"""Who is calling: API keys (stored only as SHA-256 digests) to tenants, and their data class.

Invariants: a plaintext key is never stored or logged — it is hashed on arrival and looked up
by digest; a request's data class is the tenant's default unless the request *raises* it (a
class of a higher level); a lower or unknown class is refused, never silently replaced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Tenant
from isthmus.gateway.errors import ApiError

__all__ = ["Caller", "TenantDirectory", "hash_key"]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: Tenant
    key_id: str


class TenantDirectory:
    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self._by_digest: dict[str, Caller] = {}
        for tenant in fabric.spec.tenants:
            for key in tenant.api_keys:
                self._by_digest[key.sha256] = Caller(tenant, key.id)

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Caller:
        """The caller for an ``Authorization: Bearer KEY`` (or ``api-key: KEY``) header."""
        key = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(
                    401,
                    "the Authorization header must be 'Bearer <API key>'",
                    "invalid_authorization_header",
                )
            key = value.strip()
        elif api_key:
            key = api_key.strip()
        if not key:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <API key>'",
                "missing_api_key",
            )
        caller = self._by_digest.get(hash_key(key))
        if caller is None:
            raise ApiError(401, "invalid API key", "invalid_api_key")
        return caller

    def data_class(self, tenant: Tenant, requested: str | None) -> str:
        """The class a request runs under: the tenant's default, or a higher one it asks for."""
        default = tenant.default_data_class
        if requested is None or requested == default:
            return default
        classes = self.fabric.data_classes
        if requested not in classes:
            known = ", ".join(sorted(classes))
            raise ApiError(
                400,
                f"unknown data class {requested!r}; known: {known}",
                "unknown_data_class",
                "x-isthmus-data-class",
            )
        if classes[requested].level < classes[default].level:
            raise ApiError(
                400,
                f"data class {requested!r} (level {classes[requested].level}) is lower than the "
                f"tenant's default {default!r} (level {classes[default].level}); a request may "
                "raise its class, never lower it",
                "data_class_lowered",
                "x-isthmus-data-class",
            )
        return requested
