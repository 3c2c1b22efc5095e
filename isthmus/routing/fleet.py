"""The endpoint table and the live state the router reads, as arrays indexed by endpoint.

Invariant: the router only *reads* a ``FleetState``; the gateway (or the simulator) writes it
through the event methods (``dispatched``, ``first_token``, ``finished``, ``failed``,
``engine_report``, ``set_health``, ``set_circuit_open``, ``set_load``), which keep the derived
arrays ``wait_ms`` (queue + bias) and ``blocked`` (unhealthy, circuit open or full) current. Static facts (prefill speed, prices,
capacity) and dynamic ones (in flight, prefill work queued, TTFT bias learned online) live in
numpy arrays so a decision over hundreds of endpoints is a handful of vector operations.
A ``journal``, when set, is told what this process's events changed, so the gateway
replicas of a site can share load and prefix index (``isthmus.mesh.shared_fleet``).

Time to first token is predicted as::

    ttft_ms = rtt_ms + queue_ms + uncached_prompt_tokens * ms_per_prefill_token + bias_ms
    queue_ms = pending_tokens(now) * ms_per_prefill_token
               + max(0, in_flight + 1 - max_batch) / max_batch * mean_service_ms

``pending_tokens`` is the uncached prompt work dispatched to the endpoint and not yet prefilled
(what a new request waits behind under first-come-first-served prefill), kept as a fluid queue:
cumulative tokens dispatched minus tokens processed, which drain at the prefill rate between
events and jump forward when a request's first token shows that everything queued before it is
done. The second term is the wait for a batch slot when the engine is full. ``bias_ms`` is an exponentially weighted
mean of the model's residuals (observed - predicted TTFT), so systematic errors (a slower engine than its profile, a
busier link than its RTT) are corrected from what the gateway sees, per endpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Endpoint, ModelSpec, PerfProfile
from isthmus.routing.prefix_index import Insertion, PrefixIndex

__all__ = [
    "DEFAULT_PROFILE",
    "EndpointInfo",
    "FleetJournal",
    "FleetState",
    "Ticket",
    "endpoint_infos",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_PROFILE = PerfProfile(
    accelerator="unknown",
    prefill_tokens_per_s=5_000,
    decode_tokens_per_s=50,
    max_batch_size=32,
    kv_cache_tokens=100_000,
)
"""Used for endpoints whose model has no profile for their accelerator (e.g. provider APIs)."""

BIAS_WEIGHT = 0.2

"""EWMA weight of each new TTFT observation in the per-endpoint bias."""


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """What the router needs to know of an endpoint that does not change between requests."""

    name: str
    model: str
    site: str
    provider: str
    kind: str
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_batch_size: int
    max_concurrency: int
    kv_cache_tokens: int
    context_tokens: int  # the model's context window: prompt + max output tokens, at most
    usd_per_input_token: float
    usd_per_output_token: float
    quality: float


class Ticket(float):
    """What ``dispatched`` returns when the request added blocks to the prefix index: its place
    in the endpoint's prefill queue (a float, as ``first_token`` reads it) that also carries
    what it added, so ``failed`` can take that back. Callers keep it as the float it is."""

    __slots__ = ("inserted",)
    inserted: Insertion


class FleetJournal(Protocol):
    """Told of the load and cache changes this process's events make (``FleetState.journal``),
    so they can be shared with the other gateways of a site. Changes merged from elsewhere
    (``add_remote_work``, ``set_load``) are not journaled, so nothing echoes back."""

    def dispatched(self, i: int, uncached_tokens: int, hashes: Sequence[int]) -> None: ...

    def processed(self, i: int, tokens: float) -> None:
        """Prefill work known done beyond the fluid drain (a first token, a failure)."""

    def observed(self, i: int, hashes: Sequence[int], cached_blocks: int) -> None: ...


def _profile(fabric: Fabric, endpoint: Endpoint, model: ModelSpec) -> PerfProfile:
    for profile in model.profiles:
        if endpoint.accelerator is None or profile.accelerator == endpoint.accelerator:
            return profile
    return DEFAULT_PROFILE


def _self_hosted_usd_per_token(
    fabric: Fabric, endpoint: Endpoint, profile: PerfProfile
) -> tuple[float, float]:
    """Accelerator-hours per token at a typical batch: what a token costs on owned capacity."""
    site = fabric.sites[endpoint.site]
    hourly = None
    for acc in site.accelerators:
        if endpoint.accelerator in (None, acc.type):
            hourly = acc.on_demand_usd_per_device_hour or acc.reserved_usd_per_device_hour
            break
    if hourly is None:
        return 0.0, 0.0
    usd_per_s = hourly * max(endpoint.devices, profile.devices_per_replica) / 3600.0
    typical_batch = max(1, profile.max_batch_size // 2)
    output_tps = profile.decode_tokens_per_s * typical_batch
    return usd_per_s / profile.prefill_tokens_per_s, usd_per_s / output_tps


def endpoint_infos(fabric: Fabric) -> list[EndpointInfo]:
    infos = []
    for endpoint in fabric.spec.endpoints:
        model = fabric.models[endpoint.model]
        profile = _profile(fabric, endpoint, model)
        if model.usd_per_million_input_tokens is not None and not model.open_weights:
            in_price = model.usd_per_million_input_tokens / 1e6
            out_price = (model.usd_per_million_output_tokens or 0.0) / 1e6
        else:
            in_price, out_price = _self_hosted_usd_per_token(fabric, endpoint, profile)
        infos.append(
            EndpointInfo(
                name=endpoint.name,
                model=endpoint.model,
                site=endpoint.site,
                provider=fabric.sites[endpoint.site].provider,
                kind=model.kind,
                prefill_tokens_per_s=profile.prefill_tokens_per_s,
                decode_tokens_per_s=profile.decode_tokens_per_s,
                max_batch_size=profile.max_batch_size,
                max_concurrency=endpoint.max_concurrency,
                kv_cache_tokens=endpoint.kv_cache_tokens or profile.kv_cache_tokens or 100_000,
                context_tokens=model.context_tokens,
                usd_per_input_token=in_price,
                usd_per_output_token=out_price,
                quality=max(model.quality.values(), default=0.5),
            )
        )
    return infos


class FleetState:
    """Endpoints by index, their static facts and their live load."""

    def __init__(self, infos: Sequence[EndpointInfo], index_block_tokens: int = 16) -> None:
        self.infos = tuple(infos)
        self.position = {info.name: i for i, info in enumerate(self.infos)}
        self.block_tokens = index_block_tokens
        n = len(self.infos)
        self.ms_per_prefill_token: FloatArray = np.array(
            [1000.0 / i.prefill_tokens_per_s for i in self.infos], dtype=np.float64
        )
        self.mean_service_ms: FloatArray = np.array(
            [256 * 1000.0 / i.decode_tokens_per_s for i in self.infos], dtype=np.float64
        )
        self.max_batch: FloatArray = np.array(
            [i.max_batch_size for i in self.infos], dtype=np.float64
        )
        self.kv_cache_tokens: FloatArray = np.array(
            [i.kv_cache_tokens for i in self.infos], dtype=np.float64
        )
        self.context_tokens: FloatArray = np.array(
            [i.context_tokens for i in self.infos], dtype=np.float64
        )
        self.max_concurrency: IntArray = np.array(
            [i.max_concurrency for i in self.infos], dtype=np.int64
        )
        self.usd_per_input_token: FloatArray = np.array(
            [i.usd_per_input_token for i in self.infos], dtype=np.float64
        )
        self.usd_per_output_token: FloatArray = np.array(
            [i.usd_per_output_token for i in self.infos], dtype=np.float64
        )
        self.quality: FloatArray = np.array([i.quality for i in self.infos], dtype=np.float64)
        self.prefill_tokens_per_s: FloatArray = np.array(
            [i.prefill_tokens_per_s for i in self.infos], dtype=np.float64
        )
        self.in_flight: IntArray = np.zeros(n, dtype=np.int64)
        # prefill work as a fluid queue: cumulative uncached tokens dispatched, and processed
        # (as of ``processed_at_s``; it drains at the prefill rate between events)
        self.dispatched_tokens: FloatArray = np.zeros(n, dtype=np.float64)
        self.processed_tokens: FloatArray = np.zeros(n, dtype=np.float64)
        self.processed_at_s: FloatArray = np.zeros(n, dtype=np.float64)
        # when the queued prefill work will have drained (what a decision reads)
        self.queue_empty_at_s: FloatArray = np.zeros(n, dtype=np.float64)
        self.bias_ms: FloatArray = np.zeros(n, dtype=np.float64)
        self.healthy: BoolArray = np.ones(n, dtype=np.bool_)
        self.circuit_open: BoolArray = np.zeros(n, dtype=np.bool_)
        # derived, kept current by the event methods so a decision gathers instead of computing:
        self.blocked: BoolArray = np.zeros(n, dtype=np.bool_)  # unhealthy, circuit open or full
        self.wait_ms: FloatArray = np.zeros(n, dtype=np.float64)  # slot wait + bias_ms
        self.engine_waiting: FloatArray = np.zeros(n, dtype=np.float64)
        self.kv_usage: FloatArray = np.zeros(n, dtype=np.float64)
        self.prefix = PrefixIndex(
            [max(1, i.kv_cache_tokens // index_block_tokens) for i in self.infos]
        )
        self.journal: FleetJournal | None = None

    def __len__(self) -> int:
        return len(self.infos)

    def pending_tokens(self, i: int, now_s: float) -> float:
        """Uncached prompt tokens still ahead at endpoint ``i`` (fluid estimate at ``now_s``)."""
        elapsed = max(0.0, now_s - self.processed_at_s[i])
        processed = self.processed_tokens[i] + elapsed * self.prefill_tokens_per_s[i]
        return float(max(0.0, self.dispatched_tokens[i] - processed))

    def queue_ms(self, i: int, now_s: float) -> float:
        """Predicted wait before a new request's prefill starts at endpoint ``i``."""
        return self.pending_tokens(i, now_s) * float(
            self.ms_per_prefill_token[i]
        ) + self._slot_wait(i)

    def _slot_wait(self, i: int) -> float:
        batch = self.max_batch[i]
        return float(max(0.0, self.in_flight[i] + 1 - batch) / batch * self.mean_service_ms[i])

    def _drain(self, i: int, now_s: float) -> None:
        elapsed = max(0.0, now_s - self.processed_at_s[i])
        self.processed_tokens[i] = min(
            self.dispatched_tokens[i],
            self.processed_tokens[i] + elapsed * self.prefill_tokens_per_s[i],
        )
        self.processed_at_s[i] = max(self.processed_at_s[i], now_s)

    def _refresh(self, i: int) -> None:
        self.wait_ms[i] = self._slot_wait(i) + self.bias_ms[i]
        backlog = self.dispatched_tokens[i] - self.processed_tokens[i]
        self.queue_empty_at_s[i] = self.processed_at_s[i] + backlog / self.prefill_tokens_per_s[i]
        self.blocked[i] = (
            not self.healthy[i]
            or self.circuit_open[i]
            or self.in_flight[i] >= self.max_concurrency[i]
        )

    # -- events written by the gateway or the simulator ------------------------------------
    def dispatched(
        self, i: int, uncached_tokens: int, hashes: Sequence[int] = (), now_s: float = 0.0
    ) -> float:
        """A request was sent to endpoint ``i``; returns its ticket (its place in the prefill
        queue, a ``Ticket`` if its prompt added blocks to the prefix index) for ``first_token``
        and ``failed``."""
        self._drain(i, now_s)
        self.in_flight[i] += 1
        self.dispatched_tokens[i] += uncached_tokens
        inserted = self.prefix.record(i, hashes) if hashes else None
        self._refresh(i)
        if self.journal is not None:
            self.journal.dispatched(i, uncached_tokens, hashes)
        if inserted is None:
            return float(self.dispatched_tokens[i])
        ticket = Ticket(self.dispatched_tokens[i])
        ticket.inserted = inserted
        return ticket

    def first_token(
        self, i: int, ticket: float, model_ms: float, observed_ms: float, now_s: float = 0.0
    ) -> None:
        """The first token arrived: this request's prefill — and, prefill being first come
        first served, all work queued before it — is done; learn the TTFT error.

        ``model_ms`` is the model's prediction at dispatch *without* the learned correction
        (``Candidate.model_ttft_ms``): the correction is a moving average of the model's
        residuals, so many requests in flight at once cannot make it overshoot (feeding
        corrected predictions back would compound the correction).
        """
        self._drain(i, now_s)
        drained = self.processed_tokens[i]
        self.processed_tokens[i] = max(drained, min(ticket, self.dispatched_tokens[i]))
        if self.journal is not None and self.processed_tokens[i] > drained:
            self.journal.processed(i, float(self.processed_tokens[i] - drained))
        residual = observed_ms - model_ms
        self.bias_ms[i] += BIAS_WEIGHT * (residual - self.bias_ms[i])
        self._refresh(i)

    def finished(self, i: int) -> None:
        self.in_flight[i] = max(0, self.in_flight[i] - 1)
        self._refresh(i)

    def failed(
        self,
        i: int,
        uncached_tokens: int,
        before_first_token: bool = True,
        now_s: float = 0.0,
        ticket: float | None = None,
    ) -> None:
        """A request failed: it leaves the endpoint. Before its first token (unreachable,
        refused, answered an error) the engine did not compute its prompt: its prefill work
        leaves the queue, and the prefix blocks its dispatch added (known from ``ticket``, what
        ``dispatched`` returned) leave the index, but for those another request has touched
        since. Other gateways sharing the index are not told (the journal has no such event)."""
        self.in_flight[i] = max(0, self.in_flight[i] - 1)
        if before_first_token:
            self._drain(i, now_s)
            drained = self.processed_tokens[i]
            self.processed_tokens[i] = min(self.dispatched_tokens[i], drained + uncached_tokens)
            if self.journal is not None and self.processed_tokens[i] > drained:
                self.journal.processed(i, float(self.processed_tokens[i] - drained))
            if isinstance(ticket, Ticket):
                self.prefix.retract(ticket.inserted)
        self._refresh(i)

    def set_load(
        self,
        i: int,
        *,
        in_flight: int | None = None,
        pending_prefill_tokens: float | None = None,
        bias_ms: float | None = None,
        now_s: float | None = None,
    ) -> None:
        """Overwrite live load (shared state from other gateways, tests, what-if studies);
        ``pending_prefill_tokens`` is the work queued as of ``now_s``."""
        if now_s is not None:
            self._drain(i, now_s)
        if in_flight is not None:
            self.in_flight[i] = in_flight
        if pending_prefill_tokens is not None:
            self.dispatched_tokens[i] = self.processed_tokens[i] + pending_prefill_tokens
        if bias_ms is not None:
            self.bias_ms[i] = bias_ms
        self._refresh(i)

    def add_remote_work(
        self, i: int, dispatched_tokens: float, processed_tokens: float, now_s: float
    ) -> None:
        """Merge prefill work another gateway sent to endpoint ``i`` (queued behind everything
        here) and work it saw finish early; not journaled."""
        self._drain(i, now_s)
        self.dispatched_tokens[i] += dispatched_tokens
        self.processed_tokens[i] = min(
            self.dispatched_tokens[i], self.processed_tokens[i] + processed_tokens
        )
        self._refresh(i)

    def engine_report(
        self, i: int, *, waiting: float | None = None, kv_usage: float | None = None
    ) -> None:
        """Metrics scraped from the engine (vLLM names: requests waiting, KV cache usage)."""
        if waiting is not None:
            self.engine_waiting[i] = waiting
        if kv_usage is not None:
            self.kv_usage[i] = kv_usage

    def cached_tokens_reported(self, i: int, hashes: Sequence[int], cached_tokens: int) -> None:
        """The engine said how many prompt tokens it served from cache: correct the index."""
        self.prefix.observe(i, hashes, cached_tokens // self.block_tokens)
        if self.journal is not None:
            self.journal.observed(i, hashes, cached_tokens // self.block_tokens)

    def set_health(self, i: int, healthy: bool) -> None:
        self.healthy[i] = healthy
        if not healthy:
            self.prefix.forget(i)
        self._refresh(i)

    def set_circuit_open(self, i: int, is_open: bool) -> None:
        self.circuit_open[i] = is_open
        self._refresh(i)
