"""Emulated endpoints served from a background thread (its own uvloop), shared by the tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence

import httpx
import pytest
import uvloop

from isthmus.engines.emulator import EmulatorConfig, EndpointEmulation, RunningFleet, run_fleet
from isthmus.engines.timing import EngineProfile

FAST = EngineProfile(prefill_tokens_per_s=200_000, decode_tokens_per_s=1000, kv_cache_tokens=65_536)
PACED = EngineProfile(prefill_tokens_per_s=50_000, decode_tokens_per_s=100, kv_cache_tokens=65_536)
STEADY = EngineProfile(
    prefill_tokens_per_s=100_000, decode_tokens_per_s=200, kv_cache_tokens=65_536
)


class FleetThread:
    """Runs ``run_fleet(specs)`` on a uvloop in a daemon thread until ``stop()``."""

    def __init__(self, specs: Sequence[EndpointEmulation]) -> None:
        self.specs = specs
        self.fleet: RunningFleet | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True, name="emulator-fleet")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    def _main(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with run_fleet(self.specs) as fleet:
                self.fleet = fleet
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # pragma: no cover - reported to the test
            self.error = exc
            self._ready.set()

    def start(self) -> RunningFleet:
        self._thread.start()
        self._ready.wait(10)
        if self.error is not None or self.fleet is None:
            raise RuntimeError(f"fleet failed to start: {self.error!r}")
        return self.fleet

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture(scope="session")
def emulators() -> Iterator[RunningFleet]:
    specs = [
        EndpointEmulation(
            "fast",
            EmulatorConfig(
                "fast-model",
                FAST,
                aliases=("fast-alias",),
                default_max_tokens=8,
                max_model_len=4096,
            ),
        ),
        EndpointEmulation("paced", EmulatorConfig("paced-model", PACED, one_way_delay_ms=10)),
        EndpointEmulation("zero", EmulatorConfig("zero-model", timing="none")),
        EndpointEmulation("faulty", EmulatorConfig("faulty-model", STEADY, max_model_len=4096)),
    ]
    runner = FleetThread(specs)
    fleet = runner.start()
    yield fleet
    runner.stop()


@pytest.fixture()
def faulty(emulators: RunningFleet) -> Iterator[str]:
    """The faulty endpoint's base URL, with its faults reset after the test."""
    url = emulators["faulty"]
    yield url
    httpx.post(url.removesuffix("/v1") + "/admin/faults", json={"reset": True})
