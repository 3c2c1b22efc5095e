"""Everything ``route()`` reads: the fleet's live state, the policy, the network, the aliases.

The static half of routing — which endpoints may serve a (gateway site, data class, model,
tenant entitlement, kind) at all, and at what RTT — depends only on the catalog, so it is
computed once per key and memoised here (``compliant``). The per-request half (load, cache,
health) is read from the ``FleetState`` arrays at decision time.

Invariant: an index in ``CompliantSet.indices`` is an endpoint that serves the requested model
(directly or through an alias the tenant may use) and that the compiled sovereignty policy
allows for the data class, at its site, over the path from the gateway's site — a private path
when the rules need one and one exists. Everything else is listed in ``refusals`` with the rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.references import matches_any
from isthmus.network.paths import NetPath, Network
from isthmus.policy.compiled import CompiledPolicy, Verdict
from isthmus.routing.fleet import FleetState, endpoint_infos

__all__ = ["CompliantSet", "RoutingView", "build_view"]

_PATH_CLAUSES = frozenset({"transit_in", "require_private_path"})
_MEMO_LIMIT = 50_000


FloatArray = npt.NDArray[np.float64]
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True, slots=True)
class CompliantSet:
    """The endpoints a kind of request may use from a gateway, with their static facts gathered
    into aligned arrays so a decision reads them without indexing the whole fleet again."""

    indices: npt.NDArray[np.int64]
    rtt_ms: FloatArray
    egress_usd_per_token: FloatArray
    refusals: tuple[tuple[str, str], ...]
    unknown_model: bool = False
    ms_per_prefill_token: FloatArray = field(default_factory=lambda: np.zeros(0))
    max_batch: FloatArray = field(default_factory=lambda: np.zeros(0))
    slot_wait_ms: FloatArray = field(default_factory=lambda: np.zeros(0))
    max_concurrency: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))
    kv_cache_tokens: FloatArray = field(default_factory=lambda: np.zeros(0))
    context_tokens: FloatArray = field(default_factory=lambda: np.zeros(0))  # model's window
    # the most tokens (prompt + max output) a request may need there: the smaller of the two
    request_limit_tokens: FloatArray = field(default_factory=lambda: np.zeros(0))
    usd_per_input_token: FloatArray = field(default_factory=lambda: np.zeros(0))
    usd_per_output_token: FloatArray = field(default_factory=lambda: np.zeros(0))
    min_request_limit_tokens: float = 0.0  # a request needing no more than this fits everywhere
    # per candidate, as plain floats for the scalar path of small sets: (fleet index, rtt_ms,
    # egress USD per token, ms per prefill token, request limit tokens, USD per input, per
    # output token)
    rows: tuple[tuple[int, float, float, float, float, float, float], ...] = ()


@dataclass
class RoutingView:
    fabric: Fabric
    policy: CompiledPolicy
    network: Network
    fleet: FleetState
    ignore_sovereignty: bool = False
    round_robin_counter: int = 0
    _memo: dict[tuple[object, ...], CompliantSet] = field(default_factory=dict)
    _by_model: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, info in enumerate(self.fleet.infos):
            self._by_model.setdefault(info.model, []).append(i)

    def models_for(self, requested: str, allowed: Sequence[str]) -> tuple[str, ...]:
        """Models the request may use: the alias's candidates or the model, that the tenant may
        use (the tenant may be entitled to the alias itself or to the underlying model)."""
        targets = self.fabric.alias_targets(requested)
        if not matches_any(requested, allowed):
            targets = tuple(m for m in targets if matches_any(m, allowed))
        return targets

    def compliant(
        self,
        gateway_site: str,
        data_class: str,
        model: str,
        allowed: tuple[str, ...],
        kind: str,
    ) -> CompliantSet:
        key = (gateway_site, data_class, model, allowed, kind, self.ignore_sovereignty)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            found = self._compute(gateway_site, data_class, model, allowed, kind)
            self._memo[key] = found
        return found

    def _path_and_verdict(
        self, gateway_site: str, data_class: str, site: str, model: str
    ) -> tuple[NetPath | None, Verdict]:
        path = self.network.path(gateway_site, site)
        verdict = self.policy.evaluate(data_class, site, path, model)
        if not verdict.allowed and verdict.clause in _PATH_CLAUSES:
            private = self.network.path(gateway_site, site, private_only=True)
            if private is not None:
                retry = self.policy.evaluate(data_class, site, private, model)
                if retry.allowed or retry.clause not in _PATH_CLAUSES:
                    return private, retry
        return path, verdict

    def _compute(
        self, gateway_site: str, data_class: str, model: str, allowed: tuple[str, ...], kind: str
    ) -> CompliantSet:
        models = self.models_for(model, allowed)
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        if not models:
            known = model in self.fabric.models or model in self.fabric.spec.aliases
            refusal = (
                ("tenant", f"model {model!r} is not among the tenant's allowed models")
                if known
                else ("catalog", f"model {model!r} is not in the catalog")
            )
            return CompliantSet(empty_i, empty_f, empty_f, (refusal,), unknown_model=not known)
        indices: list[int] = []
        rtts: list[float] = []
        egress: list[float] = []
        refusals: list[tuple[str, str]] = []
        for name in models:
            for i in self._by_model.get(name, ()):
                info = self.fleet.infos[i]
                if kind == "embedding" and info.kind != "embedding":
                    continue
                if kind != "embedding" and info.kind == "embedding":
                    continue
                if self.ignore_sovereignty:
                    path = self.network.path(gateway_site, info.site)
                    assert path is not None
                else:
                    maybe_path, verdict = self._path_and_verdict(
                        gateway_site, data_class, info.site, name
                    )
                    if not verdict.allowed or maybe_path is None:
                        refusals.append((info.name, str(verdict)))
                        continue
                    path = maybe_path
                indices.append(i)
                rtts.append(path.rtt_ms)
                egress.append(path.egress_usd_per_gb)
        if not indices and not refusals:
            refusals.append(("catalog", f"no endpoint serves {model!r} for {kind} requests"))
        fleet = self.fleet
        idx = np.array(indices, dtype=np.int64)
        egress_per_token = np.array(egress, dtype=np.float64) * BYTES_PER_TOKEN / 1e9
        limit = np.minimum(fleet.kv_cache_tokens[idx], fleet.context_tokens[idx])
        rows = tuple(
            zip(
                indices,
                np.array(rtts, dtype=np.float64).tolist(),
                egress_per_token.tolist(),
                fleet.ms_per_prefill_token[idx].tolist(),
                limit.tolist(),
                fleet.usd_per_input_token[idx].tolist(),
                fleet.usd_per_output_token[idx].tolist(),
                strict=True,
            )
        )
        return CompliantSet(
            indices=idx,
            rtt_ms=np.array(rtts, dtype=np.float64),
            egress_usd_per_token=egress_per_token,
            refusals=tuple(refusals),
            ms_per_prefill_token=fleet.ms_per_prefill_token[idx],
            max_batch=fleet.max_batch[idx],
            slot_wait_ms=fleet.mean_service_ms[idx] / fleet.max_batch[idx],
            max_concurrency=fleet.max_concurrency[idx],
            kv_cache_tokens=fleet.kv_cache_tokens[idx],
            context_tokens=fleet.context_tokens[idx],
            request_limit_tokens=limit,
            usd_per_input_token=fleet.usd_per_input_token[idx],
            usd_per_output_token=fleet.usd_per_output_token[idx],
            min_request_limit_tokens=float(limit.min()) if indices else 0.0,
            rows=rows,
        )


def build_view(
    fabric: Fabric,
    *,
    policy: CompiledPolicy | None = None,
    network: Network | None = None,
    index_block_tokens: int = 16,
    ignore_sovereignty: bool = False,
) -> RoutingView:
    from isthmus.policy import compile_policy

    return RoutingView(
        fabric=fabric,
        policy=policy or compile_policy(fabric),
        network=network or Network(fabric),
        fleet=FleetState(endpoint_infos(fabric), index_block_tokens),
        ignore_sovereignty=ignore_sovereignty,
    )
