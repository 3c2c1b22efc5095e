"""The admin API as an ASGI app: FastAPI routes over one ``ControlPlane``.

``create_app`` wires the error bodies, the body-size limit and every resource's routes; its
lifespan starts and stops the link to NATS. The app holds no state of its own: the plane (on
``app.state.plane``) does, so tests drive the same app in-process through ASGI.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute

from isthmus.control.errors import ControlError, ProblemOut, install_error_handlers
from isthmus.control.limits import BodyLimit
from isthmus.control.plane import ControlPlane
from isthmus.control.routes import audit, bundles, fabric, gateways, meta, plans, tenants

__all__ = ["create_app"]

DESCRIPTION = """\
Govern every Isthmus gateway from one place: the fabric in force, the guard policy and routing
settings, tenants and their API keys, signed policy bundles published over NATS JetStream,
the gateways' status, placement plans, usage and audit records.

Authenticate with `Authorization: Bearer <token>`: an admin or operator token given to the
control plane at start, or a tenant's own API key (which sees only that tenant). Every failure
is answered as `{"error": {"message", "type", "code"}}`.
"""


def reject_unknown_query(request: Request) -> None:
    """A misspelt filter (``?tennant=``) is a 422, not a silently unfiltered answer."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = {param.alias for param in route.dependant.query_params}
    for dependency in route.dependant.dependencies:
        known.update(param.alias for param in dependency.query_params)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        valid = ", ".join(sorted(known)) or "none"
        raise ControlError(
            422,
            f"unknown query parameter {unknown[0]!r}; this path takes: {valid}",
            "unknown_query_parameter",
            param=unknown[0],
            problems=[
                ProblemOut(field=name, message="unknown query parameter") for name in unknown
            ],
        )


def create_app(plane: ControlPlane, *, manage_mesh: bool = True) -> FastAPI:
    """The admin API over ``plane``; with ``manage_mesh`` its lifespan runs the NATS link."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_mesh:
            await plane.mesh.start()
        try:
            yield
        finally:
            if manage_mesh:
                await plane.mesh.stop()

    app = FastAPI(
        title="Isthmus control plane",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        dependencies=[Depends(reject_unknown_query)],
    )
    app.state.plane = plane
    install_error_handlers(app)
    for module in (meta, fabric, tenants, bundles, gateways, plans, audit):
        app.include_router(module.router)
    app.add_middleware(BodyLimit, max_bytes=plane.config.max_body_bytes)
    return app
