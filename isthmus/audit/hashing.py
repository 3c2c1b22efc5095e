"""Keyed hashes for the audit log: of matched content, and of each record in the chain.

Invariants: the deployment key never appears in output; two derived keys (HMAC of the key
with a fixed label) separate the two uses, so a content hash can never be replayed as a
record hash. The same content hashes to the same value within a deployment (so repeated leaks
of one secret can be counted) and to unrelated values across deployments.
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["ContentHasher", "derive_key", "key_from_env"]

KEY_ENV = "ISTHMUS_AUDIT_KEY"


def derive_key(key: bytes, label: bytes) -> bytes:
    return hmac.new(key, b"isthmus-audit:" + label, hashlib.sha256).digest()


class ContentHasher:
    """``hasher(text)`` -> ``"hmac-sha256:<hex>"``; give it to ``Guard(hasher=...)``."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self._key = derive_key(key, b"content")

    def __call__(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{digest}"

    def __repr__(self) -> str:
        return "ContentHasher(<key hidden>)"


def key_from_env(name: str = KEY_ENV) -> bytes:
    """The deployment key from ``$ISTHMUS_AUDIT_KEY`` (hex, 32+ digits; or any 16+ byte text)."""
    value = os.environ.get(name, "")
    if not value:
        raise KeyError(f"set ${name} to the deployment's audit key (e.g. 64 hex digits)")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = value.encode("utf-8")
    if len(key) < 16:
        raise ValueError(f"${name} is too short: at least 16 bytes (32 hex digits)")
    return key
