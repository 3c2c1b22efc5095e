"""What a policy bundle holds: guard policy, sovereignty rules, tenants and routing settings.

Invariants: a bundle's ``content`` validates against the same schemas the fabric and the guard
use (``extra="forbid"``), so a gateway enforces exactly what the control plane compiled;
``content_sha256`` is the SHA-256 of the canonical JSON of ``content``; ``version`` is a
positive integer that only grows (the verifier refuses a bundle whose version is not greater
than the one in force).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from isthmus.bundle.canonical import sha256_hex
from isthmus.fabric.schema import (
    DataClass,
    FabricSpec,
    GroupOrJurisdiction,
    SovereigntyRule,
    Tenant,
)
from isthmus.guard.policy import GuardPolicy

__all__ = ["BundleContent", "PolicyBundle", "Sovereignty", "build_bundle"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Sovereignty(_Spec):
    """The fabric's policy sections: where data may go, and who the tenants are."""

    jurisdiction_groups: dict[GroupOrJurisdiction, tuple[GroupOrJurisdiction, ...]] = Field(
        default_factory=dict
    )
    data_classes: tuple[DataClass, ...] = ()
    policies: tuple[SovereigntyRule, ...] = ()
    tenants: tuple[Tenant, ...] = ()


class BundleContent(_Spec):
    guard: GuardPolicy = GuardPolicy()
    sovereignty: Sovereignty = Sovereignty()
    routing: dict[str, JsonValue] = Field(
        default_factory=dict, description="routing settings, passed to the gateway as given"
    )


class PolicyBundle(_Spec):
    version: Annotated[int, Field(ge=1)]
    created_at: str = Field(description="UTC, ISO 8601")
    content_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    content: BundleContent

    def content_json(self) -> dict[str, Any]:
        return self.content.model_dump(mode="json")

    def content_matches(self) -> bool:
        return sha256_hex(self.content_json()) == self.content_sha256


def build_bundle(
    *,
    version: int,
    fabric: FabricSpec | None = None,
    guard: GuardPolicy | None = None,
    routing: dict[str, JsonValue] | None = None,
    created_at: datetime | None = None,
) -> PolicyBundle:
    """A bundle of ``fabric``'s policy sections, the guard policy and routing settings."""
    sovereignty = (
        Sovereignty(
            jurisdiction_groups=dict(fabric.jurisdiction_groups),
            data_classes=fabric.data_classes,
            policies=fabric.policies,
            tenants=fabric.tenants,
        )
        if fabric is not None
        else Sovereignty()
    )
    content = BundleContent(
        guard=guard or GuardPolicy(), sovereignty=sovereignty, routing=dict(routing or {})
    )
    # round-trip through JSON so the hash is of exactly what a reader will validate
    content = BundleContent.model_validate(content.model_dump(mode="json"))
    when = (created_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return PolicyBundle(
        version=version,
        created_at=when.isoformat().replace("+00:00", "Z"),
        content_sha256=sha256_hex(content.model_dump(mode="json")),
        content=content,
    )
