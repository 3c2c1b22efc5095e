"""``isthmus validate``, ``isthmus fabric`` and ``isthmus show``: read and inspect a catalog."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.countries import continent_of
from isthmus.fabric.problems import FabricError
from isthmus.policy import compile_policy
from isthmus.policy.lint import lint_fabric

__all__ = ["fabric_summary", "register"]

FabricOption = Annotated[
    Path | None,
    typer.Option("--fabric", "-f", help="fabric YAML (default: $ISTHMUS_FABRIC or the example)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fabric_summary(fabric: Fabric) -> dict[str, Any]:
    spec = fabric.spec
    accelerators: Counter[str] = Counter()
    free: Counter[str] = Counter()
    for site in spec.sites:
        for acc in site.accelerators:
            accelerators[acc.type] += acc.count
            free[acc.type] += acc.free
    return {
        "name": spec.name,
        "sites": len(spec.sites),
        "sites_by_kind": dict(Counter(s.kind for s in spec.sites)),
        "sites_by_continent": dict(Counter(continent_of(s.country) for s in spec.sites)),
        "providers": sorted({s.provider for s in spec.sites}),
        "jurisdictions": sorted({s.jurisdiction_code for s in spec.sites}),
        "links": len(spec.links),
        "private_links": sum(1 for link in spec.links if link.private),
        "metros": len(spec.metros),
        "models": len(spec.models),
        "endpoints": len(spec.endpoints),
        "datasets": len(spec.datasets),
        "tenants": len(spec.tenants),
        "data_classes": [c.name for c in sorted(spec.data_classes, key=lambda c: c.level)],
        "policies": [rule.name for rule in spec.policies],
        "accelerators": {
            k: {"count": accelerators[k], "free": free[k]} for k in sorted(accelerators)
        },
    }


@friendly
def validate(
    files: Annotated[list[Path] | None, typer.Argument(help="fabric files to check")] = None,
    as_json: JsonOption = False,
) -> None:
    """Check fabric files: schema, references and the catalog's own sovereignty.

    Every problem is reported at once with file:line:column and the field."""
    from isthmus.cli.output import default_fabric_path

    targets = files or [default_fabric_path()]
    failed = False
    results: list[dict[str, Any]] = []
    out = console()
    for path in targets:
        try:
            fabric = load(path)
            problems = lint_fabric(fabric, compile_policy(fabric))
            if problems:
                raise FabricError(problems)
        except FabricError as exc:
            failed = True
            results.append(
                {"file": str(path), "valid": False, "problems": [p.as_dict() for p in exc.problems]}
            )
            if not as_json:
                from isthmus.cli.output import report_problems

                report_problems(exc)
            continue
        except CliFailure as exc:
            failed = True
            results.append({"file": str(path), "valid": False, "problems": [{"message": str(exc)}]})
            if not as_json:
                out.print(f"[red]✗[/] {escape(str(exc))}")
            continue
        summary = fabric_summary(fabric)
        results.append({"file": str(path), "valid": True, "summary": summary})
        if not as_json:
            out.print(
                f"[green]✓[/] {escape(str(path))}: valid — {summary['sites']} sites, "
                f"{summary['links']} links, {summary['metros']} metros, {summary['models']} models, "
                f"{summary['endpoints']} endpoints, {summary['datasets']} datasets, "
                f"{summary['tenants']} tenants, {len(summary['policies'])} policies",
                highlight=False,
            )
    if as_json:
        print_json(results)
    if failed:
        raise typer.Exit(1)


@friendly
def fabric(fabric_path: FabricOption = None, as_json: JsonOption = False) -> None:
    """Summarise a fabric: sites by kind and continent, accelerators, models, policies."""
    loaded = load(fabric_path)
    summary = fabric_summary(loaded)
    if as_json:
        print_json(summary)
        return
    out = console()
    out.print(f"[bold]{escape(summary['name'])}[/] — {', '.join(loaded.sources)}", highlight=False)
    table = Table(title="Sites", show_edge=False)
    table.add_column("kind")
    for continent in sorted(summary["sites_by_continent"]):
        table.add_column(continent, justify="right")
    table.add_column("total", justify="right", style="bold")
    continents = sorted(summary["sites_by_continent"])
    for kind in ("cloud_region", "neocloud", "colo", "on_prem", "edge"):
        sites = [s for s in loaded.spec.sites if s.kind == kind]
        if not sites:
            continue
        per = Counter(continent_of(s.country) for s in sites)
        table.add_row(kind, *(str(per.get(c, "")) for c in continents), str(len(sites)))
    out.print(table)
    accel = Table(title="Accelerators", show_edge=False)
    accel.add_column("type")
    accel.add_column("devices", justify="right")
    accel.add_column("free", justify="right")
    accel.add_column("sites", justify="right")
    accel.add_column("cheapest on-demand $/device-h", justify="right")
    for kind, counts in summary["accelerators"].items():
        where = [s for s in loaded.spec.sites for a in s.accelerators if a.type == kind]
        prices = [
            a.on_demand_usd_per_device_hour
            for s in loaded.spec.sites
            for a in s.accelerators
            if a.type == kind and a.on_demand_usd_per_device_hour is not None
        ]
        accel.add_row(
            kind,
            str(counts["count"]),
            str(counts["free"]),
            str(len(where)),
            f"{min(prices):.2f}" if prices else "—",
        )
    out.print(accel)
    out.print(
        f"{summary['links']} links ({summary['private_links']} private) · {summary['metros']} metros · "
        f"{summary['models']} models · {summary['endpoints']} endpoints · {summary['datasets']} datasets · "
        f"{summary['tenants']} tenants",
        highlight=False,
    )
    out.print(
        f"data classes: {', '.join(summary['data_classes'])}\npolicies: {', '.join(summary['policies'])}",
        highlight=False,
    )


ShowKind = Literal["site", "metro", "model", "endpoint", "dataset", "tenant", "policy"]
_SECTIONS: dict[str, str] = {
    "site": "sites",
    "metro": "metros",
    "model": "models",
    "endpoint": "endpoints",
    "dataset": "datasets",
    "tenant": "tenants",
    "policy": "policies",
}


@friendly
def show(
    kind: Annotated[
        str, typer.Argument(help="site, metro, model, endpoint, dataset, tenant or policy")
    ],
    name: Annotated[str, typer.Argument(help="the object's name")],
    fabric_path: FabricOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one object of the catalog, and what refers to it."""
    if kind not in _SECTIONS:
        raise CliFailure(f"unknown kind {kind!r}; expected one of {', '.join(_SECTIONS)}")
    loaded = load(fabric_path)
    index: dict[str, Any] = getattr(loaded, _SECTIONS[kind])
    item = index.get(name)
    if item is None:
        import difflib

        close = difflib.get_close_matches(name, list(index), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise CliFailure(f"no {kind} named {name!r}{hint}")
    data = item.model_dump(mode="json", exclude_defaults=True)
    related = _related(loaded, kind, name)
    if as_json:
        print_json({kind: data, "related": related})
        return
    out = console()
    table = Table(title=f"{kind} {name}", show_header=False, show_edge=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in data.items():
        table.add_row(key, escape(_render(value)))
    for key, value in related.items():
        table.add_row(f"[dim]{key}[/]", escape(_render(value)))
    out.print(table)


def _render(value: Any) -> str:
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return "\n".join(", ".join(f"{k}={v}" for k, v in item.items()) for item in value)
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _related(loaded: Fabric, kind: str, name: str) -> dict[str, Any]:
    spec = loaded.spec
    if kind == "site":
        site = loaded.sites[name]
        return {
            "endpoints": [e.name for e in spec.endpoints if e.site == name],
            "datasets": [d.name for d in spec.datasets if d.site == name],
            "continent": continent_of(site.country),
            "jurisdiction (effective)": site.jurisdiction_code,
        }
    if kind == "model":
        return {
            "endpoints": [f"{e.name}@{e.site}" for e in spec.endpoints if e.model == name],
            "aliases": [a for a, targets in spec.aliases.items() if name in targets],
        }
    if kind == "dataset":
        dataset = loaded.datasets[name]
        policy = compile_policy(loaded)
        verdict = policy.evaluate(dataset.data_class, dataset.site, action="store")
        return {"storage verdict": str(verdict)}
    if kind == "policy":
        return {"covers": list(loaded.policies[name].data_classes)}
    return {}


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command("fabric")(fabric)
    app.command()(show)
