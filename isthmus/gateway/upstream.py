"""Upstream engines and providers behind one pooled HTTP client.

Any OpenAI-compatible server is an upstream: vLLM, SGLang, llama.cpp's server, Ollama, TGI,
hosted APIs, the built-in emulator. Connections are pooled and kept alive per host (aiohttp);
credentials come from the environment variable the endpoint names (``api_key_env``) and are
never logged or echoed.

Invariant: ``Upstreams.open`` returns a response whose headers have arrived, or raises
``UpstreamError`` with a short reason (``connect``, ``timeout``, ``http 503``) that the gateway
uses to decide whether to fail over.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from isthmus.fabric.catalog import Fabric

__all__ = ["Target", "UpstreamError", "Upstreams"]


@dataclass(frozen=True, slots=True)
class Target:
    endpoint: str
    base_url: str  # e.g. http://127.0.0.1:18000/v1
    origin: str  # e.g. http://127.0.0.1:18000 (health and metrics live at the root)
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
            served_model=endpoint.served_model_name or endpoint.model,
            api_key_env=endpoint.api_key_env,
        )
    return out


class Upstreams:
    def __init__(self, fabric: Fabric, *, connect_timeout_s: float = 2.0) -> None:
        self.targets = targets(fabric)
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=512, keepalive_timeout=75, ttl_dns_cache=300
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, target: Target) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if target.api_key_env:
            key = os.environ.get(target.api_key_env)
            if key:
                headers["authorization"] = f"Bearer {key}"
        return headers

    async def open(
        self, endpoint: str, path: str, body: bytes, timeout_s: float
    ) -> aiohttp.ClientResponse:
        """POST ``body`` to the endpoint's ``path``; wait at most ``timeout_s`` for headers."""
        target = self.targets[endpoint]
        try:
            response = await self.session.post(
                target.base_url + path,
                data=body,
                headers=self._headers(target),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout_s, sock_read=timeout_s
                ),
            )
        except TimeoutError:
            raise UpstreamError("timeout waiting for the upstream") from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError("connect failed") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"upstream error: {type(exc).__name__}") from None
        return response

    async def get(
        self, endpoint: str, path: str, timeout_s: float, *, root: bool = True
    ) -> tuple[int, bytes]:
        """GET a path at the endpoint's origin (``/health``, ``/metrics``) or under its base."""
        target = self.targets[endpoint]
        url = (target.origin if root else target.base_url) + path
        try:
            async with self.session.get(
                url, headers=self._headers(target), timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, aiohttp.ClientError):
            return 0, b""
