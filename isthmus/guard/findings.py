"""What inspectors report and the one protocol they share.

Invariants:

- A ``Finding`` names a category (``prompt_injection``, ``pii:email``, ``secret:aws_access_key``,
  …; the part before ``:`` is its *family*), the rule that fired, the span it covers and a
  score in [0, 1]. It never carries the matched text: whoever needs that (redaction, the audit
  hash) slices it from the text it was found in, so a finding can be logged or shown as is.
- An ``Inspector`` is pure: the same text and context give the same findings, it keeps no
  state between calls and does no I/O. Spans index the text it was given (the pipeline hands
  it the Unicode-normalised detection view and maps spans back to the original).
- Actions are ordered by severity: ``allow`` < ``flag`` < ``redact`` < ``block``; a decision
  over several findings takes the most severe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from isthmus.guard.normalize import NormalizedText

__all__ = [
    "ACTION_SEVERITY",
    "CATEGORIES",
    "Action",
    "Direction",
    "Finding",
    "InspectionContext",
    "Inspector",
    "ToolRule",
    "family_of",
    "most_severe",
]

Direction = Literal["input", "context", "output"]
Action = Literal["allow", "flag", "redact", "block"]

ACTION_SEVERITY: Mapping[Action, int] = {"allow": 0, "flag": 1, "redact": 2, "block": 3}

CATEGORIES: tuple[str, ...] = (
    "prompt_injection",
    "jailbreak",
    "indirect_injection",
    "pii",
    "secret",
    "system_prompt_leak",
    "unsafe_output",
    "url",
    "tool_call",
    "consumption",
)
"""Category families; ``pii`` and ``secret`` findings add the entity or kind after a colon."""


def family_of(category: str) -> str:
    """``pii:email`` -> ``pii``; ``jailbreak`` -> ``jailbreak``."""
    return category.split(":", 1)[0]


def most_severe(actions: Sequence[Action]) -> Action:
    """The most severe of ``actions`` (``allow`` for none)."""
    best: Action = "allow"
    for action in actions:
        if ACTION_SEVERITY[action] > ACTION_SEVERITY[best]:
            best = action
    return best


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing an inspector found: what, by which rule, where, and how sure."""

    category: str
    rule: str
    start: int
    end: int
    score: float = 1.0
    detail: str = ""

    @property
    def family(self) -> str:
        return family_of(self.category)

    def shifted(self, start: int, end: int) -> Finding:
        """The same finding over another span (used to map spans between texts)."""
        return Finding(self.category, self.rule, start, end, self.score, self.detail)


@dataclass(frozen=True, slots=True)
class ToolRule:
    """What a tenant's agents may do with one tool: deny it, or constrain its arguments."""

    deny_families: frozenset[str] = frozenset()
    """Families of findings (``pii``, ``secret``, ``url``) refused inside the arguments."""
    max_argument_chars: int | None = None


@dataclass(frozen=True, slots=True)
class InspectionContext:
    """What an inspector may know besides the text: who asks, from where, under what settings.

    ``source`` is the normalised text the inspected view came from when the view differs from
    what the client sent (its ``original``: a look-alike domain is spotted by comparing the
    two); ``None`` when the text is its own view, as plain ASCII is. ``hidden`` is text
    smuggled in invisible tag characters (decoded by normalisation);
    ``system_prompt`` and ``canary`` let output inspectors detect leakage; ``tool_name`` is set
    when the text is the arguments of a tool call.
    """

    tenant: str = ""
    direction: Direction = "input"
    role: str = "user"
    source: NormalizedText | None = None
    hidden: str = ""
    system_prompt: str | None = None
    canary: str | None = None
    tool_name: str | None = None
    allowed_tools: frozenset[str] = frozenset({"*"})
    tool_rules: Mapping[str, ToolRule] = field(default_factory=dict)
    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    allow_domains: frozenset[str] = frozenset()
    deny_domains: frozenset[str] = frozenset()
    protected_domains: frozenset[str] = frozenset()

    def but(self, **changes: Any) -> InspectionContext:
        """A copy with ``changes`` — ``dataclasses.replace`` without its per-call field
        introspection (this runs several times per request on the gateway's path)."""
        values = {name: getattr(self, name) for name in _CONTEXT_FIELDS}
        values.update(changes)
        return InspectionContext(**values)


_CONTEXT_FIELDS = tuple(InspectionContext.__dataclass_fields__)


@runtime_checkable
class Inspector(Protocol):
    """Text and context in, findings out (see the module invariants)."""

    name: str

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]: ...
