"""Errors as the OpenAI API shapes them: a status, and ``{"error": {message, type, param, code}}``.

Invariant: every failure the gateway answers is an ``ApiError``; its message says what was
wrong and what would be valid, never a stack trace. ``type`` follows OpenAI's vocabulary so
clients (the official ``openai`` library included) raise their usual exception classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["ApiError"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


@dataclass(eq=False)  # not frozen: Python sets __traceback__ on exceptions as they propagate
class ApiError(Exception):
    status: int
    message: str
    code: str | None = None
    param: str | None = None
    retry_after_s: float | None = None
    retryable: bool | None = None
    allow: str | None = None  # the methods a 405's path accepts

    def __str__(self) -> str:
        return f"{self.status} {self.code or ''}: {self.message}"

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "api_error")

    def payload(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def body(self) -> bytes:
        return orjson.dumps(self.payload())

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", b"application/json")]
        if self.retry_after_s is not None:
            out.append((b"retry-after", str(max(1, round(self.retry_after_s))).encode()))
        if self.retryable is not None:
            # honoured by the official OpenAI clients: a policy refusal is not worth retrying
            out.append((b"x-should-retry", b"true" if self.retryable else b"false"))
        if self.allow is not None:
            out.append((b"allow", self.allow.encode()))
        return out
