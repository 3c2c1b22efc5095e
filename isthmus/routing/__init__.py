"""Routing: the pure per-request decision shared by the gateway and the simulator."""

from isthmus.routing.fleet import EndpointInfo, FleetState, endpoint_infos
from isthmus.routing.prefix_index import PrefixIndex
from isthmus.routing.router import ROUTERS, Router, route
from isthmus.routing.types import Candidate, Decision, RouteRequest
from isthmus.routing.view import CompliantSet, RoutingView, build_view

__all__ = [
    "ROUTERS",
    "Candidate",
    "CompliantSet",
    "Decision",
    "EndpointInfo",
    "FleetState",
    "PrefixIndex",
    "RouteRequest",
    "Router",
    "RoutingView",
    "build_view",
    "endpoint_infos",
    "route",
]
