"""Placement at scale, and against a SkyPilot-style baseline, in one run.

For synthetic fabrics of 50 and 300 sites (``isthmus.fabric.synth``: real metro geography,
five site kinds, public GPU price ranges, the three reference sovereignty regimes) and 100,
1,000 and 10,000 generated workloads of every kind (``isthmus.placement.synth``), it times
``plan()`` end to end (candidate legs for every workload on every slot, then the solver) and
reports the optimality gap the solver proves: HiGHS's own bound for the exact MILP, the LP bound
(column generation over every leg) for the scalable method. Where the exact MILP is affordable
it is run too, as a check of the scalable method's answer.

In the same run a baseline in the style of SkyPilot's optimizer (cheapest listed accelerator per
workload; egress only across providers; no latency SLO, sovereignty or failure domains; buys
on-demand) places the same workloads, and both plans are priced and checked by the same
``assess``: true cost under the full model (compute at the tier bought, egress along the real
paths, serving egress, weight transfer), TTFT SLO misses, sovereignty violations by rule,
redundancy shortfalls. Costs are compared on the workloads both placed. The example fabric
(examples/fabric.yaml with examples/workloads.yaml) is measured the same way.

Synthetic fabrics carry a few thousand free devices; 10,000 workloads need more. Before timing,
each instance's pools are scaled so that, for every data class, the pools its rules allow hold
2.5x the devices its workloads need at their cheapest compliant pool, and the few pools that
pinned workloads (jobs that must run next to health or national data) can use hold
2.5x theirs (estimated on a sample of 300 workloads; the factors are reported). Prices, geography
and rules are untouched.

    .venv/bin/python bench/placement_scale.py [--sizes 50x100,300x10000] [--exact-up-to 1000]

Targets (issue 5): 300 sites x 10,000 workloads in <= 30 s with gap <= 2%; on the example
fabric the plan's true cost at least 15% below the baseline's, with zero violations in the plan.
Writes bench/results/placement_scale.json and prints a table; missed targets are said plainly.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric
from isthmus.fabric.synth import synth_fabric
from isthmus.placement import (
    Plan,
    WorkloadSet,
    assess,
    compare_with_baseline,
    load_workloads,
    plan,
    skypilot_baseline,
)
from isthmus.placement.context import PlanContext
from isthmus.placement.costs import Reason, evaluate, resolve
from isthmus.placement.optimizer import PlanState
from isthmus.placement.synth import scale_capacity, synth_workloads

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
HEADROOM = 2.5
SAMPLE = 300
FEW_POOLS = 12
TIME_LIMIT_S = 30.0


def capacity_factors(
    fabric: Fabric, workloads: WorkloadSet, seed: int
) -> dict[tuple[str, str], float]:
    """Per-pool multipliers so the instance has room for its workloads, estimated from a sample
    (each workload at its cheapest compliant pool): for every data class, the pools its rules
    allow get HEADROOM x the devices the class needs there; workloads with few compliant pools
    (jobs that must run where their health or national data lives) spread their need over
    those pools, which get HEADROOM x it. A pool takes the largest factor that applies and
    never shrinks."""
    ctx = PlanContext(fabric, period_hours=workloads.spec.period_hours)
    chosen = random.Random(seed).sample(
        list(workloads.workloads), min(SAMPLE, len(workloads.workloads))
    )
    scale = len(workloads.workloads) / len(chosen)
    needed: dict[str, float] = {}
    compliant: dict[str, np.ndarray] = {}
    pinned = np.zeros(ctx.slot_count)
    for workload in chosen:
        data_class = workloads.data_class(workload, fabric)
        table = evaluate(ctx, resolve(ctx, workload, data_class))
        usable = (table.reason == Reason.OK) | (table.reason == Reason.CAPACITY)
        usable &= np.isfinite(table.devices) & ~ctx.slot_is_api
        if not usable.any():
            continue
        best = int(np.argmin(np.where(usable, table.cost, np.inf)))
        devices = float(table.occupancy[best] * workload.redundancy.legs * scale)
        needed[data_class] = needed.get(data_class, 0.0) + devices
        pools = compliant.setdefault(data_class, np.zeros(ctx.slot_count, dtype=bool))
        pools |= usable
        if usable.sum() <= FEW_POOLS:
            pinned[usable] += devices / float(usable.sum())
    free = np.maximum(ctx.slot_free, 1.0)
    per_slot = np.maximum(1.0, HEADROOM * pinned / free)
    for data_class, devices in needed.items():
        mask = compliant[data_class]
        factor = HEADROOM * devices / max(float(ctx.slot_free[mask].sum()), 1.0)
        per_slot[mask] = np.maximum(per_slot[mask], factor)
    return {
        (ctx.site_of_slot(s).name, ctx.slot_accelerator[s]): float(per_slot[s])
        for s in range(ctx.slot_count)
        if not ctx.slot_is_api[s]
    }


def assignment(result: Plan) -> tuple[PlanState, dict[int, list[int]]]:
    state = result.state
    assert isinstance(state, PlanState)
    ours = {
        w: [int(state.candidates.slot[leg]) for leg in legs] for w, legs in state.legs_of.items()
    }
    return state, ours


def compare(result: Plan) -> dict[str, Any]:
    """Both plans under the same yardstick, on the workloads both placed."""
    state, ours = assignment(result)
    started = time.perf_counter()
    base = skypilot_baseline(state.ctx, state.needs)
    baseline_seconds = time.perf_counter() - started
    common = sorted(set(ours) & set(base))
    mine = assess(state.ctx, state.needs, {w: ours[w] for w in common}, "isthmus")
    theirs = assess(
        state.ctx, state.needs, {w: base[w] for w in common}, "skypilot-style", broker=True
    )
    all_theirs = assess(state.ctx, state.needs, base, "skypilot-style (all it placed)", broker=True)
    rebought = assess(
        state.ctx,
        state.needs,
        {w: base[w] for w in common},
        "skypilot-style sites, cheapest tier",
        broker=True,
        on_demand_only=False,
    )
    return {
        "common_workloads": len(common),
        "isthmus": mine.as_dict(),
        "baseline": theirs.as_dict(),
        "baseline_all": all_theirs.as_dict(),
        "baseline_sites_cheapest_tier": rebought.as_dict(),
        "saving": 1.0 - mine.total_usd / theirs.total_usd if theirs.total_usd > 0 else 0.0,
        "baseline_seconds": round(baseline_seconds, 2),
    }


def run_case(n_sites: int, n_workloads: int, exact_up_to: int) -> dict[str, Any]:
    spec, workload_spec = synth_workloads(synth_fabric(n_sites, seed=7), n_workloads, seed=11)
    workloads = WorkloadSet(workload_spec)
    factors = capacity_factors(Fabric(spec), workloads, seed=13)
    fabric = Fabric(scale_capacity(spec, 1.0, factors))
    values = sorted(factors.values())
    gc.collect()
    started = time.perf_counter()
    result = plan(fabric, workloads, method="auto", time_limit_s=TIME_LIMIT_S)
    seconds = time.perf_counter() - started
    contention = sum(1 for c in result.unplaced if c.constraints == ("capacity",))
    why: dict[str, int] = {}
    for conflict in result.unplaced:
        first = conflict.constraints[0].split(":", 1)[0] if conflict.constraints else "other"
        why[first] = why.get(first, 0) + 1
    row: dict[str, Any] = {
        "sites": n_sites,
        "workloads": n_workloads,
        "capacity_factor": {
            "min": round(values[0], 2),
            "median": round(values[len(values) // 2], 2),
            "max": round(values[-1], 2),
        },
        "free_devices": sum(a.free for site in fabric.spec.sites for a in site.accelerators),
        "method": result.method,
        "status": result.status,
        "seconds": round(seconds, 2),
        "build_seconds": round(result.build_seconds, 2),
        "solve_seconds": round(result.solve_seconds, 2),
        "gap": result.gap,
        "objective_usd": round(result.objective_usd, 2),
        "lower_bound_usd": round(result.bound_usd, 2),
        "placed": len(result.placements),
        "unplaced_infeasible": len(result.unplaced) - contention,
        "unplaced_contention": contention,
        "unplaced_by_first_constraint": dict(sorted(why.items())),
        "candidate_legs": int(result.stats.get("candidate_legs", 0)),
        "solver_stats": {k: round(v, 3) for k, v in result.stats.items()},
    }
    if n_workloads <= exact_up_to and n_sites <= 50 and result.method != "milp":
        started = time.perf_counter()
        exact = plan(fabric, workloads, method="milp", time_limit_s=120.0)
        row["exact_check"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "status": exact.status,
            "objective_usd": round(exact.objective_usd, 2),
            "placed": len(exact.placements),
            "scalable_excess": (result.objective_usd - exact.objective_usd) / exact.objective_usd
            if len(exact.placements) == len(result.placements)
            else None,
        }
    row["comparison"] = compare(result)
    return row


def example_case() -> dict[str, Any]:
    fabric = load_fabric(ROOT / "examples" / "fabric.yaml")
    workloads = load_workloads(ROOT / "examples" / "workloads.yaml", fabric)
    started = time.perf_counter()
    result = plan(fabric, workloads)
    seconds = time.perf_counter() - started
    report = compare_with_baseline(result)
    mine, theirs, rebought = report["rows"]
    return {
        "fabric": "examples/fabric.yaml",
        "workloads": len(workloads.workloads),
        "method": result.method,
        "status": result.status,
        "seconds": round(seconds, 3),
        "gap": result.gap,
        "placed": len(result.placements),
        "comparison": {
            "common_workloads": report["common_workloads"],
            "isthmus": mine,
            "baseline": theirs,
            "baseline_sites_cheapest_tier": rebought,
            "saving": report["saving"],
        },
    }


def print_table(cases: list[dict[str, Any]], example: dict[str, Any]) -> None:
    header = (
        f"{'case':>11} {'method':>16} {'time s':>7} {'gap':>7} {'placed':>7} {'infeas':>6} "
        f"{'contend':>7} | {'isthmus $':>12} {'miss':>4} {'viol':>4} | {'baseline $':>12} "
        f"{'miss':>5} {'viol':>5} {'short':>5} | {'saving':>6} {'tier-fair':>9}"
    )
    print(header)
    print("-" * len(header))
    rows = [(f"{c['sites']}x{c['workloads']}", c) for c in cases]
    rows.append(("example", {**example, "unplaced_infeasible": 0, "unplaced_contention": 0}))
    for label, c in rows:
        comp = c["comparison"]
        ours, theirs = comp["isthmus"], comp["baseline"]
        print(
            f"{label:>11} {c['method']:>16} {c['seconds']:>7.2f} {c['gap']:>7.3%} "
            f"{c['placed']:>7} {c['unplaced_infeasible']:>6} {c['unplaced_contention']:>7} | "
            f"{ours['total_usd']:>12,.0f} {ours['slo_misses']:>4} "
            f"{ours['sovereignty_violations']:>4} | {theirs['total_usd']:>12,.0f} "
            f"{theirs['slo_misses']:>5} {theirs['sovereignty_violations']:>5} "
            f"{theirs['redundancy_shortfalls']:>5} | {comp['saving']:>6.1%} "
            f"{1 - ours['total_usd'] / comp['baseline_sites_cheapest_tier']['total_usd']:>9.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="50x100,50x1000,50x10000,300x100,300x1000,300x10000")
    parser.add_argument(
        "--exact-up-to",
        type=int,
        default=1000,
        help="also run the exact MILP up to N workloads (50-site fabrics)",
    )
    args = parser.parse_args()
    load_before = os.getloadavg()
    cases = []
    for size in args.sizes.split(","):
        sites, workloads = (int(x) for x in size.split("x"))
        print(f"running {sites} sites x {workloads} workloads ...", flush=True)
        cases.append(run_case(sites, workloads, args.exact_up_to))
    example = example_case()
    print()
    print_table(cases, example)

    targets = []
    big = next((c for c in cases if c["sites"] == 300 and c["workloads"] == 10_000), None)
    if big is not None:
        targets.append(
            {
                "target": "300 sites x 10,000 workloads in <= 30 s",
                "measured": f"{big['seconds']:.1f} s",
                "met": big["seconds"] <= 30.0,
            }
        )
        targets.append(
            {
                "target": "gap <= 2% at 300 x 10,000",
                "measured": f"{big['gap']:.3%}",
                "met": big["gap"] <= 0.02,
            }
        )
    comp = example["comparison"]
    targets.append(
        {
            "target": "example fabric: true cost >= 15% below the baseline",
            "measured": f"{comp['saving']:.1%}",
            "met": comp["saving"] >= 0.15,
        }
    )
    targets.append(
        {
            "target": "example fabric: zero SLO misses and sovereignty violations in the plan",
            "measured": f"{comp['isthmus']['slo_misses']} misses, "
            f"{comp['isthmus']['sovereignty_violations']} violations (baseline: "
            f"{comp['baseline']['slo_misses']} misses, "
            f"{comp['baseline']['sovereignty_violations']} violations)",
            "met": comp["isthmus"]["slo_misses"] == 0
            and comp["isthmus"]["sovereignty_violations"] == 0,
        }
    )
    print()
    for t in targets:
        print(f"{'MET ' if t['met'] else 'MISSED'}  {t['target']}: {t['measured']}")
    out = {
        "bench": "placement_scale",
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.machine(),
            "cores": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "solver": "HiGHS via highspy 1.15.1, 1 thread",
        },
        "time_limit_s": TIME_LIMIT_S,
        "capacity_headroom": HEADROOM,
        "cases": cases,
        "example": example,
        "targets": targets,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "placement_scale.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
