"""Why a workload cannot be placed, said as the constraints that conflict.

Invariant: an unplaceable workload is answered with a ``Conflict`` naming its constraints
(``sovereignty:<rule>``, ``slo:ttft_p95_ms@<metro>``, ``capacity:<accelerator>``, ``budget``,
``redundancy``, ...) and a sentence built from the same numbers the optimizer used — the rule
that refused, the SLO and how far the nearest compliant site misses it, the devices needed and
free — never a solver status. The checks peel the constraints in the cost model's order: the
first one that leaves no slot is the one in conflict with what came before it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from isthmus.placement.context import PlanContext
from isthmus.placement.costs import LegTable, Reason
from isthmus.placement.spec import SERVING_KINDS, TRAINING_KINDS

__all__ = ["describe_zone", "diagnose", "refusal_text"]

BoolArray = npt.NDArray[np.bool_]

_SOVEREIGN = (Reason.SOVEREIGNTY, Reason.PATH, Reason.DATA)


def describe_zone(ctx: PlanContext, data_class: str) -> str:
    """Where data of ``data_class`` may go, from the rules that cover it."""
    rules = [r for r in ctx.fabric.spec.policies if data_class in r.data_classes]
    if not rules:
        return f"data class {data_class} is covered by no rule (refused everywhere)"
    parts: list[str] = []
    for rule in rules:
        bits: list[str] = []
        if rule.process_in:
            bits.append(f"only in {'+'.join(rule.process_in)}")
        if rule.sites.site_kinds:
            bits.append(f"on {'/'.join(rule.sites.site_kinds)} sites")
        for tag, value in rule.sites.require_tags.items():
            bits.append(f"on sites with {tag}={value}")
        for tag, value in rule.sites.deny_tags.items():
            bits.append(f"not on sites with {tag}={value}")
        if rule.models.hosted_in:
            bits.append(f"by models hosted in {'+'.join(rule.models.hosted_in)}")
        if rule.models.require_open_weights:
            bits.append("by open-weight models")
        if rule.require_private_path:
            bits.append("over private paths")
        if rule.transit_in and rule.transit_in != rule.process_in:
            bits.append(f"through {'+'.join(rule.transit_in)}")
        text = ", ".join(bits) if bits else "anywhere"
        parts.append(f"{text} (rule {rule.name})")
    return f"data class {data_class} allowed " + "; ".join(parts)


def refusal_text(ctx: PlanContext, table: LegTable, slot: int) -> tuple[str, str]:
    """(constraint, reason) for a slot the sovereignty checks refused."""
    need = table.need
    site = ctx.site_of_slot(slot).name
    code = int(table.reason[slot])
    if code == Reason.SOVEREIGNTY:
        verdict = ctx.process_verdict(need.data_class, site, need.model.name)
        return f"sovereignty:{verdict.rule}", f"{verdict.rule} ({verdict.clause}): {verdict.reason}"
    if code == Reason.PATH:
        metro = need.metros[int(table.reason_metro[slot])]
        found = ctx.metro_verdict(need.data_class, metro, site)
        if found is None:
            return "sovereignty:path", f"the path from {metro} is refused"
        return (
            f"sovereignty:{found.rule}",
            f"{found.rule} ({found.clause}) on the path from {metro}: {found.reason}",
        )
    index = int(table.reason_dataset[slot])
    _, dataset = need.datasets[index]
    text = ctx.dataset_refusal(dataset.name, site, need.model.name)
    if not text:
        residency = "+".join(dataset.residency) or "its policy"
        text = (
            f"dataset {dataset.name} may not be copied to {site} (residency {residency}) and "
            "reading it remotely is not allowed there"
        )
    rule = text.split(" refused by ", 1)[-1].split(" ", 1)[0] if " refused by " in text else "data"
    return f"sovereignty:{rule}", text


def _sovereignty_message(
    ctx: PlanContext, table: LegTable, slots: BoolArray
) -> tuple[tuple[str, ...], str]:
    by_clause: dict[tuple[str, str], set[int]] = {}
    for slot in np.nonzero(slots)[0].tolist():
        constraint, text = refusal_text(ctx, table, slot)
        by_clause.setdefault((constraint, text.split(":", 1)[0]), set()).add(
            int(ctx.slot_site[slot])
        )
    need = table.need
    sites = len({int(ctx.slot_site[s]) for s in np.nonzero(slots)[0].tolist()})
    ranked = sorted(by_clause.items(), key=lambda item: -len(item[1]))
    listing = "; ".join(
        f"{what} at {len(where)} site{'s' if len(where) > 1 else ''}"
        for (_, what), where in ranked[:4]
    )
    counted = {key: len(where) for key, where in by_clause.items()}
    constraints = tuple(sorted({c for c, _ in counted}))
    return constraints, (
        f"{describe_zone(ctx, need.data_class)}, and every one of the {sites} sites that can run "
        f"{need.model.name} is refused: {listing}"
    )


def diagnose(ctx: PlanContext, table: LegTable) -> tuple[tuple[str, ...], str]:
    """The conflicting constraints of a workload with no feasible leg, and why."""
    need = table.need
    w = need.workload
    reason = table.reason
    runnable = (reason != Reason.NO_PROFILE) & (reason != Reason.UNPRICED)
    if not runnable.any():
        if w.kind in TRAINING_KINDS and not need.model.open_weights:
            verb = "fine-tuned" if w.kind == "fine_tuning" else "pre-trained"
            return ("model",), (
                f"model {need.model.name} is closed (served only through provider APIs): it "
                f"cannot be {verb} on the fabric"
            )
        have = sorted({p.accelerator for p in need.model.profiles})
        return ("model",), (
            f"model {need.model.name} has no priced accelerator to run on: its profiles cover "
            f"{', '.join(have) or 'no accelerator'}, and no site offers those with a price"
        )
    up = runnable & (reason != Reason.DOWN)
    if not up.any():
        down = sorted({ctx.site_of_slot(s).name for s in np.nonzero(runnable)[0].tolist()})
        return ("site_down",), (
            f"every site that can run {need.model.name} is down ({', '.join(down)})"
        )
    compliant = up & ~np.isin(reason, _SOVEREIGN)
    if not compliant.any():
        return _sovereignty_message(ctx, table, up)
    shared = compliant & (reason != Reason.PRIVATE)
    if not shared.any():
        owners = sorted({ctx.site_of_slot(s).provider for s in np.nonzero(compliant)[0].tolist()})
        return ("private_site", "sovereignty"), (
            f"{describe_zone(ctx, need.data_class)}, and the only compliant sites are other "
            f"tenants' own data centres ({', '.join(owners)})"
        )
    sovereign = shared & (reason != Reason.PINNED)
    if not sovereign.any():
        return ("pin", "sovereignty"), (
            f"the pins and avoid list leave no compliant site that can run {need.model.name}"
        )
    clean = sovereign & (reason != Reason.CARBON)
    if not clean.any():
        cap = w.carbon.max_g_per_kwh
        best = float(np.min(ctx.site_carbon[ctx.slot_site[sovereign]]))
        return ("carbon", "sovereignty"), (
            f"the carbon cap of {cap:g} gCO2/kWh excludes every compliant site; the cleanest "
            f"grid among them is {best:.0f} gCO2/kWh"
        )
    fast = clean & (reason != Reason.THROUGHPUT)
    if not fast.any():
        best = float(np.nanmax(np.where(clean, table.stream_tokens_per_s, np.nan)))
        return ("slo:output_tokens_per_s",), (
            f"the per-stream SLO of {w.slo.output_tokens_per_s:g} tokens/s is above what any "
            f"compliant accelerator decodes ({best:.0f} tokens/s at best)"
        )
    near = fast & (reason != Reason.LATENCY)
    if not near.any():
        return _latency_message(ctx, table, fast)
    roomy = near & (reason != Reason.CAPACITY)
    if not roomy.any():
        return _capacity_message(ctx, table, near)
    cheapest = float(np.min(table.cost[roomy]))
    return ("budget",), (
        f"the cheapest compliant placement costs ${cheapest:,.0f} per period, above the budget "
        f"of ${w.budget_usd or 0:,.0f}"
    )


def _latency_message(
    ctx: PlanContext, table: LegTable, candidates: BoolArray
) -> tuple[tuple[str, ...], str]:
    need = table.need
    slo = float(need.workload.slo.ttft_p95_ms or 0.0)
    zone = describe_zone(ctx, need.data_class)
    slots = np.nonzero(candidates)[0]
    ttft = table.ttft_ms[:, slots]
    hopeless = [m for m in range(len(need.metros)) if not (ttft[m] <= slo).any()]
    constraints = [f"slo:ttft_p95_ms@{need.metros[m]}" for m in hopeless]
    constraints.append(
        "sovereignty:"
        + "+".join(r.name for r in ctx.fabric.spec.policies if need.data_class in r.data_classes)
    )
    if hopeless:
        m = hopeless[0]
        best = int(slots[int(np.argmin(ttft[m]))])
        site = ctx.site_of_slot(best)
        service = float(table.service_ms[best])
        rtt = float(table.ttft_ms[m, best]) - service
        others = [need.metros[h] for h in hopeless[1:]]
        also = f" (also from {', '.join(others)})" if others else ""
        budget = slo - service
        within = (
            f"needs a compliant site within {budget:.0f} ms RTT"
            if budget > 0
            else f"cannot be met: the service time alone is {service:.0f} ms"
        )
        return tuple(constraints), (
            f"{zone} but the TTFT SLO of {slo:g} ms from {need.metros[m]}{also} {within}; the "
            f"nearest compliant site is {site.name} ({site.jurisdiction_code}) at "
            f"{rtt:.0f} ms RTT (TTFT P95 {table.ttft_ms[m, best]:.0f} ms, "
            f"{table.ttft_ms[m, best] - slo:.0f} ms over)"
        )
    worst = np.max(ttft - slo, axis=0)
    best = int(slots[int(np.argmin(worst))])
    late = int(np.argmax(table.ttft_ms[:, best] - slo))
    return ("slo:ttft_p95_ms", "redundancy"), (
        f"no single compliant site meets the TTFT SLO of {slo:g} ms from every metro "
        f"({', '.join(need.metros)}); the best, {ctx.site_of_slot(best).name}, misses "
        f"{need.metros[late]} by {table.ttft_ms[late, best] - slo:.0f} ms. Split the demand "
        "by region or give redundancy legs (n > 1) so each metro has a leg near it"
    )


def _capacity_message(
    ctx: PlanContext, table: LegTable, candidates: BoolArray
) -> tuple[tuple[str, ...], str]:
    need = table.need
    slots = np.nonzero(candidates)[0]
    order = slots[np.argsort(table.devices[slots])]
    best = int(order[0])
    listing = ", ".join(
        f"{ctx.slot_name(int(s))} {ctx.slot_free[int(s)]:.0f} free" for s in order[:3]
    )
    accelerators = sorted({ctx.slot_accelerator[int(s)] for s in order})
    what = (
        f"the deadline of {need.workload.slo.deadline_hours:g} h needs"
        if need.kind not in SERVING_KINDS
        else f"a peak of {float(need.peak_rps.sum()):g} req/s needs"
    )
    return tuple(f"capacity:{a}" for a in accelerators), (
        f"{what} at least {table.devices[best]:.0f} devices "
        f"({table.replicas[best]:.0f} replicas) on the compliant pools that meet every other "
        f"constraint, and none has that many free: {listing}"
    )
