"""Give a gateway its link to the control plane, from the options a person passes.

``MeshOptions`` is what ``isthmus gateway`` takes (gateway id, NATS, namespace, trusted keys,
state directory, control plane URL); ``check`` explains what is missing or wrong in words, and
``attach_agent`` builds the ``GatewayAgent``: the bundle store and the audit outbox in the state
directory, the trusted keys loaded from their files.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.bundle import BundleStore, load_public_key
from isthmus.gateway.app import Gateway
from isthmus.mesh.agent import AgentSettings, GatewayAgent
from isthmus.mesh.apply import BundleApplier
from isthmus.mesh.outbox import AuditOutbox
from isthmus.mesh.protocol import DEFAULT_NAMESPACE, GATEWAY_ID

__all__ = ["AUDIT_DB", "MeshOptions", "attach_agent", "log_to_stderr"]

AUDIT_DB = "audit.db"


@dataclass(frozen=True)
class MeshOptions:
    gateway_id: str
    state_dir: Path
    trusted_keys: tuple[Path, ...]
    nats_url: str | None = None
    namespace: str = DEFAULT_NAMESPACE
    control_url: str | None = None
    control_token: str | None = field(default=None, repr=False)
    require_bundle: bool = False  # serve nothing until a verified bundle is in force

    @property
    def audit_url(self) -> str:
        """Where the audit log (the outbox) lives, unless the operator names another."""
        return f"sqlite:///{self.state_dir / AUDIT_DB}"

    def check(self) -> None:
        """Raise ``ValueError`` saying what is wrong, for a person."""
        if not GATEWAY_ID.match(self.gateway_id):
            raise ValueError(
                f"--gateway-id {self.gateway_id!r} must be 1-64 letters, digits, '_' or '-' "
                "(it names the gateway's NATS subjects and its status entry)"
            )
        if not GATEWAY_ID.match(self.namespace):
            raise ValueError(
                f"--namespace {self.namespace!r} must be 1-64 letters, digits, '_' or '-'"
            )
        if not self.trusted_keys:
            raise ValueError(
                "give the control plane's public key with --trusted-key PATH: a gateway only "
                "enforces bundles signed by a key it trusts"
            )
        for url, option in ((self.nats_url, "--nats"), (self.control_url, "--control")):
            if url is not None and "://" not in url:
                example = "nats://host:4222" if option == "--nats" else "http://host:port"
                raise ValueError(f"{option} {url!r} is not a URL (like {example})")


def attach_agent(gateway: Gateway, options: MeshOptions) -> GatewayAgent:
    """The agent for ``gateway`` (not started; call ``bootstrap`` then ``start``).

    Raises ``ValueError`` for a trusted key that cannot be read, naming the file."""
    options.check()
    keys = []
    for path in options.trusted_keys:
        try:
            keys.append(load_public_key(path))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"--trusted-key {path}: not an Ed25519 public key in PEM ({exc})"
            ) from None
    options.state_dir.mkdir(parents=True, exist_ok=True)
    applier = BundleApplier(gateway, BundleStore(options.state_dir, keys))
    outbox = AuditOutbox(gateway.audit, options.gateway_id) if gateway.audit is not None else None
    settings = AgentSettings(
        gateway_id=options.gateway_id,
        nats_url=options.nats_url,
        namespace=options.namespace,
        control_url=options.control_url,
        control_token=options.control_token,
    )
    return GatewayAgent(gateway, settings, applier, outbox)


def log_to_stderr() -> None:
    """Show what the agent does (bundles applied or refused, NATS lost and back) on stderr."""
    logger = logging.getLogger("isthmus.mesh")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
