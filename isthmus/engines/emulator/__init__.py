"""An OpenAI-compatible server that behaves like an inference engine.

Timing, queueing and the KV prefix cache come from ``isthmus.engines.timing`` (the model the
simulator uses too); network delay and failures are injected (``config.py``). Run one endpoint
or a whole fabric's loopback endpoints in one process::

    python -m isthmus.engines.emulator --port 8000 --model m --prefill-tps 12000 --decode-tps 120
    python -m isthmus.engines.emulator --fabric examples/fabric.yaml

or in tests: ``async with run_fleet(specs) as urls: ...``.
"""

from __future__ import annotations

from isthmus.engines.emulator.app import EmulatorApp
from isthmus.engines.emulator.config import EmulatorConfig, Faults, FaultsError
from isthmus.engines.emulator.fleet import (
    EndpointEmulation,
    RunningFleet,
    main,
    run_fleet,
    spec_for_endpoint,
    specs_from_fabric,
)
from isthmus.engines.emulator.server import ServedApp, start_server

__all__ = [
    "EmulatorApp",
    "EmulatorConfig",
    "EndpointEmulation",
    "Faults",
    "FaultsError",
    "RunningFleet",
    "ServedApp",
    "main",
    "run_fleet",
    "spec_for_endpoint",
    "specs_from_fabric",
    "start_server",
]
