"""The wire contract between the control plane and the gateways (NATS JetStream).

One module names every stream, subject, bucket and message shape, so the publisher and the
subscriber cannot drift apart. Every name derives from a namespace (``Names``; default
``isthmus``), so several deployments — or test runs — share one NATS server without seeing
each other's messages.

- **Bundles** (control plane -> gateways): stream ``<NS>_BUNDLES``, subject ``<ns>.bundles``;
  the payload is exactly the bytes ``isthmus.bundle.sign_bundle`` produced; the stream keeps
  the last few messages, so a gateway that (re)connects reads the newest bundle first. A
  gateway verifies before it applies; a payload is never trusted for where it came from.
- **Gateway status** (gateways -> control plane): key-value bucket ``<ns>_gateways``; key =
  gateway id, value = ``GatewayStatus`` JSON, written when a bundle is applied and as a
  heartbeat; the control plane reads it to show which gateway runs which version.
- **Audit** (gateways -> control plane): stream ``<NS>_AUDIT``, subjects
  ``<ns>.audit.<gateway>``; one message per audit record, with the JetStream message id
  ``<gateway>:<seq>`` (the record's number in the gateway's local chain), so a record re-sent
  inside the duplicate window is dropped by the server, and the control plane's table keys on
  (gateway, seq) for the rest: every record lands exactly once.
- **Telemetry** (gateways -> control plane): stream ``<NS>_TELEMETRY``, subjects
  ``<ns>.telemetry.<gateway>``, message id ``<gateway>:<n>``: per-tenant usage snapshots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_NAMESPACE", "GATEWAY_ID", "GatewayStatus", "Names"]

DEFAULT_NAMESPACE = "isthmus"
# a gateway id (or namespace) is one NATS subject token and one KV key
GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _token(value: str, what: str) -> str:
    if not GATEWAY_ID.match(value):
        raise ValueError(f"{what} {value!r} must match {GATEWAY_ID.pattern}")
    return value


@dataclass(frozen=True)
class Names:
    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        _token(self.namespace, "namespace")

    @property
    def bundle_stream(self) -> str:
        return f"{self.namespace.upper()}_BUNDLES"

    @property
    def bundle_subject(self) -> str:
        return f"{self.namespace}.bundles"

    @property
    def status_bucket(self) -> str:
        return f"{self.namespace}_gateways"

    @property
    def audit_stream(self) -> str:
        return f"{self.namespace.upper()}_AUDIT"

    @property
    def audit_subjects(self) -> str:
        return f"{self.namespace}.audit.>"

    def audit_subject(self, gateway: str) -> str:
        return f"{self.namespace}.audit.{_token(gateway, 'gateway id')}"

    @staticmethod
    def msg_id(gateway: str, seq: int) -> str:
        return f"{_token(gateway, 'gateway id')}:{seq}"

    @property
    def telemetry_stream(self) -> str:
        return f"{self.namespace.upper()}_TELEMETRY"

    @property
    def telemetry_subjects(self) -> str:
        return f"{self.namespace}.telemetry.>"

    def telemetry_subject(self, gateway: str) -> str:
        return f"{self.namespace}.telemetry.{_token(gateway, 'gateway id')}"


class GatewayStatus(BaseModel):
    """What a gateway reports about itself in the status bucket."""

    model_config = ConfigDict(extra="forbid")

    gateway: str = Field(pattern=GATEWAY_ID.pattern)
    site: str
    bundle_version: int | None = Field(default=None, description="the bundle in force")
    bundle_sha256: str | None = None
    applied_at: float | None = Field(default=None, description="unix seconds, when applied")
    seen_at: float = Field(description="unix seconds of this heartbeat")
    audit_pending: int = Field(default=0, description="records not yet acknowledged upstream")
    bundle_refused: str | None = Field(
        default=None, description="why the last bundle offered since the one in force was refused"
    )
