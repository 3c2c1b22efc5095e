"""The wire contract between the control plane and the gateways (NATS JetStream).

One module names every stream, subject, bucket and message shape, so the publisher and the
subscriber cannot drift apart.

- **Bundles** (control plane -> gateways): stream ``ISTHMUS_BUNDLES``, subject
  ``isthmus.bundles``; the payload is exactly the bytes ``isthmus.bundle.sign_bundle`` produced;
  the stream keeps the last few messages per subject, so a gateway that (re)connects reads the
  newest bundle first. A gateway verifies before it applies; the payload is never trusted
  because of where it came from.
- **Gateway status** (gateways -> control plane): JetStream key-value bucket
  ``isthmus_gateways``; key = gateway id, value = ``GatewayStatus`` JSON. A gateway writes it
  when it applies a bundle and as a heartbeat; the control plane reads the bucket to show
  which gateway runs which version.
- **Audit** (gateways -> control plane): stream ``ISTHMUS_AUDIT``, subjects
  ``isthmus.audit.<gateway>``; one message per audit record, with the JetStream message id
  ``<gateway>:<seq>`` (the record's sequence number in the gateway's local chain), so a
  re-sent record inside the stream's duplicate window is dropped by the server, and the
  control plane's table keys on (gateway, seq) for the rest: every record lands exactly once.
- **Telemetry** (gateways -> control plane): stream ``ISTHMUS_TELEMETRY``, subjects
  ``isthmus.telemetry.<gateway>``, message id ``<gateway>:<n>``: per-tenant usage snapshots.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AUDIT_STREAM",
    "BUNDLE_STREAM",
    "BUNDLE_SUBJECT",
    "GATEWAY_ID",
    "STATUS_BUCKET",
    "TELEMETRY_STREAM",
    "GatewayStatus",
    "audit_msg_id",
    "audit_subject",
    "telemetry_subject",
]

BUNDLE_STREAM = "ISTHMUS_BUNDLES"
BUNDLE_SUBJECT = "isthmus.bundles"
STATUS_BUCKET = "isthmus_gateways"
AUDIT_STREAM = "ISTHMUS_AUDIT"
AUDIT_SUBJECTS = "isthmus.audit.>"
TELEMETRY_STREAM = "ISTHMUS_TELEMETRY"
TELEMETRY_SUBJECTS = "isthmus.telemetry.>"

# a gateway id is one NATS subject token and one KV key: letters, digits, '-', '_'
GATEWAY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _check(gateway: str) -> str:
    if not GATEWAY_ID.match(gateway):
        raise ValueError(f"gateway id {gateway!r} must match {GATEWAY_ID.pattern}")
    return gateway


def audit_subject(gateway: str) -> str:
    return f"isthmus.audit.{_check(gateway)}"


def audit_msg_id(gateway: str, seq: int) -> str:
    return f"{_check(gateway)}:{seq}"


def telemetry_subject(gateway: str) -> str:
    return f"isthmus.telemetry.{_check(gateway)}"


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
