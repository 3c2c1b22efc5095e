"""The ``isthmus`` command: one Typer app, with subcommands registered from their modules."""

from __future__ import annotations

import typer

from isthmus.cli import (
    audit_cmd,
    bundle_cmd,
    control_cmd,
    fabric_cmds,
    find_cmd,
    plan_cmd,
    policy_cmd,
    tour,
    up_cmd,
)
from isthmus.cli.catalog_cmd import catalog_app
from isthmus.cli.demo_cmd import demo_app
from isthmus.cli.sim_cmd import sim_app

__all__ = ["app"]

app = typer.Typer(
    name="isthmus",
    help="Isthmus: a distributed AI hub — catalog, sovereignty policy, placement and routing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
fabric_cmds.register(app)
find_cmd.register(app)
plan_cmd.register(app)
policy_cmd.register(app)
bundle_cmd.register(policy_cmd.policy_app)
audit_cmd.register(app)
tour.register(app)
up_cmd.register(app)
control_cmd.register(app)
app.add_typer(demo_app, name="demo")
app.add_typer(sim_app, name="sim")

app.add_typer(catalog_app, name="catalog")


if __name__ == "__main__":  # pragma: no cover
    app()
