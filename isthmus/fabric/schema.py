"""The fabric file format: sites, links, metros, models, endpoints, datasets, tenants, policy.

Invariants: every field's unit is in its name (``rtt_ms``, ``egress_usd_per_gb``,
``on_demand_usd_per_device_hour``); unknown fields are errors (``extra="forbid"``); every
object is immutable once loaded. Checks that need more than one object (an endpoint's site
exists, a policy names a known jurisdiction group) live in ``isthmus.fabric.references``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from isthmus.fabric.countries import COUNTRY_CODES, is_jurisdiction_code

__all__ = [
    "Accelerator",
    "ApiKey",
    "Budget",
    "DataClass",
    "Dataset",
    "Endpoint",
    "EngineKind",
    "FabricSpec",
    "Hosting",
    "Link",
    "Metro",
    "ModelRules",
    "ModelSpec",
    "Objective",
    "PerfProfile",
    "SiteConditions",
    "SiteKind",
    "SiteSpec",
    "SovereigntyRule",
    "Tenant",
]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_country(code: str) -> str:
    if code not in COUNTRY_CODES:
        raise ValueError(
            f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. DE, US, GB, JP)"
        )
    return code


def _check_jurisdiction(code: str) -> str:
    if not is_jurisdiction_code(code):
        raise ValueError(
            f"{code!r} is not a jurisdiction: use an ISO 3166-1 alpha-2 country code "
            "(DE) or a subdivision of one (US-CA)"
        )
    return code


Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/+@-]{0,127}$")]
"""An identifier: letters, digits and ``._:/+@-``, starting with a letter or digit."""
Country = Annotated[str, AfterValidator(_check_country)]
Jurisdiction = Annotated[str, AfterValidator(_check_jurisdiction)]
GroupOrJurisdiction = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
"""A jurisdiction code (``DE``, ``US-CA``) or the name of a jurisdiction group (``EEA``)."""
Latitude = Annotated[float, Field(ge=-90, le=90)]
Longitude = Annotated[float, Field(ge=-180, le=180)]
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

SiteKind = Literal["cloud_region", "neocloud", "colo", "on_prem", "edge"]
EngineKind = Literal["vllm", "sglang", "llamacpp", "ollama", "tgi", "openai", "emulator"]
ModelKind = Literal["chat", "completion", "embedding"]


class Accelerator(_Spec):
    """Devices of one type at a site, with their hourly price per device."""

    type: Name = Field(description="accelerator type, e.g. H100, A100-80GB, L4, MI300X")
    count: Annotated[int, Field(ge=0)]
    allocated: Annotated[int, Field(ge=0)] = 0
    memory_gb: Positive | None = None
    on_demand_usd_per_device_hour: NonNegative | None = None
    reserved_usd_per_device_hour: NonNegative | None = None
    spot_usd_per_device_hour: NonNegative | None = None

    @model_validator(mode="after")
    def _allocated_within_count(self) -> Accelerator:
        if self.allocated > self.count:
            raise ValueError(f"allocated ({self.allocated}) exceeds count ({self.count})")
        return self

    @property
    def free(self) -> int:
        return self.count - self.allocated


class SiteSpec(_Spec):
    """A place that runs compute."""

    name: Name
    kind: SiteKind
    provider: Name
    city: str
    country: Country
    lat_deg: Latitude
    lon_deg: Longitude
    jurisdiction: Jurisdiction | None = Field(
        default=None, description="defaults to the country code"
    )
    failure_domain: Name | None = Field(default=None, description="defaults to the site name")
    cloud_region_id: str | None = Field(
        default=None,
        description="provider:region id (e.g. aws:eu-central-1) to use measured RTT and "
        "egress tables",
    )
    accelerators: tuple[Accelerator, ...] = ()
    carbon_g_per_kwh: NonNegative | None = None
    tags: dict[Name, str] = Field(default_factory=dict)
    description: str | None = None

    @property
    def jurisdiction_code(self) -> str:
        return self.jurisdiction or self.country

    @property
    def failure_domain_name(self) -> str:
        return self.failure_domain or self.name


class Metro(_Spec):
    """A user metro: where demand comes from (e.g. FRA, IAD, SIN)."""

    name: Name
    city: str
    country: Country
    lat_deg: Latitude
    lon_deg: Longitude
    jurisdiction: Jurisdiction | None = None

    @property
    def jurisdiction_code(self) -> str:
        return self.jurisdiction or self.country


class Link(_Spec):
    """A declared network path between two sites or a site and a metro."""

    src: Name
    dst: Name
    rtt_ms: Positive
    bandwidth_gbps: Positive | None = None
    egress_usd_per_gb: NonNegative | None = None
    private: bool = False
    transits: tuple[Jurisdiction, ...] = Field(
        default=(), description="jurisdictions crossed between the two ends"
    )
    bidirectional: bool = True
    description: str | None = None


class PerfProfile(_Spec):
    """How fast one replica of a model runs on a given accelerator."""

    accelerator: Name
    devices_per_replica: Annotated[int, Field(ge=1)] = 1
    prefill_tokens_per_s: Positive
    decode_tokens_per_s: Positive = Field(description="per sequence, at batch size 1")
    max_batch_size: Annotated[int, Field(ge=1)] = 64
    kv_cache_tokens: Annotated[int, Field(ge=1)] | None = None


class Hosting(_Spec):
    """Where a model may be hosted, from its licence or vendor terms. Empty = anywhere."""

    jurisdictions: tuple[GroupOrJurisdiction, ...] = ()
    site_kinds: tuple[SiteKind, ...] = ()
    providers: tuple[Name, ...] = ()


class ModelSpec(_Spec):
    name: Name
    kind: ModelKind = "chat"
    family: str | None = None
    params_b: Positive = Field(description="parameters, in billions")
    active_params_b: Positive | None = Field(default=None, description="for mixtures of experts")
    context_tokens: Annotated[int, Field(ge=1)] = 8192
    licence: str
    open_weights: bool = True
    provider: Name | None = Field(default=None, description="vendor, for closed models")
    quality: dict[Name, Fraction] = Field(
        default_factory=dict, description="quality by task in [0, 1]"
    )
    hosting: Hosting = Hosting()
    profiles: tuple[PerfProfile, ...] = ()
    usd_per_million_input_tokens: NonNegative | None = Field(
        default=None, description="list price where served by a provider API"
    )
    usd_per_million_output_tokens: NonNegative | None = None


class Endpoint(_Spec):
    """A model served at a site by an engine."""

    name: Name
    model: Name
    site: Name
    engine: EngineKind
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$")]
    served_model_name: str | None = Field(
        default=None, description="the model id the upstream expects, if not the model name"
    )
    max_concurrency: Annotated[int, Field(ge=1)] = 64
    accelerator: Name | None = None
    devices: Annotated[int, Field(ge=1)] = 1
    kv_cache_tokens: Annotated[int, Field(ge=1)] | None = None
    api_key_env: Annotated[str, StringConstraints(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = Field(
        default=None, description="environment variable holding the upstream credential"
    )


class Dataset(_Spec):
    name: Name
    site: Name
    size_gb: NonNegative
    data_class: Name
    residency: tuple[GroupOrJurisdiction, ...] = Field(
        default=(), description="where copies may be stored, beyond the class policy"
    )
    description: str | None = None


class ApiKey(_Spec):
    id: Name
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Budget(_Spec):
    period: Literal["hour", "day", "month"] = "month"
    tokens: Annotated[int, Field(ge=0)] | None = None
    usd: NonNegative | None = None


class Objective(_Spec):
    """How the router picks among compliant endpoints for a tenant."""

    kind: Literal["cheapest_within_slo", "fastest", "weighted"] = "cheapest_within_slo"
    ttft_slo_ms: Positive = 250
    ttft_weight: NonNegative = 1.0
    cost_weight: NonNegative = 0.0
    quality_weight: NonNegative = 0.0


class Tenant(_Spec):
    name: Name
    api_keys: tuple[ApiKey, ...] = ()
    allowed_models: tuple[str, ...] = Field(
        default=("*",), description="model names or aliases; '*' allows all"
    )
    default_data_class: Name
    home_site: Name | None = None
    budget: Budget | None = None
    rpm_limit: Annotated[int, Field(ge=1)] | None = None
    tpm_limit: Annotated[int, Field(ge=1)] | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=64 * 1024 * 1024)] = 1024 * 1024
    deadline_ms: Positive = 60_000
    objective: Objective = Objective()


class DataClass(_Spec):
    """A class of data. A request may raise its class to a higher ``level``, never lower it."""

    name: Name
    level: Annotated[int, Field(ge=0)]
    description: str | None = None


class SiteConditions(_Spec):
    """Conditions on the site itself (beyond its jurisdiction)."""

    site_kinds: tuple[SiteKind, ...] = ()
    providers: tuple[Name, ...] = ()
    deny_providers: tuple[Name, ...] = ()
    require_tags: dict[Name, str] = Field(default_factory=dict)
    deny_tags: dict[Name, str] = Field(default_factory=dict)


class ModelRules(_Spec):
    """AI sovereignty: which models may see the data, and where they must be hosted."""

    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    require_open_weights: bool = False
    hosted_in: tuple[GroupOrJurisdiction, ...] = ()


class SovereigntyRule(_Spec):
    """Where data of some classes may be processed, stored and carried, and by which models.

    An empty list means "no restriction" for that aspect; a class that no rule names is
    refused everywhere (fail closed).
    """

    name: Name
    description: str | None = None
    data_classes: tuple[Name, ...] = Field(min_length=1)
    process_in: tuple[GroupOrJurisdiction, ...] = ()
    store_in: tuple[GroupOrJurisdiction, ...] = ()
    transit_in: tuple[GroupOrJurisdiction, ...] = ()
    require_private_path: bool = False
    sites: SiteConditions = SiteConditions()
    models: ModelRules = ModelRules()


class FabricSpec(_Spec):
    """A whole fabric document (possibly assembled from several files by ``include``)."""

    version: Literal[1] = 1
    name: str = "fabric"
    description: str | None = None
    include: tuple[str, ...] = ()
    jurisdiction_groups: dict[GroupOrJurisdiction, tuple[GroupOrJurisdiction, ...]] = Field(
        default_factory=dict
    )
    data_classes: tuple[DataClass, ...] = ()
    sites: tuple[SiteSpec, ...] = ()
    links: tuple[Link, ...] = ()
    metros: tuple[Metro, ...] = ()
    models: tuple[ModelSpec, ...] = ()
    aliases: dict[Name, tuple[Name, ...]] = Field(
        default_factory=dict, description="capability names (chat-large) to candidate models"
    )
    endpoints: tuple[Endpoint, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    tenants: tuple[Tenant, ...] = ()
    policies: tuple[SovereigntyRule, ...] = ()
