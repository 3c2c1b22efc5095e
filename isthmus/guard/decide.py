"""From findings to verdicts: combine evidence, apply the score floor, look up the action.

Invariants:

- Evidence of an attack is combined per text: the scores of all ``prompt_injection``,
  ``jailbreak`` and ``indirect_injection`` findings in one text are joined by noisy-OR
  (``1 - prod(1 - s)``), and each of those findings is judged at the combined score — a weak
  rule ("stay in character", 0.45) and a borderline classifier score together cross the floor
  that neither crosses alone. Other families are judged one finding at a time.
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

__all__ = ["ATTACK_FAMILIES", "ContentHasher", "Verdict", "judge"]

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


def _combined(findings: Sequence[Finding]) -> float:
    miss = 1.0
    for finding in findings:
        if finding.family in ATTACK_FAMILIES:
            miss *= 1.0 - max(0.0, min(1.0, finding.score))
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
    attack_score = _combined(findings)
    out: list[Verdict] = []
    for finding in findings:
        score = (
            max(finding.score, attack_score) if finding.family in ATTACK_FAMILIES else finding.score
        )
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
