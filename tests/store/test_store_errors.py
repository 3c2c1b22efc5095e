"""Every store failure a person can cause is a one-line ``StoreError`` saying what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.store import StoreError, default_url, open_store, parse_url
from isthmus.store.urls import default_db_path


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("postgresql://app@db.internal:5432/hub", "postgresql+psycopg://app@db.internal:5432/hub"),
        ("postgres://app@db.internal/hub", "postgresql+psycopg://app@db.internal/hub"),
        ("postgresql+psycopg://app@db/hub", "postgresql+psycopg://app@db/hub"),
        ("sqlite:///relative/isthmus.db", "sqlite:///relative/isthmus.db"),
        ("sqlite+pysqlite:////abs/isthmus.db", "sqlite:////abs/isthmus.db"),
        ("  sqlite://  ", "sqlite://"),
    ],
)
def test_urls_are_normalised(typed: str, normalised: str) -> None:
    assert parse_url(typed).render_as_string(hide_password=False) == normalised


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("nonsense", r"'nonsense' is not a database URL; use sqlite:///"),
        ("catalog.db", r"for a file, write sqlite:///catalog.db"),
        ("mysql://h/db", r"database 'mysql' is not supported; use sqlite:///"),
        ("postgresql+psycopg2://h/db", r"driver 'psycopg2' is not supported; write postgresql://"),
        ("postgresql://h", r"names no database; add one"),
        ("postgresql://host:port/db", r"'postgresql://host:port/db' is not a database URL"),
    ],
)
def test_bad_urls_are_explained(typed: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_store(typed)


def test_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        open_store("postgresql://app:s3cret@127.0.0.1:1/hub")
    message = str(caught.value)
    assert message.startswith("cannot connect to postgresql+psycopg://app:***@127.0.0.1:1/hub: ")
    assert "refused" in message
    assert "check that the server is running" in message
    assert "s3cret" not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_sqlite_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"directory .*missing does not exist; create it"):
        open_store(f"sqlite:///{tmp_path / 'missing' / 'isthmus.db'}")


def test_default_database_lives_under_isthmus_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_fabric: Fabric
) -> None:
    assert default_db_path({"ISTHMUS_HOME": "/srv/isthmus"}) == Path("/srv/isthmus/isthmus.db")
    assert default_url({"HOME": "/home/ana"}).endswith("/.isthmus/isthmus.db")
    monkeypatch.setenv("ISTHMUS_HOME", str(tmp_path / "home"))
    with open_store() as store:
        store.import_fabric(small_fabric)
    assert (tmp_path / "home" / "isthmus.db").is_file()


def test_empty_store_says_how_to_fill_it(sqlite_url: str) -> None:
    with (
        open_store(sqlite_url) as store,
        pytest.raises(StoreError, match=r"holds no catalog yet; import one first"),
    ):
        store.export_yaml()


def test_missing_catalog_and_revision(sqlite_url: str, small_fabric: Fabric) -> None:
    with open_store(sqlite_url) as store:
        store.import_fabric(small_fabric)
        with pytest.raises(StoreError, match=r"no catalog named 'prod'.*catalogs are store-test"):
            store.load_fabric("prod")
        with pytest.raises(StoreError, match=r"has no revision 4; its revisions are 1 to 1"):
            store.load_fabric("store-test", 4)


@pytest.mark.parametrize("name", ["", " padded", "two\nlines", "x" * 129])
def test_catalog_names_are_checked(sqlite_url: str, small_fabric: Fabric, name: str) -> None:
    with open_store(sqlite_url) as store, pytest.raises(StoreError, match="cannot name a catalog"):
        store.import_fabric(small_fabric, name=name)


@pytest.mark.postgres
@pytest.mark.slow
def test_missing_postgres_database_says_how_to_create_it(postgres_database: str) -> None:
    missing = postgres_database.rsplit("/", 1)[0] + "/isthmus_no_such_database"
    with pytest.raises(StoreError, match=r"create it first \(createdb isthmus_no_such_database\)"):
        open_store(missing)
