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
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from isthmus.sim.replay import TraceRequest, load_mooncake

__all__ = ["TraceError", "load_azure", "load_generic", "load_trace", "repeat_trace"]


class TraceError(ValueError):
    """A trace file that cannot be read, with the place that is wrong."""


def _number(value: Any, file: Path, line: int, field: str, kind: type = int) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise TraceError(
            f"{file}:{line}: field {field!r}: expected a number, found {value!r}"
        ) from None
    if number < 0:
        raise TraceError(f"{file}:{line}: field {field!r}: must not be negative, found {value!r}")
    return number


def load_azure(
    path: Path, limit: int | None = None, rate_scale: float = 1.0, shared_prefix_tokens: int = 0
) -> list[TraceRequest]:
    rows: list[tuple[float, int, int]] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} - set(reader.fieldnames or ())
        if missing:
            raise TraceError(f"{path}:1: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            if limit is not None and len(rows) >= limit:
                break
            try:
                moment = datetime.fromisoformat(row["TIMESTAMP"].strip()[:26])
            except ValueError:
                raise TraceError(
                    f"{path}:{line}: field 'TIMESTAMP': not a date-time: {row['TIMESTAMP']!r}"
                ) from None
            rows.append(
                (
                    moment.timestamp(),
                    _number(row["ContextTokens"], path, line, "ContextTokens"),
                    _number(row["GeneratedTokens"], path, line, "GeneratedTokens"),
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
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                if row.get("hash_ids"):
                    row["hash_ids"] = [int(x) for x in str(row["hash_ids"]).split()]
                records.append((line, row))
    else:
        for line, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}:{line}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise TraceError(f"{path}:{line}: each line must be a JSON object")
            records.append((line, row))
    out = []
    for line, row in records[:limit]:
        for field in ("arrival_s", "prompt_tokens", "output_tokens"):
            if field not in row:
                raise TraceError(f"{path}:{line}: missing field {field!r}")
        out.append(
            TraceRequest(
                arrival_s=_number(row["arrival_s"], path, line, "arrival_s", float) / rate_scale,
                prompt_tokens=_number(row["prompt_tokens"], path, line, "prompt_tokens"),
                output_tokens=max(1, _number(row["output_tokens"], path, line, "output_tokens")),
                hash_ids=tuple(int(x) for x in row.get("hash_ids") or ()),
                model=str(row.get("model") or ""),
                data_class=str(row.get("data_class") or ""),
                tenant=str(row.get("tenant") or ""),
                metro=str(row.get("metro") or ""),
            )
        )
    out.sort(key=lambda r: r.arrival_s)
    return out


def load_trace(
    path: Path, limit: int | None = None, rate_scale: float = 1.0, **options: Any
) -> list[TraceRequest]:
    """Load a trace, recognising its format from its content."""
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    with path.open() as handle:
        head = handle.readline()
    if path.suffix == ".jsonl" and '"hash_ids"' in head and '"timestamp"' in head:
        return load_mooncake(path, limit, rate_scale)
    if path.suffix == ".csv" and head.startswith("TIMESTAMP"):
        return load_azure(path, limit, rate_scale, **options)
    return load_generic(path, limit, rate_scale)


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
