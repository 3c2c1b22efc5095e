"""Request traces: the Mooncake format, the Azure LLM inference format, and a generic one.

- **Mooncake** (JSONL): ``timestamp`` (ms), ``input_length``, ``output_length``, ``hash_ids``
  (one id per 512-token block; equal ids are identical prefixes).
- **Azure** (CSV): ``TIMESTAMP`` (date-time), ``ContextTokens``, ``GeneratedTokens``; no prefix
  information. ``shared_prefix_tokens`` optionally gives every request a common system prompt of
  that many tokens (in 512-token blocks), a synthetic sharing the trace itself does not record.
- **Generic** (JSONL or CSV, chosen by the file's extension): ``arrival_s`` (seconds from the
  start), ``prompt_tokens``, ``output_tokens``; optional ``hash_ids`` (JSON list, or
  space-separated in CSV), ``model``, ``data_class``, ``tenant``, ``metro``.

Every loader returns requests sorted by arrival, starting at 0, compressed by ``rate_scale``
(2.0 = twice the request rate), and raises ``TraceError`` naming the file, line and field for
a malformed row.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from isthmus.sim.replay import TraceRequest

__all__ = [
    "TraceError",
    "load_azure",
    "load_generic",
    "load_mooncake",
    "load_trace",
    "repeat_trace",
]


class TraceError(ValueError):
    """A trace file that cannot be read, with the place that is wrong."""


def _fail(file: Path, line: int, field: str, problem: str, value: Any) -> TraceError:
    return TraceError(f"{file}:{line}: field {field!r}: {problem}, found {value!r}")


def _count(value: Any, file: Path, line: int, field: str, minimum: int = 0) -> int:
    """A token count: a whole number (``7``, ``7.0`` or ``"7"``) of at least ``minimum``."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise _fail(file, line, field, "expected a whole number", value)
    if number < minimum:
        problem = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise _fail(file, line, field, problem, value)
    return number


def _time(value: Any, file: Path, line: int, field: str) -> float:
    """A moment: a finite, non-negative number (or a string of one)."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise _fail(file, line, field, "expected a finite number", value)
    if number < 0:
        raise _fail(file, line, field, "must not be negative", value)
    return number


def _hash_ids(value: Any, file: Path, line: int, spaced: bool = False) -> tuple[int, ...]:
    """Block ids: a JSON list of integers, or (``spaced``, CSV) integers separated by spaces."""
    if value is None or (spaced and value == ""):
        return ()
    items = value.split() if spaced and isinstance(value, str) else value
    ids = []
    if isinstance(items, list):
        for item in items:
            if isinstance(item, str):
                try:
                    item = int(item)
                except ValueError:
                    break
            if not isinstance(item, int) or isinstance(item, bool):
                break
            ids.append(item)
        else:
            return tuple(ids)
    raise _fail(file, line, "hash_ids", "expected a list of integers", value)


def _text(value: Any, file: Path, line: int, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(file, line, field, "expected a string", value)
    return value


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines with their numbers (from 1), each checked to be UTF-8."""
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            try:
                yield line, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TraceError(
                    f"{path}:{line}: not valid UTF-8 (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1})"
                ) from None


def _json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON object of each non-blank line, with its line number."""
    for line, text in _lines(path):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{path}:{line}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise TraceError(f"{path}:{line}: each line must be a JSON object")
        yield line, row


def _csv_rows(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each CSV record as a dict by the header (which must name ``columns``), with the line
    it ends on."""
    reader = csv.DictReader(text for _, text in _lines(path))
    missing = set(columns) - set(reader.fieldnames or ())
    if missing:
        raise TraceError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
    for row in reader:
        yield reader.line_num, row


def _required(row: dict[str, Any], fields: Sequence[str], file: Path, line: int) -> None:
    for field in fields:
        if field not in row or row[field] is None:
            raise TraceError(f"{file}:{line}: missing field {field!r}")


def load_mooncake(
    path: Path, limit: int | None = None, rate_scale: float = 1.0
) -> list[TraceRequest]:
    """The first ``limit`` requests of a Mooncake trace (timestamps in ms)."""
    rows: list[tuple[float, int, int, tuple[int, ...]]] = []
    fields = ("timestamp", "input_length", "output_length", "hash_ids")
    for line, row in _json_rows(path):
        if limit is not None and len(rows) >= limit:
            break
        _required(row, fields, path, line)
        rows.append(
            (
                _time(row["timestamp"], path, line, "timestamp"),
                _count(row["input_length"], path, line, "input_length", 1),
                _count(row["output_length"], path, line, "output_length"),
                _hash_ids(row["hash_ids"], path, line),
            )
        )
    base = min((r[0] for r in rows), default=0.0)
    out = [
        TraceRequest(
            arrival_s=(stamp - base) / 1000.0 / rate_scale,
            prompt_tokens=prompt,
            output_tokens=output,
            hash_ids=hash_ids,
        )
        for stamp, prompt, output, hash_ids in rows
    ]
    out.sort(key=lambda r: r.arrival_s)
    return out


def load_azure(
    path: Path, limit: int | None = None, rate_scale: float = 1.0, shared_prefix_tokens: int = 0
) -> list[TraceRequest]:
    rows: list[tuple[float, int, int]] = []
    columns = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
    for line, row in _csv_rows(path, columns):
        if limit is not None and len(rows) >= limit:
            break
        _required(row, columns, path, line)
        try:
            moment = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
        except ValueError:
            raise _fail(path, line, "TIMESTAMP", "expected a date-time", row["TIMESTAMP"]) from None
        rows.append(
            (
                moment.timestamp(),
                _count(row["ContextTokens"], path, line, "ContextTokens", 1),
                _count(row["GeneratedTokens"], path, line, "GeneratedTokens"),
            )
        )
    if not rows:
        return []
    base = min(r[0] for r in rows)
    shared_blocks = shared_prefix_tokens // 512
    out = []
    for k, (stamp, prompt, output) in enumerate(sorted(rows)):
        hash_ids: tuple[int, ...] = ()
        if shared_blocks:  # a common system prompt, then text of the request's own
            blocks = (prompt + 511) // 512
            common = min(blocks, shared_blocks)
            hash_ids = tuple(-(b + 1) for b in range(common)) + tuple(
                10**9 + k * 1000 + b for b in range(blocks - common)
            )
        out.append(
            TraceRequest(
                arrival_s=(stamp - base) / rate_scale,
                prompt_tokens=prompt,
                output_tokens=max(1, output),
                hash_ids=hash_ids,
            )
        )
    return out


def load_generic(
    path: Path, limit: int | None = None, rate_scale: float = 1.0
) -> list[TraceRequest]:
    """The first ``limit`` requests of a generic trace, from its earliest ``arrival_s``."""
    columns = ("arrival_s", "prompt_tokens", "output_tokens")
    records = _csv_rows(path, columns) if path.suffix == ".csv" else _json_rows(path)
    out: list[TraceRequest] = []
    for line, row in records:
        if limit is not None and len(out) >= limit:
            break
        _required(row, columns, path, line)
        out.append(
            TraceRequest(
                arrival_s=_time(row["arrival_s"], path, line, "arrival_s"),
                prompt_tokens=_count(row["prompt_tokens"], path, line, "prompt_tokens", 1),
                output_tokens=max(1, _count(row["output_tokens"], path, line, "output_tokens")),
                hash_ids=_hash_ids(row.get("hash_ids"), path, line, path.suffix == ".csv"),
                model=_text(row.get("model"), path, line, "model"),
                data_class=_text(row.get("data_class"), path, line, "data_class"),
                tenant=_text(row.get("tenant"), path, line, "tenant"),
                metro=_text(row.get("metro"), path, line, "metro"),
            )
        )
    base = min((r.arrival_s for r in out), default=0.0)
    out = [replace(r, arrival_s=(r.arrival_s - base) / rate_scale) for r in out]
    out.sort(key=lambda r: r.arrival_s)
    return out


def load_trace(
    path: Path, limit: int | None = None, rate_scale: float = 1.0, **options: Any
) -> list[TraceRequest]:
    """Load a trace, recognising its format from its content.

    A path that is missing, a directory or unreadable is a ``TraceError`` naming it."""
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory")
    try:
        with path.open("rb") as handle:  # the loaders report bad bytes with their line
            head = handle.readline().decode("utf-8", errors="replace")
        if path.suffix == ".jsonl" and '"hash_ids"' in head and '"timestamp"' in head:
            return load_mooncake(path, limit, rate_scale)
        if path.suffix == ".csv" and head.startswith("TIMESTAMP"):
            return load_azure(path, limit, rate_scale, **options)
        return load_generic(path, limit, rate_scale)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


def repeat_trace(requests: Sequence[TraceRequest], total: int) -> Iterator[TraceRequest]:
    """``total`` requests: ``requests`` (sorted by arrival, from 0) played back to back, lazily.

    Copy ``c`` starts one period after copy ``c - 1`` (the trace's span plus its mean gap, so
    the rate stays the trace's) and its ``hash_ids`` are shifted past every id of the trace:
    each copy is a new population of conversations sharing prefixes as the original does,
    never with another copy.
    """
    if not requests or total <= 0:
        return
    span = requests[-1].arrival_s
    period = span + span / max(1, len(requests) - 1)
    shift = 1 + max((max(r.hash_ids, default=0) for r in requests), default=0)
    copy = 0
    while True:
        for request in requests:
            if total == 0:
                return
            total -= 1
            if copy == 0:
                yield request
                continue
            offset = copy * shift
            yield replace(
                request,
                arrival_s=request.arrival_s + copy * period,
                hash_ids=tuple([h + offset for h in request.hash_ids]),
            )
        copy += 1
