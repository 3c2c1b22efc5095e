"""A circuit breaker per endpoint: stop sending to an endpoint that keeps failing, probe it, resume.

States: **closed** (traffic flows; ``failure_threshold`` consecutive failures open it),
**open** (no traffic until ``cooldown`` passes; each reopening doubles the cooldown up to
``max_cooldown_s``), **half-open** (one probe at a time — a request or an active health check;
success closes, failure reopens). Pure, with an injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CircuitBreaker", "CircuitState"]

CircuitState = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    base_cooldown_s: float = 2.0
    max_cooldown_s: float = 60.0
    state: CircuitState = "closed"
    failures: int = 0
    opened_at: float = 0.0
    cooldown_s: float = 0.0
    probing: bool = False

    def allows(self, now: float) -> bool:
        """May a request go to this endpoint now? (Claims the probe when half-open.)"""
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.cooldown_s:
            self.state = "half_open"
            self.probing = False
        if self.state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def blocked(self, now: float) -> bool:
        """Should routing skip it? (Does not claim the probe.)"""
        if self.state == "closed":
            return False
        if self.state == "open":
            return now - self.opened_at < self.cooldown_s
        return self.probing

    def success(self) -> bool:
        """Record a success; True if this closed the circuit."""
        was_open = self.state != "closed"
        self.state, self.failures, self.probing, self.cooldown_s = "closed", 0, False, 0.0
        return was_open

    def failure(self, now: float) -> bool:
        """Record a failure; True if this opened the circuit."""
        self.failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.failures >= self.failure_threshold
        ):
            self.cooldown_s = (
                self.base_cooldown_s
                if self.cooldown_s == 0
                else min(self.max_cooldown_s, self.cooldown_s * 2)
            )
            self.state, self.opened_at, self.probing = "open", now, False
            return True
        return False
