"""Combining attack evidence: each rule counts once, different rules add up."""

from __future__ import annotations

import pytest

from isthmus.guard import GuardPolicy
from isthmus.guard.decide import attack_score, judge
from isthmus.guard.findings import Finding

TEXT = "x" * 200


def verdicts(findings: list[Finding]) -> list[str]:
    judged = judge(
        findings,
        TEXT,
        policy=GuardPolicy(),
        tenant="acme",
        direction="input",
        location="messages[0]",
        min_score=0.5,
    )
    return [v.rule for v in judged]


def test_one_rule_matching_twice_is_one_piece_of_evidence() -> None:
    twice = [
        Finding("jailbreak", "jailbreak.amoral_persona", 0, 20, 0.45),
        Finding("jailbreak", "jailbreak.amoral_persona", 100, 120, 0.45),
    ]
    assert attack_score(twice) == pytest.approx(0.45)
    assert verdicts(twice) == []


def test_two_weak_rules_together_cross_the_floor() -> None:
    both = [
        Finding("jailbreak", "jailbreak.amoral_persona", 0, 20, 0.45),
        Finding("jailbreak", "jailbreak.stay_in_character", 100, 120, 0.45),
    ]
    assert attack_score(both) == pytest.approx(1 - 0.55 * 0.55)
    assert verdicts(both) == ["jailbreak.amoral_persona", "jailbreak.stay_in_character"]


def test_a_rule_counts_at_its_strongest_match() -> None:
    findings = [
        Finding("indirect_injection", "classifier.context", 0, 20, 0.3),
        Finding("indirect_injection", "classifier.context", 30, 50, 0.6),
        Finding("indirect_injection", "indirect.task_request", 30, 50, 0.45),
    ]
    assert attack_score(findings) == pytest.approx(1 - 0.4 * 0.55)


def test_other_families_are_not_attack_evidence() -> None:
    findings = [
        Finding("pii:email", "pii.email", 0, 10, 1.0),
        Finding("jailbreak", "jailbreak.stay_in_character", 20, 40, 0.45),
    ]
    assert attack_score(findings) == pytest.approx(0.45)
    assert verdicts(findings) == ["pii.email"]
