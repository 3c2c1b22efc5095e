"""An engine in virtual time: the emulator's ``EngineCore`` stepped by the event loop.

The same plan/finish loop as the emulator (``isthmus.engines.emulator.runner``) with the sleep
replaced by an event at the step's end, so the simulator and the emulator time requests alike.
"""

from __future__ import annotations

from collections.abc import Callable

from isthmus.engines.timing import EngineCore, EngineProfile, EngineRequest, Event
from isthmus.sim.events import EventLoop

__all__ = ["SimEngine"]


class SimEngine:
    def __init__(
        self, loop: EventLoop, profile: EngineProfile, on_event: Callable[[Event, float], None]
    ) -> None:
        self.loop = loop
        self.core = EngineCore(profile)
        self.on_event = on_event
        self._stepping = False
        self.busy_s = 0.0

    def submit(self, request: EngineRequest) -> None:
        self.core.submit(request, self.loop.now)
        if not self._stepping:
            self._step()

    def _step(self) -> None:
        step = self.core.plan_step(self.loop.now)
        if step is None:
            self._stepping = False
            return
        self._stepping = True
        self.busy_s += step.duration_s
        self.loop.at(step.ended_s, self._finish, step)

    def _finish(self, step: object) -> None:
        now = self.loop.now
        for event in self.core.finish_step(step, now):  # type: ignore[arg-type]
            self.on_event(event, now)
        self._step()
