"""From findings to verdicts: combine evidence, apply the score floor, look up the action.

Invariants:

- Evidence of an attack is combined per text (``attack_score``): each rule or model that
  found ``prompt_injection``, ``jailbreak`` or ``indirect_injection`` in the text counts once,
  at its strongest finding, and those scores are joined by noisy-OR (``1 - prod(1 - s)``);
  each of those findings is judged at the combined score — a weak rule ("stay in character",
  0.45) and a borderline classifier score together cross the floor that neither crosses
  alone. One rule matching twice is not two independent pieces of evidence: a role-play
  prompt that says "unfiltered" twice is no more an attack than one that says it once. Other
  families are judged one finding at a time.
- A finding below the tenant's ``min_score`` gets no verdict; every other finding gets exactly
  one, with the action the policy resolves for (tenant, direction, category).
- A ``Verdict`` carries a keyed hash of the matched text (when the guard has a hasher), never
  the text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from isthmus.guard.findings import Action, Direction, Finding
from isthmus.guard.policy import GuardPolicy

__all__ = ["ATTACK_FAMILIES", "ContentHasher", "Verdict", "attack_score", "judge"]

ATTACK_FAMILIES = frozenset({"prompt_injection", "jailbreak", "indirect_injection"})
ContentHasher = Callable[[str], str]
"""Keyed hash of matched content for the audit log (e.g. ``isthmus.audit.ContentHasher``)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """One finding judged: what, by which rule, where, what happens, and a hash of the match."""

    direction: Direction
    category: str
    rule: str
    action: Action
    score: float
    location: str
    start: int
    end: int
    content_hash: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "direction": self.direction,
            "category": self.category,
            "rule": self.rule,
            "action": self.action,
            "score": round(self.score, 4),
            "location": self.location,
            "start": self.start,
            "end": self.end,
            "content_hash": self.content_hash,
            "detail": self.detail,
        }


def attack_score(findings: Sequence[Finding]) -> float:
    """Noisy-OR of the attack-family findings, each rule counted once at its strongest."""
    strongest: dict[str, float] = {}
    for finding in findings:
        if finding.family in ATTACK_FAMILIES:
            score = max(0.0, min(1.0, finding.score))
            if score > strongest.get(finding.rule, 0.0):
                strongest[finding.rule] = score
    miss = 1.0
    for score in strongest.values():
        miss *= 1.0 - score
    return 1.0 - miss


def judge(
    findings: Sequence[Finding],
    text: str,
    *,
    policy: GuardPolicy,
    tenant: str,
    direction: Direction,
    location: str,
    min_score: float,
    hasher: ContentHasher | None = None,
) -> list[Verdict]:
    """Verdicts for the findings of one text (see the module invariants)."""
    if not findings:
        return []
    combined = attack_score(findings)
    out: list[Verdict] = []
    for finding in findings:
        score = max(finding.score, combined) if finding.family in ATTACK_FAMILIES else finding.score
        if score < min_score:
            continue
        action = policy.action_for(tenant, direction, finding.category)
        content_hash = hasher(text[finding.start : finding.end]) if hasher is not None else ""
        out.append(
            Verdict(
                direction,
                finding.category,
                finding.rule,
                action,
                score,
                location,
                finding.start,
                finding.end,
                content_hash,
                finding.detail,
            )
        )
    return out
