"""``isthmus plan``: place workloads on the fabric and show the plan like ``terraform plan``.

The optimizer (``isthmus.placement``) is pure; this module only loads files, calls it, and
renders its answer: one row per leg (``+`` placed, ``!`` cannot be placed; when re-planning
``~`` moved, ``-`` lost), a cost summary, ``--explain NAME`` for the reasons behind one workload,
``--fail SITE`` / ``--price SITE/ACCELERATOR=USD`` to re-plan after a change, ``--baseline`` to
price a SkyPilot-style plan under the same model, and ``--json`` for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isthmus.cli.fabric_cmds import FabricOption, JsonOption
from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.fabric.catalog import Fabric
from isthmus.placement import (
    Explanation,
    Method,
    Placement,
    Plan,
    Replan,
    compare_with_baseline,
    explain,
    load_workloads,
    replan,
    reprice,
)
from isthmus.placement import plan as make_plan

__all__ = ["plan", "register"]

_KIND_SHORT = {
    "online_inference": "online",
    "batch_inference": "batch",
    "fine_tuning": "fine-tune",
    "pretraining": "pretrain",
    "rag": "rag",
}


def _money(value: float | None) -> str:
    return "" if value is None else f"${value:,.0f}"


def _ttft(placement: Placement, index: int) -> str:
    leg = placement.legs[index]
    worst = leg.worst_ttft_ms
    if worst is None:
        if leg.run_hours:
            deadline = placement.deadline_hours
            return (
                f"{leg.run_hours:,.1f} h / {deadline:g} h"
                if deadline
                else f"{leg.run_hours:,.1f} h"
            )
        return ""
    slo = placement.ttft_slo_ms
    if not slo:
        return f"{worst:,.0f} ms"
    spare = " [dim](failover)[/]" if worst > slo else ""
    return f"{worst:,.0f} / {slo:g} ms{spare}"


def _data(placement: Placement, index: int, *, names: bool = False) -> str:
    moves = []
    data = placement.legs[index].data
    for move in data:
        verb = {"local": "local", "remote_read": "remote read", "replicate": "copy"}.get(
            move.strategy, move.strategy
        )
        amount = f" {move.gb_per_period:,.0f} GB" if move.gb_per_period >= 1 else ""
        label = f"{move.dataset}: " if names or len(data) > 1 else ""
        moves.append(f"{label}{verb}{amount}")
    return "; ".join(moves)


def _plan_table(plan: Plan, marks: dict[str, str] | None = None) -> Table:
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for column, justify in (
        ("", "left"),
        ("workload", "left"),
        ("kind", "left"),
        ("site", "left"),
        ("accelerator", "left"),
        ("tier", "left"),
        ("dev", "right"),
        ("TTFT P95 / SLO · run", "right"),
        ("data / period", "left"),
        ("$/period", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("workload", "site"))  # type: ignore[arg-type]
    styles = {"+": "green", "~": "yellow", "-": "red", "!": "red", " ": "dim"}
    for placement in plan.placements:
        mark = (marks or {}).get(placement.workload, "+")
        style = styles.get(mark, "")
        for i, leg in enumerate(placement.legs):
            first = i == 0
            table.add_row(
                f"[{style}]{mark}[/]" if first else "",
                escape(placement.workload) if first else "",
                _KIND_SHORT.get(placement.kind, placement.kind) if first else "",
                escape(leg.site),
                f"{leg.accelerator}×{leg.replicas}" if leg.accelerator != "api" else "api",
                leg.tier,
                str(leg.devices) if leg.devices else "",
                _ttft(placement, i),
                escape(_data(placement, i)),
                _money(leg.cost.total_usd),
            )
    for conflict in plan.unplaced:
        mark = (marks or {}).get(conflict.workload, "!")
        table.add_row(
            f"[red]{mark}[/]",
            escape(conflict.workload),
            "",
            "[red]cannot be placed[/]",
            "",
            "",
            "",
            "",
            "",
            "",
        )
    return table


def _summary(out: Console, plan: Plan) -> None:
    total = plan.total
    out.print(
        f"[bold]Plan:[/] {len(plan.placements)} to place, {len(plan.unplaced)} unplaceable. "
        f"Cost [bold]{_money(total.total_usd)}[/] per {plan.period_hours:g} h: compute "
        f"{_money(total.compute_usd)} (dedicated {_money(total.compute_dedicated_usd)} · "
        f"on-demand {_money(total.compute_on_demand_usd)} · spot "
        f"{_money(total.compute_spot_usd)} · API {_money(total.api_usd)}), data movement "
        f"{_money(total.data_movement_usd)}, serving egress "
        f"{_money(total.serving_egress_usd)}, weight transfer {_money(total.weights_usd)}. "
        f"Carbon {total.carbon_kg / 1000:,.2f} t CO2.",
        highlight=False,
        soft_wrap=True,
    )
    for conflict in plan.unplaced:
        out.print(
            f"[red]![/] [bold]{escape(conflict.workload)}[/] "
            f"[dim]({escape(', '.join(conflict.constraints))})[/]: {escape(conflict.message)}",
            highlight=False,
            soft_wrap=True,
        )


def _header(out: Console, plan: Plan, fabric: Fabric, workloads: int) -> None:
    quality = "optimal" if plan.status == "optimal" else f"{plan.status}"
    out.print(
        f"[bold]Isthmus plan[/] · {workloads} workloads on {escape(fabric.name)} "
        f"({len(fabric.sites)} sites) · method {plan.method} — {escape(quality)} · gap "
        f"{plan.gap:.2%} to the lower bound · {plan.build_seconds + plan.solve_seconds:.2f} s",
        highlight=False,
        soft_wrap=True,
    )


def _render_explanation(out: Console, found: Explanation) -> None:
    out.print(f"\n[bold]{escape(found.workload)}[/]", highlight=False)
    placement = found.placement
    if placement is not None:
        out.print(
            f"{placement.kind} · {escape(placement.model)} · data class {placement.data_class}"
            + (f" · TTFT SLO {placement.ttft_slo_ms:g} ms" if placement.ttft_slo_ms else "")
            + (f" · deadline {placement.deadline_hours:g} h" if placement.deadline_hours else ""),
            highlight=False,
        )
        legs = Table(title="chosen legs", show_edge=False, title_justify="left")
        for column in ("site", "accelerator", "tier", "replicas", "TTFT P95 by metro", "data"):
            legs.add_column(column, no_wrap=column == "site")
        for i, leg in enumerate(placement.legs):
            legs.add_row(
                escape(leg.site),
                leg.accelerator,
                leg.tier
                + (f" ({leg.dedicated_replicas} dedicated)" if leg.dedicated_replicas else ""),
                str(leg.replicas),
                ", ".join(f"{m} {t:,.0f} ms" for m, t in leg.ttft_p95_ms)
                or (f"run {leg.run_hours:,.1f} h" if leg.run_hours else ""),
                escape(_data(placement, i, names=True)),
            )
        out.print(legs)
        cost = Table(title="cost per period", show_edge=False, title_justify="left")
        cost.add_column("item")
        cost.add_column("USD", justify="right")
        c = placement.cost
        for label, value in (
            ("compute, dedicated", c.compute_dedicated_usd),
            ("compute, on-demand", c.compute_on_demand_usd),
            ("compute, spot", c.compute_spot_usd),
            ("provider API", c.api_usd),
            ("data movement", c.data_movement_usd),
            ("serving egress", c.serving_egress_usd),
            ("weight transfer", c.weights_usd),
            ("total", c.total_usd),
        ):
            cost.add_row(label, f"{value:,.2f}")
        cost.add_row("carbon (kg CO2)", f"{c.carbon_kg:,.1f}")
        out.print(cost)
    if found.conflict is not None:
        out.print(
            f"[red]cannot be placed:[/] {escape(found.conflict.message)}",
            highlight=False,
            soft_wrap=True,
        )
    out.print("[bold]binding constraints[/]")
    for line in found.binding:
        out.print(f"  • {escape(line)}", highlight=False, soft_wrap=True)
    if found.alternatives:
        alts = Table(title="best rejected alternatives", show_edge=False, title_justify="left")
        for column, justify in (
            ("site", "left"),
            ("accelerator", "left"),
            ("why not", "left"),
            ("$/period", "right"),
            ("vs chosen", "right"),
        ):
            alts.add_column(column, justify=justify, no_wrap=column == "site")  # type: ignore[arg-type]
        for alt in found.alternatives:
            alts.add_row(
                escape(alt.site),
                alt.accelerator,
                escape(alt.reason),
                _money(alt.cost_usd),
                "" if alt.delta_pct is None else f"{alt.delta_pct:+.1f}%",
            )
        out.print(alts)
    for gravity in found.gravity:
        out.print(
            f"[bold]move the model or move the data[/] — {escape(gravity.summary)}",
            highlight=False,
            soft_wrap=True,
        )


def _parse_price(text: str) -> tuple[str, str, float]:
    try:
        where, value = text.split("=", 1)
        site, accelerator = where.split("/", 1)
        return site, accelerator, float(value)
    except ValueError:
        raise CliFailure(
            f"--price wants SITE/ACCELERATOR=USD_PER_DEVICE_HOUR (e.g. nebius-eu-north1/H100=4.2);"
            f" found {text!r}"
        ) from None


def _replan_marks(change: Replan) -> dict[str, str]:
    marks = {name: " " for name in change.unchanged}
    for move in change.moves:
        if not move.after:
            marks[move.workload] = "-"
        elif not move.before:
            marks[move.workload] = "+"
        else:
            marks[move.workload] = "~"
    return marks


@friendly
def plan(
    workloads_path: Annotated[
        Path, typer.Argument(help="workload YAML, e.g. examples/workloads.yaml")
    ],
    explain_name: Annotated[
        str | None, typer.Option("--explain", "-e", help="explain one workload's placement")
    ] = None,
    method: Annotated[str, typer.Option(help="auto, milp (exact) or scale (LP-based)")] = "auto",
    time_limit: Annotated[
        float, typer.Option("--time-limit", min=1, help="solver time limit in seconds")
    ] = 30.0,
    fail: Annotated[
        list[str] | None, typer.Option("--fail", help="re-plan with this site down (repeatable)")
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option("--price", help="re-plan with SITE/ACCELERATOR=USD on-demand (repeatable)"),
    ] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline", help="also price a SkyPilot-style plan, same model")
    ] = False,
    fabric_path: FabricOption = None,
    as_json: JsonOption = False,
) -> None:
    """Place workloads on the fabric: cheapest plan that meets every SLO and sovereignty rule.

    isthmus plan examples/workloads.yaml --explain lakeshore-notes-summaries
    """
    if method not in get_args(Method):
        raise CliFailure(f"--method must be one of {', '.join(get_args(Method))}; found {method!r}")
    fabric = load(fabric_path)
    if not workloads_path.exists():
        raise CliFailure(f"cannot read workload file {workloads_path}: no such file")
    workloads = load_workloads(workloads_path, fabric)
    for site in fail or ():
        if site not in fabric.sites:
            raise CliFailure(f"unknown site {site!r} for --fail")
    current = make_plan(fabric, workloads, method=method, time_limit_s=time_limit)  # type: ignore[arg-type]
    change: Replan | None = None
    if fail or price:
        changed = fabric
        for text in price or ():
            site, accelerator, usd = _parse_price(text)
            try:
                changed = reprice(changed, site, accelerator, on_demand=usd)
            except KeyError as exc:
                raise CliFailure(f"--price {text}: {exc.args[0]}") from None
        change = replan(
            current,
            changed,
            down_sites=fail or (),
            method=method,  # type: ignore[arg-type]
            time_limit_s=time_limit,
        )
    shown = change.plan if change is not None else current
    found: Explanation | None = None
    if explain_name is not None:
        if shown.placement(explain_name) is None and shown.conflict(explain_name) is None:
            names = ", ".join(w.name for w in workloads.workloads)
            raise CliFailure(
                f"no workload {explain_name!r} in {workloads_path}; workloads: {names}"
            )
        found = explain(shown, explain_name)
    comparison = compare_with_baseline(shown) if baseline else None

    if as_json:
        data: dict[str, Any] = shown.as_dict()
        if change is not None:
            data["replan"] = {k: v for k, v in change.as_dict().items() if k != "plan"}
        if found is not None:
            data["explanation"] = found.as_dict()
        if comparison is not None:
            data["baseline"] = comparison
        print_json(data)
        return
    out = console()
    if found is not None and explain_name is not None:
        _render_explanation(out, found)
        return
    _header(out, shown, fabric, len(workloads.workloads))
    if change is not None:
        what = ", ".join([*(f"{s} down" for s in fail or ()), *(price or ())])
        out.print(
            f"[bold]Re-plan[/] after {escape(what)}: {len(change.moves)} moved, "
            f"{len(change.unchanged)} unchanged; cost {_money(change.cost_before_usd)} → "
            f"{_money(change.cost_after_usd)}",
            highlight=False,
        )
    out.print(_plan_table(shown, _replan_marks(change) if change is not None else None))
    _summary(out, shown)
    if change is not None:
        for move in change.moves:
            before = ", ".join(move.before) or "—"
            after = ", ".join(move.after) or "—"
            out.print(
                f"[yellow]~[/] [bold]{escape(move.workload)}[/]: {escape(before)} → "
                f"{escape(after)}: {escape(move.reason)}",
                highlight=False,
                soft_wrap=True,
            )
    if comparison is not None:
        table = Table(
            title="same workloads, same cost model", show_edge=False, title_justify="left"
        )
        for column in (
            "plan",
            "placed",
            "true cost",
            "SLO misses",
            "sovereignty violations",
            "redundancy shortfalls",
        ):
            table.add_column(column, justify="left" if column == "plan" else "right")
        for row in comparison["rows"]:
            table.add_row(
                row["name"],
                str(row["placed"]),
                _money(row["total_usd"]),
                str(row["slo_misses"]),
                str(row["sovereignty_violations"]),
                str(row["redundancy_shortfalls"]),
            )
        out.print(table)
        out.print(f"[dim]{escape(comparison['note'])}[/]", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
