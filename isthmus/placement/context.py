"""The fabric as arrays for placement: pools of devices, prices, domains, paths and verdicts.

A *slot* is a place a workload leg can run: a pool (one accelerator type at one site, with its
free devices and prices) or a provider API (a closed model served at a site, priced per token,
with no devices to count). Everything per site or per slot is a numpy array indexed the same way,
so a workload's every candidate is costed with a handful of vector operations.

Invariants:

- **Prices keep their meaning.** ``on_demand`` is paid per device-hour used, ``spot`` per
  device-hour used on interruptible capacity, ``dedicated`` for every hour of the period whether
  used or not: a listed ``reserved`` price, or the amortised price of owned hardware (on-prem and
  colocation sites, whose listed price is an amortised-cost estimate: see the example fabric).
  Owned hardware can also be shared: a device-hour used on demand costs the amortised price
  divided by the pool's expected utilisation (``OWNED_POOL_UTILISATION``), since its idle hours
  are paid too. Owned hardware has no spot price. A pool with no price at all is not a slot.
- **Verdicts come from the compiled policy and the network, never from a copy of their rules.**
  ``process_ok``, ``metro_access`` and ``dataset_access`` call ``CompiledPolicy.evaluate`` over
  the very ``NetPath`` whose RTT and egress the cost model uses; when a rule needs a private
  path, the private path is tried as the router does. Each is memoised per key (the fabric is
  immutable).
- **Down sites** (a failure being re-planned around) are never candidates, and a site a tenant
  runs itself (the tenant's name is the site's provider: its own data centre) hosts only that
  tenant's workloads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import ModelSpec, SiteSpec
from isthmus.network.paths import NetPath, Network
from isthmus.placement.spec import SiteFilter
from isthmus.policy import CompiledPolicy, Verdict, compile_policy
from isthmus.policy.checks import inside

__all__ = [
    "DEFAULT_CARBON_G_PER_KWH",
    "DEVICE_KW",
    "OWNED_KINDS",
    "OWNED_POOL_UTILISATION",
    "DataAccess",
    "MetroAccess",
    "ModelArrays",
    "PlanContext",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

OWNED_KINDS = frozenset({"on_prem", "colo"})
"""Site kinds whose listed device price is the amortised cost of owned hardware."""
OWNED_POOL_UTILISATION = 0.6
"""Expected utilisation of a shared owned pool: a device-hour used on demand there is billed
at amortised price / 0.6 (a private-cloud chargeback rate)."""

DEVICE_KW: dict[str, float] = {
    # board power at typical load, vendor data sheets (SXM parts at their TDP class)
    "H100": 0.70,
    "H100-NVL": 0.40,
    "H100-PCIe": 0.35,
    "H200": 0.70,
    "B200": 1.00,
    "A100-80GB": 0.40,
    "L40S": 0.35,
    "L4": 0.072,
    "MI300X": 0.75,
}
DEFAULT_DEVICE_KW = 0.5
PUE = 1.2
"""Power usage effectiveness: facility energy per unit of IT energy (modern data centres)."""
DEFAULT_CARBON_G_PER_KWH = 480.0
"""World-average grid intensity (IEA, 2023): used where a site gives none."""

API_PREFILL_TOKENS_PER_S = 5_000.0
API_DECODE_TOKENS_PER_S = 50.0
"""A provider API's speed when nothing better is known (the router's default profile)."""

_PATH_CLAUSES = frozenset({"transit_in", "require_private_path"})


@dataclass(frozen=True, slots=True)
class ModelArrays:
    """A model's performance on every slot (NaN where it cannot run there)."""

    prefill_tokens_per_s: FloatArray
    decode_tokens_per_s: FloatArray
    max_batch: FloatArray
    devices_per_replica: FloatArray


@dataclass(frozen=True, slots=True)
class MetroAccess:
    """Requests of one data class from one metro, per site."""

    allowed: BoolArray
    rtt_ms: FloatArray
    egress_usd_per_gb: FloatArray
    """Responses: from the site back to the metro."""


@dataclass(frozen=True, slots=True)
class DataAccess:
    """A dataset read by one model, per site."""

    local: BoolArray
    remote_ok: BoolArray
    replicate_ok: BoolArray
    egress_usd_per_gb: FloatArray
    """From the dataset's home to the site."""
    rtt_ms: FloatArray


class PlanContext:
    """Everything placement reads of a fabric, as arrays and memoised verdicts."""

    def __init__(
        self,
        fabric: Fabric,
        *,
        network: Network | None = None,
        policy: CompiledPolicy | None = None,
        period_hours: float = 730.0,
        amortise_periods: float = 6.0,
        down_sites: Iterable[str] = (),
    ) -> None:
        self.fabric = fabric
        self.network = network or Network(fabric)
        self.policy = policy or compile_policy(fabric)
        self.period_hours = float(period_hours)
        self.amortise_periods = float(amortise_periods)
        self.down_sites = frozenset(down_sites)
        sites = fabric.spec.sites
        self.sites: tuple[SiteSpec, ...] = sites
        self.site_index = {s.name: i for i, s in enumerate(sites)}
        domains = sorted({s.failure_domain_name for s in sites})
        self.domain_names: tuple[str, ...] = tuple(domains)
        domain_index = {d: i for i, d in enumerate(domains)}
        self.site_domain: IntArray = np.array(
            [domain_index[s.failure_domain_name] for s in sites], dtype=np.int64
        )
        self.site_carbon: FloatArray = np.array(
            [
                s.carbon_g_per_kwh if s.carbon_g_per_kwh is not None else DEFAULT_CARBON_G_PER_KWH
                for s in sites
            ],
            dtype=np.float64,
        )
        self.site_down: BoolArray = np.array([s.name in self.down_sites for s in sites], dtype=bool)
        self._build_slots(fabric)
        self._model_memo: dict[tuple[str, bool], ModelArrays] = {}
        self._process_memo: dict[tuple[str, str], BoolArray] = {}
        self._metro_memo: dict[tuple[str, str], MetroAccess] = {}
        self._metro_paths: dict[str, tuple[FloatArray, FloatArray]] = {}
        self._home_paths: dict[str, tuple[FloatArray, FloatArray]] = {}
        self.memo: dict[tuple[object, ...], object] = {}
        """Free for the cost model's per-shape arrays (see ``isthmus.placement.costs``)."""
        self._data_memo: dict[tuple[str, str], DataAccess] = {}
        self._weights_memo: dict[str, FloatArray] = {}
        self._filter_memo: dict[SiteFilter, BoolArray] = {}
        self._path_rule_classes = {
            name
            for rule in fabric.spec.policies
            if rule.transit_in or rule.require_private_path
            for name in rule.data_classes
        }

    # -- slots ---------------------------------------------------------------------------------

    def _build_slots(self, fabric: Fabric) -> None:
        site_of: list[int] = []
        accel: list[str] = []
        api_model: list[str] = []
        free: list[float] = []
        on_demand: list[float] = []
        dedicated: list[float] = []
        spot: list[float] = []
        for i, site in enumerate(fabric.spec.sites):
            owned = site.kind in OWNED_KINDS
            for acc in site.accelerators:
                prices = [
                    p
                    for p in (
                        acc.on_demand_usd_per_device_hour,
                        acc.reserved_usd_per_device_hour,
                        acc.spot_usd_per_device_hour,
                    )
                    if p is not None
                ]
                if not prices:
                    continue
                site_of.append(i)
                accel.append(acc.type)
                api_model.append("")
                free.append(float(acc.free))
                if owned:
                    listed = [
                        p
                        for p in (
                            acc.reserved_usd_per_device_hour,
                            acc.on_demand_usd_per_device_hour,
                        )
                        if p is not None
                    ]
                    amortised = min(listed) if listed else math.nan
                    on_demand.append(amortised / OWNED_POOL_UTILISATION)
                    dedicated.append(amortised)
                    spot.append(math.nan)
                else:
                    on_demand.append(_nan(acc.on_demand_usd_per_device_hour))
                    dedicated.append(_nan(acc.reserved_usd_per_device_hour))
                    spot.append(_nan(acc.spot_usd_per_device_hour))
        self.pool_count = len(site_of)
        seen: set[tuple[str, str]] = set()
        self.api_prices: dict[int, tuple[float, float]] = {}
        for endpoint in fabric.spec.endpoints:
            model = fabric.models[endpoint.model]
            if model.open_weights or model.usd_per_million_input_tokens is None:
                continue
            key = (endpoint.site, model.name)
            if key in seen:
                continue
            seen.add(key)
            self.api_prices[len(site_of)] = (
                model.usd_per_million_input_tokens,
                model.usd_per_million_output_tokens or 0.0,
            )
            site_of.append(self.site_index[endpoint.site])
            accel.append("api")
            api_model.append(model.name)
            free.append(math.inf)
            on_demand.append(math.nan)
            dedicated.append(math.nan)
            spot.append(math.nan)
        self.slot_site: IntArray = np.array(site_of, dtype=np.int64)
        self.slot_accelerator: tuple[str, ...] = tuple(accel)
        self.slot_api_model: tuple[str, ...] = tuple(api_model)
        self.slot_is_api: BoolArray = np.array([m != "" for m in api_model], dtype=bool)
        self.slot_free: FloatArray = np.array(free, dtype=np.float64)
        self.slot_on_demand: FloatArray = np.array(on_demand, dtype=np.float64)
        self.slot_dedicated: FloatArray = np.array(dedicated, dtype=np.float64)
        self.slot_spot: FloatArray = np.array(spot, dtype=np.float64)
        self.slot_kw: FloatArray = np.array(
            [0.0 if a == "api" else DEVICE_KW.get(a, DEFAULT_DEVICE_KW) for a in accel],
            dtype=np.float64,
        )
        self.slot_domain: IntArray = self.site_domain[self.slot_site]
        self.slot_count = len(site_of)

    def slot_name(self, slot: int) -> str:
        site = self.sites[int(self.slot_site[slot])].name
        return f"{site}/{self.slot_accelerator[slot]}"

    def site_of_slot(self, slot: int) -> SiteSpec:
        return self.sites[int(self.slot_site[slot])]

    # -- models --------------------------------------------------------------------------------

    def model_arrays(self, model: ModelSpec, *, inference: bool) -> ModelArrays:
        """``model``'s profile per slot; provider APIs count only for inference."""
        key = (model.name, inference)
        found = self._model_memo.get(key)
        if found is not None:
            return found
        n = self.slot_count
        prefill = np.full(n, np.nan)
        decode = np.full(n, np.nan)
        batch = np.full(n, np.nan)
        devices = np.full(n, np.nan)
        profiles = {p.accelerator: p for p in model.profiles}
        for slot in range(n):
            if self.slot_is_api[slot]:
                if inference and self.slot_api_model[slot] == model.name:
                    prefill[slot] = API_PREFILL_TOKENS_PER_S
                    decode[slot] = API_DECODE_TOKENS_PER_S
                    batch[slot] = 1.0
                    devices[slot] = 0.0
                continue
            profile = profiles.get(self.slot_accelerator[slot])
            if profile is None:
                continue
            prefill[slot] = profile.prefill_tokens_per_s
            decode[slot] = profile.decode_tokens_per_s
            batch[slot] = profile.max_batch_size
            devices[slot] = profile.devices_per_replica
        found = ModelArrays(prefill, decode, batch, devices)
        self._model_memo[key] = found
        return found

    # -- sovereignty ---------------------------------------------------------------------------

    def process_ok(self, data_class: str, model: str) -> BoolArray:
        """May ``model`` process data of ``data_class`` at each site?"""
        key = (data_class, model)
        found = self._process_memo.get(key)
        if found is None:
            found = np.array(
                [self.policy.evaluate(data_class, s.name, model=model).allowed for s in self.sites],
                dtype=bool,
            )
            self._process_memo[key] = found
        return found

    def process_verdict(self, data_class: str, site: str, model: str) -> Verdict:
        return self.policy.evaluate(data_class, site, model=model)

    def _path(self, src: str, dst: str, data_class: str | None) -> tuple[NetPath, Verdict | None]:
        """The path data takes from ``src`` to ``dst`` and the path verdict for the class
        (``None`` = no path rule applies). A refused public path is retried as a private one."""
        path = self.network.path(src, dst)
        assert path is not None
        if data_class is None or data_class not in self._path_rule_classes:
            return path, None
        site = dst if dst in self.site_index else src
        verdict = self.policy.evaluate(data_class, site, path)
        if verdict.allowed or verdict.clause not in _PATH_CLAUSES:
            return path, None
        private = self.network.path(src, dst, private_only=True)
        if private is not None:
            retry = self.policy.evaluate(data_class, site, private)
            if retry.allowed or retry.clause not in _PATH_CLAUSES:
                return private, None
        return path, verdict

    def _metro_geometry(self, metro: str) -> tuple[FloatArray, FloatArray]:
        """(RTT ms, egress USD/GB) between ``metro`` and every site, read off the path from the
        site to the metro (responses flow that way; round trips are symmetric)."""
        found = self._metro_paths.get(metro)
        if found is None:
            rtt = np.empty(len(self.sites))
            egress = np.empty(len(self.sites))
            for i, site in enumerate(self.sites):
                outbound = self.network.path(site.name, metro)
                assert outbound is not None
                rtt[i] = outbound.rtt_ms
                egress[i] = outbound.egress_usd_per_gb
            found = (rtt, egress)
            self._metro_paths[metro] = found
        return found

    def metro_access(self, data_class: str, metro: str) -> MetroAccess:
        """Requests of ``data_class`` from ``metro`` to each site: path allowed, RTT, egress."""
        key = (data_class, metro)
        found = self._metro_memo.get(key)
        if found is not None:
            return found
        rtt, egress = self._metro_geometry(metro)
        if data_class not in self._path_rule_classes:
            found = MetroAccess(np.ones(len(self.sites), dtype=bool), rtt, egress)
        else:
            allowed = np.ones(len(self.sites), dtype=bool)
            rtt = rtt.copy()
            for i, site in enumerate(self.sites):
                if site.name == metro:
                    continue
                path, refusal = self._path(metro, site.name, data_class)
                allowed[i] = refusal is None
                rtt[i] = path.rtt_ms
            found = MetroAccess(allowed, rtt, egress)
        self._metro_memo[key] = found
        return found

    def metro_verdict(self, data_class: str, metro: str, site: str) -> Verdict | None:
        """The path refusal for requests from ``metro`` to ``site`` (``None`` if allowed)."""
        if metro == site:
            return None
        return self._path(metro, site, data_class)[1]

    def _site_geometry(self, home: str) -> tuple[FloatArray, FloatArray]:
        """(egress USD/GB, RTT ms) from site ``home`` to every site, over the best path."""
        found = self._home_paths.get(home)
        if found is None:
            egress = np.zeros(len(self.sites))
            rtt = np.zeros(len(self.sites))
            for i, site in enumerate(self.sites):
                path = self.network.path(home, site.name)
                assert path is not None
                egress[i] = path.egress_usd_per_gb
                rtt[i] = path.rtt_ms
            found = (egress, rtt)
            self._home_paths[home] = found
        return found

    def _store_ok(self, data_class: str) -> BoolArray:
        key = (data_class, "\x00store")
        found = self._process_memo.get(key)
        if found is None:
            found = np.array(
                [
                    self.policy.evaluate(data_class, s.name, action="store").allowed
                    for s in self.sites
                ],
                dtype=bool,
            )
            self._process_memo[key] = found
        return found

    def _zone_mask(self, zones: tuple[str, ...]) -> BoolArray:
        atoms = self.fabric.jurisdictions(zones)
        return np.array([inside(s.jurisdiction_code, atoms) for s in self.sites], dtype=bool)

    def dataset_access(self, dataset: str, model: str) -> DataAccess:
        """Reading ``dataset`` from each site by ``model``: remotely, or from a local copy."""
        key = (dataset, model)
        found = self._data_memo.get(key)
        if found is not None:
            return found
        spec = self.fabric.datasets[dataset]
        home = spec.site
        n = len(self.sites)
        egress, rtt = self._site_geometry(home)
        egress, rtt = egress.copy(), rtt.copy()
        process = self.process_ok(spec.data_class, model)
        path_ok = np.ones(n, dtype=bool)
        if spec.data_class in self._path_rule_classes:
            for i, site in enumerate(self.sites):
                if site.name == home:
                    continue
                path, refusal = self._path(home, site.name, spec.data_class)
                path_ok[i] = refusal is None
                egress[i] = path.egress_usd_per_gb
                rtt[i] = path.rtt_ms
        local = np.array([s.name == home for s in self.sites], dtype=bool)
        remote_ok = process & path_ok
        replicate_ok = remote_ok & self._store_ok(spec.data_class)
        if spec.residency:
            replicate_ok &= self._zone_mask(spec.residency)
        egress[local] = 0.0
        rtt[local] = 0.0
        found = DataAccess(local, remote_ok, replicate_ok, egress, rtt)
        self._data_memo[key] = found
        return found

    def dataset_refusal(self, dataset: str, site: str, model: str) -> str:
        """Why ``dataset`` may neither be read remotely nor copied to ``site`` by ``model``."""
        spec = self.fabric.datasets[dataset]
        process = self.policy.evaluate(spec.data_class, site, model=model)
        if not process.allowed:
            return f"dataset {dataset} ({spec.data_class}): {process}"
        if site == spec.site:
            return ""
        refusal = self._path(spec.site, site, spec.data_class)[1]
        if refusal is not None:
            return f"dataset {dataset} ({spec.data_class}) from {spec.site}: {refusal}"
        return ""

    # -- weights -------------------------------------------------------------------------------

    def weights_egress(self, model: ModelSpec) -> FloatArray:
        """USD per GB to bring ``model``'s weights to each site: from the cheapest site already
        serving it, or free from a public registry (ingress costs nothing) if none does."""
        found = self._weights_memo.get(model.name)
        if found is not None:
            return found
        sources = sorted({e.site for e in self.fabric.endpoints_of_model(model.name)})
        out = np.zeros(len(self.sites))
        if sources:
            for i, site in enumerate(self.sites):
                if site.name in sources:
                    continue
                best = math.inf
                for src in sources:
                    path = self.network.path(src, site.name)
                    assert path is not None
                    best = min(best, path.egress_usd_per_gb)
                    if best == 0.0:
                        break
                out[i] = best
        self._weights_memo[model.name] = out
        return out

    # -- filters -------------------------------------------------------------------------------

    def private_to_others(self, tenant: str | None) -> BoolArray:
        """Sites a tenant runs itself (its name is the site's provider) are private to it."""
        key = ("private", tenant)
        found = self.memo.get(key)
        if found is None:
            tenants = set(self.fabric.tenants)
            found = np.array(
                [s.provider in tenants and s.provider != tenant for s in self.sites], dtype=bool
            )
            self.memo[key] = found
        return found  # type: ignore[return-value]

    def filter_mask(self, chosen: SiteFilter) -> BoolArray:
        """Slots matching every non-empty aspect of ``chosen`` (sites, zones, providers, kinds,
        accelerators); all slots if it is empty."""
        found = self._filter_memo.get(chosen)
        if found is not None:
            return found
        site_ok = np.ones(len(self.sites), dtype=bool)
        zone = self.fabric.jurisdictions(chosen.jurisdictions) if chosen.jurisdictions else None
        for i, site in enumerate(self.sites):
            if (
                (chosen.sites and site.name not in chosen.sites)
                or (zone is not None and not inside(site.jurisdiction_code, zone))
                or (chosen.providers and site.provider not in chosen.providers)
                or (chosen.site_kinds and site.kind not in chosen.site_kinds)
            ):
                site_ok[i] = False
        found = site_ok[self.slot_site]
        if chosen.accelerators:
            wanted = set(chosen.accelerators)
            found = found & np.array([a in wanted for a in self.slot_accelerator], dtype=bool)
        self._filter_memo[chosen] = found
        return found

    def avoid_mask(self, avoided: SiteFilter) -> BoolArray:
        """Slots matching any non-empty aspect of ``avoided``."""
        if avoided.empty:
            return np.zeros(self.slot_count, dtype=bool)
        hit = np.zeros(self.slot_count, dtype=bool)
        for field in ("sites", "jurisdictions", "providers", "site_kinds", "accelerators"):
            values = getattr(avoided, field)
            if values:
                hit |= self.filter_mask(SiteFilter(**{field: values}))
        return hit


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)
