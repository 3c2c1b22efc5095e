"""``route(request, view) -> Decision``: filters, a time-to-first-token predictor, a picker.

Pure and synchronous: no I/O, no clock, no globals; everything it reads is in the request and the
view (the gateway and the simulator call this very function).

1. **Hard filters.** The static ones (model served, tenant entitlement, sovereignty of the data
   class at the endpoint's site and on the path from the gateway's site, model hosting terms)
   come memoised from ``RoutingView.compliant``; the live ones (health, circuit, capacity,
   endpoints already tried) are boolean masks over the fleet arrays, and so is the request's
   size: its prompt plus its maximum output must fit the engine's KV cache and the model's
   context window (vLLM refuses a request beyond either, whichever router chose it).
2. **Prediction.** For every remaining candidate: ``ttft = rtt + queue + prefill(uncached) +
   learned bias`` (see ``isthmus.routing.fleet``), where the cached part of the prompt comes from
   the prefix index; and the request's cost (uncached input, cached input at a discount, output,
   response egress). Cache affinity and load are traded through this one prediction, not fixed
   weights: a replica holding the prefix wins exactly while its queue costs less than the
   prefill it saves.
3. **Picker**, per the tenant's objective: ``cheapest_within_slo`` (cheapest predicted TTFT
   within the SLO, else the fastest), ``fastest``, or ``weighted`` (normalised TTFT, cost and
   quality). The ranking doubles as the failover order.

The baselines the benchmarks and simulator compare against (round-robin, least-loaded, a
prefix/queue/KV-usage weighted scorer in the style of the Gateway API Inference Extension,
SGLang's cache-aware router) share the request, the view and the filters, so comparisons differ
only in the choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from isthmus.routing.types import Candidate, Decision, RouteRequest
from isthmus.routing.view import CompliantSet, RoutingView

__all__ = [
    "CACHED_INPUT_DISCOUNT",
    "ROUTERS",
    "Router",
    "route",
    "route_cache_aware",
    "route_least_loaded",
    "route_round_robin",
    "route_weighted_scorer",
]

Router = Callable[[RouteRequest, RoutingView], Decision]
FloatArray = npt.NDArray[np.float64]

CACHED_INPUT_DISCOUNT = 0.1
"""Cached prompt tokens cost this fraction of uncached ones (they skip prefill compute)."""
FAILOVER_DEPTH = 4
SCALAR_CANDIDATES = 8
"""Up to this many compliant endpoints, ``route`` predicts with plain floats: numpy's per-call
overhead is larger than the arithmetic on a handful of elements."""
_FULL_SORT = 64


class _PromptSplit(NamedTuple):
    """How the prompt splits into cached and uncached tokens at each distinct matched depth
    (what ``_Scored.levels`` index). Plain floats, with the same operations as elementwise
    over the endpoints, so the same doubles."""

    prompt_tokens: float
    block_tokens: int
    depths: list[int]  # matched blocks

    def cached(self, level: int) -> float:
        return min(float(self.depths[level]) * self.block_tokens, self.prompt_tokens)

    def uncached(self) -> list[float]:
        prompt, block_tokens = self.prompt_tokens, self.block_tokens
        return [prompt - min(float(d) * block_tokens, prompt) for d in self.depths]

    def billed(self, level: int) -> float:
        return _billed_tokens(self.prompt_tokens, self.cached(level))


def _billed_tokens(prompt: float, cached: float) -> float:
    """Input tokens billed: the uncached ones, and the cached ones at the discount."""
    return (prompt - cached) + cached * CACHED_INPUT_DISCOUNT


def _request_cost(
    prompt: float, cached: float, output: float, usd_in: float, usd_out: float, egress: float
) -> float:
    """One candidate's predicted cost in plain floats (the same operations, in the same order,
    as ``_Scored.cost_usd`` does elementwise): input billed, output, egress both ways."""
    cost = _billed_tokens(prompt, cached) * usd_in
    cost += output * usd_out + (prompt + output) * egress
    return cost


class _Scored(NamedTuple):
    """Predictions for every compliant endpoint (aligned with ``compliant.indices``);
    ``blocked`` marks the ones a live filter removed (unhealthy, circuit open, full, tried,
    past the deadline), ``usable`` counts the others. An endpoint's matched prefix is
    ``split``'s entry at its ``level``. The cost is computed only when a ranking needs it
    (``cost_usd``): the candidates' own costs are worked out for them alone."""

    compliant: CompliantSet
    blocked: npt.NDArray[np.bool_]
    usable: int
    levels: npt.NDArray[np.integer[Any]]
    split: _PromptSplit
    queue_ms: FloatArray
    prefill_ms: FloatArray
    ttft_ms: FloatArray
    backlog_ms: FloatArray  # prefill work queued ahead (the queue before slot wait and bias)
    prompt_tokens: float
    output_tokens: float

    @property
    def endpoints(self) -> npt.NDArray[np.int64]:
        return self.compliant.indices

    def matched_blocks(self) -> FloatArray:
        matched: FloatArray = np.array(self.split.depths, dtype=np.float64).take(self.levels)
        return matched

    def cost_usd(self) -> FloatArray:
        c = self.compliant
        billed = [self.split.billed(level) for level in range(len(self.split.depths))]
        cost: FloatArray = np.array(billed).take(self.levels)
        cost *= c.usd_per_input_token
        per_request = self.output_tokens * c.usd_per_output_token
        per_request += (self.prompt_tokens + self.output_tokens) * c.egress_usd_per_token
        cost += per_request
        return cost


def _refused(request: RouteRequest, compliant: CompliantSet, policy: str) -> Decision:
    """Name the rules that excluded the endpoints, most frequent first."""
    counts: dict[str, int] = {}
    for _, why in compliant.refusals:
        rule = why.split(":", 1)[0]
        counts[rule] = counts.get(rule, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    parts = [f"{rule} ({n} endpoint{'s' if n != 1 else ''})" for rule, n in ordered[:3]]
    if len(ordered) > 3:
        parts.append(f"{len(ordered) - 3} more")
    head = "; ".join(parts) if parts else "no endpoint serves it"
    reason = f"no compliant endpoint for {request.data_class} data: {head}"
    return Decision("refused", None, (), reason, compliant.refusals, policy)


def _filter_and_predict(
    request: RouteRequest, view: RoutingView, compliant: CompliantSet
) -> _Scored | str:
    # Each numpy call on a few hundred elements costs about a microsecond whatever it does, so
    # results are written in place (``out=``) and steps that cannot change anything are skipped.
    fleet = view.fleet
    c = compliant
    idx = c.indices
    blocked = fleet.blocked[idx] if np.count_nonzero(fleet.blocked) else None
    if request.exclude:
        tried = [fleet.position[name] for name in request.exclude if name in fleet.position]
        if tried:
            blocked = np.isin(idx, tried) if blocked is None else blocked | np.isin(idx, tried)
    prompt = float(request.prompt_tokens)
    output = float(request.max_output_tokens)
    found = fleet.prefix.match_levels(request.block_hashes, idx)
    if found is None:
        levels: npt.NDArray[np.integer[Any]] = np.zeros(len(idx), dtype=np.uint8)
        split = _PromptSplit(prompt, fleet.block_tokens, [0])
    else:
        levels = found[0]
        split = _PromptSplit(prompt, fleet.block_tokens, found[1])
    # the fluid prefill queue drained to now, plus slot wait and learned bias
    backlog = fleet.queue_empty_at_s[idx]
    np.subtract(backlog, request.now_s, out=backlog)
    np.maximum(backlog, 0.0, out=backlog)
    backlog *= 1000.0
    queue = fleet.wait_ms[idx]
    queue += backlog
    prefill = np.array(split.uncached()).take(levels)
    prefill *= c.ms_per_prefill_token
    ttft = c.rtt_ms + queue
    ttft += prefill
    np.maximum(ttft, c.rtt_ms, out=ttft)
    dead = ttft > request.deadline_ms
    if blocked is not None:
        dead |= blocked
    # a request whose prompt and output cannot fit an engine's KV cache can never run there,
    # nor one longer than the model's context window (the engine answers 400)
    if prompt + output > c.min_request_limit_tokens:
        dead |= c.request_limit_tokens < prompt + output
    usable = len(idx) - int(np.count_nonzero(dead))
    if not usable:
        return _why_unusable(
            request, view, c, np.zeros(len(idx), np.bool_) if blocked is None else blocked, ttft
        )
    return _Scored(c, dead, usable, levels, split, queue, prefill, ttft, backlog, prompt, output)


def _why_unusable(
    request: RouteRequest,
    view: RoutingView,
    c: CompliantSet,
    blocked: npt.NDArray[np.bool_],
    ttft: FloatArray,
) -> str:
    fleet = view.fleet
    idx = c.indices
    needed = float(request.prompt_tokens) + float(request.max_output_tokens)
    beyond_window = c.context_tokens < needed
    too_big = beyond_window | (c.kv_cache_tokens < needed)
    if beyond_window.all():
        return (
            f"the request needs {needed:,.0f} tokens of context (prompt plus max output "
            f"tokens); the longest context window of a compliant model is "
            f"{c.context_tokens.max():,.0f}"
        )
    if too_big.all():
        where = "" if not beyond_window.any() else " whose model's context window fits it"
        return (
            f"the request needs {needed:,.0f} tokens of KV cache; the largest "
            f"compliant endpoint{where} holds {c.kv_cache_tokens[~beyond_window].max():,.0f}"
        )
    if not (blocked | too_big).all():
        return (
            f"no usable endpoint can answer within the deadline of "
            f"{request.deadline_ms:.0f} ms (best predicted TTFT {ttft[~(blocked | too_big)].min():.0f} ms)"
        )
    unhealthy = int((~fleet.healthy[idx]).sum())
    opened = int(fleet.circuit_open[idx].sum())
    at_capacity = int((fleet.in_flight[idx] >= c.max_concurrency).sum())
    return (
        f"{len(idx)} compliant endpoints, none usable: {unhealthy} unhealthy, "
        f"{opened} circuit open, {at_capacity} at capacity, {len(request.exclude)} already tried"
    )


def _candidates(view: RoutingView, scored: _Scored, order: list[int]) -> tuple[Candidate, ...]:
    """The first ``FAILOVER_DEPTH`` usable endpoints of ``order``, with their predictions (a
    handful: read one by one, their costs in plain floats by ``_request_cost``)."""
    fleet = view.fleet
    infos = fleet.infos
    rows = scored.compliant.rows
    split = scored.split
    prompt, output = scored.prompt_tokens, scored.output_tokens
    some_blocked = scored.usable < len(scored.blocked)
    ranked = []
    for k in order[:FAILOVER_DEPTH]:
        if some_blocked and scored.blocked.item(k):
            continue
        i, rtt, egress, _, _, usd_in, usd_out = rows[k]
        cached = split.cached(scored.levels.item(k))
        cost = _request_cost(prompt, cached, output, usd_in, usd_out, egress)
        info = infos[i]
        ranked.append(
            Candidate(
                info.name,
                info.model,
                info.site,
                scored.ttft_ms.item(k),
                rtt,
                scored.queue_ms.item(k),
                scored.prefill_ms.item(k),
                int(cached),
                cost,
                fleet.quality.item(i),
                fleet.bias_ms.item(i),
            )
        )
    return tuple(ranked)


def _routed(why: str, ranked: tuple[Candidate, ...]) -> Decision:
    """Isthmus's decision for a ranking, best first, with the prediction behind it."""
    best = ranked[0]
    reason = (
        f"{why}: ttft {best.predicted_ttft_ms:.0f} ms = rtt {best.rtt_ms:.1f} + wait "
        f"{best.queue_ms:.0f} + prefill {best.prefill_ms:.0f}"
        + (f" ({best.cached_tokens} tokens cached)" if best.cached_tokens else "")
    )
    return Decision("routed", best, ranked, reason, (), "isthmus")


def _best_first(key: FloatArray, scored: _Scored) -> list[int]:
    """Positions of the ``FAILOVER_DEPTH`` smallest keys, smallest first (no full sort);
    blocked entries sort last (and ``_candidates`` drops them)."""
    if scored.usable < len(key):
        key = np.where(scored.blocked, np.inf, key)
    if len(key) <= _FULL_SORT:  # ties keep fleet order, as in the scalar path
        ordered: list[int] = key.argsort(kind="stable")[:FAILOVER_DEPTH].tolist()
        return ordered
    top: list[int] = key.argpartition(FAILOVER_DEPTH - 1)[:FAILOVER_DEPTH].tolist()
    # Python's sort is stable too, and orders these keys as numpy would (they are never NaN)
    return sorted(top, key=key.item)


def _compliant(request: RouteRequest, view: RoutingView) -> CompliantSet:
    """The endpoints the static filters allow for this request (memoised by the view)."""
    return view.compliant(
        request.gateway_site,
        request.data_class,
        request.model,
        request.allowed_models,
        request.kind,
    )


def _prepare(
    request: RouteRequest, view: RoutingView, policy: str, compliant: CompliantSet | None = None
) -> tuple[_Scored | None, Decision | None]:
    if compliant is None:
        compliant = _compliant(request, view)
    if len(compliant.indices) == 0:
        return None, _refused(request, compliant, policy)
    scored = _filter_and_predict(request, view, compliant)
    if isinstance(scored, str):
        return None, Decision("unavailable", None, (), scored, compliant.refusals, policy)
    return scored, None


MAX_UTILISATION = 0.75
"""Cap of the utilisation estimate in ``externality`` (at most 3 requests' worth of delay)."""


def externality(busy_share: float) -> float:
    """How many requests, in expectation, wait behind one unit of work added to a queue whose
    utilisation is estimated by ``busy_share`` (the share of candidates with prefill work
    queued): ``rho / (1 - rho)``, the queue length of an M/M/1 queue. The estimate is coarse
    (every candidate busy reads as 100%), so it is capped at ``MAX_UTILISATION``."""
    rho = min(busy_share, MAX_UTILISATION)
    return rho / (1.0 - rho)


def _fastest_key(scored: _Scored, view: RoutingView) -> FloatArray:
    """Predicted TTFT, plus the delay this request's prefill imposes on the requests after it.

    Sending a request where its prefix is not cached adds its whole uncached prompt to that
    endpoint's prefill queue; the requests queued there behind it wait for that work too. Their
    expected number grows with utilisation (``externality``). At low load the key is the
    request's own TTFT; under load it turns work-conserving, keeping requests where their prefix
    already is unless the queue there costs more than the recomputation and what it does to
    others."""
    queued = scored.backlog_ms > 0.0
    if scored.usable < len(queued):
        queued &= ~scored.blocked
    busy = int(np.count_nonzero(queued)) / max(1, scored.usable)
    key: FloatArray = externality(busy) * scored.prefill_ms
    key += scored.ttft_ms
    return key


def route(request: RouteRequest, view: RoutingView) -> Decision:
    """Isthmus routing: the compliant endpoint that best meets the tenant's objective."""
    compliant = _compliant(request, view)
    if 0 < len(compliant.indices) <= SCALAR_CANDIDATES:
        small = _route_scalar(request, view, compliant)
        if small is not None:
            return small
    return _route_arrays(request, view, compliant)


def _route_arrays(
    request: RouteRequest, view: RoutingView, compliant: CompliantSet | None = None
) -> Decision:
    scored, early = _prepare(request, view, "isthmus", compliant)
    if early is not None:
        return early
    assert scored is not None
    objective = request.objective
    ttft = scored.ttft_ms
    # Ties break on predicted TTFT: a tiebreaker of 1e-12 USD per ms only separates costs that
    # differ by less than a hundred-millionth of a dollar.
    if objective.kind == "fastest":
        key = _fastest_key(scored, view)
        why = "fastest"
    elif objective.kind == "weighted":
        quality = view.fleet.quality[scored.endpoints]
        cost = scored.cost_usd()
        cost_scale = max(float(cost.min()), 1e-12)
        key = (
            objective.ttft_weight * ttft / objective.ttft_slo_ms
            + objective.cost_weight * cost / cost_scale
            - objective.quality_weight * quality
        )
        why = "best weighted score"
    else:
        within = ttft <= objective.ttft_slo_ms
        if np.count_nonzero(within):
            # outside the SLO sorts after every endpoint within it, fastest first
            key = np.where(within, scored.cost_usd() + ttft * 1e-12, 1e6 + ttft)
            why = f"cheapest within {objective.ttft_slo_ms:.0f} ms TTFT SLO"
        else:
            key = ttft
            why = f"fastest (none predicted within {objective.ttft_slo_ms:.0f} ms SLO)"
    order = _best_first(key, scored)
    ranked = _candidates(view, scored, order)
    return _routed(why, ranked)


def _route_scalar(request: RouteRequest, view: RoutingView, c: CompliantSet) -> Decision | None:
    """``route`` for a few candidates, in plain floats, with the very same arithmetic (same
    operations in the same order, so the same doubles) and the same ordering (stable, blocked
    last) as the array path. Returns ``None`` when no candidate is usable: the array path then
    explains why."""
    fleet = view.fleet
    prompt = float(request.prompt_tokens)
    output = float(request.max_output_tokens)
    now = request.now_s
    deadline = request.deadline_ms
    exclude = request.exclude
    position = fleet.position
    tried = {position[name] for name in exclude if name in position} if exclude else ()
    runs = fleet.prefix.runs(request.block_hashes)
    block_tokens = fleet.block_tokens
    rows = []
    live = 0
    busy = 0
    for k, (i, rtt, egress, ms_prefill, max_tokens, usd_in, usd_out) in enumerate(c.rows):
        matched = float(sum(blocks for mask, blocks in runs if mask >> i & 1))
        cached = min(matched * block_tokens, prompt)
        uncached = prompt - cached
        backlog = max(float(fleet.queue_empty_at_s[i]) - now, 0.0) * 1000.0
        queue = backlog + float(fleet.wait_ms[i])
        prefill = uncached * ms_prefill
        ttft = max(rtt + queue + prefill, rtt)
        cost = _request_cost(prompt, cached, output, usd_in, usd_out, egress)
        dead = (
            bool(fleet.blocked[i]) or i in tried or max_tokens < prompt + output or ttft > deadline
        )
        if not dead:
            live += 1
            busy += backlog > 0.0
        rows.append((k, i, dead, rtt, queue, prefill, ttft, cached, cost))
    if not live:
        return None
    objective = request.objective
    if objective.kind == "fastest":
        share = externality(busy / live)
        keys = [r[6] + share * r[5] for r in rows]
        why = "fastest"
    elif objective.kind == "weighted":
        cost_scale = max(min(r[8] for r in rows), 1e-12)
        quality = fleet.quality
        keys = [
            objective.ttft_weight * r[6] / objective.ttft_slo_ms
            + objective.cost_weight * r[8] / cost_scale
            - objective.quality_weight * float(quality[r[1]])
            for r in rows
        ]
        why = "best weighted score"
    else:
        slo = objective.ttft_slo_ms
        if any(r[6] <= slo for r in rows):
            keys = [r[8] + r[6] * 1e-12 if r[6] <= slo else 1e6 + r[6] for r in rows]
            why = f"cheapest within {slo:.0f} ms TTFT SLO"
        else:
            keys = [r[6] for r in rows]
            why = f"fastest (none predicted within {slo:.0f} ms SLO)"
    order = sorted((k for k in range(len(rows)) if not rows[k][2]), key=keys.__getitem__)[
        :FAILOVER_DEPTH
    ]
    infos = fleet.infos
    ranked = tuple(
        Candidate(
            infos[i].name,
            infos[i].model,
            infos[i].site,
            ttft,
            rtt,
            queue,
            prefill,
            int(cached),
            cost,
            float(fleet.quality[i]),
            float(fleet.bias_ms[i]),
        )
        for _, i, _, rtt, queue, prefill, ttft, cached, cost in (rows[k] for k in order)
    )
    return _routed(why, ranked)


def _by_order(
    request: RouteRequest,
    view: RoutingView,
    policy: str,
    pick: Callable[[_Scored], list[int]],
    why: str,
) -> Decision:
    scored, early = _prepare(request, view, policy)
    if early is not None:
        return early
    assert scored is not None
    ranked = _candidates(view, scored, pick(scored))
    return Decision("routed", ranked[0], ranked, why, (), policy)


def route_round_robin(request: RouteRequest, view: RoutingView) -> Decision:
    def pick(scored: _Scored) -> list[int]:
        usable = np.flatnonzero(~scored.blocked)
        start = view.round_robin_counter % len(usable)
        view.round_robin_counter += 1
        ordered: list[int] = np.roll(usable, -start)[:FAILOVER_DEPTH].tolist()
        return ordered

    return _by_order(request, view, "round_robin", pick, "round robin")


def route_least_loaded(request: RouteRequest, view: RoutingView) -> Decision:
    def pick(scored: _Scored) -> list[int]:
        return _best_first(view.fleet.in_flight[scored.endpoints].astype(np.float64), scored)

    return _by_order(request, view, "least_loaded", pick, "fewest requests in flight")


def _normalised_low_is_good(values: FloatArray) -> FloatArray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.ones_like(values)
    return 1.0 - (values - low) / (high - low)


def route_weighted_scorer(request: RouteRequest, view: RoutingView) -> Decision:
    """Prefix 3 / queue 2 / KV-usage 2, as the Gateway API Inference Extension's default profile."""

    def pick(scored: _Scored) -> list[int]:
        fleet = view.fleet
        blocks = max(1, len(request.block_hashes))
        prefix_score = scored.matched_blocks() / blocks
        waiting = np.maximum(
            fleet.engine_waiting[scored.endpoints], fleet.in_flight[scored.endpoints]
        )
        queue_score = _normalised_low_is_good(waiting.astype(np.float64))
        kv_score = 1.0 - fleet.kv_usage[scored.endpoints]
        score = 3 * prefix_score + 2 * queue_score + 2 * kv_score
        return _best_first(-score, scored)

    return _by_order(request, view, "weighted_scorer", pick, "prefix 3 / queue 2 / kv 2")


CACHE_THRESHOLD = 0.5
BALANCE_ABS_THRESHOLD = 32
BALANCE_REL_THRESHOLD = 1.0001


def route_cache_aware(request: RouteRequest, view: RoutingView) -> Decision:
    """SGLang's cache-aware policy: balance when load is skewed, else follow the longest prefix
    match above a threshold, else the replica with the smallest cache tree."""

    def ranking(scored: _Scored) -> npt.NDArray[np.intp]:
        fleet = view.fleet
        usable = ~scored.blocked
        load = fleet.in_flight[scored.endpoints].astype(np.float64)
        low, high = float(load[usable].min()), float(load[usable].max())
        if high - low > BALANCE_ABS_THRESHOLD and high > low * BALANCE_REL_THRESHOLD:
            return np.lexsort((load, scored.blocked))
        blocks = max(1, len(request.block_hashes))
        rate = scored.matched_blocks() / blocks
        if float(rate[usable].max()) > CACHE_THRESHOLD:
            return np.lexsort((load, -rate, scored.blocked))
        tree = np.array(
            [fleet.prefix.blocks_held(int(i)) for i in scored.endpoints], dtype=np.float64
        )
        return np.lexsort((load, tree, scored.blocked))

    def pick(scored: _Scored) -> list[int]:
        top: list[int] = ranking(scored)[:FAILOVER_DEPTH].tolist()
        return top

    return _by_order(request, view, "cache_aware", pick, "cache-aware (SGLang style)")


ROUTERS: dict[str, Router] = {
    "isthmus": route,
    "round_robin": route_round_robin,
    "least_loaded": route_least_loaded,
    "weighted_scorer": route_weighted_scorer,
    "cache_aware": route_cache_aware,
}
