"""Bring a database's schema to the revision this code expects, with Alembic run from code.

Invariants:

- No ``alembic.ini`` is needed: the configuration is built here and points at the
  ``migrations`` directory inside the package, wherever it is installed.
- Each ``upgrade`` or ``downgrade`` runs in one transaction on the caller's connection. On
  PostgreSQL it first takes an advisory lock, so two processes starting at once migrate one
  after the other instead of racing to create the same tables; on SQLite the transaction (DDL
  included, see ``engine``) rolls back as a whole if a step fails.
- A database stamped with a revision this code does not know (written by a newer Isthmus) is
  refused with a ``StoreError`` rather than touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from isthmus.store.engine import connect, describe_failure
from isthmus.store.errors import StoreError
from isthmus.store.urls import display_url

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_LOCK_KEY = 0x69737468_6D7573  # "isthmus": the advisory lock that serialises migrations


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the store's migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the store has at least one migration"
    return head


@contextmanager
def _engine(target: str | Engine | None) -> Iterator[Engine]:
    if isinstance(target, Engine):
        yield target
        return
    engine = connect(target)
    try:
        yield engine
    finally:
        engine.dispose()


def _stamped(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def current_revision(target: str | Engine | None = None) -> str | None:
    """The database's schema revision (``None`` for an empty database)."""
    with _engine(target) as engine:
        try:
            with engine.connect() as connection:
                return _stamped(connection)
        except SQLAlchemyError as exc:
            where = display_url(engine.url)
            raise StoreError(
                f"cannot read the schema revision of {where}: {describe_failure(exc)}"
            ) from None


def _migrate(target: str | Engine | None, revision: str, *, up: bool) -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    with _engine(target) as engine:
        where = display_url(engine.url)
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
                    )
                stamped = _stamped(connection)
                if stamped is not None:
                    try:
                        scripts.get_revision(stamped)
                    except CommandError:
                        raise StoreError(
                            f"{where} has schema revision {stamped!r}, which this version of "
                            "Isthmus does not know (a newer one wrote it); upgrade Isthmus or "
                            "use another database"
                        ) from None
                config = alembic_config(connection)
                if up:
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
        except CommandError as exc:
            raise StoreError(f"cannot migrate {where} to {revision!r}: {exc}") from None
        except SQLAlchemyError as exc:
            raise StoreError(
                f"migrating {where} to {revision!r} failed: {describe_failure(exc)}"
            ) from None


def upgrade(target: str | Engine | None = None, revision: str = "head") -> None:
    """Migrate the database (a URL, an engine, or the default) up to ``revision``."""
    _migrate(target, revision, up=True)


def downgrade(target: str | Engine | None = None, revision: str = "base") -> None:
    """Migrate the database down to ``revision`` (``base`` drops every store table)."""
    _migrate(target, revision, up=False)
