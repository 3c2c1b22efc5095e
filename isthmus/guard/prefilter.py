"""Literal prefilters: which of several patterns can match a text, from substrings that every
match of a pattern contains (its *needles*).

Invariant: ``candidates`` keeps every item one of whose needles occurs in the text, and every
item without needles, in the order given; each needle is looked for once per text, however
many items name it. Exact only if every match of an item's pattern holds one of its needles
(tests/guard/test_prefilters.py checks that for the inspectors' tables).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

__all__ = ["Prefilter"]

T = TypeVar("T")


class Prefilter(Generic[T]):
    __slots__ = ("_items", "_needles", "_unconditional", "items")

    def __init__(self, items: Iterable[tuple[T, Iterable[str]]]) -> None:
        self._items = tuple((item, frozenset(needles)) for item, needles in items)
        self._needles = tuple(sorted({n for _, needles in self._items for n in needles}))
        self._unconditional = tuple(item for item, needles in self._items if not needles)
        self.items: tuple[T, ...] = tuple(item for item, _ in self._items)

    def candidates(self, text: str) -> Sequence[T]:
        """The items worth trying on ``text`` (see the module invariant)."""
        present = [n for n in self._needles if n in text]
        if not present:  # most texts: no item to look at one by one
            return self._unconditional
        found = frozenset(present)
        return [
            item for item, needles in self._items if not needles or not needles.isdisjoint(found)
        ]
