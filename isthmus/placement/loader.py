"""Load a workload file against a fabric, with the fabric loader's precision.

Invariant: ``load_workloads`` either returns a ``WorkloadSet`` whose every name resolves in the
fabric (models, tenants, data classes, datasets, metros, pinned sites, anti-affinity partners)
or raises ``FabricError`` carrying every problem found, each with file, line, column and field.
It reuses the fabric's hardened YAML reader and its schema-error translation, so a typo in a
workload file reads exactly like one in a fabric file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.countries import is_jurisdiction_code
from isthmus.fabric.problems import FabricError, Problem, format_path
from isthmus.fabric.references import matches_any
from isthmus.fabric.schema_errors import problems_from_validation
from isthmus.fabric.yamlsafe import (
    DEFAULT_LIMITS,
    Limits,
    SourceMap,
    load_yaml_file,
    load_yaml_text,
)
from isthmus.placement.spec import Workload, WorkloadsSpec

__all__ = ["WorkloadSet", "load_workloads", "load_workloads_text", "workloads_from_data"]

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class WorkloadSet:
    """Validated workloads with the planning settings of their file."""

    spec: WorkloadsSpec
    source: str = "<memory>"

    @property
    def workloads(self) -> tuple[Workload, ...]:
        return self.spec.workloads

    def data_class(self, workload: Workload, fabric: Fabric) -> str:
        """The workload's data class: its own, else its tenant's default."""
        if workload.data_class is not None:
            return workload.data_class
        tenant = fabric.tenants.get(workload.tenant or "")
        assert tenant is not None, "checked by the loader"
        return tenant.default_data_class

    def by_name(self, name: str) -> Workload | None:
        for workload in self.spec.workloads:
            if workload.name == name:
                return workload
        return None


class _Checker:
    def __init__(self, spec: WorkloadsSpec, fabric: Fabric, source: SourceMap) -> None:
        self.spec = spec
        self.fabric = fabric
        self.source = source
        self.problems: list[Problem] = []

    def report(self, path: PathKey, message: str) -> None:
        self.problems.append(Problem(self.source.locate(path), format_path(path), message))

    def expect(self, path: PathKey, value: str, known: Iterable[str], what: str) -> bool:
        pool = sorted(set(known))
        if value in pool:
            return True
        close = difflib.get_close_matches(value, pool, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(pool[:12]) + (", ..." if len(pool) > 12 else "")
        self.report(path, f"unknown {what} {value!r}{hint}. Known: {listing or '(none)'}.")
        return False

    def run(self) -> list[Problem]:
        fabric = self.fabric
        names = [w.name for w in self.spec.workloads]
        first: dict[str, int] = {}
        for index, name in enumerate(names):
            if name in first:
                self.report(
                    ("workloads", index, "name"),
                    f"duplicate workload name {name!r} (also workloads[{first[name]}])",
                )
            first.setdefault(name, index)
        accelerators = {a.type for s in fabric.spec.sites for a in s.accelerators}
        places = set(fabric.metros) | set(fabric.sites)
        for index, workload in enumerate(self.spec.workloads):
            at: PathKey = ("workloads", index)
            self.check_model(at, workload)
            if workload.tenant is not None:
                self.expect((*at, "tenant"), workload.tenant, fabric.tenants, "tenant")
            if workload.data_class is not None:
                self.expect(
                    (*at, "data_class"), workload.data_class, fabric.data_classes, "data class"
                )
            elif workload.tenant is None:
                self.report(at, "give data_class, or a tenant whose default data class applies")
            for j, use in enumerate(workload.datasets):
                self.expect((*at, "datasets", j, "name"), use.name, fabric.datasets, "dataset")
            seen: set[str] = set()
            for j, demand in enumerate(workload.demand):
                path = (*at, "demand", j, "metro")
                if self.expect(path, demand.metro, places, "metro or site") and (
                    demand.metro in seen
                ):
                    self.report(path, f"metro {demand.metro!r} is listed twice")
                seen.add(demand.metro)
            for field in ("pin", "avoid"):
                chosen = getattr(workload, field)
                for j, site in enumerate(chosen.sites):
                    self.expect((*at, field, "sites", j), site, fabric.sites, "site")
                for j, zone in enumerate(chosen.jurisdictions):
                    if zone not in fabric.spec.jurisdiction_groups and not is_jurisdiction_code(
                        zone
                    ):
                        self.report(
                            (*at, field, "jurisdictions", j),
                            f"{zone!r} is neither a jurisdiction code (DE, US-CA) nor a "
                            "jurisdiction group of the fabric",
                        )
                for j, acc in enumerate(chosen.accelerators):
                    self.expect((*at, field, "accelerators", j), acc, accelerators, "accelerator")
            for j, other in enumerate(workload.anti_affinity):
                path = (*at, "anti_affinity", j)
                if other == workload.name:
                    self.report(path, "a workload cannot be anti-affine with itself")
                else:
                    self.expect(path, other, names, "workload")
        return self.problems

    def check_model(self, at: PathKey, workload: Workload) -> None:
        fabric = self.fabric
        model = workload.model
        if model in fabric.spec.aliases:
            targets = ", ".join(fabric.spec.aliases[model])
            self.report(
                (*at, "model"),
                f"{model!r} is an alias ({targets}); a placement runs one model: name it",
            )
            return
        if not self.expect((*at, "model"), model, fabric.models, "model"):
            return
        tenant = fabric.tenants.get(workload.tenant or "")
        if tenant is not None:
            allowed = tenant.allowed_models
            via_alias = any(
                model in targets and matches_any(alias, allowed)
                for alias, targets in fabric.spec.aliases.items()
            )
            if not matches_any(model, allowed) and not via_alias:
                self.report(
                    (*at, "model"),
                    f"tenant {tenant.name} may not use model {model!r} "
                    f"(allowed: {', '.join(allowed)})",
                )


def workloads_from_data(data: Any, source: SourceMap, fabric: Fabric) -> WorkloadSet:
    """Validate parsed data (with its source map) against ``fabric``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FabricError(
            [Problem(source.locate(()), "", "a workload file must be a mapping of sections")]
        )
    try:
        spec = WorkloadsSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems_from_validation(WorkloadsSpec, exc, source)
        raise FabricError(problems) from None
    problems = _Checker(spec, fabric, source).run()
    if problems:
        raise FabricError(problems)
    return WorkloadSet(spec, source.file)


def load_workloads(
    path: str | Path, fabric: Fabric, limits: Limits = DEFAULT_LIMITS
) -> WorkloadSet:
    """Load and validate a workload file against ``fabric``."""
    data, source = load_yaml_file(path, limits)
    return workloads_from_data(data, source, fabric)


def load_workloads_text(
    text: str, fabric: Fabric, file: str = "<text>", limits: Limits = DEFAULT_LIMITS
) -> WorkloadSet:
    """Load and validate workloads from a string."""
    data, source = load_yaml_text(text, file, limits)
    return workloads_from_data(data, source, fabric)
