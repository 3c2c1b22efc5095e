"""Between a ``FabricSpec`` and the store's rows: what each section keeps, and how it comes back.

Invariants:

- ``SECTIONS`` lists every section of ``FabricSpec`` in the schema's order; the header fields
  (``version``, ``name``, ``description``) live on the catalog row, and ``include`` is dropped
  (a stored catalog is already assembled; its files are kept as ``sources``).
- ``fabric_data(header(spec), items)`` over the rows of ``item_rows(spec)``, read back in
  ``position`` order, validates to a spec equal to ``spec`` without its ``include``;
  ``encode`` checks this before anything is written.
- Only values every backend keeps exactly are stored: finite numbers, and text that is valid
  UTF-8 without NUL characters. Anything else is refused, naming the field.
- ``content_sha256`` is equal for equal specs: it hashes canonical JSON (defaults omitted,
  mapping keys sorted as spec equality ignores their order; list order kept).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from isthmus.fabric.problems import format_path
from isthmus.fabric.schema import (
    Dataset,
    Endpoint,
    FabricSpec,
    Link,
    Metro,
    ModelSpec,
    SiteSpec,
    Tenant,
)
from isthmus.store.errors import StoreError
from isthmus.store.tables import (
    AliasRow,
    DataClassRow,
    DatasetRow,
    EndpointRow,
    ItemRow,
    JurisdictionGroupRow,
    LinkRow,
    MetroRow,
    ModelRow,
    PolicyRow,
    SiteRow,
    TenantRow,
)

__all__ = [
    "HEADER_FIELDS",
    "SECTIONS",
    "Encoded",
    "Section",
    "content_sha256",
    "encode",
    "fabric_data",
]

HEADER_FIELDS = ("version", "name", "description")
"""Top-level fields kept on the catalog row rather than in an item table."""

Columns = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Section:
    """One section of a fabric and the table that keeps its items.

    ``mapping`` sections (``jurisdiction_groups``, ``aliases``) store one row per key, with the
    value as ``spec``; the others store one row per list item.
    """

    field: str
    table: type[ItemRow]
    columns: Columns
    mapping: bool = False


def _named(item: Any) -> dict[str, Any]:
    return {"name": item.name}


def _site(site: SiteSpec) -> dict[str, Any]:
    return {
        "name": site.name,
        "kind": site.kind,
        "provider": site.provider,
        "country": site.country,
        "jurisdiction": site.jurisdiction_code,
    }


def _link(link: Link) -> dict[str, Any]:
    return {"src": link.src, "dst": link.dst, "private": link.private}


def _metro(metro: Metro) -> dict[str, Any]:
    return {"name": metro.name, "country": metro.country, "jurisdiction": metro.jurisdiction_code}


def _model(model: ModelSpec) -> dict[str, Any]:
    return {
        "name": model.name,
        "kind": model.kind,
        "provider": model.provider,
        "open_weights": model.open_weights,
    }


def _endpoint(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "model": endpoint.model,
        "site": endpoint.site,
        "engine": endpoint.engine,
    }


def _dataset(dataset: Dataset) -> dict[str, Any]:
    return {"name": dataset.name, "site": dataset.site, "data_class": dataset.data_class}


def _tenant(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "default_data_class": tenant.default_data_class,
        "home_site": tenant.home_site,
    }


SECTIONS: tuple[Section, ...] = (
    Section("jurisdiction_groups", JurisdictionGroupRow, _named, mapping=True),
    Section("data_classes", DataClassRow, _named),
    Section("sites", SiteRow, _site),
    Section("links", LinkRow, _link),
    Section("metros", MetroRow, _metro),
    Section("models", ModelRow, _model),
    Section("aliases", AliasRow, _named, mapping=True),
    Section("endpoints", EndpointRow, _endpoint),
    Section("datasets", DatasetRow, _dataset),
    Section("tenants", TenantRow, _tenant),
    Section("policies", PolicyRow, _named),
)


@dataclass(frozen=True, slots=True)
class _Key:
    """A mapping section's entry, shaped like a list item for ``Section.columns``."""

    name: str


@dataclass(frozen=True, slots=True)
class Encoded:
    """A spec ready to write: header fields, rows per table (in order), digest and counts."""

    header: dict[str, Any]
    rows: dict[type[ItemRow], list[dict[str, Any]]]
    sha256: str
    counts: dict[str, int]


def _walk(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, member in value.items():
            yield (*path, key), key
            yield from _walk(member, (*path, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from _walk(member, (*path, index))


def _check_storable(data: Mapping[str, Any]) -> None:
    for path, value in _walk(dict(data), ()):
        where = format_path(path)
        if isinstance(value, float) and not math.isfinite(value):
            raise StoreError(
                f"{where} is {value}; the store keeps only finite numbers (JSON has no "
                "infinity or NaN), so give a finite value or leave the field out"
            )
        if isinstance(value, str):
            if "\x00" in value:
                raise StoreError(f"{where} contains a NUL character, which databases cannot store")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise StoreError(
                    f"{where} holds text that is not valid Unicode (an unpaired surrogate)"
                ) from None


def content_sha256(spec: FabricSpec) -> str:
    """The hex SHA-256 of the spec's canonical JSON (``include`` excluded)."""
    data = spec.model_dump(mode="json", exclude_defaults=True, exclude={"include"})
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fabric_data(header: Mapping[str, Any], items: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Fabric data, ready for validation, from header fields and each section's stored specs.

    ``items`` maps a section's field to its rows' ``spec`` values in ``position`` order; for a
    mapping section, to ``(name, spec)`` pairs.
    """
    data: dict[str, Any] = {k: header[k] for k in HEADER_FIELDS if header.get(k) is not None}
    for section in SECTIONS:
        stored = items.get(section.field, ())
        data[section.field] = dict(stored) if section.mapping else list(stored)
    return data


def _dump(value: BaseModel | tuple[str, ...]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return list(value)


def encode(spec: FabricSpec) -> Encoded:
    """The rows that store ``spec``, checked to read back as an equal spec."""
    header = {name: getattr(spec, name) for name in HEADER_FIELDS}
    rows: dict[type[ItemRow], list[dict[str, Any]]] = {}
    read_back: dict[str, list[Any]] = {}
    for section in SECTIONS:
        value = getattr(spec, section.field)
        entries: list[tuple[Any, Any]] = (
            [(_Key(key), members) for key, members in value.items()]
            if section.mapping
            else [(item, item) for item in value]
        )
        table_rows: list[dict[str, Any]] = []
        for position, (keyed, item) in enumerate(entries):
            stored = _dump(item)
            _check_storable({section.field: {keyed.name if section.mapping else position: stored}})
            table_rows.append({**section.columns(keyed), "position": position, "spec": stored})
        rows[section.table] = table_rows
        read_back[section.field] = [
            (row["name"], row["spec"]) if section.mapping else row["spec"] for row in table_rows
        ]
    _check_storable({name: header[name] for name in HEADER_FIELDS})
    try:
        same = FabricSpec.model_validate(fabric_data(header, read_back)) == spec.model_copy(
            update={"include": ()}
        )
    except ValidationError:
        same = False
    if not same:
        raise StoreError(
            "this fabric has a section the store cannot keep yet (the schema is newer than the "
            "store); upgrade Isthmus, or report it if you are on the latest version"
        )
    counts = {section.field: len(rows[section.table]) for section in SECTIONS}
    return Encoded(header, rows, content_sha256(spec), counts)
