"""Checks that span objects: every name a fabric uses must resolve, and names must be unique.

Invariant: after ``check_references`` returns no problems, every cross-reference in the spec
resolves (links join known sites or metros; endpoints name a known model and site; datasets,
tenants and rules name known data classes; jurisdiction groups expand to real jurisdictions
without cycles), so later stages never meet a dangling name.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable

from isthmus.fabric.countries import COUNTRY_CODES, is_jurisdiction_code
from isthmus.fabric.problems import Problem, format_path
from isthmus.fabric.schema import FabricSpec
from isthmus.fabric.yamlsafe import SourceMap

__all__ = ["check_references", "matches_any"]

PathKey = tuple[str | int, ...]


class _Checker:
    def __init__(self, spec: FabricSpec, source: SourceMap, assume_known: set[str]) -> None:
        self.spec = spec
        self.source = source
        self.assume_known = assume_known
        self.problems: list[Problem] = []

    def report(self, path: PathKey, message: str) -> None:
        self.problems.append(Problem(self.source.locate(path), format_path(path), message))

    def expect(
        self, path: PathKey, value: str, known: Iterable[str], what: str, where: str = ""
    ) -> bool:
        """``value`` names one of ``known`` (a ``what``, e.g. "model"; ``where`` narrows the
        scope, e.g. "at site paris"), else a problem with the closest name and the valid ones."""
        pool = set(known)
        if value in pool or value in self.assume_known:
            return True
        scope = f" {where}" if where else ""
        if not pool:
            none = ", which declares none" if where else f"; no {what} is declared"
            self.report(path, f"unknown {what} {value!r}{scope}{none}")
            return False
        close = difflib.get_close_matches(value, sorted(pool), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        listing = ", ".join(sorted(pool)[:12]) + (", ..." if len(pool) > 12 else "")
        self.report(path, f"unknown {what} {value!r}{scope}{hint} Known: {listing}.")
        return False

    def unique(self, section: str, names: list[str]) -> None:
        first: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in first:
                self.report(
                    (section, index, "name"),
                    f"duplicate name {name!r} (also {section}[{first[name]}])",
                )
            else:
                first[name] = index

    def zones(self, path: PathKey, names: Iterable[str]) -> None:
        groups = self.spec.jurisdiction_groups
        for index, name in enumerate(names):
            if name not in groups and not is_jurisdiction_code(name):
                close = difflib.get_close_matches(name, sorted(groups), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ";"
                self.report(
                    (*path, index),
                    f"{name!r} is neither a jurisdiction code (DE, US-CA) nor a defined "
                    f"jurisdiction group{hint}",
                )

    def check_groups(self) -> None:
        groups = self.spec.jurisdiction_groups
        for name, members in groups.items():
            if name in COUNTRY_CODES:
                self.report(
                    ("jurisdiction_groups", name),
                    f"group name {name!r} is a country code; choose another name",
                )
            self.zones(("jurisdiction_groups", name), members)
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(name: str, trail: list[str]) -> None:
            if name in done or name not in groups:
                return
            if name in visiting:
                cycle = " -> ".join([*trail[trail.index(name) :], name])
                self.report(("jurisdiction_groups", name), f"groups form a cycle: {cycle}")
                return
            visiting.add(name)
            for member in groups[name]:
                visit(member, [*trail, name])
            visiting.discard(name)
            done.add(name)

        for name in groups:
            visit(name, [])

    def model_patterns(self, path: PathKey, patterns: Iterable[str], models: set[str]) -> None:
        for index, pattern in enumerate(patterns):
            if any(ch in pattern for ch in "*?["):
                continue
            self.expect((*path, index), pattern, models, "model")

    def run(self) -> list[Problem]:
        spec = self.spec
        self.check_groups()
        for section in (
            "sites",
            "metros",
            "models",
            "endpoints",
            "datasets",
            "tenants",
            "policies",
            "data_classes",
        ):
            self.unique(section, [item.name for item in getattr(spec, section)])
        sites = {s.name for s in spec.sites}
        metros = {m.name for m in spec.metros}
        models = {m.name for m in spec.models}
        classes = {c.name for c in spec.data_classes}
        for index, metro in enumerate(spec.metros):
            if metro.name in sites:
                self.report(("metros", index, "name"), f"{metro.name!r} is also a site name")
        for index, site in enumerate(spec.sites):
            types = [a.type for a in site.accelerators]
            for j, kind in enumerate(types):
                if kind in types[:j]:
                    self.report(
                        ("sites", index, "accelerators", j, "type"),
                        f"accelerator type {kind!r} listed twice at this site",
                    )
        places = sites | metros
        for index, link in enumerate(spec.links):
            self.expect(("links", index, "src"), link.src, places, "site or metro")
            self.expect(("links", index, "dst"), link.dst, places, "site or metro")
            if link.src == link.dst:
                self.report(("links", index, "dst"), "a link must join two different places")
        for index, model in enumerate(spec.models):
            self.zones(("models", index, "hosting", "jurisdictions"), model.hosting.jurisdictions)
        for alias, targets in spec.aliases.items():
            if alias in models:
                self.report(("aliases", alias), f"alias {alias!r} hides a model of that name")
            for j, target in enumerate(targets):
                self.expect(("aliases", alias, j), target, models, "model")
        site_accels = {s.name: {a.type for a in s.accelerators} for s in spec.sites}
        for index, endpoint in enumerate(spec.endpoints):
            self.expect(("endpoints", index, "model"), endpoint.model, models, "model")
            known_site = self.expect(("endpoints", index, "site"), endpoint.site, sites, "site")
            here = site_accels.get(endpoint.site)
            if known_site and here is not None and endpoint.accelerator is not None:
                self.expect(
                    ("endpoints", index, "accelerator"),
                    endpoint.accelerator,
                    here,
                    "accelerator",
                    f"at site {endpoint.site}",
                )
        for index, dataset in enumerate(spec.datasets):
            self.expect(("datasets", index, "site"), dataset.site, sites, "site")
            self.expect(
                ("datasets", index, "data_class"), dataset.data_class, classes, "data class"
            )
            self.zones(("datasets", index, "residency"), dataset.residency)
        for index, tenant in enumerate(spec.tenants):
            self.expect(
                ("tenants", index, "default_data_class"),
                tenant.default_data_class,
                classes,
                "data class",
            )
            if tenant.home_site is not None:
                self.expect(("tenants", index, "home_site"), tenant.home_site, sites, "site")
            self.model_patterns(
                ("tenants", index, "allowed_models"),
                tenant.allowed_models,
                models | set(spec.aliases),
            )
            self.unique_keys(index, [key.id for key in tenant.api_keys])
        for index, rule in enumerate(spec.policies):
            for j, name in enumerate(rule.data_classes):
                self.expect(("policies", index, "data_classes", j), name, classes, "data class")
            for aspect in ("process_in", "store_in", "transit_in"):
                self.zones(("policies", index, aspect), getattr(rule, aspect))
            self.zones(("policies", index, "models", "hosted_in"), rule.models.hosted_in)
            self.model_patterns(("policies", index, "models", "allow"), rule.models.allow, models)
            self.model_patterns(("policies", index, "models", "deny"), rule.models.deny, models)
        return self.problems

    def unique_keys(self, tenant_index: int, ids: list[str]) -> None:
        for j, key_id in enumerate(ids):
            if key_id in ids[:j]:
                self.report(
                    ("tenants", tenant_index, "api_keys", j, "id"), f"duplicate key id {key_id!r}"
                )


def check_references(
    spec: FabricSpec, source: SourceMap, assume_known: set[str] | None = None
) -> list[Problem]:
    """Every unresolved or ambiguous name in ``spec``, located via ``source``.

    Names in ``assume_known`` (items that failed the schema) are treated as defined.
    """
    return _Checker(spec, source, assume_known or set()).run()


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    """True if ``name`` matches one of the glob ``patterns`` (``*`` matches everything)."""
    return any(p == "*" or p == name or fnmatch.fnmatchcase(name, p) for p in patterns)
