from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import nats
from nats.js.errors import NotFoundError

from isthmus.mesh.protocol import GatewayStatus, Names
from isthmus.mesh.streams import ensure_streams
from tests.mesh.conftest import NATS_URL


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def publish(names: Names, raw: bytes) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        await ensure_streams(js, names)
        await js.publish(names.bundle_subject, raw)
    finally:
        await nc.close()


async def stream_msg_ids(stream: str) -> list[str]:
    """The message id of every message in ``stream``, in stream order."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except NotFoundError:
                continue
            ids.append((msg.headers or {}).get("Nats-Msg-Id", ""))
        return ids
    finally:
        await nc.close()


async def read_status(names: Names, gateway: str) -> GatewayStatus | None:
    nc = await nats.connect(NATS_URL)
    try:
        kv = await nc.jetstream().key_value(names.status_bucket)
        try:
            entry = await kv.get(gateway)
        except Exception:
            return None
        return GatewayStatus.model_validate_json(entry.value or b"")
    finally:
        await nc.close()


async def status_where(
    names: Names, gateway: str, predicate: Callable[[GatewayStatus], bool], timeout_s: float = 20.0
) -> GatewayStatus:
    """The gateway's status once it satisfies ``predicate``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = await read_status(names, gateway)
        if status is not None and predicate(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the status of {gateway} never matched; last: {status}")
        await asyncio.sleep(0.05)


async def last_message(stream: str) -> dict[str, Any]:
    nc = await nats.connect(NATS_URL)
    try:
        info = await nc.jetstream().stream_info(stream)
        msg = await nc.jetstream().get_msg(stream, info.state.last_seq)
        return dict(json.loads(msg.data or b"{}"))
    finally:
        await nc.close()
