"""Synthetic fabrics of any size on real geography, for benchmarks and the simulator.

Sites sit at real edge metros (Cloudflare's colo list: city, country, coordinates), so distances,
RTT estimates and jurisdictions are those of the real world; kinds, providers, accelerators and
prices are drawn from fixed distributions with a seed, so the same ``(n_sites, seed)`` always
gives the same fabric. Policies model the three reference cases (EU GDPR, US health, national
sovereign) plus open classes, so every policy clause is exercised at scale.
"""

from __future__ import annotations

import csv
import functools
import random
from dataclasses import dataclass
from importlib import resources

from isthmus.fabric.countries import continent_of
from isthmus.fabric.schema import (
    Accelerator,
    DataClass,
    Endpoint,
    FabricSpec,
    Hosting,
    Metro,
    ModelRules,
    ModelSpec,
    PerfProfile,
    SiteConditions,
    SiteSpec,
    SovereigntyRule,
)

__all__ = ["MetroRow", "real_metros", "synth_fabric"]

EU = ("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE").split()
_KINDS = ("cloud_region", "neocloud", "colo", "on_prem", "edge")
_KIND_WEIGHTS = (0.30, 0.15, 0.20, 0.10, 0.25)
_PROVIDERS = {
    "cloud_region": ("aws", "azure", "gcp", "oci"),
    "neocloud": ("lambda", "nebius", "coreweave", "verda"),
    "colo": ("equinix", "digitalrealty", "interxion"),
    "on_prem": ("enterprise",),
    "edge": ("akamai", "telco", "cloudflare"),
}
# (type, typical on-demand $/device-hour, spot discount) — ranges seen in public price lists
_ACCELERATORS = {
    "cloud_region": (("H100", 6.9, 0.45), ("A100-80GB", 4.1, 0.4), ("L4", 0.85, 0.35)),
    "neocloud": (("H100", 2.5, 0.6), ("H200", 3.5, 0.6), ("A100-80GB", 1.3, 0.6)),
    "colo": (("H100", 3.0, 1.0), ("L40S", 1.2, 1.0)),
    "on_prem": (("H100", 2.2, 1.0), ("A100-80GB", 1.5, 1.0)),
    "edge": (("L4", 0.9, 1.0), ("L40S", 1.4, 1.0)),
}


@dataclass(frozen=True, slots=True)
class MetroRow:
    iata: str
    city: str
    country: str
    lat_deg: float
    lon_deg: float


@functools.cache
def real_metros() -> tuple[MetroRow, ...]:
    """The packaged metro list (rows without coordinates are skipped)."""
    text = resources.files("isthmus.fabric.data").joinpath("metros_cloudflare.csv").read_text()
    rows = []
    for row in csv.DictReader(text.splitlines()):
        if row["lat_deg"] and row["lon_deg"] and row["country"]:
            rows.append(
                MetroRow(
                    row["iata"],
                    row["city"],
                    row["country"],
                    float(row["lat_deg"]),
                    float(row["lon_deg"]),
                )
            )
    return tuple(rows)


def _models() -> tuple[ModelSpec, ...]:
    def profiles(prefill: float, decode: float, kv: int) -> tuple[PerfProfile, ...]:
        return tuple(
            PerfProfile(
                accelerator=acc,
                prefill_tokens_per_s=prefill * speed,
                decode_tokens_per_s=decode * speed,
                kv_cache_tokens=int(kv * mem),
            )
            for acc, speed, mem in (
                ("H200", 1.2, 1.6),
                ("H100", 1.0, 1.0),
                ("A100-80GB", 0.55, 1.0),
                ("L40S", 0.35, 0.5),
                ("L4", 0.15, 0.25),
            )
        )

    return (
        ModelSpec(
            name="llama-3.1-8b",
            context_tokens=131_072,
            params_b=8,
            licence="llama3.1",
            quality={"chat": 0.62},
            profiles=profiles(14_000, 140, 480_000),
        ),
        ModelSpec(
            name="llama-3.3-70b",
            context_tokens=131_072,
            params_b=70,
            licence="llama3.3",
            quality={"chat": 0.8},
            profiles=profiles(3_000, 35, 120_000),
        ),
        ModelSpec(
            name="qwen2.5-7b",
            context_tokens=131_072,
            params_b=7,
            licence="apache-2.0",
            quality={"chat": 0.6},
            profiles=profiles(15_000, 150, 500_000),
        ),
        ModelSpec(
            name="closed-frontier",
            context_tokens=200_000,
            params_b=1000,
            licence="proprietary",
            open_weights=False,
            provider="aws",
            quality={"chat": 0.92},
            hosting=Hosting(providers=("aws", "azure")),
        ),
    )


def _policies() -> tuple[SovereigntyRule, ...]:
    return (
        SovereigntyRule(name="open-data", data_classes=("public", "internal")),
        SovereigntyRule(
            name="gdpr-personal-data",
            data_classes=("pii",),
            process_in=("EEA", "ADEQUATE"),
            store_in=("EEA",),
            transit_in=("EEA", "ADEQUATE"),
            sites=SiteConditions(deny_tags={"key_custody": "provider"}),
            models=ModelRules(hosted_in=("EEA",)),
        ),
        SovereigntyRule(
            name="us-health",
            data_classes=("phi",),
            process_in=("US",),
            transit_in=("US",),
            require_private_path=True,
            sites=SiteConditions(require_tags={"hipaa_baa": "true"}),
        ),
        SovereigntyRule(
            name="national-restricted",
            data_classes=("restricted",),
            process_in=("FR",),
            transit_in=("FR",),
            sites=SiteConditions(site_kinds=("on_prem", "colo")),
            models=ModelRules(require_open_weights=True),
        ),
    )


def synth_fabric(n_sites: int, seed: int = 7, endpoints_per_site: int = 2) -> FabricSpec:
    """A valid fabric with ``n_sites`` sites on real metros (deterministic for a seed)."""
    rng = random.Random(seed)
    metros = real_metros()
    sites: list[SiteSpec] = []
    endpoints: list[Endpoint] = []
    models = _models()
    open_models = [m for m in models if m.open_weights]
    for index in range(n_sites):
        metro = metros[index % len(metros)]
        kind = rng.choices(_KINDS, _KIND_WEIGHTS)[0]
        provider = rng.choice(_PROVIDERS[kind])
        accelerators = []
        for acc_type, price, spot in _ACCELERATORS[kind]:
            if rng.random() < 0.6:
                count = (
                    rng.choice((8, 16, 32, 64, 128)) if kind != "edge" else rng.choice((2, 4, 8))
                )
                on_demand = round(price * rng.uniform(0.85, 1.2), 2)
                accelerators.append(
                    Accelerator(
                        type=acc_type,
                        count=count,
                        allocated=rng.randrange(0, count + 1),
                        on_demand_usd_per_device_hour=on_demand,
                        reserved_usd_per_device_hour=round(on_demand * 0.6, 2),
                        spot_usd_per_device_hour=round(on_demand * spot, 2) if spot < 1 else None,
                    )
                )
        name = f"{provider}-{metro.iata.lower()}-{index}"
        custody = "customer" if kind in ("on_prem", "colo") or rng.random() < 0.2 else "provider"
        sites.append(
            SiteSpec(
                name=name,
                kind=kind,
                provider=provider,
                city=metro.city,
                country=metro.country,
                lat_deg=metro.lat_deg,
                lon_deg=metro.lon_deg,
                failure_domain=f"{provider}-{continent_of(metro.country).lower().replace(' ', '-')}",
                accelerators=tuple(accelerators),
                carbon_g_per_kwh=round(rng.uniform(20, 700), 1),
                tags={
                    "key_custody": custody,
                    "hipaa_baa": "true" if rng.random() < 0.5 else "false",
                },
            )
        )
        for j in range(endpoints_per_site if accelerators else 0):
            model = open_models[(index + j) % len(open_models)]
            endpoints.append(
                Endpoint(
                    name=f"{name}-ep{j}",
                    model=model.name,
                    site=name,
                    engine="emulator",
                    url=f"http://127.0.0.1:{20000 + len(endpoints)}/v1",
                    accelerator=accelerators[0].type,
                )
            )
    return FabricSpec(
        name=f"synthetic-{n_sites}",
        jurisdiction_groups={
            "EU": tuple(EU),
            "EEA": ("EU", "IS", "LI", "NO"),
            "ADEQUATE": ("CH", "GB", "JP", "KR", "CA", "NZ", "IL", "UY", "AR"),
        },
        data_classes=tuple(
            DataClass(name=n, level=lvl)
            for n, lvl in (
                ("public", 0),
                ("internal", 1),
                ("pii", 3),
                ("phi", 4),
                ("restricted", 5),
            )
        ),
        sites=tuple(sites),
        metros=tuple(
            Metro(name=m.iata, city=m.city, country=m.country, lat_deg=m.lat_deg, lon_deg=m.lon_deg)
            for m in metros
        ),
        models=models,
        aliases={"chat": tuple(m.name for m in open_models)},
        endpoints=tuple(endpoints),
        policies=_policies(),
    )
