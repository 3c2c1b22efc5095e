"""``isthmus sim``: replay a trace through a fabric in virtual time with the live router.

    isthmus sim --trace T [--policy P] [--rate-scale X] [--outage SITE@T[+D]] [--cutoff PROV@T]
    isthmus sim compare --trace T [...]         every policy on the same trace

Without ``--demand`` every request comes to ``--gateway`` for ``--model`` with ``--data-class``;
a demand file assigns tenants, metros and gateways (see ``isthmus.sim.demand``).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.cli.fabric_cmds import FabricOption
from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Objective
from isthmus.routing import ROUTERS
from isthmus.sim.replay import Outage, Replay, RequestResult, TraceRequest
from isthmus.sim.report import infinite_cache_bound, summarise
from isthmus.sim.traces import TraceError, load_trace

__all__ = ["sim_app"]

sim_app = typer.Typer(
    help="Simulate a fabric in virtual time on a request trace, with the gateway's router.",
    invoke_without_command=True,
)

TRACE = (
    Path(__file__).resolve().parents[2] / "data" / "traces" / "mooncake_conversation_trace.jsonl"
)
TraceOption = Annotated[
    Path, typer.Option("--trace", "-t", help="Mooncake, Azure or generic trace")
]
RequestsOption = Annotated[int | None, typer.Option("--requests", "-n", help="first N requests")]
ScaleOption = Annotated[float, typer.Option("--rate-scale", help="2.0 = twice the trace's rate")]
OutageOption = Annotated[
    list[str] | None, typer.Option("--outage", help="SITE@SECONDS[+DURATION] (repeatable)")
]
CutoffOption = Annotated[
    list[str] | None, typer.Option("--cutoff", help="PROVIDER@SECONDS[+DURATION] (repeatable)")
]
GatewayOption = Annotated[
    str | None, typer.Option("--gateway", help="gateway site (no demand file)")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", "-m", help="model or alias (no demand file)")
]
ClassOption = Annotated[str, typer.Option("--data-class", "-c", help="data class (no demand file)")]
DemandOption = Annotated[Path | None, typer.Option("--demand", help="demand map YAML")]
MaxOutOption = Annotated[int | None, typer.Option("--max-output-tokens", help="cap output lengths")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
PlotsOption = Annotated[Path | None, typer.Option("--plots", help="write PNG plots to this folder")]


def _seconds(text: str, option: str, spec: str, what: str, zero_ok: bool) -> float:
    """``text`` as a finite number of seconds, at least 0 (``zero_ok``) or above 0."""
    try:
        value = float(text)
    except ValueError:
        raise CliFailure(f"{option} {spec!r}: expected NAME@SECONDS[+DURATION]") from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        bound = "at least 0" if zero_ok else "above 0"
        raise CliFailure(f"{option} {spec!r}: the {what} must be a finite number {bound}")
    return value


def _faults(outages: list[str] | None, cutoffs: list[str] | None, fabric: Fabric) -> list[Outage]:
    """The outages of ``--outage SITE@S[+D]`` and ``--cutoff PROVIDER@S[+D]``: from S seconds
    (finite, >= 0) for D seconds (finite, > 0), or to the end without ``+D``."""
    out = []
    for spec, kind in [(o, "site") for o in outages or ()] + [
        (c, "provider") for c in cutoffs or ()
    ]:
        option = "--outage" if kind == "site" else "--cutoff"
        target, _, when = spec.partition("@")
        start, plus, duration = when.partition("+")
        start_s = _seconds(start, option, spec, "start", zero_ok=True)
        duration_s = (
            _seconds(duration, option, spec, "duration", zero_ok=False) if plus else float("inf")
        )
        if kind == "site" and target not in fabric.sites:
            raise CliFailure(f"--outage: unknown site {target!r}")
        if kind == "provider" and target not in {s.provider for s in fabric.spec.sites}:
            raise CliFailure(f"--cutoff: unknown provider {target!r}")
        out.append(
            Outage(
                start_s,
                site=target if kind == "site" else None,
                provider=target if kind == "provider" else None,
                duration_s=duration_s,
            )
        )
    return out


def _requests(
    fabric: Fabric,
    trace: Path,
    limit: int | None,
    rate_scale: float,
    demand: Path | None,
    gateway: str | None,
    model: str | None,
    data_class: str,
) -> list[TraceRequest]:
    if not math.isfinite(rate_scale) or rate_scale <= 0:
        raise CliFailure(f"--rate-scale must be a finite number above 0, not {rate_scale}")
    if limit is not None and limit < 1:
        raise CliFailure(f"--requests must be at least 1, not {limit}")
    try:
        requests = load_trace(trace, limit, rate_scale)
    except TraceError as exc:
        raise CliFailure(str(exc)) from None
    if not requests:
        raise CliFailure(f"{trace}: no requests")
    if demand is not None:
        from isthmus.sim.demand import apply_demand, load_demand

        return apply_demand(requests, load_demand(demand, fabric), fabric)
    if gateway is None or gateway not in fabric.sites:
        raise CliFailure(
            "give --gateway SITE (a site of the fabric) and --model, or a --demand file"
        )
    if model is None or not fabric.alias_targets(model):
        raise CliFailure(f"--model: unknown model or alias {model!r}")
    if data_class not in fabric.data_classes:
        raise CliFailure(f"--data-class: unknown data class {data_class!r}")
    return requests


def _check_max_out(max_out: int | None) -> None:
    if max_out is not None and max_out < 1:
        raise CliFailure(f"--max-output-tokens must be at least 1, not {max_out}")


def _plots_dir(plots: Path | None) -> None:
    """Create the ``--plots`` folder before simulating, so a bad one costs no simulation."""
    if plots is None:
        return
    try:
        plots.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliFailure(f"--plots {plots}: {exc.strerror or exc}") from None
    if not os.access(plots, os.W_OK | os.X_OK):
        raise CliFailure(f"--plots {plots}: not writable")


def _run(
    fabric: Fabric,
    requests: list[TraceRequest],
    policy: str,
    faults: list[Outage],
    naive: bool,
    gateway: str | None,
    model: str | None,
    data_class: str,
    max_out: int | None,
) -> tuple[dict[str, Any], list[RequestResult]]:
    replay = Replay(
        fabric,
        policy=policy,
        gateway_site=gateway or "",
        model=model or "",
        data_class=data_class,
        objective=Objective(kind="fastest"),
        respect_sovereignty=not naive,
        outages=faults,
        max_output_tokens=max_out,
    )
    started = time.perf_counter()
    results = replay.run(requests)
    wall = time.perf_counter() - started
    summary = summarise(policy, results, replay, infinite_cache_bound(requests))
    summary["wall_s"] = round(wall, 3)
    summary["simulated_requests_per_wall_s"] = round(len(requests) / wall, 1) if wall > 0 else None
    return summary, results


def _table(summaries: list[dict[str, Any]], title: str) -> Table:
    bound = summaries[0]["infinite_cache_bound"] if summaries else None
    if bound is not None:  # the same trace for every policy
        title += f" · infinite-cache hit bound {bound:.1%}"
    table = Table(title=title, show_edge=False)
    for column in (
        "policy",
        "success",
        "TTFT p50",
        "p95",
        "p99",
        "TPOT p50",
        "SLO",
        "hit (of bound)",
        "cost $",
        "violations",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")

    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:,.0f}"

    for s in summaries:
        bound = s["hit_rate_of_bound"]
        table.add_row(
            s["policy"] + ("" if s["respects_sovereignty"] else " (naive)"),
            f"{s['success_rate']:.1%}",
            ms(s["ttft_ms"]["p50"]),
            ms(s["ttft_ms"]["p95"]),
            ms(s["ttft_ms"]["p99"]),
            "—" if s["tpot_ms"]["p50"] is None else f"{s['tpot_ms']['p50']:.1f}",
            f"{s['slo_attainment']:.0%}",
            f"{s['hit_rate']:.1%} ({bound:.0%})" if bound is not None else f"{s['hit_rate']:.1%}",
            f"{s['cost_usd']:.2f}",
            f"[red]{s['sovereignty_violations']}[/]" if s["sovereignty_violations"] else "0",
        )
    return table


@sim_app.callback()
@friendly
def sim(
    ctx: typer.Context,
    fabric_path: FabricOption = None,
    trace: TraceOption = TRACE,
    policy: Annotated[str, typer.Option("--policy", "-p", help=", ".join(ROUTERS))] = "isthmus",
    requests: RequestsOption = 2000,
    rate_scale: ScaleOption = 1.0,
    outage: OutageOption = None,
    cutoff: CutoffOption = None,
    demand: DemandOption = None,
    gateway: GatewayOption = None,
    model: ModelOption = None,
    data_class: ClassOption = "public",
    naive: Annotated[
        bool, typer.Option(help="route blind to sovereignty (and count violations)")
    ] = False,
    max_output_tokens: MaxOutOption = None,
    as_json: JsonOption = False,
    plots: PlotsOption = None,
) -> None:
    """Simulate one routing policy (see `isthmus sim compare` for all of them)."""
    ctx.obj = dict(
        fabric_path=fabric_path,
        trace=trace,
        requests=requests,
        rate_scale=rate_scale,
        outage=outage,
        cutoff=cutoff,
        demand=demand,
        gateway=gateway,
        model=model,
        data_class=data_class,
        max_output_tokens=max_output_tokens,
        as_json=as_json,
        plots=plots,
    )
    if ctx.invoked_subcommand is not None:
        return
    if policy not in ROUTERS:
        raise CliFailure(f"unknown policy {policy!r}; known: {', '.join(ROUTERS)}")
    _check_max_out(max_output_tokens)
    fabric = load(fabric_path)
    reqs = _requests(fabric, trace, requests, rate_scale, demand, gateway, model, data_class)
    faults = _faults(outage, cutoff, fabric)
    _plots_dir(plots)
    summary, results = _run(
        fabric, reqs, policy, faults, naive, gateway, model, data_class, max_output_tokens
    )
    if plots is not None:
        from isthmus.sim.plots import plot_load, plot_ttft_cdf

        plot_ttft_cdf({policy: results}, plots / f"ttft_cdf_{policy}.png", f"TTFT, {policy}")
        plot_load(results, plots / f"load_{policy}.png", f"requests by site, {policy}")
    if as_json:
        print_json(summary)
        return
    out = console()
    out.print(_table([summary], f"{len(reqs):,} requests from {escape(trace.name)}"))
    out.print(
        f"simulated {summary['simulated_s']:.0f} s in {summary['wall_s']:.1f} s wall "
        f"({summary['simulated_requests_per_wall_s']:,.0f} requests/s); "
        f"tokens by jurisdiction: {json.dumps(summary['tokens_by_jurisdiction'])}",
        highlight=False,
    )


@sim_app.command("compare")
@friendly
def compare(
    ctx: typer.Context,
    compliant_baselines: Annotated[
        bool, typer.Option(help="also make the baselines respect sovereignty")
    ] = False,
) -> None:
    """Run every policy on the same trace: Isthmus respects sovereignty; the baselines route
    blind to it unless --compliant-baselines, and their violations are counted."""
    o = ctx.obj
    _check_max_out(o["max_output_tokens"])
    fabric = load(o["fabric_path"])
    reqs = _requests(
        fabric,
        o["trace"],
        o["requests"],
        o["rate_scale"],
        o["demand"],
        o["gateway"],
        o["model"],
        o["data_class"],
    )
    faults = _faults(o["outage"], o["cutoff"], fabric)
    _plots_dir(o["plots"])
    summaries = []
    runs: dict[str, list[RequestResult]] = {}
    for policy in ("round_robin", "least_loaded", "weighted_scorer", "cache_aware", "isthmus"):
        naive = policy != "isthmus" and not compliant_baselines
        summary, results = _run(
            fabric,
            reqs,
            policy,
            faults,
            naive,
            o["gateway"],
            o["model"],
            o["data_class"],
            o["max_output_tokens"],
        )
        summaries.append(summary)
        runs[policy] = results
    if o["plots"] is not None:
        from isthmus.sim.plots import plot_load, plot_ttft_cdf

        plot_ttft_cdf(runs, o["plots"] / "ttft_cdf.png", f"TTFT by policy, {len(reqs):,} requests")
        plot_load(runs["isthmus"], o["plots"] / "load_isthmus.png", "requests by site, isthmus")
    if o["as_json"]:
        print_json(summaries)
        return
    console().print(_table(summaries, f"{len(reqs):,} requests from {escape(o['trace'].name)}"))
