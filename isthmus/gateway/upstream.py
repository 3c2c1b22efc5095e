"""Upstream engines and providers behind one pooled HTTP client.

Any OpenAI-compatible server is an upstream: vLLM, SGLang, llama.cpp's server, Ollama, TGI,
hosted APIs, the built-in emulator. Connections are pooled and kept alive per origin
(``http_pool``: httptools on asyncio, http and https); credentials come from the environment
variable the endpoint names (``api_key_env``) and are never logged or echoed.

Invariant: ``Upstreams.open`` returns a response whose headers have arrived, or raises
``UpstreamError`` with a short reason (``connect failed``, ``timeout …``, ``upstream error …``)
that the gateway uses to decide whether to fail over.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from isthmus.fabric.catalog import Fabric
from isthmus.gateway.http_pool import Origin, PoolError, Response, ResponsePool

__all__ = ["Response", "Target", "UpstreamError", "Upstreams"]


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: str
    base_url: str  # e.g. http://127.0.0.1:18000/v1
    origin: str  # e.g. http://127.0.0.1:18000 (health and metrics live at the root)
    address: Origin
    base_path: str  # e.g. /v1
    served_model: str
    api_key_env: str | None


class UpstreamError(Exception):
    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


def targets(fabric: Fabric) -> dict[str, Target]:
    out = {}
    for endpoint in fabric.spec.endpoints:
        base = endpoint.url.rstrip("/")
        parts = urlsplit(base)
        out[endpoint.name] = Target(
            endpoint=endpoint.name,
            base_url=base,
            origin=f"{parts.scheme}://{parts.netloc}",
            address=Origin.of(base),
            base_path=parts.path,
            served_model=endpoint.served_model_name or endpoint.model,
            api_key_env=endpoint.api_key_env,
        )
    return out


class Upstreams:
    def __init__(self, fabric: Fabric, *, connect_timeout_s: float = 2.0) -> None:
        self.targets = targets(fabric)
        self.connect_timeout_s = connect_timeout_s
        self.pool = ResponsePool(connect_timeout_s=connect_timeout_s)

    async def close(self) -> None:
        await self.pool.close()

    def _headers(self, target: Target, json_body: bool) -> list[tuple[str, str]]:
        headers = [("content-type", "application/json")] if json_body else []
        if target.api_key_env:
            key = os.environ.get(target.api_key_env)
            if key:
                headers.append(("authorization", f"Bearer {key}"))
        return headers

    async def open(self, endpoint: str, path: str, body: bytes, timeout_s: float) -> Response:
        """POST ``body`` to the endpoint's ``path``; wait at most ``timeout_s`` for headers."""
        target = self.targets[endpoint]
        try:
            return await self.pool.request(
                "POST",
                target.address,
                target.base_path + path,
                self._headers(target, True),
                body,
                header_timeout_s=timeout_s,
            )
        except PoolError as error:
            if error.kind == "connect":
                raise UpstreamError("connect failed") from None
            if error.kind == "timeout":
                raise UpstreamError("timeout waiting for the upstream") from None
            raise UpstreamError(f"upstream error: {error}") from None

    async def get(
        self, endpoint: str, path: str, timeout_s: float, *, root: bool = True
    ) -> tuple[int, bytes]:
        """GET a path at the endpoint's origin (``/health``, ``/metrics``) or under its base."""
        target = self.targets[endpoint]
        full = path if root else target.base_path + path
        try:
            async with asyncio.timeout(timeout_s):
                response = await self.pool.request(
                    "GET",
                    target.address,
                    full,
                    self._headers(target, False),
                    header_timeout_s=timeout_s,
                )
                try:
                    body = await response.read()
                finally:
                    response.release()
                return response.status, body
        except (TimeoutError, PoolError):
            return 0, b""
