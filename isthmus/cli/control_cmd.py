"""``isthmus control``: run the control plane's admin API (and its NATS side) with uvicorn.

Start-up is where configuration mistakes surface, so each is reported in one line: a database
that cannot be opened, a signing key that is not one, a port in use. A signing key that does
not exist yet is created (and where is printed); with no admin token given or stored, one is
generated and printed once.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.markup import escape

from isthmus.cli.catalog_cmd import DbOption
from isthmus.cli.output import CliFailure, console, friendly
from isthmus.fabric.loader import load_fabric
from isthmus.mesh.protocol import DEFAULT_NAMESPACE, Names
from isthmus.store import StoreError
from isthmus.store.urls import default_db_path, redact_url

__all__ = ["control", "register"]


def _default_key_path() -> Path:
    return default_db_path().with_name("control-signing.key")


@friendly
def control(
    db: DbOption = None,
    nats_url: Annotated[
        str | None,
        typer.Option(
            "--nats",
            envvar="ISTHMUS_NATS_URL",
            help="NATS URL, e.g. nats://127.0.0.1:4222 (default: no NATS; bundles are stored, "
            "not published)",
            show_default=False,
        ),
    ] = None,
    namespace: Annotated[
        str, typer.Option(help="prefix of the NATS streams, subjects and bucket")
    ] = DEFAULT_NAMESPACE,
    catalog: Annotated[str, typer.Option(help="the catalog that holds the fabric in force")] = (
        "fabric"
    ),
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port", min=0, max=65535)] = 8700,
    signing_key: Annotated[
        Path | None,
        typer.Option(
            "--signing-key",
            help="Ed25519 private key (PEM) that signs bundles; created if missing "
            "(default: control-signing.key beside the default database)",
            show_default=False,
        ),
    ] = None,
    admin_tokens: Annotated[
        list[str] | None,
        typer.Option(
            "--admin-token",
            envvar="ISTHMUS_ADMIN_TOKEN",
            help="admin bearer token (repeatable; replaces the stored ones)",
            show_default=False,
        ),
    ] = None,
    operator_tokens: Annotated[
        list[str] | None,
        typer.Option(
            "--operator-token",
            envvar="ISTHMUS_OPERATOR_TOKEN",
            help="operator bearer token (repeatable; replaces the stored ones)",
            show_default=False,
        ),
    ] = None,
    gateway_tokens: Annotated[
        list[str] | None,
        typer.Option(
            "--gateway-token",
            envvar="ISTHMUS_GATEWAY_TOKEN",
            help="token gateways use to fetch bundles over HTTP (--control); it reads nothing "
            "else (repeatable; replaces the stored ones)",
            show_default=False,
        ),
    ] = None,
    fabric_path: Annotated[
        Path | None,
        typer.Option(
            "--fabric",
            help="fabric YAML to seed the catalog with when it holds none yet",
            show_default=False,
        ),
    ] = None,
    status_interval: Annotated[
        float,
        typer.Option(
            "--status-interval",
            min=0.05,
            max=3600.0,
            help="seconds between copies of the gateways' status bucket into the database "
            "(what GET /v1/gateways shows)",
        ),
    ] = 1.0,
) -> None:
    """Run the control plane: admin REST API (OpenAPI at /openapi.json), bundles over NATS.

    isthmus control --db postgresql://postgres@127.0.0.1/isthmus --nats nats://127.0.0.1:4222
    """
    from isthmus.control import ControlConfig, ControlPlane, create_app
    from isthmus.control.signing import load_or_create_signing_key, public_key_path

    out = console()
    try:
        Names(namespace)
    except ValueError as exc:
        raise CliFailure(f"--namespace: {exc}") from None
    key_path = signing_key or _default_key_path()
    if signing_key is None:
        key_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        key, created = load_or_create_signing_key(key_path)
    except (ValueError, OSError) as exc:
        raise CliFailure(f"--signing-key: {exc}") from None
    if created:
        out.print(
            f"Created signing key {escape(str(key_path))} (public half: "
            f"{escape(str(public_key_path(key_path)))}); give the public key to the gateways.",
            highlight=False,
        )
    generated: str | None = None
    config = ControlConfig(
        db_url=db,
        nats_url=nats_url,
        namespace=namespace,
        catalog=catalog,
        admin_tokens=tuple(admin_tokens or ()),
        operator_tokens=tuple(operator_tokens or ()),
        gateway_tokens=tuple(gateway_tokens or ()),
        status_interval_s=status_interval,
    )
    try:
        plane = ControlPlane.open(config, key)
        if not admin_tokens and plane.db.token_count("admin") == 0:
            generated = "isa-" + secrets.token_urlsafe(32)
            plane.db.set_tokens("admin", [_digest(generated)])
        if fabric_path is not None:
            if plane.fabric() is None:
                fabric = load_fabric(fabric_path)
                result = plane.store.import_fabric(fabric, catalog)
                out.print(
                    f"Seeded catalog {catalog!r} with {escape(str(fabric_path))} "
                    f"(revision {result.revision})",
                    highlight=False,
                )
            else:
                out.print(
                    f"Catalog {catalog!r} already holds a fabric; --fabric not imported",
                    highlight=False,
                )
    except StoreError as exc:
        raise CliFailure(str(exc)) from None
    if generated is not None:
        out.print(
            f"No admin token was given or stored: generated one, shown this once:\n  {generated}",
            highlight=False,
        )
    out.print(
        f"Isthmus control plane: http://{host}:{port} (API docs /docs, OpenAPI /openapi.json); "
        f"database {escape(plane.store.url)}; NATS {escape(redact_url(nats_url) if nats_url else 'off')}; signing key "
        f"{plane.key_id}",
        highlight=False,
    )
    try:
        uvicorn.run(create_app(plane), host=host, port=port, log_level="info", access_log=False)
    finally:
        plane.close()


def _digest(token: str) -> str:
    from isthmus.gateway.tenants import hash_key

    return hash_key(token)


def register(app: typer.Typer) -> None:
    app.command("control")(control)
