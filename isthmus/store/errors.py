"""The one exception the store raises for problems a person can fix.

Invariant: a ``StoreError`` message is a single line that says what went wrong and what to do
("cannot connect to …: connection refused; check that the server is running and the URL").
SQLAlchemy, Alembic and driver exceptions never leave the store untranslated, and passwords in
database URLs never appear in a message.
"""

from __future__ import annotations

from collections.abc import Sequence

from isthmus.fabric.problems import Problem

__all__ = ["StoreError"]


class StoreError(Exception):
    """A store operation failed for a reason the user can act on.

    ``problems`` is non-empty only when a stored catalog no longer passes the fabric's
    validation (the schema changed after it was imported); each names the field at fault.
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(message)
