"""Open a database for the store and turn database failures into messages for people.

Invariants:

- ``connect`` either returns an ``Engine`` it has already connected through once, or raises
  ``StoreError``; a bad URL, an unreachable server or a missing directory is reported in one
  line naming the URL (without its password) and what to check.
- SQLite connections enforce foreign keys and run real transactions: ``BEGIN`` is emitted by
  SQLAlchemy rather than implied by pysqlite, so DDL in a migration rolls back with the rest
  and ``ON DELETE CASCADE`` holds as it does on PostgreSQL. Transactions marked with
  ``WRITE_OPTION`` begin ``IMMEDIATE``; others wait up to pysqlite's 5 s for a writer.
- Only the default database's directory is created; a directory named in a user's URL must
  exist, so a typo does not silently create a new, empty store.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from isthmus.store.errors import StoreError
from isthmus.store.urls import default_url, display_url, parse_url

__all__ = ["WRITE_OPTION", "connect", "describe_failure"]

CONNECT_TIMEOUT_S = 5
"""How long to wait for a PostgreSQL server before reporting it unreachable."""

WRITE_OPTION = "isthmus_writes"
"""Execution option marking a transaction that will write: on SQLite it takes the write lock
at ``BEGIN IMMEDIATE``, so two writers queue instead of deadlocking after both have read."""


def describe_failure(exc: BaseException) -> str:
    """The driver's own reason for a failure, on one line (no SQL, no traceback)."""
    reason: object = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        reason = exc.orig
    text = re.sub(r"\s+", " ", str(reason)).strip()
    text = text.split(" [SQL: ")[0].split(" (Background on this error")[0]
    text = text.removeprefix("connection failed: ")
    text = text.split(" Is the server running")[0]  # psycopg's hint; the caller gives its own
    return text[:300] or type(exc).__name__


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def connect(url: str | None = None) -> Engine:
    """An engine for ``url`` (default: the SQLite file from ``default_url``), checked to work."""
    is_default = url is None
    parsed = parse_url(default_url() if url is None else url)
    shown = display_url(parsed)
    if parsed.drivername == "sqlite":
        path = _sqlite_file(parsed)
        if path is not None:
            if is_default:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.parent.is_dir():
                raise StoreError(
                    f"cannot open {shown}: directory {path.parent} does not exist; "
                    "create it or choose another path"
                )
        engine = create_engine(parsed)
        _sqlite_setup(engine)
    else:
        engine = create_engine(
            parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S}
        )
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = describe_failure(exc)
        if parsed.drivername == "sqlite":
            check = "check that the file can be created and written"
        elif "does not exist" in reason and f'"{parsed.database}"' in reason:
            check = f"create it first (createdb {parsed.database}) or fix the URL (--db)"
        else:
            check = "check that the server is running and that the URL (--db) is right"
        raise StoreError(f"cannot connect to {shown}: {reason}; {check}") from None
    return engine
