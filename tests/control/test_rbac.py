"""Who may do what: the role matrix, and a tenant key never reaching another tenant."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from isthmus.control import create_app
from tests.control.conftest import ADMIN, BANK_KEY, OPERATOR, bearer, fabric_text, make_plane

# (method, path, body) -> expected status for admin, operator, tenant "bank"
MATRIX: list[tuple[str, str, object, tuple[int, int, int]]] = [
    ("GET", "/v1/whoami", None, (200, 200, 200)),
    ("GET", "/v1/fabric", None, (200, 200, 403)),
    ("PUT", "/v1/fabric", {"yaml": fabric_text()}, (200, 403, 403)),
    ("GET", "/v1/policy/guard", None, (200, 200, 403)),
    ("PUT", "/v1/policy/guard", {}, (200, 403, 403)),
    ("GET", "/v1/policy/routing", None, (200, 200, 403)),
    ("PUT", "/v1/policy/routing", {"settings": {"k": 1}}, (200, 403, 403)),
    ("GET", "/v1/tenants", None, (200, 200, 200)),
    ("GET", "/v1/tenants/bank", None, (200, 200, 200)),
    ("GET", "/v1/tenants/clinic", None, (200, 200, 404)),
    ("GET", "/v1/tenants/bank/keys", None, (200, 200, 200)),
    ("GET", "/v1/tenants/clinic/keys", None, (200, 200, 404)),
    ("POST", "/v1/tenants/bank/keys", {}, (201, 403, 403)),
    ("DELETE", "/v1/tenants/clinic/keys/k9", None, (404, 403, 403)),
    ("GET", "/v1/tenants/bank/usage", None, (200, 200, 200)),
    ("GET", "/v1/tenants/clinic/usage", None, (200, 200, 404)),
    ("GET", "/v1/audit", None, (200, 200, 200)),
    ("GET", "/v1/audit?tenant=clinic", None, (200, 200, 403)),
    ("POST", "/v1/bundles", None, (201, 201, 403)),
    ("GET", "/v1/bundles", None, (200, 200, 403)),
    ("GET", "/v1/gateways", None, (200, 200, 403)),
    ("POST", "/v1/plans", {"workloads_yaml": "workloads: []"}, (201, 201, 403)),
    ("GET", "/v1/plans", None, (200, 200, 403)),
]


@pytest.mark.parametrize(("method", "path", "body", "expected"), MATRIX)
def test_role_matrix(
    seeded: TestClient, method: str, path: str, body: object, expected: tuple[int, int, int]
) -> None:
    for token, status in zip((ADMIN, OPERATOR, BANK_KEY), expected, strict=True):
        answer = seeded.request(method, path, headers=bearer(token), json=body)
        assert answer.status_code == status, (token, answer.text)
        if status >= 400:
            error = answer.json()["error"]
            assert set(error) >= {"message", "type", "code"}


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_token"),
        ({"Authorization": "Basic YWRtaW46eA=="}, "invalid_authorization_header"),
        ({"Authorization": "Bearer "}, "invalid_authorization_header"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ],
)
def test_missing_or_wrong_token_is_401(
    seeded: TestClient, headers: dict[str, str], code: str
) -> None:
    answer = seeded.get("/v1/fabric", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json() == {
        "error": {"message": answer.json()["error"]["message"], "type": "authentication_error",
                  "code": code}
    }  # fmt: skip


def test_another_tenants_resources_answer_like_missing_ones(seeded: TestClient) -> None:
    """A tenant key learns nothing about other tenants: 'clinic' looks like 'nobody'."""
    for suffix in ("", "/keys", "/usage"):
        other = seeded.get(f"/v1/tenants/clinic{suffix}", headers=bearer(BANK_KEY))
        missing = seeded.get(f"/v1/tenants/nobody{suffix}", headers=bearer(BANK_KEY))
        assert other.status_code == missing.status_code == 404
        assert other.json()["error"]["code"] == missing.json()["error"]["code"] == "unknown_tenant"
    listing = seeded.get("/v1/tenants", headers=bearer(BANK_KEY)).json()
    assert [t["name"] for t in listing["tenants"]] == ["bank"]


def test_tenant_sees_only_its_own_keys(seeded: TestClient) -> None:
    created = seeded.post("/v1/tenants/clinic/keys", headers=bearer(ADMIN), json={"id": "c1"})
    assert created.status_code == 201
    clinic_key = created.json()["secret"]
    mine = seeded.get("/v1/tenants/clinic/keys", headers=bearer(clinic_key)).json()
    assert [k["id"] for k in mine["keys"]] == ["c1"]
    assert all("secret" not in k and "sha256" not in k for k in mine["keys"])
    assert seeded.get("/v1/tenants/bank/keys", headers=bearer(clinic_key)).status_code == 404
    assert seeded.get("/v1/whoami", headers=bearer(clinic_key)).json() == {
        "role": "tenant", "tenant": "clinic", "key_id": "c1",
    }  # fmt: skip


def test_revoked_key_no_longer_authenticates(seeded: TestClient) -> None:
    created = seeded.post("/v1/tenants/bank/keys", headers=bearer(ADMIN)).json()
    key_id, secret = created["key"]["id"], created["secret"]
    assert seeded.get("/v1/whoami", headers=bearer(secret)).status_code == 200
    revoked = seeded.delete(f"/v1/tenants/bank/keys/{key_id}", headers=bearer(ADMIN))
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    assert seeded.get("/v1/whoami", headers=bearer(secret)).status_code == 401
    # a key from the fabric can be revoked too
    assert seeded.delete("/v1/tenants/bank/keys/k1", headers=bearer(ADMIN)).status_code == 200
    assert seeded.get("/v1/whoami", headers=bearer(BANK_KEY)).status_code == 401


def test_duplicate_key_id_is_409(seeded: TestClient) -> None:
    first = seeded.post("/v1/tenants/bank/keys", headers=bearer(ADMIN), json={"id": "same"})
    again = seeded.post("/v1/tenants/bank/keys", headers=bearer(ADMIN), json={"id": "same"})
    fabric_id = seeded.post("/v1/tenants/bank/keys", headers=bearer(ADMIN), json={"id": "k1"})
    assert (first.status_code, again.status_code, fabric_id.status_code) == (201, 409, 409)


def test_a_gateway_token_reads_the_newest_bundle_and_nothing_else(tmp_path: Path) -> None:
    gateway_token = "gateway-token-for-tests"
    with TestClient(create_app(make_plane(tmp_path, gateway_tokens=(gateway_token,)))) as client:
        client.put(
            "/v1/fabric", json={"yaml": fabric_text()}, headers=bearer(ADMIN)
        ).raise_for_status()
        client.post("/v1/bundles", json={}, headers=bearer(ADMIN)).raise_for_status()
        as_gateway = bearer(gateway_token)
        assert client.get("/v1/bundles/latest", headers=as_gateway).status_code == 200
        assert client.get("/v1/signing-key", headers=as_gateway).status_code == 200
        assert client.get("/v1/whoami", headers=as_gateway).json()["role"] == "gateway"
        for path in ("/v1/tenants", "/v1/tenants/bank/keys", "/v1/audit", "/v1/gateways",
                     "/v1/bundles", "/v1/bundles/1", "/v1/fabric", "/v1/plans"):  # fmt: skip
            answer = client.get(path, headers=as_gateway)
            assert answer.status_code == 403, (path, answer.status_code)
        assert client.post("/v1/bundles", json={}, headers=as_gateway).status_code == 403
