"""Fixtures for the store: a small fabric that uses every section, and a database per backend.

``store_url`` is parametrised over SQLite (a file in ``tmp_path``) and PostgreSQL, so the same
tests run on both. The PostgreSQL case is marked ``postgres`` and ``slow``; it uses a database
created for this test run (``isthmus_test_<random>``) and dropped afterwards, and the schema is
emptied after each test. An unreachable server skips those tests, unless ``CI`` is set: under
CI it is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text

POSTGRES_ADMIN_URL = os.environ.get(
    "ISTHMUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

# Every section, in an order that is not alphabetical, with text that YAML likes to misread
# ('NO' is Norway, '1e5' and 'true' are text), Unicode, a multi-line description, nested groups.
SMALL_FABRIC = """\
version: 1
name: store-test
description: |
  A fabric for the store's tests.
  Second line: with a colon, and trailing text.
jurisdiction_groups:
  NORDICS: [NO, SE, DK, FI, IS]
  EU: [DE, FR, NL, SE, DK, FI, IE]
  EEA: [EU, NO, IS, LI]
data_classes:
  - {name: public, level: 0}
  - {name: pii, level: 3, description: personal data}
  - {name: internal, level: 1}
sites:
  - name: oslo-colo
    kind: colo
    provider: green-mountain
    city: Oslo
    country: NO
    lat_deg: 59.91
    lon_deg: 10.75
    failure_domain: nordic-1
    accelerators:
      - {type: H100, count: 16, allocated: 4, memory_gb: 80, on_demand_usd_per_device_hour: 2.1,
         reserved_usd_per_device_hour: 1.4}
      - {type: L4, count: 8, spot_usd_per_device_hour: 0.25}
    carbon_g_per_kwh: 11
    tags: {tier: "3", renewable: "true", scale: "1e5", owner: "Fjord AS"}
  - name: aws-eu-central-1
    kind: cloud_region
    provider: aws
    city: Frankfurt am Main
    country: DE
    lat_deg: 50.11
    lon_deg: 8.68
    cloud_region_id: aws:eu-central-1
    accelerators:
      - {type: H100, count: 64, on_demand_usd_per_device_hour: 6.88}
    tags: {key_custody: provider}
  - name: zurich-edge
    kind: edge
    provider: swisscom
    city: Zürich
    country: CH
    lat_deg: 47.37
    lon_deg: 8.54
    description: "Edge PoP: «Zürich-Oerlikon»"
  - name: aws-us-west-2
    kind: cloud_region
    provider: aws
    city: Boardman
    country: US
    jurisdiction: US-OR
    lat_deg: 45.84
    lon_deg: -119.7
links:
  - {src: OSL, dst: oslo-colo, rtt_ms: 2.5, private: true, egress_usd_per_gb: 0}
  - src: aws-eu-central-1
    dst: oslo-colo
    rtt_ms: 18.25
    bandwidth_gbps: 100
    egress_usd_per_gb: 0.02
    transits: [DE, DK, SE]
    bidirectional: false
    description: leased line
  - {src: FRA, dst: aws-eu-central-1, rtt_ms: 1.2}
metros:
  - {name: OSL, city: Oslo, country: NO, lat_deg: 59.91, lon_deg: 10.75}
  - {name: FRA, city: Frankfurt, country: DE, lat_deg: 50.03, lon_deg: 8.56, jurisdiction: DE-HE}
models:
  - name: qwen2.5-7b
    family: qwen
    params_b: 7.6
    context_tokens: 32768
    licence: apache-2.0
    quality: {chat: 0.55, code: 0.5}
    hosting: {jurisdictions: [EEA, CH], site_kinds: [colo, edge, cloud_region]}
    profiles:
      - {accelerator: H100, prefill_tokens_per_s: 15000, decode_tokens_per_s: 140,
         kv_cache_tokens: 500000}
      - {accelerator: L4, devices_per_replica: 2, prefill_tokens_per_s: 3000.5,
         decode_tokens_per_s: 35, max_batch_size: 16}
  - name: mixtral-8x7b
    params_b: 46.7
    active_params_b: 12.9
    licence: apache-2.0
  - name: closed-xl
    kind: chat
    params_b: 1000
    licence: proprietary
    open_weights: false
    provider: aws
    hosting: {providers: [aws]}
    usd_per_million_input_tokens: 3
    usd_per_million_output_tokens: 15
  - {name: bge-m3, kind: embedding, params_b: 0.57, licence: mit, context_tokens: 8192}
aliases:
  chat-small: [qwen2.5-7b, mixtral-8x7b]
  chat-large: [closed-xl]
  embed: [bge-m3]
endpoints:
  - name: osl-qwen
    model: qwen2.5-7b
    site: oslo-colo
    engine: vllm
    url: http://10.0.0.5:8000/v1
    accelerator: H100
    devices: 1
    max_concurrency: 128
  - name: fra-closed
    model: closed-xl
    site: aws-eu-central-1
    engine: openai
    url: https://api.example.com/v1
    served_model_name: closed-xl-2025-01
    api_key_env: CLOSED_XL_KEY
  - {name: zrh-embed, model: bge-m3, site: zurich-edge, engine: llamacpp,
     url: "http://zrh.example:8080", kv_cache_tokens: 4096}
datasets:
  - {name: customers, site: oslo-colo, size_gb: 120.5, data_class: pii, residency: [NO, EEA]}
  - {name: docs, site: aws-eu-central-1, size_gb: 0, data_class: public,
     description: product manuals}
tenants:
  - name: bank
    default_data_class: pii
    home_site: oslo-colo
    allowed_models: [chat-small, "qwen*"]
    api_keys:
      - {id: k1, sha256: 0b1a5a3f0b6a8d1d5d6c2c6f2e0c9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f}
      - {id: k2, sha256: ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff}
    budget: {period: day, tokens: 1000000, usd: 250.5}
    rpm_limit: 600
    tpm_limit: 200000
    max_body_bytes: 2097152
    deadline_ms: 30000
    objective: {kind: weighted, ttft_slo_ms: 400, ttft_weight: 0.5, cost_weight: 0.3,
                quality_weight: 0.2}
  - {name: public-web, default_data_class: public}
policies:
  - name: gdpr-pii
    description: Personal data stays in the EEA, on private paths, with open models.
    data_classes: [pii]
    process_in: [EEA]
    store_in: [EEA]
    transit_in: [EEA, CH]
    require_private_path: true
    sites:
      site_kinds: [colo, on_prem]
      providers: [green-mountain]
      deny_providers: [aws]
      require_tags: {tier: "3"}
      deny_tags: {key_custody: provider}
    models:
      allow: ["qwen*", mixtral-8x7b]
      deny: [closed-xl]
      require_open_weights: true
      hosted_in: [NORDICS]
  - {name: open, data_classes: [public, internal]}
"""


@pytest.fixture(scope="session")
def small_fabric_text() -> str:
    """``SMALL_FABRIC``: YAML using every section of the schema."""
    return SMALL_FABRIC


@pytest.fixture(scope="session")
def small_fabric() -> Fabric:
    """The fabric of ``SMALL_FABRIC``, as if loaded from ``small.yaml``."""
    return load_fabric_text(SMALL_FABRIC, "small.yaml")


def _under_ci() -> bool:
    return bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a PostgreSQL database created for this test run, dropped at its end."""
    name = f"isthmus_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        message = f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {reason}"
        if _under_ci():
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(f"{message}; start it, or set ISTHMUS_TEST_POSTGRES_URL")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
            yield f"{base}/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _empty_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.slow]),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    url: str = request.getfixturevalue("postgres_database")
    try:
        yield url
    finally:
        _empty_schema(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An empty SQLite database file (for tests that do not depend on the backend)."""
    return f"sqlite:///{tmp_path / 'store.db'}"
