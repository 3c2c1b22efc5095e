"""Per-tenant rate limits (requests and tokens per minute) and budgets (tokens and USD per period).

Pure bookkeeping with an injected clock, so tests and the simulator drive time themselves.
Rate limits are token buckets refilled continuously (a burst of a full minute's allowance, then
the steady rate); token use is reserved at admission (prompt + requested output) and settled
with the real usage at completion. Budgets reset at the start of each UTC hour, day or month.

Invariant: ``admit`` either reserves capacity and returns a ``Reservation`` the caller must
``settle``, or raises a 429 ``ApiError`` saying which limit and when to retry; a refusal that
retrying soon cannot cure (a budget spent until its period ends, a request larger than the
per-minute token limit) says so (``x-should-retry: false``), so clients do not retry it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from isthmus.fabric.schema import Tenant
from isthmus.gateway.errors import ApiError

__all__ = [
    "Ledger",
    "LedgerLike",
    "Reservation",
    "TokenBucket",
    "period_end",
    "period_start",
    "refusal",
]


@dataclass
class TokenBucket:
    capacity: float
    per_second: float
    level: float = -1.0
    updated: float = 0.0

    def available(self, now: float) -> float:
        if self.level < 0:
            self.level, self.updated = self.capacity, now
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_second)
        self.updated = now
        return self.level

    def take(self, amount: float, now: float) -> float | None:
        """Take ``amount``; ``None`` on success, else the seconds until it would fit."""
        level = self.available(now)
        if amount <= level:
            self.level = level - amount
            return None
        if amount > self.capacity:
            return float("inf")
        return (amount - level) / self.per_second

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


def period_start(period: str, now: float) -> float:
    """Unix time of the start of the UTC hour, day or month holding ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "hour":
        moment = moment.replace(minute=0, second=0, microsecond=0)
    elif period == "day":
        moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        moment = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return moment.timestamp()


def period_end(period: str, now: float) -> float:
    """Unix time of the start of the next UTC hour, day or month after ``now``."""
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period == "hour":
        return start.timestamp() + 3600.0
    if period == "day":
        return start.timestamp() + 86400.0
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1).timestamp()
    return start.replace(month=start.month + 1).timestamp()


def refusal(tenant: Tenant, tokens: int, limit: str, figure: float, now: float) -> ApiError:
    """The 429 for a request ``limit`` refuses. ``limit`` is ``budget_tokens`` or
    ``budget_usd`` (``figure``: what the period has used), ``rpm`` or ``tpm`` (``figure``:
    seconds until the request would fit) or ``tpm_too_big`` (the request alone exceeds it)."""
    budget = tenant.budget
    if limit in ("budget_tokens", "budget_usd"):
        assert budget is not None
        if limit == "budget_tokens":
            assert budget.tokens is not None
            message = (
                f"token budget of {budget.tokens:,} per {budget.period} is exhausted "
                f"({figure:,.0f} used; this request needs up to {tokens:,})"
            )
        else:
            assert budget.usd is not None
            message = (
                f"USD budget of {budget.usd:.2f} per {budget.period} is exhausted "
                f"({figure:.4f} used)"
            )
        return ApiError(
            429,
            message,
            "insufficient_quota",
            retry_after_s=max(1.0, period_end(budget.period, now) - now),
            retryable=False,
        )
    if limit == "rpm":
        return ApiError(
            429,
            f"rate limit of {tenant.rpm_limit} requests per minute reached",
            "rate_limit_exceeded",
            retry_after_s=figure,
        )
    if limit == "tpm_too_big":
        return ApiError(
            429,
            f"this request needs up to {tokens:,} tokens, more than the limit of "
            f"{tenant.tpm_limit:,} tokens per minute; lower max_tokens or shorten the prompt",
            "tokens_exceeded",
            "max_tokens",
            retryable=False,
        )
    return ApiError(
        429,
        f"rate limit of {tenant.tpm_limit:,} tokens per minute reached",
        "rate_limit_exceeded",
        retry_after_s=figure,
    )


@dataclass
class _Account:
    requests: TokenBucket | None
    tokens: TokenBucket | None
    period_start: float = 0.0
    tokens_used: int = 0
    usd_used: float = 0.0


@dataclass(frozen=True, slots=True)
class Reservation:
    tenant: str
    tokens: int


class LedgerLike(Protocol):
    """What the gateway needs of a ledger: this process's ``Ledger``, or one shared by the
    replicas of a site (``isthmus.mesh.shared_limits.SharedLedger``)."""

    def admit(self, tenant: Tenant, tokens: int) -> Reservation: ...

    def settle(self, tenant: Tenant, reservation: Reservation, tokens: int, usd: float) -> None: ...

    def usage(self, tenant: Tenant) -> tuple[int, float]: ...

    def own_usage(self, tenant: Tenant) -> tuple[int, float]:
        """What this process settled (a shared ledger's ``usage`` is the whole site's)."""
        ...


@dataclass
class Ledger:
    clock: Callable[[], float] = time.time
    _accounts: dict[str, _Account] = field(default_factory=dict)

    def _account(self, tenant: Tenant) -> _Account:
        account = self._accounts.get(tenant.name)
        if account is None:
            rpm, tpm = tenant.rpm_limit, tenant.tpm_limit
            account = _Account(
                TokenBucket(rpm, rpm / 60.0) if rpm else None,
                TokenBucket(tpm, tpm / 60.0) if tpm else None,
            )
            self._accounts[tenant.name] = account
        return account

    def admit(self, tenant: Tenant, tokens: int) -> Reservation:
        now = self.clock()
        account = self._account(tenant)
        budget = tenant.budget
        if budget is not None:
            start = period_start(budget.period, now)
            if start != account.period_start:
                account.period_start, account.tokens_used, account.usd_used = start, 0, 0.0
            if budget.tokens is not None and account.tokens_used + tokens > budget.tokens:
                raise refusal(tenant, tokens, "budget_tokens", account.tokens_used, now)
            if budget.usd is not None and account.usd_used >= budget.usd:
                raise refusal(tenant, tokens, "budget_usd", account.usd_used, now)
        if account.requests is not None:
            wait = account.requests.take(1, now)
            if wait is not None:
                raise refusal(tenant, tokens, "rpm", wait, now)
        if account.tokens is not None:
            wait = account.tokens.take(tokens, now)
            if wait is not None:
                if account.requests is not None:
                    account.requests.give_back(1)
                too_big = wait == float("inf")
                raise refusal(tenant, tokens, "tpm_too_big" if too_big else "tpm", wait, now)
        return Reservation(tenant.name, tokens)

    def settle(self, tenant: Tenant, reservation: Reservation, tokens: int, usd: float) -> None:
        """Replace the reservation by what the request really used (0 if it failed)."""
        account = self._account(tenant)
        if account.tokens is not None and tokens < reservation.tokens:
            account.tokens.give_back(reservation.tokens - tokens)
        account.tokens_used += tokens
        account.usd_used += usd

    def usage(self, tenant: Tenant) -> tuple[int, float]:
        account = self._account(tenant)
        return account.tokens_used, account.usd_used

    def own_usage(self, tenant: Tenant) -> tuple[int, float]:
        return self.usage(tenant)
