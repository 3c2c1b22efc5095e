"""Replace spans of a text with markers that name what was there, never what it was.

Invariant: overlapping or touching spans merge into one marker (named after the first
category); text outside the spans is returned unchanged, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MARKER", "marker", "merge_spans", "redact"]

MARKER = "[REDACTED:{category}]"


def marker(category: str) -> str:
    return MARKER.format(category=category)


def merge_spans(spans: Iterable[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, category in sorted(spans):
        if merged and start <= merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, category))
    return merged


def redact(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, category) span replaced by its marker."""
    out: list[str] = []
    position = 0
    for start, end, category in merge_spans(spans):
        out.append(text[position:start])
        out.append(marker(category))
        position = end
    out.append(text[position:])
    return "".join(out)
