"""The gateway's link to the control plane: bundles in, status, audit and telemetry out.

A ``GatewayAgent`` runs beside a gateway on the same event loop. Before the gateway serves,
``bootstrap`` puts the last good bundle from disk in force (or leaves the fabric file's policy,
and says so), then a newer one from the control plane's HTTP API if one is configured and
answers. Then ``start`` runs, in the background:

- one NATS session at a time, reconnected forever with exponential backoff (capped, jittered).
  A session reads the bundle subject from the newest bundle on (an ordered consumer delivering
  the last message first) and hands every bundle to the ``BundleApplier`` (verify, prepare,
  persist, swap); writes ``GatewayStatus`` to the status bucket after every change and as a
  heartbeat; ships the audit outbox (``isthmus.mesh.outbox``); publishes usage snapshots.
  Anything that goes wrong ends the session; the next one starts from persisted state (the last
  good bundle, the audit cursor), so nothing is lost or applied twice.
- without NATS, a poll of the control plane's ``GET /v1/bundles/latest``.

Invariant: the agent never blocks or fails the data path. Requests keep being served under the
policy in force whatever NATS or the control plane do; database and crypto work runs in worker
threads; a bad bundle is refused and logged, never raised into the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nats
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from isthmus.gateway.app import Gateway
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.control_http import ControlUnreachable, fetch_latest_bundle
from isthmus.mesh.outbox import MSG_ID_HEADER, AuditOutbox, ship_batch
from isthmus.mesh.protocol import DEFAULT_NAMESPACE, GATEWAY_ID, GatewayStatus, Names
from isthmus.mesh.streams import ensure_streams
from isthmus.mesh.telemetry import usage_snapshot
from isthmus.store.urls import redact_url

__all__ = ["AgentSettings", "GatewayAgent"]

log = logging.getLogger("isthmus.mesh")


@dataclass(frozen=True)
class AgentSettings:
    gateway_id: str
    nats_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    control_url: str | None = None
    control_token: str | None = field(default=None, repr=False)  # gateway token, never logged
    heartbeat_s: float = 5.0
    telemetry_s: float = 30.0
    audit_poll_s: float = 0.5
    audit_batch: int = 1024
    ack_timeout_s: float = 5.0
    control_poll_s: float = 30.0
    connect_timeout_s: float = 2.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __post_init__(self) -> None:
        if not GATEWAY_ID.match(self.gateway_id):
            raise ValueError(
                f"gateway id {self.gateway_id!r} must match {GATEWAY_ID.pattern} "
                "(it is a NATS subject token and a status key)"
            )
        Names(self.namespace)  # raises with the reason if the namespace is not a valid token


class _SessionLost(Exception):
    pass


class GatewayAgent:
    def __init__(
        self,
        gateway: Gateway,
        settings: AgentSettings,
        applier: BundleApplier,
        outbox: AuditOutbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.applier = applier
        self.outbox = outbox
        self.clock = clock
        self.names = Names(settings.namespace)
        self.connected = False
        self.sessions = 0  # NATS sessions established so far
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def bootstrap(self) -> None:
        """Before serving: the last good bundle from disk, then a newer one over HTTP."""
        self.applier.start_from_disk()
        if self.settings.control_url is not None:
            await self._poll_control(quiet=False)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"isthmus-agent-{self.gateway_id}")

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop following the control plane; first, while NATS is connected, give the shipper up
        to ``drain_s`` to deliver the audit records still in the outbox (a pod on a scratch
        volume loses what is not shipped when it goes)."""
        if self._task is not None and self.outbox is not None and self.connected:
            deadline = time.monotonic() + drain_s
            while self.connected and time.monotonic() < deadline:
                if await asyncio.to_thread(self.outbox.pending) == 0:
                    break
                await asyncio.sleep(0.05)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def gateway_id(self) -> str:
        return self.settings.gateway_id

    def status(self, audit_pending: int = 0) -> GatewayStatus:
        applied = self.applier.applied
        return GatewayStatus(
            gateway=self.gateway_id,
            site=self.gateway.config.site,
            bundle_version=applied.version if applied else None,
            bundle_sha256=applied.sha256 if applied else None,
            applied_at=applied.applied_at if applied else None,
            seen_at=self.clock(),
            audit_pending=audit_pending,
            bundle_refused=self.applier.last_refusal,
        )

    async def _run(self) -> None:
        if self.settings.nats_url is not None:
            await self._nats_forever(self.settings.nats_url)
        elif self.settings.control_url is not None:
            while True:
                await asyncio.sleep(self.settings.control_poll_s)
                await self._poll_control(quiet=True)

    # -- HTTP ------------------------------------------------------------------------------------
    async def _poll_control(self, *, quiet: bool) -> None:
        assert self.settings.control_url is not None
        try:
            raw = await fetch_latest_bundle(
                self.settings.control_url, token=self.settings.control_token
            )
        except ControlUnreachable as exc:
            (log.debug if quiet else log.warning)("%s", exc)
            return
        if raw is None:
            (log.debug if quiet else log.info)(
                "the control plane at %s has no bundle yet", self.settings.control_url
            )
            return
        if await self.applier.offer(raw, f"control plane {self.settings.control_url}"):
            self._changed.set()

    # -- NATS ------------------------------------------------------------------------------------
    async def _nats_forever(self, url: str) -> None:
        delay = self.settings.backoff_initial_s
        failures = 0
        while True:
            before = self.sessions
            try:
                await self._session(url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure ends the session; the next one resumes
                reason = str(exc) or type(exc).__name__
                if self.sessions > before:
                    log.warning("lost NATS at %s (%s); reconnecting", redact_url(url), reason)
                    delay, failures = self.settings.backoff_initial_s, 0
                elif failures == 0:
                    log.warning(
                        "NATS at %s unreachable (%s); retrying with backoff, the policy in force "
                        "stays and audit records wait in the outbox",
                        redact_url(url),
                        reason,
                    )
                else:
                    log.debug("NATS at %s still unreachable: %s", redact_url(url), reason)
                failures += 1
            self.connected = False
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(self.settings.backoff_max_s, delay * 2)

    async def _session(self, url: str) -> None:
        lost = asyncio.Event()

        async def on_lost() -> None:
            lost.set()

        async def on_error(exc: Exception) -> None:
            log.debug("NATS: %s", exc)

        nc: NatsClient = await nats.connect(
            url,
            name=f"isthmus-gateway-{self.gateway_id}",
            allow_reconnect=False,  # this loop reconnects, so every session starts clean
            max_reconnect_attempts=1,  # nats-py: try the server twice (0 would mean forever)
            reconnect_time_wait=0,
            connect_timeout=self.settings.connect_timeout_s,
            disconnected_cb=on_lost,
            closed_cb=on_lost,
            error_cb=on_error,
        )
        try:
            js = nc.jetstream(timeout=self.settings.ack_timeout_s)
            kv = await ensure_streams(js, self.names)
            bundles = await js.subscribe(
                self.names.bundle_subject,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.LAST,
            )
            self.connected = True
            self.sessions += 1
            log.info(
                "connected to NATS at %s as gateway %s (namespace %s)",
                redact_url(url),
                self.gateway_id,
                self.names.namespace,
            )
            tasks = [
                asyncio.create_task(self._bundles(bundles.messages)),
                asyncio.create_task(self._heartbeat(kv)),
                asyncio.create_task(self._ship(js)),
                asyncio.create_task(self._telemetry(js)),
                asyncio.create_task(lost.wait()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise _SessionLost("the connection closed")
        finally:
            self.connected = False
            with contextlib.suppress(Exception):
                await nc.close()

    async def _bundles(self, messages: object) -> None:
        async for msg in messages:  # type: ignore[attr-defined]
            assert isinstance(msg, Msg)
            source = f"NATS {self.names.bundle_stream}#{msg.metadata.sequence.stream}"
            await self.applier.offer(msg.data, source)
            self._changed.set()  # applied or refused: the status says which at once

    async def _heartbeat(self, kv: KeyValue) -> None:
        while True:
            pending = await asyncio.to_thread(self.outbox.pending) if self.outbox else 0
            status = self.status(pending)
            await kv.put(self.gateway_id, status.model_dump_json().encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.settings.heartbeat_s)
            self._changed.clear()

    async def _ship(self, js: JetStreamContext) -> None:
        if self.outbox is None:
            await asyncio.Event().wait()  # nothing to ship; run until the session ends
            return
        while True:
            result = await ship_batch(
                js,
                self.outbox,
                self.names,
                batch=self.settings.audit_batch,
                ack_timeout_s=self.settings.ack_timeout_s,
            )
            if result.failed:
                raise _SessionLost("an audit record was not acknowledged by JetStream")
            if result.sent < self.settings.audit_batch:
                await asyncio.sleep(self.settings.audit_poll_s)

    async def _telemetry(self, js: JetStreamContext) -> None:
        subject = self.names.telemetry_subject(self.gateway_id)
        while True:
            n, snapshot = usage_snapshot(self.gateway, self.gateway_id, self.clock())
            try:
                await js.publish(
                    subject,
                    orjson.dumps(snapshot),
                    headers={MSG_ID_HEADER: self.names.msg_id(self.gateway_id, n)},
                )
            except Exception as exc:  # a snapshot is superseded by the next; not worth a session
                log.debug("telemetry snapshot %d not published: %s", n, exc)
            await asyncio.sleep(self.settings.telemetry_s)
