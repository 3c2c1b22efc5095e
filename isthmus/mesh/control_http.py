"""Fetch the newest signed bundle from the control plane over HTTP (``GET /v1/bundles/latest``).

Used when a gateway has no NATS, and at start-up as a fallback. The answer is only bytes: the
gateway verifies them like a bundle from anywhere else, never trusting where they came from.
The route needs a gateway token (``isthmus control --gateway-token``; it reads bundles and
nothing else) or an operator token, sent as ``Authorization: Bearer``; a gateway takes it from
``$ISTHMUS_CONTROL_TOKEN`` so that it never shows in a process list.
"""

from __future__ import annotations

import httpx

__all__ = ["LATEST_PATH", "TOKEN_ENV", "ControlUnreachable", "fetch_latest_bundle"]

TOKEN_ENV = "ISTHMUS_CONTROL_TOKEN"
LATEST_PATH = "/v1/bundles/latest"
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


class ControlUnreachable(OSError):
    """The control plane did not answer with a bundle (network error, or an error status)."""


async def fetch_latest_bundle(
    base_url: str,
    *,
    token: str | None = None,
    timeout_s: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> bytes | None:
    """The newest signed bundle, or ``None`` if the control plane has none yet (404)."""
    url = base_url.rstrip("/") + LATEST_PATH
    headers = {"accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        async with httpx.AsyncClient(timeout=timeout_s, transport=transport) as client:
            response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise ControlUnreachable(f"cannot reach the control plane at {url}: {exc}") from None
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        given = "was refused" if token else f"is missing: set ${TOKEN_ENV}"
        raise ControlUnreachable(
            f"the control plane at {url} answered {response.status_code}: the gateway's operator "
            f"token {given}"
        )
    if response.status_code != 200:
        raise ControlUnreachable(
            f"the control plane answered {response.status_code} for {url}: {response.text[:200]!r}"
        )
    if len(response.content) > MAX_BUNDLE_BYTES:
        raise ControlUnreachable(f"the bundle from {url} exceeds {MAX_BUNDLE_BYTES:,} bytes")
    return response.content
