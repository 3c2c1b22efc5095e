"""``isthmus policy keygen|sign|verify|show``: build, sign and check policy bundles.

These are plain functions for the existing ``policy`` sub-app (``register(policy_app)``).
Exit codes: 0 good; 1 a file with located problems; 2 a usage problem; 3 a bundle refused
(the reason is printed, and its stable code is in ``--json`` output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from isthmus.bundle import (
    BundleRejected,
    PolicyBundle,
    build_bundle,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
    verify_bundle,
    write_keypair,
)
from isthmus.cli.output import CliFailure, console, friendly, load, print_json
from isthmus.fabric.yamlsafe import load_yaml_file
from isthmus.guard.policy import GuardPolicy, load_guard_policy

__all__ = ["keygen", "register", "show", "sign", "verify"]

JsonFlag = Annotated[bool, typer.Option("--json", help="machine-readable output")]
PublicKeys = Annotated[
    list[Path],
    typer.Option("--pub", "-p", help="trusted public key (PEM); repeat for several"),
]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliFailure(f"cannot read {path}: {exc.strerror}") from None


def _public_keys(paths: list[Path]) -> list[Any]:
    if not paths:
        raise CliFailure("give at least one trusted public key with --pub")
    keys = []
    for path in paths:
        _read(path)
        try:
            keys.append(load_public_key(path))
        except ValueError as exc:
            raise CliFailure(f"{path}: not an Ed25519 public key in PEM ({exc})") from None
    return keys


@friendly
def keygen(
    out_dir: Annotated[Path, typer.Argument(help="directory for the key pair")] = Path("."),
    name: Annotated[str, typer.Option("--name", help="file name stem")] = "policy-signing",
) -> None:
    """Create an Ed25519 signing key pair: NAME.key (private, mode 0600) and NAME.pub."""
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    if private_path.exists() or public_path.exists():
        raise CliFailure(f"{private_path} or {public_path} exists; refusing to overwrite a key")
    if not out_dir.is_dir():
        raise CliFailure(f"directory {out_dir} does not exist")
    key = generate_keypair()
    write_keypair(key, private_path, public_path)
    console().print(
        f"wrote {escape(str(private_path))} (keep it secret) and {escape(str(public_path))}; "
        f"key id {key_id(key.public_key())}",
        highlight=False,
    )


@friendly
def sign(
    key: Annotated[Path, typer.Option("--key", "-k", help="private signing key (PEM)")],
    version: Annotated[int, typer.Option("--version", min=1, help="bundle version (must grow)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="where to write the signed bundle")],
    fabric_path: Annotated[
        Path | None,
        typer.Option("--fabric", "-f", help="fabric YAML: its policies, groups, classes, tenants"),
    ] = None,
    guard_path: Annotated[
        Path | None, typer.Option("--guard", "-g", help="guard policy YAML (default: built-in)")
    ] = None,
    routing_path: Annotated[
        Path | None, typer.Option("--routing", help="routing settings (YAML mapping)")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build a policy bundle (sovereignty, tenants, guard, routing) and sign it."""
    fabric = load(fabric_path)
    guard = load_guard_policy(guard_path) if guard_path is not None else GuardPolicy()
    routing: dict[str, Any] = {}
    if routing_path is not None:
        data, _ = load_yaml_file(routing_path)
        if data is not None and not isinstance(data, dict):
            raise CliFailure(f"{routing_path}: routing settings must be a mapping")
        routing = data or {}
    _read(key)
    try:
        private_key = load_private_key(key)
    except ValueError as exc:
        raise CliFailure(f"{key}: not an Ed25519 private key in PEM ({exc})") from None
    bundle = build_bundle(version=version, fabric=fabric.spec, guard=guard, routing=routing)
    raw = sign_bundle(bundle, private_key)
    out.write_bytes(raw)
    summary = _summary(bundle, key_id(private_key.public_key()))
    if as_json:
        print_json({"written": str(out), **summary})
        return
    console().print(
        f"signed bundle v{bundle.version} ({bundle.content_sha256[:12]}…) with key "
        f"{summary['key_id']} → {escape(str(out))}",
        highlight=False,
    )


@friendly
def verify(
    bundle_path: Annotated[Path, typer.Argument(help="signed bundle (JSON)")],
    pub: PublicKeys = [],  # noqa: B006 — Typer reads the default, never mutates it
    current_version: Annotated[
        int | None,
        typer.Option("--current-version", help="version in force: refuse this one unless newer"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a bundle's signature, hash, schema and version; exit 3 with the reason if refused."""
    keys = _public_keys(pub)
    raw = _read(bundle_path)
    try:
        bundle = verify_bundle(raw, keys, current_version=current_version)
    except BundleRejected as exc:
        if as_json:
            print_json({"valid": False, "code": exc.code, "reason": str(exc)})
        else:
            console().print(
                f"[bold red]refused[/] ({exc.code}): {escape(str(exc))}", highlight=False
            )
        raise typer.Exit(3) from None
    signer = json.loads(raw)["signature"]["key_id"]
    if as_json:
        print_json({"valid": True, **_summary(bundle, signer)})
        return
    console().print(
        f"[bold green]valid[/]: bundle v{bundle.version}, created {bundle.created_at}, "
        f"signed by {signer}, content sha256 {bundle.content_sha256}",
        highlight=False,
    )


@friendly
def show(
    bundle_path: Annotated[Path, typer.Argument(help="signed bundle (JSON)")],
    pub: PublicKeys = [],  # noqa: B006
    as_json: JsonFlag = False,
) -> None:
    """Summarise a bundle; with --pub, verify it first (refused: exit 3)."""
    raw = _read(bundle_path)
    try:
        if pub:
            bundle = verify_bundle(raw, _public_keys(pub))
        else:
            document = json.loads(raw)
            bundle = PolicyBundle.model_validate(document["bundle"])
        signer = str(json.loads(raw).get("signature", {}).get("key_id", "unsigned"))
    except BundleRejected as exc:
        console().print(f"[bold red]refused[/] ({exc.code}): {escape(str(exc))}", highlight=False)
        raise typer.Exit(3) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise CliFailure(f"{bundle_path}: not a policy bundle ({type(exc).__name__})") from None
    summary = _summary(bundle, signer)
    summary["verified"] = bool(pub)
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"policy bundle v{bundle.version}", show_edge=False, show_header=False)
    table.add_column("")
    table.add_column("")
    for label, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        table.add_row(label, escape(str(value)))
    console().print(table)


def _summary(bundle: PolicyBundle, signer: str) -> dict[str, Any]:
    content = bundle.content
    return {
        "version": bundle.version,
        "created_at": bundle.created_at,
        "content_sha256": bundle.content_sha256,
        "key_id": signer,
        "sovereignty_rules": [rule.name for rule in content.sovereignty.policies],
        "tenants": [tenant.name for tenant in content.sovereignty.tenants],
        "data_classes": [c.name for c in content.sovereignty.data_classes],
        "guard_enabled": content.guard.enabled,
        "guard_actions": dict(content.guard.actions),
        "guard_tenant_overrides": sorted(content.guard.tenants),
        "routing_settings": sorted(content.routing),
    }


def register(policy_app: typer.Typer) -> None:
    """Add ``keygen``, ``sign``, ``verify`` and ``show`` to the ``policy`` sub-app."""
    policy_app.command("keygen")(keygen)
    policy_app.command("sign")(sign)
    policy_app.command("verify")(verify)
    policy_app.command("show")(show)
