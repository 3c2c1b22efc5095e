"""Create the store: the catalogs table and one table per fabric section.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

Frozen: this revision spells out its tables instead of importing ``isthmus.store.tables``, so
that later changes to the models never rewrite history. Constraint names follow the naming
convention of ``tables.Base`` so that later revisions can refer to them on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 128


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(JSONB(), "postgresql")


def _name(length: int = NAME) -> sa.Column[str]:
    return sa.Column("name", sa.String(length), nullable=False)


def _item_table(table: str, *columns: sa.Column[Any], named: bool = True) -> None:
    """An item table: (catalog_id, position) key, the given columns, then the JSON spec."""
    constraints: list[sa.Constraint] = [
        sa.PrimaryKeyConstraint("catalog_id", "position", name=f"pk_{table}"),
        sa.ForeignKeyConstraint(
            ["catalog_id"],
            ["catalogs.id"],
            name=f"fk_{table}_catalog_id_catalogs",
            ondelete="CASCADE",
        ),
    ]
    if named:
        constraints.append(
            sa.UniqueConstraint("catalog_id", "name", name=f"uq_{table}_catalog_id_name")
        )
    op.create_table(
        table,
        sa.Column("catalog_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        *columns,
        sa.Column("spec", _json(), nullable=False),
        *constraints,
    )


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(f"ix_{table}_{column}", table, ["catalog_id", column])


def upgrade() -> None:
    op.create_table(
        "catalogs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("sources", _json(), nullable=False),
        sa.Column("counts", _json(), nullable=False),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("fabric_name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_catalogs"),
        sa.UniqueConstraint("name", "revision", name="uq_catalogs_name_revision"),
    )
    _item_table("data_classes", _name())
    _item_table("jurisdiction_groups", _name(64))
    _item_table(
        "sites",
        _name(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(NAME), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column(
            "jurisdiction",
            sa.String(8),
            nullable=False,
            comment="effective: defaults to country",
        ),
    )
    _indexes("sites", "kind", "provider", "country", "jurisdiction")
    _item_table(
        "links",
        sa.Column("src", sa.String(NAME), nullable=False),
        sa.Column("dst", sa.String(NAME), nullable=False),
        sa.Column("private", sa.Boolean(), nullable=False),
        named=False,
    )
    _indexes("links", "src", "dst")
    _item_table(
        "metros",
        _name(),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column(
            "jurisdiction",
            sa.String(8),
            nullable=False,
            comment="effective: defaults to country",
        ),
    )
    _indexes("metros", "country")
    _item_table(
        "models",
        _name(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(NAME), nullable=True),
        sa.Column("open_weights", sa.Boolean(), nullable=False),
    )
    _indexes("models", "kind", "provider")
    _item_table("aliases", _name())
    _item_table(
        "endpoints",
        _name(),
        sa.Column("model", sa.String(NAME), nullable=False),
        sa.Column("site", sa.String(NAME), nullable=False),
        sa.Column("engine", sa.String(32), nullable=False),
    )
    _indexes("endpoints", "model", "site")
    _item_table(
        "datasets",
        _name(),
        sa.Column("site", sa.String(NAME), nullable=False),
        sa.Column("data_class", sa.String(NAME), nullable=False),
    )
    _indexes("datasets", "site", "data_class")
    _item_table(
        "tenants",
        _name(),
        sa.Column("default_data_class", sa.String(NAME), nullable=False),
        sa.Column("home_site", sa.String(NAME), nullable=True),
    )
    _item_table("policies", _name())


def downgrade() -> None:
    for table in (
        "policies",
        "tenants",
        "datasets",
        "endpoints",
        "aliases",
        "models",
        "metros",
        "links",
        "sites",
        "jurisdiction_groups",
        "data_classes",
    ):
        op.drop_table(table)  # drops the table's indexes with it
    op.drop_table("catalogs")
