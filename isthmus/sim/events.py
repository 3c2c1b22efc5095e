"""A discrete-event core: a heap of timed callbacks and a virtual clock.

Invariant: callbacks run in non-decreasing time order, ties in scheduling order; ``now`` never
moves backwards. Nothing here knows about engines or routing.

A long run of arrivals known in advance (a trace) need not sit in the heap: ``feed`` gives the
loop a time-sorted stream that it merges with the heap lazily, as if every item had been
scheduled with ``at`` before anything else (so a stream item runs before a heap event at the
same time). A million-request trace then costs one pending item, not a million heap entries.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["EventLoop"]

_Item = tuple[float, Callable[..., None], tuple[Any, ...]]


class EventLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._stream: Iterator[_Item] = iter(())
        self._next: _Item | None = None
        self.events_run = 0

    def at(self, time_s: float, callback: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (max(time_s, self.now), next(self._seq), callback, args))

    def after(self, delay_s: float, callback: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay_s, callback, *args)

    def feed(self, items: Iterable[_Item]) -> None:
        """Run ``(time_s, callback, args)`` items, sorted by time, ahead of heap events at the
        same time. Only one stream at a time (feed before ``run``); an item earlier than the one
        before it raises ValueError when it is reached."""
        if self._next is not None:
            raise ValueError("the loop already has a stream to feed")
        self._stream = iter(items)
        self._next = next(self._stream, None)

    @property
    def feeding(self) -> bool:
        """Whether stream items are still to run."""
        return self._next is not None

    def run(self, until_s: float = float("inf")) -> None:
        heap = self._heap
        pop = heapq.heappop
        stream = self._stream
        item = self._next
        while True:
            if item is not None and (not heap or item[0] <= heap[0][0]):
                time_s, callback, args = item
                if time_s > until_s:
                    break
                item = self._next = next(stream, None)
                if item is not None and item[0] < time_s:
                    raise ValueError(
                        f"fed items must be sorted by time: {item[0]} s comes after {time_s} s"
                    )
                time_s = max(time_s, self.now)
            elif heap and heap[0][0] <= until_s:
                time_s, _, callback, args = pop(heap)
            else:
                break
            self.now = time_s
            callback(*args)
            self.events_run += 1

    def __len__(self) -> int:
        return len(self._heap) + (self._next is not None)
