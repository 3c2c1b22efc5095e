"""Bundles: built from what is in force, signed with the control plane's key, verifiable."""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi.testclient import TestClient

from isthmus.bundle import verify_bundle
from isthmus.control.plane import ControlPlane
from isthmus.gateway.tenants import hash_key
from tests.control.conftest import ADMIN, OPERATOR, bearer


def _trusted(client: TestClient) -> object:
    pem = client.get("/v1/signing-key").json()["public_key_pem"]
    return load_pem_public_key(pem.encode())


def test_bundle_round_trip_verifies_and_carries_policy_and_active_keys(seeded: TestClient) -> None:
    admin = bearer(ADMIN)
    guard = {"default_action": "flag"}
    assert seeded.put("/v1/policy/guard", headers=admin, json=guard).status_code == 200
    routing = {"settings": {"prefix_weight": 0.7}}
    assert seeded.put("/v1/policy/routing", headers=admin, json=routing).status_code == 200
    created = seeded.post("/v1/tenants/clinic/keys", headers=admin, json={"id": "c1"}).json()
    seeded.delete("/v1/tenants/bank/keys/k1", headers=admin)

    published = seeded.post("/v1/bundles", headers=bearer(OPERATOR))
    assert published.status_code == 201
    assert published.json()["bundle"]["state"] == "not_published"  # no NATS configured
    version = published.json()["bundle"]["version"]
    detail = seeded.get(f"/v1/bundles/{version}", headers=admin).json()

    bundle = verify_bundle(detail["signed"].encode(), [_trusted(seeded)])  # type: ignore[list-item]
    assert bundle.version == version == 1
    assert bundle.content_sha256 == detail["content_sha256"]
    assert bundle.content.guard.default_action == "flag"
    assert bundle.content.routing == {"prefix_weight": 0.7}
    keys = {
        t.name: [(k.id, k.sha256) for k in t.api_keys] for t in bundle.content.sovereignty.tenants
    }
    assert keys == {"bank": [], "clinic": [("c1", hash_key(created["secret"]))]}


def test_versions_grow_and_list_newest_first(seeded: TestClient) -> None:
    for _ in range(3):
        assert seeded.post("/v1/bundles", headers=bearer(ADMIN)).status_code == 201
    listed = seeded.get("/v1/bundles", headers=bearer(ADMIN)).json()["bundles"]
    assert [b["version"] for b in listed] == [3, 2, 1]
    signed = [
        seeded.get(f"/v1/bundles/{v}", headers=bearer(ADMIN)).json()["signed"] for v in (1, 3)
    ]
    trusted = [_trusted(seeded)]
    old = verify_bundle(signed[0].encode(), trusted)  # type: ignore[arg-type]
    new = verify_bundle(signed[1].encode(), trusted, current_version=old.version)  # type: ignore[arg-type]
    assert new.version == 3


def test_signing_key_is_created_once_and_reused(tmp_path: object) -> None:
    from pathlib import Path

    from isthmus.control.signing import load_or_create_signing_key, public_key_path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "k.pem"
    first, created = load_or_create_signing_key(path)
    again, created_again = load_or_create_signing_key(path)
    assert created and not created_again
    assert public_key_path(path).exists()
    assert (path.stat().st_mode & 0o777) == 0o600
    message = b"m"
    first.public_key().verify(again.sign(message), message)


def test_latest_bundle_is_the_signed_bytes(seeded: TestClient) -> None:
    assert seeded.get("/v1/bundles/latest", headers=bearer(ADMIN)).status_code == 404
    for _ in range(2):
        seeded.post("/v1/bundles", headers=bearer(ADMIN))
    latest = seeded.get("/v1/bundles/latest", headers=bearer(OPERATOR))
    assert latest.status_code == 200
    assert verify_bundle(latest.content, [_trusted(seeded)]).version == 2  # type: ignore[list-item]
    assert seeded.get("/v1/bundles/latest").status_code == 401


class _SupervisorWonTheRace:
    """A connected mesh whose background loop publishes every pending bundle the moment the
    request asks: the request's own call then finds nothing left to publish."""

    state = "connected"

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish_pending(self) -> set[int]:
        for row in self.plane.db.unpublished():
            self.plane.db.mark_published(row.version)  # published by "the other caller"
        return set()


def test_a_bundle_published_by_the_background_loop_is_reported_published(
    plane: ControlPlane, seeded: TestClient
) -> None:
    plane.mesh = _SupervisorWonTheRace(plane)
    answer = seeded.post("/v1/bundles", headers=bearer(ADMIN))
    assert answer.status_code == 201
    assert answer.json()["bundle"]["state"] == "published", answer.json()
    assert "unreachable" not in answer.json()["message"]
