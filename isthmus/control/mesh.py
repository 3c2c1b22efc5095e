"""The control plane's side of NATS JetStream: bundles out; status, audit and usage in.

``NatsMesh`` keeps one connection (re)established in the background; nothing in the API waits
for NATS. While it is connected it

- publishes every stored bundle not yet published, oldest first, with the message id
  ``bundle-<version>`` (a bundle sent twice around a reconnect is kept once by the server);
- copies the gateways' status bucket into the database every ``status_interval_s``;
- runs the audit and telemetry ingests (``isthmus.control.ingest``).

While it is not, the API keeps answering from the database: bundles are stored and reported
pending, and the retry loop publishes them when NATS is back. ``NoMesh`` is the same surface
for a control plane started without NATS (a null object, not ``if nats:`` everywhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal, Protocol

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NoKeysError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from isthmus.control.database import ControlDB
from isthmus.control.ingest import StreamIngest
from isthmus.control.records import RecordStore
from isthmus.control.wire import audit_row, usage_rows
from isthmus.mesh.protocol import GatewayStatus, Names
from isthmus.mesh.streams import ensure_streams
from isthmus.store.urls import redact_url

__all__ = ["AUDIT_DURABLE", "TELEMETRY_DURABLE", "Mesh", "MeshState", "NatsMesh", "NoMesh"]

log = logging.getLogger("isthmus.control.mesh")

AUDIT_DURABLE = "isthmus-control-audit"
TELEMETRY_DURABLE = "isthmus-control-telemetry"


MeshState = Literal["connected", "disconnected", "off"]


class Mesh(Protocol):
    @property
    def state(self) -> MeshState:
        """``connected``, ``disconnected`` or ``off``."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish_pending(self) -> set[int]:
        """Publish every stored, unpublished bundle; the versions published now."""
        ...


class NoMesh:
    """No NATS configured: bundles are stored and served, never published."""

    state: MeshState = "off"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def publish_pending(self) -> set[int]:
        return set()


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


class NatsMesh:
    def __init__(
        self,
        url: str,
        names: Names,
        db: ControlDB,
        records: RecordStore,
        *,
        retry_interval_s: float = 2.0,
        status_interval_s: float = 2.0,
        ingest_batch: int = 5000,
        ingest: bool = True,
    ) -> None:
        self.url = url
        self.names = names
        self.db = db
        self.records = records
        self.retry_interval_s = retry_interval_s
        self.status_interval_s = status_interval_s
        self.ingest_batch = ingest_batch
        self.ingest = ingest
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._kv: KeyValue | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._publishing = asyncio.Lock()

    @property
    def state(self) -> MeshState:
        nc = self._nc
        return "connected" if nc is not None and nc.is_connected else "disconnected"

    async def start(self) -> None:
        self._stop.clear()
        self._tasks.append(asyncio.create_task(self._supervise(), name="control-mesh"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
            self._nc = None

    async def _connect(self) -> None:
        nc = await nats.connect(
            self.url,
            name="isthmus-control",
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            error_cb=_quiet,
        )
        try:
            js = nc.jetstream()
            self._kv = await ensure_streams(js, self.names)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        log.info(
            "connected to NATS at %s (namespace %s)", redact_url(self.url), self.names.namespace
        )
        if self.ingest:
            for stream, subjects, durable, parse, write in (
                (
                    self.names.audit_stream,
                    self.names.audit_subjects,
                    AUDIT_DURABLE,
                    lambda subject, data: [audit_row(subject, data)],
                    self.records.insert_audit,
                ),
                (
                    self.names.telemetry_stream,
                    self.names.telemetry_subjects,
                    TELEMETRY_DURABLE,
                    usage_rows,
                    self.records.insert_usage,
                ),
            ):
                ingest = StreamIngest(
                    js,
                    stream=stream,
                    subjects=subjects,
                    durable=durable,
                    parse=parse,
                    write=write,
                    batch=self.ingest_batch,
                )
                self._tasks.append(asyncio.create_task(ingest.run(self._stop), name=durable))

    async def _supervise(self) -> None:
        while not self._stop.is_set():
            try:
                if self._nc is None:
                    await self._connect()
                if self.state == "connected":
                    await self.publish_pending()
                    await self._read_status()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database is down: try again later
                log.warning("NATS at %s: %s; retrying", redact_url(self.url), exc)
            interval = min(self.retry_interval_s, self.status_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)

    async def publish_pending(self) -> set[int]:
        js = self._js
        if js is None or self.state != "connected":
            return set()
        published: set[int] = set()
        async with self._publishing:
            for row in await asyncio.to_thread(self.db.unpublished):
                try:
                    await js.publish(
                        self.names.bundle_subject,
                        row.signed,
                        headers={"Nats-Msg-Id": f"bundle-{row.version}"},
                        timeout=2.0,
                    )
                except Exception as exc:
                    log.warning("publishing bundle %d failed: %s", row.version, exc)
                    break  # keep the order: a later bundle never overtakes an earlier one
                await asyncio.to_thread(self.db.mark_published, row.version)
                published.add(row.version)
        return published

    async def _read_status(self) -> None:
        kv = self._kv
        if kv is None:
            return
        try:
            keys = await kv.keys()
        except NoKeysError:
            return
        statuses = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:  # deleted (a gateway retired) between keys() and get()
                continue
            if entry.value is None:
                continue
            try:
                status = GatewayStatus.model_validate_json(entry.value)
            except ValidationError as exc:
                log.warning("ignoring the status of %s: %s", key, exc.errors()[0]["msg"])
                continue
            statuses.append(status.model_dump(mode="json"))
        if statuses:
            await asyncio.to_thread(self.db.put_gateways, statuses)
