"""What one emulated endpoint is: its model name, timing, network delay and injected faults.

Invariants: configurations are immutable; faults change at run time by replacing the whole
:class:`Faults` value (``Faults.updated``), so a request sees one consistent set of faults.

Network delay model: ``one_way_delay_ms`` is applied once in each direction. A request reaches
the engine ``one_way`` after the server has read it, and every part of the response (headers,
each SSE chunk, a whole JSON body) reaches the client ``one_way`` after the engine produced it.
On a path of constant latency this is exact: a client sees TTFT = RTT + queue + prefill, and
the gaps between tokens are those of the engine. ``/metrics`` and ``/admin`` are not delayed
(they are the test harness's side channel, not the data path).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from isthmus.engines.timing import DEFAULT_PROFILE, EngineProfile

__all__ = ["EmulatorConfig", "Faults", "FaultsError", "Timing"]

Timing = Literal["model", "none"]


class FaultsError(ValueError):
    """A faults document with an unknown field or a value out of range."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Injected failures. Rates are probabilities per request, drawn from a seeded RNG.

    - ``down``: every request (and ``/health``) is refused with HTTP 503;
    - ``rate_limit_rate``: answered HTTP 429 (checked before ``error_rate``);
    - ``error_rate``: answered HTTP 500;
    - ``stall_after_tokens``: after that many output tokens the response hangs, open, until the
      client gives up (a non-streamed response never comes); applies to a ``stall_rate``
      fraction of requests;
    - ``abort_after_tokens``: after that many tokens the connection is closed mid-response;
      applies to an ``abort_rate`` fraction of requests;
    - ``slowness``: multiplies every step's duration (a throttled or shared GPU).
    """

    down: bool = False
    error_rate: float = 0.0
    rate_limit_rate: float = 0.0
    stall_after_tokens: int | None = None
    stall_rate: float = 1.0
    abort_after_tokens: int | None = None
    abort_rate: float = 1.0
    slowness: float = 1.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_limit_rate", "stall_rate", "abort_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise FaultsError(f"{name} must be in [0, 1], got {value}")
        for name in ("stall_after_tokens", "abort_after_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise FaultsError(f"{name} must be >= 0 or null, got {value}")
        if not self.slowness > 0:
            raise FaultsError(f"slowness must be > 0, got {self.slowness}")

    def updated(self, changes: dict[str, Any]) -> Faults:
        """These faults with the fields in ``changes`` replaced (``{"reset": true}`` first
        restores the defaults). Raises FaultsError naming a bad field."""
        changes = dict(changes)
        base = Faults() if changes.pop("reset", False) is True else self
        known = {f.name: f for f in fields(Faults)}
        for key, value in changes.items():
            if key not in known:
                raise FaultsError(
                    f"unknown fault {key!r}; known: reset, {', '.join(sorted(known))}"
                )
            expected: tuple[type, ...]
            if key == "down":
                expected = (bool,)
            elif key.endswith("_tokens"):
                expected = (int, type(None))
            else:
                expected = (int, float)
            if (isinstance(value, bool) and key != "down") or not isinstance(value, expected):
                raise FaultsError(f"fault {key!r} has the wrong type: {value!r}")
        try:
            return replace(base, **changes)
        except TypeError as exc:  # pragma: no cover - guarded above
            raise FaultsError(str(exc)) from exc

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """One emulated endpoint.

    ``model`` is the name it serves (also accepted: ``aliases``); ``replicas`` engine cores
    share the endpoint, each request going to the replica with the lowest predicted TTFT (which
    favours the one holding its prefix). ``timing="none"`` answers at once with a fixed small
    completion (for measuring a proxy's own overhead; the delay, ``down``, 429 and 500 faults
    still apply, stalls, aborts and slowness do not: there are no tokens to stall). Prompt plus ``max_tokens`` must fit
    ``max_model_len``; without ``max_tokens`` a chat generates ``default_max_tokens``.
    """

    model: str
    profile: EngineProfile = DEFAULT_PROFILE
    aliases: tuple[str, ...] = ()
    timing: Timing = "model"
    replicas: int = 1
    one_way_delay_ms: float = 0.0
    max_model_len: int = 8192
    default_max_tokens: int = 128
    embedding_dim: int = 384
    faults: Faults = field(default_factory=Faults)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1, got {self.replicas}")
        if self.one_way_delay_ms < 0:
            raise ValueError(f"one_way_delay_ms must be >= 0, got {self.one_way_delay_ms}")
        if self.max_model_len < 2 or self.default_max_tokens < 1 or self.embedding_dim < 1:
            raise ValueError("max_model_len >= 2, default_max_tokens >= 1, embedding_dim >= 1")
        if self.timing not in ("model", "none"):
            raise ValueError(f"timing must be 'model' or 'none', got {self.timing!r}")

    @property
    def served_names(self) -> tuple[str, ...]:
        return (self.model, *self.aliases)
