"""Why a workload went where it went: binding constraints, rejected alternatives, data gravity.

``explain(plan, name)`` re-evaluates the workload on every slot (the cost model is pure, so the
numbers are the optimizer's own) and answers as an architect would:

- the chosen legs and their cost breakdown (from the plan);
- the **binding constraints**: every option cheaper than the chosen one was ruled out by
  something — a sovereignty rule, the latency SLO, capacity (its own or what the plan left), a
  failure domain already used, a pin — and each such constraint is listed with how many cheaper
  options it removed and the cheapest of them;
- the **best rejected alternatives**, each with its reason: "rule X refused it", "SLO missed by
  N ms from M", "no capacity", "cost +Y%";
- **move the model or move the data**, per dataset: the best leg at the data's home against the
  best leg elsewhere (with the data read remotely or copied), both costed, and the choice.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from isthmus.placement.costs import LegTable, Reason, Strategy
from isthmus.placement.diagnose import refusal_text
from isthmus.placement.optimizer import STRATEGY_NAMES, PlanState
from isthmus.placement.result import (
    Alternative,
    Explanation,
    Gravity,
    GravityOption,
    Plan,
)

__all__ = ["explain", "why_refused"]

_KIND = {
    Reason.DOWN: "site_down",
    Reason.PRIVATE: "private_site",
    Reason.PINNED: "pin",
    Reason.SOVEREIGNTY: "sovereignty",
    Reason.PATH: "sovereignty",
    Reason.DATA: "sovereignty",
    Reason.CARBON: "carbon",
    Reason.THROUGHPUT: "throughput",
    Reason.LATENCY: "latency",
    Reason.CAPACITY: "capacity",
    Reason.BUDGET: "budget",
}


def why_refused(state: PlanState, table: LegTable, slot: int) -> tuple[str, str]:
    """(kind, sentence) for a slot the cost model refused."""
    ctx = state.ctx
    need = table.need
    w = need.workload
    code = Reason(int(table.reason[slot]))
    if code in (Reason.SOVEREIGNTY, Reason.PATH, Reason.DATA):
        constraint, text = refusal_text(ctx, table, slot)
        return "sovereignty", f"rule {constraint.split(':', 1)[1]} refused it: {text}"
    if code == Reason.LATENCY:
        m = int(table.reason_metro[slot])
        slo = float(w.slo.ttft_p95_ms or 0.0)
        late = float(table.ttft_ms[m, slot]) - slo
        return "latency", (
            f"SLO missed by {late:.0f} ms from {need.metros[m]} "
            f"(TTFT P95 {table.ttft_ms[m, slot]:.0f} ms > {slo:g} ms)"
        )
    if code == Reason.CAPACITY:
        return "capacity", (
            f"no capacity: needs {table.devices[slot]:.0f} devices, {ctx.slot_free[slot]:.0f} free"
        )
    if code == Reason.CARBON:
        return "carbon", (
            f"grid at {ctx.site_carbon[ctx.slot_site[slot]]:.0f} gCO2/kWh, above the cap of "
            f"{w.carbon.max_g_per_kwh:g}"
        )
    if code == Reason.THROUGHPUT:
        return "throughput", (
            f"decodes {table.stream_tokens_per_s[slot]:.0f} tokens/s per stream, below the SLO "
            f"of {w.slo.output_tokens_per_s:g}"
        )
    if code == Reason.BUDGET:
        return "budget", f"costs ${table.cost[slot]:,.0f}, above the budget of ${w.budget_usd:,.0f}"
    if code == Reason.PINNED:
        if ctx.avoid_mask(w.avoid)[slot]:
            return "pin", "on the workload's avoid list"
        return "pin", "outside the workload's pins"
    if code == Reason.PRIVATE:
        owner = ctx.site_of_slot(slot).provider
        return "private_site", f"{owner}'s own data centre hosts only {owner}'s workloads"
    if code == Reason.DOWN:
        return "site_down", "the site is down"
    return "other", code.name.lower()


def _plan_reason(
    state: PlanState, table: LegTable, slot: int, chosen: list[int], reference: float
) -> tuple[str, str]:
    """(kind, sentence) for a feasible slot the plan did not use."""
    ctx = state.ctx
    cands = state.candidates
    w = state.index(table.need.name)
    assert w is not None
    used_here = 0.0
    users: set[str] = set()
    for v, legs in state.legs_of.items():
        for leg in legs:
            if int(cands.slot[leg]) == slot and v != w:
                used_here += float(cands.devices[leg])
                users.add(state.needs[v].name)
    left = ctx.slot_free[slot] - used_here
    occupancy = float(table.occupancy[slot])
    if np.isfinite(left) and left < occupancy - 1e-9:
        who = ", ".join(sorted(users)[:3]) + (" …" if len(users) > 3 else "")
        return "capacity", (
            f"no capacity left: needs {occupancy:.3g} devices on average, {max(left, 0):.3g} "
            f"free after the plan (used by {who})"
        )
    domain = int(ctx.slot_domain[slot])
    for c in chosen if len(chosen) > 1 else ():
        if int(ctx.slot_domain[c]) == domain and c != slot:
            return "redundancy", (
                f"same failure domain ({ctx.domain_names[domain]}) as the leg at {ctx.slot_name(c)}"
            )
    names = {need.name: v for v, need in enumerate(state.needs)}
    for other in table.need.workload.anti_affinity:
        partner = names.get(other)
        for leg in state.legs_of.get(partner if partner is not None else -1, []):
            if int(cands.domain[leg]) == domain:
                return "anti_affinity", (
                    f"failure domain {ctx.domain_names[domain]} holds anti-affine workload {other}"
                )
    cost = float(table.objective[slot])
    if abs(cost - reference) <= 0.005 * max(reference, 1e-9):
        return "cost", "same cost (the tie goes to the lower TTFT)"
    if cost > reference:
        return "cost", f"cost +{(cost / max(reference, 1e-9) - 1) * 100:.1f}%"
    if table.cover.shape[0] and len(chosen) > 1:
        missing = [
            table.need.metros[m] for m in range(table.cover.shape[0]) if not table.cover[m, slot]
        ]
        if missing:
            return "latency", f"does not meet the TTFT SLO from {', '.join(missing)}"
    return "cost", "an equal or cheaper combination of legs exists (within the plan's gap)"


def explain(plan: Plan, name: str) -> Explanation:
    """Why ``name`` is placed where it is (or why it cannot be placed)."""
    state = plan.state
    if not isinstance(state, PlanState):
        raise ValueError("this plan carries no solver state to explain")
    w = state.index(name)
    if w is None:
        known = ", ".join(n.name for n in state.needs[:10])
        raise KeyError(f"no workload {name!r} in the plan (workloads: {known} …)")
    table = state.table(w)
    ctx = state.ctx
    placement = plan.placement(name)
    conflict = plan.conflict(name)
    cands = state.candidates
    chosen = [int(cands.slot[leg]) for leg in state.legs_of.get(w, [])]
    objective = table.objective
    runnable = (table.reason != Reason.NO_PROFILE) & (table.reason != Reason.UNPRICED)
    runnable &= np.isfinite(objective)
    reference = max((float(objective[s]) for s in chosen), default=np.inf)
    order = np.argsort(np.where(runnable, objective, np.inf), kind="stable")

    cheaper: dict[str, list[Alternative]] = defaultdict(list)
    costlier: list[Alternative] = []
    for slot in order.tolist():
        if not runnable[slot] or slot in chosen:
            continue
        cost = float(table.cost[slot])
        if table.reason[slot] != Reason.OK:
            kind, text = why_refused(state, table, slot)
        else:
            kind, text = _plan_reason(state, table, slot, chosen, reference)
        delta = (
            (float(objective[slot]) / reference - 1.0) * 100.0
            if np.isfinite(reference) and reference > 0
            else None
        )
        site = ctx.site_of_slot(slot)
        alt = Alternative(site.name, ctx.slot_accelerator[slot], kind, text, cost, delta)
        if float(objective[slot]) < reference - 1e-9 or not np.isfinite(reference):
            cheaper[kind].append(alt)
        elif table.reason[slot] == Reason.OK and len(costlier) < 3:
            costlier.append(alt)

    binding: list[str] = []
    placed = placement is not None
    for kind, alts in sorted(cheaper.items(), key=lambda item: -len(item[1])):
        best = alts[0]
        if best.delta_pct is None:
            saving = ""
        elif abs(best.delta_pct) < 0.5:
            saving = ", same cost"
        else:
            saving = f", {best.delta_pct:+.0f}%"
        what = "cheaper option" if placed else "option"
        binding.append(
            f"{kind}: rules out {len(alts)} {what}{'s' if len(alts) > 1 else ''} "
            f"(cheapest {best.site}/{best.accelerator} ${best.cost_usd or 0:,.0f}{saving}: "
            f"{best.reason})"
        )
    budget = table.need.workload.budget_usd
    if placement is not None and budget is not None and placement.cost.total_usd >= 0.95 * budget:
        binding.append(f"budget: ${placement.cost.total_usd:,.0f} of ${budget:,.0f}")
    if placement is not None and not binding:
        binding.append("none: the chosen legs are the cheapest options on the fabric")
    if conflict is not None:
        binding = [f"conflict: {c}" for c in conflict.constraints] + binding

    shown: list[Alternative] = []
    for alts in cheaper.values():
        shown.extend(alts[:2])
    shown.sort(key=lambda a: a.cost_usd if a.cost_usd is not None else np.inf)
    alternatives = tuple(shown[:6] + costlier)
    return Explanation(
        workload=name,
        placement=placement,
        conflict=conflict,
        binding=tuple(binding),
        alternatives=alternatives,
        gravity=_gravity(state, table, chosen),
    )


def _option(state: PlanState, table: LegTable, slots: np.ndarray, i: int) -> GravityOption | None:
    """The best option among ``slots`` (feasible first), for dataset ``i``."""
    if len(slots) == 0:
        return None
    ctx = state.ctx
    feasible = slots[table.reason[slots] == Reason.OK]
    pool = feasible if len(feasible) else slots
    finite = pool[np.isfinite(table.objective[pool])]
    if len(finite) == 0:
        return None
    best = int(finite[np.argmin(table.objective[finite])])
    ok = bool(table.reason[best] == Reason.OK)
    note = "" if ok else why_refused(state, table, best)[1]
    strategy = STRATEGY_NAMES.get(Strategy(int(table.strategy[i, best])), "none")
    return GravityOption(
        site=ctx.site_of_slot(best).name,
        accelerator=ctx.slot_accelerator[best],
        cost_usd=round(float(table.cost[best]), 2),
        data_strategy=strategy,
        feasible=ok,
        note=note,
    )


def _gravity(state: PlanState, table: LegTable, chosen: list[int]) -> tuple[Gravity, ...]:
    ctx = state.ctx
    need = table.need
    out: list[Gravity] = []
    runnable = np.nonzero((table.reason != Reason.NO_PROFILE) & (table.reason != Reason.UNPRICED))[
        0
    ]
    for i, (use, dataset) in enumerate(need.datasets):
        home = ctx.site_index[dataset.site]
        at_home = runnable[ctx.slot_site[runnable] == home]
        away = runnable[ctx.slot_site[runnable] != home]
        to_data = _option(state, table, at_home, i)
        to_model = _option(state, table, away, i)
        chosen_home = any(int(ctx.slot_site[s]) == home for s in chosen)
        choice = "move the model" if chosen_home else ("move the data" if chosen else "none")
        out.append(
            Gravity(
                dataset=dataset.name,
                home_site=dataset.site,
                size_gb=dataset.size_gb,
                move_model=to_data,
                move_data=to_model,
                chosen=choice,
                summary=_gravity_summary(dataset.name, to_data, to_model, choice, use.access),
            )
        )
    return tuple(out)


def _gravity_summary(
    dataset: str,
    move_model: GravityOption | None,
    move_data: GravityOption | None,
    chosen: str,
    access: str,
) -> str:
    def describe(option: GravityOption | None, what: str) -> str:
        if option is None:
            return f"{what}: no site can run the model"
        if not option.feasible:
            return f"{what} ({option.site}): impossible — {option.note}"
        how = {"remote_read": "read remotely", "replicate": "copied", "local": "local"}.get(
            option.data_strategy, option.data_strategy
        )
        extra = "" if what.startswith("move the model") else f", data {how}"
        return f"{what} to {option.site}/{option.accelerator}: ${option.cost_usd:,.0f}{extra}"

    parts = [describe(move_model, "move the model"), describe(move_data, "move the data")]
    if (
        move_model is not None
        and move_data is not None
        and move_model.feasible
        and move_data.feasible
    ):
        cheap, dear = sorted((move_model.cost_usd, move_data.cost_usd))
        winner = (
            "moving the model" if move_model.cost_usd <= move_data.cost_usd else "moving the data"
        )
        saving = (dear - cheap) / dear * 100 if dear > 0 else 0.0
        parts.append(f"{winner} is cheaper by {saving:.0f}%")
    parts.append(f"plan: {chosen}")
    return f"{dataset} ({access}): " + "; ".join(parts)
