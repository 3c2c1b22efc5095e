"""``isthmus policy check``: why is a data class allowed or refused at a site?"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.cli.fabric_cmds import FabricOption, JsonOption
from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.network.paths import NetPath, Network
from isthmus.policy import Action, compile_policy, explain

__all__ = ["policy_app", "register"]

policy_app = typer.Typer(help="Inspect sovereignty policy.", no_args_is_help=True)


@policy_app.command("check")
@friendly
def check(
    data_class: Annotated[str, typer.Argument(help="data class, e.g. pii")],
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="one site (default: all)")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--from", help="site or metro the data comes from (checks the path)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model that would see the data")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="use a private path only")] = False,
    store: Annotated[
        bool, typer.Option("--store", help="check storage instead of processing")
    ] = False,
    fabric_path: FabricOption = None,
    as_json: JsonOption = False,
) -> None:
    """Explain the verdict for DATA_CLASS at one site (every clause), or at every site."""
    fabric = load(fabric_path)
    policy = compile_policy(fabric)
    network = Network(fabric)
    action: Action = "store" if store else "process"
    if source is not None and fabric.place(source) is None:
        raise CliFailure(f"unknown site or metro {source!r} for --from")
    if model is not None and model not in fabric.models:
        raise CliFailure(f"unknown model {model!r}; known: {', '.join(sorted(fabric.models))}")

    def path_to(name: str) -> NetPath | None:
        return network.path(source, name, private_only=private) if source is not None else None

    out = console()
    if site is not None:
        if site not in fabric.sites:
            raise CliFailure(f"unknown site {site!r}")
        path = path_to(site)
        if source is not None and path is None:
            raise CliFailure(f"no private path from {source} to {site}")
        verdict, checks = explain(fabric, data_class, site, path, model, action)
        if as_json:
            print_json(
                {
                    "allowed": verdict.allowed,
                    "rule": verdict.rule,
                    "clause": verdict.clause,
                    "reason": verdict.reason,
                    "checks": [
                        {"rule": c.rule, "clause": c.clause, "passed": c.passed, "detail": c.detail}
                        for c in checks
                    ],
                    "path": None
                    if path is None
                    else {
                        "hops": list(path.hops),
                        "rtt_ms": path.rtt_ms,
                        "transits": sorted(path.transits),
                        "private": path.private,
                    },
                }
            )
            raise typer.Exit(0 if verdict.allowed else 3)
        table = Table(title=f"{data_class} at {site} ({action})", show_edge=False)
        table.add_column("")
        table.add_column("rule")
        table.add_column("clause")
        table.add_column("detail")
        for c in checks:
            mark = "[green]✓[/]" if c.passed else "[red]✗[/]"
            table.add_row(mark, escape(c.rule), escape(c.clause), escape(c.detail))
        out.print(table)
        if path is not None:
            out.print(
                f"path {' → '.join(path.hops)}: {path.rtt_ms:.1f} ms ({path.source}), "
                f"{'private' if path.private else 'public'}, crosses {', '.join(sorted(path.transits))}",
                highlight=False,
            )
        color = "green" if verdict.allowed else "red"
        out.print(f"[bold {color}]{escape(str(verdict))}[/]", highlight=False)
        raise typer.Exit(0 if verdict.allowed else 3)
    rows = []
    for name, spec in fabric.sites.items():
        path = path_to(name)
        if source is not None and path is None:
            rows.append((name, spec.jurisdiction_code, False, f"no private path from {source}"))
            continue
        verdict = policy.evaluate(data_class, name, path, model, action)
        rows.append((name, spec.jurisdiction_code, verdict.allowed, str(verdict)))
    if as_json:
        print_json(
            [{"site": r[0], "jurisdiction": r[1], "allowed": r[2], "verdict": r[3]} for r in rows]
        )
        return
    table = Table(title=f"{data_class} ({action}) by site", show_edge=False)
    table.add_column("site")
    table.add_column("jurisdiction")
    table.add_column("verdict")
    for name, where, allowed, text in rows:
        color = "green" if allowed else "red"
        table.add_row(name, where, f"[{color}]{escape(text)}[/]")
    out.print(table)
    allowed_count = sum(1 for r in rows if r[2])
    out.print(f"{allowed_count} of {len(rows)} sites allowed", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
