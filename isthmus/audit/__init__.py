"""Audit of guard verdicts: keyed content hashes, a tamper-evident chain, per-tenant reads."""

from isthmus.audit.hashing import KEY_ENV, ContentHasher, derive_key, key_from_env
from isthmus.audit.log import GENESIS, AuditLog, AuditRecord, ChainProblem, ChainReport

__all__ = [
    "GENESIS",
    "KEY_ENV",
    "AuditLog",
    "AuditRecord",
    "ChainProblem",
    "ChainReport",
    "ContentHasher",
    "derive_key",
    "key_from_env",
]
