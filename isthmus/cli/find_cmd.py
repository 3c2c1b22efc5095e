"""``isthmus find``: capacity that meets latency, path and sovereignty conditions, ranked."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, get_args

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.cli.fabric_cmds import FabricOption, JsonOption
from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.discovery import FindQuery, find
from isthmus.discovery.query import Pricing, SortKey
from isthmus.fabric.schema import SiteKind
from isthmus.network.paths import Network
from isthmus.policy import compile_policy

__all__ = ["register"]


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> str | None:
    if value is not None and value not in allowed:
        raise CliFailure(f"{option} must be one of {', '.join(allowed)}; found {value!r}")
    return value


@friendly
def find_command(
    accelerator: Annotated[
        str | None, typer.Option("--accelerator", "-a", help="e.g. H100")
    ] = None,
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="free devices needed")] = 1,
    jurisdiction: Annotated[
        list[str] | None, typer.Option("--jurisdiction", "-j", help="code or group (repeatable)")
    ] = None,
    near: Annotated[
        str | None, typer.Option("--near", help="metro or site to measure RTT from")
    ] = None,
    within_ms: Annotated[
        float | None, typer.Option("--within-ms", help="max RTT from --near")
    ] = None,
    private: Annotated[
        bool, typer.Option("--private", help="private path from --near only")
    ] = False,
    data_class: Annotated[
        str | None, typer.Option("--data-class", "-c", help="must be allowed")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="model that would run")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", help="site kind (repeatable)")] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="repeatable")] = None,
    pricing: Annotated[str, typer.Option(help="on_demand, reserved or spot")] = "on_demand",
    max_price: Annotated[
        float | None, typer.Option("--max-price", help="max $ per device-hour")
    ] = None,
    sort: Annotated[str, typer.Option(help="price, rtt or carbon")] = "price",
    limit: Annotated[int | None, typer.Option(help="show at most N")] = None,
    why_not: Annotated[bool, typer.Option("--why-not", help="also list excluded sites")] = False,
    fabric_path: FabricOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find sites, e.g. 8 free H100 in the EU within 15 ms of FRA on a private path for PHI:

    isthmus find -a H100 -n 8 -j EU --near FRA --within-ms 15 --private -c phi
    """
    fabric = load(fabric_path)
    if within_ms is not None and near is None:
        raise CliFailure("--within-ms needs --near (the metro or site to measure from)")
    if private and near is None:
        raise CliFailure("--private needs --near (the metro or site the path starts from)")
    if near is not None and fabric.place(near) is None:
        raise CliFailure(f"unknown metro or site {near!r} for --near")
    if data_class is not None and data_class not in fabric.data_classes:
        known = ", ".join(sorted(fabric.data_classes))
        raise CliFailure(f"unknown data class {data_class!r}; known: {known}")
    if model is not None and model not in fabric.models:
        raise CliFailure(f"unknown model {model!r}; known: {', '.join(sorted(fabric.models))}")
    groups = set(fabric.spec.jurisdiction_groups)
    from isthmus.fabric.countries import is_jurisdiction_code

    for code in jurisdiction or ():
        if code not in groups and not is_jurisdiction_code(code):
            raise CliFailure(
                f"--jurisdiction {code!r} is neither a jurisdiction code nor a group "
                f"({', '.join(sorted(groups))})"
            )
    kinds = tuple(_choice(k, get_args(SiteKind), "--kind") or k for k in kind or ())
    query = FindQuery(
        accelerator=accelerator,
        count=count,
        jurisdictions=tuple(jurisdiction or ()),
        near=near,
        within_ms=within_ms,
        private_path=private,
        data_class=data_class,
        model=model,
        kinds=kinds,  # type: ignore[arg-type]
        providers=tuple(provider or ()),
        pricing=_choice(pricing, get_args(Pricing), "--pricing"),  # type: ignore[arg-type]
        max_usd_per_device_hour=max_price,
        sort=_choice(sort, get_args(SortKey), "--sort"),  # type: ignore[arg-type]
        limit=limit,
    )
    result = find(fabric, Network(fabric), compile_policy(fabric), query)
    if as_json:
        print_json(
            {
                "query": asdict(query),
                "candidates": [asdict(c) for c in result.candidates],
                "excluded": [asdict(e) for e in result.excluded],
            }
        )
        return
    out = console()
    table = Table(title=f"{len(result.candidates)} matching sites", show_edge=False)
    for column, justify in (  # site names are what users copy: never wrap them
        ("#", "right"),
        ("site", "left"),
        ("kind", "left"),
        ("city", "left"),
        ("jur.", "left"),
        ("free", "right"),
        ("$/dev-h", "right"),
        ("RTT ms", "right"),
        ("path", "left"),
        ("gCO2/kWh", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column in ("site", "path"))  # type: ignore[arg-type]
    for rank, c in enumerate(result.candidates, 1):
        path = (
            ""
            if c.path_source is None
            else f"{'private' if c.private_path else 'public'}/{c.path_source}"
        )
        table.add_row(
            str(rank),
            c.site,
            c.kind,
            c.city,
            c.jurisdiction,
            "" if c.free_devices is None else f"{c.free_devices}×{c.accelerator}",
            "" if c.usd_per_device_hour is None else f"{c.usd_per_device_hour:.2f}",
            "" if c.rtt_ms is None else f"{c.rtt_ms:.1f}",
            path,
            "" if c.carbon_g_per_kwh is None else f"{c.carbon_g_per_kwh:.0f}",
        )
    out.print(table)
    by_condition: dict[str, int] = {}
    for e in result.excluded:
        by_condition[e.condition] = by_condition.get(e.condition, 0) + 1
    if by_condition:
        summary = ", ".join(f"{n} by {cond}" for cond, n in sorted(by_condition.items()))
        out.print(f"[dim]excluded: {summary}[/]", highlight=False)
    if why_not:
        why = Table(title="excluded", show_edge=False)
        why.add_column("site")
        why.add_column("condition")
        why.add_column("reason")
        for e in result.excluded:
            why.add_row(e.site, e.condition, escape(e.reason))
        out.print(why)


def register(app: typer.Typer) -> None:
    app.command("find")(find_command)
