"""A database of named catalogs, each a sequence of immutable revisions of a fabric.

Invariants:

- ``import_fabric`` writes a revision in one transaction: all of it or nothing. Content equal
  to the catalog's latest revision (same ``content_sha256``) writes nothing and reports the
  revision it matches, so re-importing an unchanged file is harmless.
- ``load_fabric`` returns a ``Fabric`` only after the stored data has passed the same schema
  and cross-reference checks as a file (``fabric_from_data``); a revision that no longer passes
  (the schema changed since) is a ``StoreError`` carrying every problem.
- Nothing here prints; every failure is a ``StoreError`` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import fabric_from_data
from isthmus.fabric.problems import FabricError
from isthmus.fabric.yamlsafe import SourceMap
from isthmus.store.codec import SECTIONS, Encoded, encode, fabric_data
from isthmus.store.engine import WRITE_OPTION, connect, describe_failure
from isthmus.store.errors import StoreError
from isthmus.store.export import fabric_to_yaml
from isthmus.store.migrate import current_revision as _schema_revision
from isthmus.store.migrate import head_revision, upgrade
from isthmus.store.tables import NAME, CatalogRow
from isthmus.store.urls import display_url

__all__ = ["CatalogInfo", "ImportResult", "Store", "open_store"]

_CATALOG_NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # printable, one line
_IMPORT_LOCK_SPACE = 0x6973  # first key of the per-catalog advisory locks taken by imports


@dataclass(frozen=True, slots=True)
class CatalogInfo:
    """One stored revision of a catalog, without its content."""

    name: str
    revision: int
    imported_at: datetime
    sha256: str
    sources: tuple[str, ...]
    fabric_name: str
    description: str | None
    counts: Mapping[str, int]
    """Items per section, by the section's field name (``sites``, ``links``, …)."""
    latest: bool


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: the revision now holding the content, and whether it is new."""

    name: str
    revision: int
    sha256: str
    unchanged: bool
    """True when the content equalled the latest revision, so nothing was written."""


def _catalog_name(name: str) -> str:
    if not (0 < len(name) <= NAME and _CATALOG_NAME.fullmatch(name) and name == name.strip()):
        raise StoreError(
            f"{name!r} cannot name a catalog: use 1 to {NAME} printable characters without "
            "leading or trailing spaces (choose one with --name)"
        )
    return name


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes (written in UTC); PostgreSQL returns its session zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Store:
    """Catalogs kept in a database reached through ``engine`` (see ``open_store``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._writer = sessionmaker(
            engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return display_url(self.engine.url)

    def close(self) -> None:
        """Release the store's connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _session(self, action: str) -> Iterator[Session]:
        try:
            with self._sessions() as session, session.begin():
                yield session
        except StoreError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"{action} in {self.url} failed: {describe_failure(exc)}") from None

    def import_fabric(self, fabric: Fabric, name: str | None = None) -> ImportResult:
        """Store ``fabric`` as the next revision of catalog ``name`` (default: the fabric's name).

        Nothing is written when the content equals the catalog's latest revision. Concurrent
        imports into one catalog queue (a per-catalog advisory lock on PostgreSQL, the write
        lock on SQLite), so each gets its own revision number.
        """
        catalog = _catalog_name(fabric.spec.name if name is None else name)
        encoded = encode(fabric.spec)
        try:
            return self._write(catalog, encoded, fabric.sources)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"importing catalog {catalog!r} into {self.url} failed: {describe_failure(exc)}"
            ) from None

    def _write(self, catalog: str, encoded: Encoded, sources: tuple[str, ...]) -> ImportResult:
        with self._writer() as session, session.begin():
            if self.engine.dialect.name == "postgresql":
                session.execute(
                    text("SELECT pg_advisory_xact_lock(:space, hashtext(:name))"),
                    {"space": _IMPORT_LOCK_SPACE, "name": catalog},
                )
            latest = session.scalars(
                select(CatalogRow)
                .where(CatalogRow.name == catalog)
                .order_by(CatalogRow.revision.desc())
                .limit(1)
            ).first()
            if latest is not None and latest.sha256 == encoded.sha256:
                return ImportResult(catalog, latest.revision, encoded.sha256, unchanged=True)
            row = CatalogRow(
                name=catalog,
                revision=1 if latest is None else latest.revision + 1,
                imported_at=datetime.now(UTC),
                sha256=encoded.sha256,
                sources=list(sources),
                counts=encoded.counts,
                format_version=encoded.header["version"],
                fabric_name=encoded.header["name"],
                description=encoded.header["description"],
            )
            session.add(row)
            session.flush()
            for table, rows in encoded.rows.items():
                if rows:
                    session.execute(insert(table), [{**r, "catalog_id": row.id} for r in rows])
            return ImportResult(catalog, row.revision, encoded.sha256, unchanged=False)

    def _resolve(self, session: Session, name: str | None, revision: int | None) -> CatalogRow:
        names = list(session.scalars(select(CatalogRow.name).distinct().order_by(CatalogRow.name)))
        if not names:
            raise StoreError(
                f"{self.url} holds no catalog yet; import one first (isthmus catalog import FILE)"
            )
        if name is None:
            if len(names) > 1:
                raise StoreError(
                    f"{self.url} holds {len(names)} catalogs ({', '.join(names)}); "
                    "choose one by name (--name)"
                )
            name = names[0]
        elif name not in names:
            raise StoreError(
                f"no catalog named {name!r} in {self.url}; its catalogs are {', '.join(names)}"
            )
        query = select(CatalogRow).where(CatalogRow.name == name)
        if revision is None:
            query = query.order_by(CatalogRow.revision.desc()).limit(1)
        else:
            query = query.where(CatalogRow.revision == revision)
        row = session.scalars(query).first()
        if row is None:
            last = session.scalar(
                select(func.max(CatalogRow.revision)).where(CatalogRow.name == name)
            )
            raise StoreError(
                f"catalog {name!r} has no revision {revision}; its revisions are 1 to {last} "
                "(leave out --revision for the latest)"
            )
        return row

    def _read(self, name: str | None, revision: int | None) -> tuple[CatalogRow, Fabric]:
        with self._session("reading a catalog") as session:
            row = self._resolve(session, name, revision)
            items: dict[str, list[Any]] = {}
            for section in SECTIONS:
                table = section.table.__table__
                columns = (table.c.name, table.c.spec) if section.mapping else (table.c.spec,)
                result = session.execute(
                    select(*columns).where(table.c.catalog_id == row.id).order_by(table.c.position)
                )
                items[section.field] = [(r[0], r[1]) if section.mapping else r[0] for r in result]
        label = f"catalog {row.name!r} revision {row.revision}"
        header = {
            "version": row.format_version,
            "name": row.fabric_name,
            "description": row.description,
        }
        try:
            fabric = fabric_from_data(fabric_data(header, items), SourceMap(label))
        except FabricError as exc:
            raise StoreError(
                f"{label} no longer passes validation ({_count(len(exc.problems), 'problem')}; "
                "the schema changed since it was imported); re-import it from its source file",
                exc.problems,
            ) from None
        return row, dataclasses.replace(fabric, sources=tuple(row.sources))

    def load_fabric(self, name: str | None = None, revision: int | None = None) -> Fabric:
        """A stored revision (default: the latest) of catalog ``name``.

        ``name`` may be left out when the store holds a single catalog.
        """
        return self._read(name, revision)[1]

    def export_yaml(self, name: str | None = None, revision: int | None = None) -> str:
        """A stored revision as one self-contained YAML document (see ``fabric_to_yaml``)."""
        row, fabric = self._read(name, revision)
        comment = (
            f"Catalog {row.name!r}, revision {row.revision}, imported "
            f"{_utc(row.imported_at).isoformat(timespec='seconds')}.\n"
            f"sha256 {row.sha256}\n"
            "Exported by isthmus as one self-contained document (no include)."
        )
        return fabric_to_yaml(fabric.spec, comment)

    def catalogs(self, name: str | None = None) -> list[CatalogInfo]:
        """Every stored revision (of catalog ``name``, if given), by name then revision."""
        with self._session("listing catalogs") as session:
            query = select(CatalogRow).order_by(CatalogRow.name, CatalogRow.revision)
            if name is not None:
                query = query.where(CatalogRow.name == name)
            rows = list(session.scalars(query))
        latest = {row.name: row.revision for row in rows}
        return [
            CatalogInfo(
                name=row.name,
                revision=row.revision,
                imported_at=_utc(row.imported_at),
                sha256=row.sha256,
                sources=tuple(row.sources),
                fabric_name=row.fabric_name,
                description=row.description,
                counts={s.field: row.counts.get(s.field, 0) for s in SECTIONS},
                latest=latest[row.name] == row.revision,
            )
            for row in rows
        ]


def open_store(url: str | None = None, *, migrate: bool = True) -> Store:
    """Open (and by default migrate to the current schema) the store at ``url``.

    ``url`` is ``sqlite:///path`` or ``postgresql://user@host/db`` (the default is the SQLite
    file under ``$ISTHMUS_HOME`` or ``~/.isthmus``). With ``migrate=False`` the schema must
    already be current.
    """
    engine = connect(url)
    try:
        if migrate:
            upgrade(engine)
        else:
            stamped = _schema_revision(engine)
            if stamped != head_revision():
                raise StoreError(
                    f"{display_url(engine.url)} has schema revision {stamped or 'none'}, not "
                    f"{head_revision()}; open it with migrations enabled to upgrade it"
                )
    except BaseException:
        engine.dispose()
        raise
    return Store(engine)
