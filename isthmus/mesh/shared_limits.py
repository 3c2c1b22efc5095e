"""Rate limits and budgets enforced together by the gateway replicas of a site, in Redis.

``SharedLedger`` has the interface of ``isthmus.gateway.limits.Ledger`` (``LedgerLike``) and the
same semantics, made atomic across replicas: each tenant is one Redis hash, and admission and
settlement are each one Lua script run on it, so two replicas can never both take the last
request of a minute or the last tokens of a budget.

- **Clock.** Buckets refill and budget periods roll by the *caller's* wall clock (``time.time``,
  injectable), passed to every script: the same clock as the local fallback, and the same
  ``period_start`` code. Replicas of one site run NTP; a bucket never refills for time it has
  already seen (``updated`` only moves forward), so a replica whose clock lags cannot refill
  it twice.
- **Reserve, then settle.** Admission takes one request and the request's worst-case tokens
  (prompt + requested output) from the buckets and *reserves* those tokens against the token
  budget (the local ledger only checks it; across replicas the in-flight requests must count);
  settlement gives back the unused tokens and moves the reservation to the used total with the
  real usage and cost. Once a background task sends them (``deferred``; ``flush``, pipelined,
  every sync period) settlements leave the request path: the shared figures lag a request's
  end by at most that period, on the side of refusing. A replica that dies mid-request leaves its reservation in place until
  the period ends: the budget errs on the side of refusing.
- **Redis unreachable.** The replica keeps serving on its own ``Ledger`` (each replica then
  enforces the tenant's whole limits by itself), logs once per outage and counts the fallback
  (``isthmus_shared_state_fallbacks{part="ledger"}``). It tries Redis again every
  ``retry_after_s`` (sooner when the fleet sync finds Redis back). Settlements that could not
  reach Redis — of shared reservations, and the usage of requests admitted locally — are kept
  (up to ``MAX_PENDING``) and replayed when Redis is back: budgets learn what was spent during
  the outage; the unused tokens of a shared reservation return to the shared buckets; local
  reservations are settled in the local ledger and never touch the shared buckets (a minute's
  rate is past by then).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from isthmus.fabric.schema import Tenant
from isthmus.gateway.limits import Ledger, Reservation, period_start, refusal
from isthmus.mesh.shared_metrics import SharedStateMetrics

__all__ = ["MAX_PENDING", "SharedLedger", "SharedReservation"]

log = logging.getLogger("isthmus.mesh.shared_limits")

MAX_PENDING = 100_000
"""Settlements kept for replay while Redis is unreachable (the oldest are dropped past this)."""

_PERIOD_TTL_S = {"hour": 2 * 3600, "day": 2 * 86400, "month": 33 * 86400}
_IDLE_TTL_S = 300  # a tenant without budget: its buckets are full again a minute after its last use

# KEYS[1] the tenant's hash. ARGV: now, tokens needed, rpm, tpm (0: none), period ('' when the
# tenant has no budget), budget tokens, budget usd (-1: none), ttl seconds.
# Returns {'ok', reserved+used, usd} or {refusal, figure}.
_ADMIT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local need = tonumber(ARGV[2])
local rpm = tonumber(ARGV[3])
local tpm = tonumber(ARGV[4])
local period = ARGV[5]
local budget_tokens = tonumber(ARGV[6])
local budget_usd = tonumber(ARGV[7])
local function s(x) return string.format('%.17g', x) end
local f = redis.call('HMGET', key, 'rl', 'ru', 'tl', 'tu', 'period', 'used', 'reserved', 'usd')
local function refill(capacity, level, updated)
  level = tonumber(level)
  updated = tonumber(updated)
  if level == nil then return capacity, now end
  local elapsed = math.max(0, now - updated)
  return math.min(capacity, level + elapsed * capacity / 60), math.max(now, updated)
end
local used, reserved, usd = tonumber(f[6]) or 0, tonumber(f[7]) or 0, tonumber(f[8]) or 0
if f[5] ~= period then used, reserved, usd = 0, 0, 0 end
if budget_tokens >= 0 and used + reserved + need > budget_tokens then
  return {'budget_tokens', s(used + reserved)}
end
if budget_usd >= 0 and usd >= budget_usd then return {'budget_usd', s(usd)} end
local rl, ru, tl, tu
if rpm > 0 then
  rl, ru = refill(rpm, f[1], f[2])
  if rl < 1 then return {'rpm', s((1 - rl) * 60 / rpm)} end
end
if tpm > 0 then
  if need > tpm then return {'tpm_too_big', '0'} end
  tl, tu = refill(tpm, f[3], f[4])
  if need > tl then return {'tpm', s((need - tl) * 60 / tpm)} end
end
local fields = {'period', period, 'used', s(used), 'reserved', s(reserved + need),
                'usd', s(usd)}
if rpm > 0 then
  table.insert(fields, 'rl'); table.insert(fields, s(rl - 1))
  table.insert(fields, 'ru'); table.insert(fields, s(ru))
end
if tpm > 0 then
  table.insert(fields, 'tl'); table.insert(fields, s(tl - need))
  table.insert(fields, 'tu'); table.insert(fields, s(tu))
end
redis.call('HSET', key, unpack(fields))
redis.call('EXPIRE', key, tonumber(ARGV[8]))
return {'ok', s(used + reserved + need), s(usd)}
"""

# KEYS[1] the tenant's hash. ARGV: now, tokens reserved (0: a local reservation), tokens used,
# usd, period of the reservation, tpm (0: none), ttl seconds.
_SETTLE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local reserved = tonumber(ARGV[2])
local used = tonumber(ARGV[3])
local tpm = tonumber(ARGV[6])
local function s(x) return string.format('%.17g', x) end
local f = redis.call('HMGET', key, 'tl', 'tu', 'period', 'reserved')
if tpm > 0 and used < reserved and f[1] then
  local updated = tonumber(f[2])
  local level = tonumber(f[1]) + math.max(0, now - updated) * tpm / 60
  level = math.min(tpm, level + reserved - used)
  redis.call('HSET', key, 'tl', s(level), 'tu', s(math.max(now, updated)))
end
if f[3] == ARGV[5] then
  redis.call('HSET', key, 'reserved', s(math.max(0, (tonumber(f[4]) or 0) - reserved)))
  redis.call('HINCRBY', key, 'used', used)
  redis.call('HINCRBYFLOAT', key, 'usd', ARGV[4])
elseif not f[3] then
  redis.call('HSET', key, 'period', ARGV[5], 'used', used, 'reserved', 0, 'usd', ARGV[4])
end
redis.call('EXPIRE', key, tonumber(ARGV[7]))
return 1
"""


@dataclass(frozen=True, slots=True)
class SharedReservation(Reservation):
    """A reservation held in Redis (plain ``Reservation``\\ s come from the local fallback)."""

    period: str = ""


@dataclass(frozen=True, slots=True)
class _Settlement:
    tenant: str
    reserved: int
    used: int
    usd: float
    period: str
    tpm: int
    ttl: int


def _period_key(tenant: Tenant, now: float) -> str:
    budget = tenant.budget
    return "" if budget is None else f"{budget.period}:{period_start(budget.period, now):.0f}"


def _ttl(tenant: Tenant) -> int:
    return _IDLE_TTL_S if tenant.budget is None else _PERIOD_TTL_S[tenant.budget.period]


class SharedLedger:
    """A ``LedgerLike`` whose buckets and budgets live in Redis, shared by a site's replicas."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        clock: Callable[[], float] = time.time,
        retry_after_s: float = 5.0,
        metrics: SharedStateMetrics | None = None,
        background: redis.asyncio.Redis | None = None,
    ) -> None:
        self.client = client
        self.background = background
        self.prefix = f"{namespace}:ledger:"
        self.clock = clock
        self.local = Ledger(clock=clock)
        # what this replica settled, per tenant and period: its own share for telemetry (the
        # shared figures are the site's; every replica reporting them would count them n times)
        self._own: dict[str, tuple[str, int, float]] = {}
        self.retry_after_s = retry_after_s
        self.metrics = metrics or SharedStateMetrics()
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)
        self._settle_async = None if background is None else background.register_script(_SETTLE)
        self.deferred = False  # set while a background task calls ``flush``
        self._shared = True
        self._retry_at = 0.0
        self._pending: deque[_Settlement] = deque(maxlen=MAX_PENDING)

    @property
    def degraded(self) -> bool:
        """True while this replica enforces limits on its own (Redis unreachable)."""
        return not self._shared

    @property
    def pending(self) -> int:
        """Settlements waiting for Redis to come back."""
        return len(self._pending)

    def redis_is_back(self) -> None:
        """Another user of the same Redis reached it: try it on the next admission."""
        self._retry_at = 0.0

    # -- LedgerLike -----------------------------------------------------------------------------
    def admit(self, tenant: Tenant, tokens: int) -> Reservation:
        now = self.clock()
        if self._shared or now >= self._retry_at:
            period = _period_key(tenant, now)
            budget = tenant.budget
            try:
                answer = self._admit(
                    keys=[self.prefix + tenant.name],
                    args=[
                        repr(now),
                        tokens,
                        tenant.rpm_limit or 0,
                        tenant.tpm_limit or 0,
                        period,
                        -1 if budget is None or budget.tokens is None else budget.tokens,
                        -1 if budget is None or budget.usd is None else repr(budget.usd),
                        _ttl(tenant),
                    ],
                )
            except redis.RedisError as error:
                self._lost(error, now)
            else:
                if not self._shared:
                    self._back()
                status, figure = (part.decode() for part in answer[:2])
                if status != "ok":
                    raise refusal(tenant, tokens, status, float(figure), now)
                return SharedReservation(tenant.name, tokens, period)
        self.metrics.local_admissions.inc()
        return self.local.admit(tenant, tokens)

    def settle(self, tenant: Tenant, reservation: Reservation, tokens: int, usd: float) -> None:
        """Replace the reservation by what the request really used (0 if it failed)."""
        if isinstance(reservation, SharedReservation):
            settlement = _Settlement(
                tenant.name,
                reservation.tokens,
                tokens,
                usd,
                reservation.period,
                tenant.tpm_limit or 0,
                _ttl(tenant),
            )
        else:  # admitted locally during an outage: settled here, its usage replayed to Redis
            self.local.settle(tenant, reservation, tokens, usd)
            settlement = _Settlement(
                tenant.name,
                0,
                tokens,
                usd,
                _period_key(tenant, self.clock()),
                0,
                _ttl(tenant),
            )
        period, own_tokens, own_usd = self._own.get(tenant.name, (settlement.period, 0, 0.0))
        if period != settlement.period:
            own_tokens, own_usd = 0, 0.0
        self._own[tenant.name] = (settlement.period, own_tokens + tokens, own_usd + usd)
        if self.deferred or not self._shared:
            self._pending.append(settlement)
            return
        try:
            self._run_settle(self._settle, settlement)
        except redis.RedisError as error:
            self._pending.append(settlement)
            self._lost(error, self.clock())

    def own_usage(self, tenant: Tenant) -> tuple[int, float]:
        """What this replica settled for the tenant in the current period."""
        period, tokens, usd = self._own.get(tenant.name, ("", 0, 0.0))
        if period != _period_key(tenant, self.clock()):
            return 0, 0.0
        return tokens, usd

    def usage(self, tenant: Tenant) -> tuple[int, float]:
        """Tokens and USD used by the tenant in the current period (settled requests)."""
        if not self._shared:
            return self.local.usage(tenant)
        try:
            period, used, usd = self.client.hmget(
                self.prefix + tenant.name, ["period", "used", "usd"]
            )
        except redis.RedisError as error:
            self._lost(error, self.clock())
            return self.local.usage(tenant)
        if period != _period_key(tenant, self.clock()).encode():
            return 0, 0.0
        return int(used or 0), float(usd or 0.0)

    async def flush(self) -> None:
        """Send the deferred settlements in one pipelined round trip (off the request path).

        A batch that fails goes back to the front of the queue and is sent again: settlement is
        at least once, so an outage in the middle of a batch may count some usage twice."""
        if not self._shared or not self._pending or self._settle_async is None:
            return
        assert self.background is not None
        batch = [self._pending.popleft() for _ in range(len(self._pending))]
        try:
            pipe = self.background.pipeline(transaction=False)
            now = repr(self.clock())
            for settlement in batch:
                await self._settle_async(
                    keys=[self.prefix + settlement.tenant],
                    args=[now, *_settle_args(settlement)],
                    client=pipe,
                )
            await pipe.execute()
        except redis.RedisError as error:
            self._pending.extendleft(reversed(batch))
            self._lost(error, self.clock())

    # -- outage and return ------------------------------------------------------------------------
    def _run_settle(self, runner: Any, settlement: _Settlement) -> None:
        runner(
            keys=[self.prefix + settlement.tenant],
            args=[repr(self.clock()), *_settle_args(settlement)],
        )

    def _lost(self, error: Exception, now: float) -> None:
        self._retry_at = now + self.retry_after_s
        if self._shared:
            self._shared = False
            self.metrics.fallbacks.labels("ledger").inc()
            self.metrics.degraded.labels("ledger").set(1)
            log.warning(
                "Redis unreachable (%s): this gateway enforces rate limits and budgets on its "
                "own until it is back",
                error,
            )

    def _back(self) -> None:
        """Redis answered again: replay what was settled meanwhile, then share again."""
        try:
            pipe = self.client.pipeline(transaction=False)
            pending = list(self._pending)
            for settlement in pending:
                self._run_settle(self._settle_in(pipe), settlement)
            pipe.execute()
        except redis.RedisError as error:
            self._lost(error, self.clock())
            return
        for _ in pending:
            self._pending.popleft()
        self._shared = True
        self.metrics.degraded.labels("ledger").set(0)
        log.warning(
            "Redis reachable again: rate limits and budgets are shared again (%d settlements "
            "replayed)",
            len(pending),
        )

    def _settle_in(self, pipe: Any) -> Callable[..., Any]:
        def run(keys: list[str], args: list[Any]) -> Any:
            return self._settle(keys=keys, args=args, client=pipe)

        return run


def _settle_args(settlement: _Settlement) -> list[str | int]:
    return [
        settlement.reserved,
        settlement.used,
        repr(settlement.usd),
        settlement.period,
        settlement.tpm,
        settlement.ttl,
    ]
