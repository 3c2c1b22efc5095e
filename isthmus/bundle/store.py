"""Keep the last good bundle on disk, so a gateway cut off from the control plane still enforces.

Invariants:

- Only a bundle that passed ``verify_bundle`` (signature, hash, schema, version newer than the
  one in force) is written, and it is written atomically: the bytes go to a temporary file in
  the same directory, are flushed and fsynced, then ``os.replace`` puts them in place. A crash
  leaves either the old file or the new one, never a mix.
- What is read back from disk is verified again (with the trusted keys) before it is used: a
  file altered on disk is refused like any tampered bundle, never enforced.
- A refused bundle changes nothing: the bundle in force and the file on disk stay as they were.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from isthmus.bundle.model import PolicyBundle
from isthmus.bundle.signing import BundleRejected, verify_bundle

__all__ = ["BundleStore", "NoBundle"]

LAST_GOOD = "last-good-bundle.json"


class NoBundle(Exception):
    """Neither the control plane nor the disk could provide a bundle to enforce."""


class BundleStore:
    def __init__(self, directory: Path, trusted: Iterable[Ed25519PublicKey]) -> None:
        self.directory = directory
        self.trusted = tuple(trusted)
        self.current: PolicyBundle | None = None
        self.last_rejection: BundleRejected | None = None

    @property
    def path(self) -> Path:
        return self.directory / LAST_GOOD

    def accept(self, raw: bytes) -> PolicyBundle:
        """Verify ``raw`` against the bundle in force; if good, persist it and put it in force."""
        bundle = verify_bundle(
            raw,
            self.trusted,
            current_version=None if self.current is None else self.current.version,
        )
        self._write(raw)
        self.current = bundle
        return bundle

    def load_last_good(self) -> PolicyBundle | None:
        """The bundle on disk (verified again), or ``None`` if there is none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        bundle = verify_bundle(raw, self.trusted)
        self.current = bundle
        return bundle

    def start(self, fetch: Callable[[], bytes] | None = None) -> PolicyBundle:
        """At gateway start: the last good bundle from disk, then a newer one from the control
        plane if it answers (``fetch`` raising ``OSError`` means unreachable). A rejected or
        missing control-plane bundle leaves the last good one in force (the rejection is kept
        in ``last_rejection`` for the caller to log); with neither, ``NoBundle``."""
        self.last_rejection = None
        try:
            self.load_last_good()
        except BundleRejected as exc:
            self.last_rejection = exc  # altered on disk: never enforced
        if fetch is not None:
            try:
                raw: bytes | None = fetch()
            except OSError:
                raw = None
            if raw is not None:
                try:
                    self.accept(raw)
                except BundleRejected as exc:
                    self.last_rejection = exc
        if self.current is None:
            why = f" ({self.last_rejection})" if self.last_rejection else ""
            raise NoBundle(
                f"no policy bundle to enforce: none accepted from the control plane and no good "
                f"one at {self.path}{why}"
            )
        return self.current

    def _write(self, raw: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=".bundle-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(raw)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable
            directory = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
