"""``isthmus tour``: the main job on the embedded defaults — a guided look at the example fabric.

It validates the example fabric, summarises it, finds capacity under sovereignty constraints
and explains a refusal: the same commands a newcomer would type, in order, with their output.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.rule import Rule

from isthmus.cli import fabric_cmds, find_cmd, policy_cmd
from isthmus.cli.output import console, default_fabric_path

__all__ = ["register"]


def tour() -> None:
    """Validate, summarise and query the example fabric (the README's main command)."""
    path = default_fabric_path()
    out = console()
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"isthmus validate {path.name}", lambda: fabric_cmds.validate([path])),
        ("isthmus fabric", lambda: fabric_cmds.fabric(path)),
        (
            "isthmus find -a H100 -n 8 -j EU --near onprem-rheinbank-frankfurt --within-ms 15 "
            "--private -c pii",
            lambda: find_cmd.find_command(
                accelerator="H100",
                count=8,
                jurisdiction=["EU"],
                near="onprem-rheinbank-frankfurt",
                within_ms=15,
                private=True,
                data_class="pii",
                fabric_path=path,
            ),
        ),
        (
            "isthmus policy check phi --site aws-eu-central-1 --from FRA",
            lambda: policy_cmd.check(
                "phi", site="aws-eu-central-1", source="FRA", fabric_path=path
            ),
        ),
    ]
    for title, step in steps:
        out.print(Rule(f"[bold]$ {title}[/]", align="left"))
        try:
            step()
        except typer.Exit as done:
            if done.exit_code not in (0, 3):  # 3: the policy check answered "refused"
                raise
    out.print(Rule())
    out.print(
        f"Next: [bold]isthmus --help[/], and the README's tour. Fabric files: {Path(path).parent}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(tour)
