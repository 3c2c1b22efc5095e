"""The control plane's tables, beside the catalog store's in the same database.

Like the audit log (``isthmus.audit.log``) they have their own ``MetaData`` and are created
with ``create_all``: every table is either append-only or keyed by a natural key, so no
migration of existing rows has been needed yet.

Invariants:

- Secrets are never stored: ``control_tokens`` and ``control_api_keys`` hold SHA-256 digests.
- ``control_bundles`` holds the exact signed bytes of every bundle, by version; versions only
  grow; ``published_at`` is empty until NATS has acknowledged the bundle.
- ``control_audit`` and ``control_usage`` are keyed on what the gateway numbered —
  (gateway, seq) and (gateway, n, tenant) — so a record delivered twice is stored once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

__all__ = [
    "api_keys",
    "audit",
    "bundles",
    "gateways",
    "metadata",
    "plans",
    "settings",
    "tokens",
    "usage",
]

metadata = MetaData()
NAME = 128


def _json() -> TypeEngine[Any]:
    return JSON().with_variant(JSONB(), "postgresql")


def _serial() -> TypeEngine[int]:
    """A 64-bit key on PostgreSQL; SQLite only auto-numbers ``INTEGER PRIMARY KEY``."""
    return BigInteger().with_variant(Integer(), "sqlite")


def _when(name: str, *, nullable: bool = False) -> Column[Any]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


tokens = Table(
    "control_tokens",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    _when("created_at"),
)

settings = Table(
    "control_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", _json(), nullable=False),
    _when("updated_at"),
)

api_keys = Table(
    "control_api_keys",
    metadata,
    Column("tenant", String(NAME), primary_key=True),
    Column("key_id", String(NAME), primary_key=True),
    Column("sha256", String(64), nullable=True, index=True),
    Column("source", String(16), nullable=False),  # control | fabric (a revocation only)
    _when("created_at"),
    _when("revoked_at", nullable=True),
)

bundles = Table(
    "control_bundles",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    _when("created_at"),
    Column("content_sha256", String(64), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("catalog", String(NAME), nullable=True),
    Column("catalog_revision", Integer, nullable=True),
    Column("signed", LargeBinary, nullable=False),
    _when("published_at", nullable=True),
)

plans = Table(
    "control_plans",
    metadata,
    Column("id", _serial(), primary_key=True, autoincrement=True),
    _when("created_at"),
    Column("catalog", String(NAME), nullable=False),
    Column("catalog_revision", Integer, nullable=False),
    Column("method", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("objective_usd", Float, nullable=False),
    Column("gap", Float, nullable=False),
    Column("placed", Integer, nullable=False),
    Column("unplaced", Integer, nullable=False),
    Column("workloads_yaml", Text, nullable=False),
    Column("result", _json(), nullable=False),
)

gateways = Table(
    "control_gateways",
    metadata,
    Column("gateway", String(64), primary_key=True),
    Column("status", _json(), nullable=False),
    Column("seen_at", Float, nullable=False),
    _when("read_at"),
)

audit = Table(
    "control_audit",
    metadata,
    Column("id", _serial(), primary_key=True, autoincrement=True),
    Column("gateway", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    _when("at"),
    Column("tenant", String(NAME), nullable=False),
    Column("direction", String(16), nullable=False),
    Column("category", String(64), nullable=False),
    Column("action", String(8), nullable=False),
    Column("rule", String(NAME), nullable=False),
    Column("location", String(NAME), nullable=False),
    Column("score", Float, nullable=False),
    Column("content_hash", String(80), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    UniqueConstraint("gateway", "seq", name="control_audit_gateway_seq"),
    Index("control_audit_tenant_id", "tenant", "id"),
)

usage = Table(
    "control_usage",
    metadata,
    Column("id", _serial(), primary_key=True, autoincrement=True),
    Column("gateway", String(64), nullable=False),
    Column("n", BigInteger, nullable=False),
    Column("tenant", String(NAME), nullable=False),
    _when("at"),
    Column("tokens", BigInteger, nullable=False),
    Column("usd", Float, nullable=False),
    UniqueConstraint("gateway", "n", "tenant", name="control_usage_gateway_n_tenant"),
    Index("control_usage_tenant_gateway_n", "tenant", "gateway", "n"),
)
