"""Rate limits and budgets shared by two gateway replicas through Redis, and alone without it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Budget, Tenant
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.errors import ApiError
from isthmus.gateway.limits import Ledger
from isthmus.mesh.shared_limits import SharedLedger
from isthmus.mesh.shared_state import SharedState, shared_state_from_url

REDIS_URL = "redis://127.0.0.1:6379/0"
SITE = "onprem-paris"
NOW = 1_750_000_000.0  # a fixed wall clock both replicas read


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def tenant(**limits: object) -> Tenant:
    return Tenant(name="acme", default_data_class="public", **limits)  # type: ignore[arg-type]


def refused(ledger: object, who: Tenant, tokens: int) -> ApiError:
    with pytest.raises(ApiError) as caught:
        ledger.admit(who, tokens)  # type: ignore[attr-defined]
    assert caught.value.status == 429
    return caught.value


@pytest.fixture()
def namespace() -> Iterator[str]:
    """A key prefix of its own, deleted afterwards."""
    ns = f"t-shared-{uuid.uuid4().hex[:12]}"
    yield ns
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{ns}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def replicas(fabric: Fabric, namespace: str, clock: Clock, url: str = REDIS_URL) -> list[Gateway]:
    gateways = []
    for _ in range(2):
        state = shared_state_from_url(url, SITE, namespace)
        state.ledger.clock = clock
        config = GatewayConfig(site=SITE, health_interval_s=0, log_decisions=False)
        gateways.append(Gateway(fabric, config, shared=state))
    return gateways


@pytest.mark.slow
def test_two_replicas_share_one_requests_per_minute_limit(mini: Fabric, namespace: str) -> None:
    clock = Clock()
    a, b = replicas(mini, namespace, clock)
    acme = tenant(rpm_limit=3)
    a.ledger.admit(acme, 10)
    a.ledger.admit(acme, 10)
    b.ledger.admit(acme, 10)
    error = refused(b.ledger, acme, 10)
    assert error.code == "rate_limit_exceeded" and "3 requests per minute" in error.message
    assert error.retry_after_s == pytest.approx(20.0)
    refused(a.ledger, acme, 10)
    clock.now += 20.0  # one request's worth refills, for whichever replica asks first
    b.ledger.admit(acme, 10)
    refused(a.ledger, acme, 10)


@pytest.mark.slow
def test_tokens_per_minute_are_reserved_then_given_back_across_replicas(
    mini: Fabric, namespace: str
) -> None:
    a, b = replicas(mini, namespace, Clock())
    acme = tenant(tpm_limit=1000)
    held = a.ledger.admit(acme, 600)
    error = refused(b.ledger, acme, 600)
    assert error.code == "rate_limit_exceeded" and "1,000 tokens per minute" in error.message
    a.ledger.settle(acme, held, 100, 0.0)  # used 100 of the 600 reserved: 500 come back
    b.ledger.admit(acme, 600)
    too_big = refused(a.ledger, acme, 1001)
    assert too_big.code == "tokens_exceeded"


@pytest.mark.slow
def test_a_budget_spent_on_one_replica_refuses_the_other(mini: Fabric, namespace: str) -> None:
    a, b = replicas(mini, namespace, Clock())
    acme = tenant(budget=Budget(period="day", tokens=500, usd=1.0))
    held = a.ledger.admit(acme, 300)
    # in flight on A: its reservation counts against the budget on B already
    assert refused(b.ledger, acme, 300).code == "insufficient_quota"
    a.ledger.settle(acme, held, 250, 0.4)
    assert a.ledger.usage(acme) == b.ledger.usage(acme) == (250, pytest.approx(0.4))
    held = b.ledger.admit(acme, 250)
    b.ledger.settle(acme, held, 100, 0.7)  # 1.1 USD spent of 1.0
    error = refused(a.ledger, acme, 10)
    assert error.code == "insufficient_quota" and "USD budget of 1.00 per day" in error.message


@pytest.mark.slow
def test_budgets_start_again_in_a_new_period(mini: Fabric, namespace: str) -> None:
    clock = Clock()
    a, b = replicas(mini, namespace, clock)
    acme = tenant(budget=Budget(period="hour", tokens=100))
    a.ledger.settle(acme, a.ledger.admit(acme, 100), 100, 0.0)
    refused(b.ledger, acme, 1)
    clock.now += 3600.0
    b.ledger.admit(acme, 100)
    assert a.ledger.usage(acme) == (0, 0.0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_redis_each_replica_enforces_its_own_limits(mini: Fabric) -> None:
    clock = Clock()
    state = shared_state_from_url(f"redis://127.0.0.1:{closed_port()}/0", SITE, "t-down")
    state.ledger.clock = clock
    state.ledger.local.clock = clock
    gateway = Gateway(mini, GatewayConfig(site=SITE, health_interval_s=0), shared=state)
    acme = tenant(rpm_limit=2)
    held = gateway.ledger.admit(acme, 10)
    gateway.ledger.settle(acme, held, 7, 0.01)
    gateway.ledger.admit(acme, 10)
    assert refused(gateway.ledger, acme, 10).code == "rate_limit_exceeded"
    assert state.ledger.degraded
    assert gateway.ledger.usage(acme) == (7, pytest.approx(0.01))
    metrics = gateway.metrics.render().decode()  # the shared families join at start
    assert "isthmus_shared_state_fallbacks" not in metrics
    state.metrics.register(gateway.metrics.registry)
    metrics = gateway.metrics.render().decode()
    assert 'isthmus_shared_state_fallbacks_total{part="ledger"} 1.0' in metrics
    assert "isthmus_shared_ledger_local_admissions_total 3.0" in metrics


def test_a_gateway_without_shared_state_keeps_its_own_ledger(mini: Fabric) -> None:
    gateway = Gateway(mini, GatewayConfig(site=SITE, health_interval_s=0))
    assert type(gateway.ledger) is Ledger


@pytest.mark.parametrize(
    ("url", "namespace", "complaint"),
    [
        ("http://127.0.0.1:6379", "ns", "must start with redis://"),
        ("redis://127.0.0.1:6379/0", "bad space", "namespace 'bad space'"),
        ("redis://127.0.0.1:notaport/0", "ns", "invalid Redis URL"),
    ],
)
def test_bad_settings_are_named(url: str, namespace: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        shared_state_from_url(url, SITE, namespace)


class Gate:
    """A TCP forwarder in front of Redis that can be shut (connections cut, nothing accepted)
    and opened again on the same port: Redis going away and coming back."""

    def __init__(self) -> None:
        self.port = closed_port()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._sockets: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def open(self) -> None:
        gate = self

        class Forward(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                upstream = socket.create_connection(("127.0.0.1", 6379))
                gate._sockets += [self.request, upstream]
                pump = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
                pump.start()
                _pump(self.request, upstream)

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Forward)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def shut(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass


@pytest.mark.slow
def test_outage_usage_reaches_the_shared_budget_when_redis_is_back(
    mini: Fabric, namespace: str
) -> None:
    clock = Clock()
    gate = Gate()
    gate.open()
    try:
        a, b = replicas(mini, namespace, clock)
        ledger = shared_state_from_url(gate.url, SITE, namespace).ledger
        assert isinstance(ledger, SharedLedger)
        ledger.clock = ledger.local.clock = clock
        acme = tenant(budget=Budget(period="day", tokens=1000))
        held_shared = ledger.admit(acme, 200)
        gate.shut()
        held_local = ledger.admit(acme, 300)  # Redis gone: admitted by this replica alone
        assert ledger.degraded
        ledger.settle(acme, held_shared, 150, 0.0)
        ledger.settle(acme, held_local, 300, 0.0)
        assert ledger.pending == 2
        assert b.ledger.usage(acme) == (0, 0.0)  # the others have not heard of it yet
        gate.open()
        clock.now += ledger.retry_after_s
        ledger.admit(acme, 10)
        assert not ledger.degraded and ledger.pending == 0
        assert b.ledger.usage(acme) == (450, 0.0)
        # 450 used + 10 reserved: 540 more would pass the budget of 1000
        assert refused(a.ledger, acme, 541).code == "insufficient_quota"
        a.ledger.admit(acme, 540)
    finally:
        gate.shut()


def test_shared_state_is_one_object_for_the_cli(mini: Fabric) -> None:
    state = shared_state_from_url(REDIS_URL, SITE, "t-shape", sync_period_s=0.1)
    assert isinstance(state, SharedState)
    assert state.fleet.period_s == 0.1
    assert state.fleet.stream == f"t-shape:fleet:{SITE}"


@pytest.mark.slow
def test_a_started_gateway_settles_in_the_background(mini: Fabric, namespace: str) -> None:
    async def scenario() -> None:
        a, b = replicas(mini, namespace, Clock())
        acme = tenant(budget=Budget(period="day", tokens=1000))
        await a.start()
        try:
            held = a.ledger.admit(acme, 400)
            a.ledger.settle(acme, held, 100, 0.0)  # queued: off the request path
            assert b.ledger.usage(acme) == (0, 0.0)
            for _ in range(200):
                if b.ledger.usage(acme) == (100, 0.0):
                    break
                await asyncio.sleep(0.01)
            assert b.ledger.usage(acme) == (100, 0.0)
            b.ledger.admit(acme, 900)  # the 300 unused tokens were given back
            a.ledger.settle(acme, a.ledger.admit(acme, 0), 5, 0.0)
        finally:
            await a.stop()  # sends what is still queued
        assert b.ledger.usage(acme) == (105, 0.0)

    asyncio.run(scenario())


@pytest.mark.slow
def test_each_replica_reports_its_own_share_of_a_shared_budget(
    mini: Fabric, namespace: str
) -> None:
    """Telemetry sums the gateways' snapshots: each must count only what it settled."""
    a, b = replicas(mini, namespace, Clock())
    acme = tenant(budget=Budget(period="day", tokens=10_000, usd=10.0))
    a.ledger.settle(acme, a.ledger.admit(acme, 300), 200, 0.2)
    b.ledger.settle(acme, b.ledger.admit(acme, 300), 50, 0.05)
    assert a.ledger.usage(acme) == b.ledger.usage(acme) == (250, pytest.approx(0.25))
    assert a.ledger.own_usage(acme) == (200, pytest.approx(0.2))
    assert b.ledger.own_usage(acme) == (50, pytest.approx(0.05))
