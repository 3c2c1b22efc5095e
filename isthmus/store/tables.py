"""The store's tables: a row per catalog revision, and a row per item of each fabric section.

Invariants:

- ``catalogs`` holds one row per revision of a named catalog; ``(name, revision)`` is unique and
  a catalog's revisions count 1, 2, 3, … Revisions are never modified after import.
- Every item row belongs to one revision (``catalog_id``; deleting the revision deletes its
  items) and is keyed by ``position``, its index in its section of the file, so export
  reproduces the file's order. For links, which have no name, ``position`` is the key.
- ``spec`` holds the item exactly as ``model_dump(mode="json")`` wrote it and is the only thing
  read back; the other columns are copies of a few fields, indexed for queries, and names are
  unique within a revision. PostgreSQL's JSONB does not keep the order of keys *inside* an
  item's mappings (``tags``, ``quality``): they come back equal, possibly reordered. The order
  of items, and of ``jurisdiction_groups`` and ``aliases`` (a row per key), is always kept.
- The latest migration under ``migrations/versions`` creates exactly these tables; a test
  compares the two on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.types import TypeEngine

__all__ = [
    "AliasRow",
    "Base",
    "CatalogRow",
    "DataClassRow",
    "DatasetRow",
    "EndpointRow",
    "ItemRow",
    "JurisdictionGroupRow",
    "LinkRow",
    "MetroRow",
    "ModelRow",
    "PolicyRow",
    "SiteRow",
    "TenantRow",
    "json_document",
]

NAME = 128
"""Longest name the fabric schema allows (``Name`` is at most 128 characters)."""


def json_document() -> TypeEngine[Any]:
    """JSON, stored as JSONB on PostgreSQL (indexable, compact) and as text on SQLite."""
    return JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with constraint names that are the same on every backend."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class CatalogRow(Base):
    """One revision of a named catalog."""

    __tablename__ = "catalogs"
    __table_args__ = (UniqueConstraint("name", "revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME))
    revision: Mapped[int] = mapped_column(Integer)
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sha256: Mapped[str] = mapped_column(String(64))
    sources: Mapped[list[str]] = mapped_column(json_document())
    counts: Mapped[dict[str, int]] = mapped_column(json_document())
    format_version: Mapped[int] = mapped_column(Integer)
    fabric_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)


class ItemRow(Base):
    """Columns every item table shares: its revision, its position and its full spec."""

    __abstract__ = True

    @declared_attr
    @classmethod
    def catalog_id(cls) -> Mapped[int]:
        return mapped_column(
            ForeignKey("catalogs.id", ondelete="CASCADE"), primary_key=True, sort_order=-2
        )

    position: Mapped[int] = mapped_column(Integer, primary_key=True, sort_order=-1)
    spec: Mapped[Any] = mapped_column(json_document(), sort_order=1)


def _unique_name(table: str) -> tuple[UniqueConstraint]:
    return (UniqueConstraint("catalog_id", "name", name=f"uq_{table}_catalog_id_name"),)


def _by(table: str, *columns: str) -> Index:
    return Index(f"ix_{table}_{'_'.join(columns)}", "catalog_id", *columns)


class DataClassRow(ItemRow):
    __tablename__ = "data_classes"
    __table_args__ = _unique_name("data_classes")

    name: Mapped[str] = mapped_column(String(NAME))


class JurisdictionGroupRow(ItemRow):
    """``spec`` is the group's member list."""

    __tablename__ = "jurisdiction_groups"
    __table_args__ = _unique_name("jurisdiction_groups")

    name: Mapped[str] = mapped_column(String(64))


class SiteRow(ItemRow):
    __tablename__ = "sites"
    __table_args__ = (
        *_unique_name("sites"),
        _by("sites", "kind"),
        _by("sites", "provider"),
        _by("sites", "country"),
        _by("sites", "jurisdiction"),
    )

    name: Mapped[str] = mapped_column(String(NAME))
    kind: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(NAME))
    country: Mapped[str] = mapped_column(String(2))
    jurisdiction: Mapped[str] = mapped_column(String(8), comment="effective: defaults to country")


class LinkRow(ItemRow):
    __tablename__ = "links"
    __table_args__ = (_by("links", "src"), _by("links", "dst"))

    src: Mapped[str] = mapped_column(String(NAME))
    dst: Mapped[str] = mapped_column(String(NAME))
    private: Mapped[bool] = mapped_column(Boolean)


class MetroRow(ItemRow):
    __tablename__ = "metros"
    __table_args__ = (*_unique_name("metros"), _by("metros", "country"))

    name: Mapped[str] = mapped_column(String(NAME))
    country: Mapped[str] = mapped_column(String(2))
    jurisdiction: Mapped[str] = mapped_column(String(8), comment="effective: defaults to country")


class ModelRow(ItemRow):
    __tablename__ = "models"
    __table_args__ = (*_unique_name("models"), _by("models", "kind"), _by("models", "provider"))

    name: Mapped[str] = mapped_column(String(NAME))
    kind: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(NAME))
    open_weights: Mapped[bool] = mapped_column(Boolean)


class AliasRow(ItemRow):
    """``spec`` is the alias's list of candidate models."""

    __tablename__ = "aliases"
    __table_args__ = _unique_name("aliases")

    name: Mapped[str] = mapped_column(String(NAME))


class EndpointRow(ItemRow):
    __tablename__ = "endpoints"
    __table_args__ = (
        *_unique_name("endpoints"),
        _by("endpoints", "model"),
        _by("endpoints", "site"),
    )

    name: Mapped[str] = mapped_column(String(NAME))
    model: Mapped[str] = mapped_column(String(NAME))
    site: Mapped[str] = mapped_column(String(NAME))
    engine: Mapped[str] = mapped_column(String(32))


class DatasetRow(ItemRow):
    __tablename__ = "datasets"
    __table_args__ = (
        *_unique_name("datasets"),
        _by("datasets", "site"),
        _by("datasets", "data_class"),
    )

    name: Mapped[str] = mapped_column(String(NAME))
    site: Mapped[str] = mapped_column(String(NAME))
    data_class: Mapped[str] = mapped_column(String(NAME))


class TenantRow(ItemRow):
    __tablename__ = "tenants"
    __table_args__ = _unique_name("tenants")

    name: Mapped[str] = mapped_column(String(NAME))
    default_data_class: Mapped[str] = mapped_column(String(NAME))
    home_site: Mapped[str | None] = mapped_column(String(NAME))


class PolicyRow(ItemRow):
    """A sovereignty rule."""

    __tablename__ = "policies"
    __table_args__ = _unique_name("policies")

    name: Mapped[str] = mapped_column(String(NAME))
