"""Run the Isthmus gateway as its own process in front of one upstream, for the benchmarks.

The fabric is the smallest that exercises the whole request path: one site, one model, ONE
endpoint (the upstream at ``--upstream-port``), one tenant with the key ``sk-bench`` whose data
class is allowed there, decision logging and health checks off. Every request still goes
through authentication, body checks, data class, admission, ``route()``, the pooled upstream
client and the metrics, as in production.

Two server stacks, one worker each:

- ``uvicorn``: uvloop + httptools, started by ``isthmus.gateway.server.start_gateway`` (the
  code path ``isthmus up`` uses);
- ``granian``: granian's Rust HTTP server with the ASGI interface and the uvloop event loop
  (``granian --interface asgi --loop uvloop --workers 1``). Granian runs the app in a worker
  process it spawns, so a profiler or CPU meter must follow the process tree.

    .venv/bin/python bench/serve_gateway.py --port 8080 --upstream-port 8000 [--server granian]

Prints ``ready http://127.0.0.1:PORT`` once it accepts connections (uvicorn; granian logs its
own start-up line) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

from isthmus.fabric.catalog import Fabric
from isthmus.fabric.loader import load_fabric_text
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.tenants import hash_key

API_KEY = "sk-bench"
MODEL = "zero"
SITE = "local"
_UPSTREAM_ENV = "ISTHMUS_BENCH_UPSTREAM_PORT"
_GC_ENV = "ISTHMUS_BENCH_GC_FREEZE"

_FABRIC = """
name: gateway-bench
data_classes:
  - {name: public, level: 0}
sites:
  - {name: %(site)s, kind: on_prem, provider: bench, city: Paris, country: FR,
     lat_deg: 48.86, lon_deg: 2.35}
models:
  - {name: %(model)s, params_b: 1, licence: apache-2.0, context_tokens: 131072}
endpoints:
  # max_concurrency far above what a run keeps in flight: the benchmark measures the proxy,
  # not the gateway's admission control
  - {name: %(model)s-local, model: %(model)s, site: %(site)s, engine: emulator,
     url: "http://127.0.0.1:%(port)d/v1", max_concurrency: 100000}
tenants:
  - name: bench
    default_data_class: public
    api_keys: [{id: bench, sha256: "%(digest)s"}]
policies:
  - {name: open, data_classes: [public]}
"""


def bench_fabric(upstream_port: int) -> Fabric:
    text = _FABRIC % {
        "site": SITE,
        "model": MODEL,
        "port": upstream_port,
        "digest": hash_key(API_KEY),
    }
    return load_fabric_text(text, file="<gateway-bench>")


def bench_gateway(upstream_port: int, guard: bool = False) -> Gateway:
    """The gateway under test; ``guard``: with the default guard policy inspecting requests and
    responses (injection classifier, PII, secrets, URLs, output filters), as ``isthmus up``."""
    config = GatewayConfig(site=SITE, health_interval_s=0, log_decisions=False)
    inspector = None
    if guard:
        from isthmus.guard import Guard, GuardPolicy

        inspector = Guard(GuardPolicy())
    return Gateway(bench_fabric(upstream_port), config, guard=inspector)


def granian_app() -> Gateway:
    """Granian's factory target (``serve_gateway:granian_app``); the port comes by env."""
    gateway = bench_gateway(int(os.environ[_UPSTREAM_ENV]))
    if os.environ.get(_GC_ENV):
        _freeze_gc()
    return gateway


def _freeze_gc() -> None:
    """An experiment, off by default: move start-up objects (fabric, compiled policy, imports)
    out of the collector's reach and make young-generation collections rarer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _serve_uvicorn(
    host: str, port: int, upstream_port: int, gc_freeze: bool, guard: bool
) -> None:
    from isthmus.gateway.server import start_gateway

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    served = await start_gateway(bench_gateway(upstream_port, guard), host, port)
    if gc_freeze:
        _freeze_gc()
    print(f"ready {served.url}", flush=True)
    await stop.wait()
    await served.stop()


def _serve_granian(
    host: str, port: int, upstream_port: int, gc_freeze: bool, runtime_mode: str
) -> None:
    from granian.constants import Interfaces, Loops, RuntimeModes
    from granian.server import Server

    os.environ[_UPSTREAM_ENV] = str(upstream_port)
    if gc_freeze:
        os.environ[_GC_ENV] = "1"
    server = Server(
        "serve_gateway:granian_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=1,
        runtime_mode=RuntimeModes(runtime_mode),
        websockets=False,
        backlog=4096,
        log_access=False,
        factory=True,
        working_dir=Path(__file__).resolve().parent,
    )
    server.serve()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="experiment: gc.freeze() and rarer collections"
    )
    parser.add_argument(
        "--guard", action="store_true", help="inspect with the default guard policy"
    )
    parser.add_argument(
        "--granian-runtime-mode",
        choices=("auto", "st", "mt"),
        default="auto",
        help="granian's Rust runtime: single- or multi-threaded (auto: granian decides)",
    )
    args = parser.parse_args()
    if args.server == "granian":
        _serve_granian(
            args.host, args.port, args.upstream_port, args.gc_freeze, args.granian_runtime_mode
        )
        return 0
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            _serve_uvicorn(args.host, args.port, args.upstream_port, args.gc_freeze, args.guard)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
