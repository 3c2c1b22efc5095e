"""THE engine timing model: continuous batching, chunked prefill, KV prefix cache, in pure code.

The emulator (real time) and the simulator (virtual time) drive the same :class:`EngineCore`;
nothing here reads a clock or awaits: every method takes ``now_s`` and the caller decides what
time is. The driving loop is always::

    step = core.plan_step(now_s)            # None: idle until the next submit()
    now_s += step.duration_s                # sleep (emulator) or jump (simulator)
    events = core.finish_step(step, now_s)  # FirstToken / Token / Done / Preempted

Step time (one forward pass of the batch)
-----------------------------------------
Let ``t1 = 1 / decode_tokens_per_s`` (a batch-1 decode step at short context, as profiled),
``o = step_overhead_s`` (scheduler, sampling, kernel launches; capped at ``t1 / 4``) and
``w = t1 - o`` the time to stream the weights through the GPU once. For a step that prefills
``P`` tokens (chunks of prompts) and decodes one token for each of ``b`` sequences whose KV
caches hold ``C`` tokens in total::

    step_s = o + max(w, (P + b) / prefill_tokens_per_s)
               + [b > 0] * w * (batch_slowdown * (b - 1) + kv_read_share * C / kv_cache_tokens)

Why: a forward pass is a roofline — it costs at least one read of the weights (memory bound,
``w``) and at least its arithmetic (compute bound, ``(P + b) / prefill_tokens_per_s``, the
profiled prefill rate being the compute-bound rate). Decode adds what grows with the batch:
reading every decoding sequence's KV cache (``C`` tokens; a full cache of ``kv_cache_tokens``
costs ``kv_read_share`` weight reads, since an engine sizes its cache to the memory left after
the weights) and a small per-sequence cost (sampling, attention launch, ``batch_slowdown``).
It reduces to the profile where the profile was measured: a batch-1 decode at short context
takes exactly ``t1``, a long prefill runs at ``prefill_tokens_per_s``. Decodes riding along a
compute-bound prefill chunk are nearly free, which is why chunked prefill (Sarathi-Serve,
vLLM) piggybacks them; a chunk is at most ``max_batched_tokens`` so it delays decodes by at
most one chunk time.

Defaults and why (the last three are order-of-magnitude assumptions, not measured here; a
calibration against a real engine should replace them): ``block_tokens=16`` and
``max_batched_tokens=2048`` are vLLM's defaults; ``step_overhead_s=1 ms``, the CPU work of a
Python engine per step (scheduling, input preparation, sampling); ``batch_slowdown=0.01``: a
batch of 64 short sequences decodes in ~1.6x the batch-1 step time, (1.6 - 1) / 63 ~= 0.01,
the shape of published vLLM decode benchmarks for 7-8B models on one data-centre GPU;
``kv_read_share=1.0``: the KV memory left after the weights ranges from ~3x the weights (8B on
80 GB) to ~0.1x (70B on 2x80 GB), 1.0 is between; ``kv_cache_tokens`` unknown -> 4,096 tokens
per batch slot.

Scheduling (vLLM's, with decode-first chunked prefill)
-----------------------------------------------------
Each step has a token budget ``max_batched_tokens``. Running sequences that are decoding get
one token each (oldest first), then running sequences still prefilling get chunks, then waiting
requests are admitted in FCFS order while the budget, ``max_batch_size`` and free KV blocks
allow. A request reuses the longest cached prefix of its block-hash chain (at least one token
is always computed); ``cached_tokens`` is what its first admission reused. Blocks are allocated
as prefill and decode proceed; when none can be had, the most recently admitted running
sequence is preempted (its blocks released, recomputed later from the front of the queue, its
generated tokens kept), and no new request is admitted in that step. The oldest running
sequence is never preempted for a younger one, so every request whose prompt plus output fits
in the cache finishes (liveness).

Decode runs (the simulator's macro-steps)
-----------------------------------------
While every running sequence is decoding and nothing can be admitted (the queue is empty or the
batch is full), each step has the same composition and only the KV context grows, by ``b``
tokens a step, so step ``j`` of the run lasts ``d0 + j * g`` with ``g = w * kv_read_share * b /
kv_cache_tokens`` and the run's ``k`` steps end at ``j * d0 + g * j * (j - 1) / 2`` (``j = 1..k``).
``plan_step(now_s, max_steps=K)`` plans such a run as one :class:`Step` of ``steps > 1``: it
stops at the first sequence that finishes and only where the pool has the blocks for the whole
run (so nothing is preempted inside it). A driver in virtual time jumps to the run's end, or,
when something happens meanwhile (a submit, an abort, an observation), calls :meth:`advance`
to apply the steps already over and :meth:`truncate` to end the run at the step in progress.
The result equals stepping one by one (up to floating-point rounding): the same steps happen at
the same times; only the per-token events inside a run are folded into one ``Token`` per
sequence (its latest). The emulator streams tokens, so it plans single steps.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, Literal

from isthmus.engines.kvcache import BlockPool

if TYPE_CHECKING:
    from isthmus.fabric.schema import PerfProfile

__all__ = [
    "DEFAULT_PROFILE",
    "Done",
    "EngineCore",
    "EngineLoad",
    "EngineProfile",
    "EngineRequest",
    "Event",
    "FirstToken",
    "Preempted",
    "RequestTooLarge",
    "Step",
    "Token",
    "Usage",
]

DEFAULT_BLOCK_TOKENS = 16
DEFAULT_MAX_BATCHED_TOKENS = 2048
DEFAULT_STEP_OVERHEAD_S = 0.001
DEFAULT_BATCH_SLOWDOWN = 0.01
DEFAULT_KV_READ_SHARE = 1.0
KV_TOKENS_PER_BATCH_SLOT = 4096
EMBEDDING_PREFILL_PER_DECODE = 100.0
"""Embedding profiles carry a placeholder decode rate; their weight-read floor is taken as the
time to prefill this many tokens (the prefill/decode ratio of typical chat profiles)."""


@dataclass(frozen=True, slots=True)
class EngineProfile:
    """How fast one replica runs; see the module docstring for the step-time formula."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    max_batch_size: int = 64
    kv_cache_tokens: int = 64 * KV_TOKENS_PER_BATCH_SLOT
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS
    step_overhead_s: float = DEFAULT_STEP_OVERHEAD_S
    batch_slowdown: float = DEFAULT_BATCH_SLOWDOWN
    kv_read_share: float = DEFAULT_KV_READ_SHARE

    def __post_init__(self) -> None:
        problems = []
        if not self.prefill_tokens_per_s > 0:
            problems.append(f"prefill_tokens_per_s must be > 0, got {self.prefill_tokens_per_s}")
        if not self.decode_tokens_per_s > 0:
            problems.append(f"decode_tokens_per_s must be > 0, got {self.decode_tokens_per_s}")
        if self.max_batch_size < 1:
            problems.append(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.block_tokens < 1:
            problems.append(f"block_tokens must be >= 1, got {self.block_tokens}")
        if self.kv_cache_tokens < self.block_tokens:
            problems.append(
                f"kv_cache_tokens ({self.kv_cache_tokens}) must hold at least one block "
                f"of {self.block_tokens} tokens"
            )
        if self.max_batched_tokens < self.max_batch_size:
            problems.append(
                f"max_batched_tokens ({self.max_batched_tokens}) must be >= max_batch_size "
                f"({self.max_batch_size}) so every running sequence can decode each step"
            )
        if self.step_overhead_s < 0 or self.batch_slowdown < 0 or self.kv_read_share < 0:
            problems.append("step_overhead_s, batch_slowdown and kv_read_share must be >= 0")
        if problems:
            raise ValueError("invalid EngineProfile: " + "; ".join(problems))

    @classmethod
    def from_perf(
        cls,
        profile: PerfProfile,
        kv_cache_tokens: int | None = None,
        *,
        kind: Literal["chat", "completion", "embedding"] = "chat",
        **overrides: Any,
    ) -> EngineProfile:
        """The engine profile of one replica from a fabric ``PerfProfile``.

        ``kv_cache_tokens`` (e.g. an endpoint's override) wins over the profile's; with neither,
        the cache holds ``KV_TOKENS_PER_BATCH_SLOT`` tokens per batch slot. For ``kind``
        ``embedding`` the placeholder decode rate is replaced (see
        ``EMBEDDING_PREFILL_PER_DECODE``). ``overrides`` set any other field.
        """
        decode = profile.decode_tokens_per_s
        if kind == "embedding":
            decode = profile.prefill_tokens_per_s / EMBEDDING_PREFILL_PER_DECODE
        kv = kv_cache_tokens or profile.kv_cache_tokens
        fields: dict[str, Any] = {
            "prefill_tokens_per_s": profile.prefill_tokens_per_s,
            "decode_tokens_per_s": decode,
            "max_batch_size": profile.max_batch_size,
            "kv_cache_tokens": kv or profile.max_batch_size * KV_TOKENS_PER_BATCH_SLOT,
            "max_batched_tokens": max(DEFAULT_MAX_BATCHED_TOKENS, profile.max_batch_size),
        }
        fields.update(overrides)
        return cls(**fields)

    # -- derived ---------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return self.kv_cache_tokens // self.block_tokens

    @property
    def capacity_tokens(self) -> int:
        """Tokens the KV cache holds in whole blocks: the most one sequence can ever use."""
        return self.num_blocks * self.block_tokens

    @property
    def overhead_s(self) -> float:
        """The per-step overhead actually applied: ``step_overhead_s`` capped at ``t1 / 4``."""
        return min(self.step_overhead_s, 0.25 / self.decode_tokens_per_s)

    @property
    def weights_read_s(self) -> float:
        """``w = t1 - overhead``: the memory-bound floor of any forward pass."""
        return 1.0 / self.decode_tokens_per_s - self.overhead_s

    def step_duration_s(
        self, prefill_tokens: int, decode_seqs: int = 0, decode_context_tokens: int = 0
    ) -> float:
        """Duration of one step (module docstring formula); 0 for an empty step."""
        if prefill_tokens <= 0 and decode_seqs <= 0:
            return 0.0
        w = self.weights_read_s
        forward = max(w, (prefill_tokens + decode_seqs) / self.prefill_tokens_per_s)
        if decode_seqs > 0:
            forward += w * (
                self.batch_slowdown * (decode_seqs - 1)
                + self.kv_read_share * decode_context_tokens / self.kv_cache_tokens
            )
        return self.overhead_s + forward

    def prefill_time_s(self, tokens: int, decode_seqs: int = 0, decode_context: int = 0) -> float:
        """Time to prefill ``tokens`` in full chunks alongside ``decode_seqs`` decodes."""
        if tokens <= 0:
            return 0.0
        budget = max(1, self.max_batched_tokens - decode_seqs)
        full, rest = divmod(tokens, budget)
        t = full * self.step_duration_s(budget, decode_seqs, decode_context)
        if rest:
            t += self.step_duration_s(rest, decode_seqs, decode_context)
        return t


DEFAULT_PROFILE = EngineProfile(
    prefill_tokens_per_s=10_000.0, decode_tokens_per_s=100.0, max_batch_size=64
)
"""A mid-size model (~8B) on one data-centre GPU, for endpoints without a profile."""


# -- requests, steps, events ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation: ``prompt_tokens`` to prefill, then ``max_tokens`` to decode (0: prefill
    only, as for embeddings). ``block_hashes`` are the chained hashes of the prompt's full
    blocks at the profile's ``block_tokens`` (``tokens.block_hashes``); empty: never cached."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    block_hashes: tuple[int, ...] = ()


class RequestTooLarge(ValueError):
    """The request can never run: prompt plus output exceed the KV cache."""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


@dataclass(frozen=True, slots=True)
class FirstToken:
    request_id: str
    cached_tokens: int
    ttft_s: float


@dataclass(frozen=True, slots=True)
class Token:
    """Output token ``index`` (>= 1; index 0 is the FirstToken)."""

    request_id: str
    index: int


@dataclass(frozen=True, slots=True)
class Done:
    request_id: str
    usage: Usage
    latency_s: float


@dataclass(frozen=True, slots=True)
class Preempted:
    request_id: str


Event = FirstToken | Token | Done | Preempted


@dataclass(frozen=True, slots=True)
class Step:
    """One planned forward pass, or a decode run of ``steps`` passes of the same batch (see the
    module docstring): what it computes and how long it takes. Pass ``j`` of a run lasts
    ``first_step_s + j * growth_s``; ``duration_s`` is the whole run's."""

    started_s: float
    duration_s: float
    prefill: tuple[tuple[str, int], ...]
    decode: tuple[str, ...]
    preempted: tuple[str, ...] = ()
    steps: int = 1
    first_step_s: float = 0.0
    growth_s: float = 0.0

    @property
    def ended_s(self) -> float:
        return self.started_s + self.duration_s

    def offset_s(self, j: int) -> float:
        """When pass ``j`` of the run (0-based) starts, from the run's start."""
        if self.steps == 1:
            return self.duration_s if j >= 1 else 0.0
        return j * self.first_step_s + self.growth_s * (j * (j - 1) // 2)

    def passes_before(self, time_s: float) -> int:
        """How many passes of the run start before ``time_s`` (at least 1, at most ``steps``)."""
        if self.steps == 1:
            return 1
        elapsed = time_s - self.started_s
        # the largest j with offset_s(j) < elapsed, from the quadratic, then corrected for rounding
        g, d0 = self.growth_s, self.first_step_s
        if g > 0:
            b = d0 - g / 2
            j = int((-b + math.sqrt(max(0.0, b * b + 2 * g * elapsed))) / g)
        else:
            j = int(elapsed / d0)
        j = min(max(j, 0), self.steps - 1)
        while j + 1 < self.steps and self.offset_s(j + 1) < elapsed:
            j += 1
        while j > 0 and self.offset_s(j) >= elapsed:
            j -= 1
        return j + 1

    @property
    def prefill_tokens(self) -> int:
        return sum(n for _, n in self.prefill)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """A snapshot of an engine's queue and cache, for routers and metrics."""

    waiting: int
    running: int
    kv_usage: float
    queued_prefill_tokens: int
    prefix_cache_queries: int
    prefix_cache_hits: int
    preemptions: int


@dataclass(slots=True, eq=False)
class _Seq:
    req: EngineRequest
    arrival_s: float
    num_tokens: int  # prompt + generated so far
    expected_cached: int = 0  # prefix hit seen at submit; refined at admission
    computed: int = 0  # tokens whose KV is in blocks
    generated: int = 0
    blocks: list[int] = field(default_factory=list)
    n_hashed: int = 0  # leading blocks already registered in (or taken from) the prefix cache
    cached_tokens: int | None = None

    @property
    def decoding(self) -> bool:
        return self.generated > 0 and self.num_tokens - self.computed == 1


class EngineCore:
    """One engine replica's scheduler and KV cache; see the module docstring."""

    def __init__(self, profile: EngineProfile, *, tokens: bool = True) -> None:
        """``tokens=False``: single steps report no ``Token`` events (a driver that times
        requests only, like the simulator, needs just ``FirstToken``, ``Done``, ``Preempted``)."""
        self.profile = profile
        self.tokens = tokens
        self.pool = BlockPool(profile.num_blocks)
        self._seqs: dict[str, _Seq] = {}
        self._waiting: deque[_Seq] = deque()
        self._running: list[_Seq] = []
        self._in_flight: Step | None = None
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0
        self.preemptions = 0

    # -- observables -----------------------------------------------------------------------
    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        return not self._seqs and self._in_flight is None

    def kv_usage(self) -> float:
        return self.pool.usage()

    def queued_prefill_tokens(self) -> int:
        """Prompt tokens still to prefill: queued requests (less the prefix hit each had when
        submitted) and running requests not yet decoding."""
        queued = sum(s.num_tokens - s.expected_cached for s in self._waiting)
        return queued + sum(s.num_tokens - s.computed for s in self._running if not s.decoding)

    def load(self) -> EngineLoad:
        return EngineLoad(
            waiting=len(self._waiting),
            running=len(self._running),
            kv_usage=self.pool.usage(),
            queued_prefill_tokens=self.queued_prefill_tokens(),
            prefix_cache_queries=self.prefix_cache_queries,
            prefix_cache_hits=self.prefix_cache_hits,
            preemptions=self.preemptions,
        )

    def cached_prefix_tokens(self, prompt_tokens: int, block_hashes: Sequence[int]) -> int:
        """Tokens of this prompt the cache holds now (at least one token is always computed)."""
        bt = self.profile.block_tokens
        limit = min(len(block_hashes), max(0, prompt_tokens - 1) // bt)
        return len(self.pool.lookup(block_hashes[:limit])) * bt

    def predict_ttft_s(
        self, prompt_tokens: int, block_hashes: Sequence[int] = (), now_s: float = 0.0
    ) -> float:
        """Predicted time to first token of a request submitted at ``now_s``.

        ``rest + max(slot + prefill(own), prefill(ahead + own))`` where ``rest`` is what is
        left of the step in flight; ``own`` the prompt's uncached tokens; ``ahead`` the queued
        prefill work (:meth:`queued_prefill_tokens`); ``prefill(n)`` the time to prefill ``n``
        tokens in chunks beside the current decodes; ``slot`` when a batch slot frees up for
        it (FCFS: each sequence ahead holds a slot for its prefill plus its remaining decode
        steps at the current decode step time). Ignores waits for KV blocks and future
        arrivals; exact for an idle engine.
        """
        p = self.profile
        rest = 0.0
        step = self._in_flight
        if step is not None:  # what is left of the pass in progress
            rest = max(0.0, step.started_s + step.offset_s(step.passes_before(now_s)) - now_s)
        decoders = [s for s in self._running if s.decoding]
        b = len(decoders)
        ctx = sum(s.computed for s in decoders)
        own = prompt_tokens - self.cached_prefix_tokens(prompt_tokens, block_hashes)
        ahead = self.queued_prefill_tokens()
        slot = self._slot_free_s(p.step_duration_s(0, max(1, b), ctx))
        return rest + max(
            slot + p.prefill_time_s(own, b, ctx), p.prefill_time_s(ahead + own, b, ctx)
        )

    def _slot_free_s(self, decode_step_s: float) -> float:
        """When the next request in line would get a batch slot (0 if one is free)."""
        p = self.profile
        if len(self._running) + len(self._waiting) < p.max_batch_size:
            return 0.0
        free_at = [0.0] * (p.max_batch_size - len(self._running))
        for s in self._running:
            left = s.req.max_tokens - s.generated
            if s.decoding:
                free_at.append(left * decode_step_s)
            else:
                prefill = p.prefill_time_s(s.num_tokens - s.computed)
                free_at.append(prefill + max(0, left - 1) * decode_step_s)
        heapq.heapify(free_at)
        for s in self._waiting:
            start = heapq.heappop(free_at)
            prefill = p.prefill_time_s(s.num_tokens - s.expected_cached)
            left = s.req.max_tokens - s.generated
            heapq.heappush(free_at, start + prefill + max(0, left - 1) * decode_step_s)
        return free_at[0]

    # -- requests --------------------------------------------------------------------------
    def submit(self, request: EngineRequest, now_s: float) -> None:
        """Queue ``request`` (FCFS). Raises RequestTooLarge if it could never fit the cache."""
        if request.request_id in self._seqs:
            raise ValueError(f"request id {request.request_id!r} is already in the engine")
        if request.prompt_tokens < 1 or request.max_tokens < 0:
            raise ValueError("a request needs prompt_tokens >= 1 and max_tokens >= 0")
        needed = request.prompt_tokens + request.max_tokens
        if needed > self.profile.capacity_tokens:
            raise RequestTooLarge(
                f"prompt ({request.prompt_tokens}) plus max_tokens ({request.max_tokens}) "
                f"exceeds the KV cache ({self.profile.capacity_tokens} tokens)"
            )
        if len(request.block_hashes) > request.prompt_tokens // self.profile.block_tokens:
            raise ValueError("more block hashes than full prompt blocks")
        seq = _Seq(request, now_s, request.prompt_tokens)
        seq.expected_cached = self.cached_prefix_tokens(request.prompt_tokens, request.block_hashes)
        self._seqs[request.request_id] = seq
        self._waiting.append(seq)

    def abort(self, request_id: str) -> bool:
        """Drop a request (client gone), releasing its blocks. False if it is not here."""
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return False
        if seq in self._running:
            self._running.remove(seq)
        else:
            self._waiting.remove(seq)
        self.pool.release(seq.blocks)
        seq.blocks = []
        return True

    # -- stepping --------------------------------------------------------------------------
    def plan_step(self, now_s: float, max_steps: int = 1) -> Step | None:
        """Choose the next batch and allocate its blocks; None if there is nothing to run.

        With ``max_steps > 1`` a decode-only batch that cannot change before its first
        sequence finishes is planned as a run of up to ``max_steps`` passes (module docstring).
        """
        if self._in_flight is not None:
            raise RuntimeError("finish_step() the step in flight before planning another")
        p = self.profile
        budget = p.max_batched_tokens
        chunks: dict[str, int] = {}
        preempted: list[str] = []
        running = self._running
        bt = p.block_tokens
        # decoding sequences first (``_Seq.decoding``, inlined: this runs every step)
        candidates = [s for s in running if s.generated > 0 and s.num_tokens - s.computed == 1]
        if len(candidates) < len(running):
            candidates += [
                s for s in running if not (s.generated > 0 and s.num_tokens - s.computed == 1)
            ]
        for seq in candidates:
            if budget <= 0:
                break
            if preempted and seq.req.request_id in preempted:
                continue  # preempted earlier in this loop
            chunk = min(seq.num_tokens - seq.computed, budget)
            if seq.computed + chunk <= len(seq.blocks) * bt:  # its blocks suffice (_grow)
                chunks[seq.req.request_id] = chunk
                budget -= chunk
                continue
            while not self._grow(seq, seq.computed + chunk):
                victim = self._running.pop()  # the most recently admitted
                budget += chunks.pop(victim.req.request_id, 0)
                self._preempt(victim)
                preempted.append(victim.req.request_id)
                if victim is seq:
                    break
            else:
                chunks[seq.req.request_id] = chunk
                budget -= chunk
        if not preempted:
            budget = self._admit(budget, chunks)
        if not chunks:
            return None
        prefill: list[tuple[str, int]] = []
        decode: list[str] = []
        decoders: list[_Seq] = []
        fillers: list[_Seq] = []
        ctx = 0
        for seq in self._running:
            n = chunks.get(seq.req.request_id)
            if n is None:
                continue
            if seq.generated > 0 and seq.num_tokens - seq.computed == 1:  # decoding
                decode.append(seq.req.request_id)
                decoders.append(seq)
                ctx += seq.computed
            else:
                prefill.append((seq.req.request_id, n))
                fillers.append(seq)
        duration = p.step_duration_s(sum(n for _, n in prefill), len(decode), ctx)
        steps = 1
        if max_steps > 1 and not preempted and len(fillers) <= 1:
            steps = self._run_length(max_steps, decoders, fillers[0] if fillers else None)
        if steps == 1:
            step = Step(now_s, duration, tuple(prefill), tuple(decode), tuple(preempted))
        else:
            growth = p.weights_read_s * p.kv_read_share * len(decode) / p.kv_cache_tokens
            run = Step(now_s, 0.0, (), (), (), steps, duration, growth)
            step = Step(
                now_s,
                run.offset_s(steps),
                tuple(prefill),
                tuple(decode),
                (),
                steps,
                duration,
                growth,
            )
        self._in_flight = step
        return step

    def _run_length(self, max_steps: int, decoders: list[_Seq], filler: _Seq | None) -> int:
        """Passes the planned batch can repeat unchanged: its decoders, plus at most one
        prompt prefilled in full chunks of the whole remaining budget. Until the first decoder
        finishes or the prompt's last chunk; while nothing can be admitted (the budget is spent
        on the prompt, or the queue is empty or the batch full); and while the pool holds the
        blocks for every pass (so no pass preempts)."""
        p = self.profile
        steps = max_steps
        chunk = p.max_batched_tokens - len(decoders)
        if filler is not None:
            left = filler.num_tokens - filler.computed
            if left <= chunk:
                return 1  # not a full chunk: budget is left to admit requests
            steps = min(steps, (left - 1) // chunk)
        elif len(decoders) != len(self._running) or (
            self._waiting and len(self._running) < p.max_batch_size
        ):
            return 1  # the next pass may admit a waiting request
        if decoders:
            steps = min(steps, min(s.req.max_tokens - s.generated for s in decoders))
        bt = p.block_tokens
        available = self.pool.num_available
        while steps > 1:
            need = sum(-(-(s.computed + steps) // bt) - len(s.blocks) for s in decoders)
            if filler is not None:
                need += -(-(filler.computed + steps * chunk) // bt) - len(filler.blocks)
            if need <= available:
                break
            steps //= 2
        return steps

    def advance(self, now_s: float) -> list[Event]:
        """Apply the passes of the decode run in flight that ended before ``now_s`` (never the
        last: ``finish_step`` applies that); the rest of the run stays in flight. Returns each
        advanced sequence's latest ``Token``. A no-op for a single step."""
        step = self._in_flight
        if step is None or step.steps == 1:
            return []
        done = step.passes_before(now_s) - 1
        if done <= 0:
            return []
        events = self._apply_passes(step, done, in_progress=True)
        first = step.first_step_s + done * step.growth_s
        rest = step.steps - done
        self._in_flight = Step(
            step.started_s + step.offset_s(done),
            step.duration_s - step.offset_s(done),
            step.prefill,
            step.decode,
            (),
            rest,
            first,
            step.growth_s,
        )
        if rest == 1:
            self._in_flight = replace(self._in_flight, duration_s=first)
        return events

    def truncate(self, at_s: float) -> Step:
        """End the run in flight with the pass in progress at ``at_s`` (passes starting at or
        after ``at_s`` are dropped: something changed that the next plan must see). Returns the
        step now in flight."""
        step = self._in_flight
        if step is None:
            raise RuntimeError("no step in flight")
        keep = step.passes_before(at_s)
        if keep < step.steps:
            duration = step.offset_s(keep) if keep > 1 else step.first_step_s
            step = replace(step, duration_s=duration, steps=keep)
            self._in_flight = step
        return step

    @property
    def in_flight(self) -> Step | None:
        """The step (or decode run) planned and not yet finished."""
        return self._in_flight

    def finish_step(self, step: Step, now_s: float) -> list[Event]:
        """Apply ``step``'s results at ``now_s``: new tokens, first tokens, completions."""
        if step is not self._in_flight:
            raise RuntimeError("finish_step() got a step that is not the one in flight")
        self._in_flight = None
        if step.steps > 1:
            return self._finish_run(step, now_s)
        events: list[Event] = [Preempted(rid) for rid in step.preempted]
        finished = False
        for rid, n in chain(zip(step.decode, repeat(1)), step.prefill):
            seq = self._seqs.get(rid)
            if seq is None:
                continue  # aborted while the step ran
            seq.computed += n
            if seq.n_hashed < len(seq.req.block_hashes):  # else nothing left to register
                self._register_blocks(seq)
            if seq.computed < seq.num_tokens:
                continue  # mid-prefill
            req = seq.req
            if req.max_tokens > 0:
                seq.generated += 1
                seq.num_tokens += 1
                if seq.generated == 1:
                    cached = seq.cached_tokens or 0
                    events.append(FirstToken(rid, cached, now_s - seq.arrival_s))
                elif self.tokens:
                    events.append(Token(rid, seq.generated - 1))
            if seq.generated >= req.max_tokens:
                self._complete(seq, now_s, events)
                finished = True
        if finished:
            self._running = [s for s in self._running if s.req.request_id in self._seqs]
        return events

    def _apply_passes(self, step: Step, passes: int, in_progress: bool) -> list[Event]:
        """Apply ``passes`` passes of a run: tokens, blocks and prefix-cache registrations as
        they would stand after them, plus (``in_progress``) the blocks the next pass allocated
        when it was planned. Returns each decoder's latest ``Token``. Every allocation happens
        before any release (``_finish_run``), as step by step."""
        events: list[Event] = []
        extra = 1 if in_progress else 0
        bt = self.profile.block_tokens
        for rid in step.decode:
            seq = self._seqs.get(rid)
            if seq is None:
                continue  # aborted while the run went on
            seq.computed += passes
            seq.generated += passes
            seq.num_tokens += passes
            if seq.computed + extra > len(seq.blocks) * bt:
                grown = self._grow(seq, seq.computed + extra)
                assert grown, "a run reserved its blocks"
            events.append(Token(rid, seq.generated - 1))
        for rid, chunk in step.prefill:
            seq = self._seqs.get(rid)
            if seq is None:
                continue
            seq.computed += passes * chunk
            grown = self._grow(seq, seq.computed + extra * chunk)
            assert grown, "a run reserved its blocks"
            self._register_blocks(seq)
        return events

    def _finish_run(self, step: Step, now_s: float) -> list[Event]:
        tokens = self._apply_passes(step, step.steps, in_progress=False)
        events = list(tokens)
        finished = False
        for token in tokens:
            seq = self._seqs[token.request_id]
            if seq.generated >= seq.req.max_tokens:
                self._complete(seq, now_s, events)
                finished = True
        if finished:
            self._running = [s for s in self._running if s.req.request_id in self._seqs]
        return events

    def _complete(self, seq: _Seq, now_s: float, events: list[Event]) -> None:
        """``seq`` has all its tokens: report it done, forget it and release its blocks (the
        caller drops it from the running batch)."""
        req = seq.req
        usage = Usage(req.prompt_tokens, seq.generated, seq.cached_tokens or 0)
        events.append(Done(req.request_id, usage, now_s - seq.arrival_s))
        del self._seqs[req.request_id]
        self.pool.release(seq.blocks)
        seq.blocks = []

    # -- internals -------------------------------------------------------------------------
    def _grow(self, seq: _Seq, tokens: int) -> bool:
        """Give ``seq`` blocks for ``tokens`` computed tokens; False if the pool is short."""
        need = -(-tokens // self.profile.block_tokens) - len(seq.blocks)
        if need <= 0:
            return True
        new = self.pool.allocate(need)
        if new is None:
            return False
        seq.blocks.extend(new)
        return True

    def _preempt(self, seq: _Seq) -> None:
        self.pool.release(seq.blocks)
        seq.blocks = []
        seq.computed = 0
        seq.n_hashed = 0
        self._waiting.appendleft(seq)
        self.preemptions += 1

    def _admit(self, budget: int, chunks: dict[str, int]) -> int:
        bt = self.profile.block_tokens
        while self._waiting and budget > 0 and len(self._running) < self.profile.max_batch_size:
            seq = self._waiting[0]
            hashes = seq.req.block_hashes
            limit = min(len(hashes), (seq.num_tokens - 1) // bt)
            hit = self.pool.lookup(hashes[:limit])
            cached = len(hit) * bt
            chunk = min(seq.num_tokens - cached, budget)
            new_blocks = -(-(cached + chunk) // bt) - len(hit)
            if not self.pool.can_allocate(new_blocks, hit):
                break
            self.pool.acquire(hit)
            new = self.pool.allocate(new_blocks)
            assert new is not None  # can_allocate said so
            seq.blocks = hit + new
            seq.computed = cached
            seq.n_hashed = len(hit)
            if seq.cached_tokens is None:  # first admission: what the client is told
                seq.cached_tokens = cached
                self.prefix_cache_queries += seq.req.prompt_tokens
                self.prefix_cache_hits += cached
            self._waiting.popleft()
            self._running.append(seq)
            chunks[seq.req.request_id] = chunk
            budget -= chunk
        return budget

    def _register_blocks(self, seq: _Seq) -> None:
        hashes = seq.req.block_hashes
        upto = min(seq.computed // self.profile.block_tokens, len(hashes))
        if upto > seq.n_hashed:
            self.pool.register_many(seq.blocks[seq.n_hashed : upto], hashes[seq.n_hashed : upto])
            seq.n_hashed = upto
