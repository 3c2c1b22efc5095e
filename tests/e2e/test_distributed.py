"""The distributed deployment end to end, every part its own OS process (slow).

One control plane (``isthmus control``) on the machine's PostgreSQL, in a database of this
test's own (dropped after); a *private* ``nats-server -js`` on a free port with its own store
directory, so the test can SIGKILL it and start it again on the same store without touching the
machine's shared NATS; one engine emulator serving an endpoint at each of three sites; and four
gateways (``isthmus gateway``) at those three sites, the two of Paris sharing state through the
machine's Redis (under a key prefix of their own, deleted after). Then, in order:

a. a guard policy pushed through the admin API is in force at every gateway within a second of
   its publication (the gateways' own ``applied_at`` in the status bucket), and each gateway
   treats the same request differently from then on;
b. with NATS and the control plane killed, the gateways keep serving under the last good policy
   and keep auditing guard verdicts; once both are back, every record a gateway wrote lands in
   PostgreSQL exactly once (the same (seq, hash) list per gateway as the gateway's own log);
c. a gateway killed under concurrent load: a client that retries elsewhere on a connection error
   sees every request succeed;
d. a tenant's API key reads its own keys, usage and audit through the API, never another's.

On failure the tail of every process's log is printed; every process is stopped either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from isthmus.control import tables
from isthmus.control.signing import load_or_create_signing_key, public_key_path
from isthmus.mesh.protocol import Names
from tests.control.conftest import _unreachable
from tests.e2e.deployment import (
    MODEL,
    ControlPlaneProcess,
    GatewayProcess,
    Processes,
    fabric_yaml,
    free_port,
    local_audit,
    nats_server_path,
    outbox_pending,
    restart_control,
    start_control,
    start_emulator,
    start_gateway,
    start_nats,
    statuses,
    wait_for_gateways,
    wait_until,
)

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/0"
AUDIT_KEY = "e2e-audit-key-" + "0123456789abcdef"
TENANTS = ("bank", "clinic")
SITES = ("paris", "frankfurt", "ashburn")
GATEWAYS = (("paris-1", "paris"), ("paris-2", "paris"), ("frankfurt-1", "frankfurt"),
            ("ashburn-1", "ashburn"))  # fmt: skip
EMAIL = "My email is alice@example.com."
PLAIN = "Say hello."


@dataclass
class Deployment:
    procs: Processes
    names: Names
    nats_url: str
    nats_port: int
    nats_store: Path
    db_url: str
    control: ControlPlaneProcess
    gateways: dict[str, GatewayProcess]
    keys: dict[str, str]  # tenant -> API key secret issued by the control plane

    def restart_nats(self) -> None:
        start_nats(self.procs, self.nats_port, self.nats_store)

    def statuses(self) -> dict[str, object]:
        return dict(statuses(self.nats_url, self.names))


def chat(gateway: GatewayProcess, key: str, content: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 8},
        timeout=15,
    )


def _redis_reachable() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unreachable(f"Redis at {REDIS_URL}", str(exc))
    finally:
        client.close()


@pytest.fixture
def deployment(
    tmp_path: Path, postgres_url: str, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    if nats_server_path() is None:
        _unreachable("nats-server", "not installed (apt-get install nats-server)")
    _redis_reachable()
    procs = Processes(tmp_path / "logs")
    names = Names(f"e2e{secrets.token_hex(5)}")
    try:
        yield _start(procs, tmp_path, postgres_url, names)
    finally:
        procs.close()
        failed = any(
            getattr(request.node, f"report_{when}", None) is not None
            and getattr(request.node, f"report_{when}").failed
            for when in ("setup", "call")
        )
        if failed:
            print(procs.tails(60))
        client = redis.Redis.from_url(REDIS_URL)
        with contextlib.suppress(redis.RedisError):
            keys = list(client.scan_iter(f"{names.namespace}:*"))
            if keys:
                client.delete(*keys)
        client.close()


def _start(procs: Processes, tmp: Path, db_url: str, names: Names) -> Deployment:
    endpoint_ports = {site: free_port() for site in SITES}
    fabric = tmp / "fabric.yaml"
    fabric.write_text(fabric_yaml(endpoint_ports, TENANTS))
    nats_port, nats_store = free_port(), tmp / "jetstream"
    nats_url = start_nats(procs, nats_port, nats_store)
    signing_key = tmp / "control-signing.pem"
    load_or_create_signing_key(signing_key)  # the gateways trust its public half
    operator = "op-" + secrets.token_hex(8)
    control = start_control(
        procs, db_url=db_url, nats_url=nats_url, namespace=names.namespace, port=free_port(),
        signing_key=signing_key, admin_token="adm-" + secrets.token_hex(8),
        operator_token=operator,
    )  # fmt: skip
    start_emulator(procs, fabric, endpoint_ports.values())
    admin = control.client()
    answer = admin.put("/v1/fabric", json={"yaml": fabric.read_text()})
    assert answer.status_code == 200, answer.text
    keys = {}
    for tenant in TENANTS:
        created = admin.post(f"/v1/tenants/{tenant}/keys", json={"id": f"{tenant}-1"})
        assert created.status_code == 201, created.text
        keys[tenant] = created.json()["secret"]
    first = admin.post("/v1/bundles")
    assert first.json()["bundle"]["state"] == "published", first.text
    gateways = {}
    for gateway_id, site in GATEWAYS:
        gateways[gateway_id] = start_gateway(
            procs, gateway_id=gateway_id, site=site, fabric=fabric, nats_url=nats_url,
            namespace=names.namespace, trusted_key=public_key_path(signing_key),
            state_dir=tmp / gateway_id, control=control, operator_token=operator,
            redis_url=REDIS_URL if site == "paris" else None,
            env={"ISTHMUS_AUDIT_KEY": AUDIT_KEY}, wait=False,
        )  # fmt: skip
    wait_for_gateways(procs, gateways.values())
    d = Deployment(procs, names, nats_url, nats_port, nats_store, db_url, control, gateways, keys)
    wait_until(
        lambda: (
            {s.bundle_version for s in statuses(nats_url, names).values()} == {1}
            and len(statuses(nats_url, names)) == len(gateways)
        ),
        "every gateway reporting bundle v1 in the status bucket",
    )
    return d


def test_distributed_deployment(deployment: Deployment) -> None:
    _a_a_policy_reaches_every_gateway_within_a_second(deployment)
    _b_audit_kept_while_cut_off_lands_exactly_once(deployment)
    _c_a_killed_gateway_s_requests_succeed_elsewhere(deployment)
    _d_a_tenant_key_reads_only_its_own_tenant(deployment)


# -- a ---------------------------------------------------------------------------------------


def _a_a_policy_reaches_every_gateway_within_a_second(d: Deployment) -> None:
    bank = d.keys["bank"]
    for gateway in d.gateways.values():
        answer = chat(gateway, bank, EMAIL)
        assert answer.status_code == 200, (gateway.gateway_id, answer.text)  # redacted, served
    admin = d.control.client()
    policy = admin.get("/v1/policy/guard").json()
    policy["actions"]["pii:email"] = "block"
    assert admin.put("/v1/policy/guard", json=policy).status_code == 200
    asked_at = time.time()
    published = admin.post("/v1/bundles")
    assert published.status_code == 201, published.text
    bundle = published.json()["bundle"]
    assert bundle["state"] == "published", published.text
    version = bundle["version"]
    published_at = datetime.fromisoformat(bundle["published_at"]).timestamp()

    def applied_everywhere() -> bool:
        found = statuses(d.nats_url, d.names)
        return len(found) == len(d.gateways) and all(
            s.bundle_version == version for s in found.values()
        )

    wait_until(applied_everywhere, f"every gateway applying bundle v{version}", 10)
    applied = {
        gateway: status.applied_at
        for gateway, status in statuses(d.nats_url, d.names).items()
        if status.applied_at is not None
    }
    print(
        f"bundle v{version} published {published_at - asked_at:.3f} s after it was asked for; "
        "applied after publication (s): "
        + ", ".join(f"{g} {at - published_at:.3f}" for g, at in sorted(applied.items()))
    )
    assert set(applied) == set(d.gateways)
    # from the admin's request, so building and signing the bundle count too
    late = {g: at - asked_at for g, at in applied.items() if at - asked_at >= 1.0}
    assert not late, f"applied more than a second after publishing: {late}"
    for gateway in d.gateways.values():
        answer = chat(gateway, bank, EMAIL)
        assert answer.status_code == 400, (gateway.gateway_id, answer.text)
        assert answer.json()["error"]["code"] == "guard_blocked"
        assert "pii.email" in answer.json()["error"]["message"]

    def control_sees_current() -> bool:
        listed = admin.get("/v1/gateways").json()
        return len(listed["gateways"]) == len(d.gateways) and all(
            g["current"] for g in listed["gateways"]
        )

    wait_until(control_sees_current, "GET /v1/gateways showing every gateway current", 15)


# -- b ---------------------------------------------------------------------------------------


def _stored_audit(db_url: str) -> dict[str, list[tuple[int, str]]]:
    stored: dict[str, list[tuple[int, str]]] = {}
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(
            f"SELECT gateway, seq, record_hash FROM {tables.audit.name} ORDER BY gateway, seq"
        ).fetchall()
    for gateway, seq, digest in rows:
        stored.setdefault(gateway, []).append((int(seq), str(digest)))
    return stored


def _b_audit_kept_while_cut_off_lands_exactly_once(d: Deployment) -> None:
    d.procs.kill("nats")
    d.procs.kill(d.control.name)
    for gateway in d.gateways.values():
        for tenant in TENANTS:
            for _ in range(3):  # the last good policy (v2) still blocks e-mail addresses
                answer = chat(gateway, d.keys[tenant], EMAIL)
                assert answer.status_code == 400, (gateway.gateway_id, answer.text)
            answer = chat(gateway, d.keys[tenant], PLAIN)  # and serves the rest
            assert answer.status_code == 200, (gateway.gateway_id, answer.text)
    for gateway in d.gateways.values():
        assert outbox_pending(gateway) >= 2 * 3, gateway.gateway_id  # held, not lost
    local = {g.gateway_id: local_audit(g) for g in d.gateways.values()}
    print("audit records written locally:", {g: len(r) for g, r in local.items()})

    d.restart_nats()
    restart_control(d.procs, d.control)
    wait_until(
        lambda: _stored_audit(d.db_url) == local,
        "every gateway's audit records in PostgreSQL",
        45,
        every_s=0.2,
    )
    wait_until(
        lambda: all(s.audit_pending == 0 for s in statuses(d.nats_url, d.names).values()),
        "every gateway reporting an empty outbox",
        20,
    )
    stored = _stored_audit(d.db_url)
    assert stored == local  # nothing lost, nothing twice, nothing altered
    page = d.control.client().get("/v1/audit", params={"limit": 1000}).json()
    through_api = Counter((r["gateway"], r["seq"]) for r in page["records"])
    assert len(through_api) == sum(len(r) for r in local.values())
    assert set(through_api.values()) == {1}


# -- c ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    served_by: str | None
    status: int | None
    attempts: int


async def _request_with_failover(
    client: httpx.AsyncClient, order: list[GatewayProcess], key: str
) -> Outcome:
    """Send to the first gateway; on a connection error, the next one (as a client library
    with a list of gateway addresses does)."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PLAIN}], "max_tokens": 16}
    for attempt, gateway in enumerate(order, start=1):
        try:
            answer = await client.post(
                f"{gateway.url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json=body,
            )
        except httpx.TransportError:
            continue
        return Outcome(gateway.gateway_id, answer.status_code, attempt)
    return Outcome(None, None, len(order))


def _c_a_killed_gateway_s_requests_succeed_elsewhere(d: Deployment) -> None:
    victim = d.gateways["paris-1"]
    order = [victim, *(g for g in d.gateways.values() if g is not victim)]
    workers, per_worker, kill_after = 8, 15, 24
    outcomes: list[Outcome] = []
    killed_at: list[int] = []

    async def load() -> None:
        done = asyncio.Event()

        async def worker(client: httpx.AsyncClient) -> None:
            for _ in range(per_worker):
                outcomes.append(await _request_with_failover(client, order, d.keys["bank"]))
                if len(outcomes) >= kill_after:
                    done.set()

        async def killer() -> None:
            await done.wait()
            killed_at.append(len(outcomes))
            await asyncio.to_thread(d.procs.kill, victim.gateway_id)

        async with httpx.AsyncClient(timeout=15) as client:
            await asyncio.gather(killer(), *(worker(client) for _ in range(workers)))

    asyncio.run(load())
    served = Counter(o.served_by for o in outcomes)
    print(f"killed {victim.gateway_id} after {killed_at} requests; served by: {dict(served)}")
    assert len(outcomes) == workers * per_worker
    assert all(o.status == 200 for o in outcomes), [o for o in outcomes if o.status != 200]
    assert served[victim.gateway_id] >= kill_after - workers  # it did serve before it died
    retried = [o for o in outcomes if o.attempts > 1]
    assert retried, "no request needed another gateway"
    assert all(o.served_by != victim.gateway_id for o in retried)
    # the Paris replicas shared their state through Redis
    client = redis.Redis.from_url(REDIS_URL)
    try:
        assert next(client.scan_iter(f"{d.names.namespace}:*"), None) is not None
    finally:
        client.close()


# -- d ---------------------------------------------------------------------------------------


def _d_a_tenant_key_reads_only_its_own_tenant(d: Deployment) -> None:
    admin = d.control.client()
    everyone = admin.get("/v1/audit", params={"limit": 1000}).json()["records"]
    assert {r["tenant"] for r in everyone} == set(TENANTS)  # both tenants have records
    for tenant in TENANTS:
        (other,) = (t for t in TENANTS if t != tenant)
        own = d.control.client(d.keys[tenant])
        who = own.get("/v1/whoami").json()
        assert (who["role"], who["tenant"]) == ("tenant", tenant), who
        keys = own.get(f"/v1/tenants/{tenant}/keys")
        assert keys.status_code == 200 and [k["id"] for k in keys.json()["keys"]] == [f"{tenant}-1"]

        def has_usage(own: httpx.Client = own, tenant: str = tenant) -> bool:
            return int(own.get(f"/v1/tenants/{tenant}/usage").json()["tokens"]) > 0

        wait_until(has_usage, f"{tenant}'s usage from the gateways' telemetry", 20)
        records = own.get("/v1/audit", params={"limit": 1000}).json()["records"]
        assert records and {r["tenant"] for r in records} == {tenant}
        assert len(records) == sum(1 for r in everyone if r["tenant"] == tenant)
        for path in (f"/v1/tenants/{other}", f"/v1/tenants/{other}/keys",
                     f"/v1/tenants/{other}/usage"):  # fmt: skip
            answer = own.get(path)
            assert answer.status_code == 404, (tenant, path, answer.text)  # as if none existed
        assert own.get("/v1/audit", params={"tenant": other}).status_code == 403
        assert own.get("/v1/gateways").status_code == 403
        assert own.get("/v1/bundles").status_code == 403
