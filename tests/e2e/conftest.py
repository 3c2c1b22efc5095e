"""Real-service fixtures for the end-to-end tests (PostgreSQL from tests/control), and the
outcome of each test phase, so a fixture can print its processes' logs when a test failed."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.control.conftest import postgres_url

__all__ = ["postgres_url"]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report
