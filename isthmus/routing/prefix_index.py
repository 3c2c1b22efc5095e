"""An approximate, per-endpoint index of the prompt prefixes each engine holds in its KV cache.

Each endpoint has an LRU set of chained block hashes (the hash of block *i* covers blocks
0..i, so a matched hash implies the whole prefix before it is matched too), sized from the
engine's cache capacity. An inverted map from hash to a bitmask of the endpoints holding it
makes a lookup cost O(log n) dict lookups per distinct holder set along an n-block chain
(``runs``), not O(endpoints); the bitmasks become per-endpoint depths only at the end
(``match_levels``), densely by numpy or bit by bit, whichever is cheaper for the holders.

Invariants: an endpoint never holds more than ``capacity_blocks`` hashes; the inverted map and
the per-endpoint LRUs always agree; the blocks an endpoint holds of any chain are a prefix of
it (eviction takes tails first). Callers keep the chaining precondition: equal hashes mean
equal prefixes, so a chain never repeats a hash. The index learns from routing decisions
(``record``) and from what an engine reports (``observe``: the prompt it served is resident),
and unlearns what a request recorded when it failed before its engine computed the prompt
(``retract``: the blocks that request added and nothing has touched since).
Recording costs O(log n) lookups and C-level dict updates for an n-block chain plus a Python
step per block newly held or evicted, not per block of the chain (``_Recency``): the gateway
records every request it routes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = ["Insertion", "PrefixIndex"]

SPARSE_HOLDERS = 8
"""A run held by at most this many endpoints has them set one by one in Python (0.15-0.2 us
each); denser runs are unpacked by numpy (2.5 us for the first, 3-4 us for several, on 500
endpoints). Eight is about where the two cost the same."""


class Insertion(NamedTuple):
    """What one ``record`` added to an endpoint: the blocks from ``held`` on of the chain of
    ``entry``, its record in the endpoint's recency log (``retract`` takes them back)."""

    endpoint: int
    entry: list[Any]
    held: int


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
        """Matched prefix length in blocks for every endpoint (``None`` if nobody matches)."""
        found = self.match_levels(hashes)
        if found is None:
            return None
        levels, depths = found
        depth: npt.NDArray[np.float64] = np.asarray(depths, dtype=np.float64)[levels]
        return depth

    def match_levels(
        self, hashes: Sequence[int], endpoints: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.integer[Any]], list[int]] | None:
        """The matched prefix of ``endpoints`` (default: all, in order) as ``(levels, depths)``:
        endpoint ``endpoints[k]`` matches ``depths[levels[k]]`` blocks; ``None`` if nobody
        matches. ``depths`` has one entry per distinct matched length (``depths[0]`` is 0), so
        a caller can compute anything that depends on the depth once per distinct value and
        spread it with one ``take``.

        The holders of the chain's runs are nested (see ``runs``), so an endpoint's level is
        the number of runs it holds, and the runs held by more than ``SPARSE_HOLDERS``
        endpoints (typically one: a system prompt most replicas hold) come first. Those are
        unpacked by numpy; the endpoints of the sparse ones (usually the replica or two that
        served the conversation before) are set one by one."""
        runs = self.runs(hashes)
        if not runs:
            return None
        depths = [0]
        for _, blocks in runs:
            depths.append(depths[-1] + blocks)
        dense = [mask for mask, _ in runs if mask.bit_count() > SPARSE_HOLDERS]
        if len(dense) == 1:
            levels = self._unpack(dense[0])
        elif dense:
            levels = self._unpack_many(dense).sum(axis=0, dtype=np.intp)
        else:
            levels = np.zeros(self._bytes * 8, dtype=np.uint8)
        if len(runs) >= 255:  # more levels than a uint8 counts
            levels = levels.astype(np.intp)
        if len(dense) < len(runs):
            # an endpoint of the outermost sparse run holds all the dense ones, and the inner
            # sparse runs it is in
            outer = runs[len(dense)][0]
            inner = [mask for mask, _ in runs[len(dense) + 1 :]]
            base = len(dense) + 1
            while outer:
                low = outer & -outer
                endpoint = low.bit_length() - 1
                level = base
                for mask in inner:
                    level += mask >> endpoint & 1
                levels[endpoint] = level
                outer ^= low
        return (levels[: self._n] if endpoints is None else levels[endpoints]), depths

    def runs(self, hashes: Sequence[int]) -> list[tuple[int, int]]:
        """The chain's matched prefix as runs of equal holders, outermost first: ``(bitmask of
        the endpoints holding the run, blocks in the run)``; empty if nobody holds block 0.

        Because a held block always comes with the prefix before it (see ``record``), the sets
        of holders along a chain are nested: ``holders(h[d+1]) ⊆ holders(h[d])``. So each run's
        holders are a strict subset of the previous run's, an endpoint's matched depth is the
        total length of the runs it holds, and each run's end is found by bisection: O(k log n)
        lookups for k runs over an n-block prompt.
        """
        get = self._holders.get
        if not hashes:
            return []
        mask = get(hashes[0], 0)
        if not mask:
            return []
        last = len(hashes) - 1
        last_mask = get(hashes[last], 0)
        if not last_mask:  # the deepest held block: holders are nonempty up to it
            last = self._last_held(hashes, 0, last)
            last_mask = get(hashes[last], 0) if last else mask
        runs = []
        start = 0
        while mask != last_mask:
            # hashes[lo] is held by ``mask``, hashes[hi] (held by ``hi_mask``) is not
            lo, hi, hi_mask = start, last, last_mask
            while hi - lo > 1:
                mid = (lo + hi) // 2
                mid_mask = get(hashes[mid], 0)
                if mid_mask == mask:
                    lo = mid
                else:
                    hi, hi_mask = mid, mid_mask
            runs.append((mask, lo - start + 1))
            start, mask = hi, hi_mask
        runs.append((mask, last - start + 1))
        return runs

    def _unpack(self, mask: int) -> npt.NDArray[np.uint8]:
        """One bit per endpoint, as a new uint8 array (padded to whole bytes)."""
        raw = np.frombuffer(mask.to_bytes(self._bytes, "little"), dtype=np.uint8)
        return np.unpackbits(raw, bitorder="little")

    def _unpack_many(self, masks: list[int]) -> npt.NDArray[np.uint8]:
        size = self._bytes
        raw = np.frombuffer(b"".join(m.to_bytes(size, "little") for m in masks), dtype=np.uint8)
        return np.unpackbits(raw.reshape(len(masks), size), axis=1, bitorder="little")

    def record(self, endpoint: int, hashes: Sequence[int]) -> Insertion | None:
        """The endpoint is about to hold this prompt's blocks. The first block becomes the most
        recently used, so eviction takes a prompt's tail first and a held block always comes
        with the prefix before it (as in vLLM, which frees a sequence's blocks tail first).
        Returns what the endpoint did not hold before (``None`` if nothing), for ``retract``.

        Cost: O(log n) lookups and C-level updates over the n-block chain, plus one Python step
        per block the endpoint did not hold yet and per block evicted (see ``_Recency``)."""
        if not hashes:
            return None
        recency = self._recency[endpoint]
        held = recency.touch(hashes)
        inserted = None
        if held < len(hashes):
            inserted = Insertion(endpoint, recency.log[-1], held)  # touch logged it last
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
        return inserted

    def retract(self, inserted: Insertion) -> int:
        """The request that ``record`` returned ``inserted`` for failed before its engine
        computed the prompt: drop the blocks it added that are still held from that record.
        Blocks held before it stay, and so do blocks touched since (by a later request, which
        will compute them, or an engine's report), and the ones evicted meanwhile are gone
        already. Returns how many blocks were dropped.

        Cost: O(log n) lookups plus a Python step per block dropped (the same as evicting
        them); calling it again drops nothing."""
        endpoint = inserted.endpoint
        blocks = self._recency[endpoint].take_back(inserted.entry, inserted.held)
        holders = self._holders
        keep = ~(1 << endpoint)
        for block in blocks:  # held: its mask has the endpoint's bit
            mask = holders[block] & keep
            if mask:
                holders[block] = mask
            else:
                del holders[block]
        return len(blocks)

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
        holders = self._holders  # masks are never 0: a block nobody holds is not a key
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if hashes[mid] in holders:
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

    def take_back(self, entry: list[Any], held: int) -> Sequence[int]:
        """Remove the blocks of ``entry``'s chain from position ``held`` on that are still held
        from it; returns them. Its live blocks ``chain[start:end]`` run to the end of what is
        left of it (stale ones are a prefix, evicted ones the tail), so the ones removed are the
        tail of that range, and the record keeps the rest."""
        start = max(self._live_start(entry), held)
        end = entry[3]
        if start >= end:
            return ()
        blocks: Sequence[int] = entry[1][start:end]
        serial = self.serial
        for block in blocks:
            del serial[block]
        entry[3] = start
        return blocks

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
