"""The gateway agent on the real NATS: bundles verified and applied, refusals, status, restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from isthmus.bundle import BundleStore
from isthmus.fabric.catalog import Fabric
from isthmus.gateway import Gateway
from isthmus.mesh.agent import AgentSettings, GatewayAgent
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.protocol import Names
from tests.mesh.conftest import (
    KEY,
    NATS_URL,
    Signer,
    TcpGate,
    chosen_site,
    custody,
    decide,
    make_gateway,
    with_newco,
    without_pii,
)
from tests.mesh.helpers import last_message, publish, status_where, stream_msg_ids, wait_for


def agent_for(
    gateway: Gateway, signer: Signer, state: Path, url: str | None, names: Names
) -> GatewayAgent:
    settings = AgentSettings(
        gateway_id="gw-paris",
        nats_url=url,
        namespace=names.namespace,
        heartbeat_s=0.2,
        telemetry_s=0.2,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )
    applier = BundleApplier(gateway, BundleStore(state, [signer.public]))
    return GatewayAgent(gateway, settings, applier)


def tampered(raw: bytes) -> bytes:
    document = json.loads(raw)
    document["bundle"]["content"]["sovereignty"]["policies"] = []
    return json.dumps(document).encode()


def test_settings_refuse_a_gateway_id_that_is_not_a_subject_token() -> None:
    with pytest.raises(ValueError, match="gateway id"):
        AgentSettings(gateway_id="paris.1")


@pytest.mark.slow
def test_published_bundles_are_verified_applied_and_reported(
    tmp_path: Path, fabric: Fabric, signer: Signer, names: Names
) -> None:
    async def main() -> None:
        gateway = make_gateway(fabric)
        agent = agent_for(gateway, signer, tmp_path, NATS_URL, names)
        await agent.bootstrap()  # nothing on disk: the fabric file's policy
        assert chosen_site(gateway) == "onprem-paris"
        agent.start()
        try:
            await publish(names, signer.sign(1, custody(with_newco(fabric), "customer")))
            await wait_for(lambda: chosen_site(gateway) == "aws-eu-central-1")
            assert gateway.directory.authenticate("Bearer sk-mesh-newco").tenant.name == "newco"
            status = await status_where(names, "gw-paris", lambda s: s.bundle_version == 1)
            assert status.site == "onprem-paris" and status.applied_at is not None

            # tampered, signed by a stranger, and older bundles: refused, v1 stays in force
            good_v2 = signer.sign(2, without_pii(fabric))
            for raw, code in (
                (tampered(good_v2), "tampered"),
                (Signer().sign(5, without_pii(fabric)), "unknown_key"),
                (signer.sign(1, without_pii(fabric)), "stale"),
            ):
                await publish(names, raw)
                await wait_for(lambda c=code: code_in(agent, c))  # type: ignore[misc]
                assert chosen_site(gateway) == "aws-eu-central-1"
                assert BundleStore(tmp_path, [signer.public]).load_last_good().version == 1  # type: ignore[union-attr]
            status = await status_where(
                names, "gw-paris", lambda s: "stale" in (s.bundle_refused or "")
            )
            assert status.bundle_version == 1

            await publish(names, good_v2)
            await wait_for(lambda: decide(gateway).status == "refused")
            assert BundleStore(tmp_path, [signer.public]).load_last_good().version == 2  # type: ignore[union-attr]
        finally:
            await agent.stop()

    asyncio.run(main())


def code_in(agent: GatewayAgent, code: str) -> bool:
    return agent.applier.last_refusal is not None and code in agent.applier.last_refusal


@pytest.mark.slow
def test_a_gateway_restarted_with_nats_down_enforces_its_last_good_bundle(
    tmp_path: Path, fabric: Fabric, signer: Signer, names: Names
) -> None:
    async def main() -> None:
        first = make_gateway(fabric)
        agent = agent_for(first, signer, tmp_path, NATS_URL, names)
        await agent.bootstrap()
        agent.start()
        await publish(names, signer.sign(3, custody(fabric, "customer")))
        await wait_for(lambda: chosen_site(first) == "aws-eu-central-1")
        await agent.stop()

        gate = TcpGate()
        await gate.open()
        await gate.shut()  # NATS unreachable from now on
        restarted = make_gateway(fabric)
        assert chosen_site(restarted) == "onprem-paris"  # the fabric file says so
        again = agent_for(restarted, signer, tmp_path, gate.url, names)
        await again.bootstrap()
        again.start()
        await asyncio.sleep(0.3)
        assert not again.connected
        assert chosen_site(restarted) == "aws-eu-central-1"  # the last good bundle says so
        assert again.status().bundle_version == 3
        await again.stop()

    asyncio.run(main())


def test_a_bundle_altered_on_disk_is_not_enforced(
    tmp_path: Path, fabric: Fabric, signer: Signer
) -> None:
    store = BundleStore(tmp_path, [signer.public])
    store.accept(signer.sign(4, custody(fabric, "customer")))
    store.path.write_bytes(tampered(store.path.read_bytes()))
    gateway = make_gateway(fabric)
    agent = agent_for(gateway, signer, tmp_path, None, Names("unused"))
    asyncio.run(agent.bootstrap())
    assert agent.status().bundle_version is None
    assert chosen_site(gateway) == "onprem-paris"
    assert agent.applier.last_refusal and "tampered" in agent.applier.last_refusal


@pytest.mark.slow
def test_usage_snapshots_go_to_the_telemetry_stream(
    tmp_path: Path, fabric: Fabric, signer: Signer, names: Names
) -> None:
    async def main() -> None:
        gateway = make_gateway(fabric)
        bank = gateway.directory.authenticate(f"Bearer {KEY}").tenant
        gateway.ledger.settle(bank, gateway.ledger.admit(bank, 50), 42, 0.5)
        agent = agent_for(gateway, signer, tmp_path, NATS_URL, names)
        agent.start()
        try:
            await wait_for(lambda: agent.connected)
            ids: list[str] = []
            for _ in range(200):
                ids = await stream_msg_ids(names.telemetry_stream)
                if len(ids) >= 2:
                    break
                await asyncio.sleep(0.05)
        finally:
            await agent.stop()
        assert len(ids) >= 2 and len(set(ids)) == len(ids)
        assert all(i.startswith("gw-paris:") for i in ids)
        last = await last_message(names.telemetry_stream)
        assert last["gateway"] == "gw-paris" and last["tenants"]["bank"] == {
            "tokens": 42,
            "usd": 0.5,
        }

    asyncio.run(main())
