"""The guard's audit log: every verdict, in a tamper-evident hash chain, per-tenant reads.

Storage: one SQLAlchemy table with its own ``MetaData`` and ``create_all`` — the same engines
and URLs as ``isthmus.store`` (SQLite by default, PostgreSQL when shared), queried and
filtered by the database, with transactions to keep the chain linear under concurrent
writers. It is append-only and self-describing, so it needs no Alembic migration of the
catalog schema (it can move into one later without changing its shape). An append-only JSONL
file was the alternative; it cannot filter by tenant without reading everything and needs
its own locking across gateway processes.

Invariants:

- A record holds tenant, direction, category, action, rule, location, score and a keyed hash
  of the matched content — never the content itself.
- Records are numbered 1, 2, 3, … (``seq``); each carries the previous record's hash
  (``prev_hash``; the first carries 64 zeros) and its own ``record_hash``, an HMAC-SHA256 under
  a key derived from the deployment key over the canonical JSON of all its other fields.
  Without the key nobody can recompute a chain, so an altered, reordered or removed record
  is detected by ``verify`` and named by its ``seq``; removal of the newest records is
  detected against a chain head kept elsewhere (``head()``, passed back as ``expected_head``).
- ``records(tenant)`` returns only that tenant's records: the tenant is a required argument
  and a ``WHERE`` clause, never a filter applied after reading.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, func, select
from sqlalchemy.engine import Engine

from isthmus.audit.hashing import derive_key
from isthmus.bundle.canonical import canonical_json
from isthmus.guard.decide import Verdict
from isthmus.store.engine import WRITE_OPTION

__all__ = ["GENESIS", "AuditLog", "AuditRecord", "ChainProblem", "ChainReport", "audit_table"]

GENESIS = "0" * 64
metadata = MetaData()
audit_table = Table(
    "guard_audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String(32), nullable=False),
    Column("tenant", String(128), nullable=False, index=True),
    Column("direction", String(16), nullable=False),
    Column("category", String(64), nullable=False),
    Column("action", String(8), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("location", String(128), nullable=False),
    Column("score", Float, nullable=False),
    Column("content_hash", String(80), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
)
_FIELDS = (
    "seq", "at", "tenant", "direction", "category", "action", "rule", "location", "score",
    "content_hash", "prev_hash",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: str
    tenant: str
    direction: str
    category: str
    action: str
    rule: str
    location: str
    score: float
    content_hash: str
    prev_hash: str
    record_hash: str

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in (*_FIELDS, "record_hash")}


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    kind: str  # altered | removed | reordered | truncated
    message: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    head: str
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    """The audit table on ``engine``, chained under ``key`` (the deployment's audit key)."""

    def __init__(self, engine: Engine, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self.engine = engine
        self._chain_key = derive_key(key, b"chain")
        metadata.create_all(engine, tables=[audit_table])

    def _hash(self, fields: dict[str, object]) -> str:
        return hmac.new(self._chain_key, canonical_json(fields), hashlib.sha256).hexdigest()

    def record(
        self, tenant: str, verdicts: Iterable[Verdict], *, at: datetime | None = None
    ) -> list[AuditRecord]:
        """Append one record per verdict, in one transaction; returns what was written."""
        items = list(verdicts)
        if not items:
            return []
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        written: list[AuditRecord] = []
        with self.engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            last = connection.execute(
                select(audit_table.c.seq, audit_table.c.record_hash)
                .order_by(audit_table.c.seq.desc())
                .limit(1)
            ).first()
            seq, prev = (last[0], last[1]) if last is not None else (0, GENESIS)
            for verdict in items:
                seq += 1
                fields: dict[str, object] = {
                    "seq": seq,
                    "at": stamp,
                    "tenant": tenant,
                    "direction": verdict.direction,
                    "category": verdict.category,
                    "action": verdict.action,
                    "rule": verdict.rule,
                    "location": verdict.location,
                    "score": round(float(verdict.score), 6),
                    "content_hash": verdict.content_hash,
                    "prev_hash": prev,
                }
                record_hash = self._hash(fields)
                connection.execute(audit_table.insert().values(**fields, record_hash=record_hash))
                written.append(AuditRecord(**fields, record_hash=record_hash))  # type: ignore[arg-type]
                prev = record_hash
        return written

    def head(self) -> tuple[int, str]:
        """(newest seq, its hash): keep it elsewhere to detect removal of the newest records."""
        with self.engine.connect() as connection:
            last = connection.execute(
                select(audit_table.c.seq, audit_table.c.record_hash)
                .order_by(audit_table.c.seq.desc())
                .limit(1)
            ).first()
        return (last[0], last[1]) if last is not None else (0, GENESIS)

    def verify(self, expected_head: str | None = None) -> ChainReport:
        """Walk the whole chain; name every record that was altered, removed or reordered."""
        problems: list[ChainProblem] = []
        expected_seq, prev = 1, GENESIS
        checked = 0
        with self.engine.connect() as connection:
            rows = connection.execute(select(audit_table).order_by(audit_table.c.seq))
            for row in rows.mappings():
                checked += 1
                seq = int(row["seq"])
                fields = {name: row[name] for name in _FIELDS}
                fields["score"] = round(float(row["score"]), 6)
                if seq != expected_seq:
                    missing = (
                        f"record {expected_seq}" if seq == expected_seq + 1
                        else f"records {expected_seq}–{seq - 1}"
                    )  # fmt: skip
                    problems.append(
                        ChainProblem(seq, "removed", f"{missing} removed before record {seq}")
                    )
                elif row["prev_hash"] != prev:
                    problems.append(
                        ChainProblem(
                            seq, "reordered", f"record {seq} does not follow record {seq - 1} "
                            "(its prev_hash differs): records reordered, replaced or removed",
                        )
                    )  # fmt: skip
                if self._hash(fields) != row["record_hash"]:
                    problems.append(
                        ChainProblem(
                            seq, "altered", f"record {seq} was altered (its hash does not match)"
                        )
                    )
                expected_seq, prev = seq + 1, str(row["record_hash"])
        if expected_head is not None and prev != expected_head:
            problems.append(
                ChainProblem(
                    expected_seq - 1, "truncated",
                    f"the chain ends at record {expected_seq - 1} with another hash than the "
                    "head recorded elsewhere: newest records removed or replaced",
                )
            )  # fmt: skip
        return ChainReport(checked, prev, tuple(problems))

    def records(
        self,
        tenant: str,
        *,
        limit: int = 100,
        after_seq: int = 0,
        category: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """``tenant``'s records only (oldest first, after ``after_seq``, at most ``limit``)."""
        if not tenant:
            raise ValueError("a tenant is required: records are only ever read per tenant")
        query = (
            select(audit_table)
            .where(audit_table.c.tenant == tenant, audit_table.c.seq > after_seq)
            .order_by(audit_table.c.seq)
            .limit(max(1, min(limit, 10_000)))
        )
        if category is not None:
            query = query.where(
                (audit_table.c.category == category)
                | audit_table.c.category.startswith(category + ":")
            )
        if action is not None:
            query = query.where(audit_table.c.action == action)
        with self.engine.connect() as connection:
            return [
                AuditRecord(**{k: row[k] for k in (*_FIELDS, "record_hash")})
                for row in connection.execute(query).mappings()
            ]

    def count(self, tenant: str) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(
                select(func.count()).select_from(audit_table).where(audit_table.c.tenant == tenant)
            ).scalar_one()
        return int(value)


def verdict_rows(tenant: str, verdicts: Sequence[Verdict]) -> list[dict[str, object]]:
    """What ``record`` would store for ``verdicts`` (without chain fields), for display."""
    return [
        {
            "tenant": tenant,
            "direction": v.direction,
            "category": v.category,
            "action": v.action,
            "rule": v.rule,
            "location": v.location,
            "content_hash": v.content_hash,
        }
        for v in verdicts
    ]
