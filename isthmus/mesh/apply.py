"""Bundles from any source — NATS, the control plane's HTTP API, the disk — into force on a gateway.

Every bundle goes through the same steps, in this order: verify (signature, hash, schema, and a
version newer than the one in force), prepare against this gateway's fabric
(``isthmus.gateway.reconfigure``), persist as the last good bundle (``BundleStore``), swap in.
So the file on disk is always a bundle this gateway can enforce, and a refused bundle changes
nothing: the policy in force and the file stay as they were, and the refusal is logged and kept
for the status report. Verifying and preparing run in a worker thread; only the swap runs on the
event loop, so applying a bundle does not stall requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from isthmus.bundle import BundleRejected, BundleStore, PolicyBundle, verify_bundle
from isthmus.gateway.app import Gateway
from isthmus.gateway.reconfigure import BundleNotApplicable, PreparedPolicy, install, prepare_bundle

__all__ = ["Applied", "BundleApplier"]

log = logging.getLogger("isthmus.mesh")


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    sha256: str
    applied_at: float  # unix seconds
    source: str


class BundleApplier:
    """Verifies, persists and installs bundles on one gateway; remembers what is in force."""

    def __init__(
        self, gateway: Gateway, store: BundleStore, clock: Callable[[], float] = time.time
    ) -> None:
        self.gateway = gateway
        self.store = store
        self.clock = clock
        self.applied: Applied | None = None
        self.last_refusal: str | None = None
        self._lock = asyncio.Lock()

    def _check(self, raw: bytes, source: str) -> PolicyBundle | None:
        """The bundle in ``raw`` if it should replace the one in force; ``None`` if it is the
        one in force already; raises ``BundleRejected`` or ``BundleNotApplicable``."""
        bundle = verify_bundle(raw, self.store.trusted)
        current = self.store.current
        if current is not None:
            if bundle.version == current.version and bundle.content_sha256 == (
                current.content_sha256
            ):
                return None  # the same bundle again (a reconnect re-reads the newest)
            if bundle.version <= current.version:
                raise BundleRejected(
                    "stale",
                    f"bundle version {bundle.version} from {source} is not newer than the "
                    f"version in force ({current.version}); refusing to roll back",
                )
        return bundle

    def _prepare(self, raw: bytes, source: str) -> PreparedPolicy | None:
        bundle = self._check(raw, source)
        if bundle is None:
            return None
        prepared = prepare_bundle(self.gateway, bundle)
        self.store.accept(raw)  # verifies once more against the version in force, then persists
        return prepared

    def _install(self, prepared: PreparedPolicy, source: str) -> Applied:
        install(self.gateway, prepared)
        bundle = prepared.bundle
        self.applied = Applied(bundle.version, bundle.content_sha256, self.clock(), source)
        self.last_refusal = None
        log.info(
            "policy bundle v%d (%s…) from %s in force: %d rules, %d tenants",
            bundle.version,
            bundle.content_sha256[:12],
            source,
            len(bundle.content.sovereignty.policies),
            len(bundle.content.sovereignty.tenants),
        )
        return self.applied

    def _refused(self, source: str, reason: str) -> None:
        self.last_refusal = f"{source}: {reason}"
        log.warning("policy bundle from %s refused; the one in force stays: %s", source, reason)

    async def offer(self, raw: bytes, source: str) -> Applied | None:
        """Put ``raw`` in force if it passes every check; ``None`` if refused or already in
        force. Never raises for a bad bundle: a bundle is data from the network."""
        async with self._lock:
            try:
                prepared = await asyncio.to_thread(self._prepare, raw, source)
            except BundleRejected as exc:
                self._refused(source, f"{exc.code}: {exc}")
                return None
            except BundleNotApplicable as exc:
                self._refused(source, f"not applicable: {exc}")
                return None
            except Exception as exc:  # e.g. the disk is full: refused, and the status says why
                self._refused(source, f"could not be kept on disk or prepared: {exc}")
                return None
            if prepared is None:
                return None
            return self._install(prepared, source)

    def start_from_disk(self) -> Applied | None:
        """At start, before serving: enforce the last good bundle on disk if there is one (and
        it still verifies and fits), else keep the fabric file's policy. Says which, in a log
        line."""
        try:
            bundle = self.store.load_last_good()
        except BundleRejected as exc:
            self.store.current = None
            self._refused(f"disk ({self.store.path})", f"{exc.code}: {exc}")
            bundle = None
        if bundle is None:
            log.warning(
                "no good policy bundle at %s: enforcing the policy of the fabric file until the "
                "control plane sends one",
                self.store.path,
            )
            return None
        try:
            prepared = prepare_bundle(self.gateway, bundle)
        except BundleNotApplicable as exc:
            self.store.current = None
            self._refused(f"disk ({self.store.path})", f"not applicable: {exc}")
            log.warning("enforcing the policy of the fabric file instead")
            return None
        return self._install(prepared, f"disk ({self.store.path})")
