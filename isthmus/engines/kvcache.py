"""KV-cache blocks with a prefix cache: reference counts and LRU eviction, as in vLLM.

The cache holds ``num_blocks`` blocks of ``block_tokens`` tokens each. Every block is in exactly
one of three states:

- **used**: ``refcount > 0``; held by one or more running sequences (shared prefix blocks are
  held by every sequence that reuses them);
- **cached**: ``refcount == 0`` but still holding a full block whose chained hash is known; a
  new sequence with the same prefix can revive it without recomputing (a prefix-cache hit);
- **free**: ``refcount == 0`` and holding nothing reusable.

Allocation takes free blocks first and then evicts cached blocks in least-recently-released
order (a sequence's blocks are released tail first, so a prompt's last blocks are evicted before
its first ones, which more requests share). Invariants (checked by :meth:`BlockPool.check`):
``0 <= refcount``; ``used + cached + free == num_blocks``; a hash maps to at most one block and
that block records the hash.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

__all__ = ["BlockPool"]

LOOKUP_FIRST_CHUNK = 32


class BlockPool:
    """A fixed pool of KV blocks with a chained-hash prefix cache."""

    __slots__ = ("_by_hash", "_cached", "_free", "_hash", "_refcount", "num_blocks")

    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self._refcount = [0] * num_blocks
        # block -> the chained hash it holds (full blocks only), a list: blocks are 0..n-1 and
        # a dict would be rebuilt over and over by the churn of allocation and registration
        self._hash: list[int | None] = [None] * num_blocks
        self._by_hash: dict[int, int] = {}
        self._free: list[int] = list(range(num_blocks - 1, -1, -1))  # a stack: pop() -> 0, 1, ...
        self._cached: OrderedDict[int, None] = OrderedDict()  # oldest release first

    # -- observables -----------------------------------------------------------------------
    @property
    def num_used(self) -> int:
        """Blocks held by at least one sequence."""
        return self.num_blocks - len(self._free) - len(self._cached)

    @property
    def num_available(self) -> int:
        """Blocks an allocation can take now: free plus evictable cached blocks."""
        return len(self._free) + len(self._cached)

    @property
    def num_cached(self) -> int:
        """Unreferenced blocks kept for prefix reuse."""
        return len(self._cached)

    def usage(self) -> float:
        """Fraction of blocks in use (vLLM's ``kv_cache_usage_perc``; cached blocks count free)."""
        return self.num_used / self.num_blocks

    def refcount(self, block: int) -> int:
        return self._refcount[block]

    # -- prefix cache ----------------------------------------------------------------------
    def lookup(self, hashes: Sequence[int]) -> list[int]:
        """Blocks holding the longest cached prefix of the hash chain ``hashes`` (no side effect)."""
        get = self._by_hash.get
        found: list[int | None] = []
        start, size = 0, LOOKUP_FIRST_CHUNK
        while start < len(hashes):  # in doubling chunks: a short hit never maps a long chain
            chunk = list(map(get, hashes[start : start + size]))
            if None in chunk:
                found += chunk[: chunk.index(None)]
                break
            found += chunk
            start += size
            size *= 2
        return found  # type: ignore[return-value]

    def can_allocate(self, new_blocks: int, reused: Iterable[int] = ()) -> bool:
        """Whether ``new_blocks`` can be allocated after reviving the ``reused`` cached blocks."""
        revived = sum(1 for b in reused if self._refcount[b] == 0)
        return new_blocks <= self.num_available - revived

    def acquire(self, blocks: Iterable[int]) -> None:
        """Add a reference to each of ``blocks`` (prefix hits), reviving cached ones."""
        refcount = self._refcount
        for b in blocks:
            if refcount[b] == 0:
                del self._cached[b]
            refcount[b] += 1

    def register(self, block: int, block_hash: int) -> None:
        """Record that used ``block`` now holds the full block with chained hash ``block_hash``.

        If another block already holds that hash (two sequences computed the same prefix at
        once), the cache keeps the first and this block stays unhashed.
        """
        if self._hash[block] is not None or block_hash in self._by_hash:
            return
        self._hash[block] = block_hash
        self._by_hash[block_hash] = block

    def register_many(self, blocks: Sequence[int], hashes: Sequence[int]) -> None:
        """``register`` each ``(block, hash)`` pair in order (one bulk update when none of them
        is known yet, the usual case: a sequence's freshly computed blocks)."""
        by_hash, hash_of = self._by_hash, self._hash
        if (
            by_hash.keys().isdisjoint(hashes)
            and list(map(hash_of.__getitem__, blocks)).count(None) == len(blocks)
            and len(set(hashes)) == len(hashes)
        ):
            by_hash.update(zip(hashes, blocks, strict=True))
            for block, block_hash in zip(blocks, hashes, strict=True):
                hash_of[block] = block_hash
            return
        for block, block_hash in zip(blocks, hashes, strict=True):
            self.register(block, block_hash)

    # -- allocation ------------------------------------------------------------------------
    def allocate(self, n: int) -> list[int] | None:
        """``n`` fresh blocks with refcount 1, evicting cached blocks LRU; None if too few."""
        if n > self.num_available:
            return None
        free, cached = self._free, self._cached
        take = min(n, len(free))
        out = free[len(free) - take :]
        del free[len(free) - take :]
        out.reverse()  # as popping one by one
        if take < n:
            hash_of, by_hash = self._hash, self._by_hash
            for _ in range(n - take):
                block, _ = cached.popitem(last=False)
                block_hash = hash_of[block]
                assert block_hash is not None, "a cached block holds a hash"
                del by_hash[block_hash]
                hash_of[block] = None
                out.append(block)
        refcount = self._refcount
        for block in out:
            refcount[block] = 1
        return out

    def release(self, blocks: Sequence[int]) -> None:
        """Drop one reference to each of ``blocks``, tail first, so tails are evicted first."""
        refcount, hash_of, free, cached = self._refcount, self._hash, self._free, self._cached
        for b in reversed(blocks):
            count = refcount[b] - 1
            if count < 0:
                raise RuntimeError(f"block {b} released more often than acquired")
            refcount[b] = count
            if count == 0:
                if hash_of[b] is not None:
                    cached[b] = None
                else:
                    free.append(b)

    # -- invariants --------------------------------------------------------------------------
    def check(self) -> None:
        """Raise AssertionError if an invariant of the module docstring does not hold."""
        free, cached = set(self._free), set(self._cached)
        assert len(free) == len(self._free), "a block is free twice"
        assert not free & cached, "a block is both free and cached"
        for b in range(self.num_blocks):
            count = self._refcount[b]
            assert count >= 0, f"block {b} has refcount {count}"
            assert (count == 0) == (b in free or b in cached), f"block {b} state mismatch"
            if b in free:
                assert self._hash[b] is None, f"free block {b} holds a hash"
            if b in cached:
                assert self._hash[b] is not None, f"cached block {b} holds no hash"
        for h, b in self._by_hash.items():
            assert self._hash[b] == h, f"hash index points at block {b} holding another hash"
        held = sum(h is not None for h in self._hash)
        assert held == len(self._by_hash), "a block holds a hash the index lacks"
        assert self.num_used + self.num_available == self.num_blocks
