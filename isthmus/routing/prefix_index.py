"""An approximate, per-endpoint index of the prompt prefixes each engine holds in its KV cache.

Each endpoint has an LRU set of chained block hashes (the hash of block *i* covers blocks
0..i, so a matched hash implies the whole prefix before it is matched too), sized from the
engine's cache capacity. An inverted map from hash to a bitmask of the endpoints holding it
makes a lookup cost O(prefix blocks matched), not O(endpoints): the walk along the request's
chain keeps only the endpoints still matching, and stops when none is left.

Invariants: an endpoint never holds more than ``capacity_blocks`` hashes; the inverted map and
the per-endpoint LRUs always agree; the blocks an endpoint holds of any chain are a prefix of
it (eviction takes tails first). Callers keep the chaining precondition: equal hashes mean
equal prefixes, so a chain never repeats a hash. The index learns from routing decisions
(``record``) and from what an engine reports (``observe``: the prompt it served is resident).
Recording costs O(log n) lookups and C-level dict updates for an n-block chain plus a Python
step per block newly held or evicted, not per block of the chain (``_Recency``): the gateway
records every request it routes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PrefixIndex"]

LINEAR_WALK_BLOCKS = 48
"""Below this many held levels a plain walk is cheaper than bisection."""


class PrefixIndex:
    def __init__(self, capacity_blocks: Sequence[int]) -> None:
        self._capacity = list(capacity_blocks)
        self._recency = [_Recency() for _ in capacity_blocks]
        # hash -> bitmask of the endpoints holding it (Python ints: AND/OR of hundreds of
        # endpoints cost tens of nanoseconds)
        self._holders: dict[int, int] = {}
        self._n = len(self._capacity)
        self._bytes = (self._n + 7) // 8

    def __len__(self) -> int:
        return self._n

    def blocks_held(self, endpoint: int) -> int:
        return len(self._recency[endpoint].serial)

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
            last = self._last_held(hashes, 0, last)
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
        with the prefix before it (as in vLLM, which frees a sequence's blocks tail first).

        Cost: O(log n) lookups and C-level updates over the n-block chain, plus one Python step
        per block the endpoint did not hold yet and per block evicted (see ``_Recency``)."""
        if not hashes:
            return
        recency = self._recency[endpoint]
        held = recency.touch(hashes)
        if held < len(hashes):
            self._add_holder(endpoint, hashes, held)
        excess = len(recency.serial) - self._capacity[endpoint]
        if excess > 0:
            holders = self._holders
            keep = ~(1 << endpoint)
            for block in recency.evict(excess):  # held: its mask has the endpoint's bit
                mask = holders[block] & keep
                if mask:
                    holders[block] = mask
                else:
                    del holders[block]

    def observe(self, endpoint: int, hashes: Sequence[int], cached_blocks: int) -> None:
        """The engine reported ``cached_blocks`` of this prompt were cached: forget the rest of
        what we believed it held from this chain, then record the prompt as now resident.

        Forgetting blocks and recording them again leaves them exactly where ``record`` alone
        puts them (most recent, tail first, held by the endpoint), so this is ``record``."""
        self.record(endpoint, hashes)

    def forget(self, endpoint: int) -> None:
        """The endpoint restarted or was replaced: its cache is empty."""
        recency = self._recency[endpoint]
        for block in recency.serial:
            self._drop_holder(block, endpoint)
        recency.clear()

    def _last_held(self, hashes: Sequence[int], lo: int, hi: int) -> int:
        """The last block of ``hashes`` with holders, by bisection, given that ``hashes[lo]``
        has holders (or ``lo`` is -1) and ``hashes[hi]`` has none (or ``hi`` is past the end);
        holders are nested along a chain, so the held blocks are a prefix."""
        get = self._holders.get
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if get(hashes[mid], 0):
                lo = mid
            else:
                hi = mid
        return lo

    def _add_holder(self, endpoint: int, hashes: Sequence[int], held: int) -> None:
        """Set the endpoint's bit on ``hashes[held:]``. Blocks nobody holds form a suffix of
        the chain (holders are nested along it); that suffix is set in one C-level update."""
        holders = self._holders
        get = holders.get
        bit = 1 << endpoint
        hi = self._last_held(hashes, held - 1, len(hashes)) + 1
        for block in hashes[held:hi]:
            holders[block] = get(block, 0) | bit
        if hi < len(hashes):
            holders.update(dict.fromkeys(hashes[hi:], bit))

    def _drop_holder(self, block: int, endpoint: int) -> None:
        mask = self._holders.get(block)
        if mask is not None:
            mask &= ~(1 << endpoint)
            if mask:
                self._holders[block] = mask
            else:
                del self._holders[block]


class _Recency:
    """One endpoint's LRU order of held blocks, as a log of recorded chains.

    ``record`` makes a chain the most recent, its last block first and its first block last,
    so the LRU order sorts held blocks by (the serial number of the latest record touching
    them, position from that chain's tail). ``serial`` maps each held block to that serial;
    ``log`` keeps the records oldest first as ``[serial, chain, start, end]``, the blocks still
    to be evicted from it lying in ``chain[start:end]``. Eviction pops blocks from the oldest
    record's tail, so it removes the same blocks in the same order as an ordered dict moved to
    the end block by block, but touching a chain costs C-level dict updates only.

    A block whose serial differs from its record's was touched again later. Because hashes are
    chained, a later chain touching block *d* touches every block before it: the stale blocks
    of a record are a prefix of it, and its live blocks ``chain[start:end]`` are found by
    bisection, never by walking stale ones. Records with no live block are dropped whenever
    the log has doubled, so the log stays proportional to the records holding blocks.
    """

    __slots__ = ("_compacted", "log", "next_serial", "serial")

    def __init__(self) -> None:
        self.serial: dict[int, int] = {}
        self.log: deque[list[Any]] = deque()
        self.next_serial = 0
        self._compacted = 0

    def clear(self) -> None:
        self.serial.clear()
        self.log.clear()
        self._compacted = 0

    def touch(self, hashes: Sequence[int]) -> int:
        """Make ``hashes`` the most recent chain; returns how many of its leading blocks were
        held already (held blocks of a chain are a prefix of it: a block is never evicted
        before the blocks preceding it)."""
        serial = self.serial
        lo, hi = -1, len(hashes)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if hashes[mid] in serial:
                lo = mid
            else:
                hi = mid
        self.next_serial += 1
        chain = hashes if isinstance(hashes, tuple) else tuple(hashes)
        serial.update(dict.fromkeys(chain, self.next_serial))
        self.log.append([self.next_serial, chain, 0, len(chain)])
        if len(self.log) > 2 * self._compacted + 32:
            self._compact()
        return hi

    def evict(self, count: int) -> list[int]:
        """Remove the ``count`` least recently used blocks; returns them, oldest first."""
        serial, log = self.serial, self.log
        out: list[int] = []
        while count > 0:
            entry = log[0]
            start = self._live_start(entry)
            end = entry[3]
            take = min(count, end - start)
            blocks = entry[1][end - take : end]
            for block in blocks:
                del serial[block]
            out.extend(reversed(blocks))
            count -= take
            if end - take > start:
                entry[2], entry[3] = start, end - take
            else:
                log.popleft()
        return out

    def _live_start(self, entry: list[Any]) -> int:
        """The first block of ``entry`` still held from it (``entry[3]`` if none)."""
        number, chain, lo, hi = entry
        get = self.serial.get
        if lo < hi and get(chain[lo]) == number:
            return int(lo)
        # chain[lo] is stale; find the first live one in (lo, hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if get(chain[mid]) == number:
                hi = mid
            else:
                lo = mid
        return int(hi)

    def _compact(self) -> None:
        kept: deque[list[Any]] = deque()
        for entry in self.log:
            start = self._live_start(entry)
            if start < entry[3]:
                entry[2] = start
                kept.append(entry)
        self.log = kept
        self._compacted = len(kept)
