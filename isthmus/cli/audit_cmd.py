"""``isthmus audit verify`` and ``isthmus audit show --tenant``: the guard's audit log.

The database is the store's (``--db``, default ``$ISTHMUS_HOME/isthmus.db``); the deployment's
audit key comes from ``$ISTHMUS_AUDIT_KEY``. ``verify`` exits 4 when the chain is broken and
names every record at fault.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.audit import KEY_ENV, AuditLog, key_from_env
from isthmus.cli.output import CliFailure, console, friendly, print_json
from isthmus.store.engine import connect
from isthmus.store.errors import StoreError

__all__ = ["audit_app", "register", "show", "verify"]

audit_app = typer.Typer(help="Inspect and verify the guard's audit log.", no_args_is_help=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="database URL (default: the store's SQLite file)")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _open(db: str | None) -> AuditLog:
    try:
        key = key_from_env()
    except (KeyError, ValueError) as exc:
        raise CliFailure(str(exc).strip("'\"")) from None
    try:
        engine = connect(db)
    except StoreError as exc:
        raise CliFailure(str(exc)) from None
    return AuditLog(engine, key)


@audit_app.command("verify")
@friendly
def verify(
    db: DbOption = None,
    head: Annotated[
        str | None,
        typer.Option(
            "--head", help="chain head recorded elsewhere (detects removal of the newest)"
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Walk the hash chain; name every altered, removed or reordered record (exit 4 if any)."""
    report = _open(db).verify(expected_head=head)
    if as_json:
        print_json(
            {
                "ok": report.ok,
                "checked": report.checked,
                "head": report.head,
                "problems": [
                    {"seq": p.seq, "kind": p.kind, "message": p.message} for p in report.problems
                ],
            }
        )
    else:
        out = console()
        for problem in report.problems:
            out.print(f"[red]✗[/] {escape(problem.message)}", highlight=False)
        if report.ok:
            out.print(
                f"[bold green]chain intact[/]: {report.checked} records, head {report.head}",
                highlight=False,
            )
        else:
            out.print(
                f"[bold red]chain broken[/]: {len(report.problems)} problem(s) in "
                f"{report.checked} records",
                highlight=False,
            )
    if not report.ok:
        raise typer.Exit(4)


@audit_app.command("show")
@friendly
def show(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="whose records (required)")],
    db: DbOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    after: Annotated[int, typer.Option("--after", help="only records after this seq")] = 0,
    category: Annotated[
        str | None, typer.Option("--category", "-c", help="a category or family (pii)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """One tenant's verdicts, oldest first (content is shown only as its keyed hash)."""
    records = _open(db).records(tenant, limit=limit, after_seq=after, category=category)
    if as_json:
        print_json([r.as_dict() for r in records])
        return
    table = Table(title=f"audit: {tenant}", show_edge=False)
    for column in ("seq", "at", "direction", "category", "action", "rule", "location", "content"):
        table.add_column(column)
    for r in records:
        table.add_row(
            str(r.seq), r.at[:19], r.direction, escape(r.category), r.action, escape(r.rule),
            escape(r.location), r.content_hash.removeprefix("hmac-sha256:")[:12],
        )  # fmt: skip
    console().print(table)
    console().print(f"{len(records)} record(s); key from ${KEY_ENV}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
