"""A discrete-event core: a heap of timed callbacks and a virtual clock.

Invariant: callbacks run in non-decreasing time order, ties in scheduling order; ``now`` never
moves backwards. Nothing here knows about engines or routing.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

__all__ = ["EventLoop"]


class EventLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.events_run = 0

    def at(self, time_s: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (max(time_s, self.now), next(self._seq), callback, args))

    def after(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay_s, callback, *args)

    def run(self, until_s: float = float("inf")) -> None:
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= until_s:
            time_s, _, callback, args = pop(heap)
            self.now = time_s
            callback(*args)
            self.events_run += 1

    def __len__(self) -> int:
        return len(self._heap)
