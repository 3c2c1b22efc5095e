"""Which database a store opens: the default location and the URLs people may type.

Invariants: only SQLite and PostgreSQL are accepted (the schema and its migrations are tested
on exactly these two); every PostgreSQL URL is rewritten to the psycopg 3 driver
(``postgresql+psycopg://``), whatever spelling was typed (``postgres://``, ``postgresql://``);
``display_url`` never shows a password. Nothing here touches the file system or the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from isthmus.store.errors import StoreError

__all__ = ["DEFAULT_DB_FILE", "default_db_path", "default_url", "display_url", "parse_url"]

DEFAULT_DB_FILE = "isthmus.db"
_EXAMPLES = "sqlite:///path/to/isthmus.db or postgresql://user@host:5432/dbname"
_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_NAMES = {"postgres", "postgresql", "postgresql+psycopg"}


def default_db_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$ISTHMUS_HOME/isthmus.db``, else ``~/.isthmus/isthmus.db``."""
    env = os.environ if environ is None else environ
    home = env.get("ISTHMUS_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".isthmus"
    return base / DEFAULT_DB_FILE


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """The SQLite URL of the default database file (see ``default_db_path``)."""
    return f"sqlite:///{default_db_path(environ)}"


def parse_url(url: str) -> URL:
    """Parse and normalise a database URL, or explain what a valid one looks like."""
    text = url.strip()
    if "://" not in text:
        hint = (
            f" (for a file, write sqlite:///{text})"
            if text.endswith((".db", ".sqlite", ".sqlite3"))
            else ""
        )
        raise StoreError(f"{url!r} is not a database URL{hint}; use {_EXAMPLES}")
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"{url!r} is not a database URL; use {_EXAMPLES}") from None
    driver = parsed.drivername
    if driver in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite")
    if driver in _POSTGRES_NAMES:
        if not parsed.database:
            raise StoreError(
                f"{display_url(parsed)} names no database; add one, as in "
                "postgresql://user@host:5432/dbname"
            )
        return parsed.set(drivername="postgresql+psycopg")
    backend, _, dbapi = driver.partition("+")
    if backend in {"postgres", "postgresql"}:
        raise StoreError(
            f"PostgreSQL driver {dbapi!r} is not supported; write postgresql://… "
            "(Isthmus uses psycopg 3)"
        )
    raise StoreError(f"database {backend!r} is not supported; use {_EXAMPLES}")


def display_url(url: URL) -> str:
    """The URL as text for messages, with any password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def redact_url(url: str) -> str:
    """Any URL (nats://, redis://, https://, ...) as text for logs, its password as ``***``."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparsable URL>"
    if not password:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
