"""OpenTelemetry spans for gateway requests — or nothing at all.

``tracer_for(enabled)`` returns a real tracer only when tracing is enabled *and* the
OpenTelemetry API is installed (the ``otel`` extra); otherwise the null tracer, whose spans
cost a function call and record nothing. The gateway never checks "is tracing on?" itself.
Span: ``isthmus.request`` with the tenant, model, data class, decision status, endpoint, site,
predicted TTFT and cached tokens, and the outcome.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

__all__ = ["NullTracer", "Span", "Tracer", "tracer_for"]


class Span(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...


class Tracer(Protocol):
    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span]: ...


class _NullSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        return None


class _NullContext:
    """A reusable context manager yielding the null span (a generator-based one would cost a
    generator and its frame per request)."""

    __slots__ = ()
    _span = _NullSpan()

    def __enter__(self) -> Span:
        return self._span

    def __exit__(self, *exc: object) -> None:
        return None


class NullTracer:
    _context = _NullContext()

    def span(self, name: str, **attributes: Any) -> contextlib.AbstractContextManager[Span]:
        return self._context


class _OtelTracer:
    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    @contextlib.contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Span]:
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span


def tracer_for(enabled: bool, provider: Any = None) -> Tracer:
    """A tracer from the global (or given) OpenTelemetry provider, or the null tracer."""
    if not enabled:
        return NullTracer()
    try:
        from opentelemetry import trace
    except ImportError:
        return NullTracer()
    source = provider if provider is not None else trace.get_tracer_provider()
    return _OtelTracer(source.get_tracer("isthmus.gateway"))
