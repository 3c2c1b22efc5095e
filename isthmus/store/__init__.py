"""The catalog store: named catalogs and their revisions, kept in SQLite or PostgreSQL.

A fabric imported into the store becomes an immutable revision of a named catalog; any revision
can be loaded back as a ``Fabric`` (validated exactly like a file) or exported as one
self-contained YAML document that loads back to an equal spec. The schema is created and
upgraded by Alembic migrations that ``open_store`` runs itself.

Modules: ``urls`` (which database), ``engine`` (connecting, failures for people), ``tables``
(the schema), ``migrate`` (Alembic from code), ``codec`` (spec <-> rows, content digest),
``export`` (YAML writer), ``store`` (the API).
"""

from __future__ import annotations

from isthmus.store.codec import content_sha256
from isthmus.store.errors import StoreError
from isthmus.store.export import fabric_to_yaml
from isthmus.store.migrate import current_revision, downgrade, head_revision, upgrade
from isthmus.store.store import CatalogInfo, ImportResult, Store, open_store
from isthmus.store.urls import default_url, parse_url

__all__ = [
    "CatalogInfo",
    "ImportResult",
    "Store",
    "StoreError",
    "content_sha256",
    "current_revision",
    "default_url",
    "downgrade",
    "fabric_to_yaml",
    "head_revision",
    "open_store",
    "parse_url",
    "upgrade",
]
