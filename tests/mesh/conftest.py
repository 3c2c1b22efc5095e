from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from isthmus.bundle import build_bundle, generate_keypair, sign_bundle
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import ApiKey, SiteConditions, SovereigntyRule, Tenant
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.tenants import hash_key
from isthmus.mesh.protocol import Names
from isthmus.routing import Decision, RouteRequest

KEY = "sk-mesh-bank"
NEW_KEY = "sk-mesh-newco"
NATS_URL = "nats://127.0.0.1:4222"
SITE = "onprem-paris"


def base_fabric(mini: Fabric) -> Fabric:
    """The mini fabric with a known key for the bank (pii by default)."""
    bank = mini.spec.tenants[0].model_copy(
        update={"api_keys": (ApiKey(id="k1", sha256=hash_key(KEY)),), "allowed_models": ("*",)}
    )
    return Fabric(mini.spec.model_copy(update={"tenants": (bank,)}), mini.sources)


def custody(fabric: Fabric, denied: str) -> Fabric:
    """``fabric`` with personal data denied at sites whose key custody is ``denied``:
    "provider" leaves only onprem-paris for pii, "customer" leaves only aws-eu-central-1."""
    policies = tuple(
        rule.model_copy(update={"sites": SiteConditions(deny_tags={"key_custody": denied})})
        if rule.name == "gdpr-pii"
        else rule
        for rule in fabric.spec.policies
    )
    return Fabric(fabric.spec.model_copy(update={"policies": policies}), fabric.sources)


def without_pii(fabric: Fabric) -> Fabric:
    """No rule allows personal data anywhere (fail closed: refused)."""
    policies = tuple(r for r in fabric.spec.policies if "pii" not in r.data_classes)
    return Fabric(fabric.spec.model_copy(update={"policies": policies}), fabric.sources)


def with_newco(fabric: Fabric) -> Fabric:
    newco = Tenant(
        name="newco",
        default_data_class="public",
        api_keys=(ApiKey(id="n1", sha256=hash_key(NEW_KEY)),),
        allowed_models=("chat-small",),
    )
    spec = fabric.spec.model_copy(update={"tenants": (*fabric.spec.tenants, newco)})
    return Fabric(spec, fabric.sources)


def open_rule(fabric: Fabric) -> Fabric:
    rule = SovereigntyRule(name="anything-public", data_classes=("public",))
    spec = fabric.spec.model_copy(update={"policies": (*fabric.spec.policies, rule)})
    return Fabric(spec, fabric.sources)


@dataclass
class Signer:
    key: Ed25519PrivateKey = field(default_factory=generate_keypair)

    @property
    def public(self):  # type: ignore[no-untyped-def]
        return self.key.public_key()

    def sign(self, version: int, fabric: Fabric) -> bytes:
        return sign_bundle(build_bundle(version=version, fabric=fabric.spec), self.key)


@pytest.fixture()
def signer() -> Signer:
    return Signer()


@pytest.fixture()
def fabric(mini: Fabric) -> Fabric:
    return base_fabric(mini)


def make_gateway(fabric: Fabric) -> Gateway:
    return Gateway(fabric, GatewayConfig(site=SITE, health_interval_s=0, log_decisions=False))


def decide(gateway: Gateway, data_class: str = "pii") -> Decision:
    tenant = gateway.directory.authenticate(f"Bearer {KEY}").tenant
    request = RouteRequest(
        model="chat-small",
        data_class=data_class,
        gateway_site=SITE,
        prompt_tokens=10,
        tenant=tenant.name,
        allowed_models=tenant.allowed_models,
    )
    return gateway.router(request, gateway.view)


def chosen_site(gateway: Gateway, data_class: str = "pii") -> str | None:
    decision = decide(gateway, data_class)
    return decision.chosen.site if decision.chosen else None


# -- real NATS --------------------------------------------------------------------------------


@pytest.fixture()
def names() -> Iterator[Names]:
    """A namespace of its own; its streams and bucket are deleted afterwards."""
    names = Names(f"t{uuid.uuid4().hex[:12]}")
    yield names
    asyncio.run(_delete(names))


async def _delete(names: Names) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        for stream in (names.bundle_stream, names.audit_stream, names.telemetry_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        with contextlib.suppress(Exception):
            await js.delete_key_value(names.status_bucket)
    finally:
        await nc.close()


class TcpGate:
    """A TCP forwarder in front of NATS that can be shut (every connection cut, nothing
    accepted) and opened again: NATS going away and coming back, as the gateway sees it."""

    def __init__(self, target_port: int = 4222) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def shut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))
