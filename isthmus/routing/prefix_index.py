"""An approximate, per-endpoint index of the prompt prefixes each engine holds in its KV cache.

Each endpoint has an LRU set of chained block hashes (the hash of block *i* covers blocks
0..i, so a matched hash implies the whole prefix before it is matched too), sized from the
engine's cache capacity. An inverted map from hash to a bitmask of the endpoints holding it
makes a lookup cost O(prefix blocks matched), not O(endpoints): the walk along the request's
chain keeps only the endpoints still matching, and stops when none is left.

Invariants: an endpoint never holds more than ``capacity_blocks`` hashes; the inverted map and
the per-endpoint LRUs always agree. The index learns from routing decisions (``record``) and is
corrected by what an engine reports (``observe``: its ``cached_tokens`` for a request tells how
much of the prefix it really held; anything the index believed beyond that is forgotten).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["PrefixIndex"]

LINEAR_WALK_BLOCKS = 48
"""Below this many held levels a plain walk is cheaper than bisection."""


class PrefixIndex:
    def __init__(self, capacity_blocks: Sequence[int]) -> None:
        self._capacity = list(capacity_blocks)
        self._lru: list[OrderedDict[int, None]] = [OrderedDict() for _ in capacity_blocks]
        # hash -> bitmask of the endpoints holding it (Python ints: AND/OR of hundreds of
        # endpoints cost tens of nanoseconds)
        self._holders: dict[int, int] = {}
        self._n = len(self._capacity)
        self._bytes = (self._n + 7) // 8

    def __len__(self) -> int:
        return self._n

    def blocks_held(self, endpoint: int) -> int:
        return len(self._lru[endpoint])

    def holds(self, endpoint: int, block: int) -> bool:
        return bool(self._holders.get(block, 0) >> endpoint & 1)

    def match(self, hashes: Sequence[int]) -> npt.NDArray[np.float64] | None:
        """Matched prefix length in blocks for every endpoint (``None`` if nobody matches).

        Because a held block always comes with the prefix before it (see ``record``), the sets
        of holders along a chain are nested: ``holders(h[d+1]) ⊆ holders(h[d])``. So the set at
        each depth is just the holders of that block, equal sets bracket equal runs, and the
        runs are found by bisection: O(k log n) lookups for k distinct depths over an n-block
        prompt (short prompts are walked block by block), then one matrix product over their bits.
        """
        get = self._holders.get
        if not hashes:
            return None
        first = get(hashes[0], 0)
        if not first:
            return None
        last = len(hashes) - 1
        if not get(hashes[last], 0):  # deepest held level: holders are nonempty up to it
            lo, hi = 0, last
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if get(hashes[mid], 0):
                    lo = mid
                else:
                    hi = mid
            last = lo
        masks: list[int] = []
        runs: list[float] = []
        if last < LINEAR_WALK_BLOCKS:
            self._walk(hashes, last, masks, runs)
        else:
            self._bisect(hashes, first, last, masks, runs)
        size = self._bytes
        raw = np.frombuffer(b"".join(m.to_bytes(size, "little") for m in masks), dtype=np.uint8)
        bits = np.unpackbits(raw, bitorder="little").reshape(len(masks), size * 8)[:, : self._n]
        return np.asarray(runs, dtype=np.float64) @ bits

    def _walk(self, hashes: Sequence[int], last: int, masks: list[int], runs: list[float]) -> None:
        get = self._holders.get
        current = get(hashes[0], 0)
        run = 0
        for block in hashes[: last + 1]:
            mask = get(block, 0)
            if mask != current:
                masks.append(current)
                runs.append(run)
                current, run = mask, 0
            run += 1
        masks.append(current)
        runs.append(run)

    def _bisect(
        self, hashes: Sequence[int], first: int, last: int, masks: list[int], runs: list[float]
    ) -> None:
        get = self._holders.get
        stack = [(0, first, last, get(hashes[last], 0))]
        while stack:
            lo, low_mask, hi, high_mask = stack.pop()
            if low_mask == high_mask:
                masks.append(low_mask)
                runs.append(hi - lo + 1)
            elif hi - lo == 1:
                masks.extend((low_mask, high_mask))
                runs.extend((1, 1))
            else:
                mid = (lo + hi) // 2
                mid_mask = get(hashes[mid], 0)
                stack.append((mid, mid_mask, hi, high_mask))
                stack.append((lo, low_mask, mid - 1, get(hashes[mid - 1], 0)))

    def record(self, endpoint: int, hashes: Sequence[int]) -> None:
        """The endpoint is about to hold this prompt's blocks. The first block becomes the most
        recently used, so eviction takes a prompt's tail first and a held block always comes
        with the prefix before it (as in vLLM, which frees a sequence's blocks tail first)."""
        lru = self._lru[endpoint]
        bit = 1 << endpoint
        holders = self._holders
        for block in reversed(hashes):
            if block in lru:
                lru.move_to_end(block)
            else:
                lru[block] = None
                holders[block] = holders.get(block, 0) | bit
        self._evict(endpoint)

    def observe(self, endpoint: int, hashes: Sequence[int], cached_blocks: int) -> None:
        """The engine reported ``cached_blocks`` of this prompt were cached: forget the rest of
        what we believed it held from this chain, then record the prompt as now resident."""
        lru = self._lru[endpoint]
        for block in hashes[cached_blocks:]:
            if block in lru:
                del lru[block]
                self._drop_holder(block, endpoint)
        self.record(endpoint, hashes)

    def forget(self, endpoint: int) -> None:
        """The endpoint restarted or was replaced: its cache is empty."""
        for block in self._lru[endpoint]:
            self._drop_holder(block, endpoint)
        self._lru[endpoint].clear()

    def _evict(self, endpoint: int) -> None:
        lru = self._lru[endpoint]
        capacity = self._capacity[endpoint]
        while len(lru) > capacity:
            block, _ = lru.popitem(last=False)
            self._drop_holder(block, endpoint)

    def _drop_holder(self, block: int, endpoint: int) -> None:
        mask = self._holders.get(block)
        if mask is not None:
            mask &= ~(1 << endpoint)
            if mask:
                self._holders[block] = mask
            else:
                del self._holders[block]
