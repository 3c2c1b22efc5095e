"""The sovereignty checks themselves, one clause at a time, written for clarity.

Every clause of a ``SovereigntyRule`` (and a model's own ``hosting`` terms) is a small function
that yields ``Check`` records: which rule, which clause, passed or not, and why. ``explain``
runs them all and is the reference semantics; ``CompiledPolicy`` precomputes the same checks
into lookup tables, and a property test holds the two to the same answers.

Semantics:

- A jurisdiction set (``process_in`` …) is expanded from codes and groups into atoms. A place in
  ``US-CA`` is inside a set that names ``US``; a place in ``US`` is not inside ``US-CA``.
- An empty set means "no restriction" for that aspect; ``store_in`` left empty falls back to
  ``process_in`` (data may rest only where it may be processed).
- A path's ``transits`` holds every jurisdiction it crosses, both ends included; each must be
  inside ``transit_in``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from isthmus.fabric.catalog import country_of
from isthmus.fabric.references import matches_any
from isthmus.fabric.schema import ModelSpec, SiteSpec, SovereigntyRule

__all__ = [
    "Action",
    "Check",
    "PathFacts",
    "ZoneSets",
    "inside",
    "model_hosting_checks",
    "path_checks",
    "rule_model_checks",
    "site_checks",
]

Action = Literal["process", "store"]


class PathFacts(Protocol):
    """What sovereignty needs to know of a network path."""

    @property
    def transits(self) -> frozenset[str]: ...

    @property
    def private(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Check:
    rule: str
    clause: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class ZoneSets:
    """A rule's jurisdiction sets, expanded to atoms (``None`` = unrestricted)."""

    process: frozenset[str] | None
    store: frozenset[str] | None
    transit: frozenset[str] | None
    hosted: frozenset[str] | None
    labels: dict[str, str]


def inside(jurisdiction: str, zone: frozenset[str]) -> bool:
    """True if ``jurisdiction`` lies in ``zone`` (a subdivision lies in its country)."""
    return jurisdiction in zone or country_of(jurisdiction) in zone


def site_checks(
    rule: SovereigntyRule, zones: ZoneSets, site: SiteSpec, action: Action
) -> Iterator[Check]:
    where = site.jurisdiction_code
    if action == "process":
        zone, clause = zones.process, "process_in"
    else:
        zone, clause = zones.store, "store_in" if rule.store_in else "process_in"
    if zone is not None:
        label = zones.labels[clause]
        ok = inside(where, zone)
        verb = "processed" if action == "process" else "stored"
        yield Check(
            rule.name,
            clause,
            ok,
            f"site {site.name} is in {where}, {'inside' if ok else 'outside'} {label}"
            + ("" if ok else f"; {verb} only in {label}"),
        )
    cond = rule.sites
    if cond.site_kinds:
        ok = site.kind in cond.site_kinds
        yield Check(
            rule.name,
            "sites.site_kinds",
            ok,
            f"site {site.name} is a {site.kind}; allowed kinds: {', '.join(cond.site_kinds)}",
        )
    if cond.providers:
        ok = site.provider in cond.providers
        yield Check(
            rule.name,
            "sites.providers",
            ok,
            f"site {site.name} is run by {site.provider}; allowed: {', '.join(cond.providers)}",
        )
    if cond.deny_providers:
        ok = site.provider not in cond.deny_providers
        yield Check(
            rule.name,
            "sites.deny_providers",
            ok,
            f"site {site.name} is run by {site.provider}"
            + ("" if ok else f", a denied provider ({', '.join(cond.deny_providers)})"),
        )
    for tag, wanted in cond.require_tags.items():
        have = site.tags.get(tag)
        ok = have == wanted
        yield Check(
            rule.name,
            f"sites.require_tags.{tag}",
            ok,
            f"site {site.name} has {tag}={have if have is not None else '(unset)'}; "
            f"requires {tag}={wanted}",
        )
    for tag, denied in cond.deny_tags.items():
        have = site.tags.get(tag)
        ok = have != denied
        yield Check(
            rule.name,
            f"sites.deny_tags.{tag}",
            ok,
            f"site {site.name} has {tag}={have if have is not None else '(unset)'}"
            + ("" if ok else f"; {tag}={denied} is denied"),
        )


def path_checks(rule: SovereigntyRule, zones: ZoneSets, path: PathFacts) -> Iterator[Check]:
    if zones.transit is not None:
        zone = zones.transit
        outside = sorted(j for j in path.transits if not inside(j, zone))
        label = zones.labels["transit_in"]
        yield Check(
            rule.name,
            "transit_in",
            not outside,
            f"path crosses {', '.join(sorted(path.transits)) or 'no jurisdiction'}"
            + (f"; {', '.join(outside)} outside {label}" if outside else f", all inside {label}"),
        )
    if rule.require_private_path:
        yield Check(
            rule.name,
            "require_private_path",
            path.private,
            "path is private end to end" if path.private else "path uses the public internet",
        )


def rule_model_checks(
    rule: SovereigntyRule, zones: ZoneSets, model: ModelSpec, site: SiteSpec
) -> Iterator[Check]:
    terms = rule.models
    if tuple(terms.allow) != ("*",):
        ok = matches_any(model.name, terms.allow)
        yield Check(
            rule.name,
            "models.allow",
            ok,
            f"model {model.name} {'is' if ok else 'is not'} among {', '.join(terms.allow)}",
        )
    if terms.deny:
        ok = not matches_any(model.name, terms.deny)
        yield Check(
            rule.name,
            "models.deny",
            ok,
            f"model {model.name} {'is not' if ok else 'is'} denied ({', '.join(terms.deny)})",
        )
    if terms.require_open_weights:
        yield Check(
            rule.name,
            "models.require_open_weights",
            model.open_weights,
            f"model {model.name} {'has' if model.open_weights else 'does not have'} open weights",
        )
    if zones.hosted is not None:
        ok = inside(site.jurisdiction_code, zones.hosted)
        label = zones.labels["models.hosted_in"]
        yield Check(
            rule.name,
            "models.hosted_in",
            ok,
            f"model {model.name} hosted at {site.name} in {site.jurisdiction_code}, "
            f"{'inside' if ok else 'outside'} {label}",
        )


def model_hosting_checks(
    model: ModelSpec, hosting_zone: frozenset[str] | None, site: SiteSpec
) -> Iterator[Check]:
    """The model's own hosting terms (licence or vendor), whatever the data class."""
    rule = f"model:{model.name}"
    terms = model.hosting
    if hosting_zone is not None:
        ok = inside(site.jurisdiction_code, hosting_zone)
        yield Check(
            rule,
            "hosting.jurisdictions",
            ok,
            f"{model.name} may be hosted only in {', '.join(terms.jurisdictions)}; "
            f"site {site.name} is in {site.jurisdiction_code}",
        )
    if terms.site_kinds:
        yield Check(
            rule,
            "hosting.site_kinds",
            site.kind in terms.site_kinds,
            f"{model.name} may be hosted only on {', '.join(terms.site_kinds)} sites; "
            f"{site.name} is a {site.kind}",
        )
    if terms.providers:
        yield Check(
            rule,
            "hosting.providers",
            site.provider in terms.providers,
            f"{model.name} may be hosted only by {', '.join(terms.providers)}; "
            f"{site.name} is run by {site.provider}",
        )
