"""Serve the gateway with uvicorn (uvloop + httptools) — on its own, or on a running loop.

``start_gateway`` binds the socket first (so port 0 works and the port is known), starts
uvicorn on the current event loop with the gateway's lifespan (health checks start, the
upstream pool closes on shutdown) and returns once connections are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from dataclasses import dataclass

import uvicorn

from isthmus.gateway.app import Gateway
from isthmus.serving import serve_on_loop

__all__ = ["GC_THRESHOLDS", "ServedGateway", "start_gateway"]

GC_THRESHOLDS = (20_000, 50, 100)


@dataclass
class ServedGateway:
    gateway: Gateway
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_gateway(
    gateway: Gateway, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> ServedGateway:
    server, task, bound = await serve_on_loop(
        gateway,
        host,
        port,
        name="gateway",
        lifespan="on",
        log_level=log_level,
        timeout_keep_alive=75,
        date_header=False,
    )
    # The catalog, policy tables and fleet state live as long as the process: move them out of
    # the collector's sight, and collect the young generation less often (requests allocate
    # many short-lived objects; full scans of long-lived ones were a measurable share of CPU).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return ServedGateway(gateway, server, task, host, bound)
