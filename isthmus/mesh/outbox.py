"""The gateway's audit log is its outbox: records are shipped upstream after a persisted cursor.

Delivery is at least once, and exactly once as seen upstream: records are published in ``seq``
order with the JetStream message id ``<gateway>:<seq>`` (the server drops a re-send inside its
duplicate window; the control plane keys on (gateway, seq) beyond it), and the cursor advances
only over a contiguous run of records whose publish the server acknowledged (PubAck). A record
is never skipped: a failed or unacknowledged publish leaves the cursor before it, and the next
round re-sends from there — after a reconnect, or after a gateway restart, since the cursor is a
row in the audit log's own database (the records and the cursor move together).

Reading here is replication of the whole chain, not a tenant's read: ``AuditLog.records`` (per
tenant, by design) is for people; this module reads the table in ``seq`` order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import orjson
from nats.js import JetStreamContext
from nats.js.api import PubAck
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, update
from sqlalchemy.engine import Engine

from isthmus.audit import AuditLog, AuditRecord
from isthmus.audit.log import audit_table
from isthmus.mesh.protocol import Names
from isthmus.store.engine import WRITE_OPTION

__all__ = ["AuditOutbox", "ShipResult", "ship_batch"]

MSG_ID_HEADER = "Nats-Msg-Id"
_metadata = MetaData()
cursor_table = Table(
    "mesh_outbox_cursor",
    _metadata,
    Column("stream", String(128), primary_key=True),
    Column("acked_seq", Integer, nullable=False),
)


class AuditOutbox:
    """The records of ``audit`` not yet acknowledged upstream, for one gateway."""

    def __init__(self, audit: AuditLog, gateway: str) -> None:
        self.engine: Engine = audit.engine
        self.gateway = gateway
        self._key = f"audit:{gateway}"
        _metadata.create_all(self.engine, tables=[cursor_table])

    def acked(self) -> int:
        """The highest ``seq`` acknowledged upstream (every record up to it is delivered)."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(cursor_table.c.acked_seq).where(cursor_table.c.stream == self._key)
            ).scalar()
        return int(value or 0)

    def head(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(select(func.max(audit_table.c.seq))).scalar()
        return int(value or 0)

    def pending(self) -> int:
        return max(0, self.head() - self.acked())

    def after(self, seq: int, limit: int) -> list[AuditRecord]:
        query = select(audit_table).where(audit_table.c.seq > seq).order_by(audit_table.c.seq)
        with self.engine.connect() as connection:
            rows = connection.execute(query.limit(limit)).mappings()
            return [AuditRecord(**{str(k): v for k, v in row.items()}) for row in rows]

    def ack(self, seq: int) -> None:
        """Move the cursor forward to ``seq`` (never backward)."""
        with self.engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
            moved = connection.execute(
                update(cursor_table)
                .where(cursor_table.c.stream == self._key, cursor_table.c.acked_seq < seq)
                .values(acked_seq=seq)
            ).rowcount
            if not moved:
                exists = connection.execute(
                    select(cursor_table.c.acked_seq).where(cursor_table.c.stream == self._key)
                ).first()
                if exists is None:
                    connection.execute(
                        cursor_table.insert().values(stream=self._key, acked_seq=seq)
                    )


@dataclass(frozen=True, slots=True)
class ShipResult:
    sent: int  # records acknowledged in this batch
    failed: bool  # a publish in the batch was not acknowledged (the rest waits for next time)


def record_payload(gateway: str, record: AuditRecord) -> bytes:
    return orjson.dumps({"gateway": gateway, **record.as_dict()})


async def ship_batch(
    js: JetStreamContext,
    outbox: AuditOutbox,
    names: Names,
    *,
    batch: int = 1024,
    ack_timeout_s: float = 5.0,
) -> ShipResult:
    """Publish up to ``batch`` records after the cursor, await their acks, advance the cursor
    over the acknowledged prefix."""
    acked = await asyncio.to_thread(outbox.acked)
    records = await asyncio.to_thread(outbox.after, acked, batch)
    if not records:
        return ShipResult(0, False)
    subject = names.audit_subject(outbox.gateway)
    futures: list[asyncio.Future[PubAck]] = []
    for record in records:
        msg_id = names.msg_id(outbox.gateway, record.seq)
        futures.append(
            await js.publish_async(
                subject, record_payload(outbox.gateway, record), headers={MSG_ID_HEADER: msg_id}
            )
        )
    await asyncio.wait(futures, timeout=ack_timeout_s)
    delivered = 0
    for future in futures:
        if not future.done() or future.cancelled() or future.exception() is not None:
            break
        delivered += 1
    for future in futures[delivered:]:
        future.cancel()  # an ack that comes later is not counted; the record is sent again
    if delivered:
        await asyncio.to_thread(outbox.ack, records[delivered - 1].seq)
    return ShipResult(delivered, delivered < len(records))
