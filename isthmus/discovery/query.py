"""``find``: sites that meet a capacity, latency, path and sovereignty query, ranked.

Invariants: pure (catalog, network and compiled policy in; result out); every site is either a
candidate or an exclusion that says which condition removed it, so "why not there?" always has
an answer; sovereignty is checked with the same ``CompiledPolicy.evaluate`` the router uses,
over the very path the latency figure was measured on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Accelerator, SiteKind, SiteSpec
from isthmus.network.paths import NetPath, Network
from isthmus.policy.checks import inside
from isthmus.policy.compiled import CompiledPolicy

__all__ = ["Candidate", "Exclusion", "FindQuery", "FindResult", "find"]

Pricing = Literal["on_demand", "reserved", "spot"]
SortKey = Literal["price", "rtt", "carbon"]


@dataclass(frozen=True, slots=True)
class FindQuery:
    accelerator: str | None = None
    count: int = 1
    jurisdictions: tuple[str, ...] = ()
    near: str | None = None
    within_ms: float | None = None
    private_path: bool = False
    data_class: str | None = None
    model: str | None = None
    kinds: tuple[SiteKind, ...] = ()
    providers: tuple[str, ...] = ()
    pricing: Pricing = "on_demand"
    max_usd_per_device_hour: float | None = None
    sort: SortKey = "price"
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    site: str
    kind: str
    provider: str
    city: str
    jurisdiction: str
    accelerator: str | None
    free_devices: int | None
    usd_per_device_hour: float | None
    rtt_ms: float | None
    path_source: str | None
    private_path: bool | None
    carbon_g_per_kwh: float | None
    verdict: str


@dataclass(frozen=True, slots=True)
class Exclusion:
    site: str
    condition: str
    reason: str


@dataclass(frozen=True, slots=True)
class FindResult:
    candidates: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...]


def _price(acc: Accelerator, pricing: Pricing) -> float | None:
    if pricing == "spot":
        return acc.spot_usd_per_device_hour
    if pricing == "reserved":
        return acc.reserved_usd_per_device_hour
    return acc.on_demand_usd_per_device_hour


def _accelerator(site: SiteSpec, wanted: str) -> Accelerator | None:
    folded = wanted.casefold()
    for acc in site.accelerators:
        if acc.type.casefold() == folded:
            return acc
    return None


def find(fabric: Fabric, network: Network, policy: CompiledPolicy, query: FindQuery) -> FindResult:
    """Sites meeting every condition of ``query``, ranked by ``query.sort``."""
    zone = fabric.jurisdictions(query.jurisdictions) if query.jurisdictions else None
    found: list[Candidate] = []
    excluded: list[Exclusion] = []
    for site in fabric.spec.sites:

        def drop(condition: str, reason: str, site: SiteSpec = site) -> None:
            excluded.append(Exclusion(site.name, condition, reason))

        if query.kinds and site.kind not in query.kinds:
            drop("kind", f"a {site.kind}, not {'/'.join(query.kinds)}")
            continue
        if query.providers and site.provider not in query.providers:
            drop("provider", f"run by {site.provider}")
            continue
        if zone is not None and not inside(site.jurisdiction_code, zone):
            drop(
                "jurisdiction",
                f"in {site.jurisdiction_code}, outside {'+'.join(query.jurisdictions)}",
            )
            continue
        acc: Accelerator | None = None
        price: float | None = None
        if query.accelerator is not None:
            acc = _accelerator(site, query.accelerator)
            if acc is None:
                drop("accelerator", f"no {query.accelerator}")
                continue
            if acc.free < query.count:
                drop("capacity", f"{acc.free} free {acc.type}, {query.count} needed")
                continue
            price = _price(acc, query.pricing)
            if query.max_usd_per_device_hour is not None and (
                price is None or price > query.max_usd_per_device_hour
            ):
                shown = "no price" if price is None else f"{price:.2f} $/device-h"
                drop("price", f"{shown} over {query.max_usd_per_device_hour:.2f}")
                continue
        path: NetPath | None = None
        if query.near is not None:
            path = network.path(query.near, site.name, private_only=query.private_path)
            if path is None:
                drop("private path", f"no private path from {query.near}")
                continue
            if query.within_ms is not None and path.rtt_ms > query.within_ms:
                drop("latency", f"{path.rtt_ms:.1f} ms from {query.near} ({path.source})")
                continue
        verdict = "—"
        if query.data_class is not None or query.model is not None:
            data_class = query.data_class or "public"
            result = policy.evaluate(data_class, site.name, path, query.model)
            if not result.allowed:
                drop("sovereignty", str(result))
                continue
            verdict = str(result)
        found.append(
            Candidate(
                site=site.name,
                kind=site.kind,
                provider=site.provider,
                city=site.city,
                jurisdiction=site.jurisdiction_code,
                accelerator=acc.type if acc else None,
                free_devices=acc.free if acc else None,
                usd_per_device_hour=price,
                rtt_ms=path.rtt_ms if path else None,
                path_source=path.source if path else None,
                private_path=path.private if path else None,
                carbon_g_per_kwh=site.carbon_g_per_kwh,
                verdict=verdict,
            )
        )
    inf = float("inf")

    def rank(c: Candidate) -> tuple[float, float, float, str]:
        price = c.usd_per_device_hour if c.usd_per_device_hour is not None else inf
        rtt = c.rtt_ms if c.rtt_ms is not None else inf
        carbon = c.carbon_g_per_kwh if c.carbon_g_per_kwh is not None else inf
        order = {
            "price": (price, rtt, carbon),
            "rtt": (rtt, price, carbon),
            "carbon": (carbon, price, rtt),
        }
        return (*order[query.sort], c.site)

    found.sort(key=rank)
    if query.limit is not None:
        found = found[: query.limit]
    return FindResult(tuple(found), tuple(excluded))
