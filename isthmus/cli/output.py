"""Shared plumbing for commands: the default fabric, consoles, and errors for people.

Invariant: no command lets a stack trace reach the user. ``FabricError`` prints every located
problem; other expected failures (``CliFailure``) print one line; both exit non-zero.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric
from isthmus.fabric.problems import FabricError

__all__ = [
    "CliFailure",
    "console",
    "default_fabric_path",
    "err_console",
    "friendly",
    "load",
    "print_json",
]

P = ParamSpec("P")
R = TypeVar("R")


class CliFailure(Exception):
    """An expected failure with a message for the user (exit code 2)."""


def console() -> Console:
    """A console on the current stdout (created per call, so test runners capture it)."""
    return Console(file=sys.stdout, width=int(os.environ.get("COLUMNS", "120")))


def err_console() -> Console:
    return Console(file=sys.stderr, width=int(os.environ.get("COLUMNS", "120")))


def default_fabric_path() -> Path:
    """``$ISTHMUS_FABRIC``, else the example fabric shipped beside the package."""
    env = os.environ.get("ISTHMUS_FABRIC")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "examples" / "fabric.yaml"


@functools.cache
def _load_cached(path: str, mtime: float) -> Fabric:
    return load_fabric(path)


def load(path: Path | None) -> Fabric:
    target = path or default_fabric_path()
    try:
        mtime = target.stat().st_mtime
    except OSError:
        raise CliFailure(f"cannot read fabric file {target}: no such file") from None
    return _load_cached(str(target), mtime)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def report_problems(exc: FabricError) -> None:
    out = err_console()
    count = len(exc.problems)
    out.print(f"[bold red]{count} problem{'s' if count != 1 else ''} found[/]")
    for problem in exc.problems:
        out.print(f"[red]✗[/] {escape(str(problem))}", highlight=False, soft_wrap=True)


def friendly(func: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into messages and exit codes instead of tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except FabricError as exc:
            report_problems(exc)
            raise typer.Exit(1) from None
        except CliFailure as exc:
            err_console().print(
                f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None

    return wrapper
