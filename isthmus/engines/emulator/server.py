"""Serve one :class:`EmulatorApp` on the running event loop (see ``isthmus.serving``).

Invariant: after :func:`start_server` returns, the socket accepts connections;
:meth:`ServedApp.stop` ends the app's engines, then the server, and releases the port.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import uvicorn

from isthmus.engines.emulator.app import EmulatorApp
from isthmus.serving import serve_on_loop

__all__ = ["ServedApp", "start_server"]

GRACEFUL_SHUTDOWN_S = 2


@dataclass
class ServedApp:
    app: EmulatorApp
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    async def stop(self) -> None:
        await self.app.stop()
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def start_server(
    app: EmulatorApp, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning"
) -> ServedApp:
    """Start serving ``app`` on ``host:port`` and return once it accepts connections."""
    app.start()
    server, task, bound_port = await serve_on_loop(
        app,
        host,
        port,
        name="emulator",
        lifespan="off",
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return ServedApp(app, server, task, host, bound_port)
