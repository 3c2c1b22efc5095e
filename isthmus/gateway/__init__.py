"""The OpenAI-compatible gateway: authenticate, check, route, forward, fail over, record."""

from isthmus.gateway.app import Gateway, GatewayConfig
from isthmus.gateway.errors import ApiError

__all__ = ["ApiError", "Gateway", "GatewayConfig"]
