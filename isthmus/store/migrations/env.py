"""Alembic's entry point for the store's migrations.

Normally run through ``isthmus.store.migrate``, which passes an open connection in
``config.attributes["connection"]`` (inside the caller's transaction). For developers, the
``alembic`` command also works with ``-x url=…`` or ``sqlalchemy.url`` set, e.g. to write a
new revision: ``alembic -c <ini with script_location=isthmus/store/migrations> revision
--autogenerate -m "…"``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from isthmus.store.tables import Base
from isthmus.store.urls import parse_url

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database with -x url=… (or sqlalchemy.url in the ini file)")
    return url


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    shared: Connection | None = config.attributes.get("connection")
    if shared is not None:
        _configure(shared)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(parse_url(_url()))
    try:
        with engine.begin() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run()
