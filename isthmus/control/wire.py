"""What gateways send on the audit and telemetry streams, as the control plane reads it.

The subjects and message ids are fixed by ``isthmus.mesh.protocol``; this module fixes the
payloads and turns each message into table rows, or refuses it with a reason.

- **Audit**: one message per record, the JSON of ``AuditRecord.as_dict()`` (``isthmus.audit``);
  the gateway is the last token of the subject, never a field a payload could forge.
- **Telemetry**: one ``UsageSnapshot`` per message: the usage each tenant caused at that
  gateway *during* the ``period_s`` seconds ending at ``at`` (counts, not running totals, so
  they add up across gateways and periods), numbered ``n`` = 1, 2, 3, … per gateway (the same
  ``n`` as in the message id ``<gateway>:<n>``).

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

    tenant: _Text
    requests: _Count = 0
    prompt_tokens: _Count = 0
    completion_tokens: _Count = 0
    cached_tokens: _Count = 0
    usd: Annotated[float, Field(ge=0)] = 0.0


class UsageSnapshot(BaseModel):
    """Per-tenant usage at one gateway over one period (see the module docstring)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    n: Annotated[int, Field(ge=1, le=2**62)]
    at: datetime = Field(description="end of the period: ISO 8601 with zone, or unix seconds")
    period_s: Annotated[float, Field(ge=0)] = 0.0
    tenants: list[TenantUsage] = Field(default_factory=list)


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
    row["at"] = as_utc(record.at)
    row["gateway"] = gateway
    return row


def usage_rows(subject: str, payload: bytes) -> list[dict[str, Any]]:
    gateway = gateway_of(subject)
    try:
        snapshot = UsageSnapshot.model_validate_json(payload)
    except ValidationError as exc:
        raise WireError(f"usage snapshot from {gateway}: {_first_error(exc)}") from None
    at = as_utc(snapshot.at)
    merged: dict[str, TenantUsage] = {}
    for entry in snapshot.tenants:  # a tenant listed twice in one snapshot counts once, summed
        seen = merged.get(entry.tenant)
        merged[entry.tenant] = (
            entry
            if seen is None
            else TenantUsage(
                tenant=entry.tenant,
                requests=seen.requests + entry.requests,
                prompt_tokens=seen.prompt_tokens + entry.prompt_tokens,
                completion_tokens=seen.completion_tokens + entry.completion_tokens,
                cached_tokens=seen.cached_tokens + entry.cached_tokens,
                usd=seen.usd + entry.usd,
            )
        )
    for entry in merged.values():
        _no_nul(gateway, {"tenant": entry.tenant})
    return [
        {
            "gateway": gateway,
            "n": snapshot.n,
            "at": at,
            "period_s": snapshot.period_s,
            **entry.model_dump(),
        }
        for entry in merged.values()
    ]
