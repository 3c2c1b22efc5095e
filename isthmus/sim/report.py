"""What a simulation run shows: latency percentiles, SLOs, cache, cost, placement, sovereignty.

Pure: results (and the replay's fabric view) in, a JSON-ready summary out. The infinite-cache
bound is the share of prompt tokens whose prefix blocks were seen in any earlier request — what
a single cache of unlimited size shared by every endpoint would serve.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from isthmus.sim.replay import Replay, RequestResult, TraceRequest, chained_block_hashes

__all__ = ["infinite_cache_bound", "summarise"]

TRACE_BLOCK_TOKENS = 512
DEFAULT_SLO_MS = 250.0


def infinite_cache_bound(requests: Sequence[TraceRequest]) -> float:
    """The share of prompt tokens, in arrival order, that an earlier request already covered
    with the same chain of trace blocks, counted to the token (the finest block any engine
    could cache).

    Trace blocks are chained as the replay chains them (``chained_block_hashes``: ids past a
    prompt's ``hash_ids`` repeat its last id), one per 512 tokens of the prompt, the last
    possibly partial; a block covers as many of its tokens as the longest earlier prompt
    that reached it did. So no engine's hit rate on the same requests exceeds it."""
    covered: dict[int, int] = {}  # trace-block hash -> most tokens of it an earlier prompt had
    hit = total = 0
    for request in requests:
        tokens = request.prompt_tokens
        groups = -(-tokens // TRACE_BLOCK_TOKENS)
        chain = chained_block_hashes(
            request.hash_ids, groups * TRACE_BLOCK_TOKENS, TRACE_BLOCK_TOKENS
        )
        owns = [min(TRACE_BLOCK_TOKENS, tokens - g * TRACE_BLOCK_TOKENS) for g in range(groups)]
        for block, own in zip(chain, owns, strict=False):
            earlier = covered.get(block, 0)
            hit += min(own, earlier)
            if earlier < own:
                break
        for block, own in zip(chain, owns, strict=False):
            covered[block] = max(covered.get(block, 0), own)
        total += tokens
    return hit / total if total else 0.0


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise(
    policy: str,
    results: Sequence[RequestResult],
    replay: Replay,
    bound: float | None = None,
) -> dict[str, Any]:
    ok = [r for r in results if r.status == "ok" and r.ttft_s is not None and r.e2e_s is not None]
    ttft = [r.ttft_s * 1000.0 for r in ok if r.ttft_s is not None]
    e2e = [r.e2e_s * 1000.0 for r in ok if r.e2e_s is not None]
    tpot = [
        (r.e2e_s - r.ttft_s) * 1000.0 / (r.output_tokens - 1)
        for r in ok
        if r.e2e_s is not None and r.ttft_s is not None and r.output_tokens > 1
    ]
    duration = max(replay.end_s, 1e-9)
    within = [
        r
        for r in ok
        if r.ttft_s is not None and r.ttft_s * 1000.0 <= (r.ttft_slo_ms or DEFAULT_SLO_MS)
    ]
    prompt = sum(r.prompt_tokens for r in ok)
    cached = sum(r.cached_tokens for r in ok)
    fleet = replay.view.fleet
    sites = {info.name: info.site for info in fleet.infos}
    jurisdiction = {s.name: s.jurisdiction_code for s in replay.fabric.spec.sites}
    cost_by_site: dict[str, float] = defaultdict(float)
    tokens_by_site: Counter[str] = Counter()
    tokens_by_jurisdiction: Counter[str] = Counter()
    for r in ok:
        assert r.site is not None
        cost_by_site[r.site] += r.cost_usd
        tokens = r.prompt_tokens + r.output_tokens
        tokens_by_site[r.site] += tokens
        tokens_by_jurisdiction[jurisdiction[r.site]] += tokens
    busy = replay.engine_busy_s()
    utilisation = {
        info.name: round(busy[i] / (duration * len(replay.engines[i])), 4)
        for i, info in enumerate(fleet.infos)
        if busy[i] > 0
    }
    hit_rate = cached / prompt if prompt else 0.0
    return {
        "policy": policy,
        "respects_sovereignty": replay.respect_sovereignty,
        "requests": len(results),
        "ok": len(ok),
        "success_rate": len(ok) / len(results) if results else 0.0,
        "refused": sum(1 for r in results if r.status == "refused"),
        "failed": sum(1 for r in results if r.status not in ("ok", "refused")),
        "ttft_ms": {"p50": _pct(ttft, 50), "p95": _pct(ttft, 95), "p99": _pct(ttft, 99)},
        "tpot_ms": {"p50": _pct(tpot, 50), "p95": _pct(tpot, 95)},
        "e2e_ms": {"p50": _pct(e2e, 50), "p95": _pct(e2e, 95), "p99": _pct(e2e, 99)},
        "slo_attainment": len(within) / len(ok) if ok else 0.0,
        "goodput_rps": len(within) / duration,
        "throughput_rps": len(ok) / duration,
        "simulated_s": duration,
        "hit_rate": hit_rate,
        "infinite_cache_bound": bound,
        "hit_rate_of_bound": hit_rate / bound if bound else None,
        "cost_usd_by_site": {k: round(v, 6) for k, v in sorted(cost_by_site.items())},
        "cost_usd": round(sum(cost_by_site.values()), 6),
        "tokens_by_site": dict(tokens_by_site.most_common()),
        "tokens_by_jurisdiction": dict(tokens_by_jurisdiction.most_common()),
        "utilisation_by_endpoint": utilisation,
        "endpoints_used": len({r.endpoint for r in ok}),
        "sovereignty_violations": sum(1 for r in results if r.violation),
        "violations_by_rule": dict(Counter(r.violation for r in results if r.violation)),
        "sites": sorted(set(sites.values())),
    }
