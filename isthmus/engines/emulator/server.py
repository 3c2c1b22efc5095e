"""Serve one :class:`EmulatorApp` with uvicorn (uvloop + httptools) on the running event loop.

Many servers share one loop (a fleet is one process), so the servers here never install signal
handlers (their owner does) and bind their own socket first, which makes port 0 (ephemeral)
usable: the bound port is known before the server starts. Invariant: after
:func:`start_server` returns, the socket accepts connections; :meth:`ServedApp.stop` ends the
app's engines, then the server, and releases the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn

from isthmus.engines.emulator.app import EmulatorApp

__all__ = ["ServedApp", "bind_socket", "start_server"]

GRACEFUL_SHUTDOWN_S = 2


class _SharedLoopServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to whoever runs the loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking TCP socket (``port=0``: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


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
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        http="httptools",
        loop="none",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        backlog=4096,
    )
    server = _SharedLoopServer(config)
    app.start()
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"emulator-{bound_port}")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises the startup error
            raise RuntimeError(f"the emulator on port {bound_port} stopped during startup")
        await asyncio.sleep(0.001)
    return ServedApp(app, server, task, host, bound_port)
