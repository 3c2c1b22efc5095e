"""Serve the gateway with uvicorn (uvloop + httptools) — on its own, or on a running loop.

``start_gateway`` binds the socket first (so port 0 works and the port is known), starts
uvicorn on the current event loop with the gateway's lifespan (health checks start, the
upstream pool closes on shutdown) and returns once connections are accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from isthmus.gateway.app import Gateway

__all__ = ["GC_THRESHOLDS", "ServedGateway", "start_gateway"]

GC_THRESHOLDS = (20_000, 50, 100)


class _LoopServer(uvicorn.Server):
    """Leaves signal handling to whoever owns the loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    config = uvicorn.Config(
        gateway,
        http="httptools",
        loop="none",
        ws="none",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=75,
        server_header=False,
        date_header=False,
    )
    server = _LoopServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway server stopped while starting")
        await asyncio.sleep(0.005)
    # The catalog, policy tables and fleet state live as long as the process: move them out of
    # the collector's sight, and collect the young generation less often (requests allocate
    # many short-lived objects; full scans of long-lived ones were a measurable share of CPU).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return ServedGateway(gateway, server, task, host, sock.getsockname()[1])
