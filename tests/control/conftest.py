"""Fixtures for the control plane: a plane on SQLite in ``tmp_path``, driven in-process.

``two_tenant_fabric`` is the test fixture fabric with a second tenant, so tests can check that
one tenant's key never sees the other's resources. Real-service tests (PostgreSQL, NATS) use
``postgres_url`` and ``nats_url``; each isolates itself in a database or namespace of its own.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from isthmus.control import ControlConfig, ControlPlane, create_app
from isthmus.control.signing import load_or_create_signing_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ADMIN = "admin-token-for-tests"
OPERATOR = "operator-token-for-tests"
BANK_KEY = "bank-fabric-key"  # its digest is written into the fabric below
POSTGRES_ADMIN_URL = os.environ.get(
    "ISTHMUS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NATS_URL = os.environ.get("ISTHMUS_TEST_NATS_URL", "nats://127.0.0.1:4222")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def fabric_text() -> str:
    from isthmus.gateway.tenants import hash_key

    text = (FIXTURES / "mini.yaml").read_text()
    text = text.replace(
        "0b1a5a3f0b6a8d1d5d6c2c6f2e0c9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f", hash_key(BANK_KEY)
    )
    return text.replace("tenants:\n", "tenants:\n  - {name: clinic, default_data_class: phi}\n")


def make_plane(tmp_path: Path, **options: object) -> ControlPlane:
    key, _ = load_or_create_signing_key(tmp_path / "control.key")
    settings: dict[str, object] = {
        "db_url": f"sqlite:///{tmp_path / 'control.db'}",
        "admin_tokens": (ADMIN,),
        "operator_tokens": (OPERATOR,),
    }
    settings.update(options)
    return ControlPlane.open(ControlConfig(**settings), key)  # type: ignore[arg-type]


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    plane = make_plane(tmp_path)
    try:
        yield plane
    finally:
        plane.close()


@pytest.fixture
def client(plane: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(plane)) as test_client:
        yield test_client


@pytest.fixture
def seeded(client: TestClient) -> TestClient:
    """The client, with the two-tenant fabric in force."""
    answer = client.put("/v1/fabric", headers=bearer(ADMIN), json={"yaml": fabric_text()})
    assert answer.status_code == 200, answer.text
    return client


def _under_ci() -> bool:
    return bool(os.environ.get("CI"))


def _unreachable(what: str, detail: str) -> None:
    message = f"{what} is unreachable: {detail}"
    if _under_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, dropped after it."""
    name = f"isthmus_control_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        _unreachable(f"PostgreSQL at {POSTGRES_ADMIN_URL}", " ".join(str(exc).split()))
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def nats_url() -> str:
    host, port = NATS_URL.removeprefix("nats://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError as exc:
        _unreachable(f"NATS at {NATS_URL}", str(exc))
    return NATS_URL


@pytest.fixture
def namespace() -> str:
    """A namespace no other run uses, so streams and consumers start empty."""
    return f"t{secrets.token_hex(6)}"
