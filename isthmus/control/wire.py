"""What gateways send on the audit and telemetry streams, as the control plane reads it.

The subjects and message ids are fixed by ``isthmus.mesh.protocol``; this module fixes the
payloads and turns each message into table rows, or refuses it with a reason.

- **Audit**: one message per record, the JSON of ``AuditRecord.as_dict()`` (``isthmus.audit``);
  the gateway is the last token of the subject, never a field a payload could forge.
- **Telemetry**: one ``UsageSnapshot`` per message, as ``isthmus.mesh.telemetry`` writes it:
  ``{"n", "at", "tenants": {name: {"tokens", "usd"}}}``, where each figure is *cumulative* —
  what the tenant used in its current budget period, as that gateway's ledger counts it — and
  ``n`` (the message id's ``<gateway>:<n>``) grows with time. A tenant's usage is therefore the
  sum over gateways of each one's latest snapshot, and a lost snapshot loses nothing.

Invariant: ``audit_row``/``usage_rows`` either return rows that fit the tables (lengths,
types, ranges checked here, so one bad message can never fail a whole batch insert) or raise
``WireError``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from isthmus.control.timeutil import as_utc
from isthmus.mesh.protocol import GATEWAY_ID

__all__ = ["AuditWire", "TenantUsage", "UsageSnapshot", "WireError", "audit_row", "usage_rows"]

_Text = Annotated[str, Field(min_length=1, max_length=128)]
_Count = Annotated[int, Field(ge=0, le=2**62)]


class WireError(ValueError):
    """A message that cannot be stored, and why."""


class AuditWire(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    seq: Annotated[int, Field(ge=1, le=2**62)]
    at: AwareDatetime
    tenant: _Text
    direction: Annotated[str, Field(min_length=1, max_length=16)]
    category: Annotated[str, Field(min_length=1, max_length=64)]
    action: Annotated[str, Field(min_length=1, max_length=8)]
    rule: Annotated[str, Field(max_length=128)]
    location: Annotated[str, Field(max_length=128)]
    score: float
    content_hash: Annotated[str, Field(max_length=80)]
    prev_hash: Annotated[str, Field(max_length=64)]
    record_hash: Annotated[str, Field(min_length=1, max_length=64)]


class TenantUsage(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    tokens: _Count = 0
    usd: Annotated[float, Field(ge=0)] = 0.0


class UsageSnapshot(BaseModel):
    """Per-tenant usage at one gateway (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    n: Annotated[int, Field(ge=1, le=2**62)]
    at: datetime = Field(description="when taken: unix seconds, or ISO 8601")
    tenants: dict[_Text, TenantUsage] = Field(default_factory=dict)


def gateway_of(subject: str) -> str:
    gateway = subject.rsplit(".", 1)[-1]
    if not GATEWAY_ID.match(gateway):
        raise WireError(f"subject {subject!r} does not end in a gateway id")
    return gateway


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"


def _no_nul(gateway: str, row: dict[str, Any]) -> None:
    """PostgreSQL text cannot hold NUL; refusing it here keeps one message from failing a batch."""
    for name, value in row.items():
        if isinstance(value, str) and "\x00" in value:
            raise WireError(f"record from {gateway}: {name} contains a NUL character")


def audit_row(subject: str, payload: bytes) -> dict[str, Any]:
    gateway = gateway_of(subject)
    try:
        record = AuditWire.model_validate_json(payload)
    except ValidationError as exc:
        raise WireError(f"audit record from {gateway}: {_first_error(exc)}") from None
    row = record.model_dump()
    _no_nul(gateway, row)
    row["at"] = _utc(gateway, record.at)
    row["gateway"] = gateway
    return row


def _utc(gateway: str, moment: datetime) -> datetime:
    try:
        return as_utc(moment)
    except OverflowError:
        raise WireError(f"a time from {gateway} is out of range in UTC: {moment!r}") from None


def usage_rows(subject: str, payload: bytes) -> list[dict[str, Any]]:
    gateway = gateway_of(subject)
    try:
        snapshot = UsageSnapshot.model_validate_json(payload)
    except ValidationError as exc:
        raise WireError(f"usage snapshot from {gateway}: {_first_error(exc)}") from None
    at = _utc(gateway, snapshot.at)
    for tenant in snapshot.tenants:
        _no_nul(gateway, {"tenant": tenant})
    return [
        {"gateway": gateway, "n": snapshot.n, "tenant": tenant, "at": at, **usage.model_dump()}
        for tenant, usage in snapshot.tenants.items()
    ]
