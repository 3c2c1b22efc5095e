"""What a plan says: where each workload runs, what it costs, and what could not be placed.

Invariants: plain frozen dataclasses (no solver or numpy types escape); every amount is USD per
planning period with one-time costs amortised as the workload file says; ``CostBreakdown.total``
is the true cost (carbon's shadow price is reported beside it, never inside it); a workload is
either in ``placements`` or in ``unplaced`` with the constraints that conflict, never both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "Alternative",
    "Conflict",
    "CostBreakdown",
    "DataMove",
    "Explanation",
    "Gravity",
    "GravityOption",
    "Leg",
    "Move",
    "Placement",
    "Plan",
    "Replan",
]


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Cost per planning period, by what it pays for."""

    compute_dedicated_usd: float = 0.0
    compute_on_demand_usd: float = 0.0
    compute_spot_usd: float = 0.0
    api_usd: float = 0.0
    data_movement_usd: float = 0.0
    serving_egress_usd: float = 0.0
    weights_usd: float = 0.0
    carbon_kg: float = 0.0
    carbon_shadow_usd: float = 0.0

    @property
    def compute_usd(self) -> float:
        return (
            self.compute_dedicated_usd
            + self.compute_on_demand_usd
            + self.compute_spot_usd
            + self.api_usd
        )

    @property
    def egress_usd(self) -> float:
        return self.data_movement_usd + self.serving_egress_usd + self.weights_usd

    @property
    def total_usd(self) -> float:
        """The true cost: compute, data movement, serving egress and weight transfer."""
        return self.compute_usd + self.egress_usd

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(CostBreakdown))
        )

    def as_dict(self) -> dict[str, float]:
        out = {k: round(v, 2) for k, v in asdict(self).items()}
        out["compute_usd"] = round(self.compute_usd, 2)
        out["total_usd"] = round(self.total_usd, 2)
        return out


@dataclass(frozen=True, slots=True)
class DataMove:
    """How a leg reads one dataset."""

    dataset: str
    home_site: str
    strategy: str
    """``local`` (it runs where the data is), ``remote_read`` or ``replicate``."""
    gb_per_period: float


@dataclass(frozen=True, slots=True)
class Leg:
    """One deployment of a workload: a site, an accelerator and how it is bought."""

    site: str
    accelerator: str
    provider: str
    jurisdiction: str
    failure_domain: str
    tier: str
    """``dedicated``, ``on_demand``, ``dedicated+on_demand``, ``spot`` or ``api``."""
    replicas: int
    devices: int
    """Devices held at once (a job holds them only while it runs)."""
    average_devices: float
    """Devices held on average over the period: its share of the pool's capacity."""
    dedicated_replicas: int
    ttft_p95_ms: tuple[tuple[str, float], ...]
    data: tuple[DataMove, ...]
    run_hours: float
    cost: CostBreakdown

    @property
    def worst_ttft_ms(self) -> float | None:
        return max((t for _, t in self.ttft_p95_ms), default=None)


@dataclass(frozen=True, slots=True)
class Placement:
    workload: str
    kind: str
    model: str
    data_class: str
    legs: tuple[Leg, ...]
    cost: CostBreakdown
    ttft_slo_ms: float | None = None
    deadline_hours: float | None = None
    budget_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why a workload could not be placed: the constraints that conflict, in words."""

    workload: str
    constraints: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class Alternative:
    """A place the workload did not go, and why."""

    site: str
    accelerator: str
    reason_kind: str
    reason: str
    cost_usd: float | None
    delta_pct: float | None


@dataclass(frozen=True, slots=True)
class GravityOption:
    site: str
    accelerator: str
    cost_usd: float
    data_strategy: str
    feasible: bool
    note: str


@dataclass(frozen=True, slots=True)
class Gravity:
    """Move the model to the data, or the data to the model: both, costed, and the winner."""

    dataset: str
    home_site: str
    size_gb: float
    move_model: GravityOption | None
    move_data: GravityOption | None
    chosen: str
    summary: str


@dataclass(frozen=True, slots=True)
class Explanation:
    workload: str
    placement: Placement | None
    conflict: Conflict | None
    binding: tuple[str, ...]
    alternatives: tuple[Alternative, ...]
    gravity: tuple[Gravity, ...]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(self)
        return out


@dataclass(frozen=True, slots=True)
class Move:
    workload: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    reason: str
    cost_before_usd: float | None
    cost_after_usd: float | None


@dataclass(frozen=True)
class Plan:
    """A placement of workloads on a fabric, with its cost and how good it is proven to be."""

    fabric: str
    period_hours: float
    placements: tuple[Placement, ...]
    unplaced: tuple[Conflict, ...]
    total: CostBreakdown
    method: str
    status: str
    objective_usd: float
    bound_usd: float
    gap: float
    """``(objective - lower bound) / lower bound``: 0 means proven optimal."""
    build_seconds: float
    solve_seconds: float
    stats: dict[str, float] = field(default_factory=dict)
    state: Any = field(default=None, repr=False, compare=False)
    """The solver's inputs, kept so the plan can be explained and re-planned."""

    def placement(self, workload: str) -> Placement | None:
        for p in self.placements:
            if p.workload == workload:
                return p
        return None

    def conflict(self, workload: str) -> Conflict | None:
        for c in self.unplaced:
            if c.workload == workload:
                return c
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fabric": self.fabric,
            "period_hours": self.period_hours,
            "method": self.method,
            "status": self.status,
            "objective_usd": round(self.objective_usd, 2),
            "lower_bound_usd": round(self.bound_usd, 2),
            "gap": self.gap,
            "build_seconds": round(self.build_seconds, 3),
            "solve_seconds": round(self.solve_seconds, 3),
            "stats": self.stats,
            "total": self.total.as_dict(),
            "placements": [_plain(p) for p in self.placements],
            "unplaced": [_plain(c) for c in self.unplaced],
        }


@dataclass(frozen=True)
class Replan:
    """A re-plan after a change, with what moved and why."""

    plan: Plan
    moves: tuple[Move, ...]
    unchanged: tuple[str, ...]
    cost_before_usd: float
    cost_after_usd: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.as_dict(),
            "moves": [_plain(m) for m in self.moves],
            "unchanged": list(self.unchanged),
            "cost_before_usd": round(self.cost_before_usd, 2),
            "cost_after_usd": round(self.cost_after_usd, 2),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, CostBreakdown):
        return value.as_dict()
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 3)
    return value
