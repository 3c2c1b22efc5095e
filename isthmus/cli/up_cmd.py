"""``isthmus up``: a whole demo fabric on this machine — emulated engines and a gateway.

Every self-hosted loopback endpoint of the fabric gets an emulated engine on its declared port,
with the network delay of the path from the gateway's site to the endpoint's site injected (half
the RTT each way), so decisions trade real-looking latency, cache and cost. The gateway listens
on ``--port`` and prints how to call it with curl and the OpenAI client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.panel import Panel

from isthmus.cli.fabric_cmds import FabricOption
from isthmus.cli.output import CliFailure, console, friendly, load
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.schema import Endpoint
from isthmus.gateway.tenants import hash_key

if TYPE_CHECKING:
    from isthmus.audit import AuditLog
    from isthmus.gateway import GatewayConfig
    from isthmus.guard import GuardLike
    from isthmus.mesh.attach import MeshOptions
    from isthmus.mesh.shared_state import SharedState

__all__ = ["DEMO_KEYS", "demo_keys", "register"]

DEFAULT_SITE = "equinix-fr5"
DEMO_KEYS = (
    "sk-isthmus-demo-rheinbank",
    "sk-isthmus-demo-lakeshore",
    "sk-isthmus-demo-bund",
    "sk-isthmus-demo-meridian",
    "sk-isthmus-demo-meridian-batch",
)


def demo_keys(fabric: Fabric) -> dict[str, str]:
    """The published demo keys this fabric accepts, by tenant."""
    digests = {key.sha256: tenant.name for tenant in fabric.spec.tenants for key in tenant.api_keys}
    found: dict[str, str] = {}
    for key in DEMO_KEYS:
        tenant = digests.get(hash_key(key))
        if tenant is not None and tenant not in found:
            found[tenant] = key
    return found


def _delays(fabric: Fabric, site: str) -> dict[str, float]:
    from isthmus.network.paths import Network

    network = Network(fabric)
    return {
        endpoint.name: network.rtt_ms(site, endpoint.site) / 2.0
        for endpoint in fabric.spec.endpoints
    }


def guard_and_audit(
    enabled: bool, policy_path: Path | None, audit_db: str | None
) -> tuple[GuardLike | None, AuditLog | None]:
    """The guard (default policy, or one from a file) and the audit log, as options ask."""
    from isthmus.guard import Guard, GuardPolicy, load_guard_policy

    guard = None
    if enabled:
        guard = Guard(load_guard_policy(policy_path) if policy_path else GuardPolicy())
    audit = None
    if audit_db is not None:
        from isthmus.audit import AuditLog, key_from_env
        from isthmus.store.engine import connect

        try:
            key = key_from_env()
        except (KeyError, ValueError) as exc:
            raise CliFailure(
                f"--audit-db needs the audit key in $ISTHMUS_AUDIT_KEY ({exc})"
            ) from None
        audit = AuditLog(connect(audit_db), key)
    return guard, audit


GuardOption = Annotated[
    bool, typer.Option("--guard/--no-guard", help="inspect prompts and responses")
]
GuardPolicyOption = Annotated[Path | None, typer.Option("--guard-policy", help="guard policy YAML")]
AuditOption = Annotated[
    str | None, typer.Option("--audit-db", help="record guard verdicts (key in $ISTHMUS_AUDIT_KEY)")
]


async def _serve(
    fabric: Fabric,
    site: str,
    host: str,
    port: int,
    timing: str,
    delay: bool,
    guard: GuardLike | None = None,
    audit: AuditLog | None = None,
) -> None:
    from isthmus.engines.emulator.fleet import run_fleet, specs_from_fabric
    from isthmus.gateway import Gateway, GatewayConfig
    from isthmus.gateway.server import start_gateway

    delays = _delays(fabric, site) if delay else {}

    def one_way(endpoint: Endpoint) -> float:
        return delays.get(endpoint.name, 0.0)

    specs = specs_from_fabric(fabric, timing=timing, one_way_delay_ms=one_way)  # type: ignore[arg-type]
    out = console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        fleet_cm = run_fleet(specs)
        fleet = await fleet_cm.__aenter__()
    except OSError as exc:
        raise CliFailure(
            f"cannot start the emulated engines: {exc.strerror} (is another `isthmus up` running?)"
        ) from None
    try:
        try:
            gateway = Gateway(
                fabric,
                GatewayConfig(site=site, log_decisions=False),
                guard=guard,
                audit=audit,
            )
            served = await start_gateway(gateway, host, port)
        except OSError as exc:
            raise CliFailure(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        keys = demo_keys(fabric)
        key = next(iter(keys.values()), "<your key>")
        url = f"http://{host}:{port}"
        lines = [
            f"[bold]Isthmus gateway[/] at site [bold]{escape(site)}[/]: {url}/v1",
            f"{len(fleet)} emulated engines, {len(fabric.spec.endpoints)} endpoints, "
            f"{len(fabric.spec.sites)} sites; metrics at {url}/metrics",
            "",
            "[bold]curl[/]",
            f"  curl -s {url}/v1/chat/completions -H 'authorization: Bearer {key}' \\",
            "    -H 'content-type: application/json' -D - \\",
            '    -d \'{"model": "chat-small", "messages": [{"role": "user", "content": "Hello"}]}\'',
            "",
            "[bold]OpenAI client[/]",
            "  from openai import OpenAI",
            f'  client = OpenAI(base_url="{url}/v1", api_key="{key}")',
            '  client.chat.completions.create(model="chat-small", messages=[{"role": "user", "content": "Hello"}])',
            "",
            "[bold]Traffic[/] (another terminal): bin/isthmus demo traffic",
            "",
            "Demo keys: " + ", ".join(f"{tenant}={k}" for tenant, k in keys.items()),
        ]
        out.print(Panel("\n".join(lines), expand=False), highlight=False)
        out.print("[dim]Ctrl-C stops everything.[/]")
        await stop.wait()
        await served.stop()
    finally:
        await fleet_cm.__aexit__(None, None, None)


@friendly
def up(
    fabric_path: FabricOption = None,
    site: Annotated[str, typer.Option("--site", "-s", help="the gateway's site")] = DEFAULT_SITE,
    host: Annotated[
        str, typer.Option(help="address to listen on (loopback by default)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="gateway port")] = 8080,
    timing: Annotated[
        str, typer.Option(help="'model' (engine timing) or 'none' (instant)")
    ] = "model",
    delay: Annotated[bool, typer.Option(help="inject the fabric's network delay")] = True,
    guard: GuardOption = True,
    guard_policy: GuardPolicyOption = None,
    audit_db: AuditOption = None,
) -> None:
    """Start the demo: emulated engines for the fabric's endpoints and a gateway at a site."""
    fabric = load(fabric_path)
    guard_object, audit = guard_and_audit(guard, guard_policy, audit_db)
    if site not in fabric.sites:
        import difflib

        close = difflib.get_close_matches(site, list(fabric.sites), n=3)
        raise CliFailure(
            f"unknown site {site!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    if timing not in ("model", "none"):
        raise CliFailure(f"--timing must be 'model' or 'none'; found {timing!r}")
    asyncio.run(_serve(fabric, site, host, port, timing, delay, guard_object, audit))


async def _serve_gateway(
    fabric: Fabric,
    config: GatewayConfig,
    host: str,
    port: int,
    guard: GuardLike | None,
    audit: AuditLog | None,
    mesh: MeshOptions | None = None,
    shared: SharedState | None = None,
) -> None:
    from isthmus.gateway import Gateway
    from isthmus.gateway.server import start_gateway
    from isthmus.store.urls import redact_url

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(fabric, config, guard=guard, audit=audit, shared=shared)
    agent = None
    if mesh is not None:
        from isthmus.mesh.attach import attach_agent

        try:
            agent = attach_agent(gateway, mesh)
        except ValueError as exc:
            raise CliFailure(str(exc)) from None
        await agent.bootstrap()  # the last good bundle (or a newer one) before the first request
        if mesh.require_bundle and agent.applier.applied is None:
            # fail closed: not even listening (so not ready) until a verified bundle is in force
            console().print(
                "no verified policy bundle yet (--require-bundle): waiting for the control plane "
                "before serving",
                highlight=False,
            )
            agent.start()
            while agent.applier.applied is None and not stop.is_set():
                await asyncio.sleep(0.2)
            if stop.is_set():
                await agent.stop()
                return
    try:
        served = await start_gateway(gateway, host, port, log_level="info")
    except OSError as exc:
        raise CliFailure(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    console().print(
        f"Isthmus gateway at site [bold]{escape(config.site)}[/]: http://{host}:{port}/v1 "
        f"({len(fabric.spec.endpoints)} endpoints; metrics at /metrics)",
        highlight=False,
    )
    if agent is not None and mesh is not None:
        applied = agent.applier.applied
        policy = f"policy bundle v{applied.version}" if applied else "the fabric file's policy"
        links = [f"NATS {redact_url(mesh.nats_url)}"] if mesh.nats_url else []
        links += [f"the control plane at {mesh.control_url}"] if mesh.control_url else []
        console().print(
            f"gateway id [bold]{escape(agent.gateway_id)}[/], enforcing {escape(policy)}; "
            + (f"following {escape(' and '.join(links))}" if links else "no control plane given"),
            highlight=False,
        )
        agent.start()  # (a no-op if it already runs)
    try:
        await stop.wait()
    finally:
        await served.stop()  # drain the requests in flight first: their verdicts get audited
        if agent is not None:
            await agent.stop()  # then ship what the outbox holds, while NATS is there


@friendly
def gateway(
    site: Annotated[str, typer.Option("--site", "-s", help="the gateway's site")],
    fabric_path: FabricOption = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8080,
    router: Annotated[str, typer.Option(help="routing policy")] = "isthmus",
    tracing: Annotated[
        bool, typer.Option(help="OpenTelemetry spans (needs the otel extra)")
    ] = False,
    log_decisions: Annotated[
        bool, typer.Option(help="one JSON line per decision on stderr")
    ] = True,
    guard: GuardOption = True,
    guard_policy: GuardPolicyOption = None,
    audit_db: AuditOption = None,
    gateway_id: Annotated[
        str | None,
        typer.Option(
            "--gateway-id", help="this gateway's name to the control plane (default: site)"
        ),
    ] = None,
    nats: Annotated[
        str | None,
        typer.Option(
            "--nats", help="NATS URL: bundles in, status and audit out", envvar="ISTHMUS_NATS_URL"
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option("--namespace", help="the deployment's NATS namespace")
    ] = "isthmus",
    trusted_key: Annotated[
        list[Path] | None,
        typer.Option("--trusted-key", help="public key (PEM) bundles must be signed with; repeat"),
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="keeps the last good bundle and the audit outbox"),
    ] = None,
    control: Annotated[
        str | None,
        typer.Option(
            "--control",
            help="control plane URL: the newest bundle over HTTP (token in $ISTHMUS_CONTROL_TOKEN)",
        ),
    ] = None,
    require_bundle: Annotated[
        bool,
        typer.Option(
            "--require-bundle/--no-require-bundle",
            help="with a control plane: serve nothing until a verified policy bundle is in force "
            "(default: the fabric file's policy until one arrives)",
        ),
    ] = False,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Redis URL: the site's gateway replicas share rate limits, budgets, endpoint "
            "load and the prefix index (default: this gateway alone)",
        ),
    ] = None,
) -> None:
    """Run one gateway at a site, against the fabric's real upstream endpoints.

    With --nats or --control (and --trusted-key, --state-dir) it follows a control plane:
    it enforces signed policy bundles, reports its status and ships its audit records; cut off,
    it keeps enforcing its last good bundle. With --redis, the replicas of one site share their
    limits and load, and route as one.
    """
    from isthmus.gateway import GatewayConfig
    from isthmus.routing import ROUTERS

    fabric = load(fabric_path)
    if site not in fabric.sites:
        raise CliFailure(f"unknown site {site!r}")
    if router not in ROUTERS:
        raise CliFailure(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    config = GatewayConfig(site=site, router=router, tracing=tracing, log_decisions=log_decisions)
    mesh = _mesh_options(site, gateway_id, nats, namespace, trusted_key, state_dir, control)
    if require_bundle:
        if mesh is None:
            raise CliFailure(
                "--require-bundle needs a control plane to follow (--nats or --control)"
            )
        mesh = dataclasses.replace(mesh, require_bundle=True)
    implied_audit = mesh is not None and guard and audit_db is None
    if mesh is not None and implied_audit:
        mesh.state_dir.mkdir(parents=True, exist_ok=True)
        audit_db = mesh.audit_url  # the audit log is the outbox shipped to the control plane
    try:
        guard_object, audit = guard_and_audit(guard, guard_policy, audit_db)
    except CliFailure as exc:
        if not implied_audit:
            raise
        raise CliFailure(
            f"{exc}; with --state-dir the gateway records guard verdicts in {audit_db} and ships "
            "them to the control plane (or run with --no-guard)"
        ) from None
    if redis_url is not None and mesh is not None and gateway_id is None:
        raise CliFailure(
            "replicas that share a site's state (--redis) and follow a control plane need a "
            "distinct --gateway-id each: audit records are numbered per gateway id"
        )
    shared = None
    if redis_url is not None:
        from isthmus.mesh.shared_state import shared_state_from_url

        try:
            shared = shared_state_from_url(redis_url, site, namespace)
        except ValueError as exc:
            raise CliFailure(f"--redis: {exc}") from None
    if mesh is not None:
        from isthmus.mesh.attach import log_to_stderr

        log_to_stderr()
    asyncio.run(_serve_gateway(fabric, config, host, port, guard_object, audit, mesh, shared))


def _mesh_options(
    site: str,
    gateway_id: str | None,
    nats: str | None,
    namespace: str,
    trusted_key: list[Path] | None,
    state_dir: Path | None,
    control: str | None,
) -> MeshOptions | None:
    """The control-plane link the options ask for, or ``None`` (a gateway on its own)."""
    from isthmus.mesh.attach import MeshOptions

    asked = nats or control or trusted_key or state_dir or gateway_id
    if not asked:
        return None
    if state_dir is None:
        raise CliFailure(
            "following a control plane needs --state-dir DIR, where the gateway keeps its last "
            "good bundle (enforced when the control plane is unreachable) and its audit outbox"
        )
    options = MeshOptions(
        gateway_id=gateway_id or site,
        state_dir=state_dir,
        trusted_keys=tuple(trusted_key or ()),
        nats_url=nats,
        namespace=namespace,
        control_url=control,
        control_token=os.environ.get("ISTHMUS_CONTROL_TOKEN") or None,
    )
    try:
        options.check()
    except ValueError as exc:
        raise CliFailure(str(exc)) from None
    return options


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(gateway)
