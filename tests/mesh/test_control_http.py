"""The newest bundle over the control plane's HTTP API, against a stub control plane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from isthmus.bundle import BundleStore
from isthmus.fabric.catalog import Fabric
from isthmus.mesh.agent import AgentSettings, GatewayAgent
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.control_http import ControlUnreachable, fetch_latest_bundle
from isthmus.serving import bind_socket, serve_on_loop
from tests.mesh.conftest import Signer, chosen_site, custody, make_gateway, without_pii

TOKEN = "operator-token"


class StubControlPlane:
    """Answers GET /v1/bundles/latest with whatever bundle it holds (404 when none)."""

    def __init__(self) -> None:
        self.bundle: bytes | None = None
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        authorization = dict(scope["headers"]).get(b"authorization")
        if authorization != f"Bearer {TOKEN}".encode():
            status, body = 401, b'{"error": "invalid token"}'
        elif scope["path"] != "/v1/bundles/latest" or self.bundle is None:
            status, body = 404, b'{"error": "no bundle"}'
        else:
            status, body = 200, self.bundle
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(app: StubControlPlane) -> AsyncIterator[str]:
    server, task, port = await serve_on_loop(app, "127.0.0.1", 0, name="control", lifespan="off")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


def closed_port() -> int:
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_fetch_returns_the_bytes_none_without_a_bundle_and_fails_when_unreachable(
    signer: Signer, fabric: Fabric
) -> None:
    async def main() -> None:
        stub = StubControlPlane()
        async with serving(stub) as url:
            assert await fetch_latest_bundle(url, token=TOKEN) is None
            stub.bundle = signer.sign(1, fabric)
            assert await fetch_latest_bundle(url + "/", token=TOKEN) == stub.bundle
            with pytest.raises(ControlUnreachable, match="ISTHMUS_CONTROL_TOKEN"):
                await fetch_latest_bundle(url)
            with pytest.raises(ControlUnreachable, match="refused"):
                await fetch_latest_bundle(url, token="wrong")
        with pytest.raises(ControlUnreachable, match="cannot reach"):
            await fetch_latest_bundle(f"http://127.0.0.1:{closed_port()}", timeout_s=1)

    asyncio.run(main())


def test_without_nats_the_gateway_follows_the_control_plane_over_http(
    tmp_path: Path, signer: Signer, fabric: Fabric
) -> None:
    async def main() -> None:
        stub = StubControlPlane()
        stub.bundle = signer.sign(1, custody(fabric, "customer"))
        gateway = make_gateway(fabric)
        async with serving(stub) as url:
            settings = AgentSettings(
                gateway_id="gw", control_url=url, control_token=TOKEN, control_poll_s=0.05
            )
            agent = GatewayAgent(
                gateway, settings, BundleApplier(gateway, BundleStore(tmp_path, [signer.public]))
            )
            await agent.bootstrap()  # at start-up, before serving
            assert chosen_site(gateway) == "aws-eu-central-1"
            agent.start()
            stub.bundle = signer.sign(2, without_pii(fabric))
            for _ in range(200):
                if agent.status().bundle_version == 2:
                    break
                await asyncio.sleep(0.02)
            await agent.stop()
        assert agent.status().bundle_version == 2
        assert chosen_site(gateway) is None
        assert BundleStore(tmp_path, [signer.public]).load_last_good().version == 2  # type: ignore[union-attr]

    asyncio.run(main())


def test_an_unreachable_control_plane_at_start_leaves_the_last_good_bundle(
    tmp_path: Path, signer: Signer, fabric: Fabric
) -> None:
    BundleStore(tmp_path, [signer.public]).accept(signer.sign(3, custody(fabric, "customer")))
    gateway = make_gateway(fabric)
    settings = AgentSettings(gateway_id="gw", control_url=f"http://127.0.0.1:{closed_port()}")
    agent = GatewayAgent(
        gateway, settings, BundleApplier(gateway, BundleStore(tmp_path, [signer.public]))
    )
    asyncio.run(agent.bootstrap())
    assert agent.status().bundle_version == 3
    assert chosen_site(gateway) == "aws-eu-central-1"


def test_the_gateway_takes_the_newest_bundle_from_the_real_control_plane(
    tmp_path: Path, mini: Fabric
) -> None:
    from isthmus.control import create_app
    from tests.control.conftest import ADMIN, OPERATOR, bearer, fabric_text, make_plane

    plane = make_plane(tmp_path)  # SQLite, no NATS: bundles are stored and served over HTTP
    control_key = plane_public_key(tmp_path)

    async def main() -> None:
        app = create_app(plane)
        server, task, port = await serve_on_loop(app, "127.0.0.1", 0, name="control", lifespan="on")
        url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=url) as client:
                put = await client.put(
                    "/v1/fabric", headers=bearer(ADMIN), json={"yaml": fabric_text()}
                )
                assert put.status_code == 200, put.text
                posted = await client.post("/v1/bundles", headers=bearer(OPERATOR))
                assert posted.status_code == 201, posted.text
            gateway = make_gateway(mini)
            settings = AgentSettings(gateway_id="gw", control_url=url, control_token=OPERATOR)
            store = BundleStore(tmp_path / "gw", [control_key])
            agent = GatewayAgent(gateway, settings, BundleApplier(gateway, store))
            await agent.bootstrap()
            assert agent.status().bundle_version == posted.json()["bundle"]["version"]
            assert "clinic" in gateway.fabric.tenants  # the control plane's tenant list
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(main())
    finally:
        plane.close()


def plane_public_key(directory: Path):  # type: ignore[no-untyped-def]
    from isthmus.bundle import load_private_key

    return load_private_key(directory / "control.key").public_key()
