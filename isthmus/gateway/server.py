"""Serve the gateway — on its own, or on a running loop.

``start_gateway`` binds the socket first (so port 0 works and the port is known), runs the
gateway's lifespan start-up (health checks start), serves it with ``isthmus.gateway.http_server``
on the current event loop and returns once connections are accepted. ``ServedGateway.stop``
drains the requests in flight, then runs the lifespan shutdown (the upstream pool closes).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

from isthmus.gateway.app import Gateway
from isthmus.gateway.http_server import HttpServer, serve
from isthmus.serving import bind_socket

__all__ = ["GC_THRESHOLDS", "ServedGateway", "start_gateway"]

GC_THRESHOLDS = (20_000, 50, 100)
KEEP_ALIVE_S = 75.0
DRAIN_S = 30.0


@dataclass
class ServedGateway:
    gateway: Gateway
    server: HttpServer
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self, grace_s: float = DRAIN_S) -> None:
        await self.server.stop(grace_s)


async def start_gateway(gateway: Gateway, host: str = "127.0.0.1", port: int = 0) -> ServedGateway:
    sock = bind_socket(host, port)
    bound = int(sock.getsockname()[1])
    try:
        server = await serve(gateway, sock, keep_alive_s=KEEP_ALIVE_S)
    except BaseException:
        sock.close()
        raise
    # The catalog, policy tables and fleet state live as long as the process: move them out of
    # the collector's sight, and collect the young generation less often (requests allocate
    # many short-lived objects; full scans of long-lived ones were a measurable share of CPU).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return ServedGateway(gateway, server, host, bound)
