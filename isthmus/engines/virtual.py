"""Drive an :class:`EngineCore` in virtual time: the simulator's view of one engine.

The loop is the emulator's stepping loop with ``sleep`` replaced by a jump of the clock, so a
trace replayed here sees exactly the timings the emulator produces (minus its wall-clock
jitter). Invariant: events come out in non-decreasing time; a request submitted at ``t`` is
first considered by the first step planned at or after ``t`` (steps are atomic, as on a GPU).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from isthmus.engines.timing import EngineCore, EngineRequest, Event, Step

__all__ = ["TimedEvent", "run_virtual"]


@dataclass(frozen=True, slots=True)
class TimedEvent:
    time_s: float
    event: Event


def run_virtual(
    core: EngineCore,
    arrivals: Iterable[tuple[float, EngineRequest]],
    *,
    until_s: float = float("inf"),
    max_steps: int = 10_000_000,
    on_step: Callable[[Step], None] | None = None,
    run_steps: int = 1,
) -> list[TimedEvent]:
    """Submit each ``(time_s, request)`` at its time and step the engine until it is idle (or
    no step starts before ``until_s``, or after ``max_steps``); return every event with the
    time it happened.

    ``on_step`` is called after each step is finished (tests check invariants there).
    ``run_steps > 1`` lets decode-only batches run up to that many passes as one step (cut at
    the next arrival), which gives the same timings with fewer, folded token events.
    """
    pending = sorted(arrivals, key=lambda a: a[0])
    i = 0
    now = pending[0][0] if pending else 0.0
    out: list[TimedEvent] = []
    for _ in range(max_steps):
        if now >= until_s:
            break
        while i < len(pending) and pending[i][0] <= now:
            core.submit(pending[i][1], pending[i][0])
            i += 1
        step = core.plan_step(now, run_steps)
        if step is None:
            if i >= len(pending):
                break
            now = pending[i][0]
            continue
        if step.steps > 1 and i < len(pending) and pending[i][0] < step.ended_s:
            step = core.truncate(pending[i][0])
        now = step.ended_s
        out.extend(TimedEvent(now, e) for e in core.finish_step(step, now))
        if on_step is not None:
            on_step(step)
    return out
