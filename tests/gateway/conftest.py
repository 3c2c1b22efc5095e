from __future__ import annotations

from collections.abc import Iterator

import pytest

from isthmus.engines.emulator.fleet import specs_from_fabric
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import ApiKey, Tenant
from isthmus.gateway import GatewayConfig
from isthmus.gateway.harness import LocalDeployment
from isthmus.gateway.tenants import hash_key

KEY = "sk-test-bank"
OTHER_KEY = "sk-test-lab"


def with_tenants(mini: Fabric) -> Fabric:
    bank = mini.spec.tenants[0].model_copy(
        update={"api_keys": (ApiKey(id="k1", sha256=hash_key(KEY)),), "allowed_models": ("*",)}
    )
    lab = Tenant(
        name="lab",
        default_data_class="public",
        api_keys=(ApiKey(id="k2", sha256=hash_key(OTHER_KEY)),),
        allowed_models=("chat-small",),
        max_body_bytes=64 * 1024,
        deadline_ms=20_000,
    )
    return Fabric(mini.spec.model_copy(update={"tenants": (bank, lab)}), mini.sources)


@pytest.fixture()
def deployment(mini: Fabric) -> Iterator[LocalDeployment]:
    fabric = with_tenants(mini)
    config = GatewayConfig(site="onprem-paris", health_interval_s=0.2, log_decisions=False)
    with LocalDeployment(fabric, config, specs_from_fabric(fabric, any_port=True)) as local:
        yield local


@pytest.fixture()
def us_deployment(mini: Fabric) -> Iterator[LocalDeployment]:
    """A gateway in Virginia: personal data of the EU bank has no compliant place from there."""
    fabric = with_tenants(mini)
    config = GatewayConfig(site="aws-us-east-1", health_interval_s=0, log_decisions=False)
    with LocalDeployment(fabric, config, specs_from_fabric(fabric, any_port=True)) as local:
        yield local
