"""Property tests: the compiled policy never allows what its rules forbid, and fails closed."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import (
    DataClass,
    FabricSpec,
    ModelRules,
    ModelSpec,
    SiteConditions,
    SiteSpec,
    SovereigntyRule,
)
from isthmus.policy import compile_policy, explain
from isthmus.policy.checks import inside

CODES = ["DE", "FR", "NL", "NO", "US", "US-CA", "US-VA", "JP", "GB", "CH", "SG"]
GROUPS = {"EU": ("DE", "FR", "NL"), "EEA": ("EU", "NO"), "NA": ("US",)}
ZONE_NAMES = CODES + list(GROUPS)
CLASSES = ["public", "pii", "phi", "secret"]


@dataclass(frozen=True)
class FakePath:
    transits: frozenset[str]
    private: bool


zones = st.lists(st.sampled_from(ZONE_NAMES), max_size=3, unique=True).map(tuple)

sites = st.lists(
    st.builds(
        lambda i, j, kind, custody: SiteSpec(
            name=f"s{i}",
            kind=kind,
            provider="p" + str(i % 3),
            city="c",
            country=j.split("-")[0],
            jurisdiction=j,
            lat_deg=0,
            lon_deg=0,
            tags={"key_custody": custody},
        ),
        st.integers(0, 10_000),
        st.sampled_from(CODES),
        st.sampled_from(["cloud_region", "colo", "on_prem", "edge", "neocloud"]),
        st.sampled_from(["customer", "provider"]),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda s: s.name,
)

rules = st.lists(
    st.builds(
        lambda i, classes, process, store, transit, private, kinds, deny_custody, hosted, openw: (
            SovereigntyRule(
                name=f"r{i}",
                data_classes=tuple(classes),
                process_in=process,
                store_in=store,
                transit_in=transit,
                require_private_path=private,
                sites=SiteConditions(
                    site_kinds=kinds,
                    deny_tags={"key_custody": "provider"} if deny_custody else {},
                ),
                models=ModelRules(hosted_in=hosted, require_open_weights=openw),
            )
        ),
        st.integers(0, 10_000),
        # "secret" is declared but never covered: it must always be refused
        st.lists(st.sampled_from(CLASSES[:3]), min_size=1, max_size=2, unique=True),
        zones,
        zones,
        zones,
        st.booleans(),
        st.lists(st.sampled_from(["cloud_region", "colo", "on_prem"]), max_size=2, unique=True).map(
            tuple
        ),
        st.booleans(),
        zones,
        st.booleans(),
    ),
    max_size=4,
    unique_by=lambda r: r.name,
)

MODELS = (
    ModelSpec(name="open", params_b=8, licence="apache-2.0"),
    ModelSpec(name="closed", params_b=100, licence="proprietary", open_weights=False),
)


def build(site_list: list[SiteSpec], rule_list: list[SovereigntyRule]) -> Fabric:
    spec = FabricSpec(
        jurisdiction_groups=GROUPS,
        data_classes=tuple(DataClass(name=c, level=i) for i, c in enumerate(CLASSES)),
        sites=tuple(site_list),
        models=MODELS,
        policies=tuple(rule_list),
    )
    return Fabric(spec)


paths = st.builds(
    FakePath, st.frozensets(st.sampled_from(CODES), min_size=1, max_size=3), st.booleans()
)


@settings(max_examples=300, deadline=None)
@given(
    sites,
    rules,
    st.sampled_from([*CLASSES, "unknown"]),
    st.none() | paths,
    st.sampled_from([None, "open", "closed"]),
    st.sampled_from(["process", "store"]),
)
def test_never_allowed_outside_the_rules(site_list, rule_list, data_class, path, model, action):
    fabric = build(site_list, rule_list)
    policy = compile_policy(fabric)
    for site in site_list:
        verdict = policy.evaluate(data_class, site.name, path, model, action)
        reference, _ = explain(fabric, data_class, site.name, path, model, action)
        assert verdict == reference  # compiled tables agree with the clause-by-clause reference
        covering = [r for r in rule_list if data_class in r.data_classes]
        if not covering:
            assert not verdict.allowed  # fail closed: unknown or uncovered class
            continue
        if not verdict.allowed:
            assert verdict.rule in {r.name for r in covering} | {f"model:{model}"}
            continue
        for rule in covering:
            zone_names = (
                rule.process_in if action == "process" else (rule.store_in or rule.process_in)
            )
            if zone_names:
                assert inside(site.jurisdiction_code, fabric.jurisdictions(zone_names))
            if rule.sites.site_kinds:
                assert site.kind in rule.sites.site_kinds
            if rule.sites.deny_tags:
                assert site.tags["key_custody"] != "provider"
            if path is not None and rule.transit_in:
                allowed_zone = fabric.jurisdictions(rule.transit_in)
                assert all(inside(j, allowed_zone) for j in path.transits)
            if path is not None and rule.require_private_path:
                assert path.private
            if model is not None and rule.models.hosted_in:
                assert inside(site.jurisdiction_code, fabric.jurisdictions(rule.models.hosted_in))
            if model == "closed":
                assert not rule.models.require_open_weights


@given(sites, rules, st.text(min_size=1, max_size=8))
@settings(max_examples=100, deadline=None)
def test_unknown_class_is_refused(site_list, rule_list, name):
    fabric = build(site_list, rule_list)
    policy = compile_policy(fabric)
    for site in site_list:
        verdict = policy.evaluate(name, site.name)
        if name not in CLASSES:
            assert not verdict.allowed
            assert verdict.clause == "unknown-data-class"


def test_uncovered_class_names_fail_closed(mini):
    verdict = compile_policy(mini).evaluate("orphan", "onprem-paris")
    assert not verdict.allowed
    assert (verdict.rule, verdict.clause) == ("fail-closed", "no-rule")


def test_unknown_site_and_model_are_refused(mini):
    policy = compile_policy(mini)
    assert policy.evaluate("public", "atlantis").clause == "unknown-site"
    assert policy.evaluate("public", "onprem-paris", model="gpt-9").clause == "unknown-model"


def test_subdivision_inside_country_but_not_conversely():
    assert inside("US-CA", frozenset({"US"}))
    assert not inside("US", frozenset({"US-CA"}))
    assert not inside("US-VA", frozenset({"US-CA"}))
