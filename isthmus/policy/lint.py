"""Sovereignty checks of the catalog itself: does what is already placed obey the rules?

Invariant: ``lint_fabric`` reports, with file:line:column, every dataset stored where its class
may not be stored (or outside its own residency), and every endpoint that hosts a model where
the model's own hosting terms forbid it. A fabric that breaks its own rules does not validate.
"""

from __future__ import annotations

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.problems import Location, Problem, format_path
from isthmus.policy.checks import inside
from isthmus.policy.compiled import CompiledPolicy

__all__ = ["lint_fabric"]


def _where(fabric: Fabric, path: tuple[str | int, ...]) -> Location:
    if fabric.source_map is None:
        return Location(fabric.sources[0] if fabric.sources else "<fabric>", 1, 1)
    return fabric.source_map.locate(path)


def lint_fabric(fabric: Fabric, policy: CompiledPolicy) -> list[Problem]:
    problems: list[Problem] = []
    for index, dataset in enumerate(fabric.spec.datasets):
        path: tuple[str | int, ...] = ("datasets", index, "site")
        verdict = policy.evaluate(dataset.data_class, dataset.site, action="store")
        if not verdict.allowed:
            problems.append(
                Problem(
                    _where(fabric, path),
                    format_path(path),
                    f"dataset {dataset.name} ({dataset.data_class}) is stored at {dataset.site}, "
                    f"which the policy refuses: {verdict}",
                )
            )
        if dataset.residency:
            zone = fabric.jurisdictions(dataset.residency)
            site = fabric.sites[dataset.site]
            if not inside(site.jurisdiction_code, zone):
                problems.append(
                    Problem(
                        _where(fabric, path),
                        format_path(path),
                        f"dataset {dataset.name} must reside in {'+'.join(dataset.residency)}; "
                        f"site {site.name} is in {site.jurisdiction_code}",
                    )
                )
    for index, endpoint in enumerate(fabric.spec.endpoints):
        path = ("endpoints", index, "site")
        hosting = policy.model_hosting(endpoint.model, endpoint.site)
        if hosting is not None:
            problems.append(
                Problem(
                    _where(fabric, path),
                    format_path(path),
                    f"endpoint {endpoint.name} hosts {endpoint.model} at {endpoint.site}: {hosting}",
                )
            )
    return problems
