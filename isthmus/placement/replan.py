"""Re-planning after a change: a site fails, a price moves; move as little as pays.

``replan(previous, ...)`` solves the same MILP on the changed fabric with two changes to the
objective (``isthmus.placement.legs.build_candidates``):

- every leg a workload does not hold today costs ``move_penalty_usd`` more (the disruption of a
  migration: drain, warm-up, re-validation), so a workload moves only when staying is impossible
  or costs more than the move;
- a held leg does not pay its weight transfer again (that money is spent).

Every workload whose legs changed is listed as a ``Move`` with the reason, read from the cost
model on the new fabric: the site is down, a rule now refuses it, its pool is full, its price
rose, or another site became cheaper by more than the penalty.
"""

from __future__ import annotations

from collections.abc import Iterable

from isthmus.fabric.catalog import Fabric
from isthmus.placement.context import PlanContext
from isthmus.placement.costs import Reason
from isthmus.placement.explain import why_refused
from isthmus.placement.loader import WorkloadSet
from isthmus.placement.optimizer import Method, PlanState, plan_in_context
from isthmus.placement.result import Move, Plan, Replan

__all__ = ["replan", "reprice"]


def reprice(
    fabric: Fabric,
    site: str,
    accelerator: str,
    *,
    on_demand: float | None = None,
    reserved: float | None = None,
    spot: float | None = None,
) -> Fabric:
    """``fabric`` with new prices for one pool (``None`` keeps a price as it is)."""
    sites = []
    found = False
    for spec in fabric.spec.sites:
        if spec.name != site:
            sites.append(spec)
            continue
        accelerators = []
        for acc in spec.accelerators:
            if acc.type == accelerator:
                found = True
                update = {
                    k: v
                    for k, v in (
                        ("on_demand_usd_per_device_hour", on_demand),
                        ("reserved_usd_per_device_hour", reserved),
                        ("spot_usd_per_device_hour", spot),
                    )
                    if v is not None
                }
                acc = acc.model_copy(update=update)
            accelerators.append(acc)
        sites.append(spec.model_copy(update={"accelerators": tuple(accelerators)}))
    if not found:
        raise KeyError(f"no accelerator {accelerator!r} at site {site!r}")
    new_spec = fabric.spec.model_copy(update={"sites": tuple(sites)})
    return Fabric(new_spec, fabric.sources, fabric.source_map)


def replan(
    previous: Plan,
    fabric: Fabric | None = None,
    *,
    down_sites: Iterable[str] = (),
    workloads: WorkloadSet | None = None,
    move_penalty_usd: float | None = None,
    method: Method = "auto",
    time_limit_s: float = 30.0,
) -> Replan:
    """A minimal-disruption plan after ``down_sites`` fail or ``fabric`` changes."""
    state = previous.state
    if not isinstance(state, PlanState):
        raise ValueError("this plan carries no solver state to re-plan from")
    old = state.ctx
    fabric = fabric or old.fabric
    workloads = workloads or state.workloads
    penalty = (
        workloads.spec.move_penalty_usd if move_penalty_usd is None else float(move_penalty_usd)
    )
    same = fabric is old.fabric
    down = frozenset(old.down_sites) | frozenset(down_sites)
    ctx = PlanContext(
        fabric,
        network=old.network if same else None,
        policy=old.policy if same else None,
        period_hours=workloads.spec.period_hours,
        amortise_periods=workloads.spec.amortise_periods,
        down_sites=down,
    )
    slot_of = {ctx.slot_name(s): s for s in range(ctx.slot_count)}
    held: list[frozenset[int] | None] = []
    before: dict[str, tuple[str, ...]] = {}
    for workload in workloads.workloads:
        placed = previous.placement(workload.name)
        if placed is None:
            held.append(None)
            continue
        names = tuple(f"{leg.site}/{leg.accelerator}" for leg in placed.legs)
        before[workload.name] = names
        held.append(frozenset(slot_of[n] for n in names if n in slot_of))
    new_plan = plan_in_context(
        ctx,
        workloads,
        method=method,
        time_limit_s=time_limit_s,
        held=held,
        move_penalty_usd=penalty,
    )
    new_state = new_plan.state
    assert isinstance(new_state, PlanState)
    moves: list[Move] = []
    unchanged: list[str] = []
    for w, need in enumerate(new_state.needs):
        name = need.name
        after_p = new_plan.placement(name)
        after = tuple(f"{leg.site}/{leg.accelerator}" for leg in after_p.legs) if after_p else ()
        was = before.get(name, ())
        old_cost = previous.placement(name)
        cost_before = old_cost.cost.total_usd if old_cost else None
        cost_after = after_p.cost.total_usd if after_p else None
        if set(was) == set(after):
            if after:
                unchanged.append(name)
            continue
        if not was:
            reason = "newly placed"
        elif not after:
            conflict = new_plan.conflict(name)
            reason = f"no longer placeable: {conflict.message if conflict else 'unknown'}"
        else:
            reason = _why_moved(new_state, w, [n for n in was if n not in after], down, penalty)
        moves.append(Move(name, was, after, reason, cost_before, cost_after))
    return Replan(
        plan=new_plan,
        moves=tuple(moves),
        unchanged=tuple(unchanged),
        cost_before_usd=previous.total.total_usd,
        cost_after_usd=new_plan.total.total_usd,
    )


def _why_moved(
    state: PlanState, w: int, gone: list[str], down: frozenset[str], penalty: float
) -> str:
    ctx = state.ctx
    table = state.table(w)
    reasons: list[str] = []
    chosen = [int(state.candidates.slot[leg]) for leg in state.legs_of.get(w, [])]
    best_new = min((float(table.cost[s]) for s in chosen), default=0.0)
    slot_of = {ctx.slot_name(s): s for s in range(ctx.slot_count)}
    for name in gone:
        site = name.split("/", 1)[0]
        if site in down:
            reasons.append(f"{name}: site {site} is down")
            continue
        slot = slot_of.get(name)
        if slot is None:
            reasons.append(f"{name}: the pool no longer exists or has no price")
            continue
        if table.reason[slot] != Reason.OK:
            reasons.append(f"{name}: {why_refused(state, table, slot)[1]}")
            continue
        stay = float(table.cost[slot])
        if stay > best_new + penalty:
            reasons.append(
                f"{name}: now costs ${stay:,.0f} per period against ${best_new:,.0f} at the new "
                f"leg, more than the move penalty of ${penalty:,.0f}"
            )
        else:
            reasons.append(f"{name}: its capacity went to workloads displaced by the change")
    return "; ".join(reasons)
