"""The control plane: the catalog, policy, keys and bundles one deployment governs.

One ``ControlPlane`` owns the database (the catalog store plus the control tables), the
Ed25519 signing key and the link to NATS. The API routes are thin: they check who is asking
and call a method here.

Invariants:

- The fabric in force is the latest revision of one named catalog (``ControlConfig.catalog``);
  a fabric is only stored after the loader accepted it.
- A bundle is built from the fabric in force, the stored guard policy and routing settings,
  and the tenants' *active* API keys (fabric keys not revoked, plus keys created here not
  revoked); it is signed, stored, then published — storing never waits for NATS.
- Key secrets are returned once, at creation, and only their SHA-256 is kept.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import JsonValue

from isthmus.bundle import build_bundle, key_id, sign_bundle
from isthmus.control.auth import Principal, not_found_tenant
from isthmus.control.database import BundleRow, ControlDB, KeyRow
from isthmus.control.errors import ControlError, problems_out
from isthmus.control.mesh import Mesh, NatsMesh, NoMesh
from isthmus.control.records import RecordStore
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text
from isthmus.fabric.problems import FabricError
from isthmus.fabric.schema import ApiKey, Tenant
from isthmus.gateway.tenants import hash_key
from isthmus.guard.policy import GuardPolicy
from isthmus.mesh.protocol import DEFAULT_NAMESPACE, Names
from isthmus.store import CatalogInfo, ImportResult, Store, open_store

__all__ = ["ControlConfig", "ControlPlane", "KeyView"]

GUARD_SETTING = "guard_policy"
ROUTING_SETTING = "routing"
SECRET_PREFIX = "isk-"


@dataclass(frozen=True)
class ControlConfig:
    db_url: str | None = None
    nats_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    catalog: str = "fabric"
    max_body_bytes: int = 16 * 1024 * 1024
    retry_interval_s: float = 2.0
    status_interval_s: float = 2.0
    ingest_batch: int = 5000
    ingest: bool = True
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    operator_tokens: tuple[str, ...] = field(default=(), repr=False)
    gateway_tokens: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class KeyView:
    """A tenant's key as the API shows it (never the secret)."""

    id: str
    tenant: str
    source: str
    created_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class ControlPlane:
    def __init__(self, store: Store, signing_key: Ed25519PrivateKey, config: ControlConfig) -> None:
        self.store = store
        self.signing_key = signing_key
        self.config = config
        self.names = Names(config.namespace)
        self.db = ControlDB(store.engine)
        self.records = RecordStore(store.engine)
        self.mesh: Mesh = (
            NatsMesh(
                config.nats_url,
                self.names,
                self.db,
                self.records,
                retry_interval_s=config.retry_interval_s,
                status_interval_s=config.status_interval_s,
                ingest_batch=config.ingest_batch,
                ingest=config.ingest,
            )
            if config.nats_url
            else NoMesh()
        )
        self._fabric_lock = threading.Lock()
        self._fabric: tuple[CatalogInfo, Fabric] | None = None
        if config.admin_tokens:
            self.db.set_tokens("admin", (hash_key(t) for t in config.admin_tokens))
        if config.operator_tokens:
            self.db.set_tokens("operator", (hash_key(t) for t in config.operator_tokens))
        if config.gateway_tokens:
            self.db.set_tokens("gateway", (hash_key(t) for t in config.gateway_tokens))

    @classmethod
    def open(cls, config: ControlConfig, signing_key: Ed25519PrivateKey) -> ControlPlane:
        store = open_store(config.db_url)
        try:
            return cls(store, signing_key, config)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    @property
    def key_id(self) -> str:
        return key_id(self.signing_key.public_key())

    def public_key_pem(self) -> str:
        return (
            self.signing_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    # fabric -------------------------------------------------------------------------------

    def fabric(self) -> tuple[CatalogInfo, Fabric] | None:
        """The latest revision of the catalog and its fabric (cached until it changes)."""
        infos = self.store.catalogs(self.config.catalog)
        if not infos:
            return None
        latest = infos[-1]
        with self._fabric_lock:
            cached = self._fabric
            if cached is not None and cached[0].revision == latest.revision:
                return cached
        fabric = self.store.load_fabric(self.config.catalog, latest.revision)
        with self._fabric_lock:
            self._fabric = (latest, fabric)
        return latest, fabric

    def require_fabric(self) -> tuple[CatalogInfo, Fabric]:
        found = self.fabric()
        if found is None:
            raise ControlError(
                404, "no fabric yet: an admin puts one first (PUT /v1/fabric)", "no_fabric"
            )
        return found

    def export_fabric(self, revision: int) -> str:
        return self.store.export_yaml(self.config.catalog, revision)

    def put_fabric(self, text: str, file: str) -> ImportResult:
        try:
            fabric = load_fabric_text(text, file)
        except FabricError as exc:
            count = len(exc.problems)
            first = str(exc.problems[0]) if exc.problems else ""
            raise ControlError(
                422,
                f"the fabric has {count} problem{'s' if count != 1 else ''}: {first}",
                "invalid_fabric",
                param="yaml",
                problems=problems_out(exc.problems),
            ) from None
        return self.store.import_fabric(fabric, self.config.catalog)

    # policy -------------------------------------------------------------------------------

    def guard_policy(self) -> GuardPolicy:
        stored = self.db.setting(GUARD_SETTING)
        return GuardPolicy() if stored is None else GuardPolicy.model_validate(stored)

    def put_guard_policy(self, policy: GuardPolicy) -> None:
        self.db.put_setting(GUARD_SETTING, policy.model_dump(mode="json"))

    def routing(self) -> dict[str, JsonValue]:
        stored = self.db.setting(ROUTING_SETTING)
        return dict(stored) if isinstance(stored, dict) else {}

    def put_routing(self, settings: dict[str, JsonValue]) -> None:
        self.db.put_setting(ROUTING_SETTING, settings)

    # tenants and keys ---------------------------------------------------------------------

    def tenants(self) -> list[Tenant]:
        found = self.fabric()
        return [] if found is None else list(found[1].spec.tenants)

    def tenant(self, name: str) -> Tenant:
        for tenant in self.tenants():
            if tenant.name == name:
                return tenant
        raise not_found_tenant(name)

    def keys(self, tenant: Tenant, rows: Iterable[KeyRow] | None = None) -> list[KeyView]:
        """The tenant's fabric keys (marked if revoked here) and the keys created here."""
        stored = {r.key_id: r for r in (self.db.api_keys(tenant.name) if rows is None else rows)}
        views = [
            KeyView(
                k.id,
                tenant.name,
                "fabric",
                None,
                stored[k.id].revoked_at if k.id in stored else None,
            )
            for k in tenant.api_keys
        ]
        fabric_ids = {k.id for k in tenant.api_keys}
        views.extend(
            KeyView(r.key_id, tenant.name, "control", r.created_at, r.revoked_at)
            for r in stored.values()
            if r.source == "control" and r.key_id not in fabric_ids
        )
        return views

    def create_key(self, tenant: Tenant, wanted_id: str | None) -> tuple[KeyView, str]:
        taken = {k.id for k in self.keys(tenant)}
        if wanted_id is not None and wanted_id in taken:
            raise ControlError(
                409,
                f"tenant {tenant.name!r} already has a key {wanted_id!r}",
                "key_exists",
                param="id",
            )
        key_id_ = wanted_id or next(
            candidate
            for candidate in (f"key-{secrets.token_hex(4)}" for _ in range(100))
            if candidate not in taken
        )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        row = self.db.add_key(tenant.name, key_id_, hash_key(secret))
        return KeyView(row.key_id, tenant.name, "control", row.created_at, None), secret

    def revoke_key(self, tenant: Tenant, key_id_: str) -> KeyView:
        for view in self.keys(tenant):
            if view.id == key_id_:
                revoked = self.db.revoke_key(
                    tenant.name, key_id_, from_fabric=view.source == "fabric"
                )
                return KeyView(view.id, view.tenant, view.source, view.created_at, revoked)
        raise ControlError(
            404, f"tenant {tenant.name!r} has no key {key_id_!r}", "unknown_key", param="key_id"
        )

    def authenticate(self, token: str) -> Principal | None:
        digest = hash_key(token)
        role = self.db.role_for(digest)
        if role == "admin":
            return Principal("admin")
        if role == "operator":
            return Principal("operator")
        if role == "gateway":
            return Principal("gateway")
        stored = self.db.tenant_for_digest(digest)
        if stored is not None:
            if stored.revoked_at is not None:
                return None
            try:
                self.tenant(stored.tenant)
            except ControlError:
                return None  # a key of a tenant no longer in the fabric
            return Principal("tenant", stored.tenant, stored.key_id)
        for tenant in self.tenants():
            for key in tenant.api_keys:
                if secrets.compare_digest(key.sha256, digest):
                    revoked = any(
                        r.key_id == key.id and r.revoked_at is not None
                        for r in self.db.api_keys(tenant.name)
                    )
                    return None if revoked else Principal("tenant", tenant.name, key.id)
        return None

    def _active_tenants(self, fabric: Fabric) -> tuple[Tenant, ...]:
        rows: dict[str, list[KeyRow]] = {}
        for row in self.db.api_keys():
            rows.setdefault(row.tenant, []).append(row)
        out = []
        for tenant in fabric.spec.tenants:
            mine = rows.get(tenant.name, [])
            digests = {r.key_id: r.sha256 for r in mine}
            digests.update({k.id: k.sha256 for k in tenant.api_keys})
            active = [
                ApiKey(id=view.id, sha256=str(digests[view.id]))
                for view in self.keys(tenant, mine)
                if view.active and digests.get(view.id)
            ]
            out.append(tenant.model_copy(update={"api_keys": tuple(active)}))
        return tuple(out)

    # bundles ------------------------------------------------------------------------------

    def build_bundle(self) -> BundleRow:
        """Build, sign and store the next bundle (not yet published)."""
        info, fabric = self.require_fabric()
        spec = fabric.spec.model_copy(update={"tenants": self._active_tenants(fabric)})
        guard = self.guard_policy()
        routing = self.routing()

        def make(version: int) -> BundleRow:
            bundle = build_bundle(version=version, fabric=spec, guard=guard, routing=routing)
            return BundleRow(
                version=version,
                created_at=datetime.now(UTC),
                content_sha256=bundle.content_sha256,
                key_id=self.key_id,
                catalog=info.name,
                catalog_revision=info.revision,
                published_at=None,
                signed=sign_bundle(bundle, self.signing_key),
            )

        return self.db.add_bundle(make)

    async def publish(self) -> tuple[BundleRow, str]:
        """Build and store a bundle, then publish it (with any still pending before it)."""
        row = await asyncio.to_thread(self.build_bundle)
        await self.mesh.publish_pending()
        # this call or the mesh's own retry loop (which may have held the publishing lock a
        # moment earlier) published it: the database says which bundles went out
        fresh = await asyncio.to_thread(self.db.bundle, row.version)
        if fresh is not None and fresh.published_at is not None:
            return fresh, f"bundle {row.version} published to {self.names.bundle_subject}"
        if self.mesh.state == "off":
            return row, (
                f"bundle {row.version} stored; not published: this control plane runs without "
                "NATS (--nats)"
            )
        return row, (
            f"bundle {row.version} stored; NATS is unreachable, so it will be published when "
            "NATS returns"
        )

    def bundle_state(self, row: BundleRow) -> Literal["published", "pending", "not_published"]:
        if row.published_at is not None:
            return "published"
        return "not_published" if self.mesh.state == "off" else "pending"
