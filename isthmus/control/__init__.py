"""The control plane: one place that governs every site's gateway.

An admin REST API (``create_app``, FastAPI, OpenAPI at ``/openapi.json``) over the store's
database — the fabric in force, guard policy and routing settings, tenants and API keys,
signed bundles, plans, usage and audit — and the control plane's side of NATS JetStream:
bundles published to the gateways, their status read back, their audit records and usage
ingested exactly once.

Modules: ``plane`` (the operations), ``auth`` (roles), ``routes/`` (one module per resource),
``models`` (request and response bodies), ``errors`` (error bodies), ``limits`` (body size),
``database`` and ``records`` (tables in ``tables``), ``mesh`` (NATS), ``ingest`` (stream to
table, exactly once), ``wire`` (what gateways send), ``signing`` (the key on disk).
"""

from isthmus.control.app import create_app
from isthmus.control.auth import Principal, Role
from isthmus.control.ingest import BatchResult, StreamIngest
from isthmus.control.plane import ControlConfig, ControlPlane
from isthmus.control.signing import load_or_create_signing_key
from isthmus.control.wire import TenantUsage, UsageSnapshot

__all__ = [
    "BatchResult",
    "ControlConfig",
    "ControlPlane",
    "Principal",
    "Role",
    "StreamIngest",
    "TenantUsage",
    "UsageSnapshot",
    "create_app",
    "load_or_create_signing_key",
]
