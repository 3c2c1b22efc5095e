"""Spec <-> rows: every section is kept, digests mean "same content", odd values are refused."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import FabricSpec, Link
from isthmus.store import StoreError, content_sha256
from isthmus.store.codec import HEADER_FIELDS, SECTIONS, encode
from isthmus.store.tables import AliasRow, SiteRow


def test_sections_cover_the_schema_in_its_order() -> None:
    stored = [*HEADER_FIELDS, *(section.field for section in SECTIONS)]
    assert stored == [name for name in FabricSpec.model_fields if name != "include"]


def test_rows_fill_their_tables(small_fabric: Fabric) -> None:
    encoded = encode(small_fabric.spec)
    for section in SECTIONS:
        rows = encoded.rows[section.table]
        assert len(rows) == len(getattr(small_fabric.spec, section.field)), section.field
        assert [row["position"] for row in rows] == list(range(len(rows)))
        columns = set(section.table.__table__.columns.keys()) - {"catalog_id"}
        for row in rows:
            assert set(row) == columns, section.field


def test_key_columns_copy_the_spec(small_fabric: Fabric) -> None:
    rows = encode(small_fabric.spec).rows
    oslo, frankfurt, _, oregon = rows[SiteRow]
    assert {k: oslo[k] for k in ("name", "kind", "provider", "country", "jurisdiction")} == {
        "name": "oslo-colo",
        "kind": "colo",
        "provider": "green-mountain",
        "country": "NO",
        "jurisdiction": "NO",
    }
    assert oregon["jurisdiction"] == "US-OR"  # the effective jurisdiction, for queries
    assert frankfurt["spec"]["cloud_region_id"] == "aws:eu-central-1"
    assert rows[AliasRow][0] == {
        "name": "chat-small",
        "position": 0,
        "spec": ["qwen2.5-7b", "mixtral-8x7b"],
    }


def test_digest_is_about_content(small_fabric: Fabric) -> None:
    spec = small_fabric.spec
    digest = content_sha256(spec)
    same = [
        spec.model_copy(update={"include": ("parts.yaml",)}),
        FabricSpec.model_validate({**spec.model_dump(), "version": 1}),  # explicit default
        spec.model_copy(update={"aliases": dict(reversed(spec.aliases.items()))}),
    ]
    different = [
        spec.model_copy(update={"sites": tuple(reversed(spec.sites))}),
        spec.model_copy(update={"description": "other"}),
        spec.model_copy(update={"name": "renamed"}),
    ]
    assert all(content_sha256(s) == digest for s in same)
    assert all(content_sha256(s) != digest for s in different)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"description": "nul\x00byte"}, r"description contains a NUL character"),
        ({"description": "half \ud800 pair"}, r"description holds text that is not valid"),
        (
            {"links": (Link.model_construct(src="a", dst="b", rtt_ms=float("inf")),)},
            r"links\[0\]\.rtt_ms is inf; the store keeps only finite numbers",
        ),
    ],
)
def test_values_a_database_cannot_keep_are_refused(
    small_fabric: Fabric, update: dict[str, object], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        encode(small_fabric.spec.model_copy(update=update))
