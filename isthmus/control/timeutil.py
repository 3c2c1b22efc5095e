"""Times the API is given: naive means UTC; everything is compared and stored in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

__all__ = ["as_utc"]


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
