"""The control plane's Ed25519 signing key on disk: loaded, or created (mode 0600) if missing."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from isthmus.bundle import generate_keypair, load_private_key, write_keypair

__all__ = ["load_or_create_signing_key", "public_key_path"]


def public_key_path(private_path: Path) -> Path:
    """Where the public half is written: ``control.key`` -> ``control.key.pub``."""
    return private_path.with_name(private_path.name + ".pub")


def load_or_create_signing_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The key at ``path`` and whether it was just created (with its public half beside it).

    Raises ``ValueError`` with a message for people when the file is not an Ed25519 key.
    """
    if path.exists():
        try:
            return load_private_key(path), False
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path} is not an Ed25519 private key in PEM: {exc}") from None
    if not path.parent.is_dir():
        raise ValueError(f"cannot create {path}: directory {path.parent} does not exist")
    key = generate_keypair()
    write_keypair(key, path, public_key_path(path))
    return key, True
