"""Put a verified policy bundle in force on a running gateway, in one step.

A bundle carries the sovereignty rules, data classes, jurisdiction groups, tenants, guard policy
and routing settings; the gateway's own fabric keeps the sites, links, models and endpoints.
``prepare_bundle`` builds everything the new policy needs — the merged fabric (cross-checked:
a tenant naming an unknown model or class is refused, never half-applied), the compiled policy,
the tenant directory, the guard and a routing view — without touching the gateway, so it may
run in a worker thread. ``install`` then replaces the gateway's references in one synchronous
step. The gateway runs on one event loop and every request reads these references between its
awaits, so each read (authentication, inspection, a routing decision) sees the whole old policy
or the whole new one, never a mix; a request in flight across the swap does its later steps
under the new policy. No compliant set computed under the old rules survives (the new view
starts with an empty memo).

What is kept: the fleet's live state (in-flight requests, prefix index, learned biases, circuit
state), the network model and the endpoints — a policy bundle does not change endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import JsonValue

from isthmus.bundle.model import PolicyBundle
from isthmus.fabric.catalog import Fabric
from isthmus.fabric.references import check_references
from isthmus.fabric.yamlsafe import SourceMap
from isthmus.gateway.tenants import TenantDirectory
from isthmus.guard import Guard, GuardLike, NullGuard
from isthmus.policy import compile_policy
from isthmus.routing import ROUTERS, Router, RoutingView

if TYPE_CHECKING:
    from isthmus.gateway.app import Gateway

__all__ = ["BundleNotApplicable", "PreparedPolicy", "apply_bundle", "install", "prepare_bundle"]

log = logging.getLogger("isthmus.gateway")

ROUTING_SETTINGS = ("router",)


class BundleNotApplicable(Exception):
    """A verified bundle that cannot be enforced by this gateway (it does not fit its fabric)."""


@dataclass(frozen=True)
class PreparedPolicy:
    """Everything a bundle changes on a gateway, built and ready to swap in."""

    bundle: PolicyBundle
    fabric: Fabric
    view: RoutingView
    directory: TenantDirectory
    guard: GuardLike
    router: Router


def _router(settings: Mapping[str, JsonValue], default: str) -> Router:
    unknown = sorted(set(settings) - set(ROUTING_SETTINGS))
    if unknown:  # newer control planes may send more; they must not block a policy update
        log.warning(
            "bundle routing settings %s are not known to this gateway; ignored (known: %s)",
            ", ".join(unknown),
            ", ".join(ROUTING_SETTINGS),
        )
    name = settings.get("router", default)
    if not isinstance(name, str) or name not in ROUTERS:
        raise BundleNotApplicable(
            f"routing.router {name!r} is not a router of this gateway; known: {', '.join(ROUTERS)}"
        )
    return ROUTERS[name]


def prepare_bundle(gateway: Gateway, bundle: PolicyBundle) -> PreparedPolicy:
    """Build the gateway's next policy from ``bundle``; the gateway itself is not changed."""
    where = f"bundle v{bundle.version}"
    sovereignty = bundle.content.sovereignty
    spec = gateway.fabric.spec.model_copy(
        update={
            "jurisdiction_groups": dict(sovereignty.jurisdiction_groups),
            "data_classes": sovereignty.data_classes,
            "policies": sovereignty.policies,
            "tenants": sovereignty.tenants,
        }
    )
    problems = check_references(spec, SourceMap(where))
    if problems:
        shown = "; ".join(f"{p.field}: {p.message}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BundleNotApplicable(
            f"{where} does not fit this gateway's fabric {gateway.fabric.name!r}: {shown}{more}"
        )
    fabric = Fabric(spec, gateway.fabric.sources, gateway.fabric.source_map)
    router = _router(bundle.content.routing, gateway.config.router)
    current = gateway.view
    view = RoutingView(
        fabric=fabric,
        policy=compile_policy(fabric),
        network=current.network,  # sites and links are the fabric's, unchanged by a bundle
        fleet=current.fleet,  # live state is kept: in flight, prefix index, learned biases
        ignore_sovereignty=current.ignore_sovereignty,
        round_robin_counter=current.round_robin_counter,
    )
    # an operator who turned the guard off (--no-guard) keeps it off; otherwise the bundle's
    # guard policy is the one enforced
    guard: GuardLike
    if isinstance(gateway.guard, NullGuard):
        guard = gateway.guard
    else:
        hasher = gateway.guard.hasher if isinstance(gateway.guard, Guard) else None
        guard = Guard(bundle.content.guard, hasher=hasher)
    return PreparedPolicy(bundle, fabric, view, TenantDirectory(fabric), guard, router)


def install(gateway: Gateway, prepared: PreparedPolicy) -> None:
    """Swap the prepared policy in. Synchronous on purpose: no request runs in between."""
    prepared.view.round_robin_counter = gateway.view.round_robin_counter
    gateway.fabric = prepared.fabric
    gateway.view = prepared.view
    gateway.directory = prepared.directory
    gateway.guard = prepared.guard
    gateway.router = prepared.router


def apply_bundle(gateway: Gateway, bundle: PolicyBundle) -> PreparedPolicy:
    """Prepare and install ``bundle`` (raises ``BundleNotApplicable``, changing nothing)."""
    prepared = prepare_bundle(gateway, bundle)
    install(gateway, prepared)
    log.info(
        "policy bundle v%d (%s) in force: %d rules, %d tenants",
        bundle.version,
        bundle.content_sha256[:12],
        len(bundle.content.sovereignty.policies),
        len(bundle.content.sovereignty.tenants),
    )
    return prepared
