"""Who is calling: API keys (stored only as SHA-256 digests) to tenants, and their data class.

Invariants: a plaintext key is never stored or logged — it is hashed on arrival and looked up
by digest; a request's data class is the tenant's default unless the request *raises* it (a
class of a higher level); a lower or unknown class is refused, never silently replaced; when a
request names several classes (headers, body), the highest applies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
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

    def data_class(self, tenant: Tenant, requested: Sequence[tuple[str, str]] = ()) -> str:
        """The class a request runs under: the tenant's default, or the highest class the request
        asks for. ``requested`` holds each class asked for with where it was asked (the
        ``x-isthmus-data-class`` header, ``metadata.data_class``). Every one must be known and
        none lower than the default; two different classes at the top level are refused (which
        rules would apply is ambiguous), never resolved by a guess."""
        default = tenant.default_data_class
        classes = self.fabric.data_classes
        chosen: str | None = None
        for name, param in requested:
            if name != default:
                self._check(name, param, default)
            if chosen is None or classes[name].level > classes[chosen].level:
                chosen = name
            elif name != chosen and classes[name].level == classes[chosen].level:
                raise ApiError(
                    400,
                    f"the request asks for two data classes of the same level, {chosen!r} and "
                    f"{name!r}; ask for one",
                    "conflicting_data_classes",
                    param,
                )
        return default if chosen is None else chosen

    def _check(self, requested: str, param: str, default: str) -> None:
        classes = self.fabric.data_classes
        if requested not in classes:
            known = ", ".join(sorted(classes))
            raise ApiError(
                400,
                f"unknown data class {requested!r}; known: {known}",
                "unknown_data_class",
                param,
            )
        if classes[requested].level < classes[default].level:
            raise ApiError(
                400,
                f"data class {requested!r} (level {classes[requested].level}) is lower than the "
                f"tenant's default {default!r} (level {classes[default].level}); a request may "
                "raise its class, never lower it",
                "data_class_lowered",
                param,
            )
