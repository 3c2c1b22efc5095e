"""Sovereignty policy compiled into lookup tables: ``evaluate`` answers in about a microsecond.

Invariants:

- **Fail closed.** An unknown data class, a class that no rule covers, an unknown site or an
  unknown model is refused, and the verdict says so.
- **Every refusal names its rule** (``gdpr-pii``, or ``model:gpt-4o`` for a model's own hosting
  terms) and clause (``process_in``, ``transit_in``, ``sites.require_tags.key_custody`` …).
- **Same answers as the reference.** ``explain`` runs the clause functions of
  ``isthmus.policy.checks`` one by one; ``CompiledPolicy`` precomputes those very functions over
  every (class, site) and (model, site) pair, and memoises path and model verdicts on first use.
  All rules covering a class must pass (they are conjunctive).

Why a declarative YAML schema rather than CEL or Cedar: the rules are data that the fabric's
own validator checks with file:line:column errors, that precompute into tables (a general
expression language cannot be tabulated this way, so each decision would pay an interpreter),
and whose refusal reasons are structured (rule + clause) for audit and for the router's 503s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import ModelSpec, SiteSpec, SovereigntyRule
from isthmus.policy.checks import (
    Action,
    Check,
    PathFacts,
    ZoneSets,
    model_hosting_checks,
    path_checks,
    rule_model_checks,
    site_checks,
)

__all__ = ["CompiledPolicy", "Verdict", "compile_policy", "explain"]

FAIL_CLOSED = "fail-closed"
_K = TypeVar("_K")
_MEMO_LIMIT = 200_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to "may this data go there?" and the rule behind it."""

    allowed: bool
    rule: str
    clause: str
    reason: str

    def __str__(self) -> str:
        if self.allowed:
            return f"allowed by {self.rule}"
        return f"refused by {self.rule} ({self.clause}): {self.reason}"


def _refuse(check: Check) -> Verdict:
    return Verdict(False, check.rule, check.clause, check.detail)


def _first_failure(checks: Iterable[Check]) -> Verdict | None:
    for check in checks:
        if not check.passed:
            return _refuse(check)
    return None


def _zones(fabric: Fabric, rule: SovereigntyRule) -> ZoneSets:
    def expand(names: tuple[str, ...]) -> frozenset[str] | None:
        return fabric.jurisdictions(names) if names else None

    labels = {
        "process_in": "+".join(rule.process_in),
        "store_in": "+".join(rule.store_in),
        "transit_in": "+".join(rule.transit_in),
        "models.hosted_in": "+".join(rule.models.hosted_in),
    }
    store = rule.store_in or rule.process_in
    return ZoneSets(
        process=expand(rule.process_in),
        store=expand(store),
        transit=expand(rule.transit_in),
        hosted=expand(rule.models.hosted_in),
        labels=labels,
    )


class CompiledPolicy:
    """Sovereignty rules of one fabric, precomputed for fast evaluation."""

    def __init__(self, fabric: Fabric) -> None:
        self.fabric = fabric
        self._rules: dict[str, tuple[tuple[SovereigntyRule, ZoneSets], ...]] = {}
        covering: dict[str, list[tuple[SovereigntyRule, ZoneSets]]] = {}
        for rule in fabric.spec.policies:
            zones = _zones(fabric, rule)
            for name in rule.data_classes:
                covering.setdefault(name, []).append((rule, zones))
        self._rules = {name: tuple(rules) for name, rules in covering.items()}
        self._hosting_zone = {
            m.name: (
                fabric.jurisdictions(m.hosting.jurisdictions) if m.hosting.jurisdictions else None
            )
            for m in fabric.spec.models
        }
        self._site: dict[tuple[str, str, Action], Verdict] = {}
        self._hosted: dict[tuple[str, str], Verdict | None] = {}
        self._model_hosting: dict[tuple[str, str], Verdict | None] = {}
        self._has_path_rules: dict[str, bool] = {}
        self._path_memo: dict[tuple[str, frozenset[str], bool], Verdict | None] = {}
        self._model_memo: dict[tuple[str, str, str], Verdict | None] = {}
        for name, rules in self._rules.items():
            allowed = Verdict(True, "+".join(r.name for r, _ in rules), "", "")
            self._has_path_rules[name] = any(
                z.transit is not None or r.require_private_path for r, z in rules
            )
            for site in fabric.spec.sites:
                for action in ("process", "store"):
                    refusal = _first_failure(
                        c for r, z in rules for c in site_checks(r, z, site, action)
                    )
                    self._site[(name, site.name, action)] = refusal or allowed
        for model in fabric.spec.models:
            for site in fabric.spec.sites:
                self._model_hosting[(model.name, site.name)] = _first_failure(
                    model_hosting_checks(model, self._hosting_zone[model.name], site)
                )

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self._rules)

    def evaluate(
        self,
        data_class: str,
        site: str,
        path: PathFacts | None = None,
        model: str | None = None,
        action: Action = "process",
    ) -> Verdict:
        """May data of ``data_class`` be processed (or stored) at ``site``, reached over
        ``path``, by ``model``? ``path`` and ``model`` are optional (``None`` = not asked)."""
        verdict = self._site.get((data_class, site, action))
        if verdict is None:
            return self._unknown(data_class, site)
        if not verdict.allowed:
            return verdict
        if path is not None and self._has_path_rules[data_class]:
            key = (data_class, path.transits, path.private)
            try:
                refusal = self._path_memo[key]
            except KeyError:
                refusal = self._path_refusal(data_class, path)
                self._remember(self._path_memo, key, refusal)
            if refusal is not None:
                return refusal
        if model is not None:
            mkey = (data_class, model, site)
            try:
                refusal = self._model_memo[mkey]
            except KeyError:
                refusal = self._model_refusal(data_class, model, site)
                self._remember(self._model_memo, mkey, refusal)
            if refusal is not None:
                return refusal
        return verdict

    def allows(
        self,
        data_class: str,
        site: str,
        path: PathFacts | None = None,
        model: str | None = None,
        action: Action = "process",
    ) -> bool:
        return self.evaluate(data_class, site, path, model, action).allowed

    def model_hosting(self, model: str, site: str) -> Verdict | None:
        """The refusal from a model's own hosting terms at ``site``, or ``None`` if it may."""
        return self._model_hosting.get((model, site))

    @staticmethod
    def _remember(memo: dict[_K, Verdict | None], key: _K, value: Verdict | None) -> None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = value

    def _path_refusal(self, data_class: str, path: PathFacts) -> Verdict | None:
        return _first_failure(
            c for r, z in self._rules[data_class] for c in path_checks(r, z, path)
        )

    def _model_refusal(self, data_class: str, model_name: str, site_name: str) -> Verdict | None:
        model = self.fabric.models.get(model_name)
        site = self.fabric.sites[site_name]
        if model is None:
            return Verdict(
                False, FAIL_CLOSED, "unknown-model", f"model {model_name!r} is not in the catalog"
            )
        hosting = self._model_hosting[(model_name, site_name)]
        if hosting is not None:
            return hosting
        return _first_failure(
            c for r, z in self._rules[data_class] for c in rule_model_checks(r, z, model, site)
        )

    def _unknown(self, data_class: str, site: str) -> Verdict:
        if data_class not in self.fabric.data_classes:
            return Verdict(
                False,
                FAIL_CLOSED,
                "unknown-data-class",
                f"data class {data_class!r} is not defined; refused",
            )
        if data_class not in self._rules:
            return Verdict(
                False,
                FAIL_CLOSED,
                "no-rule",
                f"no sovereignty rule covers data class {data_class!r}; refused (fail closed)",
            )
        return Verdict(False, FAIL_CLOSED, "unknown-site", f"site {site!r} is not in the catalog")


def compile_policy(fabric: Fabric) -> CompiledPolicy:
    """Compile the fabric's sovereignty rules (and models' hosting terms)."""
    return CompiledPolicy(fabric)


def explain(
    fabric: Fabric,
    data_class: str,
    site: str,
    path: PathFacts | None = None,
    model: str | None = None,
    action: Action = "process",
) -> tuple[Verdict, tuple[Check, ...]]:
    """Every check that applies, in order, and the verdict they add up to (reference semantics)."""
    checks: list[Check] = []
    if data_class not in fabric.data_classes:
        reason = f"data class {data_class!r} is not defined; refused"
        return Verdict(False, FAIL_CLOSED, "unknown-data-class", reason), ()
    rules = [r for r in fabric.spec.policies if data_class in r.data_classes]
    if not rules:
        reason = f"no sovereignty rule covers data class {data_class!r}; refused (fail closed)"
        return Verdict(False, FAIL_CLOSED, "no-rule", reason), ()
    place: SiteSpec | None = fabric.sites.get(site)
    if place is None:
        reason = f"site {site!r} is not in the catalog"
        return Verdict(False, FAIL_CLOSED, "unknown-site", reason), ()
    zoned = [(r, _zones(fabric, r)) for r in rules]
    for rule, zones in zoned:
        checks.extend(site_checks(rule, zones, place, action))
    if path is not None:
        for rule, zones in zoned:
            checks.extend(path_checks(rule, zones, path))
    spec: ModelSpec | None = None
    if model is not None:
        spec = fabric.models.get(model)
        if spec is None:
            reason = f"model {model!r} is not in the catalog"
            return Verdict(False, FAIL_CLOSED, "unknown-model", reason), tuple(checks)
        zone = (
            fabric.jurisdictions(spec.hosting.jurisdictions) if spec.hosting.jurisdictions else None
        )
        checks.extend(model_hosting_checks(spec, zone, place))
        for rule, zones in zoned:
            checks.extend(rule_model_checks(rule, zones, spec, place))
    failure = _first_failure(checks)
    if failure is not None:
        return failure, tuple(checks)
    return Verdict(True, "+".join(r.name for r in rules), "", ""), tuple(checks)
