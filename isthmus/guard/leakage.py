"""System-prompt leakage: the tenant's canary token, or long runs of its system prompt, in output.

Invariants: a canary is reported wherever it appears (case-insensitive, after normalisation,
so zero-width characters inside it do not hide it). Overlap is measured on word
``SHINGLE_WORDS``-grams: the text leaks when it shares at least one shingle with the system
prompt; the finding spans the shared words and its score is the share of the system prompt's
shingles that appeared (at least 0.6, so any shared run is acted on by default).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from isthmus.guard.findings import Finding, InspectionContext

__all__ = ["SHINGLE_WORDS", "SystemPromptLeakInspector"]

SHINGLE_WORDS = 8
_WORD = re.compile(r"\w+")


def _words(text: str) -> list[tuple[str, int, int]]:
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(text)]


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1)}


class SystemPromptLeakInspector:
    """Canary and n-gram overlap with the tenant's system prompt (see module invariants)."""

    name = "leakage"

    def inspect(self, text: str, context: InspectionContext) -> Sequence[Finding]:
        out: list[Finding] = []
        canary = context.canary
        if canary:
            lowered, needle = text.lower(), canary.lower()
            position = lowered.find(needle)
            while position >= 0:
                out.append(
                    Finding(
                        "system_prompt_leak", "leak.canary", position, position + len(needle), 1.0
                    )
                )
                position = lowered.find(needle, position + 1)
        if context.system_prompt:
            prompt = _shingles([w for w, _, _ in _words(context.system_prompt)])
            if prompt:
                words = _words(text)
                tokens = [w for w, _, _ in words]
                hits = [
                    i
                    for i in range(len(tokens) - SHINGLE_WORDS + 1)
                    if tuple(tokens[i : i + SHINGLE_WORDS]) in prompt
                ]
                if hits:
                    shared = {tuple(tokens[i : i + SHINGLE_WORDS]) for i in hits}
                    share = len(shared) / len(prompt)
                    start = words[hits[0]][1]
                    end = words[hits[-1] + SHINGLE_WORDS - 1][2]
                    out.append(
                        Finding(
                            "system_prompt_leak",
                            "leak.overlap",
                            start,
                            end,
                            max(0.6, min(1.0, share)),
                            f"{len(shared)} of {len(prompt)} system-prompt {SHINGLE_WORDS}-word runs",
                        )
                    )
        return out
