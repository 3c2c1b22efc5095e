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
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

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
        self._inbox: str | None = None
        self._received: list[Msg] = []
        self._request_done = asyncio.Event()
        self.stored_total = 0
        self.rejected_total = 0

    async def _consumer(self) -> str:
        """The durable consumer (created if missing) and this ingest's reply inbox."""
        if self._inbox is None:
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self.ack_wait_s,
                max_ack_pending=max(4 * self.batch, 10_000),
                max_deliver=-1,
                filter_subject=self.subjects,
            )
            # it may exist (perhaps with older settings): then it is used as it is
            with contextlib.suppress(BadRequestError):
                await self.js.add_consumer(self.stream, config)
            nc = self.js._nc
            inbox = nc.new_inbox()
            await nc.subscribe(inbox, cb=self._delivered, pending_msgs_limit=-1)
            self._inbox = inbox
        return self._inbox

    async def _delivered(self, msg: Msg) -> None:
        # a pull request ends with a status message (404 none left, 408 expired) or when the
        # batch is full; status messages carry no record
        if msg.headers and msg.headers.get("Status"):
            self._request_done.set()
            return
        self._received.append(msg)
        if len(self._received) >= self.batch:
            self._request_done.set()

    async def _pull(self, request: dict[str, Any], timeout_s: float) -> None:
        inbox = await self._consumer()
        self._request_done.clear()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        await self.js._nc.publish(subject, json.dumps(request).encode(), reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._request_done.wait(), timeout=timeout_s)

    async def _fetch(self, timeout_s: float) -> list[Msg]:
        """Up to ``batch`` messages: what is there now, else what arrives within ``timeout_s``.

        One pull request and a subscription callback per batch: several times cheaper per
        message than the client's ``fetch``, which awaits each message with its own timeout.
        Messages that arrive after a request was given up are kept for the next call.
        """
        if len(self._received) < self.batch:
            await self._pull({"batch": self.batch - len(self._received), "no_wait": True}, 5.0)
        if not self._received:
            expires = max(int(timeout_s * 1e9) - 100_000_000, 1_000_000)
            await self._pull({"batch": self.batch, "expires": expires}, timeout_s)
        taken, self._received = self._received[: self.batch], self._received[self.batch :]
        return taken

    async def _receive(self, timeout_s: float) -> tuple[list[Msg], list[dict[str, Any]], int]:
        """(messages to acknowledge after the commit, their rows, how many were rejected)."""
        messages = await self._fetch(timeout_s)
        rows: list[dict[str, Any]] = []
        good: list[Msg] = []
        rejected = 0
        for msg in messages:
            try:
                rows.extend(self.parse(msg.subject, msg.data))
            except Exception as exc:  # WireError, or anything a malformed message provokes:
                rejected += 1  # it must not hold its batch back forever
                log.warning("dropping a message on %s: %s", msg.subject, exc)
                await msg.term()
                continue
            good.append(msg)
        return good, rows, rejected

    async def _settle(self, good: list[Msg], rejected: int, stored: int) -> BatchResult:
        result = BatchResult(len(good) + rejected, stored, rejected)
        if self.on_committed is not None:
            await self.on_committed(result)
        for msg in good:
            await msg.ack()
        self.stored_total += stored
        self.rejected_total += rejected
        return result

    async def run_once(self, timeout_s: float = 1.0) -> BatchResult:
        """Fetch, store and acknowledge one batch (empty if nothing arrived in ``timeout_s``)."""
        good, rows, rejected = await self._receive(timeout_s)
        stored = await asyncio.to_thread(self.write, rows) if rows else 0
        return await self._settle(good, rejected, stored)

    async def run(self, stop: asyncio.Event, *, idle_timeout_s: float = 1.0) -> None:
        """Ingest until ``stop`` is set; failures are logged and retried after a pause.

        Pipelined: while one batch is being committed, the next is fetched and parsed; a
        batch is acknowledged only after its own commit, as in ``run_once``.
        """
        while not stop.is_set():
            writing: asyncio.Task[int] | None = None
            try:
                pending: tuple[list[Msg], int] | None = None
                while not stop.is_set():
                    good, rows, rejected = await self._receive(idle_timeout_s)
                    if writing is not None and pending is not None:
                        await self._settle(pending[0], pending[1], await writing)
                        writing, pending = None, None
                    if good or rejected:
                        writing = asyncio.create_task(
                            asyncio.to_thread(self.write, rows) if rows else _zero()
                        )
                        pending = (good, rejected)
                if writing is not None and pending is not None:
                    await self._settle(pending[0], pending[1], await writing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database is down: wait, then carry on
                log.warning("ingesting %s paused: %s", self.stream, exc)
                if writing is not None:
                    writing.cancel()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=2.0)


async def _zero() -> int:
    return 0
