"""Problems found in a file people wrote, each located exactly.

Invariant: every problem names the file, the 1-based line and column, the field (a dotted path
such as ``sites[3].kind``), what was found and what would be valid. Loading collects every
problem it can before failing, so a user fixes a file in one pass, not one error at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["FabricError", "Location", "Problem", "format_path"]


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is in a source file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file."""

    location: Location
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.location}: {where}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "field": self.field,
            "message": self.message,
        }


class FabricError(Exception):
    """Raised when an input file cannot be accepted; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(
            sorted(problems, key=lambda p: (p.location.file, p.location.line, p.location.column))
        )
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__("\n".join([head, *(str(p) for p in self.problems)]))


def format_path(path: Iterable[str | int]) -> str:
    """Render a path like ``("sites", 3, "kind")`` as ``sites[3].kind``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
