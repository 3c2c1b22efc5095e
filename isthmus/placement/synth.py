"""Synthetic workloads for any fabric, for benchmarks and property tests.

``synth_workloads(spec, n, seed)`` returns the fabric with datasets added and ``n`` workloads of
every kind, deterministic for a seed. Data classes follow the synthetic fabric's rules
(``isthmus.fabric.synth``): personal data is asked for from European metros, health data only by
jobs next to US data (those rules need private paths, and synthetic fabrics declare none), and
national data from French metros next to French data; so most workloads have a compliant home
and the ones that do not show up as diagnosed conflicts, not crashes. Sizes follow public
orders of magnitude: chat services of 0.2-15 requests/s, batch jobs of 10^5-10^6 requests,
LoRA fine-tunes of 10^7-10^8 tokens.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from isthmus.fabric.countries import continent_of
from isthmus.fabric.schema import Dataset, FabricSpec, SiteSpec
from isthmus.fabric.synth import EU
from isthmus.placement.spec import Workload, WorkloadsSpec

__all__ = ["KIND_WEIGHTS", "scale_capacity", "synth_workloads"]

KIND_WEIGHTS: dict[str, float] = {
    "online_inference": 0.45,
    "rag": 0.15,
    "batch_inference": 0.2,
    "fine_tuning": 0.14,
    "pretraining": 0.06,
}
CLASS_WEIGHTS: dict[str, float] = {
    "public": 0.2,
    "internal": 0.5,
    "pii": 0.2,
    "phi": 0.06,
    "restricted": 0.04,
}
SMALL_MODELS = ("llama-3.1-8b", "qwen2.5-7b")
LARGE_MODEL = "llama-3.3-70b"
EEA = frozenset([*EU, "IS", "LI", "NO"])


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), list(weights.values()))[0]


def _has_gpus(site: SiteSpec) -> bool:
    return any(a.free > 0 for a in site.accelerators)


def synth_workloads(
    spec: FabricSpec, n: int, seed: int = 11, *, period_hours: float = 730.0
) -> tuple[FabricSpec, WorkloadsSpec]:
    """``spec`` with datasets added, and ``n`` workloads over it."""
    rng = random.Random(seed)
    sites = [s for s in spec.sites if _has_gpus(s)]
    metros = list(spec.metros)
    continent = {m.name: continent_of(m.country) for m in metros}
    eea_metros = [m.name for m in metros if m.country in EEA]
    fr_metros = [m.name for m in metros if m.country == "FR"]
    homes: dict[str, list[SiteSpec]] = {
        "public": sites,
        "internal": sites,
        "pii": [s for s in sites if s.country in EEA and s.tags.get("key_custody") != "provider"],
        "phi": [s for s in sites if s.country == "US" and s.tags.get("hipaa_baa") == "true"],
        "restricted": [s for s in sites if s.country == "FR" and s.kind in ("on_prem", "colo")],
    }
    # jobs on health and national data run where the data is (their rules need private or
    # national paths): keep those datasets at sites with room to compute
    for data_class in ("phi", "restricted"):
        roomy = [s for s in homes[data_class] if sum(a.free for a in s.accelerators) >= 16]
        homes[data_class] = roomy or homes[data_class]
    datasets: list[Dataset] = []
    by_class: dict[str, list[Dataset]] = {}
    for i in range(max(8, n // 15)):
        data_class = _pick(rng, CLASS_WEIGHTS)
        pool = homes[data_class] or sites
        home = rng.choice(pool)
        residency: tuple[str, ...] = ()
        if data_class == "pii":
            residency = ("EEA",)
        dataset = Dataset(
            name=f"ds{i}-{data_class}",
            site=home.name,
            size_gb=round(rng.choice((5, 20, 80, 300, 1200)) * rng.uniform(0.5, 1.5), 1),
            data_class=data_class if homes[data_class] else "internal",
            residency=residency,
        )
        datasets.append(dataset)
        by_class.setdefault(dataset.data_class, []).append(dataset)

    adequate = EEA | {"CH", "GB", "JP", "KR", "CA", "NZ", "IL", "UY", "AR"}
    pii_metros = {m.name for m in metros if m.country in adequate}

    def metros_near(anchor: str, count: int, allowed: set[str] | None = None) -> list[str]:
        same = [
            m
            for m in metros
            if continent[m.name] == continent[anchor] and (allowed is None or m.name in allowed)
        ]
        chosen = {anchor}
        while len(chosen) < count and len(chosen) < len(same):
            chosen.add(rng.choice(same).name)
        return sorted(chosen)

    workloads: list[dict[str, Any]] = []
    services: list[str] = []
    for i in range(n):
        kind = _pick(rng, KIND_WEIGHTS)
        data_class = _pick(rng, CLASS_WEIGHTS)
        if data_class == "phi" and kind in ("online_inference", "rag"):
            kind = rng.choice(("batch_inference", "fine_tuning"))
        if data_class not in by_class and kind in ("rag",):
            data_class = "internal"
        if data_class in ("phi", "restricted") and data_class not in by_class:
            data_class = "internal"
        name = f"w{i:05d}-{kind.split('_')[0]}"
        item: dict[str, Any] = {"name": name, "kind": kind, "data_class": data_class}
        large = rng.random() < 0.2
        model = LARGE_MODEL if large else rng.choice(SMALL_MODELS)
        if kind in ("online_inference", "rag"):
            allowed: set[str] | None = None
            if data_class == "pii" and eea_metros:
                anchor = rng.choice(eea_metros)
                allowed = pii_metros
            elif data_class == "restricted" and fr_metros:
                anchor = rng.choice(fr_metros)
                allowed = set(fr_metros)
            else:
                anchor = rng.choice(metros).name
            peak_each = rng.uniform(0.2, 4.0) if large else rng.uniform(0.5, 15.0)
            duty = rng.choice((1.0, 1.0, 0.6, 0.3))
            demand = []
            for metro in metros_near(anchor, rng.choice((1, 1, 2, 3)), allowed):
                peak = round(peak_each * rng.uniform(0.5, 1.5), 2)
                mean = round(peak * duty * rng.uniform(0.25, 0.7), 3)
                demand.append({"metro": metro, "mean_rps": mean, "peak_rps": peak})
            item["demand"] = demand
            item["duty_cycle"] = duty
            item["request"] = {
                "input_tokens": rng.choice((500, 1000, 2000)),
                "output_tokens": rng.choice((100, 200, 400)),
            }
            item["slo"] = {
                "ttft_p95_ms": rng.choice((2000, 3000)) if large else rng.choice((500, 800, 1200))
            }
            if rng.random() < 0.3:
                item["redundancy"] = {"n": 1, "k": 1}
            if kind == "rag":
                candidates = by_class.get(data_class) or by_class.get("internal") or datasets
                dataset = rng.choice(candidates)
                if dataset.data_class in ("public", "internal"):
                    item["data_class"] = dataset.data_class
                item["datasets"] = [
                    {"name": dataset.name, "access": "per_request", "kb_per_request": 32}
                ]
            services.append(name)
        else:
            readable = by_class.get(data_class) or []
            if readable and (data_class in ("phi", "restricted", "pii") or rng.random() < 0.7):
                item["datasets"] = [{"name": rng.choice(readable).name}]
            if kind == "batch_inference":
                item["requests"] = rng.choice((100_000, 300_000, 1_000_000))
                item["slo"] = {"deadline_hours": rng.choice((24, 72, 168))}
                item["runs_per_period"] = rng.choice((1, 4, 30))
            elif kind == "fine_tuning":
                item["method"] = "lora"
                item["train_tokens_b"] = round(rng.uniform(0.02, 0.2), 3)
                item["slo"] = {"deadline_hours": rng.choice((24, 48, 96))}
                item["runs_per_period"] = rng.choice((1, 2, 4))
            else:
                model = rng.choice(SMALL_MODELS)
                item["train_tokens_b"] = round(rng.uniform(0.05, 0.3), 3)
                item["slo"] = {"deadline_hours": rng.choice((168, 336, 720))}
        item["model"] = model
        if rng.random() < 0.1:
            item["carbon"] = {"usd_per_tonne": 100}
        workloads.append(item)
    for item in workloads:
        if item["name"] in services and rng.random() < 0.02 and len(services) > 1:
            other = rng.choice(services)
            if other != item["name"]:
                item["anti_affinity"] = [other]
    fabric = spec.model_copy(update={"datasets": (*spec.datasets, *datasets)})
    return fabric, WorkloadsSpec(
        name=f"synthetic-{n}",
        period_hours=period_hours,
        workloads=tuple(Workload.model_validate(item) for item in workloads),
    )


def scale_capacity(
    spec: FabricSpec, factor: float, per_pool: Mapping[tuple[str, str], float] | None = None
) -> FabricSpec:
    """``spec`` with every pool's free devices multiplied by ``factor`` (or by
    ``per_pool[(site, accelerator)]`` where given; a full pool that grows counts as one free
    device); prices are unchanged."""

    def grown(free: int, by: float) -> int:
        return max(0, round((free if by <= 1 or free > 0 else 1) * by))

    sites = []
    for site in spec.sites:
        accelerators = tuple(
            a.model_copy(
                update={
                    "count": a.allocated
                    + grown(a.free, (per_pool or {}).get((site.name, a.type), factor))
                }
            )
            for a in site.accelerators
        )
        sites.append(site.model_copy(update={"accelerators": tuple(accelerators)}))
    return spec.model_copy(update={"sites": tuple(sites)})
