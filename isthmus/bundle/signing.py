"""Sign and verify policy bundles with Ed25519.

A signed bundle is one JSON document::

    {"format": "isthmus-policy-bundle/1",
     "bundle": {"version": 7, "created_at": "...Z", "content_sha256": "...", "content": {...}},
     "signature": {"algorithm": "ed25519", "key_id": "<16 hex>", "value": "<base64>"}}

The signature covers the canonical JSON of ``bundle`` (``isthmus.bundle.canonical``), which
includes ``content_sha256``.

Invariant: ``verify_bundle`` returns a ``PolicyBundle`` only if every check passes, in this
order, and otherwise raises ``BundleRejected`` whose ``code`` and message name the first
check that failed: ``malformed`` (not a bundle document), ``unsigned``, ``tampered`` (content
does not match its hash), ``unknown_key`` (signed by a key not trusted here), ``bad_signature``,
``invalid`` (content does not validate), ``stale`` (version not newer than the one in force).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from isthmus.bundle.canonical import canonical_json, sha256_hex
from isthmus.bundle.model import PolicyBundle

__all__ = [
    "FORMAT",
    "BundleRejected",
    "RejectionCode",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_bundle",
    "verify_bundle",
    "write_keypair",
]

FORMAT = "isthmus-policy-bundle/1"
RejectionCode = Literal[
    "malformed", "unsigned", "tampered", "unknown_key", "bad_signature", "invalid", "stale"
]


class BundleRejected(Exception):
    """A bundle that must not be enforced, and why (``code`` is stable, ``str`` is for people)."""

    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code: RejectionCode = code


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def write_keypair(private_key: Ed25519PrivateKey, private_path: Path, public_path: Path) -> None:
    """PKCS#8 PEM (mode 0600) and SubjectPublicKeyInfo PEM."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(pem)
    public_path.write_bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return key


def _bundle_json(bundle: PolicyBundle) -> dict[str, Any]:
    return {
        "version": bundle.version,
        "created_at": bundle.created_at,
        "content_sha256": bundle.content_sha256,
        "content": bundle.content_json(),
    }


def sign_bundle(bundle: PolicyBundle, private_key: Ed25519PrivateKey) -> bytes:
    """The signed bundle document (UTF-8 JSON, indented for people; canonical where it counts)."""
    body = _bundle_json(bundle)
    signature = private_key.sign(canonical_json(body))
    document = {
        "format": FORMAT,
        "bundle": body,
        "signature": {
            "algorithm": "ed25519",
            "key_id": key_id(private_key.public_key()),
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def verify_bundle(
    raw: bytes,
    trusted: Iterable[Ed25519PublicKey],
    *,
    current_version: int | None = None,
) -> PolicyBundle:
    """The bundle in ``raw`` if it passes every check (see the module invariant)."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleRejected("malformed", f"not a JSON document: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleRejected("malformed", f"not a policy bundle (expected format {FORMAT!r})")
    body = document.get("bundle")
    if not isinstance(body, dict) or not isinstance(body.get("content"), dict):
        raise BundleRejected("malformed", "the document has no 'bundle' with 'content'")
    signature = document.get("signature")
    if not isinstance(signature, dict) or not signature.get("value"):
        raise BundleRejected("unsigned", "the bundle is not signed; refusing to enforce it")
    if sha256_hex(body["content"]) != body.get("content_sha256"):
        raise BundleRejected(
            "tampered",
            "the content does not match its content_sha256: it was altered after signing",
        )
    keys = {key_id(k): k for k in trusted}
    signer = signature.get("key_id")
    if signature.get("algorithm") != "ed25519" or signer not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise BundleRejected(
            "unknown_key", f"signed by key {signer!r}, which is not trusted here (trusted: {known})"
        )
    try:
        value = base64.b64decode(str(signature["value"]), validate=True)
        keys[str(signer)].verify(value, canonical_json(body))
    except (InvalidSignature, binascii.Error, ValueError):
        raise BundleRejected(
            "bad_signature",
            f"the signature does not verify with key {signer}: the bundle was altered after "
            "signing or signed with another key",
        ) from None
    try:
        bundle = PolicyBundle.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BundleRejected(
            "invalid", f"the content does not validate: {where}: {first['msg']}"
        ) from None
    if current_version is not None and bundle.version <= current_version:
        raise BundleRejected(
            "stale",
            f"bundle version {bundle.version} is not newer than the version in force "
            f"({current_version}); refusing to roll back",
        )
    return bundle
