"""Central policy, distributed enforcement: versioned, signed policy bundles.

The control plane builds a ``PolicyBundle`` (guard policy, the fabric's sovereignty rules and
tenants, routing settings), signs it with Ed25519 (``sign_bundle``) and publishes the bytes.
Each gateway verifies what it receives (``verify_bundle``: unsigned, tampered, wrongly signed
and older bundles are refused with a reason) and keeps the last good one on disk
(``BundleStore``), which it loads at start when the control plane cannot be reached.
"""

from isthmus.bundle.canonical import canonical_json, sha256_hex
from isthmus.bundle.model import BundleContent, PolicyBundle, Sovereignty, build_bundle
from isthmus.bundle.signing import (
    FORMAT,
    BundleRejected,
    RejectionCode,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_bundle,
    verify_bundle,
    write_keypair,
)
from isthmus.bundle.store import BundleStore, NoBundle

__all__ = [
    "FORMAT",
    "BundleContent",
    "BundleRejected",
    "BundleStore",
    "NoBundle",
    "PolicyBundle",
    "RejectionCode",
    "Sovereignty",
    "build_bundle",
    "canonical_json",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sha256_hex",
    "sign_bundle",
    "verify_bundle",
    "write_keypair",
]
