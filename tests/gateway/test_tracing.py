"""OpenTelemetry spans when enabled; the null tracer otherwise."""

from __future__ import annotations

import pytest

from isthmus.fabric.catalog import Fabric
from isthmus.gateway import Gateway, GatewayConfig
from isthmus.gateway.tracing import NullTracer, tracer_for

from .conftest import OTHER_KEY, with_tenants
from .test_bad_input import post

sdk = pytest.importorskip("opentelemetry.sdk.trace")
exporter_module = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")


def test_disabled_tracing_is_the_null_object() -> None:
    assert isinstance(tracer_for(False), NullTracer)


def test_request_span_carries_the_decision(mini: Fabric) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = exporter_module.InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = GatewayConfig(site="onprem-paris", health_interval_s=0, log_decisions=False)
    gateway = Gateway(with_tenants(mini), config, tracer=tracer_for(True, provider))
    # no engine is running: the request fails over to exhaustion, and the span says so
    response = post(
        gateway,
        json={"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]},
        key=OTHER_KEY,
    )
    assert response.status_code in (502, 503)
    (span,) = exporter.get_finished_spans()
    assert span.name == "isthmus.request"
    assert span.attributes["tenant"] == "lab"
    assert span.attributes["data_class"] == "public"
    assert span.attributes["outcome"] == "error"
