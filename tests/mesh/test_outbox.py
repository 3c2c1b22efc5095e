"""The audit outbox: records after a persisted cursor, shipped at least once, landing once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from isthmus.audit import AuditLog
from isthmus.fabric.catalog import Fabric
from isthmus.guard.decide import Verdict
from isthmus.mesh.agent import AgentSettings, GatewayAgent
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.outbox import AuditOutbox
from isthmus.mesh.protocol import Names
from isthmus.store.engine import connect
from tests.mesh.conftest import NATS_URL, TcpGate, make_gateway
from tests.mesh.helpers import stream_msg_ids, wait_for

AUDIT_KEY = b"k" * 32


def audit_log(path: Path) -> AuditLog:
    return AuditLog(connect(f"sqlite:///{path / 'audit.db'}"), AUDIT_KEY)


def write(audit: AuditLog, count: int) -> None:
    verdict = Verdict("input", "pii:email", "pii.email", "redact", 0.9, "messages[0]", 0, 5, "h")
    for _ in range(count):
        audit.record("bank", [verdict])


def test_the_cursor_only_moves_forward_and_survives_a_reopen(tmp_path: Path) -> None:
    audit = audit_log(tmp_path)
    write(audit, 5)
    outbox = AuditOutbox(audit, "gw1")
    assert (outbox.acked(), outbox.pending()) == (0, 5)
    assert [r.seq for r in outbox.after(0, 3)] == [1, 2, 3]
    outbox.ack(3)
    outbox.ack(2)
    assert outbox.acked() == 3
    reopened = AuditOutbox(audit_log(tmp_path), "gw1")
    assert (reopened.acked(), reopened.pending()) == (3, 2)
    assert [r.seq for r in reopened.after(3, 100)] == [4, 5]
    assert AuditOutbox(audit, "gw2").acked() == 0  # a cursor per gateway


def _agent(gateway_url: str, audit: AuditLog, names: Names, tmp_path: Path, fabric: Fabric):  # type: ignore[no-untyped-def]
    from isthmus.bundle import BundleStore

    gateway = make_gateway(fabric)
    gateway.audit = audit
    settings = AgentSettings(
        gateway_id="gw1",
        nats_url=gateway_url,
        namespace=names.namespace,
        heartbeat_s=0.2,
        audit_poll_s=0.05,
        audit_batch=16,
        ack_timeout_s=2.0,
        backoff_initial_s=0.05,
        backoff_max_s=0.3,
    )
    applier = BundleApplier(gateway, BundleStore(tmp_path / "state", []))
    return GatewayAgent(gateway, settings, applier, AuditOutbox(audit, "gw1"))


@pytest.mark.slow
def test_records_made_while_nats_is_away_arrive_once_when_it_returns(
    tmp_path: Path, fabric: Fabric, names: Names
) -> None:
    async def main() -> None:
        gate = TcpGate()
        await gate.open()
        audit = audit_log(tmp_path)
        agent = _agent(gate.url, audit, names, tmp_path, fabric)
        agent.start()
        await wait_for(lambda: agent.connected)
        await asyncio.to_thread(write, audit, 10)
        await wait_for(lambda: agent.outbox is not None and agent.outbox.pending() == 0)

        await gate.shut()  # NATS goes away: records accumulate locally
        await wait_for(lambda: not agent.connected)
        await asyncio.to_thread(write, audit, 40)
        await asyncio.sleep(0.3)
        assert agent.outbox is not None and agent.outbox.pending() == 40

        await gate.open()  # and comes back: the agent reconnects and catches up
        await wait_for(lambda: agent.outbox is not None and agent.outbox.pending() == 0)
        await agent.stop()

        await asyncio.to_thread(write, audit, 25)  # made while no agent runs
        restarted = _agent(NATS_URL, audit_log(tmp_path), names, tmp_path, fabric)
        restarted.start()
        await wait_for(lambda: restarted.outbox is not None and restarted.outbox.pending() == 0)
        await restarted.stop()
        await gate.shut()

        ids = await stream_msg_ids(names.audit_stream)
        assert ids == [f"gw1:{seq}" for seq in range(1, 76)]  # every record once, in order

    asyncio.run(main())


@pytest.mark.slow
def test_a_gateway_started_with_nats_unreachable_keeps_its_records(
    tmp_path: Path, fabric: Fabric, names: Names
) -> None:
    async def main() -> None:
        gate = TcpGate()
        await gate.open()
        await gate.shut()  # a port nobody listens on
        audit = audit_log(tmp_path)
        first = _agent(gate.url, audit, names, tmp_path, fabric)
        first.start()
        await asyncio.to_thread(write, audit, 30)
        await asyncio.sleep(0.3)
        assert not first.connected
        await first.stop()
        assert AuditOutbox(audit, "gw1").pending() == 30

        second = _agent(NATS_URL, audit_log(tmp_path), names, tmp_path, fabric)
        second.start()
        await wait_for(lambda: second.outbox is not None and second.outbox.pending() == 0)
        await second.stop()
        ids = await stream_msg_ids(names.audit_stream)
        assert sorted(ids, key=lambda i: int(i.split(":")[1])) == [f"gw1:{s}" for s in range(1, 31)]

    asyncio.run(main())
