"""The control plane's NATS side against the real servers (slow): exactly-once audit and usage
ingest into PostgreSQL, bundles published and verified, publishing deferred while NATS is down.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from isthmus.bundle import verify_bundle
from isthmus.control import BatchResult, ControlPlane, StreamIngest, create_app
from isthmus.control import tables as t
from isthmus.control.wire import audit_row
from isthmus.mesh.protocol import GatewayStatus, Names
from isthmus.mesh.streams import ensure_streams
from isthmus.serving import bind_socket
from tests.control.conftest import ADMIN, bearer, fabric_text, make_plane

pytestmark = pytest.mark.slow


def record(seq: int, tenant: str = "bank") -> dict[str, object]:
    return {
        "gateway": "spoofed",  # the subject names the gateway, never the payload
        "seq": seq,
        "at": f"2026-01-01T00:00:{seq % 60:02d}.000000+00:00",
        "tenant": tenant,
        "direction": "input",
        "category": "pii:email",
        "action": "redact",
        "rule": "pii.email",
        "location": "messages[0]",
        "score": 0.9,
        "content_hash": "h" * 64,
        "prev_hash": "p" * 64,
        "record_hash": f"{seq:064x}",
    }


async def _publish_audit(js: object, names: Names, gateway: str, seqs: list[int]) -> None:
    for seq in seqs:
        await js.publish(  # type: ignore[attr-defined]
            names.audit_subject(gateway),
            orjson.dumps(record(seq)),
            headers={"Nats-Msg-Id": names.msg_id(gateway, seq)},
        )


def _count(plane: ControlPlane, table: object) -> int:
    with plane.store.engine.connect() as c:
        return int(c.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def _drain(ingest: StreamIngest) -> None:
    while (await ingest.run_once(timeout_s=0.5)).received:
        pass


def test_audit_lands_exactly_once_across_redelivery_and_duplicates(
    tmp_path: Path, postgres_url: str, nats_url: str, namespace: str
) -> None:
    plane = make_plane(tmp_path, db_url=postgres_url)
    names = Names(namespace)

    async def scenario() -> None:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await ensure_streams(js, names)
        try:
            await _publish_audit(js, names, "gw-a", list(range(1, 301)))
            await _publish_audit(js, names, "gw-b", list(range(1, 101)))
            # a gateway that lost its cursor re-sends, inside the duplicate window (dropped
            # by the server) and, under other message ids, past it (dropped by the table key)
            await _publish_audit(js, names, "gw-a", list(range(1, 51)))
            for seq in range(250, 301):
                await js.publish(names.audit_subject("gw-a"), orjson.dumps(record(seq)))
            await js.publish(names.audit_subject("gw-a"), b"not json")  # dropped, counted

            crashed: list[BatchResult] = []

            async def crash_before_ack(result: BatchResult) -> None:
                crashed.append(result)
                raise RuntimeError("the control plane died after its commit, before its acks")

            def ingest(hook: Callable[[BatchResult], Awaitable[None]] | None) -> StreamIngest:
                return StreamIngest(
                    js,
                    stream=names.audit_stream,
                    subjects=names.audit_subjects,
                    durable="control-test",
                    parse=lambda s, d: [audit_row(s, d)],
                    write=plane.records.insert_audit,
                    batch=120,
                    ack_wait_s=1.0,
                    on_committed=hook,
                )

            with pytest.raises(RuntimeError):
                await ingest(crash_before_ack).run_once()
            assert crashed[0].stored == 120  # committed, never acknowledged
            await asyncio.sleep(1.5)  # past ack_wait: the server redelivers those 120
            survivor = ingest(None)
            await _drain(survivor)
            assert survivor.rejected_total == 1
            assert survivor.stored_total == 400 - 120
        finally:
            await nc.close()

    try:
        asyncio.run(scenario())
        assert _count(plane, t.audit) == 400
        with plane.store.engine.connect() as c:
            keys = c.execute(select(t.audit.c.gateway, t.audit.c.seq)).all()
        assert sorted(keys) == sorted(
            [("gw-a", s) for s in range(1, 301)] + [("gw-b", s) for s in range(1, 101)]
        )
        with TestClient(create_app(plane, manage_mesh=False)) as client:
            page = client.get("/v1/audit?gateway=gw-b&limit=60", headers=bearer(ADMIN)).json()
            rest = client.get(
                f"/v1/audit?gateway=gw-b&limit=60&after={page['next_after']}",
                headers=bearer(ADMIN),
            ).json()
            assert [r["seq"] for r in page["records"] + rest["records"]] == list(range(1, 101))
            assert rest["next_after"] is None
    finally:
        plane.close()


def test_running_plane_publishes_bundles_reads_status_and_ingests(
    tmp_path: Path, postgres_url: str, nats_url: str, namespace: str
) -> None:
    plane = make_plane(
        tmp_path, db_url=postgres_url, nats_url=nats_url, namespace=namespace,
        retry_interval_s=0.2, status_interval_s=0.2,
    )  # fmt: skip
    names = Names(namespace)
    app = create_app(plane)
    try:
        with TestClient(app) as client:
            _wait(lambda: client.get("/healthz").json()["nats"] == "connected")
            client.put("/v1/fabric", headers=bearer(ADMIN), json={"yaml": fabric_text()})
            published = client.post("/v1/bundles", headers=bearer(ADMIN)).json()
            assert published["bundle"]["state"] == "published", published

            async def gateway_side() -> bytes:
                nc = await nats.connect(nats_url)
                js = nc.jetstream()
                kv = await ensure_streams(js, names)
                status = GatewayStatus(
                    gateway="gw-1", site="onprem-paris", bundle_version=1, seen_at=time.time(),
                    audit_pending=3,
                )  # fmt: skip
                await kv.put("gw-1", status.model_dump_json().encode())
                snapshot = {"gateway": "gw-1", "n": 1000, "at": time.time(),
                            "tenants": {"bank": {"tokens": 120, "usd": 0.5}}}  # fmt: skip
                for n, tokens in ((1000, 120), (2000, 300)):
                    snapshot.update(n=n, tenants={"bank": {"tokens": tokens, "usd": 1.0}})
                    await js.publish(names.telemetry_subject("gw-1"), orjson.dumps(snapshot),
                                     headers={"Nats-Msg-Id": f"gw-1:{n}"})  # fmt: skip
                await _publish_audit(js, names, "gw-1", [1, 2, 3])
                sub = await js.subscribe(names.bundle_subject, ordered_consumer=True)
                msg = await sub.next_msg(timeout=5)
                await nc.close()
                return msg.data

            signed = asyncio.run(gateway_side())
            trusted = [plane.signing_key.public_key()]
            assert verify_bundle(signed, trusted).version == 1

            def gateways() -> dict[str, object]:
                return client.get("/v1/gateways", headers=bearer(ADMIN)).json()  # type: ignore[no-any-return]

            _wait(lambda: len(gateways()["gateways"]) == 1)  # type: ignore[arg-type]
            seen = gateways()["gateways"][0]  # type: ignore[index]
            assert seen["status"]["audit_pending"] == 3 and seen["current"] is True
            _wait(lambda: _count(plane, t.audit) == 3)
            _wait(lambda: _count(plane, t.usage) == 2)
            usage = client.get("/v1/tenants/bank/usage", headers=bearer(ADMIN)).json()
            assert (usage["tokens"], usage["usd"]) == (300, 1.0)  # the latest snapshot counts
    finally:
        plane.close()


def test_bundle_waits_for_nats_and_is_published_when_it_returns(
    tmp_path: Path, namespace: str
) -> None:
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(server).exists():
        pytest.skip("nats-server is not installed")
    sock = bind_socket("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    url = f"nats://127.0.0.1:{port}"
    plane = make_plane(tmp_path, nats_url=url, namespace=namespace, retry_interval_s=0.2)
    process: subprocess.Popen[bytes] | None = None
    try:
        with TestClient(create_app(plane)) as client:
            client.put("/v1/fabric", headers=bearer(ADMIN), json={"yaml": fabric_text()})
            answer = client.post("/v1/bundles", headers=bearer(ADMIN))
            assert answer.status_code == 201
            assert answer.json()["bundle"]["state"] == "pending"
            assert "will be published when NATS returns" in answer.json()["message"]
            # the API keeps answering from the database meanwhile
            assert client.get("/v1/bundles/1", headers=bearer(ADMIN)).status_code == 200
            assert (
                client.get("/v1/gateways", headers=bearer(ADMIN)).json()["nats"] == "disconnected"
            )
            process = subprocess.Popen(
                [server, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            _wait(
                lambda: (
                    client.get("/v1/bundles/1", headers=bearer(ADMIN)).json()["state"]
                    == "published"
                ),
                timeout_s=20,
            )

            async def read_back() -> bytes:
                nc = await nats.connect(url)
                sub = await nc.jetstream().subscribe(
                    Names(namespace).bundle_subject, ordered_consumer=True
                )
                msg = await sub.next_msg(timeout=5)
                await nc.close()
                return msg.data

            signed = asyncio.run(read_back())
            assert verify_bundle(signed, [plane.signing_key.public_key()]).version == 1
    finally:
        plane.close()
        if process is not None:
            process.terminate()
            process.wait(timeout=10)


def _wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
