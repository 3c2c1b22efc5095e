"""The paths the probes and Prometheus ask for are ones the gateway and control plane serve:
each is requested from the real application, driven in-process, and must answer 200."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from isthmus.control import ControlConfig, ControlPlane, create_app
from isthmus.control.signing import load_or_create_signing_key
from isthmus.fabric.loader import load_fabric
from isthmus.gateway import Gateway, GatewayConfig

from .manifests import Container, isthmus_containers, lay_out_fabric, option

CONTAINERS = isthmus_containers()
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def probe_paths(container: Container) -> set[str]:
    paths = {container.spec[p]["httpGet"]["path"] for p in PROBES if p in container.spec}
    assert paths, f"{container.id} has no HTTP probe"
    return paths


def get_all(gateway: Gateway, paths: set[str]) -> dict[str, httpx.Response]:
    async def go() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=gateway)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return {path: await client.get(path) for path in sorted(paths)}

    return asyncio.run(go())


@pytest.fixture(scope="module")
def fabric_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    container = CONTAINERS[0]
    return lay_out_fabric(container, tmp_path_factory.mktemp("fabric"))


@pytest.mark.parametrize(
    "container", [c for c in CONTAINERS if c.argv[0] == "gateway"], ids=lambda c: c.id
)
def test_the_gateway_answers_its_probes_and_prometheus(
    container: Container, fabric_path: Path
) -> None:
    config = GatewayConfig(
        site=option(container, "--site"), health_interval_s=0, log_decisions=False
    )
    gateway = Gateway(load_fabric(fabric_path), config)
    annotations = container.workload["spec"]["template"]["metadata"]["annotations"]
    metrics = annotations["prometheus.io/path"]
    answers = get_all(gateway, probe_paths(container) | {metrics})
    for path, answer in answers.items():
        assert answer.status_code == 200, (path, answer.text)
    assert answers[metrics].headers["content-type"].startswith("text/plain")
    assert "# TYPE isthmus_requests_total counter" in answers[metrics].text


@pytest.fixture
def control_client(tmp_path: Path) -> Iterator[TestClient]:
    key, _ = load_or_create_signing_key(tmp_path / "control-signing.key")
    plane = ControlPlane.open(ControlConfig(db_url=f"sqlite:///{tmp_path / 'c.db'}"), key)
    try:
        with TestClient(create_app(plane)) as client:
            yield client
    finally:
        plane.close()


def test_the_control_plane_answers_its_probes(control_client: TestClient) -> None:
    (control,) = [c for c in CONTAINERS if c.argv[0] == "control"]
    for path in probe_paths(control):
        answer = control_client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    readiness = control.spec["readinessProbe"]["httpGet"]["path"]
    assert control_client.get(readiness).json()["database"] == "ok"
