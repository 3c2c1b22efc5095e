from __future__ import annotations

import pytest

from isthmus.engines.kvcache import BlockPool


def test_allocate_release_and_capacity() -> None:
    pool = BlockPool(4)
    blocks = pool.allocate(3)
    assert blocks is not None and len(blocks) == 3
    assert pool.num_used == 3 and pool.usage() == 0.75
    assert pool.allocate(2) is None  # all-or-nothing
    pool.release(blocks)
    assert pool.num_used == 0 and pool.num_available == 4
    pool.check()


def test_cached_blocks_are_reused_and_refcounted() -> None:
    pool = BlockPool(4)
    a = pool.allocate(2)
    assert a is not None
    pool.register(a[0], 100)
    pool.register(a[1], 101)
    assert pool.lookup([100, 101, 102]) == a
    pool.acquire(a)  # a second sequence shares both blocks
    assert pool.refcount(a[0]) == 2
    pool.release(a)
    pool.release(a)
    assert pool.num_cached == 2 and pool.num_used == 0
    assert pool.lookup([100, 101]) == a  # still reusable after release
    pool.acquire(a[:1])  # revive one
    assert pool.num_cached == 1 and pool.refcount(a[0]) == 1
    pool.check()


def test_free_blocks_go_before_cached_ones_and_tails_are_evicted_first() -> None:
    pool = BlockPool(4)
    a = pool.allocate(3)
    assert a is not None
    for i, b in enumerate(a):
        pool.register(b, 10 + i)
    pool.release(a)  # tail first: 12 is the least recently released
    new = pool.allocate(1)
    assert new is not None and pool.lookup([10, 11, 12]) == a  # the free block was used
    new2 = pool.allocate(1)
    assert new2 == [a[2]]  # the tail block was evicted
    assert pool.lookup([10, 11, 12]) == a[:2]
    pool.check()


def test_duplicate_hash_keeps_the_first_block() -> None:
    pool = BlockPool(2)
    a = pool.allocate(2)
    assert a is not None
    pool.register(a[0], 7)
    pool.register(a[1], 7)
    assert pool.lookup([7]) == [a[0]]
    pool.release(a)
    assert pool.num_cached == 1
    pool.check()


def test_over_release_is_an_error() -> None:
    pool = BlockPool(1)
    a = pool.allocate(1)
    assert a is not None
    pool.release(a)
    with pytest.raises(RuntimeError):
        pool.release(a)


def test_can_allocate_counts_revived_blocks() -> None:
    pool = BlockPool(3)
    a = pool.allocate(1)
    assert a is not None
    pool.register(a[0], 1)
    pool.release(a)
    assert pool.can_allocate(3)
    assert not pool.can_allocate(3, a)  # reviving the cached block leaves 2
    assert pool.can_allocate(2, a)
