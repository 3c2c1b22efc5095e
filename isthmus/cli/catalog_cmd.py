"""``isthmus catalog``: import fabric files into the store, export revisions, list what is kept.

Invariant: no command lets a stack trace reach the user. A store failure prints its one-line
message in red on stderr and exits with code 2; an invalid fabric prints every located problem
the same way. Exported YAML goes to stdout untouched (no Rich markup), so it can be piped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from isthmus.fabric.loader import load_fabric
from isthmus.fabric.problems import FabricError, Problem
from isthmus.store import StoreError, open_store

__all__ = ["catalog_app"]

catalog_app = typer.Typer(
    help="Keep fabric catalogs in a database (SQLite or PostgreSQL): import, export, list.",
    no_args_is_help=True,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL: sqlite:///path.db or postgresql://user@host/db "
        "(default: $ISTHMUS_HOME/isthmus.db or ~/.isthmus/isthmus.db)",
        envvar="ISTHMUS_DB_URL",
        show_default=False,
    ),
]
_COUNTED = ("sites", "models", "endpoints")
"""Sections whose sizes ``list`` shows."""

NameOption = Annotated[
    str | None,
    typer.Option("--name", "-n", help="catalog name (default: the fabric's name)"),
]


def _fail(message: str, problems: tuple[Problem, ...] = ()) -> NoReturn:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    err.print(f"[red]error: {escape(message)}[/]")
    for problem in problems:
        err.print(f"[red]  ✗ {escape(str(problem))}[/]")
    raise typer.Exit(2)


def _fail_fabric(exc: FabricError) -> NoReturn:
    count = len(exc.problems)
    _fail(f"{count} problem{'s' if count != 1 else ''} found", exc.problems)


@catalog_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="fabric YAML file (its includes are followed)")],
    db: DbOption = None,
    name: NameOption = None,
) -> None:
    """Validate FILE and store it as the next revision of a catalog (unchanged content is kept
    as is)."""
    out = Console(highlight=False, soft_wrap=True)
    try:
        fabric = load_fabric(file)
        with open_store(db) as store:
            result = store.import_fabric(fabric, name)
    except FabricError as exc:
        _fail_fabric(exc)
    except StoreError as exc:
        _fail(str(exc), exc.problems)
    label = f"catalog [bold]{escape(result.name)}[/] revision {result.revision}"
    if result.unchanged:
        out.print(f"{label} unchanged: {escape(str(file))} has the same content")
        return
    spec = fabric.spec
    out.print(
        f"imported {escape(str(file))} as {label}: {len(spec.sites)} sites, "
        f"{len(spec.links)} links, {len(spec.models)} models, {len(spec.endpoints)} endpoints, "
        f"{len(spec.policies)} policies"
    )


@catalog_app.command("export")
def export_command(
    db: DbOption = None,
    name: NameOption = None,
    revision: Annotated[
        int | None,
        typer.Option("--revision", "-r", min=1, help="revision number (default: the latest)"),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="write to this file instead of stdout"),
    ] = None,
) -> None:
    """Write a stored revision as one self-contained YAML fabric file."""
    try:
        with open_store(db) as store:
            text = store.export_yaml(name, revision)
    except StoreError as exc:
        _fail(str(exc), exc.problems)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    Console(highlight=False, soft_wrap=True).print(f"wrote {escape(str(output))}")


@catalog_app.command("list")
def list_command(db: DbOption = None) -> None:
    """Show every stored revision of every catalog."""
    out = Console(highlight=False, soft_wrap=True)
    try:
        with open_store(db) as store:
            infos = store.catalogs()
            where = store.url
    except StoreError as exc:
        _fail(str(exc), exc.problems)
    if not infos:
        out.print(f"no catalogs in {escape(where)}; import one with: isthmus catalog import FILE")
        return
    table = Table(title=f"Catalogs in {escape(where)}", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("rev", justify="right", no_wrap=True)
    table.add_column("imported (UTC)", no_wrap=True)
    for column in _COUNTED:
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("source", no_wrap=True)
    for info in infos:
        table.add_row(
            escape(info.name) + (" [green]*[/]" if info.latest else ""),
            str(info.revision),
            info.imported_at.strftime("%Y-%m-%d %H:%M"),
            *(str(info.counts[c]) for c in _COUNTED),
            info.sha256[:12],
            escape(_sources_label(info.sources)),
        )
    table.caption = "* latest revision"
    Console(highlight=False).print(table)


def _sources_label(sources: tuple[str, ...] | list[str]) -> str:
    """The main file, and how many included files came with it."""
    if not sources:
        return ""
    extra = len(sources) - 1
    return sources[0] + (f" (+{extra} included)" if extra else "")
