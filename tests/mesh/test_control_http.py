"""The newest bundle over the control plane's HTTP API, against a stub control plane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from isthmus.bundle import BundleStore
from isthmus.fabric.catalog import Fabric
from isthmus.mesh.agent import AgentSettings, GatewayAgent
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.control_http import ControlUnreachable, fetch_latest_bundle
from isthmus.serving import bind_socket, serve_on_loop
from tests.mesh.conftest import Signer, chosen_site, custody, make_gateway, without_pii


class StubControlPlane:
    """Answers GET /v1/bundles/latest with whatever bundle it holds (404 when none)."""

    def __init__(self) -> None:
        self.bundle: bytes | None = None
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.requests += 1
        if scope["path"] != "/v1/bundles/latest" or self.bundle is None:
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
            assert await fetch_latest_bundle(url) is None
            stub.bundle = signer.sign(1, fabric)
            assert await fetch_latest_bundle(url + "/") == stub.bundle
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
            settings = AgentSettings(gateway_id="gw", control_url=url, control_poll_s=0.05)
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
