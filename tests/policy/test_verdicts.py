"""Verdicts on the mini fabric: each refusal names the rule and clause behind it."""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.policy import compile_policy, explain


@dataclass(frozen=True)
class P:
    transits: frozenset[str]
    private: bool


def test_gdpr_refuses_us_processing_by_rule(mini):
    verdict = compile_policy(mini).evaluate("pii", "aws-us-east-1")
    assert not verdict.allowed
    assert (verdict.rule, verdict.clause) == ("gdpr-pii", "process_in")
    assert "US-VA" in verdict.reason and "EEA" in verdict.reason


def test_key_custody_condition(mini):
    verdict = compile_policy(mini).evaluate("pii", "aws-eu-central-1")
    assert (verdict.rule, verdict.clause) == ("gdpr-pii", "sites.deny_tags.key_custody")


def test_transit_through_third_country_is_refused(mini):
    policy = compile_policy(mini)
    ok = policy.evaluate("pii", "onprem-paris", P(frozenset({"DE", "FR"}), False))
    bad = policy.evaluate("pii", "onprem-paris", P(frozenset({"DE", "US", "FR"}), False))
    assert ok.allowed
    assert (bad.rule, bad.clause) == ("gdpr-pii", "transit_in")
    assert "US" in bad.reason


def test_private_path_required_for_phi(mini):
    policy = compile_policy(mini)
    public = policy.evaluate("phi", "aws-us-east-1", P(frozenset({"US"}), False))
    private = policy.evaluate("phi", "aws-us-east-1", P(frozenset({"US"}), True))
    assert (public.allowed, public.clause) == (False, "require_private_path")
    assert private.allowed


def test_closed_model_refused_for_pii_and_by_its_hosting_terms(mini):
    policy = compile_policy(mini)
    verdict = policy.evaluate("pii", "onprem-paris", model="closed-large")
    assert (verdict.rule, verdict.clause) == ("model:closed-large", "hosting.providers")
    assert policy.evaluate("pii", "onprem-paris", model="llama-3.1-8b").allowed


def test_store_falls_back_to_process_zone(mini):
    policy = compile_policy(mini)
    assert policy.evaluate("pii", "onprem-paris", action="store").allowed
    refused = policy.evaluate("pii", "aws-us-east-1", action="store")
    assert (refused.allowed, refused.clause) == (False, "process_in")


def test_explain_lists_every_check(mini):
    verdict, checks = explain(mini, "pii", "onprem-paris", model="llama-3.1-8b")
    assert verdict.allowed and verdict.rule == "gdpr-pii"
    assert [c.clause for c in checks] == [
        "process_in",
        "sites.deny_tags.key_custody",
        "models.require_open_weights",
    ]
    assert all(c.passed for c in checks)
