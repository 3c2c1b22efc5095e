"""Serve an ASGI app with uvicorn (uvloop + httptools) on the event loop that is running.

Shared by the gateway and the engine emulator. Many servers can share one loop (an emulated
fleet is one process), so servers here never install signal handlers (their owner does), and
each binds its own socket first, which makes port 0 (ephemeral) usable: the bound port is known
before the server starts. Invariant: when ``serve_on_loop`` returns, the socket accepts
connections; setting ``server.should_exit`` and awaiting the task stops it and frees the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

__all__ = ["LoopServer", "bind_socket", "serve_on_loop"]


class LoopServer(uvicorn.Server):
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


async def serve_on_loop(
    app: Any, host: str, port: int, *, name: str, **options: Any
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Start uvicorn for ``app`` on ``host:port`` (``options`` go to ``uvicorn.Config``)."""
    sock = bind_socket(host, port)
    bound = int(sock.getsockname()[1])
    settings: dict[str, Any] = {
        "http": "httptools",
        "loop": "none",
        "ws": "none",
        "interface": "asgi3",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # no X-Forwarded-* rewriting: nothing here reads the client address, and the middleware
        # is one more coroutine per request
        "proxy_headers": False,
        "backlog": 4096,
    }
    settings.update(options)
    server = LoopServer(uvicorn.Config(app, **settings))
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"{name}-{bound}")
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises the start-up error
            raise RuntimeError(f"the {name} server on port {bound} stopped while starting")
        await asyncio.sleep(0.001)
    return server, task, bound
