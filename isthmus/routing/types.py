"""What the router is asked and what it answers: plain, immutable data.

Invariant: a ``Decision`` either names a chosen candidate and lists every other *compliant*
candidate in failover order, or names why there is none (``refused`` when sovereignty or the
tenant's entitlements exclude every endpoint, with the rules that did; ``unavailable`` when
compliant endpoints exist but none is healthy, closed-circuit and under capacity). A
non-compliant endpoint never appears in ``ranked``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from isthmus.fabric.schema import Objective

__all__ = ["Candidate", "Decision", "DecisionStatus", "RequestKind", "RouteRequest"]

RequestKind = Literal["chat", "completion", "embedding"]
DecisionStatus = Literal["routed", "refused", "unavailable"]


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """One request as the router sees it (no payload, only what routing needs)."""

    model: str
    data_class: str
    gateway_site: str
    prompt_tokens: int
    max_output_tokens: int = 256
    kind: RequestKind = "chat"
    block_hashes: tuple[int, ...] = ()
    tenant: str = ""
    allowed_models: tuple[str, ...] = ("*",)
    objective: Objective = field(default_factory=Objective)
    exclude: frozenset[str] = frozenset()
    deadline_ms: float = 60_000.0
    request_id: str = ""
    now_s: float = 0.0  # the caller's clock (monotonic or virtual), for time-dependent load


class Candidate(NamedTuple):
    """One compliant endpoint with its predicted time to first token and cost.

    ``queue_ms`` is the predicted wait before prefill starts, including the endpoint's learned
    correction ``bias_ms`` (so it can be negative when an endpoint runs faster than its
    profile). A named
    tuple rather than a frozen dataclass: the router builds several per decision and tuples
    construct an order of magnitude faster; it is just as immutable."""

    endpoint: str
    model: str
    site: str
    predicted_ttft_ms: float
    rtt_ms: float
    queue_ms: float
    prefill_ms: float
    cached_tokens: int
    predicted_cost_usd: float
    quality: float
    bias_ms: float = 0.0

    @property
    def model_ttft_ms(self) -> float:
        """The prediction before the endpoint's learned correction (what the model says)."""
        return self.predicted_ttft_ms - self.bias_ms


@dataclass(frozen=True, slots=True)
class Decision:
    status: DecisionStatus
    chosen: Candidate | None
    ranked: tuple[Candidate, ...]
    reason: str
    refusals: tuple[tuple[str, str], ...] = ()
    policy: str = "isthmus"

    @property
    def header(self) -> str:
        """Compact value for the ``x-isthmus-decision`` response header."""
        if self.chosen is None:
            return f"status={self.status}; reason={self.reason}"
        c = self.chosen
        return (
            f"endpoint={c.endpoint}; site={c.site}; model={c.model}; "
            f"ttft_ms={c.predicted_ttft_ms:.0f}; cached={c.cached_tokens}; reason={self.reason}"
        )
