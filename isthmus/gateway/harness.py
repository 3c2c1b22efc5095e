"""A whole local deployment in a background thread: emulated engines plus a gateway.

Used by the tests (so sync *and* async OpenAI clients can talk to real HTTP servers on loopback)
and by ``isthmus up``. The thread owns its event loop; ``call`` runs a coroutine on it (to kill
an endpoint, inject faults or read gateway state) and waits for the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from isthmus.engines.emulator.fleet import EndpointEmulation, RunningFleet, run_fleet
from isthmus.fabric.catalog import Fabric
from isthmus.gateway.app import Gateway, GatewayConfig
from isthmus.gateway.server import ServedGateway, start_gateway

__all__ = ["LocalDeployment"]

T = TypeVar("T")


class LocalDeployment:
    def __init__(
        self,
        fabric: Fabric,
        config: GatewayConfig,
        emulations: Sequence[EndpointEmulation],
        *,
        gateway_port: int = 0,
        keep_urls: bool = False,
    ) -> None:
        self.fabric = fabric
        self.config = config
        self.emulations = list(emulations)
        self.gateway_port = gateway_port
        self.keep_urls = keep_urls
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="isthmus-local", daemon=True
        )
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()
        self.fleet: RunningFleet | None = None
        self.served: ServedGateway | None = None

    @property
    def gateway(self) -> Gateway:
        assert self.served is not None
        return self.served.gateway

    @property
    def url(self) -> str:
        assert self.served is not None
        return self.served.url

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with run_fleet(self.emulations) as fleet:
                self.fleet = fleet
                fabric = (
                    self.fabric if self.keep_urls else self.fabric.with_endpoint_urls(dict(fleet))
                )
                self.served = await start_gateway(
                    Gateway(fabric, self.config), port=self.gateway_port
                )
                self._ready.set_result(None)
                await self._stop.wait()
                await self.served.stop()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def start(self, timeout_s: float = 30.0) -> LocalDeployment:
        self._thread.start()
        self._task = asyncio.run_coroutine_threadsafe(self._main(), self.loop)
        self._ready.result(timeout_s)
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
            with contextlib.suppress(Exception):
                self._task.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
