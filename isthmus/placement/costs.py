"""The cost model: what one leg of a workload costs on every slot, and whether it may run there.

``evaluate(ctx, need)`` returns a ``LegTable``: arrays over every slot of the fabric (a pool of
one accelerator type at one site, or a provider API) holding the leg's cost per planning period
(broken down), its devices, its TTFT from each demand metro, its data strategy per dataset, and
the first reason it may not run there (``reason == OK`` for a feasible leg). The optimizer sees
only feasible legs; explanations read the rest.

Compute (H = period hours, n = N + k legs, each provisioned for peak/N)
-----------------------------------------------------------------------
Services (online inference, RAG). A replica of ``d`` devices serves a request in
``t = in / prefill + out / (stream * B)`` replica-seconds, where ``B = max_batch / 2`` is the
typical batch (as the router assumes) and ``stream = decode / (1 + 0.01 (B - 1))`` the per-stream
decode speed under that batch (the engine timing model's batch slowdown). At the target
utilisation ``U = 0.7`` a replica carries ``c = U / t`` requests/s; a leg holds
``R = ceil(peak / N / c)`` replicas. The leg's load in normal operation follows a load-duration
curve ``F(x)`` (the share of the period the load exceeds ``x``) built from its share of the mean
(``mean / n``), of the peak (``peak / n``) and the duty cycle ``D``: while active the load is
uniform on ``[2a - p, p]`` with ``a = mean / D``, or, when that would go negative, falls as
``D (1 - x/p)^g`` with ``g = D p / mean - 1`` — both integrate to the mean. Replica ``j`` is needed
a share ``F_j = F((j - 1) c)`` of the period (``F_1 = D``: one replica stays warm while active).
It is bought at the cheaper of

    dedicated   d * H * price_dedicated                (reserved; owned hardware: amortised)
    on-demand   d * F_j * H * price_on_demand * 1.10   (autoscaled, 10% for scale-up lead;
                                                        owned hardware shared: amortised / 0.6)

so a replica is dedicated exactly when its utilisation ``F_j`` exceeds the break-even
``price_dedicated / (1.1 * price_on_demand)``: steady load goes to dedicated capacity, bursts to
shared capacity. Replicas needed only after a failure have ``F_j = 0``: free on demand, full
price where only dedicated capacity exists. Services never run on spot.

TTFT P95 from metro ``m`` = RTT(m, site) + prefill (``in / prefill``) + the P95 wait for the
prefill server, an M/G/1 queue at its share of the utilisation (``rho = U * prefill share``,
Pollaczek-Khinchine mean with an exponential tail) + one decode step + for RAG the retrieval
(5 ms, plus the RTT to the dataset's home when it is read remotely).

Jobs (pre-training, fine-tuning, batch inference). Work per run in replica-hours: training
``tokens / (prefill * 0.8 / f) / 3600`` per device (``f = 3`` for full training — forward and
backward — ``2`` for LoRA; 0.8 for scaling losses), on replicas of ``d * m`` devices (``m = 4``
for the optimiser state of full training, ``1`` for LoRA); batch inference
``requests * t / 0.9 / 3600``. Tiers for ``runs`` runs per period with deadline ``T``:
on-demand ``ceil(W / T)`` replicas at ``runs * W`` replica-hours; spot the same with 15% more
work (preemptions and checkpoints); dedicated ``max(ceil(W / T), ceil(runs W / H))`` replicas for
the whole period. The cheapest tier whose devices fit the free pool wins. Jobs time-share
pools: a job needs all its devices at once, but holds them only while it runs, so shared
capacity counts its average occupancy (``devices × runs × run hours / H``; all of them when
dedicated), as a scheduler packing jobs over the period would.

Data, egress, weights (one-time costs spread over ``amortise_periods``)
-----------------------------------------------------------------------
A dataset at home ``h`` is read at a leg on ``s`` either remotely (GB read per period ×
egress h→s: ``size × epochs × runs`` for jobs, ``requests × kB`` for RAG) or from a local copy
(``size × egress`` once, ``size × refresh × egress`` per period for changes, and storage at
0.023 USD/GB-month). Remote reads need the policy to allow processing at ``s`` over the path; a
copy also needs storage there and the dataset's residency. The cheaper allowed strategy wins,
unless remote reads would cost a metro its TTFT SLO. Serving egress is the response bytes (4 per
token) × egress site→metro. Open weights (2 bytes per parameter) come from the cheapest site
already serving the model, else from a public registry at no charge. Provider APIs are billed
per token. Carbon: device-hours × board power × PUE 1.2 × the site's grid intensity; its shadow
price goes to the objective, not to the cost, as does a tie-break of 0.0001 USD per ms of worst
TTFT (equal costs go to the nearer site).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from isthmus.fabric.schema import Dataset, ModelSpec
from isthmus.placement.context import PUE, PlanContext
from isthmus.placement.spec import SERVING_KINDS, TRAINING_KINDS, DatasetUse, Workload

__all__ = [
    "LegTable",
    "Need",
    "Reason",
    "Strategy",
    "Tier",
    "evaluate",
    "load_share",
    "resolve",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TARGET_UTILISATION = 0.7
BATCH_UTILISATION = 0.9
BATCH_OCCUPANCY = 0.5
BATCH_SLOWDOWN = 0.01
AUTOSCALE_OVERHEAD = 0.10
SPOT_OVERHEAD = 0.15
TRAIN_EFFICIENCY = 0.8
TRAIN_FLOP_FACTOR = {"full": 3.0, "lora": 2.0}
TRAIN_MEMORY_FACTOR = {"full": 4.0, "lora": 1.0}
BYTES_PER_TOKEN = 4.0
BYTES_PER_PARAM = 2.0
STORAGE_USD_PER_GB_MONTH = 0.023
RETRIEVAL_MS = 5.0
LOCAL_RTT_MS = 0.5
P95_TAIL = 0.05
PREFILL_SCV = 0.25
"""Squared coefficient of variation of prefill times: prompts of one workload vary moderately."""
TIE_BREAK_USD_PER_MS = 1e-4
"""Among equal costs, prefer the nearer site (a millisecond is worth 0.0001 USD)."""
MAX_REPLICAS = 512
"""A leg needing more replicas than this is refused for capacity: split the workload."""


class Reason(IntEnum):
    """Why a leg may not run on a slot, in the order they are checked."""

    OK = 0
    NO_PROFILE = 1
    UNPRICED = 2
    DOWN = 3
    SOVEREIGNTY = 4
    PATH = 5
    DATA = 6
    PRIVATE = 7
    PINNED = 8
    CARBON = 9
    THROUGHPUT = 10
    LATENCY = 11
    CAPACITY = 12
    BUDGET = 13


class Tier(IntEnum):
    NONE = 0
    ON_DEMAND = 1
    DEDICATED = 2
    MIXED = 3
    SPOT = 4
    API = 5


class Strategy(IntEnum):
    NONE = 0
    LOCAL = 1
    REMOTE = 2
    REPLICATE = 3


@dataclass(frozen=True)
class Need:
    """A workload resolved against the fabric: what the cost model needs of it."""

    workload: Workload
    model: ModelSpec
    data_class: str
    metros: tuple[str, ...]
    mean_rps: FloatArray
    peak_rps: FloatArray
    datasets: tuple[tuple[DatasetUse, Dataset], ...]

    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def kind(self) -> str:
        return self.workload.kind

    @property
    def legs(self) -> int:
        return self.workload.redundancy.legs

    @property
    def cover_required(self) -> int:
        r = self.workload.redundancy
        return r.k + 1 if r.failover_within_slo else 1


def resolve(ctx: PlanContext, workload: Workload, data_class: str) -> Need:
    """The ``Need`` of a validated workload."""
    per = workload.request.input_tokens + workload.request.output_tokens
    rates = [d.rps(per) for d in workload.demand]
    return Need(
        workload=workload,
        model=ctx.fabric.models[workload.model],
        data_class=data_class,
        metros=tuple(d.metro for d in workload.demand),
        mean_rps=np.array([r[0] for r in rates], dtype=np.float64),
        peak_rps=np.array([r[1] for r in rates], dtype=np.float64),
        datasets=tuple((use, ctx.fabric.datasets[use.name]) for use in workload.datasets),
    )


@dataclass
class LegTable:
    """One workload's leg on every slot (arrays indexed by slot)."""

    need: Need
    cost: FloatArray
    compute_dedicated: FloatArray
    compute_on_demand: FloatArray
    compute_spot: FloatArray
    api: FloatArray
    data: FloatArray
    serving_egress: FloatArray
    weights: FloatArray
    carbon_kg: FloatArray
    carbon_usd: FloatArray
    devices: FloatArray
    """Devices the leg holds at once (its replicas at peak, or while a job runs)."""
    occupancy: FloatArray
    """Devices it holds on average over the period: what shared pool capacity must cover.
    A service's replicas must all be there at peak (occupancy = devices); a job holds its
    devices only while it runs (devices × runs × run hours / period, unless dedicated)."""
    replicas: FloatArray
    dedicated_replicas: FloatArray
    tier: IntArray
    ttft_ms: FloatArray
    """Metros × slots (empty for jobs)."""
    cover: BoolArray
    """Metros × slots: TTFT within the SLO."""
    strategy: IntArray
    """Datasets × slots."""
    data_gb: FloatArray
    """Datasets × slots: GB moved per period (one-time copies amortised)."""
    stream_tokens_per_s: FloatArray
    service_ms: FloatArray
    """TTFT minus the user's RTT: prefill, queueing, first decode step, retrieval."""
    run_hours: FloatArray
    reason: IntArray
    reason_metro: IntArray
    reason_dataset: IntArray

    @property
    def feasible(self) -> BoolArray:
        return np.asarray(self.reason == Reason.OK, dtype=bool)

    @property
    def objective(self) -> FloatArray:
        """Cost + carbon shadow price + a tie-break of 0.0001 USD per ms of worst TTFT."""
        worst = self.ttft_ms.max(axis=0) if self.ttft_ms.shape[0] else 0.0
        tie = TIE_BREAK_USD_PER_MS * np.nan_to_num(worst)
        return np.asarray(self.cost + self.carbon_usd + tie, dtype=np.float64)


def load_share(x: FloatArray, mean: float, peak: float, duty: float) -> FloatArray:
    """The load-duration curve F(x): share of the period the load exceeds ``x``."""
    out = np.zeros_like(x)
    if peak <= 0 or duty <= 0:
        return out
    if mean <= 0:
        return np.where(x <= 0, duty, 0.0)
    active = mean / duty
    low = 2 * active - peak
    below = x < peak
    if low >= 0:
        if peak - low <= 1e-12:
            return np.where(below, duty, 0.0)
        ramp = duty * (peak - x) / (peak - low)
        return np.where(x < low, duty, np.where(below, ramp, 0.0))
    exponent = duty * peak / mean - 1.0
    base = np.clip(1.0 - x / peak, 0.0, 1.0)
    return np.where(below, duty * base**exponent, 0.0)


@dataclass(frozen=True)
class _Shape:
    """What a model does per slot for one request shape (memoised per shape)."""

    profiled: BoolArray
    devices: FloatArray
    replica_devices: FloatArray
    stream: FloatArray
    t_request: FloatArray
    cap: FloatArray
    service_ms: FloatArray
    work_per_unit: FloatArray
    """Jobs: replica-hours per request (batch) or per token (training)."""


def _shape(ctx: PlanContext, need: Need) -> _Shape:
    w = need.workload
    kind = w.kind
    family = "train" if kind in TRAINING_KINDS else ("serve" if kind in SERVING_KINDS else "batch")
    method = w.method if family == "train" else ""
    key = (
        "shape",
        need.model.name,
        family,
        method,
        w.request.input_tokens,
        w.request.output_tokens,
    )
    found = ctx.memo.get(key)
    if isinstance(found, _Shape):
        return found
    model = ctx.model_arrays(need.model, inference=family != "train")
    prefill = model.prefill_tokens_per_s
    devs = model.devices_per_replica
    with np.errstate(invalid="ignore", divide="ignore"):
        ins = float(w.request.input_tokens)
        outs = float(w.request.output_tokens)
        batch = np.maximum(1.0, model.max_batch * BATCH_OCCUPANCY)
        stream = model.decode_tokens_per_s / (1.0 + BATCH_SLOWDOWN * (batch - 1.0))
        t_prefill = ins / prefill
        t_request = t_prefill + outs / (stream * batch)
        cap = TARGET_UTILISATION / t_request
        service = 1000.0 * (t_prefill + _prefill_wait_s(t_prefill, t_request) + 1.0 / stream)
        if family == "train":
            replica_devices = devs * TRAIN_MEMORY_FACTOR[method]
            per_device = prefill / devs * TRAIN_EFFICIENCY / TRAIN_FLOP_FACTOR[method]
            work = 1.0 / per_device / 3600.0 / replica_devices
        else:
            replica_devices = devs
            work = t_request / BATCH_UTILISATION / 3600.0
    found = _Shape(
        profiled=~np.isnan(prefill),
        devices=devs,
        replica_devices=replica_devices,
        stream=stream,
        t_request=t_request,
        cap=cap,
        service_ms=service,
        work_per_unit=work,
    )
    ctx.memo[key] = found
    return found


def _static_reason(ctx: PlanContext, need: Need, shape: _Shape) -> tuple[IntArray, IntArray]:
    """Reasons that depend on the model, class, kind, tenant and pins only (memoised): those
    checked before the paths and data (no profile, no price, down, sovereignty) and those
    checked after them (another tenant's site, pins), so a refusal names the rule first."""
    w = need.workload
    serving = w.kind in SERVING_KINDS
    spot = w.spot == "auto" and not serving
    key = (
        "static",
        need.model.name,
        need.data_class,
        serving,
        spot,
        w.pin,
        w.avoid,
        w.kind,
        w.tenant,
    )
    found = ctx.memo.get(key)
    if found is not None:
        return found  # type: ignore[return-value]
    site = ctx.slot_site
    priced = ~np.isnan(ctx.slot_on_demand) | ~np.isnan(ctx.slot_dedicated) | ctx.slot_is_api
    if spot:
        priced |= ~np.isnan(ctx.slot_spot)
    pinned = ~ctx.filter_mask(w.pin) | ctx.avoid_mask(w.avoid)
    refused = ~ctx.process_ok(need.data_class, need.model.name)[site]
    private = ctx.private_to_others(w.tenant)[site]
    before = np.select(
        [~shape.profiled, ~priced, ctx.site_down[site], refused],
        [NO_PROFILE, UNPRICED, DOWN, SOVEREIGNTY],
        OK,
    ).astype(np.int64)
    after = np.select([private, pinned], [PRIVATE, PINNED], OK).astype(np.int64)
    ctx.memo[key] = (before, after)
    return before, after


OK = int(Reason.OK)
NO_PROFILE = int(Reason.NO_PROFILE)
UNPRICED = int(Reason.UNPRICED)
DOWN = int(Reason.DOWN)
PRIVATE = int(Reason.PRIVATE)
PINNED = int(Reason.PINNED)
SOVEREIGNTY = int(Reason.SOVEREIGNTY)
PATH = int(Reason.PATH)
DATA = int(Reason.DATA)
CARBON = int(Reason.CARBON)
THROUGHPUT = int(Reason.THROUGHPUT)
LATENCY = int(Reason.LATENCY)
CAPACITY = int(Reason.CAPACITY)
BUDGET = int(Reason.BUDGET)
TIER_API = int(Tier.API)
TIER_SPOT = int(Tier.SPOT)
TIER_DEDICATED = int(Tier.DEDICATED)
TIER_MIXED = int(Tier.MIXED)
TIER_ON_DEMAND = int(Tier.ON_DEMAND)
S_LOCAL = int(Strategy.LOCAL)
S_REMOTE = int(Strategy.REMOTE)
S_REPLICATE = int(Strategy.REPLICATE)
S_NONE = int(Strategy.NONE)


def evaluate(
    ctx: PlanContext, need: Need, *, on_demand_only: bool = False, everywhere: bool = False
) -> LegTable:
    """Cost, devices, latency, data strategy and feasibility of ``need``'s leg on every slot.

    ``on_demand_only`` prices compute the way a cloud broker buys it by default (on-demand
    wherever it is offered; owned hardware is still paid for the whole period) — used to cost
    the SkyPilot-style baseline under the same model. Costs are computed for the slots that
    pass the policy checks, or for every slot the model can run on with ``everywhere`` (for
    explanations and for pricing assignments that ignore the policy).
    """
    w = need.workload
    kind = w.kind
    n_slots = ctx.slot_count
    hours = ctx.period_hours
    site = ctx.slot_site
    shape = _shape(ctx, need)
    before, after = _static_reason(ctx, need, shape)
    reason = before.copy()
    reason_metro = np.full(n_slots, -1, dtype=np.int64)
    reason_dataset = np.full(n_slots, -1, dtype=np.int64)
    is_api = ctx.slot_is_api
    serving = kind in SERVING_KINDS
    n_metros = len(need.metros)
    rtt = np.zeros((n_metros, n_slots))
    egress_out = np.zeros((n_metros, n_slots))
    for m, metro in enumerate(need.metros):
        access = ctx.metro_access(need.data_class, metro)
        rtt[m] = access.rtt_ms[site]
        egress_out[m] = access.egress_usd_per_gb[site]
        refused = (reason == OK) & ~access.allowed[site]
        reason_metro[refused] = m
        reason[refused] = PATH
    alive = reason == OK
    if everywhere:
        alive = shape.profiled.copy()
    ins = float(w.request.input_tokens)
    outs = float(w.request.output_tokens)
    mean_total = float(need.mean_rps.sum())
    peak_total = float(need.peak_rps.sum())
    legs = need.legs
    zeros = np.zeros(n_slots)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        compute_od = zeros.copy()
        compute_spot = zeros.copy()
        api = zeros.copy()
        if serving:
            cap = shape.cap
            replicas = np.maximum(1.0, np.ceil(peak_total / w.redundancy.n / cap))
            replicas = np.where(is_api | ~np.isfinite(replicas), 1.0, replicas)
            too_many = replicas > MAX_REPLICAS
            replicas = np.minimum(replicas, MAX_REPLICAS)
            compute_ded, compute_od, dedicated_replicas, device_hours = _serving_compute(
                ctx,
                alive,
                replicas,
                cap,
                shape.devices,
                mean_total / legs,
                peak_total / legs,
                w.duty_cycle,
                on_demand_only=on_demand_only,
            )
            devices = np.where(is_api, 0.0, replicas * shape.devices)
            devices[too_many] = np.inf
            api[is_api] = _api_cost(ctx, mean_total / legs * hours * 3600.0, ins, outs)[is_api]
            tier = np.where(
                is_api,
                TIER_API,
                np.where(
                    dedicated_replicas >= replicas,
                    TIER_DEDICATED,
                    np.where(dedicated_replicas > 0, TIER_MIXED, TIER_ON_DEMAND),
                ),
            )
            run_hours = zeros
        else:
            deadline = float(w.slo.deadline_hours or hours)
            runs = float(w.runs_per_period)
            if kind in TRAINING_KINDS:
                units = float(w.train_tokens_b or 0.0) * 1e9
            else:
                units = float(w.requests or 0)
            work = units * shape.work_per_unit
            (
                compute_ded,
                compute_od,
                compute_spot,
                replicas,
                dedicated_replicas,
                tier,
                run_hours,
            ) = _job_compute(
                ctx,
                work,
                shape.replica_devices,
                deadline,
                runs,
                w.spot == "auto" and not on_demand_only,
                on_demand_only=on_demand_only,
            )
            devices = replicas * shape.replica_devices
            device_hours = np.where(tier == TIER_SPOT, 1 + SPOT_OVERHEAD, 1.0) * (
                runs * work * shape.replica_devices
            )
            if kind == "batch_inference" and ctx.api_prices:
                api[is_api] = _api_cost(ctx, units * runs, ins, outs)[is_api]
                for array in (compute_ded, compute_od, compute_spot, device_hours, devices):
                    array[is_api] = 0.0
                tier = np.where(is_api, TIER_API, tier)
                run_hours = np.where(is_api, 0.0, run_hours)
                replicas = np.where(is_api, 1.0, replicas)
        compute = compute_ded + compute_od + compute_spot

        # data: per dataset, remote reads or a local copy
        n_data = len(need.datasets)
        strategy = np.zeros((n_data, n_slots), dtype=np.int64)
        data_gb = np.zeros((n_data, n_slots))
        data_cost = zeros.copy()
        extra_ms = zeros.copy()
        slo = w.slo.ttft_p95_ms
        base_ttft = rtt + shape.service_ms[None, :]
        if n_data:
            choices = [
                _data_options(ctx, need, use, dataset, legs, mean_total)
                for use, dataset in need.datasets
            ]
            fast_extra = zeros.copy()
            for (use, _), option in zip(need.datasets, choices, strict=True):
                if use.access == "per_request":
                    local, _, rep_ok, _, _, _, _, rem_ms = option
                    quick = np.where(local | rep_ok, LOCAL_RTT_MS, rem_ms) + RETRIEVAL_MS
                    fast_extra = np.maximum(fast_extra, quick)
            for i, ((use, _), option) in enumerate(zip(need.datasets, choices, strict=True)):
                local, rem_ok, rep_ok, rem_cost, rep_cost, rem_gb, rep_gb, rem_ms = option
                prefer_remote = rem_ok & (~rep_ok | (rem_cost <= rep_cost))
                if use.access == "per_request" and slo is not None:
                    remote_extra = np.maximum(fast_extra, rem_ms + RETRIEVAL_MS)
                    fast_cover = (base_ttft + fast_extra) <= slo
                    remote_cover = (base_ttft + remote_extra) <= slo
                    keeps = np.all(fast_cover == remote_cover, axis=0)
                    prefer_remote &= keeps | ~rep_ok
                chosen = np.select(
                    [local, prefer_remote, rep_ok], [S_LOCAL, S_REMOTE, S_REPLICATE], S_NONE
                )
                strategy[i] = chosen
                is_remote = chosen == S_REMOTE
                is_copy = chosen == S_REPLICATE
                data_cost += np.where(is_remote, rem_cost, 0.0) + np.where(is_copy, rep_cost, 0.0)
                data_gb[i] = np.where(is_remote, rem_gb, 0.0) + np.where(is_copy, rep_gb, 0.0)
                if use.access == "per_request":
                    used = np.where(is_remote, rem_ms, LOCAL_RTT_MS) + RETRIEVAL_MS
                    extra_ms = np.maximum(extra_ms, used)
                blocked = (reason == OK) & (chosen == S_NONE)
                reason_dataset[blocked] = i
                reason[blocked] = DATA

        reason = np.where(reason == OK, after, reason)
        ttft = base_ttft + extra_ms[None, :]
        cover = ttft <= slo if slo is not None else np.ones_like(ttft, dtype=bool)
        if serving and n_metros:
            response_gb = outs * BYTES_PER_TOKEN / 1e9
            volume = need.mean_rps[:, None] / legs * hours * 3600.0 * response_gb
            serving_egress = (volume * egress_out).sum(axis=0)
        else:
            serving_egress = zeros
        if kind != "pretraining" and need.model.open_weights:
            weights_gb = need.model.params_b * BYTES_PER_PARAM
            weights = ctx.weights_egress(need.model)[site] * (weights_gb / ctx.amortise_periods)
            weights[is_api] = 0.0
        else:
            weights = zeros
        carbon_g = ctx.site_carbon[site]
        carbon_kg = device_hours * ctx.slot_kw * (PUE / 1000.0) * carbon_g
        carbon_usd = carbon_kg * (w.carbon.usd_per_tonne / 1000.0)
        cost = compute + api + data_cost + serving_egress + weights

        open_ = reason == OK
        reason[open_ & ~np.isfinite(cost)] = UNPRICED
        if w.carbon.max_g_per_kwh is not None:
            reason[(reason == OK) & (carbon_g > w.carbon.max_g_per_kwh) & ~is_api] = CARBON
        if w.slo.output_tokens_per_s is not None and serving:
            reason[(reason == OK) & ~(shape.stream >= w.slo.output_tokens_per_s)] = THROUGHPUT
        if serving and slo is not None and legs == 1 and n_metros:
            late = (reason == OK) & ~np.all(cover, axis=0)
            if late.any():
                reason_metro[late] = np.argmax(ttft - slo, axis=0)[late]
                reason[late] = LATENCY
        reason[(reason == OK) & ~(devices <= ctx.slot_free)] = CAPACITY
        if serving:
            occupancy = devices
        else:
            busy = np.minimum(1.0, float(w.runs_per_period) * run_hours / hours)
            occupancy = np.where(tier == TIER_DEDICATED, devices, devices * busy)
        if w.budget_usd is not None:
            reason[(reason == OK) & (cost > w.budget_usd)] = BUDGET

    return LegTable(
        need=need,
        cost=cost,
        compute_dedicated=compute_ded,
        compute_on_demand=compute_od,
        compute_spot=compute_spot,
        api=api,
        data=data_cost,
        serving_egress=serving_egress,
        weights=weights,
        carbon_kg=carbon_kg,
        carbon_usd=carbon_usd,
        devices=devices,
        occupancy=occupancy,
        replicas=replicas,
        dedicated_replicas=dedicated_replicas,
        tier=np.asarray(tier, dtype=np.int64),
        ttft_ms=ttft if serving else np.zeros((0, n_slots)),
        cover=cover if serving else np.zeros((0, n_slots), dtype=bool),
        strategy=strategy,
        data_gb=data_gb,
        stream_tokens_per_s=shape.stream,
        service_ms=shape.service_ms + extra_ms,
        run_hours=run_hours,
        reason=reason,
        reason_metro=reason_metro,
        reason_dataset=reason_dataset,
    )


def _prefill_wait_s(t_prefill: FloatArray, t_request: FloatArray) -> FloatArray:
    """P95 wait for the prefill server at its share ``rho`` of the target utilisation.

    M/G/1: the Pollaczek-Khinchine mean wait ``rho t (1 + cv2) / (2 (1 - rho))`` with an
    exponential tail ``P(W > w) = rho exp(-rho w / mean)``, so
    ``P95 = t (1 + cv2) / (2 (1 - rho)) ln(rho / 0.05)``; ``cv2`` is the squared coefficient of
    variation of prefill times (0 for identical prompts, 1 for the M/M/1 worst case).
    """
    rho = TARGET_UTILISATION * t_prefill / t_request
    tail = np.log(np.maximum(rho, P95_TAIL) / P95_TAIL)
    scale = t_prefill * (1.0 + PREFILL_SCV) / (2.0 * (1.0 - rho))
    return np.asarray(scale * tail, dtype=np.float64)


def _serving_compute(
    ctx: PlanContext,
    alive: BoolArray,
    replicas: FloatArray,
    cap: FloatArray,
    devs: FloatArray,
    mean: float,
    peak: float,
    duty: float,
    *,
    on_demand_only: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(dedicated $, on-demand $, dedicated replicas, device-hours) per slot, computed on the
    slots still ``alive`` and on every slot when all are dead (so refusals carry a cost)."""
    n = ctx.slot_count
    live = alive & ~ctx.slot_is_api & np.isfinite(cap)
    if not live.any():
        live = ~ctx.slot_is_api & np.isfinite(cap)
    idx = np.nonzero(live)[0]
    out = (np.full(n, np.nan), np.full(n, np.nan), np.zeros(n), np.zeros(n))
    for array in out:
        array[ctx.slot_is_api] = 0.0
    if len(idx) == 0:
        return out
    hours = ctx.period_hours
    reps = replicas[idx]
    top = int(reps.max())
    j = np.arange(top, dtype=np.float64)[:, None]
    share = load_share(j * cap[idx][None, :], mean, peak, duty)
    share[0, :] = duty
    active = j < reps[None, :]
    od = share * (hours * (1.0 + AUTOSCALE_OVERHEAD)) * ctx.slot_on_demand[idx][None, :]
    ded = hours * ctx.slot_dedicated[idx]
    if on_demand_only:
        ded = np.where(np.isnan(ctx.slot_on_demand[idx]), ded, np.nan)
    ded_full = np.broadcast_to(ded[None, :], od.shape)
    take_ded = np.where(np.isnan(od), True, ~np.isnan(ded_full) & (ded_full < od)) & active
    take_od = active & ~take_ded
    per_dev = devs[idx]
    n_ded = take_ded.sum(axis=0).astype(np.float64)
    out[0][idx] = n_ded * ded * per_dev
    out[0][idx] = np.where(n_ded > 0, out[0][idx], 0.0)
    out[1][idx] = np.where(take_od, od, 0.0).sum(axis=0) * per_dev
    out[2][idx] = n_ded
    used = n_ded * hours + np.where(take_od, share, 0.0).sum(axis=0) * hours
    out[3][idx] = used * per_dev
    return out


def _job_compute(
    ctx: PlanContext,
    work: FloatArray,
    replica_devices: FloatArray,
    deadline: float,
    runs: float,
    spot_ok: bool,
    *,
    on_demand_only: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, IntArray, FloatArray]:
    """Cheapest tier that fits the free devices, per slot (or the smallest if none fits)."""
    hours = ctx.period_hours
    free = ctx.slot_free
    od_r = np.ceil(work / deadline)
    sp_r = np.ceil(work * (1 + SPOT_OVERHEAD) / deadline)
    ded_r = np.maximum(od_r, np.ceil(runs * work / hours))
    od_c = runs * work * replica_devices * ctx.slot_on_demand
    sp_c = runs * work * (1 + SPOT_OVERHEAD) * replica_devices * ctx.slot_spot
    if not spot_ok:
        sp_c = np.full_like(sp_c, np.nan)
    ded_c = ded_r * replica_devices * ctx.slot_dedicated * hours
    if on_demand_only:
        ded_c = np.where(np.isnan(ctx.slot_on_demand), ded_c, np.nan)
    costs = np.vstack([od_c, ded_c, sp_c])
    reps = np.vstack([od_r, ded_r, sp_r])
    fits = reps * replica_devices[None, :] <= free[None, :]
    priced = np.where(np.isnan(costs), np.inf, costs)
    fitting = np.where(fits, priced, np.inf)
    pick = np.argmin(fitting, axis=0)
    none_fit = ~np.isfinite(fitting.min(axis=0))
    pick = np.where(none_fit, np.argmin(priced, axis=0), pick)
    idx = np.arange(len(pick))
    chosen_cost = costs[pick, idx]
    chosen_reps = reps[pick, idx]
    tiers = np.array([Tier.ON_DEMAND, Tier.DEDICATED, Tier.SPOT], dtype=np.int64)[pick]
    zero = np.zeros(len(pick))
    od = np.where(pick == 0, chosen_cost, zero)
    ded = np.where(pick == 1, chosen_cost, zero)
    spot = np.where(pick == 2, chosen_cost, zero)
    unpriced = ~np.isfinite(priced.min(axis=0))
    od = np.where(unpriced, np.nan, od)
    dedicated_replicas = np.where(pick == 1, chosen_reps, zero)
    factor = np.where(pick == 2, 1 + SPOT_OVERHEAD, 1.0)
    run_hours = work * factor / np.maximum(chosen_reps, 1.0)
    return ded, od, spot, chosen_reps, dedicated_replicas, tiers, run_hours


def _api_cost(ctx: PlanContext, requests: float, ins: float, outs: float) -> FloatArray:
    """Provider API bill per slot for ``requests`` requests per period."""
    out = np.zeros(ctx.slot_count)
    for slot, (p_in, p_out) in ctx.api_prices.items():
        out[slot] = requests * (ins * p_in + outs * p_out) / 1e6
    return out


def _data_options(
    ctx: PlanContext, need: Need, use: DatasetUse, dataset: Dataset, legs: int, mean_total: float
) -> tuple[
    BoolArray, BoolArray, BoolArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray
]:
    """(local, remote ok, copy ok, remote $, copy $, remote GB, copy GB, remote extra ms)."""
    access = ctx.dataset_access(dataset.name, need.model.name)
    site = ctx.slot_site
    hours = ctx.period_hours
    egress = access.egress_usd_per_gb[site]
    size = dataset.size_gb
    if use.access == "once":
        remote_gb = size * use.epochs * float(need.workload.runs_per_period)
    else:
        remote_gb = mean_total / legs * hours * 3600.0 * use.kb_per_request / 1e6
    copy_gb = size / ctx.amortise_periods + size * use.refresh_fraction_per_period
    storage = size * STORAGE_USD_PER_GB_MONTH * hours / 730.0
    copy_cost = copy_gb * egress + storage
    local = access.local[site]
    remote_ok = access.remote_ok[site]
    copy_ok = access.replicate_ok[site] & ~ctx.slot_is_api
    return (
        local & remote_ok,
        remote_ok & ~local,
        copy_ok & ~local,
        remote_gb * egress,
        copy_cost,
        np.full(ctx.slot_count, remote_gb),
        np.full(ctx.slot_count, copy_gb),
        access.rtt_ms[site],
    )
