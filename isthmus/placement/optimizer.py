"""The placement optimizer: a MILP over candidate legs, solved exactly or at scale.

Pure: a fabric and validated workloads in, a ``Plan`` out; no I/O, no printing, no globals.

Formulation
-----------
Sets. ``W`` workloads; ``L_w`` the feasible legs of workload ``w`` — a leg is ``w`` deployed on
one slot ``s(l)``: a pool (one accelerator type at one site) or a provider API; ``P`` the pools,
with ``F_p`` free devices; ``D`` the failure domains, ``d(l)`` the domain of leg ``l``; ``M_w``
the demand metros of ``w``; ``A`` the anti-affine pairs.

Parameters. ``c_l`` the cost of leg ``l`` per period (``isthmus.placement.costs``: compute at
its cheapest mix of dedicated, on-demand and spot capacity for the workload's utilisation
shape, data movement by the cheaper allowed strategy, serving egress, weight transfer, one-time
costs amortised) plus its carbon shadow price (and, when re-planning, a move penalty);
``g_l`` the devices it occupies in pool ``p(l)`` (a service's replicas at peak; a job's
devices times the share of the period it runs, since jobs time-share pools, or all of them
when it buys dedicated capacity); ``n_w = N_w + k_w`` its legs; ``a_lm = 1`` when leg ``l``
meets the TTFT SLO from metro ``m``; ``r_w`` legs each metro needs within its SLO (1, or
``k_w + 1`` with ``failover_within_slo``); ``B_w`` the budget; ``Q`` the unplaced penalty.

Variables. ``x_l`` in {0, 1}: leg ``l`` is deployed; ``u_w`` in {0, 1}: ``w`` is left unplaced
(elastic, so every instance has an answer and the unplaced ones get a diagnosis).

    minimise    sum_l c_l x_l  +  Q sum_w u_w
    subject to  sum_{l in L_w} x_l + n_w u_w            =  n_w    for every w     (legs)
                sum_{l in L_w, d(l) = d} x_l             <= 1      for every w, d  (N+k domains)
                sum_{l in L_w} a_lm x_l + r_w u_w        >= r_w    for every w, m  (latency)
                sum_{l : p(l) = p} g_l x_l               <= F_p    for every p     (capacity)
                sum_{l in L_w} c_l x_l                   <= B_w    for every w     (budget)
                sum_{l in L_v u L_w, d(l) = d} x_l       <= 1      for (v, w) in A, every d

Constraints enforced by construction, before the solver sees a leg: sovereignty (the compiled
policy allows the workload's data class and model at the site, every demand metro's path to it,
and each dataset's remote read or copy — so every failover leg is compliant too), pins and
avoid lists, another tenant's own data centre, carbon caps, the per-stream throughput SLO, a
single-leg workload's latency SLO from every metro, a job's deadline, and a leg's devices
fitting its pool at once. Each leg is provisioned for ``peak / N``, so any ``k`` failures leave
enough capacity. Workloads that could not be placed even alone (too few failure domains or
near legs for their N+k, a budget below their cheapest legs) are diagnosed, not solved for.

Reported quality: ``gap = (objective - lower bound) / lower bound``. When capacity forces
workloads out, the plan is lexicographic — as many placed as the penalty ``Q`` (100 times a
workload's priciest leg) makes worthwhile, then the cheapest — and the bound is the LP bound on
the cost of placing exactly the workloads placed.

Solvers: ``milp`` hands everything to HiGHS (exact: optimal to a 1e-6 relative gap);
``scale`` solves the LP relaxation by column generation over every leg, keeps the workloads
the LP places integrally, places the rest by an LP-guided greedy, re-solves those as a small
MILP started from it, repairs by ejection and improves by local search, and reports its gap to
the LP bound (``isthmus.placement.solvers``). ``auto`` picks ``milp`` up to
``EXACT_MAX_LEGS`` candidate legs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from isthmus.fabric.catalog import Fabric
from isthmus.network.paths import Network
from isthmus.placement.context import PlanContext
from isthmus.placement.costs import LegTable, Need, Strategy, Tier, evaluate, resolve
from isthmus.placement.diagnose import diagnose
from isthmus.placement.formulation import Meta, Solution
from isthmus.placement.legs import Candidates, build_candidates
from isthmus.placement.loader import WorkloadSet
from isthmus.placement.result import Conflict, CostBreakdown, DataMove, Leg, Placement, Plan
from isthmus.placement.solvers import solve_exact, solve_scalable
from isthmus.placement.spec import SERVING_KINDS
from isthmus.policy import CompiledPolicy

__all__ = ["EXACT_MAX_LEGS", "Method", "PlanState", "plan"]

Method = Literal["auto", "milp", "scale"]
IntArray = npt.NDArray[np.int64]

EXACT_MAX_LEGS = 20_000
UNPLACED_PENALTY_FACTOR = 100.0
TIER_NAMES = {
    Tier.ON_DEMAND: "on_demand",
    Tier.DEDICATED: "dedicated",
    Tier.MIXED: "dedicated+on_demand",
    Tier.SPOT: "spot",
    Tier.API: "api",
}
STRATEGY_NAMES = {
    Strategy.LOCAL: "local",
    Strategy.REMOTE: "remote_read",
    Strategy.REPLICATE: "replicate",
}


@dataclass
class PlanState:
    """What a plan was computed from (kept for explanations and re-planning)."""

    ctx: PlanContext
    workloads: WorkloadSet
    needs: list[Need]
    candidates: Candidates
    meta: Meta
    solution: Solution
    legs_of: dict[int, list[int]]
    tables: dict[int, LegTable] = field(default_factory=dict)

    def table(self, w: int) -> LegTable:
        found = self.tables.get(w)
        if found is None:
            found = evaluate(self.ctx, self.needs[w], everywhere=True)
            self.tables[w] = found
        return found

    def index(self, name: str) -> int | None:
        for w, need in enumerate(self.needs):
            if need.name == name:
                return w
        return None


def _meta(ctx: PlanContext, cands: Candidates, needs: Sequence[Need]) -> Meta:
    names = {need.name: w for w, need in enumerate(needs)}
    pairs: set[tuple[int, int]] = set()
    for w, need in enumerate(needs):
        for other in need.workload.anti_affinity:
            v = names.get(other)
            if v is not None and v != w:
                pairs.add((min(v, w), max(v, w)))
    penalty = np.zeros(len(needs))
    for w, need in enumerate(needs):
        legs = cands.legs_of(w)
        if len(legs):
            priciest = float(np.abs(cands.objective[legs]).max())
            penalty[w] = UNPLACED_PENALTY_FACTOR * need.legs * priciest + 1_000.0
    return Meta(
        legs=np.array([need.legs for need in needs], dtype=np.int64),
        cover_required=np.array(
            [
                need.cover_required
                if need.kind in SERVING_KINDS and need.workload.slo.ttft_p95_ms is not None
                else 0
                for need in needs
            ],
            dtype=np.int64,
        ),
        metros=np.array([len(need.metros) for need in needs], dtype=np.int64),
        budget=np.array([need.workload.budget_usd or np.nan for need in needs], dtype=np.float64),
        anti_affinity=tuple(sorted(pairs)),
        free=ctx.slot_free,
        n_domains=len(ctx.domain_names),
        penalty=penalty,
    )


def plan(
    fabric: Fabric,
    workloads: WorkloadSet,
    *,
    method: Method = "auto",
    time_limit_s: float = 30.0,
    down_sites: Iterable[str] = (),
    network: Network | None = None,
    policy: CompiledPolicy | None = None,
) -> Plan:
    """Place ``workloads`` on ``fabric`` at the least cost that meets every constraint."""
    spec = workloads.spec
    ctx = PlanContext(
        fabric,
        network=network,
        policy=policy,
        period_hours=spec.period_hours,
        amortise_periods=spec.amortise_periods,
        down_sites=down_sites,
    )
    return plan_in_context(ctx, workloads, method=method, time_limit_s=time_limit_s)


def plan_in_context(
    ctx: PlanContext,
    workloads: WorkloadSet,
    *,
    method: Method = "auto",
    time_limit_s: float = 30.0,
    held: Sequence[frozenset[int] | None] | None = None,
    move_penalty_usd: float = 0.0,
) -> Plan:
    """``plan`` over a prepared context (re-planning passes the legs held before)."""
    started = time.perf_counter()
    needs = [resolve(ctx, w, workloads.data_class(w, ctx.fabric)) for w in workloads.spec.workloads]
    cands = build_candidates(ctx, needs, held=held, move_penalty_usd=move_penalty_usd)
    meta = _meta(ctx, cands, needs)
    built = time.perf_counter()
    # leave time to write the plan up (about 0.1 ms per workload)
    reserve = 0.2 + 1e-4 * len(needs)
    remaining = max(1.0, time_limit_s - (built - started) - reserve)
    chosen_method = method
    if method == "auto":
        chosen_method = "milp" if cands.count <= EXACT_MAX_LEGS else "scale"
    if chosen_method == "milp":
        solution = solve_exact(cands, meta, time_limit_s=remaining)
    else:
        solution = solve_scalable(cands, meta, time_limit_s=remaining)
    legs_of: dict[int, list[int]] = {}
    for leg in solution.chosen.tolist():
        legs_of.setdefault(int(cands.workload[leg]), []).append(leg)
    state = PlanState(ctx, workloads, needs, cands, meta, solution, legs_of)
    return _assemble(state, build_seconds=built - started)


def leg_record(state: PlanState, leg: int) -> Leg:
    """The report of one chosen leg."""
    ctx = state.ctx
    cands = state.candidates
    w = int(cands.workload[leg])
    need = state.needs[w]
    slot = int(cands.slot[leg])
    get = {k: float(v[leg]) for k, v in cands.detail.items()}
    position = leg - int(cands.start[w])
    ttft = cands.ttft_ms[w][:, position]
    strategy = cands.strategy[w][:, position]
    data_gb = cands.data_gb[w][:, position]
    site = ctx.site_of_slot(slot)
    cost = CostBreakdown(
        compute_dedicated_usd=get["compute_dedicated"],
        compute_on_demand_usd=get["compute_on_demand"],
        compute_spot_usd=get["compute_spot"],
        api_usd=get["api"],
        data_movement_usd=get["data"],
        serving_egress_usd=get["serving_egress"],
        weights_usd=get["weights"],
        carbon_kg=get["carbon_kg"],
        carbon_shadow_usd=get["carbon_usd"],
    )
    return Leg(
        site=site.name,
        accelerator=ctx.slot_accelerator[slot],
        provider=site.provider,
        jurisdiction=site.jurisdiction_code,
        failure_domain=site.failure_domain_name,
        tier=TIER_NAMES.get(Tier(int(get["tier"])), "none"),
        replicas=int(get["replicas"]),
        devices=int(get["devices"]),
        average_devices=round(float(cands.devices[leg]), 3),
        dedicated_replicas=int(get["dedicated_replicas"]),
        ttft_p95_ms=tuple(
            (metro, round(float(t), 1)) for metro, t in zip(need.metros, ttft, strict=True)
        ),
        data=tuple(
            DataMove(
                dataset=dataset.name,
                home_site=dataset.site,
                strategy=STRATEGY_NAMES.get(Strategy(int(strategy[i])), "none"),
                gb_per_period=round(float(data_gb[i]), 3),
            )
            for i, (_, dataset) in enumerate(need.datasets)
        ),
        run_hours=round(get["run_hours"], 2),
        cost=cost,
    )


def placement_record(state: PlanState, w: int) -> Placement:
    need = state.needs[w]
    legs = tuple(
        leg_record(state, leg)
        for leg in sorted(
            state.legs_of.get(w, []), key=lambda i: float(state.candidates.objective[i])
        )
    )
    total = CostBreakdown()
    for leg in legs:
        total = total + leg.cost
    wl = need.workload
    return Placement(
        workload=need.name,
        kind=need.kind,
        model=need.model.name,
        data_class=need.data_class,
        legs=legs,
        cost=total,
        ttft_slo_ms=wl.slo.ttft_p95_ms,
        deadline_hours=wl.slo.deadline_hours,
        budget_usd=wl.budget_usd,
    )


def pool_users(state: PlanState) -> dict[int, list[str]]:
    """Workloads on each slot in the plan."""
    users: dict[int, list[str]] = {}
    cands = state.candidates
    for v, chosen in state.legs_of.items():
        for leg in chosen:
            users.setdefault(int(cands.slot[leg]), []).append(state.needs[v].name)
    return users


def contention_conflict(
    state: PlanState, w: int, users: dict[int, list[str]] | None = None
) -> Conflict:
    """Why a workload with feasible legs was still left out (domains, cover, shared pools)."""
    cands = state.candidates
    need = state.needs[w]
    meta = state.meta
    legs = np.array(list(cands.legs_of(w)), dtype=np.int64)
    domains = sorted({state.ctx.domain_names[int(d)] for d in cands.domain[legs]})
    if len(domains) < need.legs:
        return Conflict(
            need.name,
            ("redundancy", "sovereignty"),
            f"redundancy N+k = {need.workload.redundancy.n}+{need.workload.redundancy.k} needs "
            f"{need.legs} distinct failure domains, but the compliant sites span only "
            f"{len(domains)} ({', '.join(domains)})",
        )
    required = int(meta.cover_required[w])
    for m, metro in enumerate(need.metros):
        if required == 0 or need.legs == 1:
            break
        covering = legs[((cands.cover[legs] >> m) & 1).astype(bool)]
        n_dom = len(set(cands.domain[covering].tolist()))
        if n_dom < required:
            return Conflict(
                need.name,
                (f"slo:ttft_p95_ms@{metro}", "redundancy"),
                f"{required} legs within the TTFT SLO of {need.workload.slo.ttft_p95_ms:g} ms "
                f"from {metro} are needed in distinct failure domains, but only {n_dom} "
                "compliant domain(s) have a site that near",
            )
    budget = meta.budget[w]
    cheapest = float(np.sort(cands.cost[legs])[: need.legs].sum())
    if np.isfinite(budget) and cheapest > budget:
        return Conflict(
            need.name,
            ("budget", "redundancy"),
            f"the {need.legs} cheapest compliant legs cost ${cheapest:,.0f} per period, above "
            f"the budget of ${budget:,.0f}",
        )
    pools = sorted({int(s) for s in cands.slot[legs].tolist() if not state.ctx.slot_is_api[s]})
    users = users if users is not None else pool_users(state)
    busy = [p for p in pools if p in users][:3]
    listing = "; ".join(
        f"{state.ctx.slot_name(p)} ({state.ctx.slot_free[p]:.0f} free) used by "
        f"{', '.join(sorted(set(users[p]))[:3])}"
        for p in busy
    )
    need_devices = float(cands.devices[legs].min())
    return Conflict(
        need.name,
        ("capacity",),
        f"capacity contention: it needs {need_devices:.3g} devices on a compliant pool, and "
        f"the {len(pools)} such pools are taken by workloads with no cheaper alternative"
        + (f": {listing}" if listing else ""),
    )


def _assemble(state: PlanState, *, build_seconds: float) -> Plan:
    placements: list[Placement] = []
    unplaced: list[Conflict] = []
    solution = state.solution
    left_out = set(solution.unplaced.tolist())
    users = pool_users(state) if left_out else {}
    for w, need in enumerate(state.needs):
        if w in state.candidates.infeasible:
            constraints, message = diagnose(state.ctx, state.candidates.infeasible[w])
            unplaced.append(Conflict(need.name, constraints, message))
        elif w in left_out or w not in state.legs_of:
            unplaced.append(contention_conflict(state, w, users))
        else:
            placements.append(placement_record(state, w))
    total = CostBreakdown()
    for p in placements:
        total = total + p.cost
    objective = solution.objective
    bound = solution.bound
    gap = solution.gap
    if solution.method == "milp":
        status = "optimal" if solution.status == "Optimal" else solution.status.lower()
    else:
        status = f"{solution.status}; gap {gap:.2%} to the LP bound"
    return Plan(
        fabric=state.ctx.fabric.name,
        period_hours=state.ctx.period_hours,
        placements=tuple(placements),
        unplaced=tuple(unplaced),
        total=total,
        method=solution.method,
        status=status,
        objective_usd=objective,
        bound_usd=bound,
        gap=gap,
        build_seconds=build_seconds,
        solve_seconds=solution.seconds,
        stats={
            **solution.stats,
            "candidate_legs": float(state.candidates.count),
        },
        state=state,
    )
