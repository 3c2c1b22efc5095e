"""A distributed Isthmus deployment on this machine, one OS process per part.

``Processes`` starts each part (``nats-server``, ``isthmus control``, the engine emulator,
``isthmus gateway``) as a child process whose output goes to a log file of its own, can kill any
of them (SIGKILL: no goodbye, as a crash or a pulled plug), and stops whatever is left when it
closes, failure or not. ``tails`` shows the end of every log, for a failing run.

The other functions start one part each and return once it is ready (a port answering, the
JetStream API answering, ``/healthz`` or ``/health`` answering 200); every wait has a deadline
and names what it waited for. Used by ``tests/e2e`` and ``bench/distributed.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import nats
from sqlalchemy import create_engine, func, select

from isthmus.audit.log import audit_table
from isthmus.mesh.attach import AUDIT_DB
from isthmus.mesh.outbox import cursor_table
from isthmus.mesh.protocol import GatewayStatus, Names
from tests.mesh.test_gateway_cli import free_port

__all__ = [
    "ControlPlaneProcess",
    "GatewayProcess",
    "Processes",
    "fabric_yaml",
    "free_port",
    "local_audit",
    "nats_server_path",
    "outbox_pending",
    "start_control",
    "start_emulator",
    "start_gateway",
    "start_nats",
    "statuses",
    "wait_until",
]

PYTHON = sys.executable
MODEL = "chat-small"


def wait_until(
    condition: Callable[[], object], what: str, timeout_s: float = 30.0, every_s: float = 0.05
) -> None:
    """Poll ``condition`` until it is true; an ``AssertionError`` naming ``what`` after
    ``timeout_s``. An exception raised by ``condition`` counts as false (a server not up)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            if condition():
                return
        except Exception as exc:  # not up yet: try again until the deadline
            last = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last!r})" if last is not None else ""
            raise AssertionError(f"not reached in {timeout_s:.0f} s: {what}{detail}")
        time.sleep(every_s)


# -- processes -------------------------------------------------------------------------------


@dataclass
class _Child:
    process: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]


@dataclass
class Processes:
    """Child processes by name, each logging to ``<logs>/<name>.log``."""

    logs: Path
    children: dict[str, _Child] = field(default_factory=dict)

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        if name in self.children and self.children[name].process.poll() is None:
            raise RuntimeError(f"{name} is already running")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        self.children[name] = _Child(process, log, handle)
        return process

    def alive(self, name: str) -> bool:
        child = self.children.get(name)
        return child is not None and child.process.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` and reap it."""
        child = self.children[name]
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGKILL)
        child.process.wait(timeout=10)
        child.handle.close()

    def close(self, grace_s: float = 5.0) -> None:
        """Stop every child still running: SIGTERM, then SIGKILL after ``grace_s``."""
        running = [c for c in self.children.values() if c.process.poll() is None]
        for child in running:
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in running:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(timeout=10)
        for child in self.children.values():
            child.handle.close()

    def tails(self, lines: int = 25) -> str:
        out = []
        for name, child in self.children.items():
            text = child.log.read_text(errors="replace").splitlines() if child.log.exists() else []
            state = "running" if child.process.poll() is None else f"exit {child.process.poll()}"
            out.append(f"----- {name} ({state}), last {lines} lines of {child.log} -----")
            out.extend(text[-lines:])
        return "\n".join(out)

    def require_alive(self, names: Iterable[str]) -> None:
        dead = [n for n in names if not self.alive(n)]
        if dead:
            raise AssertionError(f"exited early: {', '.join(dead)}\n{self.tails()}")


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


# -- NATS ------------------------------------------------------------------------------------


async def _quiet(exc: Exception) -> None:
    return None  # a server not up yet: the caller retries and reports


def nats_server_path() -> str | None:
    found = shutil.which("nats-server") or "/usr/sbin/nats-server"
    return found if Path(found).exists() else None


def start_nats(procs: Processes, port: int, store: Path, name: str = "nats") -> str:
    """A private ``nats-server -js`` on ``port`` keeping its streams in ``store``; its URL once
    the JetStream API answers."""
    server = nats_server_path()
    assert server is not None, "nats-server is not installed"
    argv = [server, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    procs.start(name, argv)
    url = f"nats://127.0.0.1:{port}"

    async def jetstream_answers() -> bool:
        nc = await nats.connect(
            url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet, max_reconnect_attempts=0
        )
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()
        return True

    wait_until(lambda: asyncio.run(jetstream_answers()), f"JetStream at {url}", 20)
    return url


async def _statuses(url: str, names: Names) -> dict[str, GatewayStatus]:
    nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet)
    try:
        kv = await nc.jetstream().key_value(names.status_bucket)
        try:
            keys = await kv.keys()
        except Exception:  # no keys yet
            return {}
        found = {}
        for key in keys:
            entry = await kv.get(key)
            if entry.value:
                found[key] = GatewayStatus.model_validate_json(entry.value)
        return found
    finally:
        await nc.close()


def statuses(url: str, names: Names) -> dict[str, GatewayStatus]:
    """Every gateway's status, read from the status bucket itself (not the control plane)."""
    return asyncio.run(_statuses(url, names))


# -- control plane ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlPlaneProcess:
    name: str
    argv: list[str]
    url: str
    admin_token: str

    def client(self, token: str | None = None) -> httpx.Client:
        bearer = token or self.admin_token
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {bearer}"}, timeout=10
        )


def start_control(
    procs: Processes,
    *,
    db_url: str,
    nats_url: str,
    namespace: str,
    port: int,
    signing_key: Path,
    admin_token: str,
    operator_token: str,
    name: str = "control",
) -> ControlPlaneProcess:
    """``isthmus control`` on ``port``; returns once it answers and is connected to NATS."""
    argv = [
        PYTHON, "-m", "isthmus.cli.main", "control", "--db", db_url, "--nats", nats_url,
        "--namespace", namespace, "--port", str(port), "--signing-key", str(signing_key),
        "--admin-token", admin_token, "--operator-token", operator_token,
    ]  # fmt: skip
    control = ControlPlaneProcess(name, argv, f"http://127.0.0.1:{port}", admin_token)
    restart_control(procs, control)
    return control


def restart_control(procs: Processes, control: ControlPlaneProcess) -> None:
    procs.start(control.name, control.argv)

    def connected() -> bool:
        procs.require_alive([control.name])
        answer = httpx.get(f"{control.url}/healthz", timeout=1)
        return answer.status_code == 200 and answer.json()["nats"] == "connected"

    wait_until(connected, f"the control plane at {control.url} connected to NATS", 30)


# -- engines and gateways --------------------------------------------------------------------


def fabric_yaml(endpoint_ports: Mapping[str, int], tenants: Iterable[str]) -> str:
    """A small fabric: one site per entry of ``endpoint_ports`` (site -> the port of its one
    emulated endpoint, serving ``chat-small``), ``tenants`` with no keys (the control plane
    issues them), everything ``internal`` by default and allowed anywhere."""
    lines = [
        "name: distributed",
        "data_classes:",
        "  - {name: public, level: 0}",
        "  - {name: internal, level: 1}",
        "sites:",
    ]
    for n, site in enumerate(endpoint_ports):
        lines.append(
            f"  - {{name: {site}, kind: on_prem, provider: acme, city: City{n}, country: FR, "
            f"lat_deg: {45 + n * 0.5}, lon_deg: {2 + n * 0.5}, "
            "accelerators: [{type: H100, count: 8}]}"
        )
    lines += [
        "models:",
        "  - name: llama-3.1-8b",
        "    params_b: 8",
        "    licence: llama3.1",
        "    profiles:",
        "      - {accelerator: H100, prefill_tokens_per_s: 12000, decode_tokens_per_s: 400,"
        " kv_cache_tokens: 400000}",
        "aliases:",
        f"  {MODEL}: [llama-3.1-8b]",
        "endpoints:",
    ]
    for site, port in endpoint_ports.items():
        lines.append(
            f"  - {{name: {site}-llama, model: llama-3.1-8b, site: {site}, engine: vllm, "
            f'url: "http://127.0.0.1:{port}/v1", accelerator: H100}}'
        )
    lines.append("tenants:")
    lines += [
        f"  - {{name: {t}, default_data_class: internal, allowed_models: [{MODEL}]}}"
        for t in tenants
    ]
    lines += ["policies:", "  - {name: open, data_classes: [public, internal]}", ""]
    return "\n".join(lines)


def start_emulator(
    procs: Processes, fabric: Path, ports: Iterable[int], timing: str = "model"
) -> None:
    """One emulator process serving every loopback endpoint of ``fabric``."""
    argv = [PYTHON, "-m", "isthmus.engines.emulator", "--fabric", str(fabric), "--timing", timing]
    procs.start("emulator", argv)
    wanted = list(ports)

    def listening() -> bool:
        procs.require_alive(["emulator"])
        return all(_port_open(p) for p in wanted)

    wait_until(listening, f"the emulated endpoints on ports {wanted}", 30)


@dataclass(frozen=True)
class GatewayProcess:
    gateway_id: str
    site: str
    port: int
    state_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def audit_db(self) -> Path:
        return self.state_dir / AUDIT_DB


def start_gateway(
    procs: Processes,
    *,
    gateway_id: str,
    site: str,
    fabric: Path,
    nats_url: str,
    namespace: str,
    trusted_key: Path,
    state_dir: Path,
    control: ControlPlaneProcess | None = None,
    operator_token: str | None = None,
    redis_url: str | None = None,
    guard: bool = True,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> GatewayProcess:
    """``isthmus gateway`` following the control plane; returns once ``/health`` answers
    (unless ``wait`` is false: then call ``wait_for_gateways``)."""
    port = free_port()
    argv = [
        PYTHON, "-m", "isthmus.cli.main", "gateway", "--site", site, "-f", str(fabric),
        "--port", str(port), "--no-log-decisions", "--gateway-id", gateway_id,
        "--nats", nats_url, "--namespace", namespace, "--trusted-key", str(trusted_key),
        "--state-dir", str(state_dir),
    ]  # fmt: skip
    argv.append("--guard" if guard else "--no-guard")
    if control is not None:
        argv += ["--control", control.url]
    if redis_url is not None:
        argv += ["--redis", redis_url]
    child_env = dict(env or {})
    if operator_token is not None:
        child_env["ISTHMUS_CONTROL_TOKEN"] = operator_token
    procs.start(gateway_id, argv, child_env)
    gateway = GatewayProcess(gateway_id, site, port, state_dir)
    if wait:
        wait_for_gateways(procs, [gateway])
    return gateway


def wait_for_gateways(
    procs: Processes, gateways: Iterable[GatewayProcess], timeout_s: float = 60.0
) -> None:
    waiting = list(gateways)

    def healthy() -> bool:
        procs.require_alive(g.gateway_id for g in waiting)
        for gateway in list(waiting):
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                waiting.remove(gateway)
        return not waiting

    wait_until(healthy, "gateways answering /health", timeout_s, every_s=0.1)


# -- a gateway's local audit log -----------------------------------------------------------


def local_audit(gateway: GatewayProcess) -> list[tuple[int, str]]:
    """(seq, record_hash) of every record in the gateway's own audit log, in order."""
    engine = create_engine(f"sqlite:///{gateway.audit_db}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(audit_table.c.seq, audit_table.c.record_hash).order_by(audit_table.c.seq)
            ).all()
    finally:
        engine.dispose()
    return [(int(seq), str(digest)) for seq, digest in rows]


def outbox_pending(gateway: GatewayProcess) -> int:
    """Records in the gateway's audit log after its shipping cursor (not yet acknowledged)."""
    engine = create_engine(f"sqlite:///{gateway.audit_db}")
    try:
        with engine.connect() as connection:
            head = connection.execute(select(func.max(audit_table.c.seq))).scalar() or 0
            acked = connection.execute(select(cursor_table.c.acked_seq)).scalar() or 0
    finally:
        engine.dispose()
    return int(head) - int(acked)
