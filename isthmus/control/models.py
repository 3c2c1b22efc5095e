"""Request and response bodies of the admin API.

Every model forbids unknown fields, so the OpenAPI document says exactly what is accepted and
returned, and a misspelt field is a 422 naming it rather than a silently ignored setting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from isthmus.control.auth import Role
from isthmus.mesh.protocol import GatewayStatus

__all__ = [
    "AuditOut",
    "AuditPage",
    "BundleDetail",
    "BundleList",
    "BundleOut",
    "BundlePublished",
    "FabricImported",
    "FabricOut",
    "FabricUpload",
    "GatewayList",
    "GatewayOut",
    "GatewayUsage",
    "Health",
    "KeyCreate",
    "KeyCreated",
    "KeyList",
    "KeyOut",
    "PlanList",
    "PlanOut",
    "PlanRequest",
    "PlanSummary",
    "RoutingSettings",
    "SigningKeyOut",
    "TenantList",
    "TenantOut",
    "UsageOut",
    "WhoAmI",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,127}$"
KEY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@-]{0,127}$"
FILE_NAME = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
MAX_YAML_CHARS = 16 * 1024 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Request(BaseModel):
    """A request body: strict too, so ``false`` is not taken for 0 nor ``"5"`` for 5."""

    model_config = ConfigDict(extra="forbid", strict=True)


class WhoAmI(_Model):
    role: Role
    tenant: str | None = None
    key_id: str | None = None


class Health(_Model):
    status: Literal["ok"]
    database: Literal["ok"]
    nats: Literal["connected", "disconnected", "off"]
    namespace: str


class FabricUpload(_Request):
    yaml: Annotated[str, Field(max_length=MAX_YAML_CHARS, description="the fabric, as YAML")]
    file: FILE_NAME = Field(
        default="fabric.yaml", description="the name problems are reported against"
    )


class FabricImported(_Model):
    catalog: str
    revision: int
    sha256: str
    unchanged: bool = Field(description="true when equal to the latest revision")
    counts: dict[str, int]


class FabricOut(_Model):
    catalog: str
    revision: int
    sha256: str
    imported_at: datetime
    fabric_name: str
    description: str | None
    counts: dict[str, int]
    yaml: str = Field(description="the whole catalog as one self-contained YAML document")


class RoutingSettings(_Request):
    settings: dict[str, JsonValue] = Field(
        default_factory=dict, description="routing settings, passed to the gateways as given"
    )


class TenantOut(_Model):
    name: str
    default_data_class: str
    allowed_models: list[str]
    home_site: str | None
    rpm_limit: int | None
    tpm_limit: int | None
    active_keys: int


class TenantList(_Model):
    tenants: list[TenantOut]


class KeyOut(_Model):
    id: str
    tenant: str
    source: Literal["fabric", "control"] = Field(
        description="fabric: listed in the catalog; control: created here"
    )
    created_at: datetime | None
    revoked_at: datetime | None
    active: bool


class KeyList(_Model):
    keys: list[KeyOut]


class KeyCreate(_Request):
    id: Annotated[str, Field(pattern=KEY_ID_PATTERN)] | None = Field(
        default=None, description="the key's id (default: generated)"
    )


class KeyCreated(_Model):
    key: KeyOut
    secret: str = Field(description="the API key itself: shown this once, stored only hashed")
    note: str


class GatewayUsage(_Model):
    gateway: str
    n: int = Field(description="the snapshot's number")
    at: datetime = Field(description="when the gateway took the snapshot")
    tokens: int
    usd: float


class UsageOut(_Model):
    """Usage in each gateway's current budget period: the sum of their latest snapshots."""

    tenant: str
    since: datetime | None
    until: datetime | None
    tokens: int
    usd: float
    as_of: datetime | None = Field(description="the newest snapshot counted")
    by_gateway: list[GatewayUsage]


class BundleOut(_Model):
    version: int
    created_at: datetime
    content_sha256: str
    key_id: str
    catalog: str | None
    catalog_revision: int | None
    published_at: datetime | None
    state: Literal["published", "pending", "not_published"] = Field(
        description="pending: stored, published when NATS is reachable; not_published: no NATS"
    )


class BundleList(_Model):
    bundles: list[BundleOut]


class BundleDetail(BundleOut):
    signed: str = Field(description="the signed bundle document, exactly as published")


class BundlePublished(_Model):
    bundle: BundleOut
    message: str


class SigningKeyOut(_Model):
    algorithm: Literal["ed25519"]
    key_id: str
    public_key_pem: str


class GatewayOut(_Model):
    status: GatewayStatus
    read_at: datetime = Field(description="when the control plane last read this status")
    current: bool | None = Field(
        description="runs the newest published bundle (null when none is published)"
    )


class GatewayList(_Model):
    gateways: list[GatewayOut]
    newest_published: int | None
    nats: Literal["connected", "disconnected", "off"]


class PlanRequest(_Request):
    workloads_yaml: Annotated[str, Field(max_length=MAX_YAML_CHARS)]
    file: FILE_NAME = "workloads.yaml"
    method: Literal["auto", "milp", "scale"] = "auto"
    time_limit_s: Annotated[float, Field(ge=1, le=120)] = 30.0


class PlanSummary(_Model):
    id: int
    created_at: datetime
    catalog: str
    catalog_revision: int
    method: str
    status: str
    objective_usd: float | None
    gap: float | None = Field(description="to the lower bound; null when not finite")
    placed: int
    unplaced: int


class PlanOut(PlanSummary):
    result: dict[str, JsonValue] = Field(description="the plan, as isthmus plan --json gives it")


class PlanList(_Model):
    plans: list[PlanSummary]


class AuditOut(_Model):
    id: int = Field(description="arrival order at the control plane; the paging cursor")
    gateway: str
    seq: int
    at: datetime
    tenant: str
    direction: str
    category: str
    action: str
    rule: str
    location: str
    score: float
    content_hash: str
    prev_hash: str
    record_hash: str


class AuditPage(_Model):
    records: list[AuditOut]
    next_after: int | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )
