"""Every failure the admin API answers, shaped as ``{"error": {message, type, code, ...}}``.

Invariant: a request the API cannot serve gets a precise 4xx with this body — bad JSON (400),
a missing or wrong token (401), a role that may not (403), something that does not exist or
belongs to another tenant (404, the same body either way), a body too large (413), input that
does not validate (422, every problem with its field, and file/line/column for YAML). A 5xx
only reports a failure of the service itself (503: database unreachable), never bad input;
no body ever carries a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from isthmus.fabric.problems import Problem
from isthmus.store.errors import StoreError

__all__ = [
    "ERROR_RESPONSES",
    "ControlError",
    "ErrorBody",
    "ErrorDetail",
    "ProblemOut",
    "install_error_handlers",
    "problems_out",
]

log = logging.getLogger("isthmus.control")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    503: "service_unavailable",
}


class ProblemOut(BaseModel):
    """One thing wrong with the input, located as precisely as the input allows."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="dotted path of the field, e.g. sites[3].kind")
    message: str
    file: str | None = Field(default=None, description="for YAML text: the name it was given")
    line: int | None = Field(default=None, description="1-based, for YAML text")
    column: int | None = Field(default=None, description="1-based, for YAML text")


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str = Field(description="authentication_error, permission_error, not_found_error, …")
    code: str = Field(description="stable, for programs: missing_token, unknown_tenant, …")
    param: str | None = Field(default=None, description="the request field at fault, if one")
    problems: list[ProblemOut] | None = Field(default=None, description="every problem found")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "malformed request (not JSON, not UTF-8)"),
        (401, "missing or wrong bearer token"),
        (403, "the token's role may not do this"),
        (404, "no such resource (or it belongs to another tenant)"),
        (413, "request body too large"),
        (422, "the input does not validate; every problem is listed"),
        (503, "the database is unreachable"),
    )
}
"""Documented on every operation, so the OpenAPI document lists every status it can answer."""


class ControlError(Exception):
    """A failure to answer with ``status`` and the error body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        problems: Sequence[ProblemOut] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.problems = list(problems) if problems is not None else None

    def body(self) -> dict[str, Any]:
        detail = ErrorDetail(
            message=self.message,
            type=_TYPES.get(self.status, "api_error"),
            code=self.code,
            param=self.param,
            problems=self.problems,
        )
        return {"error": detail.model_dump(exclude_none=True)}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def problems_out(problems: Sequence[Problem]) -> list[ProblemOut]:
    return [
        ProblemOut(
            field=p.field,
            message=p.message,
            file=p.location.file,
            line=p.location.line,
            column=p.location.column,
        )
        for p in problems
    ]


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _validation_error(exc: RequestValidationError) -> ControlError:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return ControlError(400, "the request body is not valid JSON", "invalid_json")
    if [e.get("loc") for e in errors] == [("body",)] and errors[0].get("type") in (
        "model_attributes_type",
        "dict_type",
    ):
        return ControlError(
            400,
            "the request body must be a JSON object (Content-Type: application/json)",
            "invalid_json",
        )
    problems = []
    for error in errors:
        loc = [p for p in error.get("loc", ()) if isinstance(p, int | str)]
        where = loc[0] if loc else "body"
        field = _field(loc[1:]) if len(loc) > 1 else str(where)
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not in the schema)"
        problems.append(ProblemOut(field=field, message=f"{message} (in {where})"))
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return ControlError(
        422, f"the request does not validate: {summary}{more}", "invalid_request", problems=problems
    )


_HTTP_CODES = {
    404: ("no such path", "unknown_path"),
    405: ("this method is not allowed on this path", "method_not_allowed"),
}


def _allowed_methods(request: Request) -> list[str]:
    """Every method routed for this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with the error body (see the module invariant)."""

    async def control_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ControlError)
        return exc.response()

    async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation_error(exc).response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message, code = _HTTP_CODES.get(exc.status_code, (str(exc.detail), "http_error"))
        response = ControlError(exc.status_code, message, code).response()
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    async def store_error(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database failure: %s", exc)
        return ControlError(503, str(exc), "database_unavailable").response()

    app.add_exception_handler(ControlError, control_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(StoreError, store_error)
