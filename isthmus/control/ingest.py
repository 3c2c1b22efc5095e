"""Consume a JetStream stream into a table, exactly once, in batches.

A durable pull consumer (explicit acknowledgement) hands out up to ``batch`` messages; each is
parsed into rows (a message that cannot be parsed is terminated, counted and logged, so it
never blocks the stream); the rows are written in one transaction that skips keys already
stored; only after that commit is each message acknowledged.

Why that gives exactly once: a message is acknowledged only once its rows are committed, so a
crash or a lost connection before the acknowledgement means redelivery, never loss; a
redelivered (or re-published) message carries the key its rows already have, so the write
skips it, never duplicates. Explicit acknowledgement rather than "ack all": with several
control planes sharing the consumer, acknowledging up to a sequence could acknowledge another
instance's batch before its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from isthmus.control.wire import WireError

__all__ = ["BatchResult", "StreamIngest"]

log = logging.getLogger("isthmus.control.ingest")

Parse = Callable[[str, bytes], list[dict[str, Any]]]
Write = Callable[[Sequence[dict[str, Any]]], int]


@dataclass(frozen=True, slots=True)
class BatchResult:
    received: int
    stored: int
    rejected: int


class StreamIngest:
    """Move messages of ``stream`` (subjects ``subjects``) into rows written by ``write``.

    ``write`` is synchronous (a database transaction) and runs in a worker thread.
    ``on_committed`` runs after the commit and before the acknowledgements: a seam for tests
    that simulate a crash at the worst moment.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        stream: str,
        subjects: str,
        durable: str,
        parse: Parse,
        write: Write,
        batch: int = 2000,
        ack_wait_s: float = 30.0,
        on_committed: Callable[[BatchResult], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.stream = stream
        self.subjects = subjects
        self.durable = durable
        self.parse = parse
        self.write = write
        self.batch = batch
        self.ack_wait_s = ack_wait_s
        self.on_committed = on_committed
        self._sub: JetStreamContext.PullSubscription | None = None
        self.stored_total = 0
        self.rejected_total = 0

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        if self._sub is None:
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait_s,
                max_ack_pending=max(4 * self.batch, 10_000),
                max_deliver=-1,
            )
            self._sub = await self.js.pull_subscribe(
                self.subjects, durable=self.durable, stream=self.stream, config=config
            )
        return self._sub

    async def run_once(self, timeout_s: float = 1.0) -> BatchResult:
        """Fetch, store and acknowledge one batch (empty if nothing arrived in ``timeout_s``)."""
        sub = await self._subscription()
        try:
            messages = await sub.fetch(self.batch, timeout=timeout_s)
        except (TimeoutError, NatsTimeoutError):
            return BatchResult(0, 0, 0)
        rows: list[dict[str, Any]] = []
        good = []
        rejected = 0
        for msg in messages:
            try:
                rows.extend(self.parse(msg.subject, msg.data))
            except WireError as exc:
                rejected += 1
                log.warning("dropping a message on %s: %s", msg.subject, exc)
                await msg.term()
                continue
            good.append(msg)
        stored = await asyncio.to_thread(self.write, rows) if rows else 0
        result = BatchResult(len(messages), stored, rejected)
        if self.on_committed is not None:
            await self.on_committed(result)
        for msg in good:
            await msg.ack()
        self.stored_total += stored
        self.rejected_total += rejected
        return result

    async def run(self, stop: asyncio.Event, *, idle_timeout_s: float = 1.0) -> None:
        """Ingest until ``stop`` is set; failures are logged and retried after a pause."""
        while not stop.is_set():
            try:
                await self.run_once(idle_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database is down: wait, then carry on
                log.warning("ingesting %s paused: %s", self.stream, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)
