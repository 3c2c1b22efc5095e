"""Refuse request bodies over a size limit before any of them is parsed.

A pure ASGI middleware: a declared ``Content-Length`` over the limit is refused at once (413);
a body without one is read up to the limit and refused as soon as it passes it, so an
oversized upload costs at most ``max_bytes`` of memory. Accepted bodies are replayed to the
app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from isthmus.control.errors import ControlError

__all__ = ["BodyLimit"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: App, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: ControlError
    ) -> None:
        await error.response()(scope, receive, send)

    def _too_large(self) -> ControlError:
        return ControlError(
            413, f"the request body is larger than {self.max_bytes} bytes", "body_too_large"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                error = ControlError(400, "Content-Length is not a number", "bad_content_length")
                await self._refuse(scope, receive, send, error)
                return
            if length > self.max_bytes:
                await self._refuse(scope, receive, send, self._too_large())
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send, self._too_large())
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
