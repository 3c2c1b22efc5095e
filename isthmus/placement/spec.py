"""The workload file format: what to place, with its demand, SLOs, data and constraints.

Invariants: every field's unit is in its name (``peak_rps``, ``deadline_hours``,
``budget_usd``); unknown fields are errors (``extra="forbid"``); a workload's kind decides which
fields it must carry (an online service needs demand, a batch job a request count and a
deadline, a training job a token count and a deadline), and that is checked here, so the
optimizer never meets a half-specified workload. Names that point into the fabric (models,
metros, datasets, sites, tenants) are checked by ``isthmus.placement.loader``.

Demand is per user metro: ``mean_*`` is the average over the whole planning period (idle hours
included), ``peak_*`` the highest load to provision for; ``duty_cycle`` is the share of the
period the workload is active at all. Together they shape the load-duration curve that decides
dedicated versus on-demand capacity (see ``isthmus.placement.costs``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from isthmus.fabric.schema import GroupOrJurisdiction, Name, SiteKind

__all__ = [
    "Carbon",
    "DatasetUse",
    "MetroDemand",
    "Redundancy",
    "RequestShape",
    "SiteFilter",
    "Slo",
    "Workload",
    "WorkloadKind",
    "WorkloadsSpec",
]

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]

WorkloadKind = Literal["pretraining", "fine_tuning", "batch_inference", "online_inference", "rag"]
SERVING_KINDS: frozenset[str] = frozenset({"online_inference", "rag"})
TRAINING_KINDS: frozenset[str] = frozenset({"pretraining", "fine_tuning"})
JOB_KINDS: frozenset[str] = frozenset({"pretraining", "fine_tuning", "batch_inference"})


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RequestShape(_Spec):
    """Tokens in and out of one request (prompt including retrieved context; completion)."""

    input_tokens: Annotated[int, Field(ge=1)] = 1000
    output_tokens: Annotated[int, Field(ge=0)] = 200


class MetroDemand(_Spec):
    """Load from one user metro, in requests/s or in tokens/s (input + output)."""

    metro: Name
    mean_rps: NonNegative | None = None
    peak_rps: Positive | None = None
    mean_tokens_per_s: NonNegative | None = None
    peak_tokens_per_s: Positive | None = None

    @model_validator(mode="after")
    def _one_unit(self) -> MetroDemand:
        rps = (self.mean_rps, self.peak_rps)
        tps = (self.mean_tokens_per_s, self.peak_tokens_per_s)
        has_rps = any(v is not None for v in rps)
        has_tps = any(v is not None for v in tps)
        if has_rps == has_tps:
            raise ValueError(
                "give the demand either as mean_rps and peak_rps or as mean_tokens_per_s and "
                "peak_tokens_per_s"
            )
        mean, peak = rps if has_rps else tps
        if mean is None or peak is None:
            unit = "rps" if has_rps else "tokens_per_s"
            raise ValueError(f"both mean_{unit} and peak_{unit} are required")
        if mean > peak:
            raise ValueError(f"the mean ({mean:g}) exceeds the peak ({peak:g})")
        return self

    def rps(self, tokens_per_request: int) -> tuple[float, float]:
        """(mean, peak) in requests per second."""
        if self.mean_rps is not None and self.peak_rps is not None:
            return self.mean_rps, self.peak_rps
        assert self.mean_tokens_per_s is not None and self.peak_tokens_per_s is not None
        per = max(1, tokens_per_request)
        return self.mean_tokens_per_s / per, self.peak_tokens_per_s / per


class DatasetUse(_Spec):
    """A dataset the workload reads: once per run (training, batch) or per request (RAG)."""

    name: Name
    access: Literal["once", "per_request"] = "once"
    epochs: Annotated[float, Field(ge=1)] = Field(
        default=1, description="passes over the data per run (access: once)"
    )
    kb_per_request: Positive = Field(
        default=32, description="retrieved bytes per request, in kB (access: per_request)"
    )
    refresh_fraction_per_period: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.1, description="share of a replica re-copied each period as the data changes"
    )


class Slo(_Spec):
    """Service levels: TTFT P95 and per-stream speed for services, a deadline for jobs."""

    ttft_p95_ms: Positive | None = None
    output_tokens_per_s: Positive | None = Field(
        default=None, description="minimum decode speed of one stream (throughput SLO)"
    )
    deadline_hours: Positive | None = Field(default=None, description="batch and training runs")


class Redundancy(_Spec):
    """N+k: ``n + k`` legs on distinct failure domains, each able to carry 1/n of the peak."""

    n: Annotated[int, Field(ge=1, le=8)] = 1
    k: Annotated[int, Field(ge=0, le=4)] = 0
    failover_within_slo: bool = Field(
        default=False,
        description="every demand metro keeps its TTFT SLO after k failures (k+1 legs near it)",
    )

    @property
    def legs(self) -> int:
        return self.n + self.k


class Carbon(_Spec):
    """Carbon preference: a shadow price in the objective and an optional hard cap."""

    usd_per_tonne: NonNegative = 0
    max_g_per_kwh: Positive | None = None


class SiteFilter(_Spec):
    """Sites by name, jurisdiction, provider, kind or accelerator (empty lists match all)."""

    sites: tuple[Name, ...] = ()
    jurisdictions: tuple[GroupOrJurisdiction, ...] = ()
    providers: tuple[Name, ...] = ()
    site_kinds: tuple[SiteKind, ...] = ()
    accelerators: tuple[Name, ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.sites
            or self.jurisdictions
            or self.providers
            or self.site_kinds
            or self.accelerators
        )


class Workload(_Spec):
    """One thing to place."""

    name: Name
    kind: WorkloadKind
    model: Name
    description: str | None = None
    tenant: Name | None = None
    data_class: Name | None = Field(default=None, description="defaults to the tenant's class")
    datasets: tuple[DatasetUse, ...] = ()
    request: RequestShape = RequestShape()
    demand: tuple[MetroDemand, ...] = ()
    duty_cycle: Fraction = 1.0
    slo: Slo = Slo()
    redundancy: Redundancy = Redundancy()
    budget_usd: Positive | None = Field(default=None, description="per planning period")
    carbon: Carbon = Carbon()
    pin: SiteFilter = SiteFilter()
    avoid: SiteFilter = SiteFilter()
    anti_affinity: tuple[Name, ...] = Field(
        default=(), description="workloads that must share no failure domain with this one"
    )
    spot: Literal["auto", "never"] = Field(
        default="auto", description="jobs may run on interruptible capacity when it is cheaper"
    )
    requests: Annotated[int, Field(ge=1)] | None = Field(default=None, description="per batch run")
    train_tokens_b: Positive | None = Field(default=None, description="billions, per run")
    method: Literal["full", "lora"] = "full"
    runs_per_period: Positive = Field(default=1, description="job runs per planning period")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Workload:
        kind = self.kind
        problems: list[str] = []
        if kind in SERVING_KINDS:
            if not self.demand:
                problems.append(f"a {kind} workload needs demand (one entry per user metro)")
            if self.slo.deadline_hours is not None:
                problems.append("slo.deadline_hours applies to jobs, not to services")
        else:
            if self.demand:
                problems.append(f"demand applies to services; a {kind} job has none")
            if self.slo.deadline_hours is None:
                problems.append(f"a {kind} job needs slo.deadline_hours")
            if self.slo.ttft_p95_ms is not None:
                problems.append("slo.ttft_p95_ms applies to services, not to jobs")
            if self.redundancy.legs > 1:
                problems.append("redundancy applies to services; a job runs on one site")
        if kind == "rag" and not any(d.access == "per_request" for d in self.datasets):
            problems.append("a rag workload needs a dataset with access: per_request")
        if kind != "rag" and any(d.access == "per_request" for d in self.datasets):
            problems.append("access: per_request is for rag workloads; use access: once")
        if kind == "batch_inference" and self.requests is None:
            problems.append("a batch_inference job needs requests (per run)")
        if kind in TRAINING_KINDS and self.train_tokens_b is None:
            problems.append(f"a {kind} job needs train_tokens_b (billions of tokens per run)")
        if kind == "pretraining" and self.method != "full":
            problems.append("pretraining trains every parameter: method must be full")
        if self.demand:
            per = self.request.input_tokens + self.request.output_tokens
            mean = sum(d.rps(per)[0] for d in self.demand)
            peak = sum(d.rps(per)[1] for d in self.demand)
            if mean > peak * self.duty_cycle * (1 + 1e-9):
                problems.append(
                    f"a mean of {mean:g} req/s over the period with duty_cycle "
                    f"{self.duty_cycle:g} averages {mean / self.duty_cycle:g} req/s while "
                    f"active, above the peak of {peak:g}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class WorkloadsSpec(_Spec):
    """A workload file."""

    version: Literal[1] = 1
    name: str = "workloads"
    description: str | None = None
    period_hours: Positive = Field(default=730, description="the planning period (a month)")
    amortise_periods: Positive = Field(
        default=6, description="one-time costs (copies, weight transfers) spread over N periods"
    )
    move_penalty_usd: NonNegative = Field(
        default=250, description="re-planning: cost charged for each leg that moves"
    )
    workloads: tuple[Workload, ...] = ()
