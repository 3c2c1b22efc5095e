"""Audit records and usage gathered from the gateways: batched, idempotent writes; filtered reads.

Invariants:

- ``insert_audit``/``insert_usage`` write a whole batch in one statement per thousand rows and
  one transaction, skipping rows whose key — (gateway, seq), (gateway, n, tenant) — is
  already stored (``ON CONFLICT DO NOTHING``); they return how many rows were new. Writing the
  same batch twice stores it once.
- Reads filter in the database: the tenant is a ``WHERE`` clause, never a filter applied
  after reading. Audit pages are ordered by arrival (``id``) and continue after a cursor, so a
  page boundary never skips or repeats a record while new ones arrive (on PostgreSQL, inserts
  from several control-plane replicas take one advisory lock, so ids commit in order).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, DateTime, Float, Integer, Select, Table, func, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from isthmus.control import tables as t
from isthmus.control.timeutil import as_utc
from isthmus.store.engine import WRITE_OPTION, describe_failure
from isthmus.store.errors import StoreError
from isthmus.store.urls import display_url

_INGEST_LOCK = 0x69737468_617564  # advisory lock that serialises audit and usage inserts

__all__ = ["AuditFilter", "GatewayUsage", "RecordStore"]


@dataclass(frozen=True, slots=True)
class AuditFilter:
    tenant: str | None = None
    gateway: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayUsage:
    """A tenant's latest usage snapshot from one gateway."""

    gateway: str
    n: int
    at: datetime
    tokens: int
    usd: float


def _pg_type(column: Column[Any]) -> str:
    kind = column.type
    if isinstance(kind, BigInteger | Integer):
        return "bigint"
    if isinstance(kind, Float):
        return "float8"
    if isinstance(kind, DateTime):
        return "timestamptz"
    return "text"


@functools.cache
def _unnest_insert(table: Table, keys: tuple[str, ...]) -> str:
    """One INSERT of whole columns as arrays: PostgreSQL parses one statement per batch, which
    is several times faster than a multi-row VALUES list for batches of thousands of rows."""
    columns = [col for col in table.columns if col.name != "id"]
    names = ", ".join(col.name for col in columns)
    arrays = ", ".join(f"%s::{_pg_type(col)}[]" for col in columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(keys)}) DO NOTHING"
    )


class RecordStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})

    @contextmanager
    def _begin(self, action: str, *, write: bool = False) -> Iterator[Connection]:
        try:
            with (self._writer if write else self.engine).begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            where = display_url(self.engine.url)
            raise StoreError(f"{action} in {where} failed: {describe_failure(exc)}") from None

    def _insert_new(
        self, table: Table, keys: tuple[str, ...], rows: Sequence[dict[str, Any]]
    ) -> int:
        if not rows:
            return 0
        with self._begin(f"storing {table.name} rows", write=True) as c:
            if c.dialect.name == "postgresql":
                # one writer at a time across control-plane replicas, so ids become visible in
                # the order they are assigned and a reader paging by id never passes one that
                # another transaction has yet to commit
                c.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (_INGEST_LOCK,))
                columns = [col.name for col in table.columns if col.name != "id"]
                values = tuple([row[name] for row in rows] for name in columns)
                return int(c.exec_driver_sql(_unnest_insert(table, keys), values).rowcount)
            statement = (
                sqlite.insert(table)
                .on_conflict_do_nothing(index_elements=list(keys))
                .returning(table.c.id)
            )
            return len(c.execute(statement, list(rows)).all())

    def insert_audit(self, rows: Sequence[dict[str, Any]]) -> int:
        return self._insert_new(t.audit, ("gateway", "seq"), rows)

    def insert_usage(self, rows: Sequence[dict[str, Any]]) -> int:
        return self._insert_new(t.usage, ("gateway", "n", "tenant"), rows)

    def audit(self, where: AuditFilter, *, after: int = 0, limit: int = 100) -> list[RowMapping]:
        """One page of records matching ``where``, oldest first, with ``id`` above ``after``."""
        a = t.audit
        query: Select[Any] = select(a).where(a.c.id > after).order_by(a.c.id).limit(limit)
        if where.tenant is not None:
            query = query.where(a.c.tenant == where.tenant)
        if where.gateway is not None:
            query = query.where(a.c.gateway == where.gateway)
        if where.since is not None:
            query = query.where(a.c.at >= where.since)
        if where.until is not None:
            query = query.where(a.c.at < where.until)
        if where.action is not None:
            query = query.where(a.c.action == where.action)
        if where.category is not None:
            query = query.where(
                (a.c.category == where.category) | a.c.category.startswith(where.category + ":")
            )
        with self._begin("reading audit records") as c:
            return list(c.execute(query).mappings())

    def count_audit(self, gateway: str | None = None) -> int:
        query = select(func.count()).select_from(t.audit)
        if gateway is not None:
            query = query.where(t.audit.c.gateway == gateway)
        with self._begin("counting audit records") as c:
            return int(c.scalar(query) or 0)

    def usage(
        self, tenant: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[GatewayUsage]:
        """``tenant``'s latest snapshot from each gateway, among those taken in [since, until)."""
        u = t.usage
        window = [u.c.tenant == tenant]
        if since is not None:
            window.append(u.c.at >= since)
        if until is not None:
            window.append(u.c.at < until)
        latest = (
            select(u.c.gateway, func.max(u.c.n).label("n"))
            .where(*window)
            .group_by(u.c.gateway)
            .subquery()
        )
        query = (
            select(u.c.gateway, u.c.n, u.c.at, u.c.tokens, u.c.usd)
            .join(latest, (u.c.gateway == latest.c.gateway) & (u.c.n == latest.c.n))
            .where(u.c.tenant == tenant)
            .order_by(u.c.gateway)
        )
        with self._begin("reading usage") as c:
            return [
                GatewayUsage(
                    gateway=row[0],
                    n=int(row[1]),
                    at=as_utc(row[2]),
                    tokens=int(row[3]),
                    usd=float(row[4]),
                )
                for row in c.execute(query)
            ]
