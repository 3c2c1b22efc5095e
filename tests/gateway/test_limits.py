"""Tenant limits: which refusals a client should retry, and when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from isthmus.fabric.schema import Budget, Tenant
from isthmus.gateway.errors import ApiError
from isthmus.gateway.limits import Ledger, period_end

NOON = datetime(2026, 12, 31, 12, 0, tzinfo=UTC).timestamp()


def tenant(**limits: object) -> Tenant:
    return Tenant(name="acme", default_data_class="public", **limits)  # type: ignore[arg-type]


def refused(ledger: Ledger, who: Tenant, tokens: int) -> ApiError:
    with pytest.raises(ApiError) as caught:
        ledger.admit(who, tokens)
    return caught.value


def should_retry(error: ApiError) -> str | None:
    headers = dict(error.headers())
    value = headers.get(b"x-should-retry")
    return None if value is None else value.decode()


def test_a_request_over_the_token_rate_limit_is_not_worth_retrying() -> None:
    ledger = Ledger(clock=lambda: NOON)
    error = refused(ledger, tenant(tpm_limit=1000), 5000)
    assert error.status == 429 and error.code == "tokens_exceeded"
    assert error.param == "max_tokens" and should_retry(error) == "false"


def test_a_spent_budget_says_when_it_renews() -> None:
    ledger = Ledger(clock=lambda: NOON)
    acme = tenant(budget=Budget(period="day", tokens=100))
    ledger.settle(acme, ledger.admit(acme, 90), 90, 0.0)
    error = refused(ledger, acme, 20)
    assert error.code == "insufficient_quota" and should_retry(error) == "false"
    assert error.retry_after_s == pytest.approx(12 * 3600)  # midnight UTC


def test_the_minute_limits_stay_retryable() -> None:
    now = [NOON]
    ledger = Ledger(clock=lambda: now[0])
    acme = tenant(rpm_limit=1)
    ledger.admit(acme, 10)
    error = refused(ledger, acme, 10)
    assert error.code == "rate_limit_exceeded" and should_retry(error) is None
    assert error.retry_after_s == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("period", "end"),
    [
        ("hour", datetime(2026, 12, 31, 13, tzinfo=UTC)),
        ("day", datetime(2027, 1, 1, tzinfo=UTC)),
        ("month", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_period_end(period: str, end: datetime) -> None:
    assert period_end(period, NOON) == end.timestamp()
    assert period_end("month", datetime(2026, 2, 10, tzinfo=UTC).timestamp()) == datetime(
        2026, 3, 1, tzinfo=UTC
    ).timestamp()
