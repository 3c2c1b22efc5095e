"""The serving path's CPU as a queue: one request at a time, first come first served.

Before an engine queues a request, the serving path spends CPU on it: the gateway reads and
parses the JSON body, tokenises the prompt and hashes its blocks to route it; the engine's
front end parses, tokenises and hashes it again (and its scheduler books the prompt's KV
blocks). An event loop does that work one callback at a time, so when requests arrive together
they wait for each other. In the emulated deployment (bench/sim_fidelity.py) the gateway and
every emulated engine share one loop: a burst of arrivals — the Mooncake trace's timestamps come
in 3-second steps, about ten requests at a time at 4 req/s — queues for that one CPU, and the
last request of a burst waits for the work of all the others.

``ServingCpu`` is the work per request, in two visits to the server: at the gateway (before the
routing decision) and at the engine's front end (after the network hop, before the engine
queues it). ``CpuQueue`` is the server.

Invariant: visits complete in the order they reached the server (ties in scheduling order),
each ``service_s`` after the later of its arrival and the previous visit's completion; the
server never idles while a visit waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from isthmus.sim.events import EventLoop

__all__ = ["CpuQueue", "ServingCpu"]


@dataclass(frozen=True, slots=True)
class ServingCpu:
    """Seconds of serving CPU per request at the gateway and at the engine's front end, each a
    fixed part plus a part per prompt token."""

    gateway_s: float = 0.0
    gateway_s_per_prompt_token: float = 0.0
    engine_s: float = 0.0
    engine_s_per_prompt_token: float = 0.0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) < 0:
                raise ValueError(f"ServingCpu.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def split(
        cls, per_request_s: float, per_prompt_token_s: float, gateway_share: float
    ) -> ServingCpu:
        """``per_request_s + prompt_tokens * per_prompt_token_s`` in all, ``gateway_share`` of
        it at the gateway and the rest at the engine."""
        if not 0.0 <= gateway_share <= 1.0:
            raise ValueError(f"gateway_share must be within [0, 1], got {gateway_share}")
        engine_share = 1.0 - gateway_share
        return cls(
            per_request_s * gateway_share,
            per_prompt_token_s * gateway_share,
            per_request_s * engine_share,
            per_prompt_token_s * engine_share,
        )

    def gateway_service_s(self, prompt_tokens: int) -> float:
        return self.gateway_s + prompt_tokens * self.gateway_s_per_prompt_token

    def engine_service_s(self, prompt_tokens: int) -> float:
        return self.engine_s + prompt_tokens * self.engine_s_per_prompt_token


class CpuQueue:
    """A single-server first-come-first-served queue in virtual time."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.free_s = 0.0  # when the work queued so far is done
        self.busy_s = 0.0
        self.waited_s = 0.0
        self.visits = 0

    def serve(self, service_s: float, callback: Callable[..., None], *args: Any) -> None:
        """Queue ``service_s`` of work now; call ``callback(*args)`` when it is done."""
        now = self.loop.now
        start = self.free_s if self.free_s > now else now
        self.free_s = start + service_s
        self.busy_s += service_s
        self.waited_s += start - now
        self.visits += 1
        self.loop.at(self.free_s, callback, *args)
