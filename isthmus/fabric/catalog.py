"""The loaded fabric, indexed by name: what every other part of Isthmus reads.

Invariant: a ``Fabric`` is only built from a ``FabricSpec`` that passed both the schema and the
cross-reference checks, so every name it holds resolves (an endpoint's site and model exist, a
group expands to known jurisdictions). It is immutable; a changed catalog is a new ``Fabric``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from isthmus.fabric.schema import (
    DataClass,
    Dataset,
    Endpoint,
    FabricSpec,
    Metro,
    ModelSpec,
    SiteSpec,
    SovereigntyRule,
    Tenant,
)
from isthmus.fabric.yamlsafe import SourceMap

__all__ = ["Fabric", "country_of", "expand_groups"]

Place = SiteSpec | Metro
_T = TypeVar("_T")


def country_of(jurisdiction: str) -> str:
    """``US-CA`` -> ``US``; ``DE`` -> ``DE``."""
    return jurisdiction.split("-", 1)[0]


def expand_groups(
    groups: Mapping[str, tuple[str, ...]], names: tuple[str, ...] | list[str]
) -> frozenset[str]:
    """Jurisdiction atoms named by ``names`` (codes or groups, groups nest; cycles ignored)."""
    out: set[str] = set()
    stack = list(names)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in groups:
            stack.extend(groups[name])
        else:
            out.add(name)
    return frozenset(out)


def _index(items: tuple[_T, ...]) -> Mapping[str, _T]:
    return MappingProxyType({getattr(item, "name"): item for item in items})  # noqa: B009


@dataclass(frozen=True)
class Fabric:
    """A validated fabric with lookups by name."""

    spec: FabricSpec
    sources: tuple[str, ...] = ()
    source_map: SourceMap | None = field(default=None, compare=False, repr=False)
    sites: Mapping[str, SiteSpec] = field(init=False)
    metros: Mapping[str, Metro] = field(init=False)
    models: Mapping[str, ModelSpec] = field(init=False)
    endpoints: Mapping[str, Endpoint] = field(init=False)
    datasets: Mapping[str, Dataset] = field(init=False)
    tenants: Mapping[str, Tenant] = field(init=False)
    data_classes: Mapping[str, DataClass] = field(init=False)
    policies: Mapping[str, SovereigntyRule] = field(init=False)

    def __post_init__(self) -> None:
        spec = self.spec
        for name, items in (
            ("sites", spec.sites),
            ("metros", spec.metros),
            ("models", spec.models),
            ("endpoints", spec.endpoints),
            ("datasets", spec.datasets),
            ("tenants", spec.tenants),
            ("data_classes", spec.data_classes),
            ("policies", spec.policies),
        ):
            object.__setattr__(self, name, _index(items))

    @property
    def name(self) -> str:
        return self.spec.name

    def place(self, name: str) -> Place | None:
        """A site or a user metro by name."""
        return self.sites.get(name) or self.metros.get(name)

    def jurisdictions(self, names: tuple[str, ...] | list[str]) -> frozenset[str]:
        """Expand jurisdiction codes and group names into jurisdiction atoms."""
        return expand_groups(self.spec.jurisdiction_groups, names)

    def endpoints_of_model(self, model: str) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.spec.endpoints if e.model == model)

    def with_endpoint_urls(self, urls: Mapping[str, str]) -> Fabric:
        """The same fabric with some endpoints moved to other URLs (tests, local demos)."""
        endpoints = tuple(
            e.model_copy(update={"url": urls[e.name]}) if e.name in urls else e
            for e in self.spec.endpoints
        )
        spec = self.spec.model_copy(update={"endpoints": endpoints})
        return Fabric(spec, self.sources, self.source_map)

    def alias_targets(self, name: str) -> tuple[str, ...]:
        """Models a name may mean: the alias's candidates, or the model itself."""
        if name in self.spec.aliases:
            return self.spec.aliases[name]
        return (name,) if name in self.models else ()
