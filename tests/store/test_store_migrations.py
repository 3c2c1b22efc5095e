"""Alembic migrations, run from code, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from isthmus.fabric.catalog import Fabric
from isthmus.store import (
    StoreError,
    current_revision,
    downgrade,
    head_revision,
    open_store,
    parse_url,
    upgrade,
)
from isthmus.store.migrate import MIGRATIONS_DIR
from isthmus.store.tables import Base

STORE_TABLES = set(Base.metadata.tables)


def _tables(url: str) -> set[str]:
    engine = create_engine(parse_url(url))
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_open_store_brings_an_empty_database_to_head(store_url: str) -> None:
    assert current_revision(store_url) is None
    open_store(store_url).close()
    assert current_revision(store_url) == head_revision()
    assert _tables(store_url) == STORE_TABLES


def test_downgrade_to_base_then_upgrade_to_head(store_url: str, small_fabric: Fabric) -> None:
    with open_store(store_url) as store:
        store.import_fabric(small_fabric)
    downgrade(store_url, "base")
    assert current_revision(store_url) is None
    assert _tables(store_url) == set()
    upgrade(store_url)
    upgrade(store_url)  # already at head: nothing to do
    assert current_revision(store_url) == head_revision()
    with open_store(store_url) as store:
        assert store.catalogs() == []
        assert store.import_fabric(small_fabric).revision == 1
        assert store.load_fabric().spec == small_fabric.spec


def test_migrations_create_exactly_the_tables_of_the_models(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(parse_url(store_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_a_schema_from_the_future_is_refused(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(parse_url(store_url))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    try:
        open_store(store_url)
    except StoreError as exc:
        assert "schema revision '9999'" in str(exc)
        assert "upgrade Isthmus" in str(exc)
    else:
        raise AssertionError("a database at an unknown revision was opened")


def test_without_migrations_an_old_schema_is_refused(sqlite_url: str) -> None:
    try:
        open_store(sqlite_url, migrate=False)
    except StoreError as exc:
        assert "schema revision none, not" in str(exc)
    else:
        raise AssertionError("an unmigrated database was opened")
    open_store(sqlite_url).close()
    open_store(sqlite_url, migrate=False).close()


def test_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS_DIR.is_dir()
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert not (MIGRATIONS_DIR.parent / "alembic.ini").exists()  # configuration is built in code
