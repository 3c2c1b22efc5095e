"""Canonical JSON: one byte string per value, so a hash or signature means the same everywhere.

Invariant: ``canonical_json(v)`` is UTF-8 JSON with keys sorted, no insignificant whitespace,
no NaN or infinity, and floats in Python's shortest round-trip form; two equal values (after
a JSON round trip) always give equal bytes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "sha256_hex"]


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(value: Any) -> str:
    """SHA-256 of the canonical JSON of ``value``, in hex."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
