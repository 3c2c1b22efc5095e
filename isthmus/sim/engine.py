"""An engine in virtual time: the emulator's ``EngineCore`` stepped by the event loop.

The same plan/finish loop as the emulator (``isthmus.engines.emulator.runner``) with the sleep
replaced by an event at the step's end, so the simulator and the emulator time requests alike.
Decode-only stretches run as one event (``EngineCore`` decode runs): the engine jumps to the
first sequence's completion instead of stepping per token. Anything that happens meanwhile
goes through this class, which first brings the core up to the present (``advance``) and, when
the batch must change (a submit, an abort), ends the run with the pass in progress
(``truncate``), so the timings are those of stepping one by one.

Invariant: at most one finish event is live; ``_ticket`` tells it from the ones a truncation
superseded.
"""

from __future__ import annotations

from collections.abc import Callable

from isthmus.engines.timing import EngineCore, EngineProfile, EngineRequest, Event, Step
from isthmus.sim.events import EventLoop

__all__ = ["RUN_STEPS", "SimEngine"]

RUN_STEPS = 1_000_000
"""Most passes one decode run may fold into a single event (no practical limit)."""


class SimEngine:
    def __init__(
        self,
        loop: EventLoop,
        profile: EngineProfile,
        on_event: Callable[[Event, float], None],
        run_steps: int = RUN_STEPS,
    ) -> None:
        self.loop = loop
        self.core = EngineCore(profile, tokens=False)
        self.on_event = on_event
        self.run_steps = run_steps
        self._ticket = 0
        self.busy_s = 0.0

    def sync(self) -> None:
        """Bring the core's state (tokens, blocks) up to ``loop.now`` before it is read. (The
        passes it applies only produce ``Token`` events, which the simulator does not use; its
        core reports no ``Token`` for single steps either.)"""
        step = self.core.in_flight
        if step is not None and step.steps > 1:
            self.core.advance(self.loop.now)

    def submit(self, request: EngineRequest) -> None:
        now = self.loop.now
        step = self.core.in_flight
        if step is None:
            self.core.submit(request, now)
            self._step()
            return
        self.sync()
        self.core.submit(request, now)
        self._cut(now)

    def abort(self, request_id: str) -> bool:
        """Drop a request (its client or its site is gone); the batch changes at the next pass."""
        self.sync()
        aborted = self.core.abort(request_id)
        if aborted and self.core.in_flight is not None:
            self._cut(self.loop.now)
        return aborted

    def _cut(self, now: float) -> None:
        before = self.core.in_flight
        assert before is not None
        step = self.core.truncate(now)
        if step is not before:
            self.busy_s -= before.ended_s - step.ended_s
            self._schedule(step)

    def _schedule(self, step: Step) -> None:
        self._ticket += 1
        self.loop.at(step.ended_s, self._finish, self._ticket)

    def _step(self) -> None:
        step = self.core.plan_step(self.loop.now, self.run_steps)
        if step is None:
            return
        self.busy_s += step.duration_s
        self._schedule(step)

    def _finish(self, ticket: int) -> None:
        if ticket != self._ticket:
            return  # superseded by a truncation
        step = self.core.in_flight
        assert step is not None
        now = self.loop.now
        for event in self.core.finish_step(step, now):
            self.on_event(event, now)
        self._step()
