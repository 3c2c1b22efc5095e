"""Run many emulated endpoints in one process, on one event loop; build them from a fabric.

Invariants: every endpoint has its own port, model name, profile, delay and faults, and shares
nothing with the others but the loop; :func:`run_fleet` either starts every endpoint or none
(a failure stops those already started) and always releases every port on exit.

From a fabric (:func:`specs_from_fabric`) an endpoint is emulated when its engine is one the
emulator stands in for (``emulator``, ``vllm``, ``sglang``, ``llamacpp``) and its URL is on
loopback. Its profile is the model's ``PerfProfile`` for the endpoint's accelerator (the
endpoint's ``kv_cache_tokens`` overriding the profile's), else ``DEFAULT_PROFILE``; it runs
``devices // devices_per_replica`` replicas; it serves ``served_model_name`` (the model's own
name accepted too); its context is the model's, capped at what one replica's cache holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TextIO
from urllib.parse import urlsplit

import orjson

from isthmus.engines.emulator.app import EmulatorApp
from isthmus.engines.emulator.config import EmulatorConfig, Faults, Timing
from isthmus.engines.emulator.server import ServedApp, start_server
from isthmus.engines.timing import DEFAULT_PROFILE, EngineProfile
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Endpoint

__all__ = [
    "EMULATED_ENGINES",
    "EndpointEmulation",
    "RunningFleet",
    "main",
    "run_fleet",
    "spec_for_endpoint",
    "specs_from_fabric",
]

EMULATED_ENGINES = frozenset({"emulator", "vllm", "sglang", "llamacpp"})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class EndpointEmulation:
    """One endpoint to emulate: a name (for the caller), where to listen, what to be."""

    name: str
    config: EmulatorConfig
    host: str = "127.0.0.1"
    port: int = 0


class RunningFleet(Mapping[str, str]):
    """The started fleet: maps endpoint name to base URL (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, served: Mapping[str, ServedApp]) -> None:
        self._served = dict(served)

    def __getitem__(self, name: str) -> str:
        return self._served[name].base_url

    def __iter__(self) -> Iterator[str]:
        return iter(self._served)

    def __len__(self) -> int:
        return len(self._served)

    @property
    def apps(self) -> Mapping[str, EmulatorApp]:
        return {name: s.app for name, s in self._served.items()}

    @property
    def ports(self) -> Mapping[str, int]:
        return {name: s.port for name, s in self._served.items()}


@contextlib.asynccontextmanager
async def run_fleet(
    specs: Sequence[EndpointEmulation], *, log_level: str = "warning"
) -> AsyncIterator[RunningFleet]:
    """Serve every spec on the running loop for the duration of the ``async with``."""
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("endpoint names in a fleet must be unique")
    served: dict[str, ServedApp] = {}
    try:
        for spec in specs:
            app = EmulatorApp(spec.config)
            served[spec.name] = await start_server(app, spec.host, spec.port, log_level=log_level)
        yield RunningFleet(served)
    finally:
        await asyncio.gather(*(s.stop() for s in served.values()), return_exceptions=True)


# -- from a fabric -----------------------------------------------------------------------------
def spec_for_endpoint(
    fabric: Fabric,
    endpoint: Endpoint,
    *,
    timing: Timing = "model",
    one_way_delay_ms: float = 0.0,
    faults: Faults | None = None,
) -> EndpointEmulation | None:
    """The emulation of one fabric endpoint, or None if it is not an emulated loopback one."""
    url = urlsplit(endpoint.url)
    if endpoint.engine not in EMULATED_ENGINES or url.hostname not in _LOOPBACK:
        return None
    model = fabric.models[endpoint.model]
    perf = next((p for p in model.profiles if p.accelerator == endpoint.accelerator), None)
    replicas = 1
    if perf is not None:
        profile = EngineProfile.from_perf(perf, endpoint.kv_cache_tokens, kind=model.kind)
        replicas = max(1, endpoint.devices // perf.devices_per_replica)
    elif endpoint.kv_cache_tokens is not None:
        profile = replace(DEFAULT_PROFILE, kv_cache_tokens=endpoint.kv_cache_tokens)
    else:
        profile = DEFAULT_PROFILE
    served = endpoint.served_model_name or model.name
    config = EmulatorConfig(
        model=served,
        profile=profile,
        aliases=(model.name,) if served != model.name else (),
        timing=timing,
        replicas=replicas,
        one_way_delay_ms=one_way_delay_ms,
        max_model_len=max(2, min(model.context_tokens, profile.capacity_tokens)),
        faults=faults or Faults(),
    )
    host = "127.0.0.1" if url.hostname == "localhost" else str(url.hostname)
    port = url.port or (443 if url.scheme == "https" else 80)
    return EndpointEmulation(endpoint.name, config, host, port)


def specs_from_fabric(
    fabric: Fabric,
    *,
    timing: Timing = "model",
    one_way_delay_ms: float | Mapping[str, float] | Callable[[Endpoint], float] = 0.0,
    endpoints: Collection[str] | None = None,
    faults: Faults | None = None,
    any_port: bool = False,
) -> list[EndpointEmulation]:
    """Emulations of the fabric's loopback endpoints (optionally only ``endpoints``).

    ``one_way_delay_ms`` is one value, a mapping by endpoint name (missing: 0), or a function
    of the endpoint (e.g. half the RTT from a user metro to its site). ``any_port`` listens on
    ephemeral ports instead of the URLs' ones (tests).
    """
    out: list[EndpointEmulation] = []
    for endpoint in fabric.spec.endpoints:
        if endpoints is not None and endpoint.name not in endpoints:
            continue
        if callable(one_way_delay_ms):
            delay = one_way_delay_ms(endpoint)
        elif isinstance(one_way_delay_ms, Mapping):
            delay = one_way_delay_ms.get(endpoint.name, 0.0)
        else:
            delay = one_way_delay_ms
        spec = spec_for_endpoint(
            fabric, endpoint, timing=timing, one_way_delay_ms=delay, faults=faults
        )
        if spec is not None:
            out.append(replace(spec, port=0) if any_port else spec)
    return out


# -- command line ------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m isthmus.engines.emulator",
        description="An OpenAI-compatible server that behaves like an inference engine.",
    )
    p.add_argument("--fabric", help="serve every loopback endpoint of this fabric file")
    p.add_argument("--endpoint", action="append", help="with --fabric: only these (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--model", default="emulated-model", help="the model name served")
    p.add_argument("--prefill-tps", type=float, default=DEFAULT_PROFILE.prefill_tokens_per_s)
    p.add_argument("--decode-tps", type=float, default=DEFAULT_PROFILE.decode_tokens_per_s)
    p.add_argument("--max-batch-size", type=int, default=DEFAULT_PROFILE.max_batch_size)
    p.add_argument("--kv-cache-tokens", type=int, default=None)
    p.add_argument("--block-tokens", type=int, default=DEFAULT_PROFILE.block_tokens)
    p.add_argument("--max-batched-tokens", type=int, default=None)
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--timing", choices=("model", "none"), default="model")
    p.add_argument("--one-way-delay-ms", type=float, default=0.0)
    p.add_argument("--faults", default=None, help="JSON, e.g. '{\"error_rate\": 0.1}'")
    p.add_argument("--log-level", default="warning")
    return p


def _specs_from_args(args: argparse.Namespace) -> list[EndpointEmulation]:
    faults = Faults().updated(orjson.loads(args.faults)) if args.faults else Faults()
    if args.fabric:
        from isthmus.fabric.loader import load_fabric

        fabric = load_fabric(args.fabric)
        return specs_from_fabric(
            fabric,
            timing=args.timing,
            one_way_delay_ms=args.one_way_delay_ms,
            endpoints=args.endpoint,
            faults=faults,
        )
    kv = args.kv_cache_tokens or args.max_batch_size * 4096
    profile = EngineProfile(
        prefill_tokens_per_s=args.prefill_tps,
        decode_tokens_per_s=args.decode_tps,
        max_batch_size=args.max_batch_size,
        kv_cache_tokens=kv,
        block_tokens=args.block_tokens,
        max_batched_tokens=args.max_batched_tokens or max(2048, args.max_batch_size),
    )
    config = EmulatorConfig(
        model=args.model,
        profile=profile,
        timing=args.timing,
        replicas=args.replicas,
        one_way_delay_ms=args.one_way_delay_ms,
        max_model_len=min(args.max_model_len, profile.capacity_tokens),
        faults=faults,
    )
    return [EndpointEmulation(args.model, config, args.host, args.port)]


async def serve_until_signalled(
    specs: Sequence[EndpointEmulation], *, log_level: str = "warning", out: TextIO = sys.stdout
) -> None:
    """Serve ``specs`` until SIGINT or SIGTERM, printing ``name url`` for each endpoint."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with run_fleet(specs, log_level=log_level) as fleet:
        for name, url in fleet.items():
            print(f"{name} {url}", file=out, flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m isthmus.engines.emulator``: run one emulated endpoint or a fabric's."""
    args = _parser().parse_args(argv)
    try:
        specs = _specs_from_args(args)
    except Exception as exc:  # a person's mistake: say what it is, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not specs:
        print("error: no loopback endpoint to emulate", file=sys.stderr)
        return 2
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_signalled(specs, log_level=args.log_level))
    return 0
