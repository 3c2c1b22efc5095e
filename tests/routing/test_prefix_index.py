"""The approximate prefix index: longest-prefix matches, LRU capacity, engine corrections."""

from __future__ import annotations

from collections import OrderedDict
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from isthmus.routing.prefix_index import PrefixIndex


def depths(index: PrefixIndex, hashes: list[int]) -> dict[int, int]:
    found = index.match(hashes)
    return {} if found is None else {i: int(d) for i, d in enumerate(found) if d}


def test_longest_prefix_match_per_endpoint() -> None:
    index = PrefixIndex([100, 100, 100])
    index.record(0, [1, 2, 3, 4])
    index.record(1, [1, 2, 9])
    assert depths(index, [1, 2, 3, 4, 5]) == {0: 4, 1: 2}
    assert depths(index, [7, 1, 2]) == {}
    assert depths(index, [1, 2, 9]) == {0: 2, 1: 3}


def test_eviction_takes_the_tail_first_and_keeps_capacity() -> None:
    index = PrefixIndex([3])
    index.record(0, [1, 2, 3])
    index.record(0, [4])  # evicts 3: the tail of the older prompt, keeping its prefix
    assert index.blocks_held(0) == 3
    assert depths(index, [1, 2, 3]) == {0: 2}
    assert depths(index, [4]) == {0: 1}


def test_engine_report_corrects_the_belief() -> None:
    index = PrefixIndex([100])
    index.record(0, [1, 2, 3, 4])
    index.observe(0, [1, 2, 3, 4], cached_blocks=1)  # engine had only block 1: it evicted the rest
    assert depths(index, [1, 2, 3, 4]) == {0: 4}  # the prompt is now resident again
    index.forget(0)
    assert depths(index, [1]) == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 6), st.integers(1, 12)), max_size=40),
    st.lists(st.integers(1, 6), min_size=3, max_size=3),
)
def test_capacity_is_never_exceeded(ops: list[tuple[int, int, int]], capacity: list[int]) -> None:
    index = PrefixIndex(capacity)
    for endpoint, c, n in ops:
        index.record(endpoint, [c * 100 + i for i in range(n)])
        for e in range(3):
            assert index.blocks_held(e) <= capacity[e]


def walk(index: PrefixIndex, hashes: list[int]) -> dict[int, int]:
    """Reference: the plain block-by-block walk."""
    out = {}
    for e in range(len(index)):
        d = 0
        while d < len(hashes) and index.holds(e, hashes[d]):
            d += 1
        if d:
            out[e] = d
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 5), st.integers(1, 120)),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.integers(2, 200), min_size=5, max_size=5),
    st.integers(0, 5),
    st.integers(1, 120),
)
def test_bisection_matches_the_plain_walk(ops, capacity, probe_chain, probe_len) -> None:
    # chains share prefixes: chain c, length n -> hashes (c, 0) .. (c, n-1) encoded as ints,
    # and every chain starts with the same 5 "system prompt" blocks
    def chain(c: int, n: int) -> list[int]:
        return [10**6 + i for i in range(min(n, 5))] + [c * 1000 + i for i in range(5, n)]

    index = PrefixIndex(capacity)
    for endpoint, c, n in ops:
        index.record(endpoint, chain(c, n))
        if n % 7 == 0:
            index.observe(endpoint, chain(c, n), cached_blocks=n // 2)
    probe = chain(probe_chain, probe_len)
    assert depths(index, probe) == walk(index, probe)


class ReferenceIndex:
    """The straightforward index: one ordered dict per endpoint, moved block by block."""

    def __init__(self, capacity: list[int]) -> None:
        self.capacity = capacity
        self.lru: list[OrderedDict[int, None]] = [OrderedDict() for _ in capacity]

    def record(self, endpoint: int, hashes: list[int]) -> None:
        lru = self.lru[endpoint]
        for block in reversed(hashes):
            lru[block] = None
            lru.move_to_end(block)
        while len(lru) > self.capacity[endpoint]:
            lru.popitem(last=False)

    def observe(self, endpoint: int, hashes: list[int], cached_blocks: int) -> None:
        for block in hashes[cached_blocks:]:
            self.lru[endpoint].pop(block, None)
        self.record(endpoint, hashes)

    def forget(self, endpoint: int) -> None:
        self.lru[endpoint].clear()

    def depths(self, hashes: list[int]) -> dict[int, int]:
        out = {}
        for e, lru in enumerate(self.lru):
            d = 0
            while d < len(hashes) and hashes[d] in lru:
                d += 1
            if d:
                out[e] = d
        return out


def trie_chain(path: list[int]) -> list[int]:
    """Chained hashes of a path in a tree of prompts: block d's hash names the whole prefix."""
    return [hash(tuple(path[: d + 1])) for d in range(len(path))]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=3, max_size=3),
    st.lists(
        st.tuples(
            st.sampled_from(["record", "record", "record", "observe", "forget"]),
            st.integers(0, 2),
            st.lists(st.integers(0, 2), min_size=0, max_size=30),  # a path: few branches
            st.integers(0, 30),
        ),
        max_size=50,
    ),
)
def test_index_state_equals_the_reference(capacity: list[int], ops: list) -> None:
    index, reference = PrefixIndex(capacity), ReferenceIndex(capacity)
    chains = []
    for op, endpoint, path, cached in ops:
        chain = trie_chain(path)
        chains.append(chain)
        if op == "record":
            index.record(endpoint, chain)
            reference.record(endpoint, chain)
        elif op == "observe":
            index.observe(endpoint, chain, cached)
            reference.observe(endpoint, chain, cached)
        else:
            index.forget(endpoint)
            reference.forget(endpoint)
        for e, lru in enumerate(reference.lru):
            assert index.blocks_held(e) == len(lru)
            seen = {block for chain in chains for block in chain}
            assert {block for block in seen if index.holds(e, block)} == set(lru)
        for probe in chains[-5:]:
            assert depths(index, probe) == reference.depths(probe)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 39),
            st.lists(st.integers(0, 2), min_size=0, max_size=25),  # a conversation's path
            st.booleans(),  # whether it starts with the shared system prompt
        ),
        max_size=60,
    ),
    st.lists(st.integers(0, 2), min_size=0, max_size=25),
    st.booleans(),
    st.lists(st.integers(0, 39), max_size=40),
    st.integers(4, 60),
)
def test_levels_spread_the_depths_of_any_endpoints(
    ops: list[tuple[int, list[int], bool]],
    probe_path: list[int],
    probe_system: bool,
    endpoints: list[int],
    capacity: int,
) -> None:
    # 40 endpoints, most holding a 6-block system prompt: runs held by many endpoints (unpacked
    # by numpy) and by a few (set endpoint by endpoint), several of each, spread over 5 bytes
    def chain(path: list[int], system: bool) -> list[int]:
        return trie_chain(([9] * 6 if system else []) + path)

    index, reference = PrefixIndex([capacity] * 40), ReferenceIndex([capacity] * 40)
    for e in range(0, 40, 2):
        index.record(e, chain([], True))
        reference.record(e, chain([], True))
    for endpoint, path, system in ops:
        index.record(endpoint, chain(path, system))
        reference.record(endpoint, chain(path, system))
    probe = chain(probe_path, probe_system)
    expected = reference.depths(probe)
    assert depths(index, probe) == expected
    found = index.match_levels(probe, np.array(endpoints, dtype=np.int64))
    if found is None:
        assert not expected
    else:
        levels, by_level = found
        assert [by_level[level] for level in levels] == [expected.get(e, 0) for e in endpoints]
    runs = index.runs(probe)
    for (outer, _), (inner, _) in pairwise(runs):
        assert inner & outer == inner and inner != outer  # strictly nested holders
    for e in range(40):
        assert sum(blocks for mask, blocks in runs if mask >> e & 1) == expected.get(e, 0)


def test_levels_beyond_what_a_byte_counts() -> None:
    # 300 endpoints each holding a different length of one chain: 300 runs, 300 levels
    index = PrefixIndex([1000] * 300)
    chain = trie_chain(list(range(300)))
    for e in range(300):
        index.record(e, chain[: e + 1])
    found = index.match_levels(chain)
    assert found is not None
    levels, by_level = found
    assert [by_level[level] for level in levels] == list(range(1, 301))


# -- taking back what a failed request recorded -----------------------------------------------


def test_retract_removes_what_the_record_added() -> None:
    index = PrefixIndex([100, 100])
    index.record(1, [1, 2, 3])  # another endpoint holding the same chain is not touched
    inserted = index.record(0, [1, 2, 3, 4])
    assert index.retract(inserted) == 4
    assert depths(index, [1, 2, 3, 4]) == {1: 3}
    assert index.blocks_held(0) == 0
    assert index.retract(inserted) == 0  # idempotent


def test_retract_keeps_blocks_other_records_put_there_before() -> None:
    index = PrefixIndex([100])
    index.record(0, [1, 2])  # a system prompt, held before
    inserted = index.record(0, [1, 2, 3, 4])
    assert index.retract(inserted) == 2
    assert depths(index, [1, 2, 3, 4]) == {0: 2}
    assert index.record(0, [1, 2]) is None  # nothing new: nothing to take back


def test_retract_keeps_blocks_touched_since() -> None:
    # a later request (or an engine's report) relied on the blocks: they stay
    index = PrefixIndex([100])
    inserted = index.record(0, [1, 2, 3, 4])
    index.record(0, [1, 2, 3, 9])
    assert index.retract(inserted) == 1  # block 4 only
    assert depths(index, [1, 2, 3, 4]) == {0: 3}
    observed = index.record(0, [5, 6])
    index.observe(0, [5, 6], cached_blocks=2)
    assert index.retract(observed) == 0


def test_retract_after_eviction_and_forget() -> None:
    index = PrefixIndex([4])
    inserted = index.record(0, [1, 2, 3])
    index.record(0, [7, 8])  # evicts 3
    assert depths(index, [1, 2, 3]) == {0: 2}
    assert index.retract(inserted) == 2
    assert index.blocks_held(0) == 2 and depths(index, [7, 8]) == {0: 2}
    again = index.record(0, [1, 2, 3])
    index.forget(0)
    assert index.retract(again) == 0 and index.blocks_held(0) == 0


class RetractingReference(ReferenceIndex):
    """The reference, remembering which record last touched each block."""

    def __init__(self, capacity: list[int]) -> None:
        super().__init__(capacity)
        self.touched_by: list[dict[int, int]] = [{} for _ in capacity]
        self.records = 0

    def record(self, endpoint: int, hashes: list[int]) -> None:
        super().record(endpoint, hashes)
        self.records += 1
        for block in hashes:
            self.touched_by[endpoint][block] = self.records

    def record_new(self, endpoint: int, hashes: list[int]) -> tuple[int, set[int]]:
        new = {block for block in hashes if block not in self.lru[endpoint]}
        self.record(endpoint, hashes)
        return self.records, new

    def retract(self, endpoint: int, record: int, new: set[int]) -> None:
        """Drop the blocks the record added that are still held and no record touched since."""
        lru = self.lru[endpoint]
        for block in new:
            if block in lru and self.touched_by[endpoint][block] == record:
                del lru[block]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 40), min_size=3, max_size=3),
    st.lists(
        st.tuples(
            st.sampled_from(["record", "record", "retract", "retract", "observe", "forget"]),
            st.integers(0, 2),
            st.lists(st.integers(0, 2), min_size=0, max_size=30),
            st.integers(0, 60),
        ),
        max_size=60,
    ),
)
def test_retract_state_equals_the_reference(capacity: list[int], ops: list) -> None:
    index, reference = PrefixIndex(capacity), RetractingReference(capacity)
    recorded: list[tuple[object, int, int, set[int]]] = []
    chains = []
    for op, endpoint, path, pick in ops:
        chain = trie_chain(path)
        chains.append(chain)
        if op == "record":
            inserted = index.record(endpoint, chain)
            record, new = reference.record_new(endpoint, chain)
            assert (inserted is None) == (not new)
            if inserted is not None:
                recorded.append((inserted, endpoint, record, new))
        elif op == "retract" and recorded:
            inserted, e, record, new = recorded[pick % len(recorded)]
            index.retract(inserted)  # type: ignore[arg-type]
            reference.retract(e, record, new)
        elif op == "observe":
            index.observe(endpoint, chain, pick % 31)
            reference.observe(endpoint, chain, pick % 31)
        elif op == "forget":
            index.forget(endpoint)
            reference.forget(endpoint)
        seen = {block for chain in chains for block in chain}
        for e, lru in enumerate(reference.lru):
            assert index.blocks_held(e) == len(lru) <= capacity[e]
            assert {block for block in seen if index.holds(e, block)} == set(lru)
        for probe in chains[-5:]:
            assert depths(index, probe) == reference.depths(probe)
            runs = index.runs(probe)
            for (outer, _), (inner, _) in pairwise(runs):
                assert inner & outer == inner and inner != outer  # still nested
