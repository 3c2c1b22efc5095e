"""Times the API is given (RFC 3339, with a zone); everything is compared and stored in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, overload

from pydantic import AfterValidator, BeforeValidator

__all__ = ["Timestamp", "as_utc"]


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def _rfc3339_only(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is not a date and time in RFC 3339, e.g. 2026-01-31T12:00:00Z")
    return value


def _representable_in_utc(moment: datetime) -> datetime:
    try:
        as_utc(moment)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 lies before datetime.min in UTC
        raise ValueError(f"{moment.isoformat()} is out of range once converted to UTC") from None
    return moment


Timestamp = Annotated[
    datetime, BeforeValidator(_rfc3339_only), AfterValidator(_representable_in_utc)
]
"""A date and time as the OpenAPI ``date-time`` format means it: with seconds and a zone."""
