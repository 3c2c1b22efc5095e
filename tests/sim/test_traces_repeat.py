"""Repeating a trace: the rate kept, copies sharing prefixes only within themselves."""

from __future__ import annotations

import itertools

from isthmus.sim.replay import TraceRequest
from isthmus.sim.traces import repeat_trace


def test_copies_follow_each_other_at_the_trace_rate_and_share_nothing() -> None:
    trace = [
        TraceRequest(arrival_s=0.0, prompt_tokens=512, output_tokens=1, hash_ids=(0, 1)),
        TraceRequest(arrival_s=1.0, prompt_tokens=512, output_tokens=1, hash_ids=(0, 2)),
        TraceRequest(arrival_s=2.0, prompt_tokens=512, output_tokens=1, hash_ids=(0, 3)),
    ]
    out = list(repeat_trace(trace, 7))
    assert len(out) == 7
    assert [r.arrival_s for r in out] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert out[:3] == trace
    assert [r.hash_ids for r in out[3:]] == [(4, 5), (4, 6), (4, 7), (8, 9)]
    first = {h for r in out[:3] for h in r.hash_ids}
    assert first.isdisjoint(h for r in out[3:6] for h in r.hash_ids)


def test_it_is_lazy_and_empty_inputs_give_nothing() -> None:
    trace = [TraceRequest(arrival_s=0.0, prompt_tokens=10, output_tokens=1)]
    endless = repeat_trace(trace, 10**12)
    assert len(list(itertools.islice(endless, 5))) == 5
    assert list(repeat_trace([], 5)) == [] and list(repeat_trace(trace, 0)) == []
