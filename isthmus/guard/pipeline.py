"""One direction's inspection: normalise the text first, run its inspectors, map spans back.

Invariants: every inspector sees the same detection view (``isthmus.guard.normalize``), never
the raw text; every finding leaves the pipeline with its span in the *original* text, so a
redaction removes what the client actually sent (invisible characters inside it included).
Text smuggled in tag characters is inspected too: it yields one finding for the smuggling
itself (``evasion.tag_smuggling``) and the inspectors' findings on the decoded text, all
spanning the run of tag characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from isthmus.guard.findings import Direction, Finding, InspectionContext, Inspector
from isthmus.guard.normalize import NormalizedText, normalize

__all__ = ["MIN_HIDDEN_CHARS", "Inspection", "Pipeline"]

MIN_HIDDEN_CHARS = 4
"""Shorter tag-character runs are left alone (emoji subdivision flags use a few)."""


@dataclass(frozen=True, slots=True)
class Inspection:
    """A text's normalised form and every finding, spans in the original text."""

    normalized: NormalizedText
    findings: tuple[Finding, ...]


def _tag_region(text: str) -> tuple[int, int]:
    positions = [i for i, c in enumerate(text) if 0xE0000 <= ord(c) <= 0xE007F]
    return (positions[0], positions[-1] + 1) if positions else (0, 0)


@dataclass(frozen=True, slots=True)
class Pipeline:
    direction: Direction
    inspectors: tuple[Inspector, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inspectors)

    def run(self, text: str, context: InspectionContext) -> Inspection:
        normalized = normalize(text)
        ctx = self._context(context, normalized)
        findings: list[Finding] = []
        for inspector in self.inspectors:
            for finding in inspector.inspect(normalized.text, ctx):
                findings.append(
                    finding.shifted(*normalized.origin_span(finding.start, finding.end))
                )
        if len(normalized.hidden) >= MIN_HIDDEN_CHARS:
            findings.extend(self._hidden(normalized, ctx))
        return Inspection(normalized, tuple(findings))

    def _context(self, context: InspectionContext, normalized: NormalizedText) -> InspectionContext:
        """What the inspectors see besides the view: ``context`` in this direction, with the
        normalised text as ``source`` when the view differs from the original. A text that is
        its own view (plain ASCII, the common case) has no source nor hidden text to add, so a
        caller's context already in this direction serves as is: no copy per text."""
        if not normalized.changed:
            if context.direction == self.direction and context.source is None:
                return context
            return context.but(direction=self.direction, source=None, hidden="")
        return context.but(direction=self.direction, source=normalized, hidden=normalized.hidden)

    def _hidden(self, normalized: NormalizedText, context: InspectionContext) -> Sequence[Finding]:
        start, end = _tag_region(normalized.original)
        category = "unsafe_output" if self.direction == "output" else "prompt_injection"
        out = [
            Finding(
                category,
                "evasion.tag_smuggling",
                start,
                end,
                0.9,
                f"{len(normalized.hidden)} characters hidden in Unicode tag characters",
            )
        ]
        for inspector in self.inspectors:
            for finding in inspector.inspect(normalized.hidden, context):
                out.append(
                    Finding(
                        finding.category,
                        finding.rule + ".hidden",
                        start,
                        end,
                        finding.score,
                        "in text hidden in tag characters",
                    )
                )
        return out
