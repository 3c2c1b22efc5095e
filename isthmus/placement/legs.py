"""Every feasible leg of every workload, as flat arrays: the columns the solvers choose from.

Invariants: legs are grouped by workload (``start[w]:start[w + 1]``) and, within a workload,
sorted by objective (cheapest first); only legs with ``Reason.OK`` are here, so any choice of
legs respects sovereignty, pins, carbon caps, per-stream throughput, single-leg latency and the
single-leg capacity check by construction — what is left for the solver is what couples legs:
how many, which failure domains, which metros they cover, shared pools, budgets, anti-affinity.
Report fields (cost breakdown, tier, TTFT per metro, data strategies) are kept for every leg,
in single precision, so a plan of any size is reported without evaluating anything again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from isthmus.placement.context import PlanContext
from isthmus.placement.costs import LegTable, Need, evaluate

__all__ = ["DETAIL_FIELDS", "Candidates", "build_candidates"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DETAIL_FIELDS = (
    "devices",
    "compute_dedicated",
    "compute_on_demand",
    "compute_spot",
    "api",
    "data",
    "serving_egress",
    "weights",
    "carbon_kg",
    "carbon_usd",
    "replicas",
    "dedicated_replicas",
    "tier",
    "run_hours",
)
"""Report fields kept for every leg (float32: they are for people, not for the solver)."""


@dataclass
class Candidates:
    """Feasible legs of all workloads (flat arrays, grouped by workload)."""

    needs: list[Need]
    start: IntArray
    workload: IntArray
    slot: IntArray
    devices: FloatArray
    """Average occupancy of the leg's pool (``LegTable.occupancy``): what capacity rows add."""
    cost: FloatArray
    objective: FloatArray
    domain: IntArray
    cover: IntArray
    detail: dict[str, npt.NDArray[np.float32]]
    """``DETAIL_FIELDS`` per leg."""
    ttft_ms: list[npt.NDArray[np.float32]]
    """Per workload: metros × its legs."""
    strategy: list[npt.NDArray[np.int8]]
    """Per workload: datasets × its legs."""
    data_gb: list[npt.NDArray[np.float32]]
    infeasible: dict[int, LegTable]
    """Workloads without a single feasible leg, with their full tables (for the diagnosis)."""

    @property
    def count(self) -> int:
        return len(self.slot)

    def legs_of(self, w: int) -> range:
        return range(int(self.start[w]), int(self.start[w + 1]))

    def legs_required(self) -> IntArray:
        return np.array([need.legs for need in self.needs], dtype=np.int64)


def _cover_bits(table: LegTable, slots: IntArray) -> IntArray:
    bits = np.zeros(len(slots), dtype=np.int64)
    for m in range(table.cover.shape[0]):
        bits |= table.cover[m, slots].astype(np.int64) << m
    return bits


def build_candidates(
    ctx: PlanContext,
    needs: Sequence[Need],
    *,
    held: Sequence[frozenset[int] | None] | None = None,
    move_penalty_usd: float = 0.0,
) -> Candidates:
    """Evaluate every workload on every slot and keep the feasible legs.

    Re-planning passes ``held[w]``, the slots workload ``w`` runs on now (``None`` for a
    workload not placed before): every other leg's objective carries ``move_penalty_usd``, and
    a held leg's weight transfer is already paid (sunk), so it is not charged again.
    """
    parts_slot: list[IntArray] = []
    parts_devices: list[FloatArray] = []
    parts_cost: list[FloatArray] = []
    parts_objective: list[FloatArray] = []
    parts_cover: list[IntArray] = []
    parts_detail: dict[str, list[npt.NDArray[np.float32]]] = {k: [] for k in DETAIL_FIELDS}
    ttft: list[npt.NDArray[np.float32]] = []
    strategy: list[npt.NDArray[np.int8]] = []
    data_gb: list[npt.NDArray[np.float32]] = []
    infeasible: dict[int, LegTable] = {}
    counts = np.zeros(len(needs) + 1, dtype=np.int64)
    for w, need in enumerate(needs):
        table = evaluate(ctx, need)
        slots = np.nonzero(table.feasible)[0].astype(np.int64)
        objective = table.objective[slots]
        before = held[w] if held is not None else None
        if before is not None:
            kept = np.isin(slots, np.fromiter(before, dtype=np.int64, count=len(before)))
            objective = objective + np.where(kept, -table.weights[slots], move_penalty_usd)
        order = np.argsort(objective, kind="stable")
        slots = slots[order]
        objective = objective[order]
        if len(slots) == 0:
            infeasible[w] = table
        parts_slot.append(slots)
        parts_devices.append(table.occupancy[slots])
        parts_cost.append(table.cost[slots])
        parts_objective.append(objective)
        parts_cover.append(_cover_bits(table, slots))
        counts[w + 1] = len(slots)
        for name in DETAIL_FIELDS:
            parts_detail[name].append(np.asarray(getattr(table, name))[slots].astype(np.float32))
        ttft.append(table.ttft_ms[:, slots].astype(np.float32))
        strategy.append(table.strategy[:, slots].astype(np.int8))
        data_gb.append(table.data_gb[:, slots].astype(np.float32))
    start = np.cumsum(counts)
    slot = np.concatenate(parts_slot) if parts_slot else np.zeros(0, dtype=np.int64)
    workload = np.repeat(np.arange(len(needs), dtype=np.int64), counts[1:])
    return Candidates(
        needs=list(needs),
        start=start,
        workload=workload,
        slot=slot,
        devices=np.concatenate(parts_devices) if parts_devices else np.zeros(0),
        cost=np.concatenate(parts_cost) if parts_cost else np.zeros(0),
        objective=np.concatenate(parts_objective) if parts_objective else np.zeros(0),
        domain=ctx.slot_domain[slot] if len(slot) else np.zeros(0, dtype=np.int64),
        cover=np.concatenate(parts_cover) if parts_cover else np.zeros(0, dtype=np.int64),
        detail={
            name: np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
            for name, parts in parts_detail.items()
        },
        ttft_ms=ttft,
        strategy=strategy,
        data_gb=data_gb,
        infeasible=infeasible,
    )
