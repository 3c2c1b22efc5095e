"""Drive :class:`EngineCore` replicas in real time on the event loop.

Each replica runs the loop of ``isthmus.engines.timing`` with ``sleep`` for the clock:
plan a step, sleep until it ends, finish it, and push each event with its *modelled* time into
the queue of the request it concerns. Steps are scheduled on absolute deadlines (the next step
starts when the previous one was modelled to end, not when the sleep returned), so timer jitter
does not accumulate into a slower engine; if the loop falls more than ``MAX_LAG_S`` behind
(an overloaded CPU) the model restarts from the present rather than bursting to catch up.

Invariant: every submitted request's queue receives, in order, its events and finally either a
``Done`` or a :data:`CLOSED` marker (engine shut down); aborted requests receive nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from isthmus.engines.emulator.metrics import E2E_BUCKETS_S, TTFT_BUCKETS_S, Histogram
from isthmus.engines.timing import (
    Done,
    EngineCore,
    EngineProfile,
    EngineRequest,
    Event,
    FirstToken,
    Preempted,
    Token,
)

__all__ = ["CLOSED", "EngineRunner", "RunnerStats"]

log = logging.getLogger("isthmus.engines.emulator")

MAX_LAG_S = 0.005

CLOSED = None
"""Pushed to every pending queue when the runner stops."""

TimedQueue = asyncio.Queue[tuple[Event, float] | None]


@dataclass(slots=True)
class RunnerStats:
    """Counters since start, summed over replicas."""

    ttft: Histogram = field(default_factory=lambda: Histogram.with_buckets(TTFT_BUCKETS_S))
    e2e: Histogram = field(default_factory=lambda: Histogram.with_buckets(E2E_BUCKETS_S))
    prompt_tokens: int = 0
    generation_tokens: int = 0
    finished: int = 0
    aborted: int = 0


class EngineRunner:
    """Real-time driver of ``replicas`` engine cores sharing one endpoint."""

    def __init__(
        self,
        profile: EngineProfile,
        replicas: int = 1,
        slowness: Callable[[], float] = lambda: 1.0,
    ) -> None:
        self.profile = profile
        self.cores = [EngineCore(profile) for _ in range(replicas)]
        self._slowness = slowness
        self._wake = [asyncio.Event() for _ in self.cores]
        self._pending: dict[str, tuple[int, TimedQueue]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = RunnerStats()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._run(i), name=f"engine-replica-{i}")
                for i in range(len(self.cores))
            ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for _, queue in self._pending.values():
            queue.put_nowait(CLOSED)
        self._pending.clear()

    # -- requests --------------------------------------------------------------------------
    def submit(self, request: EngineRequest) -> TimedQueue:
        """Queue ``request`` on the replica predicting the earliest first token; return the
        queue its events will arrive on. Raises RequestTooLarge like ``EngineCore.submit``."""
        now = asyncio.get_running_loop().time()
        index = 0
        if len(self.cores) > 1:
            index = min(
                range(len(self.cores)),
                key=lambda i: self.cores[i].predict_ttft_s(
                    request.prompt_tokens, request.block_hashes, now
                ),
            )
        self.cores[index].submit(request, now)
        queue: TimedQueue = asyncio.Queue()
        self._pending[request.request_id] = (index, queue)
        self._wake[index].set()
        return queue

    def abort(self, request_id: str) -> None:
        """Forget a request whose client has gone; frees its KV blocks."""
        entry = self._pending.pop(request_id, None)
        if entry is not None and self.cores[entry[0]].abort(request_id):
            self.stats.aborted += 1

    # -- the stepping loop -----------------------------------------------------------------
    async def _run(self, index: int) -> None:
        try:
            await self._step_forever(index)
        except Exception:  # a bug in the model: fail this replica's requests loudly
            log.exception("engine replica %d stopped", index)
            for rid, (i, queue) in list(self._pending.items()):
                if i == index:
                    queue.put_nowait(CLOSED)
                    del self._pending[rid]
            raise

    async def _step_forever(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        core, wake = self.cores[index], self._wake[index]
        t_next = loop.time()
        while True:
            now = loop.time()
            start = t_next if now - t_next < MAX_LAG_S else now
            step = core.plan_step(start)
            if step is None:
                wake.clear()
                await wake.wait()
                t_next = loop.time()
                continue
            end = start + step.duration_s * self._slowness()
            delay = end - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._dispatch(core.finish_step(step, end), end)
            t_next = end

    def _dispatch(self, events: list[Event], at: float) -> None:
        stats = self.stats
        pending = self._pending
        for event in events:
            if isinstance(event, Token):
                stats.generation_tokens += 1
            elif isinstance(event, FirstToken):
                stats.generation_tokens += 1
                stats.ttft.observe(event.ttft_s)
            elif isinstance(event, Done):
                stats.finished += 1
                stats.prompt_tokens += event.usage.prompt_tokens
                stats.e2e.observe(event.latency_s)
            elif isinstance(event, Preempted):
                pass
            entry = pending.get(event.request_id)
            if entry is not None:
                entry[1].put_nowait((event, at))
                if isinstance(event, Done):
                    del pending[event.request_id]
