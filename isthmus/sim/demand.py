"""Who sends a trace's requests, from where: a demand map assigns tenants, metros and gateways.

A demand file (YAML, validated with the fabric's located errors)::

    gateways: {FRA: equinix-fr5, ORD: equinix-ch-chicago}   # metro -> the gateway site serving it
    mix:
      - {metro: FRA, tenant: rheinbank, weight: 3}           # model: the tenant's first allowed
      - {metro: ORD, tenant: lakeshore-health, weight: 1, model: chat-small}

Requests of one conversation stay together: the choice is a deterministic function of the
conversation (its first block after a shared system prompt), weighted by ``weight``. A request
takes the tenant's default data class, TTFT SLO and, unless the entry names one, model.
A metro without a gateway entry is served by the nearest site (by the network model).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.problems import FabricError, Problem, format_path
from isthmus.fabric.schema_errors import problems_from_validation
from isthmus.fabric.yamlsafe import SourceMap, load_yaml_file
from isthmus.network.paths import Network
from isthmus.sim.replay import TraceRequest

__all__ = ["DemandEntry", "DemandSpec", "apply_demand", "load_demand"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DemandEntry(_Spec):
    metro: str
    tenant: str
    weight: Annotated[float, Field(gt=0)] = 1.0
    model: str | None = None
    data_class: str | None = None


class DemandSpec(_Spec):
    gateways: dict[str, str] = Field(default_factory=dict)
    mix: tuple[DemandEntry, ...] = Field(min_length=1)


def load_demand(path: Path, fabric: Fabric) -> DemandSpec:
    data, source = load_yaml_file(path)
    try:
        spec = DemandSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise FabricError(problems_from_validation(DemandSpec, exc, source)) from None
    problems = _check(spec, fabric, source)
    if problems:
        raise FabricError(problems)
    return spec


def _check(spec: DemandSpec, fabric: Fabric, source: SourceMap) -> list[Problem]:
    problems = []

    def report(path: tuple[str | int, ...], message: str) -> None:
        problems.append(Problem(source.locate(path), format_path(path), message))

    for metro, site in spec.gateways.items():
        if fabric.place(metro) is None:
            report(("gateways", metro), f"unknown metro {metro!r}")
        if site not in fabric.sites:
            report(("gateways", metro), f"unknown site {site!r}")
    for k, entry in enumerate(spec.mix):
        if fabric.place(entry.metro) is None:
            report(("mix", k, "metro"), f"unknown metro {entry.metro!r}")
        if entry.tenant not in fabric.tenants:
            report(
                ("mix", k, "tenant"),
                f"unknown tenant {entry.tenant!r}; known: {', '.join(fabric.tenants)}",
            )
        if entry.data_class is not None and entry.data_class not in fabric.data_classes:
            report(("mix", k, "data_class"), f"unknown data class {entry.data_class!r}")
        if entry.model is not None and not fabric.alias_targets(entry.model):
            report(("mix", k, "model"), f"unknown model or alias {entry.model!r}")
    return problems


def _conversation(request: TraceRequest, index: int) -> int:
    key = request.hash_ids[1] if len(request.hash_ids) > 1 else index
    return int.from_bytes(hashlib.blake2b(str(key).encode(), digest_size=8).digest(), "little")


def apply_demand(
    requests: list[TraceRequest], spec: DemandSpec, fabric: Fabric
) -> list[TraceRequest]:
    """Each request with its tenant, metro, gateway site, model, data class and SLO."""
    network = Network(fabric)
    gateways = dict(spec.gateways)
    for entry in spec.mix:
        if entry.metro not in gateways:
            gateways[entry.metro] = min(fabric.sites, key=lambda s: network.rtt_ms(entry.metro, s))
    total = sum(e.weight for e in spec.mix)
    bounds = []
    running = 0.0
    for entry in spec.mix:
        running += entry.weight / total
        bounds.append(running)
    out = []
    for index, request in enumerate(requests):
        u = (_conversation(request, index) % 1_000_003) / 1_000_003
        entry = spec.mix[next((k for k, b in enumerate(bounds) if u < b), len(bounds) - 1)]
        tenant = fabric.tenants[entry.tenant]
        allowed = [m for m in tenant.allowed_models if "*" not in m]
        model = (
            entry.model or request.model or (allowed[0] if allowed else next(iter(fabric.models)))
        )
        out.append(
            replace(
                request,
                tenant=tenant.name,
                metro=entry.metro,
                gateway_site=gateways[entry.metro],
                model=model,
                data_class=entry.data_class or tenant.default_data_class,
                ttft_slo_ms=tenant.objective.ttft_slo_ms,
            )
        )
    return out
